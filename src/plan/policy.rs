//! Deciding: the strong-host policy an interface should have. Pure code, no I/O.
//!
//! Per managed interface K with table T(K), for each family K has addresses of:
//!
//! ```text
//! prio P     to <n> lookup main suppress_prefixlength len(n)-1 suppress_ifgroup G
//!                                            for every network n directly connected through an
//!                                            unmanaged interface (docker0, a tunnel's peer), shared
//! prio P+4   fwmark 0/M goto F               shared: packets without stronghost's mark skip the
//!                                            fwmark rules
//! prio P+5   fwmark M/M lookup main          shared: replies of connections that arrived on an
//!                                            unmanaged interface (a container's, to the host)
//! prio P+6…  fwmark <prefix>/<bits> goto …   shared: the mark tree's inner nodes (below)
//! prio L(K)  fwmark V(K)/M lookup T(K)       replies of connections that arrived on K
//! prio F     from <a>     lookup T(K)        for every address a on K (IPv6: global and unique-local)
//! prio F+10  oif K        lookup T(K)
//! IPv4 table T(K): <prefix> dev K scope link src a        for every on-link prefix
//!                  default via <gw> dev K src a           when a gateway is known
//!                  <dst> via <gw> dev K src a             option 121 routes
//!                  unreachable default metric 4294967295  always: refuse instead of leaking
//! IPv6 table T(K): <prefix> dev K                         address and router-advertised on-link prefixes
//!                  fe80::/64 dev K                        link-local traffic bound to K
//!                  default via <router> dev K             the router that advertises itself on K
//!                  unreachable default metric 4294967295
//! ```
//! IPv6 routes carry no `src`: the kernel's source selection already prefers an address of the
//! outgoing interface (RFC 6724 rule 5), and K may have several (SLAAC, temporary, DHCPv6).
//!
//! Traffic from K's addresses or bound to K meets T(K) and nothing else of main's but the networks
//! directly connected through unmanaged interfaces: a container bridge, a tunnel's own peer subnet.
//! A route of main via a gateway through an unmanaged interface — a VPN's `0.0.0.0/1`, a default
//! through a tunnel — never carries it; unbound traffic, which no rule of stronghost matches, still
//! takes main (and the VPN). The suppressions keep the `to` rules to what they are for: a route
//! less specific than the network (the tunnel's default, once the network's own route is gone) or
//! through a managed interface (group G) falls through to T(K). The `unreachable` terminator also
//! stops a socket bound to K's address but to another device from escaping through that device's
//! table.
//!
//! The kernel walks the rules in order, one comparison each, so a reply of the last of N
//! interfaces would compare N `fwmark` rules before its own. The `fwmark` rules are therefore the
//! leaves of a binary tree over V(K)'s bits: an inner node at depth j tests the slot's (j+1)-th bit
//! and jumps (`goto`) over its left subtree when it is set, so a marked packet meets at most
//! `depth` inner nodes and its leaf, whatever N is. Every node's priority is its place in the
//! complete tree's preorder, a function of the slot alone: an interface coming or going adds or
//! removes its own leaf and never moves another's. Inner nodes are shared: a leaf without them, a
//! node without leaves below it, or a `goto` to a priority without a rule (the kernel then goes
//! on with the next rule) all route exactly as the plain list would, only with more comparisons.
//! With little room below main's 32766 the tree is shallower and a leaf priority holds several
//! leaves (a bucket), compared one by one.
//!
//! Connections are K's when they arrive on K: the receive filter marks them (conntrack mark V(K))
//! and gives their reply packets that mark, so a reply routed as another address's packet — from a
//! container behind DNAT, from a host behind a port forward — still leaves by K (fwmark rule).
//! Marks are a field, M = `mark_mask`: V(K) is T(K)'s place in the table range (1, 2, …) shifted
//! into M, and all of M's bits (M/M) say "arrived on an interface stronghost does not manage",
//! whose replies main routes — through that interface, whether or not a `to` rule for its network
//! exists yet. Only M's bits are set, matched and restored: other tools' bits on a packet or a
//! connection neither stop a reply from being routed by its arrival interface nor are changed.

use crate::config::Config;
use crate::model::net::{IpNet, Ipv4Net};
use crate::model::routing::{
    Desired, Gateways, InterfaceFacts, RT_TABLE_MAIN, Route, RouteKind, Rule, Selector, TERMINATOR_METRIC, V6_METRIC,
};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

/// The shared rule that lets managed sources reach `net`, a network directly connected through an
/// unmanaged interface, by main's route for it — only by a route at least as specific as `net`,
/// and never one through a managed interface.
pub fn connected_rule(cfg: &Config, net: IpNet) -> Rule {
    Rule {
        v6: net.is_v6(),
        priority: cfg.priority,
        selector: Selector::To(net),
        table: RT_TABLE_MAIN,
        suppress: Some((u32::from(net.len.saturating_sub(1)), cfg.link_group)),
        goto: None,
    }
}

/// The shared rule that lets every packet without stronghost's mark skip the `fwmark` rules (one
/// per interface): a lookup then walks one rule, not hundreds, before the `from` rules.
pub fn unmarked_rule(cfg: &Config, v6: bool) -> Rule {
    Rule {
        v6,
        priority: cfg.priority + 4,
        selector: Selector::Unmarked(cfg.mark_mask),
        table: 0,
        suppress: None,
        goto: Some(from_priority(cfg)),
    }
}

/// The shared rule for replies of connections that arrived on an unmanaged interface: main.
pub fn unmanaged_mark_rule(cfg: &Config, v6: bool) -> Rule {
    Rule {
        v6,
        priority: unmanaged_priority(cfg),
        selector: Selector::Fwmark(unmanaged_mark(cfg), cfg.mark_mask),
        table: RT_TABLE_MAIN,
        suppress: None,
        goto: None,
    }
}

/// The mark of connections that arrived on the interface of table `t`, one of the range (the
/// configuration guarantees the field holds every one of them).
pub fn mark_of(cfg: &Config, t: u32) -> u32 {
    debug_assert!(cfg.in_table_range(t), "table {t} outside {}-{}", cfg.table_min, cfg.table_max);
    (t.saturating_sub(cfg.table_min) + 1) << cfg.mark_mask.trailing_zeros()
}

/// The mark of connections that arrived on an interface stronghost does not manage: the whole
/// field.
pub fn unmanaged_mark(cfg: &Config) -> u32 {
    cfg.mark_mask
}

/// The shared rule for replies of connections that arrived on an unmanaged interface.
pub fn unmanaged_priority(cfg: &Config) -> u32 {
    cfg.priority + 5
}

/// The mark tree's root; its nodes take the `2^(depth+1) - 1` priorities from here.
fn tree_base(cfg: &Config) -> u32 {
    cfg.priority + 6
}

/// Rules stronghost puts after the tree: the `from` and `oif` rules, and room to spare.
const AFTER_TREE: u32 = 24;

/// Bits of the slot (V(K) >> the field's shift) the range's slots need: 1 … table count.
fn slot_bits(cfg: &Config) -> u32 {
    32 - (cfg.table_max.saturating_sub(cfg.table_min) + 1).leading_zeros()
}

/// The mark tree's depth: every slot bit, unless the tree would reach main's 32766; then as many
/// as fit, leaves sharing the bucket of their first `depth` bits.
pub fn mark_tree_depth(cfg: &Config) -> u32 {
    let room = 32765u32.saturating_sub(tree_base(cfg) + AFTER_TREE);
    (0..=slot_bits(cfg)).rev().find(|d| (1u64 << (d + 1)) - 1 <= u64::from(room)).unwrap_or(0)
}

/// The priorities stronghost's rules span from `priority`: the configuration must keep them below
/// main's rule (32766).
pub fn band(cfg: &Config) -> u32 {
    from_priority(cfg) + 10 - cfg.priority
}

/// The preorder index of the node at depth `j` with prefix `q` (its first `j` slot bits) in the
/// complete tree of depth `d`: going left passes the node itself, going right also its whole
/// left subtree (2^(d-i+1) - 1 nodes at depth i).
fn node_index(d: u32, j: u32, q: u32) -> u32 {
    (1..=j).map(|i| if (q >> (j - i)) & 1 == 1 { 1 << (d - i + 1) } else { 1 }).sum()
}

/// The slot of table `t`: V(t) without the field's shift.
fn slot(cfg: &Config, t: u32) -> u32 {
    t.saturating_sub(cfg.table_min) + 1
}

/// The priority of table `t`'s `fwmark` rule: its leaf (or bucket) in the mark tree.
pub fn fwmark_priority(cfg: &Config, t: u32) -> u32 {
    let (w, d) = (slot_bits(cfg), mark_tree_depth(cfg));
    tree_base(cfg) + node_index(d, d, slot(cfg, t) >> (w - d))
}

/// The first round ten after the tree.
pub fn from_priority(cfg: &Config) -> u32 {
    let last = tree_base(cfg) + ((1 << (mark_tree_depth(cfg) + 1)) - 2);
    (last / 10 + 1) * 10
}

pub fn oif_priority(cfg: &Config) -> u32 {
    from_priority(cfg) + 10
}

/// The mark tree's inner nodes on the way to the leaves of `tables` (shared rules, the same for
/// both families): at depth j, prefix q, "the next bit is set: jump to the right child".
pub fn mark_tree(cfg: &Config, tables: impl IntoIterator<Item = u32>, v6: bool) -> BTreeSet<Rule> {
    let (w, d, shift) = (slot_bits(cfg), mark_tree_depth(cfg), cfg.mark_mask.trailing_zeros());
    let mut nodes = BTreeSet::new();
    for t in tables.into_iter().filter(|t| cfg.in_table_range(*t)) {
        let s = slot(cfg, t);
        for j in 0..d {
            let right = ((s >> (w - j - 1)) | 1) & ((1 << (j + 1)) - 1); // first j bits of s, then 1
            let low = w - j - 1; // the slot bits below the tested one
            let value = (right << low) << shift;
            let mask = (((1u32 << (j + 1)) - 1) << low) << shift;
            nodes.insert(Rule {
                v6,
                priority: tree_base(cfg) + node_index(d, j, right >> 1),
                selector: Selector::Fwmark(value, mask),
                table: 0,
                suppress: None,
                goto: Some(tree_base(cfg) + node_index(d, j + 1, right)),
            });
        }
    }
    nodes
}

/// The per-interface part of the policy. An interface without addresses of a family gets
/// nothing of that family.
pub fn desired(cfg: &Config, iface: &InterfaceFacts, table: u32, gw: &Gateways) -> Desired {
    let mut d = Desired::default();
    desired_v4(cfg, iface, table, gw, &mut d);
    desired_v6(cfg, iface, table, gw, &mut d);
    d
}

fn rules_for(cfg: &Config, iface: &InterfaceFacts, table: u32, v6: bool, addrs: impl Iterator<Item = IpAddr>, d: &mut Desired) {
    // The receive filter sets the connection mark.
    let selector = Selector::Fwmark(mark_of(cfg, table), cfg.mark_mask);
    d.rules.push(Rule { v6, priority: fwmark_priority(cfg, table), selector, table, suppress: None, goto: None });
    for a in addrs {
        let r = Rule { v6, priority: from_priority(cfg), selector: Selector::From(a), table, suppress: None, goto: None };
        if !d.rules.contains(&r) {
            d.rules.push(r);
        }
    }
    d.rules.push(Rule { v6, priority: oif_priority(cfg), selector: Selector::Oif(iface.name.clone()), table, suppress: None, goto: None });
}

fn desired_v4(cfg: &Config, iface: &InterfaceFacts, table: u32, gw: &Gateways, d: &mut Desired) {
    let Some(&(primary, _)) = iface.addresses.first() else {
        return;
    };
    rules_for(cfg, iface, table, false, iface.addresses.iter().map(|(a, _)| IpAddr::V4(*a)), d);

    let mut onlink_prefixes: Vec<(Ipv4Net, Ipv4Addr)> = Vec::new();
    for &(a, len) in &iface.addresses {
        let p = Ipv4Net::containing(a, len);
        if len < 32 && !onlink_prefixes.iter().any(|(q, _)| *q == p) {
            onlink_prefixes.push((p, a));
        }
    }
    let dev = || iface.name.clone();
    let src_for = |gw: Ipv4Addr| onlink_prefixes.iter().find(|(p, _)| p.contains(gw)).map(|(_, a)| *a);
    let via = |g: Ipv4Addr| RouteKind::Via {
        dev: dev(),
        oif: iface.index,
        gateway: IpAddr::V4(g),
        src: Some(IpAddr::V4(src_for(g).unwrap_or(primary))),
        onlink: src_for(g).is_none(),
    };
    for &(p, a) in &onlink_prefixes {
        d.routes.push(Route {
            table,
            dst: p.into(),
            metric: 0,
            kind: RouteKind::Link { dev: dev(), oif: iface.index, src: Some(IpAddr::V4(a)) },
        });
    }
    let mut extra = Vec::new();
    for r in &gw.routes {
        let dst = IpNet::from(r.dst);
        if r.dst.is_default() || onlink_prefixes.iter().any(|(p, _)| *p == r.dst) || extra.iter().any(|e: &Route| e.dst == dst) {
            continue;
        }
        let kind = match r.gateway {
            None => RouteKind::Link { dev: dev(), oif: iface.index, src: Some(IpAddr::V4(primary)) },
            Some(g) => via(g),
        };
        extra.push(Route { table, dst, metric: 0, kind });
    }
    // Gateways outside every on-link prefix (a /32 lease, an option-121 route) are marked onlink,
    // like dhclient-script does with a host route; link routes go first so the kernel can resolve them.
    extra.sort_by_key(|r| !matches!(r.kind, RouteKind::Link { .. }));
    d.routes.extend(extra);
    if let Some(g) = gw.gateway.filter(|g| !iface.addresses.iter().any(|(a, _)| a == g)) {
        d.routes.push(Route { table, dst: IpNet::DEFAULT_V4, metric: 0, kind: via(g) });
    }
    d.routes.push(Route { table, dst: IpNet::DEFAULT_V4, metric: TERMINATOR_METRIC, kind: RouteKind::Unreachable });
}

fn desired_v6(cfg: &Config, iface: &InterfaceFacts, table: u32, gw: &Gateways, d: &mut Desired) {
    if iface.addresses6.is_empty() {
        return;
    }
    rules_for(cfg, iface, table, true, iface.addresses6.iter().map(|(a, _)| IpAddr::V6(*a)), d);
    let link = |dst: IpNet| Route {
        table,
        dst,
        metric: V6_METRIC,
        kind: RouteKind::Link { dev: iface.name.clone(), oif: iface.index, src: None },
    };
    let mut prefixes: Vec<IpNet> = Vec::new();
    let own = iface.addresses6.iter().filter(|(_, l)| *l < 128).map(|&(a, l)| IpNet::containing(IpAddr::V6(a), l));
    for p in own.chain(gw.onlink6.iter().copied().filter(|p| p.is_v6() && !p.is_default())).chain([IpNet::LINK_LOCAL_V6]) {
        if !prefixes.contains(&p) {
            prefixes.push(p);
        }
    }
    d.routes.extend(prefixes.into_iter().map(link));
    if let Some(g) = gw.gateway6.filter(|g| !iface.addresses6.iter().any(|(a, _)| a == g)) {
        d.routes.push(Route {
            table,
            dst: IpNet::DEFAULT_V6,
            metric: V6_METRIC,
            kind: RouteKind::Via { dev: iface.name.clone(), oif: iface.index, gateway: IpAddr::V6(g), src: None, onlink: false },
        });
    }
    d.routes.push(Route { table, dst: IpNet::DEFAULT_V6, metric: TERMINATOR_METRIC, kind: RouteKind::Unreachable });
}

/// The per-interface IPv4 sysctls that make ARP and the reverse-path check per interface. Only
/// `net.ipv4.conf.<iface>.*` is ever written, never `all` or `default`: those belong to the admin.
/// For all four knobs the kernel acts on the larger of `all` and the interface value.
/// arp_ignore=1: answer ARP only for addresses of the receiving interface.
/// arp_announce=2: ARP requests carry the outgoing interface's own address.
/// arp_filter=1: answer only if the reply would leave by that interface.
/// rp_filter=0: the kernel's reverse-path check runs after DNAT, on the container's address, and
/// would drop connections to published ports on every interface but main's default one without
/// counting them; stronghost's own check (the receive filter, model/table.rs) runs before NAT and counts what it drops.
pub const ARP_SYSCTLS: [(&str, u32); 3] = [("arp_ignore", 1), ("arp_announce", 2), ("arp_filter", 1)];
pub const RP_SYSCTL: (&str, u32) = ("rp_filter", 0);

pub fn sysctls_wanted(cfg: &Config) -> Vec<(&'static str, u32)> {
    let mut v = Vec::new();
    if cfg.arp_sysctls {
        v.extend(ARP_SYSCTLS);
    }
    // The kernel's check is turned off only where stronghost's own (in the receive filter)
    // replaces it: with the filter off, rp_filter is left as the admin has it.
    if cfg.rp_filter && cfg.receive_filter {
        v.push(RP_SYSCTL);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lease::StaticRoute;
    use std::net::Ipv6Addr;

    /// The kernel's rule walk (net/core/fib_rules.c) over `rules` (sorted by priority) for a packet with `mark`: rules in
    /// priority order, a `goto` continues at the first rule of its target priority, or with the
    /// next rule when there is none. The table found (None: fell through to the `from` rules)
    /// and the rules compared.
    fn walk(cfg: &Config, rules: &[Rule], mark: u32) -> (Option<u32>, usize) {
        let (mut i, mut compared) = (0, 0);
        while i < rules.len() {
            let r = &rules[i];
            if r.priority >= from_priority(cfg) {
                return (None, compared);
            }
            compared += 1;
            let hit = match r.selector {
                Selector::Fwmark(v, m) => mark & m == v,
                Selector::Unmarked(m) => mark & m == 0,
                _ => unreachable!("only fwmark rules before the from rules"),
            };
            match (hit, r.goto) {
                (false, _) => i += 1,
                (true, Some(to)) => i = rules.iter().position(|x| x.priority == to).unwrap_or(i + 1),
                (true, None) => return (Some(r.table), compared),
            }
        }
        (None, compared)
    }

    /// Every mark finds its table through the tree, as through the plain list, in at most
    /// `depth` + 2 comparisons (+ the bucket's other leaves); with inner nodes missing or left
    /// over it still finds it.
    #[test]
    fn the_mark_tree_finds_every_leaf_in_depth_comparisons() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut below = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for (tables, priority, want_depth) in [((4101, 4353), 4100, 8), ((4101, 8300), 4100, 13), ((4101, 4353), 32699, 4)] {
            let cfg = Config { table_min: tables.0, table_max: tables.1, priority, mark_mask: 0xfff8_0000, ..Config::default() };
            assert_eq!(mark_tree_depth(&cfg), want_depth);
            for round in 0..40 {
                let n = 1 + below(if round % 4 == 0 { 2000 } else { 12 }) as u32;
                let used: BTreeSet<u32> = (0..n).map(|_| tables.0 + below(u64::from(tables.1 - tables.0 + 1)) as u32).collect();
                let leaf = |t: u32| Rule {
                    v6: false,
                    priority: fwmark_priority(&cfg, t),
                    selector: Selector::Fwmark(mark_of(&cfg, t), cfg.mark_mask),
                    table: t,
                    suppress: None,
                    goto: None,
                };
                // (and a `from` rule, where the unmarked packets' shortcut goes)
                let from = Rule { priority: from_priority(&cfg), selector: Selector::All, ..leaf(tables.0) };
                let mut rules: Vec<Rule> = vec![unmarked_rule(&cfg, false), unmanaged_mark_rule(&cfg, false), from];
                rules.extend(used.iter().map(|t| leaf(*t)));
                let nodes = mark_tree(&cfg, used.iter().copied(), false);
                match round % 3 {
                    0 => rules.extend(nodes),
                    1 => rules.extend(nodes.into_iter().filter(|_| below(2) == 0)), // some missing
                    _ => rules.extend(mark_tree(&cfg, (tables.0..tables.0 + 64).chain(used.iter().copied()), false)), // stale ones
                }
                assert!(rules.iter().all(|r| r.priority <= from_priority(&cfg) && r.goto.is_none_or(|g| g > r.priority)));
                rules.sort_by_key(|r| r.priority);
                let bucket = 1usize << (slot_bits(&cfg) - mark_tree_depth(&cfg));
                for t in &used {
                    let (found, compared) = walk(&cfg, &rules, mark_of(&cfg, *t) | 0x7);
                    assert_eq!(found, Some(*t), "mark of {t} with {n} leaves, round {round}");
                    if round % 3 == 0 {
                        assert!(compared <= 2 + mark_tree_depth(&cfg) as usize + bucket, "{compared} comparisons for {t}");
                    }
                }
                assert_eq!(walk(&cfg, &rules, 0x1234), (None, 1), "unmarked: one rule");
                assert_eq!(walk(&cfg, &rules, cfg.mark_mask).0, Some(RT_TABLE_MAIN), "unmanaged");
                if let Some(free) = (tables.0..=tables.1).find(|t| !used.contains(t)) {
                    assert_eq!(walk(&cfg, &rules, mark_of(&cfg, free)).0, None, "no leaf: on to the from rules");
                }
            }
        }
    }

    fn eth1(addrs: &[(Ipv4Addr, u8)]) -> InterfaceFacts {
        InterfaceFacts { name: "eth1".into(), index: 7, addresses: addrs.to_vec(), addresses6: vec![] }
    }
    const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
    const GW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    fn lines(d: &Desired) -> Vec<String> {
        d.rules.iter().map(|r| r.to_string()).chain(d.routes.iter().map(|r| r.to_string())).collect()
    }

    #[test]
    fn one_address_with_gateway() {
        let c = Config::default();
        let d = desired(&c, &eth1(&[(A, 24)]), 4102, &Gateways { gateway: Some(GW), routes: vec![], ..Default::default() });
        assert_eq!(
            lines(&d),
            [
                "priority 4117 fwmark 0x2000000/0xff000000 lookup 4102",
                "priority 4620 from 198.51.100.11 lookup 4102",
                "priority 4630 oif eth1 lookup 4102",
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
        let d = desired(
            &Config::default(),
            &eth1(&[(A, 24), (Ipv4Addr::new(198, 51, 100, 12), 24), (b, 24)]),
            4102,
            &Gateways { gateway: Some(GW), routes: vec![], ..Default::default() },
        );
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
        let d = desired(
            &Config::default(),
            &eth1(&[(A, 32)]),
            4102,
            &Gateways { gateway: Some(Ipv4Addr::new(203, 0, 113, 1)), routes, ..Default::default() },
        );
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
        assert_eq!(
            desired(&Config::default(), &eth1(&[]), 4102, &Gateways { gateway: Some(GW), routes: vec![], ..Default::default() }),
            Desired::default()
        );
    }

    #[test]
    fn ipv6_gets_its_own_rules_and_routes_without_src() {
        let mut f = eth1(&[(A, 24)]);
        let slaac: Ipv6Addr = "2001:db8:1::2ff:fe00:101".parse().unwrap();
        let dhcp6: Ipv6Addr = "2001:db8:1::1:11".parse().unwrap();
        f.addresses6 = vec![(slaac, 64), (dhcp6, 128)];
        let gw = Gateways {
            gateway: Some(GW),
            gateway6: Some("fe80::1".parse().unwrap()),
            onlink6: vec!["2001:db8:1::/64".parse().unwrap(), "2001:db8:9::/64".parse().unwrap()],
            ..Default::default()
        };
        let d = desired(&Config::default(), &f, 4102, &gw);
        let six: Vec<String> = d
            .rules
            .iter()
            .filter(|r| r.v6)
            .map(|r| format!("{} rule add {r}", r.ip()))
            .chain(d.routes.iter().filter(|r| r.dst.is_v6()).map(|r| format!("{} route add {r}", r.ip())))
            .collect();
        assert_eq!(
            six,
            [
                "ip -6 rule add priority 4117 fwmark 0x2000000/0xff000000 lookup 4102",
                "ip -6 rule add priority 4620 from 2001:db8:1::2ff:fe00:101 lookup 4102",
                "ip -6 rule add priority 4620 from 2001:db8:1::1:11 lookup 4102",
                "ip -6 rule add priority 4630 oif eth1 lookup 4102",
                "ip -6 route add 2001:db8:1::/64 dev eth1 table 4102",
                "ip -6 route add 2001:db8:9::/64 dev eth1 table 4102",
                "ip -6 route add fe80::/64 dev eth1 table 4102",
                "ip -6 route add default via fe80::1 dev eth1 table 4102",
                "ip -6 route add unreachable default metric 4294967295 table 4102",
            ]
        );
        // The IPv4 half is unchanged by the IPv6 one.
        assert_eq!(d.rules.iter().filter(|r| !r.v6).count(), 3);
    }

    #[test]
    fn ipv6_without_router_refuses_and_ipv6_only_has_no_ipv4() {
        let mut f = eth1(&[]);
        f.addresses6 = vec![("2001:db8:1::11".parse().unwrap(), 64)];
        let d = desired(&Config::default(), &f, 4102, &Gateways::default());
        assert!(d.rules.iter().all(|r| r.v6) && d.routes.iter().all(|r| r.dst.is_v6()));
        assert!(!d.routes.iter().any(|r| matches!(r.kind, RouteKind::Via { .. })));
        assert_eq!(d.routes.last().unwrap().kind, RouteKind::Unreachable);
    }
}
