//! The receive side and the connections: nftables table `inet stronghost`. Every change is one
//! atomic transaction: creating it, changing members and removing it over nfnetlink
//! (netlink/nftables.rs); repairing a table someone else altered with `nft -f`, which merges with
//! what is there and keeps the counters.
//!
//! M is stronghost's field of the packet and connection marks (`mark_mask`); V(K) the value of
//! K's table in it (policy.rs `mark_of`); M/M, all of it, "arrived on an unmanaged interface".
//!
//! ```text
//! table bridge stronghost {
//!   chain prerouting { type filter hook prerouting priority -300; policy accept;
//!     meta pkttype other meta mark set meta mark and ~M or B    (before br_netfilter)
//!   }
//! }
//! table inet stronghost {
//!   set managed     { type ifname; }                        every managed interface K
//!   map wrong_iface { type ifname : counter; }              K : drop_T(K)
//!   map src_iface   { type ifname : counter; }              K : src_T(K)
//!   set rpf_ok      { type iface_index . iface_index; }     K . K
//!   map reverse_path { type ifname : verdict; }             K : goto reverse_T(K)
//!   map iface_mark  { type ifname : verdict; }              K : goto mark_T(K)
//!   map mark_iface  { type mark : verdict; }                V(K) : goto mark_T(K)
//!   chain receive { type filter hook prerouting priority raw; policy accept;
//!     meta mark and M == B accept                           (also first in connections, egress)
//!     iifname @managed fib daddr . iif type != local fib daddr type local
//!         counter name iifname map @wrong_iface drop
//!     meta nfproto ipv4 iifname @managed fib daddr type local
//!         iifname vmap @reverse_path                                  (with rp_filter = yes)
//!     ip6 daddr != fe80::/10 iifname @managed ... (the same, for IPv6)
//!   }
//!   chain connections { type filter hook prerouting priority mangle; policy accept;
//!     ct state new ct mark and M == 0 iifname vmap @iface_mark
//!     ct state new ct mark and M == 0 iif != "lo" fib daddr type local ct mark set ct mark and ~M or M
//!     ct direction reply ct mark and M vmap @mark_iface
//!     ct direction reply ct mark and M == M meta mark set meta mark and ~M or M
//!   }
//!   chain replies { type route hook output priority mangle; policy accept;
//!     (the two `ct direction reply` rules of `connections`)
//!   }
//!   chain egress { type filter hook postrouting priority 200; policy accept;
//!     oifname @managed fib saddr type local fib saddr . oif type != local
//!         counter name oifname map @src_iface drop
//!   }
//!   chain mark_T(K) {                                       one per member
//!     ct direction original ct mark set ct mark and ~M or V(K)
//!     ct direction reply meta mark set meta mark and ~M or V(K)
//!   }
//!   chain reverse_T(K) {                                    one per member
//!     meta mark set meta mark and ~M or V(K)
//!     iif . fib saddr . mark oif != @rpf_ok counter name rpf_T(K) drop
//!     meta mark set meta mark and ~M
//!   }
//! }
//! ```
//! `receive` drops, and counts per interface and reason, what a strong host must not accept: a
//! packet for an address of this host that is not one of the arrival interface's (wrong
//! interface), and a packet for this host whose source would not be routed back out of the
//! interface it came in by (reverse path). Both run before connection tracking and NAT, so the
//! reverse path is judged against the address the client asked for, not the container a DNAT rule
//! sends it to: published ports work on every interface. Broadcast, multicast, DHCP, forwarded
//! traffic and anything arriving on unmanaged interfaces (lo included) pass. One rule per reason for
//! both families; for IPv6, neighbour discovery and router advertisements are multicast or go to
//! link-local addresses, which the reverse-path lookup keeps on their link.
//!
//! B (`bridged_mark`) marks a frame that a bridge of the host passes on to another host: with
//! br_netfilter (libvirt, Docker) the inet hooks see it as if the bridge had received it — a VM on
//! br0 reaching eth1's address would be dropped as arriving on the wrong interface. The bridge
//! table marks what the bridge itself calls "not for this host" (pkttype otherhost), before
//! br_netfilter hands it on, and the inet chains leave such frames alone.
//!
//! The reverse path is judged as a reply of the connection would be routed: with V(K) in the
//! packet's mark for the lookup (`fib saddr . mark oif`), whose rule walk takes the `fwmark` tree
//! (policy.rs) to T(K) in a number of comparisons that does not grow with the interfaces — the
//! same table a `from <K's address>` lookup would find, without walking every interface's `from`
//! rules. The field is cleared again before the packet goes on (a packet arrives with nothing of
//! stronghost's in it but B, which has left the chain already; `check` names any other writer).
//!
//! `egress` drops, and counts, what would leave K with a source address of this host that is not
//! one of K's: traffic bound by name to an interface that has no address (the kernel then borrows
//! another interface's), a masquerade on an interface without an address, a route through K used
//! by a socket bound to another interface's address. It runs after source NAT (priority 200 >
//! srcnat 100), so it judges the address that goes on the wire, and before neighbour resolution,
//! so no ARP request is sent for such a packet either: with arp_announce=2, an ARP request only
//! ever carries a borrowed sender address when the packet behind it had a borrowed source, and
//! that packet never gets this far. Forwarded traffic (a source that is not the host's) passes.
//!
//! `connections` gives every connection that arrives on K V(K) in M of its connection mark
//! (unless M already holds something), and every reply packet of such a connection V(K) in M of
//! its packet mark, so the fwmark rule routes it by T(K): replies from a container behind DNAT or
//! a host behind a port forward leave by K. A connection to the host that arrives on an unmanaged
//! interface (a container's) gets M/M, whose replies main routes. `replies` does the same for
//! replies the host itself sends. Only M's bits are matched and written: nft cannot OR a value it
//! looked up into a mark, so each member's value is a constant of its own chain, reached by a map
//! lookup (the cost per packet does not grow with the members). Named counters survive rule
//! replacement, so per-interface drop counts are never reset by an unrelated change.

use crate::netlink::NetlinkError;
use crate::netlink::nftables::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

pub const TABLE: &str = "stronghost";
const T: &str = "inet stronghost";

/// The base chains: name, type, hook (prerouting 0, output 3, postrouting 4), priority, nft's spelling.
const CHAINS: [(&str, &str, u32, i32, &str); 4] = [
    ("receive", "filter", 0, -300, "type filter hook prerouting priority raw; policy accept;"),
    ("connections", "filter", 0, -150, "type filter hook prerouting priority mangle; policy accept;"),
    ("replies", "route", 3, -150, "type route hook output priority mangle; policy accept;"),
    ("egress", "filter", 4, 200, "type filter hook postrouting priority 200; policy accept;"),
];

/// The bridge table's one chain: at bridge prerouting, before br_netfilter (priority 0).
const BRIDGE_CHAIN: (&str, &str, u32, i32, &str) =
    ("prerouting", "filter", 0, -300, "type filter hook prerouting priority -300; policy accept;");
const B: &str = "bridge stronghost";

/// The bridge table's rule, as nft text, and as the kernel holds it.
fn bridge_text(shape: &Shape) -> (String, &'static str) {
    (
        format!("meta pkttype other meta mark set meta mark and {} or {}", hex(!shape.mark_mask), hex(shape.bridged())),
        "stronghost: bridged through, not for this host",
    )
}

fn bridge_body(shape: &Shape) -> Vec<Expr> {
    let otherhost = Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_EQ, data: vec![3] }; // PACKET_OTHERHOST
    [Expr::Meta { key: NFT_META_PKTTYPE, dreg: NFT_REG_1 }, otherhost].into_iter().chain(set_field(false, shape, shape.bridged())).collect()
}

/// The sets and maps, with nft's spelling of their types.
const SETS: [(&str, &str, &str); 7] = [
    ("set", "managed", "type ifname;"),
    ("map", "wrong_iface", "type ifname : counter;"),
    ("map", "src_iface", "type ifname : counter;"),
    ("set", "rpf_ok", "type iface_index . iface_index;"),
    ("map", "reverse_path", "type ifname : verdict;"),
    ("map", "iface_mark", "type ifname : verdict;"),
    ("map", "mark_iface", "type mark : verdict;"),
];

/// What makes the table's rules besides its members: the reverse-path rule (config `rp_filter`)
/// and the mark field (`mark_mask`, `tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub reverse_path: bool,
    pub mark_mask: u32,
    pub table_min: u32,
}

impl Shape {
    pub fn of(cfg: &crate::config::Config) -> Shape {
        Shape { reverse_path: cfg.rp_filter, mark_mask: cfg.mark_mask, table_min: cfg.table_min }
    }

    /// B: a frame bridged through the host (policy.rs `bridged_mark`).
    pub fn bridged(&self) -> u32 {
        crate::policy::bridged_mark(self.mark_mask)
    }

    /// V(K) for the interface of table `t` (policy.rs `mark_of`, which the fwmark rules use).
    pub fn mark(&self, t: u32) -> u32 {
        (t.saturating_sub(self.table_min) + 1) << self.mark_mask.trailing_zeros()
    }
}

impl Default for Shape {
    fn default() -> Self {
        Shape::of(&crate::config::Config::default())
    }
}

/// The chain that marks the connections of the member with routing table `t`.
pub fn member_chain(t: u32) -> String {
    format!("mark_{t}")
}

/// The chain that judges the reverse path of the member with routing table `t`.
pub fn reverse_chain(t: u32) -> String {
    format!("reverse_{t}")
}

fn table_of_chain(chain: &str) -> Option<u32> {
    chain.strip_prefix("mark_")?.parse().ok()
}

/// The rules a member's chain (`mark_T` or `reverse_T`) should hold, `None` for any other name.
fn chain_bodies(shape: &Shape, chain: &str) -> Option<Vec<Vec<Expr>>> {
    if let Some(t) = table_of_chain(chain) {
        return Some(member_bodies(shape, t));
    }
    let t = chain.strip_prefix("reverse_")?.parse().ok()?;
    Some(reverse_bodies(shape, t))
}

fn hex(v: u32) -> String {
    format!("{v:#010x}")
}

/// The base chains' rules, as nft text for each chain, with the comment that names them for a
/// reader.
fn rule_texts(shape: &Shape) -> Vec<(&'static str, String, &'static str)> {
    let (m, keep) = (hex(shape.mark_mask), hex(!shape.mark_mask));
    let new = format!("ct state new ct mark and {m} == 0");
    let restore_member = format!("ct direction reply ct mark and {m} vmap @mark_iface");
    let restore_unmanaged = format!("ct direction reply ct mark and {m} == {m} meta mark set meta mark and {keep} or {m}");
    let bridged = format!("meta mark and {m} == {} accept", hex(shape.bridged()));
    let mut v: Vec<(&'static str, String, &'static str)> = ["receive", "connections", "egress"]
        .into_iter()
        .map(|c| (c, bridged.clone(), "stronghost: bridged through, not for this host"))
        .collect();
    v.push((
        "receive",
        "iifname @managed fib daddr . iif type != local fib daddr type local counter name iifname map @wrong_iface drop".to_string(),
        "stronghost: wrong interface",
    ));
    if shape.reverse_path {
        let rpf = "iifname @managed fib daddr type local iifname vmap @reverse_path";
        v.push(("receive", format!("meta nfproto ipv4 {rpf}"), "stronghost: reverse path"));
        // Not for link-local destinations: the way back to a source seen from a link-local
        // address is any link's (a router's unicast advertisement from its global address).
        v.push(("receive", format!("ip6 daddr != fe80::/10 {rpf}"), "stronghost: reverse path"));
    }
    v.push(("connections", format!("{new} iifname vmap @iface_mark"), "stronghost: connection arrived on"));
    v.push((
        "connections",
        format!("{new} iif != \"lo\" fib daddr type local ct mark set ct mark and {keep} or {m}"),
        "stronghost: connection arrived on an unmanaged interface",
    ));
    for chain in ["connections", "replies"] {
        v.push((chain, restore_member.clone(), "stronghost: reply of a connection"));
        v.push((chain, restore_unmanaged.clone(), "stronghost: reply of a connection"));
    }
    v.push((
        "egress",
        "oifname @managed fib saddr type local fib saddr . oif type != local counter name oifname map @src_iface drop".into(),
        "stronghost: source not of this interface",
    ));
    v
}

/// The rules of member chain `mark_T`, as nft text with their comments.
fn member_texts(shape: &Shape, t: u32) -> [(String, &'static str); 2] {
    let (keep, v) = (hex(!shape.mark_mask), hex(shape.mark(t)));
    [
        (format!("ct direction original ct mark set ct mark and {keep} or {v}"), "stronghost: connection arrived on"),
        (format!("ct direction reply meta mark set meta mark and {keep} or {v}"), "stronghost: reply of a connection"),
    ]
}

/// The rules of member chain `reverse_T`, as nft text with their comments.
fn reverse_texts(shape: &Shape, t: u32) -> [(String, &'static str); 3] {
    let (keep, v) = (hex(!shape.mark_mask), hex(shape.mark(t)));
    [
        (format!("meta mark set meta mark and {keep} or {v}"), "stronghost: reverse path, as the reply is routed"),
        (format!("iif . fib saddr . mark oif != @rpf_ok counter name \"{}\" drop", rpf_counter(t)), "stronghost: reverse path"),
        (format!("meta mark set meta mark and {keep}"), "stronghost: reverse path judged"),
    ]
}

/// The rules of member chain `reverse_T` as the kernel holds them.
fn reverse_bodies(shape: &Shape, t: u32) -> Vec<Vec<Expr>> {
    vec![
        set_field(false, shape, shape.mark(t)).to_vec(),
        vec![
            Expr::Meta { key: NFT_META_IIF, dreg: NFT_REG_1 },
            Expr::Fib { flags: NFTA_FIB_F_SADDR | NFTA_FIB_F_MARK, result: NFT_FIB_RESULT_OIF, dreg: NFT_REG32_01 },
            Expr::Lookup { set: "rpf_ok".into(), sreg: NFT_REG_1, dreg: None, invert: true },
            Expr::Counter { name: rpf_counter(t) },
            Expr::Verdict { code: NF_DROP },
        ],
        set_field(false, shape, 0).to_vec(),
    ]
}

fn m32(v: u32) -> Vec<u8> {
    v.to_ne_bytes().to_vec() // marks and fib results are in host order
}

/// `reg1 = (reg1 & mask) ^ xor`.
fn bitwise(mask: u32, xor: u32) -> Expr {
    Expr::Bitwise { sreg: NFT_REG_1, dreg: NFT_REG_1, mask: m32(mask), xor: m32(xor) }
}

fn direction(reply: bool) -> [Expr; 2] {
    // IP_CT_DIR_ORIGINAL 0, IP_CT_DIR_REPLY 1
    [Expr::Ct { key: NFT_CT_DIRECTION, dreg: NFT_REG_1 }, Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_EQ, data: vec![u8::from(reply)] }]
}

/// `KEY set KEY and ~M or value` for the connection (ct) or the packet (meta) mark.
fn set_field(ct: bool, shape: &Shape, value: u32) -> [Expr; 3] {
    let load = if ct { Expr::Ct { key: NFT_CT_MARK, dreg: NFT_REG_1 } } else { Expr::Meta { key: NFT_META_MARK, dreg: NFT_REG_1 } };
    let store = if ct { Expr::CtSet { key: NFT_CT_MARK, sreg: NFT_REG_1 } } else { Expr::MetaSet { key: NFT_META_MARK, sreg: NFT_REG_1 } };
    [load, bitwise(!shape.mark_mask, value), store]
}

/// The rules of member chain `mark_T` as the kernel holds them.
fn member_bodies(shape: &Shape, t: u32) -> Vec<Vec<Expr>> {
    let v = shape.mark(t);
    vec![
        direction(false).into_iter().chain(set_field(true, shape, v)).collect(),
        direction(true).into_iter().chain(set_field(false, shape, v)).collect(),
    ]
}

/// The base chains' rules as the kernel holds them (what nft makes of the text above: a unit test
/// proves it), per chain: an installed rule is judged by this, not by its comment.
fn rule_bodies(shape: &Shape) -> BTreeMap<&'static str, Vec<Vec<Expr>>> {
    let local = m32(RTN_LOCAL);
    let m = shape.mark_mask;
    let iifname = Expr::Meta { key: NFT_META_IIFNAME, dreg: NFT_REG_1 };
    let managed = Expr::Lookup { set: "managed".into(), sreg: NFT_REG_1, dreg: None, invert: false };
    let daddr_local = [
        Expr::Fib { flags: NFTA_FIB_F_DADDR, result: NFT_FIB_RESULT_ADDRTYPE, dreg: NFT_REG_1 },
        Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_EQ, data: local.clone() },
    ];
    let counted_drop = |map: &str| [iifname.clone(), Expr::ObjrefMap { set: map.into(), sreg: NFT_REG_1 }, Expr::Verdict { code: NF_DROP }];
    let field = || [Expr::Ct { key: NFT_CT_MARK, dreg: NFT_REG_1 }, bitwise(m, 0)];
    let vmap = |set: &str| Expr::Lookup { set: set.into(), sreg: NFT_REG_1, dreg: Some(NFT_REG_VERDICT), invert: false };

    let mut wrong = vec![iifname.clone(), managed.clone()];
    wrong.push(Expr::Fib { flags: NFTA_FIB_F_DADDR | NFTA_FIB_F_IIF, result: NFT_FIB_RESULT_ADDRTYPE, dreg: NFT_REG_1 });
    wrong.push(Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_NEQ, data: local.clone() });
    wrong.extend(daddr_local.clone());
    wrong.extend(counted_drop("wrong_iface"));
    let bridged: Vec<Expr> = [Expr::Meta { key: NFT_META_MARK, dreg: NFT_REG_1 }, bitwise(m, 0)]
        .into_iter()
        .chain([Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_EQ, data: m32(shape.bridged()) }, Expr::Verdict { code: NF_ACCEPT }])
        .collect();
    let mut receive = vec![bridged.clone(), wrong];
    if shape.reverse_path {
        let nfproto =
            |p: u8| [Expr::Meta { key: NFT_META_NFPROTO, dreg: NFT_REG_1 }, Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_EQ, data: vec![p] }];
        let mut check = vec![iifname.clone(), managed];
        check.extend(daddr_local.clone());
        check.extend([iifname.clone(), vmap("reverse_path")]);
        let v4: Vec<Expr> = nfproto(2).into_iter().chain(check.clone()).collect(); // NFPROTO_IPV4
        let mut fe80 = [0u8; 16];
        fe80[..2].copy_from_slice(&[0xfe, 0x80]);
        let mut mask = [0u8; 16];
        mask[..2].copy_from_slice(&[0xff, 0xc0]);
        let v6: Vec<Expr> = nfproto(10) // NFPROTO_IPV6
            .into_iter()
            .chain([
                Expr::Payload { base: NFT_PAYLOAD_NETWORK_HEADER, offset: 24, len: 16, dreg: NFT_REG_1 }, // ip6 daddr
                Expr::Bitwise { sreg: NFT_REG_1, dreg: NFT_REG_1, mask: mask.to_vec(), xor: vec![0; 16] },
                Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_NEQ, data: fe80.to_vec() },
            ])
            .chain(check)
            .collect();
        receive.push(v4);
        receive.push(v6);
    }
    // `ct state new ct mark and M == 0`
    let new_unmarked: Vec<Expr> = [
        Expr::Ct { key: NFT_CT_STATE, dreg: NFT_REG_1 },
        Expr::Bitwise { sreg: NFT_REG_1, dreg: NFT_REG_1, mask: 8u32.to_ne_bytes().to_vec(), xor: vec![0; 4] }, // IP_CT_NEW's bit
        Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_NEQ, data: vec![0; 4] },
    ]
    .into_iter()
    .chain(field())
    .chain([Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_EQ, data: vec![0; 4] }])
    .collect();
    let mark_new: Vec<Expr> = new_unmarked.iter().cloned().chain([iifname, vmap("iface_mark")]).collect();
    let mark_unmanaged: Vec<Expr> = new_unmarked
        .into_iter()
        .chain([Expr::Meta { key: NFT_META_IIF, dreg: NFT_REG_1 }, Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_NEQ, data: m32(1) }]) // lo
        .chain(daddr_local)
        .chain(set_field(true, shape, m))
        .collect();
    let restore_member: Vec<Expr> = direction(true).into_iter().chain(field()).chain([vmap("mark_iface")]).collect();
    let restore_unmanaged: Vec<Expr> = direction(true)
        .into_iter()
        .chain(field())
        .chain([Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_EQ, data: m32(m) }])
        .chain(set_field(false, shape, m))
        .collect();
    let oifname = Expr::Meta { key: NFT_META_OIFNAME, dreg: NFT_REG_1 };
    let egress = vec![
        oifname.clone(),
        Expr::Lookup { set: "managed".into(), sreg: NFT_REG_1, dreg: None, invert: false },
        Expr::Fib { flags: NFTA_FIB_F_SADDR, result: NFT_FIB_RESULT_ADDRTYPE, dreg: NFT_REG_1 },
        Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_EQ, data: local.clone() },
        Expr::Fib { flags: NFTA_FIB_F_SADDR | NFTA_FIB_F_OIF, result: NFT_FIB_RESULT_ADDRTYPE, dreg: NFT_REG_1 },
        Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_NEQ, data: local },
        oifname,
        Expr::ObjrefMap { set: "src_iface".into(), sreg: NFT_REG_1 },
        Expr::Verdict { code: NF_DROP },
    ];
    BTreeMap::from([
        ("receive", receive),
        ("connections", vec![bridged.clone(), mark_new, mark_unmanaged, restore_member.clone(), restore_unmanaged.clone()]),
        ("replies", vec![restore_member, restore_unmanaged]),
        ("egress", vec![bridged, egress]),
    ])
}

pub fn drop_counter(table: u32) -> String {
    format!("drop_{table}")
}

pub fn rpf_counter(table: u32) -> String {
    format!("rpf_{table}")
}

pub fn src_counter(table: u32) -> String {
    format!("src_{table}")
}

/// The counters of one member.
fn counters_of(table: u32) -> [String; 3] {
    [drop_counter(table), rpf_counter(table), src_counter(table)]
}

/// The maps that name a member's counter for the rules of the base chains.
fn counter_maps(table: u32) -> [(&'static str, String); 2] {
    [("wrong_iface", drop_counter(table)), ("src_iface", src_counter(table))]
}

/// A member's two chains.
fn chains_of(table: u32) -> [String; 2] {
    [member_chain(table), reverse_chain(table)]
}

/// Packets dropped on one interface, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    pub wrong_interface: Option<u64>,
    pub reverse_path: Option<u64>,
    pub foreign_source: Option<u64>,
}

impl Drops {
    pub fn total(&self) -> u64 {
        self.wrong_interface.unwrap_or(0) + self.reverse_path.unwrap_or(0) + self.foreign_source.unwrap_or(0)
    }
}

/// The interfaces the table covers: name → its routing table, which names its counters
/// (`drop_T`, `rpf_T`), its chain (`mark_T`) and its mark V(T).
pub type Members = BTreeMap<String, u32>;

/// What the table should hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Want {
    pub members: Members,
    /// Interface indexes of the members (the reverse-path check compares indexes).
    pub indexes: BTreeSet<u32>,
    /// `indexes` are all of them (a full read of the host), so others are stale; otherwise the
    /// ones in the table are kept. A stale pair is harmless: it only ever says "arrived on i,
    /// routed back by i", true for whichever interface has that index.
    pub exact: bool,
    pub shape: Shape,
    /// Members beyond `members` exist: a plan for the one interface a read was scoped to names
    /// that one alone, and an empty `members` then does not mean an empty table.
    pub others: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Current {
    /// The inet table exists.
    pub exists: bool,
    /// The bridge table exists without it (what a `nft delete table inet stronghost` leaves).
    pub bridge_alone: bool,
    /// Read for this one interface only (`read_member`): the sets, maps, chains and counters
    /// below hold its entries and nothing else, and planning looks at it alone.
    pub scope: Option<String>,
    /// What the rules were judged against.
    pub shape: Shape,
    /// Every base chain and rule as stronghost writes them (for `shape` as read).
    pub rules_ok: bool,
    pub managed: BTreeSet<String>,
    pub wrong_iface: BTreeMap<String, String>,
    pub src_iface: BTreeMap<String, String>,
    /// Interface → the chain that judges its reverse path.
    pub reverse_path: BTreeMap<String, String>,
    /// Interface → the chain its new connections go to.
    pub iface_mark: BTreeMap<String, String>,
    /// Mark → the chain its replies go to.
    pub mark_iface: BTreeMap<u32, String>,
    /// Every chain besides the base chains → whether it is a member chain with the rules it
    /// should have.
    pub chains: BTreeMap<String, bool>,
    /// Maps of earlier versions are still there: 0.2's whole-word marks, 0.3's `rpf_iface`.
    pub legacy: bool,
    pub rpf_ok: BTreeSet<u32>,
    /// Counter name → packets dropped.
    pub counters: BTreeMap<String, u64>,
}

impl Current {
    /// The members, when every set, map, chain and counter agrees on them and holds nothing else.
    pub fn members(&self) -> Option<Members> {
        let m: Members = self.iface_mark.iter().map(|(n, c)| Some((n.clone(), table_of_chain(c)?))).collect::<Option<_>>()?;
        let each = m.iter().all(|(n, t)| {
            counter_maps(*t).into_iter().all(|(map, c)| self.map(map).get(n) == Some(&c))
                && counters_of(*t).iter().all(|c| self.counters.contains_key(c))
                && self.mark_iface.get(&self.shape.mark(*t)) == Some(&member_chain(*t))
                && self.reverse_path.get(n) == Some(&reverse_chain(*t))
                && chains_of(*t).iter().all(|c| self.chains.get(c) == Some(&true))
        });
        let nothing_else = self.managed.iter().eq(m.keys())
            && ["wrong_iface", "src_iface"].iter().all(|map| self.map(map).len() == m.len())
            && self.reverse_path.len() == m.len()
            && self.mark_iface.len() == m.len()
            && self.chains.len() == 2 * m.len()
            && self.counters.len() == 3 * m.len()
            && !self.legacy;
        (each && nothing_else).then_some(m)
    }

    fn map(&self, name: &str) -> &BTreeMap<String, String> {
        if name == "wrong_iface" { &self.wrong_iface } else { &self.src_iface }
    }

    fn map_mut(&mut self, name: &str) -> &mut BTreeMap<String, String> {
        if name == "wrong_iface" { &mut self.wrong_iface } else { &mut self.src_iface }
    }

    /// Packets dropped on the interface with routing table `table`, by reason.
    pub fn drops(&self, table: u32) -> Drops {
        let get = |c: String| self.counters.get(&c).copied();
        Drops { wrong_interface: get(drop_counter(table)), reverse_path: get(rpf_counter(table)), foreign_source: get(src_counter(table)) }
    }
}

fn name_of(key: &[u8]) -> String {
    String::from_utf8_lossy(key.split(|b| *b == 0).next().unwrap_or(&[])).into_owned()
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

/// Why the table could not be read or changed. Clone: a gather's result is shared by planning,
/// `status` and `check`.
#[derive(Debug, Clone)]
pub enum FilterError {
    Read(Arc<NetlinkError>),
    /// Creating the table over nfnetlink (the common path: no nft process).
    Create(Arc<NetlinkError>),
    /// Changing members, or removing the table, over nfnetlink.
    Write(Arc<NetlinkError>),
    /// nft could not be started.
    NoNft(Arc<std::io::Error>),
    /// Talking to the nft process failed.
    Nft(Arc<std::io::Error>),
    /// nft refused the script (its message).
    Refused(String),
    TimedOut(std::time::Duration),
    /// A member's name cannot be written in an nft string: the table is written over nfnetlink.
    NotText,
    /// A repair that failed, and the recreation that followed.
    Both(Box<FilterError>, Box<FilterError>),
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::Read(e) => write!(f, "reading nft table {T}: {e}"),
            FilterError::Create(e) => write!(f, "creating nft table {T} over nfnetlink failed: {e}"),
            FilterError::Write(e) => write!(f, "changing nft table {T} over nfnetlink failed: {e}"),
            FilterError::NoNft(e) => write!(f, "cannot run nft ({e}); install the nftables package or set receive_filter = no"),
            FilterError::Nft(e) => write!(f, "nft: {e}"),
            FilterError::Refused(stderr) => write!(f, "nft -f refused the receive filter: {stderr}"),
            FilterError::TimedOut(d) => {
                write!(f, "nft -f did not finish within {} s and was killed; run `stronghost sync` again", d.as_secs())
            }
            FilterError::NotText => write!(f, "a member's name cannot be written as nft text"),
            FilterError::Both(first, then) => write!(f, "{first}; recreating nft table {T} over nfnetlink failed too: {then}"),
        }
    }
}

impl std::error::Error for FilterError {}

fn read_err(e: NetlinkError) -> FilterError {
    FilterError::Read(Arc::new(e))
}

/// Whether an installed chain's rules are `want`, judged by their bodies whatever their comments
/// say: an edited rule is not ours any more.
fn same_rules(rules: Option<Vec<InstalledRule>>, want: &[Vec<Expr>]) -> bool {
    let now: Vec<Option<Vec<Expr>>> = rules.unwrap_or_default().into_iter().map(|r| r.exprs).collect();
    now.len() == want.len() && now.iter().zip(want).all(|(a, b)| a.as_ref() == Some(b))
}

/// The table's existence and its base chains and rules (`rules_ok`); `None` when it does not exist.
fn read_rules(nft: &mut Nft, shape: &Shape) -> Result<Option<Current>, FilterError> {
    let err = read_err;
    if !nft.table_exists(TABLE).map_err(err)? {
        // The bridge table alone, left by a partial removal: created anew, or removed.
        let bridge = Nft::open_family(NFPROTO_BRIDGE).map_err(|e| err(e.into()))?.table_exists(TABLE).map_err(err)?;
        return Ok(bridge.then(|| Current { bridge_alone: true, shape: *shape, ..Default::default() }));
    }
    let mut c = Current { exists: true, rules_ok: true, shape: *shape, ..Default::default() };
    let bodies = rule_bodies(shape);
    for (name, kind, hook, priority, _) in CHAINS {
        let chain = nft.chain(TABLE, name).map_err(err)?;
        let rules = nft.rules(TABLE, name).map_err(err)?;
        c.rules_ok &= chain == Some(Chain { kind: kind.into(), hook, priority, policy: 1 }) && same_rules(rules, &bodies[name]);
    }
    c.rules_ok &= read_bridge(shape)?;
    Ok(Some(c))
}

/// Whether the bridge table is as stronghost writes it.
fn read_bridge(shape: &Shape) -> Result<bool, FilterError> {
    let err = read_err;
    let mut nft = Nft::open_family(NFPROTO_BRIDGE).map_err(|e| err(e.into()))?;
    let (name, kind, hook, priority, _) = BRIDGE_CHAIN;
    Ok(nft.chain(TABLE, name).map_err(err)? == Some(Chain { kind: kind.into(), hook, priority, policy: 1 })
        && same_rules(nft.rules(TABLE, name).map_err(err)?, &[bridge_body(shape)])
        && nft.chains(TABLE).map_err(err)?.is_some_and(|c| c.len() == 1))
}

/// What an event for one interface needs of the table: its base rules, and that interface's
/// entries and chain only — looked up by key, a constant cost whatever the number of members
/// (dumping every set and counter of a 4,096-interface host costs more than the rest of the
/// event). Falls back to reading everything when the table is not as stronghost left it or the
/// interface's entries disagree: a repair rewrites the whole table.
pub fn read_member(shape: &Shape, name: &str, index: Option<u32>) -> Result<Current, FilterError> {
    let err = read_err;
    let mut nft = Nft::open().map_err(|e| err(e.into()))?;
    let Some(mut c) = read_rules(&mut nft, shape)? else { return Ok(Current { shape: *shape, ..Default::default() }) };
    if !c.exists {
        return Ok(c);
    }
    if !c.rules_ok {
        return read_members(&mut nft, c);
    }
    c.scope = Some(name.to_string());
    let key = Element::ifname(name);
    let mut element = |set: &str, key: &[u8]| nft.element(TABLE, set, key).map_err(err);
    if element("managed", &key)?.is_some() {
        c.managed.insert(name.to_string());
    }
    for map in ["wrong_iface", "src_iface"] {
        if let Some(o) = element(map, &key)?.and_then(|e| e.objref) {
            c.map_mut(map).insert(name.to_string(), o);
        }
    }
    if let Some(chain) = element("reverse_path", &key)?.and_then(|e| e.goto) {
        c.reverse_path.insert(name.to_string(), chain);
    }
    if let Some(chain) = element("iface_mark", &key)?.and_then(|e| e.goto) {
        c.iface_mark.insert(name.to_string(), chain.clone());
        if let Some(t) = table_of_chain(&chain) {
            let v = shape.mark(t);
            if let Some(to) = element("mark_iface", &m32(v))?.and_then(|e| e.goto) {
                c.mark_iface.insert(v, to);
            }
            for chain in chains_of(t) {
                let rules = nft.rules(TABLE, &chain).map_err(err)?;
                let ok = chain_bodies(shape, &chain).is_some_and(|b| same_rules(rules, &b));
                c.chains.insert(chain, ok);
            }
            for counter in counters_of(t) {
                if let Some(p) = nft.counter(TABLE, &counter).map_err(err)? {
                    c.counters.insert(counter, p);
                }
            }
        }
    }
    if let Some(i) = index
        && nft.element(TABLE, "rpf_ok", &[i.to_ne_bytes(), i.to_ne_bytes()].concat()).map_err(err)?.is_some()
    {
        c.rpf_ok.insert(i);
    }
    if c.members().is_none() {
        let rules_ok = c.rules_ok;
        return read_members(&mut nft, Current { exists: true, rules_ok, shape: *shape, ..Default::default() });
    }
    Ok(c)
}

/// Reads the table over nfnetlink; an empty `Current` when it does not exist.
pub fn read(shape: &Shape) -> Result<Current, FilterError> {
    let err = read_err;
    let mut nft = Nft::open().map_err(|e| err(e.into()))?;
    match read_rules(&mut nft, shape)? {
        Some(c) if c.exists => read_members(&mut nft, c),
        Some(c) => Ok(c),
        None => Ok(Current { shape: *shape, ..Default::default() }),
    }
}

/// Every member's entries: each set and map dumped, every chain's rules, and the counters.
fn read_members(nft: &mut Nft, mut c: Current) -> Result<Current, FilterError> {
    let err = read_err;
    let mut elements = |set: &str| nft.elements(TABLE, set).map_err(err);
    c.managed = elements("managed")?.unwrap_or_default().into_iter().map(|e| name_of(&e.key)).collect();
    for map in ["wrong_iface", "src_iface"] {
        *c.map_mut(map) = elements(map)?.unwrap_or_default().into_iter().filter_map(|e| Some((name_of(&e.key), e.objref?))).collect();
    }
    c.reverse_path = elements("reverse_path")?.unwrap_or_default().into_iter().filter_map(|e| Some((name_of(&e.key), e.goto?))).collect();
    c.iface_mark = elements("iface_mark")?.unwrap_or_default().into_iter().filter_map(|e| Some((name_of(&e.key), e.goto?))).collect();
    c.mark_iface = elements("mark_iface")?.unwrap_or_default().into_iter().filter_map(|e| Some((u32_of(&e.key)?, e.goto?))).collect();
    c.legacy = elements("conn_mark")?.is_some() || elements("conn_marks")?.is_some() || elements("rpf_iface")?.is_some();
    // Pairs i . i; anything else is not ours.
    let pairs = elements("rpf_ok")?.unwrap_or_default();
    c.rpf_ok =
        pairs.iter().filter_map(|e| Some((u32_of(&e.key)?, u32_of(e.key.get(4..)?)?))).filter(|(a, b)| a == b).map(|(a, _)| a).collect();
    c.rules_ok &= c.rpf_ok.len() == pairs.len();
    let mut rules = nft.rules_by_chain(TABLE).map_err(err)?.unwrap_or_default();
    for chain in nft.chains(TABLE).map_err(err)?.unwrap_or_default() {
        if CHAINS.iter().any(|(n, ..)| *n == chain) {
            continue;
        }
        let ok = chain_bodies(&c.shape, &chain).is_some_and(|b| same_rules(rules.remove(&chain), &b));
        c.chains.insert(chain, ok);
    }
    c.counters = nft.counters(TABLE).map_err(err)?.unwrap_or_default();
    Ok(c)
}

/// A change to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create the table: over nfnetlink in one transaction (`nft -f` if that fails).
    Create(Want),
    /// Remove the table (no interface is managed any more): over nfnetlink.
    Delete,
    /// Rewrite the whole table with `nft -f` (it is not as stronghost left it): nft merges with
    /// what is there and keeps the counters. Without nft, or if nft refuses (a chain of another
    /// type under one of stronghost's names), the table is recreated over nfnetlink instead.
    Repair { script: String, want: Want },
    /// Only members come or go: over nfnetlink, one transaction, no `nft` process.
    Members { add: Vec<(String, u32)>, remove: Vec<(String, u32)>, add_indexes: Vec<u32>, remove_indexes: Vec<u32>, shape: Shape },
}

impl Change {
    /// What is wrong with the table, for an operator: `check` reports this.
    pub fn summary(&self) -> String {
        let names = |v: &[(String, u32)]| v.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(" ");
        let numbers = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
        match self {
            Change::Create(_) => "the table is missing".into(),
            Change::Delete => "the table exists although no interface is managed".into(),
            Change::Repair { .. } => {
                "its chains, rules, sets or counters are not as stronghost writes them (changed by hand or by another tool)".into()
            }
            Change::Members { add, remove, add_indexes, remove_indexes, .. } => {
                let mut parts = Vec::new();
                if !add.is_empty() {
                    parts.push(format!("members missing or with another table: {}", names(add)));
                }
                if !remove.is_empty() {
                    parts.push(format!("members that should not be there: {}", names(remove)));
                }
                if !add_indexes.is_empty() {
                    parts.push(format!(
                        "interface indexes missing from the reverse-path set (their traffic is dropped as reverse path): {}",
                        numbers(add_indexes)
                    ));
                }
                if !remove_indexes.is_empty() {
                    parts.push(format!("stale indexes in the reverse-path set: {}", numbers(remove_indexes)));
                }
                parts.join("; ")
            }
        }
    }

    /// The equivalent `nft` commands.
    pub fn describe(&self) -> String {
        match self {
            Change::Repair { script, .. } => format!("nft -f - <<'EOF'\n{script}EOF"),
            Change::Create(want) => format!("nft -f - <<'EOF'\n{}EOF", script(&Current::default(), want)),
            Change::Delete => format!("nft delete table {T}; nft delete table {B}"),
            Change::Members { add, remove, add_indexes, remove_indexes, shape } => {
                let mut s = Vec::new();
                for (n, t) in remove {
                    let mut c: Vec<String> = ["wrong_iface", "src_iface", "reverse_path", "iface_mark", "managed"]
                        .iter()
                        .map(|map| format!("nft delete element {T} {map} {{ \"{n}\" }}"))
                        .collect();
                    c.push(format!("nft delete element {T} mark_iface {{ {} }}", hex(shape.mark(*t))));
                    c.extend(chains_of(*t).iter().map(|chain| format!("nft delete chain {T} {chain}")));
                    c.extend(counters_of(*t).iter().map(|ctr| format!("nft delete counter {T} {ctr}")));
                    s.push(c.join("; "));
                }
                for i in remove_indexes {
                    s.push(format!("nft delete element {T} rpf_ok {{ {i} . {i} }}"));
                }
                for i in add_indexes {
                    s.push(format!("nft add element {T} rpf_ok {{ {i} . {i} }}"));
                }
                for (n, t) in add {
                    let (chain, reverse) = (member_chain(*t), reverse_chain(*t));
                    let mut c: Vec<String> = counters_of(*t).iter().map(|ctr| format!("nft add counter {T} {ctr}")).collect();
                    c.push(format!("nft add chain {T} {chain}"));
                    c.extend(member_texts(shape, *t).iter().map(|(rule, _)| format!("nft add rule {T} {chain} {rule}")));
                    c.push(format!("nft add chain {T} {reverse}"));
                    c.extend(reverse_texts(shape, *t).iter().map(|(rule, _)| format!("nft add rule {T} {reverse} {rule}")));
                    c.push(format!("nft add element {T} managed {{ \"{n}\" }}"));
                    c.extend(counter_maps(*t).iter().map(|(map, ctr)| format!("nft add element {T} {map} {{ \"{n}\" : \"{ctr}\" }}")));
                    c.push(format!("nft add element {T} reverse_path {{ \"{n}\" : goto {reverse} }}"));
                    c.push(format!("nft add element {T} iface_mark {{ \"{n}\" : goto {chain} }}"));
                    c.push(format!("nft add element {T} mark_iface {{ {} : goto {chain} }}", hex(shape.mark(*t))));
                    s.push(c.join("; "));
                }
                s.join("\n")
            }
        }
    }
}

/// What brings the table from `cur` to `want`, or `None` when it is converged.
pub fn plan(cur: &Current, want: &Want) -> Option<Change> {
    if want.members.is_empty() && !want.others {
        return (cur.exists || cur.bridge_alone).then_some(Change::Delete);
    }
    if !cur.exists {
        return Some(Change::Create(want.clone()));
    }
    let Some(have) = cur.members().filter(|_| cur.rules_ok && cur.shape == want.shape) else {
        return Some(Change::Repair { script: script(cur, want), want: want.clone() });
    };
    // Read for one interface: decide on that one alone.
    let wanted: Members = match &cur.scope {
        Some(n) => want.members.iter().filter(|(m, _)| *m == n).map(|(m, t)| (m.clone(), *t)).collect(),
        None => want.members.clone(),
    };
    let add: Vec<(String, u32)> = wanted.iter().filter(|(n, t)| have.get(*n) != Some(*t)).map(|(n, t)| (n.clone(), *t)).collect();
    let remove: Vec<(String, u32)> = have.iter().filter(|(n, t)| wanted.get(*n) != Some(*t)).map(|(n, t)| (n.clone(), *t)).collect();
    let indexes = wanted_indexes(cur, want);
    let add_indexes: Vec<u32> = indexes.difference(&cur.rpf_ok).copied().collect();
    let remove_indexes: Vec<u32> = cur.rpf_ok.difference(&indexes).copied().collect();
    (!add.is_empty() || !remove.is_empty() || !add_indexes.is_empty() || !remove_indexes.is_empty()).then_some(Change::Members {
        add,
        remove,
        add_indexes,
        remove_indexes,
        shape: want.shape,
    })
}

fn wanted_indexes(cur: &Current, want: &Want) -> BTreeSet<u32> {
    if want.exact { want.indexes.clone() } else { cur.rpf_ok.union(&want.indexes).copied().collect() }
}

/// The `nft -f` transaction that makes the table what `want` says, keeping its counters.
pub fn script(cur: &Current, want: &Want) -> String {
    let shape = &want.shape;
    let (bridge_chain, _, _, _, bridge_spec) = BRIDGE_CHAIN;
    let (bridge_rule, bridge_comment) = bridge_text(shape);
    let mut s = format!(
        "add table {B}\nadd chain {B} {bridge_chain} {{ {bridge_spec} }}\nflush chain {B} {bridge_chain}\n\
         add rule {B} {bridge_chain} {bridge_rule} comment \"{bridge_comment}\"\n"
    );
    s += &format!("add table {T}\n");
    for (name, _, _, _, spec) in CHAINS {
        s += &format!("add chain {T} {name} {{ {spec} }}\nflush chain {T} {name}\n");
    }
    for (kind, name, spec) in SETS {
        s += &format!("add {kind} {T} {name} {{ {spec} }}\nflush {kind} {T} {name}\n");
    }
    if cur.legacy {
        // 0.2's whole-word marks and 0.3's reverse-path counters by name; their rules went with
        // the flushes above.
        s += &format!("add map {T} conn_mark {{ type ifname : mark; }}\ndelete map {T} conn_mark\n");
        s += &format!("add set {T} conn_marks {{ type mark; }}\ndelete set {T} conn_marks\n");
        s += &format!("add map {T} rpf_iface {{ type ifname : counter; }}\ndelete map {T} rpf_iface\n");
    }
    let chains: BTreeSet<String> = want.members.values().flat_map(|t| chains_of(*t)).collect();
    // Nothing refers to a chain any more once the maps and base chains are flushed.
    for c in cur.chains.keys().filter(|c| !chains.contains(*c)) {
        s += &format!("delete chain {T} {c}\n");
    }
    // Counters before the chains whose rules name them.
    let counters: BTreeSet<String> = want.members.values().flat_map(|t| counters_of(*t)).collect();
    for c in &counters {
        s += &format!("add counter {T} {c}\n");
    }
    for t in want.members.values().collect::<BTreeSet<_>>() {
        let [chain, reverse] = chains_of(*t);
        for (name, rules) in [(chain, member_texts(shape, *t).to_vec()), (reverse, reverse_texts(shape, *t).to_vec())] {
            s += &format!("add chain {T} {name}\nflush chain {T} {name}\n");
            for (rule, comment) in rules {
                s += &format!("add rule {T} {name} {rule} comment \"{comment}\"\n");
            }
        }
    }
    let list = |f: &dyn Fn(&String, u32) -> String| want.members.iter().map(|(n, t)| f(n, *t)).collect::<Vec<_>>().join(", ");
    s += &format!("add element {T} managed {{ {} }}\n", list(&|n, _| format!("\"{n}\"")));
    s += &format!("add element {T} wrong_iface {{ {} }}\n", list(&|n, t| format!("\"{n}\" : \"{}\"", drop_counter(t))));

    s += &format!("add element {T} src_iface {{ {} }}\n", list(&|n, t| format!("\"{n}\" : \"{}\"", src_counter(t))));
    s += &format!("add element {T} reverse_path {{ {} }}\n", list(&|n, t| format!("\"{n}\" : goto {}", reverse_chain(t))));
    s += &format!("add element {T} iface_mark {{ {} }}\n", list(&|n, t| format!("\"{n}\" : goto {}", member_chain(t))));
    let marks: BTreeSet<u32> = want.members.values().copied().collect();
    let by_mark = marks.iter().map(|t| format!("{} : goto {}", hex(shape.mark(*t)), member_chain(*t))).collect::<Vec<_>>();
    s += &format!("add element {T} mark_iface {{ {} }}\n", by_mark.join(", "));
    let indexes = wanted_indexes(cur, want);
    if !indexes.is_empty() {
        s += &format!("add element {T} rpf_ok {{ {} }}\n", indexes.iter().map(|i| format!("{i} . {i}")).collect::<Vec<_>>().join(", "));
    }
    for c in cur.counters.keys().filter(|c| !counters.contains(*c)) {
        s += &format!("delete counter {T} {c}\n");
    }
    for (chain, rule, comment) in rule_texts(shape) {
        s += &format!("add rule {T} {chain} {rule} comment \"{comment}\"\n");
    }
    s
}

fn nft() -> Result<Nft, crate::netlink::NetlinkError> {
    Ok(Nft::open()?)
}

/// The nfnetlink edits of a `Change::Members`: everything of the interfaces that leave first
/// (the maps' elements, then their chains, counters last: the maps refer to them); for those that
/// come, counters and chains first.
fn edits(add: &[(String, u32)], remove: &[(String, u32)], add_indexes: &[u32], remove_indexes: &[u32], shape: &Shape) -> Vec<Edit> {
    let by_name = |list: &[(String, u32)], value: &dyn Fn(u32) -> Element| -> Vec<Element> {
        list.iter().map(|(n, t)| Element { key: Element::ifname(n), ..value(*t) }).collect()
    };
    let by_mark = |list: &[(String, u32)]| -> Vec<Element> {
        list.iter().map(|(_, t)| Element { goto: Some(member_chain(*t)), ..Element::key(m32(shape.mark(*t))) }).collect()
    };
    let pairs = |list: &[u32]| -> Vec<Element> { list.iter().map(|i| Element::key([i.to_ne_bytes(), i.to_ne_bytes()].concat())).collect() };
    let plain = |_| Element::key(vec![]);
    let objref = |c: String| Element { objref: Some(c), ..Element::key(vec![]) };
    let mut e = Vec::new();
    if !remove.is_empty() {
        for set in ["wrong_iface", "src_iface", "reverse_path", "iface_mark", "managed"] {
            e.push(Edit::DelElements { set: set.into(), elements: by_name(remove, &plain) });
        }
        e.push(Edit::DelElements { set: "mark_iface".into(), elements: by_mark(remove) });
        e.extend(remove.iter().flat_map(|(_, t)| chains_of(*t).map(Edit::DelChain)));
        e.extend(remove.iter().flat_map(|(_, t)| counters_of(*t).map(Edit::DelCounter)));
    }
    if !remove_indexes.is_empty() {
        e.push(Edit::DelElements { set: "rpf_ok".into(), elements: pairs(remove_indexes) });
    }
    if !add_indexes.is_empty() {
        e.push(Edit::AddElements { set: "rpf_ok".into(), elements: pairs(add_indexes) });
    }
    if !add.is_empty() {
        e.extend(add.iter().flat_map(|(_, t)| counters_of(*t).map(Edit::AddCounter)));
        for (_, t) in add {
            let [chain, reverse] = chains_of(*t);
            let comments = |texts: &[(String, &'static str)]| texts.iter().map(|(_, c)| *c).collect::<Vec<_>>();
            for (name, bodies, comments) in [
                (chain, member_bodies(shape, *t), comments(&member_texts(shape, *t))),
                (reverse, reverse_bodies(shape, *t), comments(&reverse_texts(shape, *t))),
            ] {
                e.push(Edit::AddChain(name.clone()));
                for (exprs, comment) in bodies.into_iter().zip(comments) {
                    e.push(Edit::AddRule { chain: name.clone(), exprs, comment: comment.into() });
                }
            }
        }
        e.push(Edit::AddElements { set: "managed".into(), elements: by_name(add, &plain) });
        e.push(Edit::AddElements { set: "wrong_iface".into(), elements: by_name(add, &|t| objref(drop_counter(t))) });
        e.push(Edit::AddElements { set: "src_iface".into(), elements: by_name(add, &|t| objref(src_counter(t))) });
        let goto = |chain: String| Element { goto: Some(chain), ..Element::key(vec![]) };
        e.push(Edit::AddElements { set: "reverse_path".into(), elements: by_name(add, &|t| goto(reverse_chain(t))) });
        e.push(Edit::AddElements { set: "iface_mark".into(), elements: by_name(add, &|t| goto(member_chain(t))) });
        e.push(Edit::AddElements { set: "mark_iface".into(), elements: by_mark(add) });
    }
    e
}

/// The whole table in one nfnetlink transaction, as `script` would write it: no `nft` process on
/// the common path (a first lease on a fresh host).
fn create(want: &Want) -> Result<(), crate::netlink::NetlinkError> {
    const NFT_SET_MAP: u32 = 0x8;
    const NFT_SET_OBJECT: u32 = 0x40;
    const NFT_OBJECT_COUNTER: u32 = 1;
    // nft's datatypes: ifname, mark, and iface_index . iface_index (6 bits per concatenated type).
    const TYPE_IFNAME: u32 = 41;
    const TYPE_MARK: u32 = 19;
    const TYPE_IFINDEX: u32 = 20;
    let set = |name: &str, flags: u32, key_type: u32, key_len: u32, data: Option<(u32, u32)>, obj_type: Option<u32>| SetSpec {
        name: name.into(),
        flags,
        key_type,
        key_len,
        data,
        obj_type,
    };
    let bodies = rule_bodies(&want.shape);
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    let rules = rule_texts(&want.shape)
        .into_iter()
        .map(|(chain, _, comment)| {
            let i = taken.entry(chain).or_default();
            *i += 1;
            (chain.to_string(), bodies[chain][*i - 1].clone(), comment.to_string())
        })
        .collect();
    let spec = TableSpec {
        chains: CHAINS
            .iter()
            .map(|(name, kind, hook, priority, _)| ChainSpec {
                name: name.to_string(),
                base: Some(Chain { kind: kind.to_string(), hook: *hook, priority: *priority, policy: 1 }),
            })
            .collect(),
        sets: vec![
            set("managed", 0, TYPE_IFNAME, 16, None, None),
            set("wrong_iface", NFT_SET_OBJECT, TYPE_IFNAME, 16, None, Some(NFT_OBJECT_COUNTER)),
            set("src_iface", NFT_SET_OBJECT, TYPE_IFNAME, 16, None, Some(NFT_OBJECT_COUNTER)),
            set("rpf_ok", 0, (TYPE_IFINDEX << 6) | TYPE_IFINDEX, 8, None, None),
            set("reverse_path", NFT_SET_MAP, TYPE_IFNAME, 16, Some((NFT_DATA_VERDICT, 0)), None),
            set("iface_mark", NFT_SET_MAP, TYPE_IFNAME, 16, Some((NFT_DATA_VERDICT, 0)), None),
            set("mark_iface", NFT_SET_MAP, TYPE_MARK, 4, Some((NFT_DATA_VERDICT, 0)), None),
        ],
        rules,
    };
    let members: Vec<(String, u32)> = want.members.iter().map(|(n, t)| (n.clone(), *t)).collect();
    let indexes: Vec<u32> = want.indexes.iter().copied().collect();
    nft()?.create_table(TABLE, &spec, &edits(&members, &[], &indexes, &[], &want.shape))?;
    // The bridge table, anew (its rule is appended: a table left behind would hold it twice).
    let (name, kind, hook, priority, _) = BRIDGE_CHAIN;
    let bridge = TableSpec {
        chains: vec![ChainSpec { name: name.into(), base: Some(Chain { kind: kind.into(), hook, priority, policy: 1 }) }],
        sets: vec![],
        rules: vec![(name.into(), bridge_body(&want.shape), bridge_text(&want.shape).1.into())],
    };
    let mut b = Nft::open_family(NFPROTO_BRIDGE)?;
    b.delete_table(TABLE)?;
    b.create_table(TABLE, &bridge, &[])
}

/// Both tables gone (already gone is fine).
fn delete_tables() -> Result<(), crate::netlink::NetlinkError> {
    nft()?.delete_table(TABLE)?;
    Nft::open_family(NFPROTO_BRIDGE)?.delete_table(TABLE)
}

/// Makes a change; each kind is one transaction: all of it takes effect or none does.
pub fn apply(change: &Change, shape: &Shape) -> Result<(), FilterError> {
    match change {
        Change::Create(want) => create(want).or_else(|e| {
            if !want.members.keys().all(|n| text_safe(n)) {
                return Err(FilterError::Create(Arc::new(e)));
            }
            log::info!("creating nft table {T} over nfnetlink failed ({e}); writing it with nft");
            run_script(&script(&Current::default(), want))
        }),
        Change::Repair { script, want } => {
            { if want.members.keys().all(|n| text_safe(n)) { run_script(script) } else { Err(FilterError::NotText) } }.or_else(|e| {
                log::warn!(
                    "repairing nft table {T} with nft failed ({e}); recreating it over nfnetlink (its drop counters start again from 0)"
                );
                delete_tables()
                    .and_then(|()| create(want))
                    .map_err(|e2| FilterError::Both(Box::new(e), Box::new(FilterError::Create(Arc::new(e2)))))
            })
        }
        Change::Delete => delete_tables().or_else(|e| {
            log::info!("removing the receive filter over nfnetlink failed ({e}); removing it with nft");
            run_script(&format!("add table {T}\ndelete table {T}\nadd table {B}\ndelete table {B}\n"))
        }),
        Change::Members { add, remove, add_indexes, remove_indexes, shape: s } => {
            nft().and_then(|mut n| n.edit(TABLE, &edits(add, remove, add_indexes, remove_indexes, s))).or_else(|e| {
                // Whatever went wrong, writing the whole table is always correct: every member
                // the table has, with this change made.
                log::debug!("nfnetlink update of nft table {T} failed ({e}); rewriting it with nft");
                let cur = read(shape)?;
                let mut members: Members = cur.iface_mark.iter().filter_map(|(n, c)| Some((n.clone(), table_of_chain(c)?))).collect();
                for (n, _) in remove {
                    members.remove(n);
                }
                members.extend(add.iter().cloned());
                let mut indexes: BTreeSet<u32> = cur.rpf_ok.iter().filter(|i| !remove_indexes.contains(i)).copied().collect();
                indexes.extend(add_indexes);
                let want = Want { members, indexes, exact: true, shape: *shape, others: false };
                apply(&Change::Repair { script: script(&Current { rules_ok: false, ..cur }, &want), want }, shape)
            })
        }
    }
}

fn nft_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nft").exists() { "/usr/sbin/nft" } else { "nft" }
}

const NFT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn run_script(script: &str) -> Result<(), FilterError> {
    let mut cmd = Command::new(nft_binary());
    // If stronghost dies (killed mid-run), nft dies with it: a transaction must never land after
    // the next run has read the table. (nft's transaction itself is atomic either way.)
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from));
    }
    let mut child = cmd
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| FilterError::NoNft(Arc::new(e)))?;
    let io = |e| FilterError::Nft(Arc::new(e));
    child.stdin.take().expect("piped").write_all(script.as_bytes()).map_err(io)?;
    // nft answers in milliseconds; one that hangs must not hold the host-wide lock for ever.
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait().map_err(io)? {
            Some(s) => break s,
            None if start.elapsed() > NFT_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(FilterError::TimedOut(NFT_TIMEOUT));
            }
            None => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    };
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr);
    if status.success() { Ok(()) } else { Err(FilterError::Refused(stderr.trim().to_string())) }
}

/// Whether a name can be written inside an nft string literal as itself: nft's scanner ends it
/// at the first `"`, and reads a trailing `*` as a wildcard and `\` as an escape. A table with a
/// member that cannot is written over nfnetlink only (names are bytes there).
fn text_safe(ifname: &str) -> bool {
    !ifname.ends_with('*') && ifname.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(v: &[(&str, u32)], indexes: &[u32]) -> Want {
        Want {
            members: v.iter().map(|(a, b)| (a.to_string(), *b)).collect(),
            indexes: indexes.iter().copied().collect(),
            exact: true,
            shape: Shape::default(),
            others: false,
        }
    }

    /// The nft text (written when a table is created or repaired) and the rule bodies an installed
    /// table is judged by are the same rules: nft's own translation of the text reads back as
    /// `rule_bodies`. A rule edited behind stronghost's back is not taken for its own, whatever its
    /// comment says; members change over nfnetlink and read back. In a network namespace of the
    /// test's own.
    #[test]
    fn nft_text_and_rule_bodies_agree_and_edits_are_noticed() {
        crate::netlink::testns::in_new_netns(|| {
            for reverse_path in [true, false] {
                let shape = Shape { reverse_path, ..Shape::default() };
                let w = Want { shape, ..want(&[("eth0", 4101), ("eth1", 4102)], &[2, 3]) };
                apply(&Change::Create(w.clone()), &shape).expect("nft -f");
                let cur = read(&shape).unwrap();
                assert!(cur.exists && cur.rules_ok, "{cur:?}");
                assert_eq!(cur.rpf_ok, [2, 3].into());
                assert_eq!(plan(&cur, &w), None);
                // The other setting's rules are not these.
                assert!(!read(&Shape { reverse_path: !reverse_path, ..shape }).unwrap().rules_ok);
                // Nor those of another mark field: the base chains' rules and the members' chains.
                let wider = Shape { mark_mask: 0xfff0_0000, ..shape };
                let other = read(&wider).unwrap();
                assert!(
                    !other.rules_ok
                        && plan(&other, &Want { shape: wider, ..w.clone() }).is_some_and(|c| matches!(c, Change::Repair { .. }))
                );
                apply(&Change::Delete, &shape).unwrap();
            }
            // Created over nfnetlink: the same rules, sets and members, and nft reads it as its own.
            let sh = Shape::default();
            let w = want(&[("eth0", 4101), ("eth1", 4102)], &[2, 3]);
            create(&w).expect("nfnetlink");
            let cur = read(&sh).unwrap();
            assert!(cur.rules_ok && cur.members() == Some(w.members.clone()) && cur.rpf_ok == [2, 3].into(), "{cur:?}");
            run_script(&script(&cur, &w)).expect("nft -f over a table made over nfnetlink");
            let again = read(&sh).unwrap();
            assert!(again.rules_ok, "{again:?}");
            // Same comment, different verdict.
            let edited = format!(
                "flush chain {T} receive\nadd rule {T} receive iifname @managed fib daddr . iif type != local \
                 fib daddr type local counter name iifname map @wrong_iface accept comment \"stronghost: wrong interface\"\n"
            );
            run_script(&edited).expect("nft -f");
            let cur = read(&sh).unwrap();
            assert!(!cur.rules_ok);
            let Some(repair @ Change::Repair { .. }) = plan(&cur, &w) else { panic!("no repair") };
            apply(&repair, &sh).unwrap();
            assert!(read(&sh).unwrap().rules_ok);
            // Members over nfnetlink: one leaves, one comes, an index goes stale.
            let w2 = want(&[("eth0", 4101), ("eth2", 4103)], &[2, 4]);
            // (nft -f added elements to a table made over nfnetlink: the marks are in host order.)
            let before = read(&sh).unwrap();
            assert_eq!(before.members(), Some(w.members.clone()));
            let change = plan(&before, &w2).unwrap();
            assert!(matches!(change, Change::Members { .. }), "{change:?}");
            apply(&change, &sh).unwrap();
            let cur = read(&sh).unwrap();
            assert_eq!(cur.members(), Some(w2.members.clone()));
            assert_eq!(cur.rpf_ok, [2, 4].into());
            assert_eq!(plan(&cur, &w2), None);
            // A gather of one interface adds indexes and keeps the others.
            assert_eq!(
                plan(&cur, &Want { exact: false, ..want(&[("eth0", 4101), ("eth2", 4103)], &[9]) }),
                Some(Change::Members { add: vec![], remove: vec![], add_indexes: vec![9], remove_indexes: vec![], shape: sh })
            );
            // Read for one interface: its entries alone, looked up by key; planned on alone.
            let one = read_member(&sh, "eth2", Some(4)).unwrap();
            assert_eq!(one.scope.as_deref(), Some("eth2"));
            assert_eq!(one.members(), Some([("eth2".to_string(), 4103)].into()));
            assert_eq!((one.rpf_ok.clone(), one.counters.len()), ([4].into(), 3));
            // (The kernel snapshot of a one-interface gather holds that interface's index alone.)
            let of_one = |w: &Want, index: u32| Want { exact: false, indexes: [index].into(), ..w.clone() };
            assert_eq!(plan(&one, &of_one(&w2, 4)), None, "eth0 is not looked at");
            let three = Want { exact: false, ..want(&[("eth0", 4101), ("eth2", 4103), ("eth3", 4104)], &[5]) };
            let new = read_member(&sh, "eth3", Some(5)).unwrap();
            assert_eq!((new.scope.as_deref(), new.members()), (Some("eth3"), Some(Members::new())));
            let add = plan(&new, &three).unwrap();
            assert_eq!(
                add,
                Change::Members {
                    add: vec![("eth3".into(), 4104)],
                    remove: vec![],
                    add_indexes: vec![5],
                    remove_indexes: vec![],
                    shape: sh
                }
            );
            apply(&add, &sh).unwrap();
            let gone = plan(&read_member(&sh, "eth3", Some(5)).unwrap(), &of_one(&w2, 5)).unwrap();
            assert_eq!(
                gone,
                Change::Members {
                    add: vec![],
                    remove: vec![("eth3".into(), 4104)],
                    add_indexes: vec![],
                    remove_indexes: vec![],
                    shape: sh
                }
            );
            // The same, planned from that interface's entry alone (plan.rs `host`, scoped): the
            // others exist, so no entry wanted is not "delete the table".
            let alone = Want { members: Members::new(), indexes: [5].into(), exact: false, shape: sh, others: true };
            assert_eq!(plan(&read_member(&sh, "eth3", Some(5)).unwrap(), &alone), Some(gone.clone()));
            apply(&gone, &sh).unwrap();
            assert_eq!(read(&sh).unwrap().members(), Some(w2.members.clone()));
            // One interface's entries disagreeing: everything is read, and the table repaired.
            run_script(&format!("delete element {T} managed {{ \"eth2\" }}\n")).unwrap();
            let torn = read_member(&sh, "eth2", Some(4)).unwrap();
            assert!(torn.scope.is_none() && torn.iface_mark.len() == 2, "{torn:?}");
            assert!(matches!(plan(&torn, &of_one(&w2, 4)), Some(Change::Repair { .. })));
            apply(&Change::Repair { script: script(&torn, &w2), want: w2.clone() }, &sh).unwrap();
            let cur = read(&sh).unwrap();
            apply(&plan(&cur, &Want::default()).unwrap(), &sh).unwrap();
            assert!(!read(&sh).unwrap().exists);
            // A table as 0.2 wrote it (whole-word marks, the table numbers): repaired into this
            // layout by one `nft -f`, the drop counters kept.
            let legacy = format!(
                "add table {T}\nadd chain {T} connections {{ type filter hook prerouting priority mangle; policy accept; }}\n\
                 add set {T} managed {{ type ifname; }}\nadd map {T} conn_mark {{ type ifname : mark; }}\n\
                 add set {T} conn_marks {{ type mark; }}\nadd counter {T} drop_4101\n\
                 add element {T} managed {{ \"eth0\" }}\nadd element {T} conn_mark {{ \"eth0\" : 4101 }}\n\
                 add element {T} conn_marks {{ 4101 }}\n\
                 add rule {T} connections ct state new ct mark 0 iifname @managed ct mark set iifname map @conn_mark\n\
                 add rule {T} connections meta mark 0 ct direction reply ct mark @conn_marks meta mark set ct mark\n"
            );
            run_script(&legacy).unwrap();
            let old = read(&sh).unwrap();
            assert!(old.legacy && old.members().is_none(), "{old:?}");
            let w1 = want(&[("eth0", 4101)], &[2]);
            let Some(Change::Repair { script: repair, .. }) = plan(&old, &w1) else { panic!("no repair of the legacy table") };
            run_script(&repair).expect("nft -f repairs a table of 0.2 in place");
            let cur = read(&sh).unwrap();
            assert!(cur.rules_ok && !cur.legacy && cur.members() == Some(w1.members.clone()), "{cur:?}");
            assert_eq!(plan(&cur, &w1), None);
            // As 0.3 wrote it: the reverse-path rule counted through a map of counters by name.
            run_script(&format!(
                "add map {T} rpf_iface {{ type ifname : counter; }}\nadd element {T} rpf_iface {{ \"eth0\" : \"rpf_4101\" }}\n\
                 add rule {T} receive iifname @managed fib daddr type local iif . fib saddr oif != @rpf_ok \
                 counter name iifname map @rpf_iface drop\n"
            ))
            .unwrap();
            let old = read(&sh).unwrap();
            assert!(old.legacy && !old.rules_ok, "{old:?}");
            let Some(Change::Repair { script: repair, .. }) = plan(&old, &w1) else { panic!("no repair of the 0.3 table") };
            run_script(&repair).expect("nft -f repairs a table of 0.3 in place");
            assert_eq!(plan(&read(&sh).unwrap(), &w1), None);
            apply(&Change::Delete, &sh).unwrap();
        });
    }

    #[test]
    fn converged_table_needs_no_transaction() {
        let w = want(&[("eth0", 4101), ("eth1", 4102)], &[2, 3]);
        let cur = Current {
            exists: true,
            bridge_alone: false,
            scope: None,
            rules_ok: true,
            managed: ["eth0".to_string(), "eth1".to_string()].into(),
            wrong_iface: [("eth0".to_string(), "drop_4101".to_string()), ("eth1".to_string(), "drop_4102".to_string())].into(),
            reverse_path: [("eth0".to_string(), "reverse_4101".to_string()), ("eth1".to_string(), "reverse_4102".to_string())].into(),
            src_iface: [("eth0".to_string(), "src_4101".to_string()), ("eth1".to_string(), "src_4102".to_string())].into(),
            shape: Shape::default(),
            iface_mark: [("eth0".to_string(), "mark_4101".to_string()), ("eth1".to_string(), "mark_4102".to_string())].into(),
            mark_iface: [(0x0100_0000, "mark_4101".to_string()), (0x0200_0000, "mark_4102".to_string())].into(),
            chains: ["mark_4101", "mark_4102", "reverse_4101", "reverse_4102"].map(|c| (c.to_string(), true)).into(),
            legacy: false,
            rpf_ok: [2, 3].into(),
            counters: [
                ("drop_4101".to_string(), 3),
                ("drop_4102".to_string(), 0),
                ("rpf_4101".to_string(), 1),
                ("rpf_4102".to_string(), 0),
                ("src_4101".to_string(), 2),
                ("src_4102".to_string(), 0),
            ]
            .into(),
        };
        assert_eq!(plan(&cur, &w), None);
        assert_eq!(cur.drops(4101), Drops { wrong_interface: Some(3), reverse_path: Some(1), foreign_source: Some(2) });
        // One member fewer on an intact table: a nfnetlink update, not a script.
        let fewer = want(&[("eth0", 4101)], &[2]);
        assert_eq!(
            plan(&cur, &fewer),
            Some(Change::Members {
                add: vec![],
                remove: vec![("eth1".into(), 4102)],
                add_indexes: vec![],
                remove_indexes: vec![3],
                shape: Shape::default()
            })
        );
        assert!(matches!(plan(&Current { rules_ok: false, ..cur.clone() }, &w), Some(Change::Repair { .. })));
        // A member's chain edited, a stray chain, the maps of 0.2 left over: not intact, and the
        // script deletes what is not wanted.
        let mut edited = cur.clone();
        edited.chains.insert("mark_4102".into(), false);
        assert!(matches!(plan(&edited, &w), Some(Change::Repair { .. })));
        let mut stray = cur.clone();
        stray.chains.insert("other".into(), false);
        stray.legacy = true;
        assert!(matches!(plan(&stray, &w), Some(Change::Repair { .. })));
        let s = script(&stray, &fewer);
        assert!(s.contains("delete chain inet stronghost other\n") && s.contains("delete chain inet stronghost mark_4102\n"), "{s}");
        assert!(s.contains("delete map inet stronghost conn_mark\n") && s.contains("delete set inet stronghost conn_marks\n"), "{s}");
        // A counter missing: not intact.
        let mut broken = cur.clone();
        broken.counters.remove("rpf_4102");
        assert!(matches!(plan(&broken, &w), Some(Change::Repair { .. })));
        let s = script(&cur, &fewer);
        assert!(s.contains("delete counter inet stronghost drop_4102") && !s.contains("delete counter inet stronghost drop_4101"), "{s}");
        assert_eq!(plan(&cur, &Want::default()), Some(Change::Delete));
        assert_eq!(plan(&Current::default(), &Want::default()), None);
    }
}
