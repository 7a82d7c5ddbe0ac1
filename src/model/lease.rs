//! What a DHCP client told us about an interface, validated.
//!
//! The kernel is the authority for addresses; a lease contributes what the kernel cannot tell us:
//! the gateway and the classless static routes (option 121). Every field is attacker-controlled.

use crate::model::net::{InField, Invalid, Ipv4Net, check_ifname, check_unicast, netmask_to_len, parse_ipv4};
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

impl Lease {
    /// Written by the admin (an ifupdown static stanza), not sent by a DHCP server.
    pub fn is_static(&self) -> bool {
        self.source == "ifupdown"
    }
}

/// The hook environment, one variable at a time (values that are not UTF-8 come back lossy and
/// then fail validation).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Validates an interface address and its prefix length as a lease gives them.
pub fn check_address(field: &str, address: Ipv4Addr, prefix_len: u8) -> Result<(), Invalid> {
    check_unicast("address", address).field(field)?;
    let subnet = Ipv4Net::containing(address, prefix_len);
    if prefix_len < 31 && (address == subnet.addr || address == broadcast(subnet)) {
        return Err(Invalid::NetworkOrBroadcast { addr: address, subnet }).field(field);
    }
    Ok(())
}

/// The lease from its validated address and the raw gateway options. RFC 3442: when option 121 is
/// present the router option is ignored; a malformed option 121 is ignored as a whole (a partial
/// routing table is worse than none) and the router option applies.
pub fn assemble(
    address: Ipv4Addr,
    prefix_len: u8,
    routers: (&str, Option<String>),
    classless: Option<(&str, Result<Vec<StaticRoute>, Invalid>)>,
    source: &str,
    warnings: &mut Vec<String>,
) -> Lease {
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
        gateway = first_router(routers.0, routers.1.as_deref(), address, warnings);
    }
    Lease { address, prefix_len, gateway, routes, source: source.to_string() }
}

/// A non-empty variable that must be set.
pub fn required(env: Env, name: &str) -> Result<String, Invalid> {
    env(name).filter(|v| !v.is_empty()).ok_or_else(|| Invalid::Unset { field: name.to_string() })
}

/// An IPv4 address variable, strictly parsed.
pub fn ipv4_field(env: Env, name: &str) -> Result<Ipv4Addr, Invalid> {
    parse_ipv4(&required(env, name)?).field(name)
}

/// A netmask variable (dotted, contiguous) as a prefix length.
pub fn netmask_field(env: Env, name: &str) -> Result<u8, Invalid> {
    netmask_to_len(ipv4_field(env, name)?).field(name)
}

/// A prefix length as written in a variable (0-32, decimal, at most two digits).
pub fn prefix_len(v: &str) -> Result<u8, Invalid> {
    v.parse::<u8>()
        .ok()
        .filter(|l| *l <= 32 && v.len() <= 2 && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| Invalid::form(v, "a prefix length"))
}

/// A prefix-length variable (0-32).
pub fn prefix_field(env: Env, name: &str) -> Result<u8, Invalid> {
    prefix_len(&required(env, name)?).field(name)
}

/// An interface-name variable.
pub fn ifname_field(env: Env, name: &str) -> Result<String, Invalid> {
    let n = required(env, name)?;
    check_ifname(&n).field(name)?;
    Ok(n)
}

/// Words separated by blanks or commas, taken two by two: (destination, gateway).
fn pairs<'a>(v: &'a str, first: &'static str) -> Result<Vec<(&'a str, &'a str)>, Invalid> {
    let words: Vec<&str> = v.split(|c: char| c.is_ascii_whitespace() || c == ',').filter(|w| !w.is_empty()).collect();
    if !words.len().is_multiple_of(2) {
        return Err(Invalid::OddFields { first });
    }
    Ok(words.chunks(2).map(|c| (c[0], c[1])).collect())
}

/// "dst/len gw dst/len gw ..." (dhcpcd, udhcpc, NetworkManager) or "dst/len,gw ..." (networkd).
pub fn parse_route_pairs(v: &str) -> Result<Vec<StaticRoute>, Invalid> {
    let mut routes = Vec::new();
    for (dst, gw) in pairs(v, "destination")? {
        let dst: Ipv4Net = dst.parse()?;
        routes.push(route(dst.addr, dst.len, parse_ipv4(gw)?)?);
    }
    Ok(routes)
}

fn broadcast(n: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(n.addr) | !crate::model::net::mask(n.len))
}

/// First usable gateway of a space-separated list (option 3, or one configured gateway); a gateway
/// equal to our own address is a classic hostile value. Bad entries become warnings.
pub fn first_router(name: &str, v: Option<&str>, own: Ipv4Addr, warnings: &mut Vec<String>) -> Option<Ipv4Addr> {
    for word in v.unwrap_or("").split_ascii_whitespace() {
        match parse_ipv4(word).and_then(|g| check_gateway(g, own).map(|_| g)) {
            Ok(g) => return Some(g),
            Err(e) => warnings.push(format!("{name}: {e}; entry skipped")),
        }
    }
    None
}

fn check_gateway(g: Ipv4Addr, own: Ipv4Addr) -> Result<(), Invalid> {
    check_unicast("gateway", g)?;
    if g == own {
        return Err(Invalid::GatewayIsOwnAddress(g));
    }
    Ok(())
}

/// Validates a decoded option 121 as a whole: bounded, sane destinations and gateways, no duplicates.
fn check_routes(routes: Vec<StaticRoute>, own: Ipv4Addr) -> Result<Vec<StaticRoute>, Invalid> {
    if routes.len() > MAX_CLASSLESS_ROUTES {
        return Err(Invalid::TooManyRoutes { count: routes.len(), max: MAX_CLASSLESS_ROUTES });
    }
    let mut seen = std::collections::HashSet::new();
    for r in &routes {
        let first = r.dst.addr.octets()[0];
        if !r.dst.is_default() && (first == 0 || first == 127 || first >= 224) {
            return Err(Invalid::DestinationNotUnicast(r.dst));
        }
        if let Some(g) = r.gateway {
            check_gateway(g, own).field(&format!("route to {}", r.dst))?;
        }
        if !seen.insert(r.dst) {
            return Err(Invalid::DestinationTwice(r.dst));
        }
    }
    Ok(routes)
}

/// Debian: the option as decimal bytes, "24 192 168 1 10 0 0 1 0 198 51 100 1".
pub fn parse_rfc3442_bytes(v: &str) -> Result<Vec<StaticRoute>, Invalid> {
    let mut bytes = Vec::new();
    for w in v.split_ascii_whitespace() {
        let byte = Some(w).filter(|w| w.len() <= 3 && w.bytes().all(|b| b.is_ascii_digit())).and_then(|w| w.parse::<u8>().ok());
        bytes.push(byte.ok_or_else(|| Invalid::form(w, "a decimal byte"))?);
    }
    let mut routes = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let len = bytes[i];
        if len > 32 {
            return Err(Invalid::PrefixTooLong { len, max: 32 });
        }
        let significant = usize::from(len).div_ceil(8);
        let need = 1 + significant + 4;
        if i + need > bytes.len() {
            return Err(Invalid::TruncatedRoute);
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
pub fn parse_rfc3442_descriptors(v: &str) -> Result<Vec<StaticRoute>, Invalid> {
    let mut routes = Vec::new();
    for (descriptor, gw) in pairs(v, "descriptor")? {
        let mut parts = descriptor.split('.');
        let len: u8 = parts
            .next()
            .filter(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| Invalid::form(descriptor, "a destination descriptor"))?;
        if len > 32 {
            return Err(Invalid::PrefixTooLong { len, max: 32 });
        }
        let octets: Vec<&str> = parts.collect();
        if octets.len() != usize::from(len).div_ceil(8) {
            return Err(Invalid::OctetCount { descriptor: crate::model::net::printable(descriptor), len });
        }
        let mut dst = [0u8; 4];
        for (k, o) in octets.iter().enumerate() {
            dst[k] = parse_ipv4(&format!("{o}.0.0.0"))?.octets()[0];
        }
        routes.push(route(Ipv4Addr::from(dst), len, parse_ipv4(gw)?)?);
    }
    Ok(routes)
}

fn route(dst: Ipv4Addr, len: u8, gw: Ipv4Addr) -> Result<StaticRoute, Invalid> {
    let dst = Ipv4Net::new(dst, len)?;
    Ok(StaticRoute { dst, gateway: if gw.is_unspecified() { None } else { Some(gw) } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rhel_descriptors_decode() {
        let r = parse_rfc3442_descriptors("24.192.0.2 198.51.100.254 0 198.51.100.1").unwrap();
        assert_eq!(r[0].dst.to_string(), "192.0.2.0/24");
        assert!(r[1].dst.is_default());
        assert!(parse_rfc3442_descriptors("24.192.0 198.51.100.254").is_err());
        assert!(parse_rfc3442_descriptors("33.1.2.3.4.5 1.2.3.4").is_err());
    }

    #[test]
    fn route_pairs_decode_both_separators() {
        let a = parse_route_pairs("10.0.0.0/8 198.51.100.254 0.0.0.0/0 198.51.100.1").unwrap();
        let b = parse_route_pairs("10.0.0.0/8,198.51.100.254 0.0.0.0/0,198.51.100.1").unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].gateway, Some(Ipv4Addr::new(198, 51, 100, 254)));
        assert!(parse_route_pairs("10.0.0.1/8 1.2.3.4").is_err());
        assert!(parse_route_pairs("10.0.0.0/8").is_err());
        assert!(parse_route_pairs("10.0.0.0/8 1.2.3.4;x").is_err());
    }

    #[test]
    fn too_many_classless_routes_are_refused() {
        let many: Vec<String> = (1..=65).map(|i| format!("32 10 0 0 {i} 198 51 100 1")).collect();
        assert!(check_routes(parse_rfc3442_bytes(&many.join(" ")).unwrap(), Ipv4Addr::new(198, 51, 100, 11)).is_err());
    }
}
