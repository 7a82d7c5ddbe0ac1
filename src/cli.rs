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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Interface names are anybody's choice: after `--`, one that looks like an option is a name.
    #[test]
    fn names_after_the_separator_are_names() {
        for name in ["-x", "-v", "--help", "--", "e;x"] {
            let cli = Cli::try_parse_from(["stronghost", "hook", "networkmanager", "--", name, "up"]).unwrap();
            let Command::Hook { client: HookClient::Networkmanager { interface, action } } = cli.command else { panic!("{cli:?}") };
            assert_eq!((interface.as_str(), action.as_str()), (name, "up"));
        }
        // Without it, such a name is an option (a usage error, or help text and exit 0): what the
        // hooks must never let happen.
        assert!(Cli::try_parse_from(["stronghost", "hook", "networkmanager", "-x", "up"]).is_err());
    }

    /// Every shipped hook that passes positional arguments passes them after `--`.
    #[test]
    fn hooks_pass_their_arguments_after_the_separator() {
        for (file, text) in [
            ("networkmanager-dispatcher", include_str!("../hooks/networkmanager-dispatcher")),
            ("udhcpc-script", include_str!("../hooks/udhcpc-script")),
        ] {
            let call = text.lines().find(|l| l.contains("stronghost hook")).unwrap_or_else(|| panic!("{file}: no call"));
            let args = call.split("stronghost hook ").nth(1).unwrap();
            assert!(args.split_whitespace().nth(1) == Some("--"), "{file}: {call}");
        }
    }
}
