//! What a DHCP client told us about an interface, validated.
//!
//! The kernel is the authority for addresses; a lease contributes what the kernel cannot tell us:
//! the gateway and the classless static routes (option 121). Every field is attacker-controlled.

use crate::net::{check_ifname, check_unicast, netmask_to_len, parse_ipv4, printable, Ipv4Net};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// More classless routes than this in one lease is refused as a whole: no real network needs it,
/// and each one costs a netlink write on every event.
pub const MAX_CLASSLESS_ROUTES: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRoute {
    pub dst: Ipv4Net,
    /// `None`: the destination is on-link (gateway 0.0.0.0 in option 121).
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// Default gateway: option 121's default route if 121 was sent, otherwise the first valid router.
    pub gateway: Option<Ipv4Addr>,
    /// Classless static routes other than the default one.
    pub routes: Vec<StaticRoute>,
    /// Which client reported it ("dhclient", ...), for status and logs.
    pub source: String,
}

/// What a hook invocation asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A lease is in force on the interface: record it and apply.
    Bound { ifname: String, lease: Lease },
    /// The interface no longer has a lease: remove its policy.
    Gone { ifname: String },
    /// Nothing for stronghost to do (reason not handled).
    Ignored { reason: String },
}

/// Parses one dhclient-script environment. `Err` means the input was invalid: the caller logs it,
/// changes nothing, and still lets dhclient keep its lease. Non-fatal problems (a bad router entry,
/// a malformed option 121) are pushed to `warnings`.
pub fn dhclient_event(
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<LeaseEvent, String> {
    let reason = env("reason").unwrap_or_default();
    let bound = matches!(reason.as_str(), "BOUND" | "RENEW" | "REBIND" | "REBOOT" | "TIMEOUT");
    let gone = matches!(reason.as_str(), "EXPIRE" | "FAIL" | "RELEASE" | "STOP");
    if !bound && !gone {
        return Ok(LeaseEvent::Ignored { reason: printable(&reason) });
    }
    let ifname = env("interface").ok_or("interface is not set")?;
    check_ifname(&ifname).map_err(|e| format!("interface: {e}"))?;
    if gone {
        return Ok(LeaseEvent::Gone { ifname });
    }

    let address = field(env, "new_ip_address", |v| {
        let a = parse_ipv4(v)?;
        check_unicast("address", a).map(|_| a)
    })?
    .ok_or("new_ip_address is not set")?;
    let prefix_len = field(env, "new_subnet_mask", |v| netmask_to_len(parse_ipv4(v)?))?
        .unwrap_or(32);
    let subnet = Ipv4Net::containing(address, prefix_len);
    if prefix_len < 31 && (address == subnet.addr || address == broadcast(subnet)) {
        return Err(format!("new_ip_address: {address} is the network or broadcast address of {subnet}"));
    }

    // RFC 3442: when option 121 is present the router option is ignored. Debian's dhclient calls it
    // new_rfc3442_classless_static_routes (decimal bytes); RHEL's new_classless_static_routes.
    let classless = if let Some(v) = env("new_rfc3442_classless_static_routes").filter(|v| !v.trim().is_empty()) {
        Some(("new_rfc3442_classless_static_routes", parse_rfc3442_bytes(&v)))
    } else {
        env("new_classless_static_routes")
            .filter(|v| !v.trim().is_empty())
            .map(|v| ("new_classless_static_routes", parse_rfc3442_descriptors(&v)))
    };
    let mut gateway = None;
    let mut routes = Vec::new();
    let mut have_classless = false;
    if let Some((name, parsed)) = classless {
        match parsed.and_then(|r| check_routes(r, address)) {
            Ok(list) => {
                have_classless = true;
                for r in list {
                    if r.dst.is_default() {
                        gateway = r.gateway;
                    } else {
                        routes.push(r);
                    }
                }
            }
            Err(e) => warnings.push(format!("{name} ignored: {e}")),
        }
    }
    if !have_classless {
        gateway = first_router(env("new_routers").as_deref(), address, warnings);
    }
    Ok(LeaseEvent::Bound {
        ifname,
        lease: Lease { address, prefix_len, gateway, routes, source: "dhclient".into() },
    })
}

fn field<T>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match env(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => parse(&v).map(Some).map_err(|e| format!("{name}: {e}")),
    }
}

fn broadcast(n: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(n.addr) | !crate::net::mask(n.len))
}

/// First usable entry of option 3; a gateway equal to our own address is a classic hostile value.
fn first_router(v: Option<&str>, own: Ipv4Addr, warnings: &mut Vec<String>) -> Option<Ipv4Addr> {
    for word in v.unwrap_or("").split_ascii_whitespace() {
        match parse_ipv4(word).and_then(|g| check_gateway(g, own).map(|_| g)) {
            Ok(g) => return Some(g),
            Err(e) => warnings.push(format!("new_routers: {e}; entry skipped")),
        }
    }
    None
}

fn check_gateway(g: Ipv4Addr, own: Ipv4Addr) -> Result<(), String> {
    check_unicast("gateway", g)?;
    if g == own {
        return Err(format!("gateway {g} is the lease's own address"));
    }
    Ok(())
}

/// Validates a decoded option 121 as a whole: bounded, sane destinations and gateways, no duplicates.
fn check_routes(routes: Vec<StaticRoute>, own: Ipv4Addr) -> Result<Vec<StaticRoute>, String> {
    if routes.len() > MAX_CLASSLESS_ROUTES {
        return Err(format!("{} routes, more than the {MAX_CLASSLESS_ROUTES} accepted", routes.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for r in &routes {
        let first = r.dst.addr.octets()[0];
        if !r.dst.is_default() && (first == 0 || first == 127 || first >= 224) {
            return Err(format!("destination {} is not a unicast network", r.dst));
        }
        if let Some(g) = r.gateway {
            check_gateway(g, own).map_err(|e| format!("route to {}: {e}", r.dst))?;
        }
        if !seen.insert(r.dst) {
            return Err(format!("destination {} appears twice", r.dst));
        }
    }
    Ok(routes)
}

/// Debian: the option as decimal bytes, "24 192 168 1 10 0 0 1 0 198 51 100 1".
pub fn parse_rfc3442_bytes(v: &str) -> Result<Vec<StaticRoute>, String> {
    let mut bytes = Vec::new();
    for w in v.split_ascii_whitespace() {
        if w.len() > 3 || !w.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{:?} is not a decimal byte", printable(w)));
        }
        bytes.push(w.parse::<u8>().map_err(|_| format!("{w} is not a byte"))?);
    }
    let mut routes = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let len = bytes[i];
        if len > 32 {
            return Err(format!("prefix length {len} is over 32"));
        }
        let significant = usize::from(len).div_ceil(8);
        let need = 1 + significant + 4;
        if i + need > bytes.len() {
            return Err("truncated route".into());
        }
        let mut dst = [0u8; 4];
        dst[..significant].copy_from_slice(&bytes[i + 1..i + 1 + significant]);
        let gw = &bytes[i + 1 + significant..i + need];
        routes.push(route(Ipv4Addr::from(dst), len, Ipv4Addr::new(gw[0], gw[1], gw[2], gw[3]))?);
        i += need;
    }
    Ok(routes)
}

/// RHEL (ISC destination descriptors): "24.192.168.1 10.0.0.1 0 198.51.100.1".
pub fn parse_rfc3442_descriptors(v: &str) -> Result<Vec<StaticRoute>, String> {
    let words: Vec<&str> = v.split(|c: char| c.is_ascii_whitespace() || c == ',').filter(|w| !w.is_empty()).collect();
    if words.len() % 2 != 0 {
        return Err("odd number of fields (each route is a descriptor and a gateway)".into());
    }
    let mut routes = Vec::new();
    for pair in words.chunks(2) {
        let mut parts = pair[0].split('.');
        let len: u8 = parts
            .next()
            .filter(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("{:?} is not a destination descriptor", printable(pair[0])))?;
        if len > 32 {
            return Err(format!("prefix length {len} is over 32"));
        }
        let octets: Vec<&str> = parts.collect();
        if octets.len() != usize::from(len).div_ceil(8) {
            return Err(format!("{:?}: octet count does not match /{len}", printable(pair[0])));
        }
        let mut dst = [0u8; 4];
        for (k, o) in octets.iter().enumerate() {
            dst[k] = parse_ipv4(&format!("{o}.0.0.0"))?.octets()[0];
        }
        routes.push(route(Ipv4Addr::from(dst), len, parse_ipv4(pair[1])?)?);
    }
    Ok(routes)
}

fn route(dst: Ipv4Addr, len: u8, gw: Ipv4Addr) -> Result<StaticRoute, String> {
    let dst = Ipv4Net::new(dst, len)?;
    Ok(StaticRoute { dst, gateway: if gw.is_unspecified() { None } else { Some(gw) } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn event(vars: &[(&str, &str)]) -> (Result<LeaseEvent, String>, Vec<String>) {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut w = Vec::new();
        let r = dhclient_event(&|k| map.get(k).cloned(), &mut w);
        (r, w)
    }

    fn bound(vars: &[(&str, &str)]) -> Lease {
        match event(vars).0.unwrap() {
            LeaseEvent::Bound { lease, .. } => lease,
            e => panic!("{e:?}"),
        }
    }

    const BASE: [(&str, &str); 4] = [
        ("reason", "BOUND"),
        ("interface", "eth1"),
        ("new_ip_address", "198.51.100.11"),
        ("new_subnet_mask", "255.255.255.0"),
    ];

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
    fn rhel_descriptors_decode() {
        let r = parse_rfc3442_descriptors("24.192.0.2 198.51.100.254 0 198.51.100.1").unwrap();
        assert_eq!(r[0].dst.to_string(), "192.0.2.0/24");
        assert!(r[1].dst.is_default());
        assert!(parse_rfc3442_descriptors("24.192.0 198.51.100.254").is_err());
        assert!(parse_rfc3442_descriptors("33.1.2.3.4.5 1.2.3.4").is_err());
    }

    #[test]
    fn malformed_121_falls_back_to_routers_with_warning() {
        for bad in ["33 1 2 3 4 5 6 7 8 9", "24 10 0", "8 11 1 2 3", "24 10 0 0 0 0 0 0 24 10 0 0 0 0 0 0", "8 10 224 0 0 1", "8 10 198 51 100 11", "x"] {
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
    fn too_many_classless_routes_are_refused() {
        let many: Vec<String> = (1..=65).map(|i| format!("32 10 0 0 {i} 198 51 100 1")).collect();
        assert!(check_routes(parse_rfc3442_bytes(&many.join(" ")).unwrap(), Ipv4Addr::new(198, 51, 100, 11)).is_err());
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
        for (k, v) in [("new_ip_address", "198.51.100.11\nid"), ("new_ip_address", "224.0.0.5"), ("new_subnet_mask", "255.0.255.0"), ("new_ip_address", "198.51.100.255"), ("interface", "../../etc")] {
            let mut vars: Vec<(&str, &str)> = BASE.iter().filter(|(n, _)| *n != k).cloned().collect();
            vars.push((k, v));
            let e = event(&vars).0.unwrap_err();
            assert!(e.starts_with(k), "{e}");
        }
    }

    #[test]
    fn reasons_are_an_allowlist() {
        assert!(matches!(event(&[("reason", "PREINIT"), ("interface", "eth1")]).0.unwrap(), LeaseEvent::Ignored { .. }));
        assert!(matches!(event(&[("reason", "BOUND6"), ("interface", "eth1")]).0.unwrap(), LeaseEvent::Ignored { .. }));
        assert_eq!(event(&[("reason", "EXPIRE"), ("interface", "eth1")]).0.unwrap(), LeaseEvent::Gone { ifname: "eth1".into() });
    }
}
