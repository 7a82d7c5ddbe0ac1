//! Deciding: the strong-host policy an interface should have. Pure code, no I/O.
//!
//! Per managed interface K with table T(K), for IPv4:
//!
//! ```text
//! prio P     from all     lookup main suppress_prefixlength 0 suppress_ifgroup G   (one, shared)
//! prio P+10  from <a>     lookup T(K)        for every address a on K
//! prio P+20  oif K        lookup T(K)
//! table T(K): <prefix> dev K scope link src a        for every on-link prefix
//!             default via <gw> dev K src a           when a gateway is known
//!             <dst> via <gw> dev K src a             option 121 routes
//!             unreachable default metric 4294967295  always: refuse instead of leaking
//! ```
//!
//! Managed interfaces are put in link group G, so the first rule lets traffic from a managed address
//! use main-table routes through *unmanaged* interfaces (docker0, a VPN, ...) but never a main-table
//! route through another managed interface, however specific; everything else falls to T(K). For
//! sources that are not managed addresses the first rule changes nothing: what it does not suppress,
//! main at 32766 would have chosen anyway. The `unreachable` terminator also stops a socket bound to
//! K's address but to another device from escaping through that device's table.

use crate::config::Config;
use crate::lease::StaticRoute;
use crate::net::Ipv4Net;
use serde::Serialize;
use std::fmt;
use std::net::Ipv4Addr;

pub const RT_TABLE_MAIN: u32 = 254;
pub const TERMINATOR_METRIC: u32 = u32::MAX;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Selector {
    All,
    From(Ipv4Addr),
    Oif(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Rule {
    pub priority: u32,
    pub selector: Selector,
    pub table: u32,
    /// `suppress_prefixlength 0 suppress_ifgroup G` (only on the shared main-table rule).
    pub suppress_ifgroup: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RouteKind {
    /// On-link: `dev K scope link src a`.
    Link { dev: String, oif: u32, src: Ipv4Addr },
    /// `via gw dev K src a [onlink]`.
    Via { dev: String, oif: u32, gateway: Ipv4Addr, src: Ipv4Addr, onlink: bool },
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Route {
    pub table: u32,
    pub dst: Ipv4Net,
    pub metric: u32,
    pub kind: RouteKind,
}

/// What the kernel says about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceFacts {
    pub name: String,
    pub index: u32,
    /// IPv4 addresses with prefix lengths, primary first (kernel order).
    pub addresses: Vec<(Ipv4Addr, u8)>,
}

/// Where the gateway and extra routes come from, in order of authority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gateways {
    pub gateway: Option<Ipv4Addr>,
    pub routes: Vec<StaticRoute>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub rules: Vec<Rule>,
    /// In the order they must be added (on-link before what goes via a gateway).
    pub routes: Vec<Route>,
}

/// The shared rule that consults main for routes through unmanaged interfaces.
pub fn main_rule(cfg: &Config) -> Rule {
    Rule { priority: cfg.priority, selector: Selector::All, table: RT_TABLE_MAIN, suppress_ifgroup: Some(cfg.link_group) }
}

pub fn from_priority(cfg: &Config) -> u32 {
    cfg.priority + 10
}

pub fn oif_priority(cfg: &Config) -> u32 {
    cfg.priority + 20
}

/// The per-interface part of the policy. An interface with no IPv4 address gets nothing.
pub fn desired(cfg: &Config, iface: &InterfaceFacts, table: u32, gw: &Gateways) -> Desired {
    let mut d = Desired::default();
    let Some(&(primary, _)) = iface.addresses.first() else {
        return d;
    };
    for &(a, _) in &iface.addresses {
        let r = Rule { priority: from_priority(cfg), selector: Selector::From(a), table, suppress_ifgroup: None };
        if !d.rules.contains(&r) {
            d.rules.push(r);
        }
    }
    d.rules.push(Rule { priority: oif_priority(cfg), selector: Selector::Oif(iface.name.clone()), table, suppress_ifgroup: None });

    let mut onlink_prefixes: Vec<(Ipv4Net, Ipv4Addr)> = Vec::new();
    for &(a, len) in &iface.addresses {
        let p = Ipv4Net::containing(a, len);
        if len < 32 && !onlink_prefixes.iter().any(|(q, _)| *q == p) {
            onlink_prefixes.push((p, a));
        }
    }
    let dev = || iface.name.clone();
    let src_for = |gw: Ipv4Addr| onlink_prefixes.iter().find(|(p, _)| p.contains(gw)).map(|(_, a)| *a);
    for &(p, a) in &onlink_prefixes {
        d.routes.push(Route { table, dst: p, metric: 0, kind: RouteKind::Link { dev: dev(), oif: iface.index, src: a } });
    }
    let mut extra = Vec::new();
    for r in &gw.routes {
        if r.dst.is_default() || onlink_prefixes.iter().any(|(p, _)| *p == r.dst) || extra.iter().any(|e: &Route| e.dst == r.dst) {
            continue;
        }
        let kind = match r.gateway {
            None => RouteKind::Link { dev: dev(), oif: iface.index, src: primary },
            Some(g) => RouteKind::Via { dev: dev(), oif: iface.index, gateway: g, src: src_for(g).unwrap_or(primary), onlink: src_for(g).is_none() },
        };
        extra.push(Route { table, dst: r.dst, metric: 0, kind });
    }
    // Gateways outside every on-link prefix (a /32 lease, an option-121 route) are marked onlink,
    // like dhclient-script does with a host route; link routes go first so the kernel can resolve them.
    extra.sort_by_key(|r| !matches!(r.kind, RouteKind::Link { .. }));
    d.routes.extend(extra);
    if let Some(g) = gw.gateway.filter(|g| !iface.addresses.iter().any(|(a, _)| a == g)) {
        let src = src_for(g).unwrap_or(primary);
        d.routes.push(Route {
            table,
            dst: Ipv4Net::DEFAULT,
            metric: 0,
            kind: RouteKind::Via { dev: dev(), oif: iface.index, gateway: g, src, onlink: src_for(g).is_none() },
        });
    }
    d.routes.push(Route { table, dst: Ipv4Net::DEFAULT, metric: TERMINATOR_METRIC, kind: RouteKind::Unreachable });
    d
}

impl fmt::Display for Rule {
    /// The equivalent `ip rule` arguments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "priority {} ", self.priority)?;
        match &self.selector {
            Selector::All => write!(f, "from all")?,
            Selector::From(a) => write!(f, "from {a}")?,
            Selector::Oif(d) => write!(f, "oif {d}")?,
        }
        let table = if self.table == RT_TABLE_MAIN { "main".to_string() } else { self.table.to_string() };
        write!(f, " lookup {table}")?;
        if let Some(g) = self.suppress_ifgroup {
            write!(f, " suppress_prefixlength 0 suppress_ifgroup {g}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Route {
    /// The equivalent `ip route` arguments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RouteKind::Unreachable => write!(f, "unreachable {}", self.dst)?,
            RouteKind::Link { dev, src, .. } => write!(f, "{} dev {dev} scope link src {src}", self.dst)?,
            RouteKind::Via { dev, gateway, src, onlink, .. } => {
                write!(f, "{} via {gateway} dev {dev} src {src}", self.dst)?;
                if *onlink {
                    write!(f, " onlink")?;
                }
            }
        }
        if self.metric != 0 {
            write!(f, " metric {}", self.metric)?;
        }
        write!(f, " table {}", self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth1(addrs: &[(Ipv4Addr, u8)]) -> InterfaceFacts {
        InterfaceFacts { name: "eth1".into(), index: 7, addresses: addrs.to_vec() }
    }
    const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
    const GW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    fn lines(d: &Desired) -> Vec<String> {
        d.rules.iter().map(|r| r.to_string()).chain(d.routes.iter().map(|r| r.to_string())).collect()
    }

    #[test]
    fn one_address_with_gateway() {
        let c = Config::default();
        let d = desired(&c, &eth1(&[(A, 24)]), 4102, &Gateways { gateway: Some(GW), routes: vec![] });
        assert_eq!(
            lines(&d),
            [
                "priority 4110 from 198.51.100.11 lookup 4102",
                "priority 4120 oif eth1 lookup 4102",
                "198.51.100.0/24 dev eth1 scope link src 198.51.100.11 table 4102",
                "default via 198.51.100.1 dev eth1 src 198.51.100.11 table 4102",
                "unreachable default metric 4294967295 table 4102",
            ]
        );
    }

    #[test]
    fn no_gateway_means_refuse_not_leak() {
        let d = desired(&Config::default(), &eth1(&[(A, 24)]), 4102, &Gateways::default());
        assert!(d.routes.iter().any(|r| r.kind == RouteKind::Unreachable && r.dst.is_default()));
        assert!(!d.routes.iter().any(|r| matches!(r.kind, RouteKind::Via { .. })));
    }

    #[test]
    fn secondary_addresses_get_rules_and_prefixes() {
        let b = Ipv4Addr::new(192, 0, 2, 5);
        let d = desired(&Config::default(), &eth1(&[(A, 24), (Ipv4Addr::new(198, 51, 100, 12), 24), (b, 24)]), 4102, &Gateways { gateway: Some(GW), routes: vec![] });
        assert_eq!(d.rules.iter().filter(|r| matches!(r.selector, Selector::From(_))).count(), 3);
        let link: Vec<_> = d.routes.iter().filter(|r| matches!(r.kind, RouteKind::Link { .. })).map(|r| r.dst.to_string()).collect();
        assert_eq!(link, ["198.51.100.0/24", "192.0.2.0/24"]);
    }

    #[test]
    fn off_link_gateway_is_onlink_and_classless_routes_follow() {
        let routes = vec![
            StaticRoute { dst: "10.0.0.0/8".parse().unwrap(), gateway: Some(GW) },
            StaticRoute { dst: "192.0.2.0/24".parse().unwrap(), gateway: None },
            StaticRoute { dst: "198.51.100.0/24".parse().unwrap(), gateway: None },
        ];
        let d = desired(&Config::default(), &eth1(&[(A, 32)]), 4102, &Gateways { gateway: Some(Ipv4Addr::new(203, 0, 113, 1)), routes });
        let l = lines(&d);
        assert!(l.contains(&"192.0.2.0/24 dev eth1 scope link src 198.51.100.11 table 4102".to_string()), "{l:?}");
        assert!(l.contains(&"10.0.0.0/8 via 198.51.100.1 dev eth1 src 198.51.100.11 onlink table 4102".to_string()), "{l:?}");
        assert!(l.contains(&"default via 203.0.113.1 dev eth1 src 198.51.100.11 onlink table 4102".to_string()), "{l:?}");
        // The link route comes before the routes that need it.
        let pos = |s: &str| l.iter().position(|x| x.starts_with(s)).unwrap();
        assert!(pos("192.0.2.0/24") < pos("10.0.0.0/8"));
    }

    #[test]
    fn no_address_no_policy() {
        assert_eq!(desired(&Config::default(), &eth1(&[]), 4102, &Gateways { gateway: Some(GW), routes: vec![] }), Desired::default());
    }
}
