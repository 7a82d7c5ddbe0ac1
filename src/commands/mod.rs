//! One module per subcommand; each returns the process exit code.

pub mod apply;
pub mod check;
pub mod hook;
pub mod status;

use crate::config::Config;
use crate::engine::Engine;
use std::time::Duration;

/// How long a command waits for another stronghost (a hook for another interface) to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

pub fn engine(cfg: &Config) -> Result<Engine, String> {
    Engine::new(cfg.clone())
}
