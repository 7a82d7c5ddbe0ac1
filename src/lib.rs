//! stronghost as a library: the engine, the parsers and the commands, for the `stronghost`
//! binary, the fuzz targets (tests/fuzz) and the documentation generator (examples/gen_docs).
//!
//! A run gathers (reconcile.rs: kernel.rs, state.rs, the stacks' leases, filter.rs), decides
//! (plan.rs over policy.rs, pure) and executes (execute.rs over netlink/).

pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub mod error;
pub mod execute;
pub mod filter;
pub mod handoff;
pub mod host;
pub mod kernel;
pub mod lease;
pub mod logging;
pub mod net;
pub mod netlink;
pub mod plan;
pub mod policy;
pub mod reconcile;
pub mod state;
pub mod sysctl;
pub mod watcher;
