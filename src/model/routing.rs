//! Routing as stronghost writes it and reads it back: rules and routes in the model's terms
//! (plan/policy.rs decides them, netlink/route.rs encodes and decodes them). Data only.

use crate::model::lease::StaticRoute;
use crate::model::net::IpNet;
use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const RT_TABLE_MAIN: u32 = 254;
pub const TERMINATOR_METRIC: u32 = u32::MAX;
/// The kernel stores an IPv6 route added with metric 0 as 1024 (IP6_RT_PRIO_USER): say so.
pub const V6_METRIC: u32 = 1024;

/// The packet mark of a frame being bridged through the host (not addressed to it), which
/// br_netfilter hands to the inet hooks as if the bridge had received it: the receive filter
/// leaves it alone. The value below the whole mark field `mask`.
pub fn bridged_mark(mask: u32) -> u32 {
    mask - (1 << mask.trailing_zeros())
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Selector {
    All,
    From(IpAddr),
    Oif(String),
    /// `to <network>`.
    To(IpNet),
    /// `fwmark <mark>/<mask>` (a mark that is not 0).
    Fwmark(u32, u32),
    /// `fwmark 0/<mask>`: packets with none of the mask's bits.
    Unmarked(u32),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Rule {
    /// IPv6 rule (the kernel keeps the two families' rules apart).
    pub v6: bool,
    pub priority: u32,
    pub selector: Selector,
    pub table: u32,
    /// `suppress_prefixlength L suppress_ifgroup G` (the shared `to` rules into main).
    pub suppress: Option<(u32, u32)>,
    /// `goto <priority>` instead of a table lookup (`table` is then 0).
    pub goto: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RouteKind {
    /// On-link: `dev K scope link src a` (IPv6: `dev K`).
    Link {
        dev: String,
        oif: u32,
        src: Option<IpAddr>,
    },
    /// `via gw dev K src a [onlink]` (IPv6: `via gw dev K`).
    Via {
        dev: String,
        oif: u32,
        gateway: IpAddr,
        src: Option<IpAddr>,
        onlink: bool,
    },
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Route {
    pub table: u32,
    pub dst: IpNet,
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
    /// Global and unique-local IPv6 addresses (SLAAC, temporary, DHCPv6, static), kernel order.
    pub addresses6: Vec<(Ipv6Addr, u8)>,
}

/// Where the gateway and extra routes come from, in order of authority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gateways {
    pub gateway: Option<Ipv4Addr>,
    pub routes: Vec<StaticRoute>,
    /// The IPv6 router on K (a link-local address learned from router advertisements, or a
    /// static one): DHCPv6 carries no routes.
    pub gateway6: Option<Ipv6Addr>,
    /// On-link IPv6 prefixes the main table has through K besides the addresses' own (a
    /// router-advertised prefix next to a DHCPv6 /128).
    pub onlink6: Vec<IpNet>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub rules: Vec<Rule>,
    /// In the order they must be added (on-link before what goes via a gateway).
    pub routes: Vec<Route>,
}

impl Rule {
    /// The address a `from <address>` rule selects: the receive filter's fast path holds a pair
    /// for each of these (model/table.rs).
    pub fn source(&self) -> Option<IpAddr> {
        if let Selector::From(a) = self.selector { Some(a) } else { None }
    }

    /// A rule of the mark tree's inner nodes (plan/policy.rs `mark_tree`: shared).
    pub fn is_mark_tree_node(&self) -> bool {
        matches!(self.selector, Selector::Fwmark(..)) && self.goto.is_some()
    }

    /// The `ip` command for the rule's family.
    pub fn ip(&self) -> &'static str {
        if self.v6 { "ip -6" } else { "ip" }
    }
}

impl Route {
    pub fn ip(&self) -> &'static str {
        if self.dst.is_v6() { "ip -6" } else { "ip" }
    }
}

impl fmt::Display for Rule {
    /// The equivalent `ip rule` arguments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "priority {} ", self.priority)?;
        match &self.selector {
            Selector::All => write!(f, "from all")?,
            Selector::From(a) => write!(f, "from {a}")?,
            Selector::Oif(d) => write!(f, "oif {d}")?,
            Selector::To(n) => write!(f, "to {n}")?,
            Selector::Fwmark(m, mask) => write!(f, "fwmark {m:#x}/{mask:#x}")?,
            Selector::Unmarked(mask) => write!(f, "fwmark 0/{mask:#x}")?,
        }
        if let Some(p) = self.goto {
            return write!(f, " goto {p}");
        }
        let table = if self.table == RT_TABLE_MAIN { "main".to_string() } else { self.table.to_string() };
        write!(f, " lookup {table}")?;
        if let Some((l, g)) = self.suppress {
            write!(f, " suppress_prefixlength {l} suppress_ifgroup {g}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Route {
    /// The equivalent `ip route` arguments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RouteKind::Unreachable => write!(f, "unreachable {}", self.dst)?,
            RouteKind::Link { dev, src: Some(src), .. } => write!(f, "{} dev {dev} scope link src {src}", self.dst)?,
            RouteKind::Link { dev, src: None, .. } => write!(f, "{} dev {dev}", self.dst)?,
            RouteKind::Via { dev, gateway, src, onlink, .. } => {
                write!(f, "{} via {gateway} dev {dev}", self.dst)?;
                if let Some(src) = src {
                    write!(f, " src {src}")?;
                }
                if *onlink {
                    write!(f, " onlink")?;
                }
            }
        }
        if self.metric != 0 && !(self.dst.is_v6() && self.metric == V6_METRIC) {
            write!(f, " metric {}", self.metric)?;
        }
        write!(f, " table {}", self.table)
    }
}
