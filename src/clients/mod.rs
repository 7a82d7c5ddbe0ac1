//! One parser per network stack: each turns its hook's arguments and environment into a
//! `LeaseEvent`. Reasons and actions are allowlists; anything else is ignored. `Err` means the
//! input was invalid: the caller logs it, changes nothing, and the hook still succeeds.

pub mod dhclient;
pub mod dhcpcd;
pub mod ifupdown;
pub mod lease_files;
pub mod networkd;
pub mod networkmanager;
pub mod udhcpc;

use crate::model::lease::Lease;
use crate::model::net::Invalid;

#[derive(Debug, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A lease (or static configuration) is in force on the interface: record it and apply.
    Bound { ifname: String, lease: Lease },
    /// It ended: the interface keeps its other addresses' policy; its lease is forgotten.
    Gone { ifname: String },
    /// The interface's addresses changed without an IPv4 lease to record (DHCPv6, router
    /// advertisements, an inet6 stanza): re-read them from the kernel, keep any IPv4 lease.
    Changed { ifname: String },
    /// Nothing for stronghost to do.
    Ignored { reason: String },
}

pub fn ignored(what: &str) -> Result<LeaseEvent, Invalid> {
    Ok(LeaseEvent::Ignored { reason: crate::model::net::printable(what) })
}

/// How a DHCP client's hook begins: the reason is checked against the client's allowlists, and
/// the interface is read only for reasons that concern stronghost.
pub enum Triage {
    /// Nothing more to read: ignored, or the lease is gone.
    Done(LeaseEvent),
    /// A lease is in force on this interface: read it.
    Bound(String),
}

/// The reasons a client's hook acts on: an IPv4 lease in force, an IPv4 lease ended, and
/// IPv6 events (whose data stronghost does not need: the kernel has the addresses).
#[derive(Debug)]
pub struct Reasons<'a> {
    pub bound: &'a [&'a str],
    pub gone: &'a [&'a str],
    pub changed: &'a [&'a str],
}

pub fn triage(reason: &str, r: &Reasons, env: crate::model::lease::Env, ifname_var: &str) -> Result<Triage, Invalid> {
    if !r.bound.contains(&reason) && !r.gone.contains(&reason) && !r.changed.contains(&reason) {
        return ignored(reason).map(Triage::Done);
    }
    let ifname = crate::model::lease::ifname_field(env, ifname_var)?;
    Ok(if r.bound.contains(&reason) {
        Triage::Bound(ifname)
    } else if r.gone.contains(&reason) {
        Triage::Done(LeaseEvent::Gone { ifname })
    } else {
        Triage::Done(LeaseEvent::Changed { ifname })
    })
}

#[cfg(test)]
pub mod testenv {
    use std::collections::HashMap;

    /// An environment from pairs, and the parse result with its warnings.
    pub fn with<T>(vars: &[(&str, &str)], f: impl Fn(crate::model::lease::Env, &mut Vec<String>) -> T) -> (T, Vec<String>) {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut w = Vec::new();
        let r = f(&|k| map.get(k).cloned(), &mut w);
        (r, w)
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use std::collections::HashMap;

    /// Random values — digits, dots, slashes, spaces, shell metacharacters, control bytes, long
    /// runs — in every variable every parser reads: none may panic, and what comes out is either
    /// an error, ignored, or a lease that passes validation again.
    #[test]
    fn parsers_survive_random_input() {
        const ALPHABET: &[u8] = b"0123456789.../ /,:;$()`'\"\n\t|&<>*?-x\x01\xff255";
        let mut seed: u64 = 0x2545f4914f6cdd1d;
        let mut rnd = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let names = [
            "reason",
            "interface",
            "new_ip_address",
            "new_subnet_mask",
            "new_subnet_cidr",
            "new_routers",
            "new_rfc3442_classless_static_routes",
            "new_classless_static_routes",
            "ip",
            "mask",
            "subnet",
            "router",
            "staticroutes",
            "IP4_ADDRESS_0",
            "IP4_GATEWAY",
            "IP4_NUM_ROUTES",
            "IP4_ROUTE_0",
            "IFACE",
            "MODE",
            "METHOD",
            "ADDRFAM",
            "IF_ADDRESS",
            "IF_NETMASK",
            "IF_GATEWAY",
            "IF_STRONGHOST_GATEWAY",
        ];
        let reasons = ["BOUND", "RENEW", "EXPIRE", "bound", "start", "up"];
        for _ in 0..20_000 {
            let mut env: HashMap<&str, String> = HashMap::new();
            for n in names {
                let len = rnd(24);
                let v: Vec<u8> = (0..len).map(|_| ALPHABET[rnd(ALPHABET.len())]).collect();
                env.insert(n, String::from_utf8_lossy(&v).into_owned());
            }
            env.insert("reason", reasons[rnd(reasons.len())].to_string());
            env.insert("METHOD", "static".into());
            env.insert("ADDRFAM", "inet".into());
            env.insert("MODE", "start".into());
            env.insert("interface", "eth0".into());
            let get = |k: &str| env.get(k).cloned();
            let mut w = Vec::new();
            for r in [
                dhclient::event(&get, &mut w),
                dhcpcd::event(&get, &mut w),
                udhcpc::event("bound", &get, &mut w),
                networkmanager::event("eth0", "up", &get, &mut w),
                ifupdown::event(&get, &mut w),
            ] {
                if let Ok(LeaseEvent::Bound { lease, .. }) = r {
                    crate::model::lease::check_address("address", lease.address, lease.prefix_len).unwrap();
                    if let Some(g) = lease.gateway {
                        crate::model::net::check_unicast("gateway", g).unwrap();
                        assert_ne!(g, lease.address);
                    }
                }
            }
            let text: String = names.iter().map(|n| format!("{n}={}\n", env[n])).collect();
            let _ = networkd::parse_lease(&text, &mut w);
        }
    }
}

/// Every shell hook passes on exactly the reasons its parser acts on: a reason missing from a hook
/// would never reach stronghost, and one missing from the parser would start it for nothing.
#[cfg(test)]
mod hook_reasons {
    use super::Reasons;
    use std::collections::BTreeSet;

    /// The alternatives of the first `case` pattern in a hook.
    fn case_list(hook: &str) -> BTreeSet<String> {
        let text = std::fs::read_to_string(format!("{}/hooks/{hook}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let after_case = text.split_once(" in\n").unwrap().1;
        let pattern = after_case.split_once(')').unwrap().0;
        pattern.split(['|', '\\', '\n', ' ', '\t']).filter(|w| !w.is_empty()).map(str::to_string).collect()
    }

    fn all(r: &Reasons) -> BTreeSet<String> {
        r.bound.iter().chain(r.gone).chain(r.changed).map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_hook_passes_on_exactly_what_its_parser_handles() {
        assert_eq!(case_list("dhclient-exit-hook"), all(&super::dhclient::REASONS));
        assert_eq!(case_list("dhcpcd-hook"), all(&super::dhcpcd::REASONS));
        assert_eq!(case_list("udhcpc-script"), all(&super::udhcpc::REASONS));
        assert_eq!(case_list("networkmanager-dispatcher"), all(&super::networkmanager::ACTIONS));
    }
}
