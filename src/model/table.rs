//! The receive side and the connections: the nftables table `inet stronghost` as stronghost wants
//! it — its names, its rules (each described once, text and bytecode: `RuleSpec`), and what a read
//! found (`Current`). gather/filter.rs reads it, plan/filter.rs decides its change, and
//! execute/filter.rs makes that change in one transaction.
//!
//! M is stronghost's field of the packet and connection marks (`mark_mask`); V(K) the value of
//! K's table in it (plan/policy.rs `mark_of`); M/M, all of it, "arrived on an unmanaged interface".
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
//!   set own4        { type ipv4_addr . iface_index; }       A . K, K's `from A` rule's A (IPv4)
//!   set own6        { type ipv6_addr . iface_index; }       A . K, the same for IPv6
//!   map reverse_path { type ifname : verdict; }             K : jump reverse_T(K)
//!   map iface_mark  { type ifname : verdict; }              K : goto mark_T(K)
//!   map mark_iface  { type mark : verdict; }                V(K) : goto mark_T(K)
//!   chain receive { type filter hook prerouting priority raw; policy accept;
//!     ip daddr . iif @own4 accept                               (its own address, on its own interface)
//!     ip6 daddr . iif @own6 accept
//!     iifname @managed fib daddr . iif type != local fib daddr type local meta mark and M != B
//!         counter name iifname map @wrong_iface drop
//!   }
//!   chain connections { type filter hook prerouting priority mangle; policy accept;
//!     ct direction reply meta mark and M != B jump reply
//!     ct state new,invalid,untracked jump unknown
//!   }
//!   chain unknown {
//!     ct mark and M != 0 return                                 (judged: the first packet was)
//!     meta mark and M == B return
//!     meta nfproto ipv4 iifname @managed fib daddr type local iifname vmap @reverse_path  (rp_filter = yes)
//!     ip6 daddr != fe80::/10 iifname @managed ... (the same, for IPv6)                     (rp_filter = yes)
//!     ct state new ct mark and M == 0 iifname vmap @iface_mark
//!     ct state new ct mark and M == 0 iif != "lo" fib daddr type local ct mark set ct mark and ~M or M
//!   }
//!   chain reply {
//!     ct mark and M vmap @mark_iface
//!     ct mark and M == M meta mark set meta mark and ~M or M
//!   }
//!   chain replies { type route hook output priority mangle; policy accept;
//!     ct direction reply jump reply
//!   }
//!   chain egress { type filter hook postrouting priority 200; policy accept;
//!     oifname @managed fib saddr type local fib saddr . oif type != local meta mark and M != B
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
//! A strong host must not accept a packet for an address of this host that is not one of the
//! arrival interface's (wrong interface: `receive`, every packet, before connection tracking, so
//! such a packet never touches a connection's state), nor one for this host whose source would not
//! be routed back out of the interface it came in by (reverse path: `unknown`). Both are dropped
//! and counted per interface and reason, and both run before NAT, so they judge the address the
//! client asked for, not the container a DNAT rule sends it to: published ports work on every
//! interface. Broadcast, multicast, DHCP, forwarded
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
//! Most packets `receive` sees are for an address of the interface they arrived on, and the
//! first two rules let those through with one hash lookup of (address, interface): `own4` and
//! `own6` hold, for each member K, the addresses K has a `from` rule for — the planner writes both
//! from the same decision, so a scoped event finds K's stale pairs among its old `from` rules. The
//! wrong-interface rule's two local-table lookups are left to the rest. The sets only ever
//! shorten the way to "accept" for a pair the kernel also calls local: a pair left behind after
//! its address moved to another interface would let packets for it through on the old one, so
//! `check` compares the sets with the addresses, and every plan that changes K's `from` rules
//! changes K's pairs with them.
//!
//! The reverse path is judged once per connection (after conntrack): every packet of a connection has the arrival interface, source and mark its first had, so the verdict would be
//! the first's; a packet for the address that arrives on another interface is dropped by
//! `receive`, connection or not. It is judged as a reply of the connection would be routed: with V(K) in the
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

use crate::model::nft::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

pub const TABLE: &str = "stronghost";
pub const T: &str = "inet stronghost";

/// The base chains: name, type, hook (prerouting 0, output 3, postrouting 4), priority, nft's spelling.
pub const CHAINS: [(&str, &str, u32, i32, &str); 4] = [
    // Before conntrack (-200): a packet dropped here never touches a connection's state.
    ("receive", "filter", 0, -300, "type filter hook prerouting priority raw; policy accept;"),
    // After conntrack, before NAT (-100): the address the client asked for, its connection known.
    ("connections", "filter", 0, -150, "type filter hook prerouting priority mangle; policy accept;"),
    ("replies", "route", 3, -150, "type route hook output priority mangle; policy accept;"),
    ("egress", "filter", 4, 200, "type filter hook postrouting priority 200; policy accept;"),
];

/// The chains the base chains jump to, shared by every member: `unknown` for a packet conntrack
/// does not know (a connection's first, invalid or untracked), `reply` for a reply of a connection.
/// A packet of a known connection in its original direction — most of what arrives — meets two
/// comparisons in `connections` and nothing else.
pub const SHARED: [&str; 2] = ["unknown", "reply"];

/// Base chains of earlier builds, deleted by a repair: `reverse` (prerouting -151) of 0.4.0's
/// development builds.
pub const LEGACY_CHAINS: [&str; 1] = ["reverse"];

/// The bridge table's one chain: at bridge prerouting, before br_netfilter (priority 0).
pub const BRIDGE_CHAIN: (&str, &str, u32, i32, &str) =
    ("prerouting", "filter", 0, -300, "type filter hook prerouting priority -300; policy accept;");
pub const B: &str = "bridge stronghost";

/// The sets and maps, with nft's spelling of their types.
pub const SETS: [(&str, &str, &str); 9] = [
    ("set", "managed", "type ifname;"),
    ("map", "wrong_iface", "type ifname : counter;"),
    ("map", "src_iface", "type ifname : counter;"),
    ("set", "rpf_ok", "type iface_index . iface_index;"),
    ("set", "own4", "type ipv4_addr . iface_index;"),
    ("set", "own6", "type ipv6_addr . iface_index;"),
    ("map", "reverse_path", "type ifname : verdict;"), // jump: `unknown` goes on after it
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
    /// B: a frame bridged through the host (routing.rs `bridged_mark`).
    pub fn bridged(&self) -> u32 {
        crate::model::routing::bridged_mark(self.mark_mask)
    }

    /// V(K) for the interface of table `t` (policy.rs `mark_of`, which the fwmark rules use).
    pub fn mark(&self, t: u32) -> u32 {
        (t.saturating_sub(self.table_min) + 1) << self.mark_mask.trailing_zeros()
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

pub fn table_of_chain(chain: &str) -> Option<u32> {
    chain.strip_prefix("mark_")?.parse().ok()
}

/// The rules a member's chain (`mark_T` or `reverse_T`) should hold, `None` for any other name.
pub fn chain_bodies(shape: &Shape, chain: &str) -> Option<Vec<Vec<Expr>>> {
    if let Some(t) = table_of_chain(chain) {
        return Some(member_bodies(shape, t));
    }
    let t = chain.strip_prefix("reverse_")?.parse().ok()?;
    Some(reverse_bodies(shape, t))
}

pub fn hex(v: u32) -> String {
    format!("{v:#010x}")
}

/// A piece of a rule as nft writes it and as the kernel holds it. Every rule stronghost writes is
/// a list of these, so its text (`nft -f`) and its bytecode (nfnetlink, and what an installed rule
/// is judged by) are made from one description: they cannot drift apart. (A unit test in
/// execute/filter.rs has nft translate the text and compares.)
#[derive(Clone)]
struct Term {
    text: String,
    exprs: Vec<Expr>,
}

fn term(text: impl Into<String>, exprs: impl IntoIterator<Item = Expr>) -> Term {
    Term { text: text.into(), exprs: exprs.into_iter().collect() }
}

/// One rule: its base chain (for a member's rules, the kind of chain: mark, reverse), its terms, and
/// the comment that names it for a reader.
pub struct RuleSpec {
    pub chain: &'static str,
    terms: Vec<Term>,
    pub comment: &'static str,
}

impl RuleSpec {
    fn new(chain: &'static str, terms: Vec<Term>, comment: &'static str) -> RuleSpec {
        RuleSpec { chain, terms, comment }
    }

    /// As nft writes it.
    pub fn text(&self) -> String {
        self.terms.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ")
    }

    /// As the kernel holds it.
    pub fn body(&self) -> Vec<Expr> {
        self.terms.iter().flat_map(|t| t.exprs.iter().cloned()).collect()
    }
}

pub fn m32(v: u32) -> Vec<u8> {
    v.to_ne_bytes().to_vec() // marks and fib results are in host order
}

fn cmp(op: u32, data: Vec<u8>) -> Expr {
    Expr::Cmp { sreg: NFT_REG_1, op, data }
}

/// `reg1 = (reg1 & mask) ^ xor`.
fn bitwise(mask: u32, xor: u32) -> Expr {
    Expr::Bitwise { sreg: NFT_REG_1, dreg: NFT_REG_1, mask: m32(mask), xor: m32(xor) }
}

fn meta(key: u32) -> Expr {
    Expr::Meta { key, dreg: NFT_REG_1 }
}

fn lookup(set: &str, invert: bool) -> Expr {
    Expr::Lookup { set: set.into(), sreg: NFT_REG_1, dreg: None, invert }
}

fn vmap(set: &str) -> Expr {
    Expr::Lookup { set: set.into(), sreg: NFT_REG_1, dreg: Some(NFT_REG_VERDICT), invert: false }
}

/// `iifname @set`, `oifname @set`.
fn name_in(key: &str, set: &str) -> Term {
    let k = if key == "iifname" { NFT_META_IIFNAME } else { NFT_META_OIFNAME };
    term(format!("{key} @{set}"), [meta(k), lookup(set, false)])
}

/// `iifname vmap @map`.
fn iifname_vmap(map: &str) -> Term {
    term(format!("iifname vmap @{map}"), [meta(NFT_META_IIFNAME), vmap(map)])
}

/// `fib <what> type local` (or `!= local`), `what` one of daddr, `daddr . iif`, saddr, `saddr . oif`.
fn fib_local(what: &str, is: bool) -> Term {
    let flags = match what {
        "daddr" => NFTA_FIB_F_DADDR,
        "daddr . iif" => NFTA_FIB_F_DADDR | NFTA_FIB_F_IIF,
        "saddr" => NFTA_FIB_F_SADDR,
        _ => NFTA_FIB_F_SADDR | NFTA_FIB_F_OIF,
    };
    let (op, text) = if is { (NFT_CMP_EQ, "local") } else { (NFT_CMP_NEQ, "!= local") };
    term(
        format!("fib {what} type {text}"),
        [Expr::Fib { flags, result: NFT_FIB_RESULT_ADDRTYPE, dreg: NFT_REG_1 }, cmp(op, m32(RTN_LOCAL))],
    )
}

/// `counter name iifname map @map` (or oifname): the interface's own counter.
fn counter_by(key: &str, map: &str) -> Term {
    let k = if key == "iifname" { NFT_META_IIFNAME } else { NFT_META_OIFNAME };
    term(format!("counter name {key} map @{map}"), [meta(k), Expr::ObjrefMap { set: map.into(), sreg: NFT_REG_1 }])
}

fn verdict(drop: bool) -> Term {
    term(if drop { "drop" } else { "accept" }, [Expr::Verdict { code: if drop { NF_DROP } else { NF_ACCEPT } }])
}

fn jump(chain: &str) -> Term {
    term(format!("jump {chain}"), [Expr::Branch(Branch::Jump(chain.into()))])
}

fn return_() -> Term {
    term("return", [Expr::Verdict { code: NFT_RETURN }])
}

/// `ct mark and M` or `meta mark and M`: the field, in register 1.
fn field(ct: bool, shape: &Shape) -> (String, [Expr; 2]) {
    let load = if ct { Expr::Ct { key: NFT_CT_MARK, dreg: NFT_REG_1 } } else { meta(NFT_META_MARK) };
    (format!("{} mark and {}", if ct { "ct" } else { "meta" }, hex(shape.mark_mask)), [load, bitwise(shape.mark_mask, 0)])
}

/// `ct mark and M == V` (or meta; `!=` where `is` is false).
fn field_cmp(ct: bool, shape: &Shape, is: bool, value: u32) -> Term {
    let (text, exprs) = field(ct, shape);
    let v = if value == 0 { "0".to_string() } else { hex(value) };
    let (op, sign) = if is { (NFT_CMP_EQ, "==") } else { (NFT_CMP_NEQ, "!=") };
    term(format!("{text} {sign} {v}"), exprs.into_iter().chain([cmp(op, m32(value))]))
}

fn field_is(ct: bool, shape: &Shape, value: u32) -> Term {
    field_cmp(ct, shape, true, value)
}

/// `meta mark and M != B`: not a frame bridged through the host.
fn not_bridged(shape: &Shape) -> Term {
    field_cmp(false, shape, false, shape.bridged())
}

/// `ct mark and M vmap @map`.
fn field_vmap(shape: &Shape, map: &str) -> Term {
    let (text, exprs) = field(true, shape);
    term(format!("{text} vmap @{map}"), exprs.into_iter().chain([vmap(map)]))
}

/// `KEY set KEY and ~M or value` (`… and ~M` for 0) for the connection (ct) or the packet (meta)
/// mark: only M's bits are written.
fn set_field(ct: bool, shape: &Shape, value: u32) -> Term {
    let key = if ct { "ct" } else { "meta" };
    let or = if value == 0 { String::new() } else { format!(" or {}", hex(value)) };
    let load = if ct { Expr::Ct { key: NFT_CT_MARK, dreg: NFT_REG_1 } } else { meta(NFT_META_MARK) };
    let store = if ct { Expr::CtSet { key: NFT_CT_MARK, sreg: NFT_REG_1 } } else { Expr::MetaSet { key: NFT_META_MARK, sreg: NFT_REG_1 } };
    term(format!("{key} mark set {key} mark and {}{or}", hex(!shape.mark_mask)), [load, bitwise(!shape.mark_mask, value), store])
}

fn ct_direction(reply: bool) -> Term {
    // IP_CT_DIR_ORIGINAL 0, IP_CT_DIR_REPLY 1
    let text = if reply { "ct direction reply" } else { "ct direction original" };
    term(text, [Expr::Ct { key: NFT_CT_DIRECTION, dreg: NFT_REG_1 }, cmp(NFT_CMP_EQ, vec![u8::from(reply)])])
}

/// `ct state <states>`: any of them (NF_CT_STATE_*_BIT: invalid 1, new 8, untracked 64).
fn ct_state(text: &str, bits: u32) -> Term {
    let any = Expr::Bitwise { sreg: NFT_REG_1, dreg: NFT_REG_1, mask: bits.to_ne_bytes().to_vec(), xor: vec![0; 4] };
    term(format!("ct state {text}"), [Expr::Ct { key: NFT_CT_STATE, dreg: NFT_REG_1 }, any, cmp(NFT_CMP_NEQ, vec![0; 4])])
}

fn ct_state_new() -> Term {
    ct_state("new", 8)
}

/// A packet that does not belong to a connection conntrack already knows: new, invalid or not
/// tracked at all.
fn ct_state_unknown() -> Term {
    ct_state("new,invalid,untracked", 1 | 8 | 64)
}

fn nfproto_ipv4() -> Term {
    term("meta nfproto ipv4", [meta(NFT_META_NFPROTO), cmp(NFT_CMP_EQ, vec![2])]) // NFPROTO_IPV4
}

/// `ip6 daddr != fe80::/10` (nft adds the family's check before it).
fn ip6_daddr_not_link_local() -> Term {
    let mut fe80 = [0u8; 16];
    fe80[..2].copy_from_slice(&[0xfe, 0x80]);
    let mut mask = [0u8; 16];
    mask[..2].copy_from_slice(&[0xff, 0xc0]);
    term(
        "ip6 daddr != fe80::/10",
        [
            meta(NFT_META_NFPROTO),
            cmp(NFT_CMP_EQ, vec![10]), // NFPROTO_IPV6
            Expr::Payload { base: NFT_PAYLOAD_NETWORK_HEADER, offset: 24, len: 16, dreg: NFT_REG_1 },
            Expr::Bitwise { sreg: NFT_REG_1, dreg: NFT_REG_1, mask: mask.to_vec(), xor: vec![0; 16] },
            cmp(NFT_CMP_NEQ, fe80.to_vec()),
        ],
    )
}

/// `ip daddr . iif @own4` (`ip6 daddr . iif @own6`; nft adds the family's check before it).
fn own_pair(v6: bool) -> Term {
    let (text, proto, offset, len, next) =
        if v6 { ("ip6 daddr . iif @own6", 10, 24, 16, NFT_REG_2) } else { ("ip daddr . iif @own4", 2, 16, 4, NFT_REG32_01) };
    term(
        text,
        [
            meta(NFT_META_NFPROTO),
            cmp(NFT_CMP_EQ, vec![proto]),
            Expr::Payload { base: NFT_PAYLOAD_NETWORK_HEADER, offset, len, dreg: NFT_REG_1 },
            Expr::Meta { key: NFT_META_IIF, dreg: next },
            lookup(if v6 { "own6" } else { "own4" }, false),
        ],
    )
}

fn iif_not_lo() -> Term {
    term("iif != \"lo\"", [meta(NFT_META_IIF), cmp(NFT_CMP_NEQ, m32(1))])
}

/// `iif . fib saddr . mark oif != @rpf_ok`: the way back to the source, looked up with the
/// packet's mark, leaves by another interface than the one it came in by.
fn not_back_the_same_way() -> Term {
    let fib = Expr::Fib { flags: NFTA_FIB_F_SADDR | NFTA_FIB_F_MARK, result: NFT_FIB_RESULT_OIF, dreg: NFT_REG32_01 };
    term("iif . fib saddr . mark oif != @rpf_ok", [meta(NFT_META_IIF), fib, lookup("rpf_ok", true)])
}

fn pkttype_other() -> Term {
    term("meta pkttype other", [meta(NFT_META_PKTTYPE), cmp(NFT_CMP_EQ, vec![3])]) // PACKET_OTHERHOST
}

/// The bridge table's rule.
pub fn bridge_rule(shape: &Shape) -> RuleSpec {
    RuleSpec::new(
        "prerouting",
        vec![pkttype_other(), set_field(false, shape, shape.bridged())],
        "stronghost: bridged through, not for this host",
    )
}

/// The rules of the base and shared chains, in order.
///
/// Per packet, the common cases cost: for a packet to one of the host's addresses, one set lookup
/// and one local-table lookup in `receive`; for a packet of a known connection, two comparisons of
/// its conntrack entry in `connections` (three and the mark map for a reply). Whether a frame was
/// bridged through the host is asked last in a rule, or only in `unknown`: it never changes what
/// the other terms found, only whether the rule acts.
pub fn base_rules(shape: &Shape) -> Vec<RuleSpec> {
    let m = shape.mark_mask;
    let bridged = "stronghost: bridged through, not for this host";
    let mut v = vec![
        RuleSpec::new("receive", vec![own_pair(false), verdict(false)], "stronghost: its own address, on its own interface"),
        RuleSpec::new("receive", vec![own_pair(true), verdict(false)], "stronghost: its own address, on its own interface"),
    ];
    v.push(RuleSpec::new(
        "receive",
        vec![
            name_in("iifname", "managed"),
            fib_local("daddr . iif", false),
            fib_local("daddr", true),
            not_bridged(shape),
            counter_by("iifname", "wrong_iface"),
            verdict(true),
        ],
        "stronghost: wrong interface",
    ));
    // A frame bridged through carries B, which `reply` would overwrite with the value of a
    // connection the host has to the same peer (a VM on a bridge of the host talking to one of
    // its addresses: conntrack sees both the bridged and the delivered frames of the connection).
    v.push(RuleSpec::new("connections", vec![ct_direction(true), not_bridged(shape), jump("reply")], "stronghost: reply of a connection"));
    v.push(RuleSpec::new("replies", vec![ct_direction(true), jump("reply")], "stronghost: reply of a connection"));
    v.push(RuleSpec::new("connections", vec![ct_state_unknown(), jump("unknown")], "stronghost: not a known connection's"));
    // A connection whose field holds a value was judged by its first packet: every rule below
    // either judges or marks a connection that has none. Conntrack calls every packet of a
    // connection "new" until it has seen a reply, so without this a one-way flow (syslog, a
    // stream of UDP from one port) would have each of its packets judged again.
    v.push(RuleSpec::new("unknown", vec![field_cmp(true, shape, false, 0), return_()], "stronghost: connection judged already"));
    v.push(RuleSpec::new("unknown", vec![field_is(false, shape, shape.bridged()), return_()], bridged));
    if shape.reverse_path {
        // Judged once per connection: every packet of one has the arrival interface, source and
        // mark its first had, so the verdict would be the first's (and a packet for the address
        // arriving on another interface is dropped by `receive`, connection or not).
        let rpf = || vec![name_in("iifname", "managed"), fib_local("daddr", true), iifname_vmap("reverse_path")];
        v.push(RuleSpec::new("unknown", [vec![nfproto_ipv4()], rpf()].concat(), "stronghost: reverse path"));
        // Not for link-local destinations: the way back to a source seen from a link-local
        // address is any link's (a router's unicast advertisement from its global address).
        v.push(RuleSpec::new("unknown", [vec![ip6_daddr_not_link_local()], rpf()].concat(), "stronghost: reverse path"));
    }
    let new = || vec![ct_state_new(), field_is(true, shape, 0)];
    v.push(RuleSpec::new("unknown", [new(), vec![iifname_vmap("iface_mark")]].concat(), "stronghost: connection arrived on"));
    v.push(RuleSpec::new(
        "unknown",
        [new(), vec![iif_not_lo(), fib_local("daddr", true), set_field(true, shape, m)]].concat(),
        "stronghost: connection arrived on an unmanaged interface",
    ));
    v.push(RuleSpec::new("reply", vec![field_vmap(shape, "mark_iface")], "stronghost: reply of a connection"));
    v.push(RuleSpec::new(
        "reply",
        vec![field_is(true, shape, m), set_field(false, shape, m)],
        "stronghost: reply of a connection that arrived on an unmanaged interface",
    ));
    v.push(RuleSpec::new(
        "egress",
        vec![
            name_in("oifname", "managed"),
            fib_local("saddr", true),
            fib_local("saddr . oif", false),
            not_bridged(shape),
            counter_by("oifname", "src_iface"),
            verdict(true),
        ],
        "stronghost: source not of this interface",
    ));
    v
}

/// The rules of member chain `mark_T`: V(T) into new connections' and replies' marks.
pub fn member_rules(shape: &Shape, t: u32) -> Vec<RuleSpec> {
    let (chain, v) = ("mark", shape.mark(t));
    vec![
        RuleSpec::new(chain, vec![ct_direction(false), set_field(true, shape, v)], "stronghost: connection arrived on"),
        RuleSpec::new(chain, vec![ct_direction(true), set_field(false, shape, v)], "stronghost: reply of a connection"),
    ]
}

/// The rules of member chain `reverse_T`: the way back judged with V(T) in the mark, counted by
/// name, the field cleared again.
pub fn reverse_rules(shape: &Shape, t: u32) -> Vec<RuleSpec> {
    let chain = "reverse";
    let counter = term(format!("counter name \"{}\"", rpf_counter(t)), [Expr::Counter { name: rpf_counter(t) }]);
    vec![
        RuleSpec::new(chain, vec![set_field(false, shape, shape.mark(t))], "stronghost: reverse path, as the reply is routed"),
        RuleSpec::new(chain, vec![not_back_the_same_way(), counter, verdict(true)], "stronghost: reverse path"),
        RuleSpec::new(chain, vec![set_field(false, shape, 0)], "stronghost: reverse path judged"),
    ]
}

/// The base chains' rules as the kernel holds them, per chain: an installed rule is judged by
/// this, not by its comment.
pub fn rule_bodies(shape: &Shape) -> BTreeMap<&'static str, Vec<Vec<Expr>>> {
    let mut out: BTreeMap<&'static str, Vec<Vec<Expr>>> = BTreeMap::new();
    for r in base_rules(shape) {
        out.entry(r.chain).or_default().push(r.body());
    }
    out
}

/// The rules of a member's chain as the kernel holds them.
pub fn member_bodies(shape: &Shape, t: u32) -> Vec<Vec<Expr>> {
    member_rules(shape, t).iter().map(RuleSpec::body).collect()
}

pub fn reverse_bodies(shape: &Shape, t: u32) -> Vec<Vec<Expr>> {
    reverse_rules(shape, t).iter().map(RuleSpec::body).collect()
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
pub fn counters_of(table: u32) -> [String; 3] {
    [drop_counter(table), rpf_counter(table), src_counter(table)]
}

/// The maps that name a member's counter for the rules of the base chains.
pub fn counter_maps(table: u32) -> [(&'static str, String); 2] {
    [("wrong_iface", drop_counter(table)), ("src_iface", src_counter(table))]
}

/// A member's two chains.
pub fn chains_of(table: u32) -> [String; 2] {
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
    /// The fast path's pairs (address, interface index) of the interfaces planned: every
    /// address a member has a `from` rule for.
    pub own: BTreeSet<(IpAddr, u32)>,
    /// The interface indexes whose pairs `own` decides when not `exact` (a plan for one
    /// interface, member or not any more); the other pairs in the table are left as they are.
    pub own_indexes: BTreeSet<u32>,
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
    /// The fast path's pairs (`own4`, `own6`); read for one interface, those of its candidate
    /// addresses only.
    pub own: BTreeSet<(IpAddr, u32)>,
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

    pub fn map(&self, name: &str) -> &BTreeMap<String, String> {
        if name == "wrong_iface" { &self.wrong_iface } else { &self.src_iface }
    }

    pub fn map_mut(&mut self, name: &str) -> &mut BTreeMap<String, String> {
        if name == "wrong_iface" { &mut self.wrong_iface } else { &mut self.src_iface }
    }

    /// Packets dropped on the interface with routing table `table`, by reason.
    pub fn drops(&self, table: u32) -> Drops {
        let get = |c: String| self.counters.get(&c).copied();
        Drops { wrong_interface: get(drop_counter(table)), reverse_path: get(rpf_counter(table)), foreign_source: get(src_counter(table)) }
    }
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
    Members {
        add: Vec<(String, u32)>,
        remove: Vec<(String, u32)>,
        add_indexes: Vec<u32>,
        remove_indexes: Vec<u32>,
        add_own: Vec<(IpAddr, u32)>,
        remove_own: Vec<(IpAddr, u32)>,
        shape: Shape,
    },
}

/// The fast path's set for a pair, and the pair as that set's key: the address in network
/// order, then the index in host order, each field in 4-byte registers.
pub fn own_element(addr: IpAddr, index: u32) -> (&'static str, Vec<u8>) {
    match addr {
        IpAddr::V4(a) => ("own4", [&a.octets()[..], &index.to_ne_bytes()].concat()),
        IpAddr::V6(a) => ("own6", [&a.octets()[..], &index.to_ne_bytes()].concat()),
    }
}

/// A key of `own4` or `own6` as a pair; `None` for anything else.
pub fn own_pair_of(set: &str, key: &[u8]) -> Option<(IpAddr, u32)> {
    let index = |k: &[u8]| Some(u32::from_ne_bytes(k.try_into().ok()?));
    match (set, key.len()) {
        ("own4", 8) => Some((IpAddr::from(<[u8; 4]>::try_from(&key[..4]).ok()?), index(&key[4..])?)),
        ("own6", 20) => Some((IpAddr::from(<[u8; 16]>::try_from(&key[..16]).ok()?), index(&key[16..])?)),
        _ => None,
    }
}
