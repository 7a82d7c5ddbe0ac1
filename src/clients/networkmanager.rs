//! NetworkManager dispatcher: `$1` interface, `$2` action; NM's view of the IPv4 configuration in
//! IP4_* (address "a/len gw", gateway, routes "dst/len next-hop metric"). At down time NM passes no
//! IP variables at all, so `Gone` relies on stronghost's own record.

use super::{LeaseEvent, ignored};
use crate::model::lease::{Env, Lease, StaticRoute, check_address, first_router};
use crate::model::net::{InField, Invalid, Ipv4Net, check_ifname, check_unicast, parse_ipv4};

/// The dispatcher actions the script passes on (hooks/networkmanager-dispatcher lists the same).
pub const ACTIONS: super::Reasons =
    super::Reasons { bound: &["up", "dhcp4-change", "reapply"], gone: &["down", "pre-down"], changed: &["dhcp6-change"] };

pub fn event(ifname: &str, action: &str, env: Env, warnings: &mut Vec<String>) -> Result<LeaseEvent, Invalid> {
    let up = ACTIONS.bound.contains(&action);
    let gone = ACTIONS.gone.contains(&action);
    let v6 = ACTIONS.changed.contains(&action);
    if !up && !gone && !v6 {
        return ignored(action);
    }
    check_ifname(ifname).field("interface argument")?;
    let ifname = ifname.to_string();
    if gone {
        return Ok(LeaseEvent::Gone { ifname });
    }
    // An IPv6 change, or an IPv6-only `up`: NM has set the addresses; the policy is re-read from
    // the kernel and any IPv4 lease is kept. An `up` with neither family's addresses (IPv4 still
    // in DHCP: dhcp4-change follows) changes nothing yet.
    let has = |var: &str| env(var).is_some_and(|v| !v.is_empty());
    if v6 || (!has("IP4_ADDRESS_0") && has("IP6_ADDRESS_0")) {
        return Ok(LeaseEvent::Changed { ifname });
    }
    let Some(first) = env("IP4_ADDRESS_0").filter(|v| !v.is_empty()) else {
        return ignored("no IP4_ADDRESS_0 nor IP6_ADDRESS_0");
    };
    let addr_part = first.split_ascii_whitespace().next().unwrap_or("");
    let (a, l) = addr_part.split_once('/').ok_or_else(|| Invalid::form(&first, "ADDRESS/LENGTH")).field("IP4_ADDRESS_0")?;
    let address = parse_ipv4(a).field("IP4_ADDRESS_0")?;
    let prefix_len = crate::model::lease::prefix_len(l).field("IP4_ADDRESS_0")?;
    check_address("IP4_ADDRESS_0", address, prefix_len)?;
    let gateway = first_router("IP4_GATEWAY", env("IP4_GATEWAY").filter(|g| g != "0.0.0.0").as_deref(), address, warnings);
    // NM's routes for this connection, option 121 included; each one validated on its own.
    let count: usize = env("IP4_NUM_ROUTES").and_then(|n| n.parse().ok()).unwrap_or(0).min(crate::model::lease::MAX_CLASSLESS_ROUTES);
    let mut routes = Vec::new();
    for i in 0..count {
        let name = format!("IP4_ROUTE_{i}");
        let Some(v) = env(&name) else { continue };
        let mut w = v.split_ascii_whitespace();
        let parsed = (|| -> Result<StaticRoute, Invalid> {
            let dst: Ipv4Net = w.next().unwrap_or("").parse()?;
            let nh = parse_ipv4(w.next().unwrap_or(""))?;
            Ok(StaticRoute { dst, gateway: (!nh.is_unspecified()).then_some(nh) })
        })();
        match parsed {
            Ok(r) if r.gateway.is_none_or(|g| check_unicast("next hop", g).is_ok() && g != address) => {
                if !r.dst.is_default() && !routes.iter().any(|x: &StaticRoute| x.dst == r.dst) {
                    routes.push(r);
                }
            }
            Ok(_) => warnings.push(format!("{name}: next hop is not a unicast address; route ignored")),
            Err(e) => warnings.push(format!("{name}: {e}; route ignored")),
        }
    }
    Ok(LeaseEvent::Bound { ifname, lease: Lease { address, prefix_len, gateway, routes, source: "NetworkManager".into() } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::testenv;
    use std::net::Ipv4Addr;

    #[test]
    fn up_uses_nm_view() {
        let vars = [
            ("IP4_ADDRESS_0", "198.51.100.11/24 198.51.100.1"),
            ("IP4_GATEWAY", "198.51.100.1"),
            ("IP4_NUM_ROUTES", "2"),
            ("IP4_ROUTE_0", "192.0.2.0/24 198.51.100.254 100"),
            ("IP4_ROUTE_1", "bogus"),
        ];
        let (r, w) = testenv::with(&vars, |e, w| event("eth1", "dhcp4-change", e, w));
        let LeaseEvent::Bound { lease, .. } = r.unwrap() else { panic!() };
        assert_eq!(lease.gateway, Some(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(lease.routes.len(), 1);
        assert!(w[0].starts_with("IP4_ROUTE_1"), "{w:?}");
    }

    #[test]
    fn down_needs_no_variables_and_others_are_ignored() {
        let (r, _) = testenv::with(&[], |e, w| event("eth1", "down", e, w));
        assert_eq!(r.unwrap(), LeaseEvent::Gone { ifname: "eth1".into() });
        for a in ["connectivity-change", "hostname", "vpn-up", "pre-up"] {
            let (r, _) = testenv::with(&[], |e, w| event("eth1", a, e, w));
            assert!(matches!(r.unwrap(), LeaseEvent::Ignored { .. }), "{a}");
        }
        // IPv6 only, or a DHCPv6 change: the kernel is re-read, the IPv4 lease kept.
        let (r, _) = testenv::with(&[("IP6_ADDRESS_0", "2001:db8::11/64 fe80::1")], |e, w| event("eth1", "up", e, w));
        assert_eq!(r.unwrap(), LeaseEvent::Changed { ifname: "eth1".into() });
        let (r, _) = testenv::with(&[("IP4_ADDRESS_0", "198.51.100.11/24 198.51.100.1")], |e, w| event("eth1", "dhcp6-change", e, w));
        assert_eq!(r.unwrap(), LeaseEvent::Changed { ifname: "eth1".into() });
        let (r, _) = testenv::with(&[], |e, w| event("eth1", "up", e, w));
        assert!(matches!(r.unwrap(), LeaseEvent::Ignored { .. }));
        let (r, _) = testenv::with(&[("IP4_ADDRESS_0", "198.51.100.11/24;reboot")], |e, w| event("eth1", "up", e, w));
        assert!(r.unwrap_err().to_string().starts_with("IP4_ADDRESS_0"));
    }
}
