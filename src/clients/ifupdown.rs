//! ifupdown: if-up.d and if-post-down.d scripts get IFACE, MODE, METHOD, ADDRFAM and the stanza's
//! options as IF_* (IF_ADDRESS, IF_NETMASK, IF_GATEWAY). Only static IPv4 stanzas are ours: for
//! `dhcp` the DHCP client's hook acts, for `NetworkManager` NM's dispatcher does.
//!
//! ifupdown writes each `gateway` as a main-table default route, so a second interface on the same
//! subnet cannot have one ("RTNETLINK answers: File exists" and ifup fails). For those, the stanza
//! option `stronghost-gateway ADDRESS` gives the interface's gateway to stronghost only.

use super::{LeaseEvent, ignored};
use crate::model::lease::{Env, Lease, check_address, first_router, ifname_field};
use crate::model::net::{InField, Invalid, netmask_to_len, parse_ipv4};

pub fn event(env: Env, warnings: &mut Vec<String>) -> Result<LeaseEvent, Invalid> {
    let iface = env("IFACE").unwrap_or_default();
    if iface == "--all" || iface.is_empty() {
        return ignored("IFACE=--all");
    }
    if env("ADDRFAM").as_deref() == Some("inet6") && matches!(env("MODE").as_deref(), Some("start") | Some("stop")) {
        // Any inet6 method (static, auto, dhcp): ifup/ifdown has changed the addresses.
        return Ok(LeaseEvent::Changed { ifname: ifname_field(env, "IFACE")? });
    }
    if env("ADDRFAM").as_deref() != Some("inet") || env("METHOD").as_deref() != Some("static") {
        return ignored("not a static inet stanza");
    }
    let ifname = ifname_field(env, "IFACE")?;
    match env("MODE").as_deref() {
        Some("stop") => return Ok(LeaseEvent::Gone { ifname }),
        Some("start") => {}
        other => return ignored(other.unwrap_or("")),
    }
    // `address 198.51.100.20/24`, or `address 198.51.100.20` with `netmask 255.255.255.0` or `netmask 24`.
    let raw = crate::model::lease::required(env, "IF_ADDRESS")?;
    let (a, len) = match raw.split_once('/') {
        Some((a, l)) => (a.to_string(), Some(l.to_string())),
        None => (raw.clone(), env("IF_NETMASK").filter(|v| !v.is_empty())),
    };
    let address = parse_ipv4(&a).field("IF_ADDRESS")?;
    let prefix_len = match len {
        None => 32,
        Some(l) if l.contains('.') => parse_ipv4(&l).and_then(netmask_to_len).field("IF_NETMASK")?,
        Some(l) => crate::model::lease::prefix_len(&l).field("IF_NETMASK")?,
    };
    check_address("IF_ADDRESS", address, prefix_len)?;
    let gateway = match env("IF_STRONGHOST_GATEWAY").filter(|v| !v.is_empty()) {
        Some(g) => first_router("IF_STRONGHOST_GATEWAY", Some(&g), address, warnings),
        None => first_router("IF_GATEWAY", env("IF_GATEWAY").as_deref(), address, warnings),
    };
    Ok(LeaseEvent::Bound { ifname, lease: Lease { address, prefix_len, gateway, routes: vec![], source: "ifupdown".into() } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::testenv;

    fn ev(vars: &[(&str, &str)]) -> Result<LeaseEvent, Invalid> {
        testenv::with(vars, |e, w| event(e, w)).0
    }

    #[test]
    fn static_stanzas_only() {
        let base = [
            ("IFACE", "eth1"),
            ("ADDRFAM", "inet"),
            ("METHOD", "static"),
            ("MODE", "start"),
            ("IF_ADDRESS", "198.51.100.21"),
            ("IF_NETMASK", "255.255.255.0"),
            ("IF_GATEWAY", "198.51.100.1"),
        ];
        let LeaseEvent::Bound { lease, .. } = ev(&base).unwrap() else { panic!() };
        assert_eq!((lease.prefix_len, lease.gateway.map(|g| g.to_string())), (24, Some("198.51.100.1".into())));
        let mut cidr = base.to_vec();
        cidr[4] = ("IF_ADDRESS", "198.51.100.21/25");
        let LeaseEvent::Bound { lease, .. } = ev(&cidr).unwrap() else { panic!() };
        assert_eq!(lease.prefix_len, 25);
        for (k, v) in [("METHOD", "dhcp"), ("METHOD", "NetworkManager"), ("ADDRFAM", "ipx"), ("IFACE", "--all")] {
            let mut x = base.to_vec();
            x.retain(|(n, _)| *n != k);
            x.push((k, v));
            assert!(matches!(ev(&x).unwrap(), LeaseEvent::Ignored { .. }), "{k}={v}");
        }
        for method in ["static", "auto", "dhcp"] {
            let v6 = [("IFACE", "eth1"), ("ADDRFAM", "inet6"), ("METHOD", method), ("MODE", "start"), ("IF_ADDRESS", "2001:db8::1/64;x")];
            assert_eq!(ev(&v6).unwrap(), LeaseEvent::Changed { ifname: "eth1".into() }, "{method}");
        }
        let mut own = base.to_vec();
        own.retain(|(n, _)| *n != "IF_GATEWAY");
        own.push(("IF_STRONGHOST_GATEWAY", "198.51.100.2"));
        let LeaseEvent::Bound { lease, .. } = ev(&own).unwrap() else { panic!() };
        assert_eq!(lease.gateway.map(|g| g.to_string()), Some("198.51.100.2".into()));
        let mut stop = base.to_vec();
        stop[3] = ("MODE", "stop");
        assert_eq!(ev(&stop).unwrap(), LeaseEvent::Gone { ifname: "eth1".into() });
    }
}
