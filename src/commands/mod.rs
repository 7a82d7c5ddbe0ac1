//! One module per subcommand; each returns the process exit code.

pub mod apply;
pub mod check;
pub mod hook;
pub mod status;

use crate::config::Config;
use crate::error::Error;
use crate::reconcile::Engine;

pub fn engine(cfg: &Config) -> Result<Engine, Error> {
    Engine::new(cfg.clone())
}

/// For the commands that only read: nothing is created on the host (`Engine::read_only`).
pub fn reader(cfg: &Config) -> Result<Engine, Error> {
    Engine::read_only(cfg.clone())
}
