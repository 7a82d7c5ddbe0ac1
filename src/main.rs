//! stronghost: RFC 1122 strong-host behaviour for multi-homed Linux hosts, kept in step with DHCP
//! leases and address changes over netlink.

use clap::Parser;
use stronghost::cli::{Cli, Command};
use stronghost::reconcile::Target;
use stronghost::{commands, config, host, logging, watch};

fn main() {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    logging::set_source(match &cli.command {
        Command::Hook { client } => client.name(),
        Command::Watch => "watcher",
        _ => "cli",
    });
    // Every command reads the kernel's rules and nftables and the lock: root's.
    if !nix::unistd::geteuid().is_root() {
        log::error!("stronghost needs root (it reads and changes the kernel's routing policy and nftables): run it as root");
        std::process::exit(if matches!(cli.command, Command::Hook { .. }) { 0 } else { 2 });
    }
    // A file named on the command line is used, not replaced by the defaults.
    if cli.config.as_os_str() != stronghost::cli::DEFAULT_CONFIG && !cli.config.exists() {
        log::error!(
            "{}: no such configuration file (without --config, the defaults apply when {} is absent)",
            cli.config.display(),
            stronghost::cli::DEFAULT_CONFIG
        );
        std::process::exit(if matches!(cli.command, Command::Hook { .. }) { 0 } else { 2 });
    }
    let cfg = match config::Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            // A hook must never fail its DHCP client, even over a broken config file.
            std::process::exit(if matches!(cli.command, Command::Hook { .. }) { 0 } else { 2 });
        }
    };
    let writes = !matches!(cli.command, Command::Plan { .. } | Command::Status { .. } | Command::Check);
    if let Some(why) = writes.then(host::refuse_writes).flatten() {
        log::error!("{why}");
        std::process::exit(if matches!(cli.command, Command::Hook { .. }) { 0 } else { 2 });
    }
    let code = match &cli.command {
        Command::Apply { interface, json } => commands::apply::run(&cfg, Target::Apply(interface), *json),
        Command::Release { interface: Some(i), all: false, json } => commands::apply::run(&cfg, Target::Release(i), *json),
        Command::Release { json, .. } => commands::apply::run(&cfg, Target::ReleaseAll, *json),
        Command::Sync { json } => commands::apply::run(&cfg, Target::Sync, *json),
        Command::Plan { interface } => commands::apply::plan(&cfg, interface.as_deref()),
        Command::Status { json, prometheus } => commands::status::run(&cfg, *json, *prometheus),
        Command::Check => commands::check::run(&cfg),
        // The hook's run is per DHCP event: its engine takes the configuration, not a copy.
        Command::Hook { client } => commands::hook::run(cfg, client),
        Command::Watch => watch::run(&cfg),
    };
    std::process::exit(code);
}
