//! The kernel's objects as stronghost sees them: links, addresses, rules and routes with the
//! protocol that wrote them, and the snapshot of one read with the lookups planning makes in it.
//! Decoded by netlink/route.rs, read by gather/, data only here.

use crate::model::net::IpNet;
use crate::model::routing::{InterfaceFacts, RT_TABLE_MAIN, Route, RouteKind, Rule, Selector};
use netlink_packet_route::route::{RouteScope, RouteType};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

#[derive(Clone, Debug)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub group: u32,
    pub up: bool,
    /// The interface's IPv4 configuration (`net.ipv4.conf.<name>.*`) as the link dump carries it,
    /// for the knobs stronghost manages: no /proc read per knob and interface.
    pub sysctls: Vec<(&'static str, u32)>,
    /// The device under a macvlan or ipvlan (and their tap forms), when it is in this network
    /// namespace: it sits on the same segment and, left alone, answers ARP for the child's
    /// addresses with its own MAC. Decoded only for the links `configured` picks.
    pub lower: Option<u32>,
}

impl Link {
    pub fn sysctl(&self, knob: &str) -> Option<u32> {
        self.sysctls.iter().find(|(k, _)| *k == knob).map(|(_, v)| *v)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Address {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// IPv6 duplicate address detection failed: the address is unusable.
    pub dadfailed: bool,
}

impl Address {
    /// An address stronghost makes a policy for: any IPv4 address; with `ipv6` (the config key),
    /// an IPv6 one with more than link scope that has not failed duplicate address detection.
    pub fn gets_policy(&self, ipv6: bool) -> bool {
        match self.addr {
            IpAddr::V4(_) => true,
            IpAddr::V6(v) => ipv6 && crate::model::net::is_routable_v6(v) && !self.dadfailed,
        }
    }
}

/// A rule or route as the kernel holds it, with the protocol that says who wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct Owned<T> {
    pub protocol: u8,
    pub item: T,
}

/// Every rule, shared: the watcher's cache hands out the same list to each run rather than a
/// copy of thousands of rules.
pub type Rules = std::rc::Rc<Vec<Owned<Rule>>>;

/// A route as dumped, every field kept loose; `model()` says whether it is one the model expresses.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelRoute {
    pub table: u32,
    pub protocol: u8,
    pub kind: RouteType,
    pub scope: RouteScope,
    pub dst: IpNet,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub src: Option<IpAddr>,
    pub metric: u32,
    pub onlink: bool,
    /// Multipath, TOS, source-specific or other attributes the model does not carry.
    pub exotic: bool,
    /// A multipath route's next hops (device, gateway): a main-table default through several
    /// interfaces still names each one's gateway.
    pub nexthops: Vec<(u32, Option<IpAddr>)>,
}

impl KernelRoute {
    /// The route in the model's terms, if it is of a shape stronghost writes.
    pub fn model(&self, names: &dyn Fn(u32) -> String) -> Option<Route> {
        if self.exotic {
            return None;
        }
        let v6 = self.dst.is_v6();
        let kind = match (self.kind, self.oif, self.gateway, self.src) {
            // IPv6 reject routes hang off the loopback device.
            (RouteType::Unreachable, oif, None, None) if oif.is_none() || v6 => RouteKind::Unreachable,
            (RouteType::Unicast, Some(o), None, s) if (v6 && s.is_none()) || (!v6 && s.is_some() && self.scope == RouteScope::Link) => {
                RouteKind::Link { dev: names(o), oif: o, src: s }
            }
            (RouteType::Unicast, Some(o), Some(g), s) if self.scope == RouteScope::Universe && s.is_some() != v6 && g.is_ipv6() == v6 => {
                RouteKind::Via { dev: names(o), oif: o, gateway: g, src: s, onlink: self.onlink }
            }
            _ => return None,
        };
        Some(Route { table: self.table, dst: self.dst, metric: self.metric, kind })
    }
}
/// One read of everything the engine looks at.
pub struct Kernel {
    pub links: Vec<Link>,
    pub addrs: Vec<Address>,
    pub rules: Rules,
    pub routes: Vec<KernelRoute>,
    // Lookups a plan makes per interface, indexed once, so a plan's cost does not grow with the
    // host's links, addresses and routes. Sorted positions searched by halving: one allocation
    // per index whatever the host's size (a hash map of vectors is one per interface). Positions
    // are u32: a snapshot holds far fewer than 2^32 of anything.
    /// Positions in `links`, by name.
    by_name: Vec<u32>,
    /// (ifindex, position in `links`).
    by_index: Grouped<u32>,
    /// (ifindex, position in `addrs`), each interface's in the order the kernel gave them.
    addrs_of: Grouped<u32>,
    /// (table, position in `routes`).
    routes_in: Grouped<u32>,
    /// Main-table routes by device: (device, (route, hop)), the hop `OWN_GATEWAY` for a route
    /// through the device itself, else which of its next hops is; a multipath route appears under
    /// each of its devices.
    main_via: Grouped<(u32, u32)>,
}

/// `main_via`'s hop for a route whose own gateway (not a next hop's) is the device's.
const OWN_GATEWAY: u32 = u32::MAX;

/// Values grouped by a key (an interface index, a table): one vector sorted by key, each key's
/// values a slice of it in the order they were given (values are positions, which grow).
struct Grouped<T>(Vec<(u32, T)>);

impl<T: Ord + Copy> Grouped<T> {
    fn new(mut v: Vec<(u32, T)>) -> Grouped<T> {
        // Key, then position: an interface's addresses keep the kernel's order (the primary
        // first), and no scratch buffer as a stable sort would take.
        v.sort_unstable();
        Grouped(v)
    }

    fn get(&self, key: u32) -> impl Iterator<Item = &T> {
        let start = self.0.partition_point(|(k, _)| *k < key);
        self.0[start..].iter().take_while(move |(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl Kernel {
    pub fn new(links: Vec<Link>, addrs: Vec<Address>, rules: impl Into<Rules>, routes: Vec<KernelRoute>) -> Kernel {
        let rules = rules.into();
        let at = |i: usize| i as u32;
        let mut by_name: Vec<u32> = (0..at(links.len())).collect();
        by_name.sort_unstable_by(|&a, &b| links[a as usize].name.cmp(&links[b as usize].name));
        let by_index = Grouped::new(links.iter().enumerate().map(|(i, l)| (l.index, at(i))).collect());
        let addrs_of = Grouped::new(addrs.iter().enumerate().map(|(i, a)| (a.index, at(i))).collect());
        let routes_in = Grouped::new(routes.iter().enumerate().map(|(i, r)| (r.table, at(i))).collect());
        let mut main_via = Vec::new();
        for (i, r) in routes.iter().enumerate().filter(|(_, r)| r.table == RT_TABLE_MAIN) {
            main_via.extend(r.oif.map(|o| (o, (at(i), OWN_GATEWAY))));
            main_via.extend(r.nexthops.iter().enumerate().map(|(h, &(o, _))| (o, (at(i), at(h)))));
        }
        let main_via = Grouped::new(main_via);
        Kernel { links, addrs, rules, routes, by_name, by_index, addrs_of, routes_in, main_via }
    }

    pub fn addrs_of(&self, index: u32) -> impl Iterator<Item = &Address> {
        self.addrs_of.get(index).map(|&i| &self.addrs[i as usize])
    }

    /// The main-table routes through one interface, each with its gateway through it.
    fn main_via(&self, index: u32) -> impl Iterator<Item = (&KernelRoute, Option<IpAddr>)> {
        self.main_via.get(index).map(|&(i, hop)| {
            let r = &self.routes[i as usize];
            (r, if hop == OWN_GATEWAY { r.gateway } else { r.nexthops[hop as usize].1 })
        })
    }

    /// The routes of one table.
    pub fn routes_in(&self, table: u32) -> impl Iterator<Item = &KernelRoute> {
        self.routes_in.get(table).map(|&i| &self.routes[i as usize])
    }

    /// Networks directly connected through unmanaged interfaces (neither in `group` nor named in
    /// `managed`: being claimed now, before their group is set), as main's routes for them say: the
    /// routes the kernel made for those interfaces' own addresses (a container bridge, a tunnel's
    /// peer). Device routes someone added (a VPN's `0.0.0.0/1 dev wg0`), defaults, loopback and
    /// link-local are not among them.
    pub fn connected_unmanaged(&self, group: u32, managed: &BTreeSet<String>) -> Vec<(IpNet, u32)> {
        // Decided once per link, not per route: a name lookup for each of main's routes was most
        // of planning a host of thousands of interfaces.
        let managed_link: Vec<bool> = self.links.iter().map(|l| l.group == group || managed.contains(&l.name)).collect();
        const RTPROT_KERNEL: u8 = 2;
        // A network a managed interface is on stays its own (its table's on-link route), even if
        // an unmanaged interface is on it too.
        let managed_nets: BTreeSet<IpNet> = self
            .links
            .iter()
            .zip(&managed_link)
            .filter(|(_, m)| **m)
            .flat_map(|(l, _)| self.addrs_of(l.index))
            .map(|a| IpNet::containing(a.addr, a.prefix_len))
            .collect();
        // A set, not a list searched per route: thousands of unmanaged interfaces each on its own
        // network (containers, tunnels) made that quadratic.
        let mut out: BTreeMap<IpNet, u32> = BTreeMap::new();
        for r in self.routes_in(RT_TABLE_MAIN) {
            let usable = r.kind == RouteType::Unicast
                && r.protocol == RTPROT_KERNEL
                && r.gateway.is_none()
                && !r.exotic
                && !r.dst.is_default()
                && match r.dst.addr {
                    IpAddr::V4(a) => !a.is_loopback(),
                    IpAddr::V6(a) => crate::model::net::is_routable_v6(a),
                };
            let Some(at) = r.oif.filter(|_| usable).and_then(|o| self.position(o)) else { continue };
            let link = &self.links[at];
            if managed_link[at] || link.name == "lo" || managed_nets.contains(&r.dst) {
                continue;
            }
            // The first route's device, as main lists them, when several reach the network.
            out.entry(r.dst).or_insert(link.index);
        }
        out.into_iter().collect()
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        let i = self.by_name.partition_point(|&i| self.links[i as usize].name.as_str() < name);
        self.by_name.get(i).map(|&i| &self.links[i as usize]).filter(|l| l.name == name)
    }

    pub fn link_by_index(&self, index: u32) -> Option<&Link> {
        self.position(index).map(|i| &self.links[i])
    }

    /// Where the link with this index is in `links`.
    fn position(&self, index: u32) -> Option<usize> {
        self.by_index.get(index).next().map(|&i| i as usize)
    }

    pub fn name_of(&self, index: u32) -> String {
        self.link_by_index(index).map(|l| l.name.clone()).unwrap_or_else(|| format!("if{index}"))
    }

    pub fn facts(&self, link: &Link) -> InterfaceFacts {
        let mut f = InterfaceFacts { name: link.name.clone(), index: link.index, addresses: vec![], addresses6: vec![] };
        for a in self.addrs_of(link.index) {
            // Deprecated and tentative addresses keep their rules: sockets bound to them still
            // send. Link-local ones need none, and one that failed DAD is not the host's.
            match a.addr {
                IpAddr::V4(v) => f.addresses.push((v, a.prefix_len)),
                IpAddr::V6(v) if a.gets_policy(true) => f.addresses6.push((v, a.prefix_len)),
                IpAddr::V6(_) => {}
            }
        }
        f
    }

    /// The main-table default routes through this interface, best first.
    fn main_defaults(&self, index: u32, v6: bool) -> impl Iterator<Item = IpAddr> + '_ {
        let mut v: Vec<(u32, IpAddr)> = self
            .main_via(index)
            .filter(|(r, _)| r.dst.is_default() && r.dst.is_v6() == v6 && r.kind == RouteType::Unicast)
            .filter_map(|(r, gw)| Some((r.metric, gw?)))
            .collect();
        // Several routers on a link (IPv6 keeps one route per advertising router): the same one
        // every time, so the policy does not flap between them.
        v.sort();
        v.into_iter().map(|(_, g)| g)
    }

    /// A default route in main through this interface (static configuration, another client).
    pub fn main_gateway(&self, index: u32) -> Option<Ipv4Addr> {
        self.main_defaults(index, false).find_map(|g| match g {
            IpAddr::V4(g) => Some(g),
            IpAddr::V6(_) => None,
        })
    }

    /// Every IPv4 gateway of a default route in the snapshot: main's, best first, then those of
    /// stronghost's own tables.
    pub fn default_gateways(&self, protocol: u8) -> Vec<Ipv4Addr> {
        let mut v: Vec<(bool, u32, Ipv4Addr)> = Vec::new();
        for r in self.routes.iter().filter(|r| r.dst.is_default() && !r.dst.is_v6() && r.kind == RouteType::Unicast) {
            if r.table != RT_TABLE_MAIN && r.protocol != protocol {
                continue;
            }
            for gw in r.gateway.iter().chain(r.nexthops.iter().filter_map(|(_, g)| g.as_ref())) {
                if let IpAddr::V4(g) = gw {
                    v.push((r.table != RT_TABLE_MAIN, r.metric, *g));
                }
            }
        }
        v.sort();
        v.into_iter().map(|(_, _, g)| g).collect()
    }

    /// The IPv6 router through this interface: what router advertisements (or the admin) put in main.
    pub fn main_gateway6(&self, index: u32) -> Option<Ipv6Addr> {
        self.main_defaults(index, true).find_map(|g| match g {
            IpAddr::V6(g) => Some(g),
            IpAddr::V4(_) => None,
        })
    }

    /// IPv6 prefixes main holds as on-link through this interface (address prefixes, and the
    /// prefixes router advertisements mark on-link).
    pub fn onlink6(&self, index: u32) -> Vec<crate::model::net::IpNet> {
        self.main_via(index)
            .filter(|(r, gw)| r.dst.is_v6() && !r.dst.is_default() && r.kind == RouteType::Unicast && gw.is_none())
            .filter(|(r, _)| matches!(r.dst.addr, IpAddr::V6(a) if crate::model::net::is_routable_v6(a)))
            .map(|(r, _)| r.dst)
            .collect()
    }

    /// Something in `table` that stronghost did not write, described for the admin.
    pub fn foreign_in_table(&self, table: u32, protocol: u8) -> Option<String> {
        foreign_in(self.routes_in(table), &self.rules, table, protocol)
    }

    pub fn owned_routes(&self, table: u32, protocol: u8) -> Vec<Route> {
        let names = |i| self.name_of(i);
        self.routes_in(table).filter(|r| r.protocol == protocol).filter_map(|r| r.model(&names)).collect()
    }

    pub fn owned_rules(&self, protocol: u8) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.protocol == protocol).map(|r| &r.item)
    }
}

/// What of another tool's (another protocol) is in `table`: a route of `routes` (the table's),
/// or a rule pointing into it.
pub(crate) fn foreign_in<'a>(
    mut routes: impl Iterator<Item = &'a KernelRoute>,
    rules: &[Owned<Rule>],
    table: u32,
    protocol: u8,
) -> Option<String> {
    if let Some(r) = routes.find(|r| r.protocol != protocol) {
        return Some(format!("route {} (protocol {})", r.dst, r.protocol));
    }
    rules.iter().find(|r| r.item.table == table && r.protocol != protocol).map(|r| format!("rule `{}` (protocol {})", r.item, r.protocol))
}

/// Of every rule, those a plan for one interface looks at (plan/mod.rs `interface`, `table_for`,
/// `host`): everything in its table (its own rules; another tool's make the table not ours), its
/// `oif` rule, the `from` rules of its addresses wherever they point, the shared ones (`to`, the
/// unmarked packets' shortcut, `from all`), and of stronghost's rules for other interfaces one per
/// family — that some other interface is routed is all a plan asks of them (the shared rules stay
/// while one is). A one-interface plan then looks at a number of rules that does not grow with the
/// host's interfaces.
pub fn rules_of_one(
    rules: &[Owned<Rule>],
    ifname: &str,
    addrs: &[Address],
    table: u32,
    protocol: u8,
    range: &RangeInclusive<u32>,
) -> Vec<Owned<Rule>> {
    let mut other = [false; 2];
    rules
        .iter()
        .filter(|r| {
            let i = &r.item;
            let own = i.table == table
                || matches!(&i.selector, Selector::Oif(d) if d == ifname)
                || matches!(i.selector, Selector::From(a) if addrs.iter().any(|x| x.addr == a))
                || matches!(i.selector, Selector::To(_) | Selector::Unmarked(_) | Selector::All)
                || i.is_mark_tree_node()
                || (i.table == crate::model::routing::RT_TABLE_MAIN && matches!(i.selector, Selector::Fwmark(..)));
            // Another interface's (the first of each family found).
            own || r.protocol == protocol && range.contains(&i.table) && !std::mem::replace(&mut other[usize::from(i.v6)], true)
        })
        .cloned()
        .collect()
}

/// The `sysctl` command that sets one of a link's IPv4 knobs, for messages and `--dry-run`.
pub fn sysctl_command(ifname: &str, knob: &str, value: u32) -> String {
    // sysctl(8) swaps '.' and '/' in names: eth0.100 is written eth0/100.
    format!("sysctl -w net.ipv4.conf.{}.{knob}={value}", ifname.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, group: u32) -> Link {
        Link { index, name: name.into(), group, up: true, sysctls: vec![], lower: None }
    }

    /// A main-table route the kernel made for an address (`proto kernel`), or a default via `gw`.
    fn main_route(dst: &str, oif: u32, gw: Option<[u8; 4]>) -> KernelRoute {
        KernelRoute {
            table: RT_TABLE_MAIN,
            protocol: 2,
            kind: RouteType::Unicast,
            scope: netlink_packet_route::route::RouteScope::Link,
            dst: dst.parse().unwrap(),
            oif: Some(oif),
            gateway: gw.map(|g| IpAddr::V4(g.into())),
            src: None,
            metric: 0,
            onlink: false,
            exotic: false,
            nexthops: vec![],
        }
    }

    /// The indexes answer as the scans they replace did: by name and index, each interface's
    /// addresses in the kernel's order, main by device (a multipath route under each of its),
    /// and the networks of unmanaged interfaces once each, through the first device main lists.
    #[test]
    fn lookups_and_unmanaged_networks() {
        let links = vec![link(7, "eth1", 4100), link(2, "eth0", 4100), link(9, "br0", 0), link(11, "veth0", 0)];
        let addr = |index, a: [u8; 4], prefix_len| Address { index, addr: IpAddr::V4(a.into()), prefix_len, dadfailed: false };
        let addrs = vec![
            addr(7, [198, 51, 100, 12], 24),
            addr(2, [198, 51, 100, 11], 24),
            addr(7, [198, 51, 100, 13], 24),
            addr(9, [10, 0, 0, 1], 16),
        ];
        let mut multipath = main_route("0.0.0.0/0", 2, None);
        (multipath.oif, multipath.nexthops) = (None, vec![(2, Some([198, 51, 100, 1].into())), (7, Some([198, 51, 100, 1].into()))]);
        let routes = vec![
            main_route("198.51.100.0/24", 7, None),
            main_route("10.0.0.0/16", 11, None),
            main_route("10.0.0.0/16", 9, None),
            main_route("198.51.100.0/24", 2, None),
            main_route("172.16.0.0/12", 9, None),
            multipath,
            KernelRoute { table: 4101, ..main_route("198.51.100.0/24", 7, None) },
        ];
        let k = Kernel::new(links, addrs, Rules::new(vec![]), routes);
        assert_eq!(k.link("eth0").map(|l| l.index), Some(2));
        assert_eq!(k.link("veth0").map(|l| l.index), Some(11));
        assert!(k.link("eth").is_none() && k.link("zz").is_none() && k.link_by_index(3).is_none());
        assert_eq!(k.name_of(9), "br0");
        let of = |i| k.addrs_of(i).map(|a| a.addr.to_string()).collect::<Vec<_>>();
        assert_eq!(of(7), ["198.51.100.12", "198.51.100.13"]);
        assert!(of(11).is_empty());
        assert_eq!(k.main_gateway(7), Some([198, 51, 100, 1].into()), "a multipath hop through eth1");
        assert_eq!(k.routes_in(4101).count(), 1);
        assert_eq!(k.routes_in(RT_TABLE_MAIN).count(), 6);
        let managed = BTreeSet::from(["eth0".to_string()]);
        let nets = k.connected_unmanaged(4100, &managed);
        // 198.51.100.0/24 is a managed interface's; 10.0.0.0/16 through veth0, listed first.
        assert_eq!(nets, [("10.0.0.0/16".parse().unwrap(), 11), ("172.16.0.0/12".parse().unwrap(), 9)]);
    }
}
