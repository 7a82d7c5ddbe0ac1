//! dhcpcd: the dhcpcd-run-hooks environment (reason, interface, new_*). dhcpcd configures the
//! address and its routes itself; stronghost adds the per-interface policy.

use super::{LeaseEvent, Reasons, Triage, triage};
use crate::model::lease::{Env, assemble, check_address, ipv4_field, netmask_field, parse_route_pairs, prefix_field};
use crate::model::net::Invalid;

/// The reasons the hook passes on (hooks/dhcpcd-hook lists the same).
pub const REASONS: Reasons = Reasons {
    bound: &["BOUND", "RENEW", "REBIND", "REBOOT", "STATIC"],
    gone: &["EXPIRE", "NAK", "NOCARRIER", "STOP", "RELEASE", "DEPARTED", "FAIL"],
    // DHCPv6 and router advertisements: dhcpcd has configured the addresses and routes.
    changed: &["BOUND6", "RENEW6", "REBIND6", "REBOOT6", "INFORM6", "ROUTERADVERT", "DELEGATED6", "EXPIRE6", "RELEASE6", "STOP6"],
};

pub fn event(env: Env, warnings: &mut Vec<String>) -> Result<LeaseEvent, Invalid> {
    let reason = env("reason").unwrap_or_default();
    // TEST is `dhcpcd -T`: nothing is configured, so nothing may be applied.
    let ifname = match triage(reason.as_str(), &REASONS, env, "interface")? {
        Triage::Done(e) => return Ok(e),
        Triage::Bound(ifname) => ifname,
    };
    let address = ipv4_field(env, "new_ip_address")?;
    let prefix_len = if env("new_subnet_cidr").is_some_and(|v| !v.is_empty()) {
        prefix_field(env, "new_subnet_cidr")?
    } else if env("new_subnet_mask").is_some_and(|v| !v.is_empty()) {
        netmask_field(env, "new_subnet_mask")?
    } else {
        32
    };
    check_address("new_ip_address", address, prefix_len)?;
    let classless =
        env("new_classless_static_routes").filter(|v| !v.trim().is_empty()).map(|v| ("new_classless_static_routes", parse_route_pairs(&v)));
    let lease = assemble(address, prefix_len, ("new_routers", env("new_routers")), classless, "dhcpcd", warnings);
    Ok(LeaseEvent::Bound { ifname, lease })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::testenv;
    use std::net::Ipv4Addr;

    #[test]
    fn bound_with_cidr_and_classless_routes() {
        let (r, w) = testenv::with(
            &[
                ("reason", "BOUND"),
                ("interface", "eth2"),
                ("new_ip_address", "198.51.100.12"),
                ("new_subnet_cidr", "24"),
                ("new_routers", "198.51.100.1"),
                ("new_classless_static_routes", "192.0.2.0/24 198.51.100.254 0.0.0.0/0 198.51.100.2"),
            ],
            |e, w| event(e, w),
        );
        assert!(w.is_empty(), "{w:?}");
        let LeaseEvent::Bound { lease, .. } = r.unwrap() else { panic!() };
        assert_eq!((lease.prefix_len, lease.gateway, lease.routes.len()), (24, Some(Ipv4Addr::new(198, 51, 100, 2)), 1));
    }

    #[test]
    fn test_mode_is_ignored_and_ipv6_rereads_the_kernel() {
        for reason in ["TEST", "PREINIT", "CARRIER", "IPV4LL"] {
            let (r, _) = testenv::with(&[("reason", reason), ("interface", "eth2")], |e, w| event(e, w));
            assert!(matches!(r.unwrap(), LeaseEvent::Ignored { .. }), "{reason}");
        }
        for reason in ["BOUND6", "ROUTERADVERT", "INFORM6", "EXPIRE6"] {
            let (r, _) =
                testenv::with(&[("reason", reason), ("interface", "eth2"), ("new_dhcp6_ia_na1_ia_addr1", "junk;$(id)")], |e, w| {
                    event(e, w)
                });
            assert_eq!(r.unwrap(), LeaseEvent::Changed { ifname: "eth2".into() }, "{reason}");
        }
        let (r, _) = testenv::with(&[("reason", "NOCARRIER"), ("interface", "eth2")], |e, w| event(e, w));
        assert_eq!(r.unwrap(), LeaseEvent::Gone { ifname: "eth2".into() });
    }

    #[test]
    fn bad_cidr_rejects() {
        let (r, _) = testenv::with(
            &[("reason", "BOUND"), ("interface", "eth2"), ("new_ip_address", "198.51.100.12"), ("new_subnet_cidr", "33")],
            |e, w| event(e, w),
        );
        assert!(r.unwrap_err().to_string().starts_with("new_subnet_cidr"));
    }
}
