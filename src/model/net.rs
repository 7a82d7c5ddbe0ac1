//! Small IP value types and the validation rules shared by every parser.
//!
//! Everything that reaches stronghost from a DHCP lease was chosen by whoever answered on the
//! segment, so the checks here are strict and say exactly what was wrong.

use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a value chosen by someone else (a lease, a hook's environment, an interface name, the
/// configuration) is refused. Displayed as one line for the log, naming the field (`In`) and the
/// value as received (made printable: it may hold anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// `value` is not of the form `expected` (e.g. "a dotted-quad IPv4 address").
    Form {
        value: String,
        expected: &'static str,
    },
    PrefixTooLong {
        len: u8,
        max: u8,
    },
    HostBitsSet {
        addr: IpAddr,
        len: u8,
    },
    NetmaskNotContiguous(Ipv4Addr),
    NotUnicast {
        what: &'static str,
        addr: Ipv4Addr,
        why: &'static str,
    },
    NetworkOrBroadcast {
        addr: Ipv4Addr,
        subnet: Ipv4Net,
    },
    GatewayIsOwnAddress(Ipv4Addr),
    TooManyRoutes {
        count: usize,
        max: usize,
    },
    DestinationNotUnicast(Ipv4Net),
    DestinationTwice(Ipv4Net),
    /// Route words that do not pair up (each route is a `first` and a gateway).
    OddFields {
        first: &'static str,
    },
    TruncatedRoute,
    OctetCount {
        descriptor: String,
        len: u8,
    },
    /// A variable or field that must be there and is not (or is empty).
    Unset {
        field: String,
    },
    /// What was wrong with one field.
    In {
        field: String,
        reason: Box<Invalid>,
    },
}

impl Invalid {
    /// `value` (as received) is not `expected`.
    pub fn form(value: &str, expected: &'static str) -> Invalid {
        Invalid::Form { value: printable(value), expected }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Form { value, expected } => write!(f, "\"{value}\" is not {expected}"),
            Invalid::PrefixTooLong { len, max } => write!(f, "prefix length {len} is over {max}"),
            Invalid::HostBitsSet { addr, len } => write!(f, "{addr}/{len} has host bits set"),
            Invalid::NetmaskNotContiguous(m) => write!(f, "netmask {m} is not contiguous"),
            Invalid::NotUnicast { what, addr, why } => write!(f, "{what} {addr} is {why}, not a unicast address"),
            Invalid::NetworkOrBroadcast { addr, subnet } => write!(f, "{addr} is the network or broadcast address of {subnet}"),
            Invalid::GatewayIsOwnAddress(g) => write!(f, "gateway {g} is the lease's own address"),
            Invalid::TooManyRoutes { count, max } => write!(f, "{count} routes, more than the {max} accepted"),
            Invalid::DestinationNotUnicast(d) => write!(f, "destination {d} is not a unicast network"),
            Invalid::DestinationTwice(d) => write!(f, "destination {d} appears twice"),
            Invalid::OddFields { first } => write!(f, "odd number of fields (each route is a {first} and a gateway)"),
            Invalid::TruncatedRoute => write!(f, "truncated route"),
            Invalid::OctetCount { descriptor, len } => write!(f, "\"{descriptor}\": octet count does not match /{len}"),
            Invalid::Unset { field } => write!(f, "{field} is not set"),
            Invalid::In { field, reason } => write!(f, "{field}: {reason}"),
        }
    }
}

impl std::error::Error for Invalid {}

/// Names the field a refused value came in (the one way context is added to an `Invalid`).
pub trait InField<T> {
    fn field(self, name: &str) -> Result<T, Invalid>;
}

impl<T> InField<T> for Result<T, Invalid> {
    fn field(self, name: &str) -> Result<T, Invalid> {
        self.map_err(|reason| Invalid::In { field: name.to_string(), reason: Box::new(reason) })
    }
}

/// An IPv4 prefix with its host bits cleared (`198.51.100.0/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Net {
    /// A prefix; refuses a length over 32 or set host bits.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, Invalid> {
        if len > 32 {
            return Err(Invalid::PrefixTooLong { len, max: 32 });
        }
        if u32::from(addr) & !mask(len) != 0 {
            return Err(Invalid::HostBitsSet { addr: IpAddr::V4(addr), len });
        }
        Ok(Ipv4Net { addr, len })
    }

    /// The network an interface address lives in (`198.51.100.11/24` → `198.51.100.0/24`).
    pub fn containing(addr: Ipv4Addr, len: u8) -> Self {
        let len = len.min(32);
        Ipv4Net { addr: Ipv4Addr::from(u32::from(addr) & mask(len)), len }
    }

    pub const DEFAULT: Ipv4Net = Ipv4Net { addr: Ipv4Addr::UNSPECIFIED, len: 0 };

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == u32::from(self.addr)
    }

    pub fn is_default(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 { write!(f, "default") } else { write!(f, "{}/{}", self.addr, self.len) }
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}/{}", self.addr, self.len))
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Ipv4Net {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let (a, l) = s.split_once('/').ok_or_else(|| Invalid::form(s, "ADDRESS/LENGTH"))?;
        let addr = parse_ipv4(a)?;
        let len = parse_u8_dec(l).ok_or_else(|| Invalid::form(l, "a prefix length"))?;
        Ipv4Net::new(addr, len)
    }
}

/// A prefix of either family, host bits cleared: what routes and rules are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    pub addr: IpAddr,
    pub len: u8,
}

impl IpNet {
    pub const DEFAULT_V4: IpNet = IpNet { addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), len: 0 };
    pub const DEFAULT_V6: IpNet = IpNet { addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED), len: 0 };
    /// fe80::/64, the link-local prefix of every IPv6 interface.
    pub const LINK_LOCAL_V6: IpNet = IpNet { addr: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), len: 64 };

    /// A prefix; refuses a length over the family's width or set host bits.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, Invalid> {
        if len > max_len(addr) {
            return Err(Invalid::PrefixTooLong { len, max: max_len(addr) });
        }
        if IpNet::containing(addr, len).addr != addr {
            return Err(Invalid::HostBitsSet { addr, len });
        }
        Ok(IpNet { addr, len })
    }

    /// The network an interface address lives in.
    pub fn containing(addr: IpAddr, len: u8) -> Self {
        let len = len.min(max_len(addr));
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask(len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask6(len))),
        };
        IpNet { addr, len }
    }

    pub fn default_for(v6: bool) -> IpNet {
        if v6 { IpNet::DEFAULT_V6 } else { IpNet::DEFAULT_V4 }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.is_v6() && IpNet::containing(ip, self.len).addr == self.addr
    }

    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    pub fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }
}

impl From<Ipv4Net> for IpNet {
    fn from(n: Ipv4Net) -> IpNet {
        IpNet { addr: IpAddr::V4(n.addr), len: n.len }
    }
}

impl fmt::Display for IpNet {
    /// As `ip` writes it: `default` for either family's default route.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 { write!(f, "default") } else { write!(f, "{}/{}", self.addr, self.len) }
    }
}

impl Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}/{}", self.addr, self.len))
    }
}

impl FromStr for IpNet {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let (a, l) = s.split_once('/').ok_or_else(|| Invalid::form(s, "ADDRESS/LENGTH"))?;
        let addr = if a.contains(':') {
            IpAddr::V6(a.parse().map_err(|_| Invalid::form(a, "an IPv6 address"))?)
        } else {
            IpAddr::V4(parse_ipv4(a)?)
        };
        let len = l.parse::<u8>().ok().filter(|_| !l.starts_with('+')).ok_or_else(|| Invalid::form(l, "a prefix length"))?;
        IpNet::new(addr, len)
    }
}

fn max_len(a: IpAddr) -> u8 {
    if a.is_ipv6() { 128 } else { 32 }
}

pub fn mask6(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len.min(128))) }
}

/// An IPv6 address that gets a strong-host policy: unicast with more than link scope (global,
/// unique-local). Link-local addresses are per-link already and need no rule.
pub fn is_routable_v6(a: Ipv6Addr) -> bool {
    let first = a.segments()[0];
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || (first & 0xffc0) == 0xfe80 || a.to_ipv4_mapped().is_some())
}

/// An address inside a network that is not one of `taken` (the host's own, which route to lo):
/// a destination in it for a route lookup. The network's own address for a single address.
pub fn probe_in(n: IpNet, taken: &[IpAddr]) -> IpAddr {
    let nth = |i: u32| match n.addr {
        IpAddr::V4(a) if n.len < 32 => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(i))),
        IpAddr::V6(a) if n.len < 128 => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(u128::from(i)))),
        a => a,
    };
    (1..64).map(nth).find(|a| n.contains(*a) && !taken.contains(a)).unwrap_or(n.addr)
}

pub fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) }
}

/// Strict dotted-quad: exactly four decimal octets, no leading zeros (which some libcs read as
/// octal), no whitespace.
pub fn parse_ipv4(s: &str) -> Result<Ipv4Addr, Invalid> {
    let bad = || Invalid::form(s, "a dotted-quad IPv4 address");
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return Err(bad());
    }
    let mut octets = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        octets[i] = parse_u8_dec(p).ok_or_else(bad)?;
    }
    Ok(Ipv4Addr::from(octets))
}

fn parse_u8_dec(s: &str) -> Option<u8> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// A netmask must be contiguous ones then zeros; returns its prefix length.
pub fn netmask_to_len(m: Ipv4Addr) -> Result<u8, Invalid> {
    let v = u32::from(m);
    let len = v.leading_ones();
    if v.checked_shl(len).unwrap_or(0) != 0 {
        return Err(Invalid::NetmaskNotContiguous(m));
    }
    Ok(len as u8)
}

/// An address that may be configured on an interface or used as a gateway: plain unicast.
pub fn check_unicast(what: &'static str, a: Ipv4Addr) -> Result<(), Invalid> {
    let why = if a.is_unspecified() {
        "unspecified"
    } else if a.is_loopback() {
        "loopback"
    } else if a.is_multicast() {
        "multicast"
    } else if a.is_broadcast() {
        "broadcast"
    } else if u32::from(a) >> 24 == 0 {
        "in 0.0.0.0/8"
    } else if u32::from(a) >> 28 == 0xf {
        "reserved (240.0.0.0/4)"
    } else {
        return Ok(());
    };
    Err(Invalid::NotUnicast { what, addr: a, why })
}

/// What the kernel accepts as an interface name (`dev_valid_name`): 1 to 15 bytes, not `.` or
/// `..`, no `/`, `:` or byte its `isspace` calls a space (which includes 0xa0, a byte of many
/// UTF-8 letters). Anything else — quotes, `;`, `*`, `$`, non-ASCII letters — is a name like any
/// other, never passed through a shell.
pub fn check_ifname(name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name.bytes().all(|b| !matches!(b, b'/' | b':' | b' ' | 0x09..=0x0d | 0xa0 | 0))
        // What a name that is not UTF-8 reads as: not the kernel's name, and no lookup finds it.
        && !name.contains('\u{fffd}');
    if ok { Ok(()) } else { Err(Invalid::form(name, "a valid interface name")) }
}

/// A value quoted for a log line: at most 64 characters, control bytes escaped.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(|c| c.escape_debug()).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_quad_is_strict() {
        assert_eq!(parse_ipv4("198.51.100.11").unwrap(), Ipv4Addr::new(198, 51, 100, 11));
        for bad in ["", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", " 1.2.3.4", "1.2.3.4;id", "1..3.4", "0x1.2.3.4"] {
            assert!(parse_ipv4(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn netmasks_must_be_contiguous() {
        assert_eq!(netmask_to_len(Ipv4Addr::new(255, 255, 255, 0)).unwrap(), 24);
        assert_eq!(netmask_to_len(Ipv4Addr::new(255, 255, 255, 255)).unwrap(), 32);
        assert_eq!(netmask_to_len(Ipv4Addr::new(0, 0, 0, 0)).unwrap(), 0);
        assert!(netmask_to_len(Ipv4Addr::new(255, 0, 255, 0)).is_err());
        assert!(netmask_to_len(Ipv4Addr::new(255, 255, 255, 1)).is_err());
    }

    #[test]
    fn prefixes_refuse_host_bits() {
        assert!("198.51.100.0/24".parse::<Ipv4Net>().is_ok());
        assert!("198.51.100.1/24".parse::<Ipv4Net>().is_err());
        assert!("10.0.0.0/33".parse::<Ipv4Net>().is_err());
        assert_eq!(Ipv4Net::containing(Ipv4Addr::new(198, 51, 100, 11), 24).to_string(), "198.51.100.0/24");
    }

    #[test]
    fn unicast_check_names_the_problem() {
        assert!(check_unicast("router", Ipv4Addr::new(198, 51, 100, 1)).is_ok());
        let e = check_unicast("router", Ipv4Addr::new(224, 0, 0, 1)).unwrap_err().to_string();
        assert!(e.contains("router") && e.contains("multicast"));
        assert!(check_unicast("router", Ipv4Addr::BROADCAST).is_err());
        assert!(check_unicast("router", Ipv4Addr::UNSPECIFIED).is_err());
    }

    #[test]
    fn ip_prefixes_of_both_families() {
        let a: IpAddr = "2001:db8:1::11".parse().unwrap();
        assert_eq!(IpNet::containing(a, 64).to_string(), "2001:db8:1::/64");
        assert!(IpNet::containing(a, 64).contains(a));
        assert!(!IpNet::containing(a, 64).contains("2001:db8:2::1".parse().unwrap()));
        assert!(!IpNet::DEFAULT_V6.contains("198.51.100.1".parse().unwrap()));
        assert!(IpNet::new(a, 64).is_err() && IpNet::new(a, 129).is_err() && IpNet::new(a, 128).is_ok());
        assert_eq!(IpNet::DEFAULT_V6.to_string(), "default");
        assert_eq!(IpNet::from("198.51.100.0/24".parse::<Ipv4Net>().unwrap()).to_string(), "198.51.100.0/24");
        for (s, routable) in [
            ("2001:db8::1", true),
            ("fd00::1", true),
            ("fe80::1", false),
            ("ff02::1", false),
            ("::1", false),
            ("::", false),
            ("::ffff:1.2.3.4", false),
        ] {
            assert_eq!(is_routable_v6(s.parse().unwrap()), routable, "{s}");
        }
    }

    #[test]
    fn interface_names_follow_kernel_rules() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("enp0s31f6.100").is_ok());
        for odd in ["a;b", "e'q", "e\"q", "e*", "e`x`", "e$IFS", "e|x", "-x", "e.tmp1", "eé", "e\u{1}"] {
            assert!(check_ifname(odd).is_ok(), "{odd:?} refused, the kernel takes it");
        }
        for bad in ["", ".", "..", "a/b", "eth0:1", "with space", "sixteen-chars-xx", "a\nb", "a\tb", "eà"] {
            assert!(check_ifname(bad).is_err(), "{bad:?} accepted");
        }
    }
}
