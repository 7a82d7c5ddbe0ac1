//! Command-line definitions (kept apart so man pages and completions can be generated from them).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Where the configuration file lives unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/stronghost/stronghost.conf";

/// Make a multi-homed Linux host behave as an RFC 1122 strong host: each interface answers, sends
/// and ARPs only for its own addresses, via its own gateway.
#[derive(Parser, Debug)]
#[command(name = "stronghost", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Log debug detail.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Bring one interface's policy in line with its addresses and last lease.
    Apply {
        interface: String,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove everything stronghost set up for one interface and restore its sysctls.
    Release {
        /// The interface (or --all).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        interface: Option<String>,
        /// Every interface, the shared rule and the receive filter: the host as before stronghost.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Apply to every managed interface, release the ones gone, remove orphans.
    Sync {
        #[arg(long)]
        json: bool,
    },
    /// Show, per interface, table, addresses, gateway, rules, effective sysctls and drops.
    Status {
        #[arg(long)]
        json: bool,
        /// Print Prometheus metrics (text exposition format, for node_exporter's textfile collector).
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
    },
    /// Verify the strong-host invariants on the live host; exits 1 and explains each violation.
    Check,
    /// Print the changes `apply` would make, as the equivalent ip/sysctl/nft commands.
    Plan {
        /// An interface, or none for what `sync` would do.
        interface: Option<String>,
    },
    /// Follow address, link and route events and keep every managed interface in line (the
    /// stronghost-watch service).
    Watch,
    /// Entry point for DHCP client hooks (reads the client's environment).
    Hook {
        #[command(subcommand)]
        client: HookClient,
    },
}

#[derive(Subcommand, Debug)]
pub enum HookClient {
    /// isc-dhcp-client's dhclient-script environment (reason, interface, new_*).
    Dhclient,
    /// dhcpcd-run-hooks environment (reason, interface, new_*).
    Dhcpcd,
    /// busybox udhcpc script: configures the lease's address and default route, then applies.
    Udhcpc {
        /// deconfig, bound, renew, leasefail or nak.
        action: String,
    },
    /// NetworkManager dispatcher: interface and action as NM passes them, IP4_* in the environment.
    Networkmanager { interface: String, action: String },
    /// ifupdown if-up.d / if-post-down.d (IFACE, MODE, METHOD, IF_*): static IPv4 stanzas.
    Ifupdown,
}

impl HookClient {
    /// The client's name, as logs and the journal's EVENT_SOURCE give it.
    pub fn name(&self) -> &'static str {
        match self {
            HookClient::Dhclient => "dhclient",
            HookClient::Dhcpcd => "dhcpcd",
            HookClient::Udhcpc { .. } => "udhcpc",
            HookClient::Networkmanager { .. } => "NetworkManager",
            HookClient::Ifupdown => "ifupdown",
        }
    }
}
