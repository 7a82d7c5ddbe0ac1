//! isc-dhcp-client: the dhclient-script environment (reason, interface, new_*).

use super::{LeaseEvent, Reasons, Triage, triage};
use crate::model::lease::{Env, assemble, check_address, ipv4_field, netmask_field, parse_rfc3442_bytes, parse_rfc3442_descriptors};
use crate::model::net::Invalid;

/// The reasons the hook passes on (hooks/dhclient-exit-hook lists the same).
pub const REASONS: Reasons = Reasons {
    bound: &["BOUND", "RENEW", "REBIND", "REBOOT", "TIMEOUT"],
    gone: &["EXPIRE", "FAIL", "RELEASE", "STOP"],
    // dhclient -6: dhclient-script has added or removed the address when the exit hook runs.
    changed: &["BOUND6", "RENEW6", "REBIND6", "DEPREF6", "EXPIRE6", "RELEASE6", "STOP6"],
};

pub fn event(env: Env, warnings: &mut Vec<String>) -> Result<LeaseEvent, Invalid> {
    let reason = env("reason").unwrap_or_default();
    let ifname = match triage(reason.as_str(), &REASONS, env, "interface")? {
        Triage::Done(e) => return Ok(e),
        Triage::Bound(ifname) => ifname,
    };
    let address = ipv4_field(env, "new_ip_address")?;
    let prefix_len = if env("new_subnet_mask").is_some_and(|v| !v.is_empty()) { netmask_field(env, "new_subnet_mask")? } else { 32 };
    check_address("new_ip_address", address, prefix_len)?;
    // Debian's dhclient names option 121 new_rfc3442_classless_static_routes (decimal bytes),
    // RHEL's new_classless_static_routes (destination descriptors).
    let classless = if let Some(v) = env("new_rfc3442_classless_static_routes").filter(|v| !v.trim().is_empty()) {
        Some(("new_rfc3442_classless_static_routes", parse_rfc3442_bytes(&v)))
    } else {
        env("new_classless_static_routes")
            .filter(|v| !v.trim().is_empty())
            .map(|v| ("new_classless_static_routes", parse_rfc3442_descriptors(&v)))
    };
    let lease = assemble(address, prefix_len, ("new_routers", env("new_routers")), classless, "dhclient", warnings);
    Ok(LeaseEvent::Bound { ifname, lease })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::testenv;
    use crate::model::lease::{Lease, StaticRoute};
    use std::net::Ipv4Addr;

    fn event(vars: &[(&str, &str)]) -> (Result<LeaseEvent, Invalid>, Vec<String>) {
        testenv::with(vars, |e, w| super::event(e, w))
    }

    fn bound(vars: &[(&str, &str)]) -> Lease {
        match event(vars).0.unwrap() {
            LeaseEvent::Bound { lease, .. } => lease,
            e => panic!("{e:?}"),
        }
    }

    const BASE: [(&str, &str); 4] =
        [("reason", "BOUND"), ("interface", "eth1"), ("new_ip_address", "198.51.100.11"), ("new_subnet_mask", "255.255.255.0")];

    #[test]
    fn plain_lease_takes_first_router() {
        let mut v = BASE.to_vec();
        v.push(("new_routers", "198.51.100.1 198.51.100.2"));
        let l = bound(&v);
        assert_eq!(l.prefix_len, 24);
        assert_eq!(l.gateway, Some(Ipv4Addr::new(198, 51, 100, 1)));
    }

    #[test]
    fn option_121_overrides_routers() {
        let mut v = BASE.to_vec();
        v.push(("new_routers", "198.51.100.1"));
        v.push(("new_rfc3442_classless_static_routes", "8 10 198 51 100 254 0 198 51 100 2"));
        let l = bound(&v);
        assert_eq!(l.gateway, Some(Ipv4Addr::new(198, 51, 100, 2)));
        assert_eq!(l.routes, vec![StaticRoute { dst: "10.0.0.0/8".parse().unwrap(), gateway: Some(Ipv4Addr::new(198, 51, 100, 254)) }]);
        // 121 without a default route: no gateway at all (router option ignored).
        let mut v = BASE.to_vec();
        v.push(("new_routers", "198.51.100.1"));
        v.push(("new_rfc3442_classless_static_routes", "24 192 0 2 0 0 0 0"));
        let l = bound(&v);
        assert_eq!(l.gateway, None);
        assert_eq!(l.routes[0].gateway, None);
    }

    #[test]
    fn malformed_121_falls_back_to_routers_with_warning() {
        for bad in [
            "33 1 2 3 4 5 6 7 8 9",
            "24 10 0",
            "8 11 1 2 3",
            "24 10 0 0 0 0 0 0 24 10 0 0 0 0 0 0",
            "8 10 224 0 0 1",
            "8 10 198 51 100 11",
            "x",
        ] {
            let mut v = BASE.to_vec();
            v.push(("new_routers", "198.51.100.1"));
            v.push(("new_rfc3442_classless_static_routes", bad));
            let (r, w) = event(&v);
            match r.unwrap() {
                LeaseEvent::Bound { lease, .. } => assert_eq!(lease.gateway, Some(Ipv4Addr::new(198, 51, 100, 1)), "{bad}"),
                e => panic!("{e:?}"),
            }
            assert!(w.iter().any(|w| w.contains("new_rfc3442_classless_static_routes")), "{bad}: {w:?}");
        }
    }

    #[test]
    fn hostile_routers_are_skipped() {
        for bad in ["0.0.0.0", "198.51.100.11", "224.0.0.1", "255.255.255.255", "$(touch /tmp/x)", "1.2.3.4;reboot"] {
            let mut v = BASE.to_vec();
            v.push(("new_routers", bad));
            let (r, w) = event(&v);
            match r.unwrap() {
                LeaseEvent::Bound { lease, .. } => assert_eq!(lease.gateway, None, "{bad}"),
                e => panic!("{e:?}"),
            }
            assert!(w[0].starts_with("new_routers"), "{w:?}");
        }
    }

    #[test]
    fn invalid_address_or_mask_rejects_the_event() {
        for (k, v) in [
            ("new_ip_address", "198.51.100.11\nid"),
            ("new_ip_address", "224.0.0.5"),
            ("new_subnet_mask", "255.0.255.0"),
            ("new_ip_address", "198.51.100.255"),
            ("interface", "../../etc"),
        ] {
            let mut vars: Vec<(&str, &str)> = BASE.iter().filter(|(n, _)| *n != k).cloned().collect();
            vars.push((k, v));
            let e = event(&vars).0.unwrap_err().to_string();
            assert!(e.starts_with(k), "{e}");
        }
    }

    #[test]
    fn reasons_are_an_allowlist() {
        assert!(matches!(event(&[("reason", "PREINIT"), ("interface", "eth1")]).0.unwrap(), LeaseEvent::Ignored { .. }));
        assert!(matches!(event(&[("reason", "PREINIT6"), ("interface", "eth1")]).0.unwrap(), LeaseEvent::Ignored { .. }));
        // IPv6 events need no lease data; whatever is in new_ip6_* is not even read.
        let v6 = [("reason", "BOUND6"), ("interface", "eth1"), ("new_ip6_address", "$(reboot)"), ("new_ip6_prefixlen", "x")];
        assert_eq!(event(&v6).0.unwrap(), LeaseEvent::Changed { ifname: "eth1".into() });
        assert_eq!(event(&[("reason", "EXPIRE6"), ("interface", "eth1")]).0.unwrap(), LeaseEvent::Changed { ifname: "eth1".into() });
        assert_eq!(event(&[("reason", "EXPIRE"), ("interface", "eth1")]).0.unwrap(), LeaseEvent::Gone { ifname: "eth1".into() });
    }
}
