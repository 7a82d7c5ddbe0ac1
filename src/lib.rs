//! stronghost as a library: the engine, the parsers and the commands, for the `stronghost`
//! binary, the fuzz targets (tests/fuzz) and the documentation generator (examples/gen_docs).

pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub mod engine;
pub mod filter;
pub mod lease;
pub mod logging;
pub mod net;
pub mod netlink;
pub mod nfnetlink;
pub mod policy;
pub mod state;
pub mod sysctl;
pub mod watcher;
