//! Command-line definitions (kept apart so man pages and completions can be generated from them).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Where the configuration file lives unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/stronghost/stronghost.conf";

/// Make a multi-homed Linux host behave as an RFC 1122 strong host: each interface answers, sends
/// and ARPs only for its own addresses, via its own gateway.
///
/// stronghost gives every managed interface a routing table of its own, `from`, `oif` and
/// `fwmark` rules into it, the ARP sysctls of a strong host, and entries in the nftables tables
/// `inet stronghost` and `bridge stronghost`, which drop (and count, per interface and reason)
/// packets that arrive on the wrong interface, whose source would not be routed back by it, or
/// that would leave an interface with another's address, and mark connections with the interface
/// they arrived on so that their replies leave by it. It follows DHCP leases through the hooks of
/// dhclient, dhcpcd, udhcpc, NetworkManager and ifupdown, and everything else through its watcher
/// (`stronghost watch`, the stronghost-watch service). It changes only what it wrote (protocol 83,
/// its own table range and tables) and restores the rest on release.
#[derive(Parser, Debug)]
#[command(name = "stronghost", version, propagate_version = true, disable_help_subcommand = true)]
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
    ///
    /// Claims the interface (link group, ARP sysctls, receive filter) and writes its table and
    /// rules from its addresses and the gateway of its lease, its configuration, main's default
    /// routes or its network's neighbours. Writes nothing when the policy is already in place.
    Apply {
        /// The interface: any name the kernel accepts (put `--` before one that starts with `-`).
        interface: String,
        /// Print the outcome as one JSON object: {"command", "ok", "writes": {"netlink", "sysctl",
        /// "nft"}, "error": null or {"kind", "message"}}.
        #[arg(long)]
        json: bool,
    },
    /// Remove everything stronghost set up for one interface and restore its sysctls.
    ///
    /// Its rules, routes and table go, its receive-filter entries too, and each sysctl and the
    /// link group are put back to the value they had before stronghost (kept in
    /// /var/lib/stronghost/originals.json, across reboots) unless changed since.
    Release {
        /// The interface (or --all).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        interface: Option<String>,
        /// Every interface, the shared rules and the nftables tables: the host as before
        /// stronghost (what package removal runs).
        #[arg(long)]
        all: bool,
        /// Print the outcome as JSON, as `apply --json` does.
        #[arg(long)]
        json: bool,
    },
    /// Apply to every managed interface, release the ones gone, remove orphans.
    ///
    /// What the watcher does when it starts. A second `sync` on a converged host writes nothing.
    Sync {
        /// Print the outcome as JSON, as `apply --json` does.
        #[arg(long)]
        json: bool,
    },
    /// Show, per interface, table, addresses, gateway, rules, effective sysctls and drops.
    Status {
        /// One JSON object: {"interfaces": [{"interface", "table", "applied", "addresses",
        /// "gateway", "gateway_source", "lease_source", "rules", "routes", "sysctls", "drops", …}], …}.
        #[arg(long)]
        json: bool,
        /// Print Prometheus metrics (text exposition format, for node_exporter's textfile collector).
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
    },
    /// Verify the strong-host invariants on the live host; exits 1 and explains each violation.
    ///
    /// Asks the kernel how it would route from each address, bound to each interface, for marked
    /// replies and to networks of unmanaged interfaces; compares the nftables tables member by
    /// member with what the host needs; looks for other tools writing into stronghost's mark
    /// field, unmanaged interfaces with addresses, devices answering ARP for another's addresses,
    /// events left queued and a watcher that died. Prints `ok`, or one `violation:` line each;
    /// `warning:` lines for what is strong but limited; the drops counted so far. Changes nothing.
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
