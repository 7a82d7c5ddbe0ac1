//! stronghost's nftables table over nfnetlink, without running `nft`: reading which interfaces
//! the receive filter covers, its counters, and the rule's body; creating the table; changing its
//! members. Each write is one nftables transaction. Repairing a table someone else changed still
//! goes through `nft -f` (filter.rs), which merges with what is there and keeps the counters.
//!
//! The rule is written and read back as a list of `Expr`: what `receive_rule` returns is both
//! what `create_table` encodes and what an installed rule must decode to, so a table whose rule was
//! edited — whatever its comment says — is noticed.

use super::transport::{NLM_F_ACK, NLM_F_DUMP, NLMSG_ERROR, NetlinkError, Transport, attributes};
use nix::errno::Errno;
use std::collections::BTreeMap;

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFT_MSG_GETOBJ: u16 = 19;
const NFT_MSG_DELOBJ: u16 = 20;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NLA_F_NESTED: u16 = 0x8000;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const IFNAMSIZ: usize = 16;
const NFPROTO_INET: u8 = 1;
const NFT_OBJECT_COUNTER: u32 = 1;
/// Elements per NEWSETELEM/DELSETELEM message: a nested attribute's length is 16 bits, so a list
/// of thousands of interfaces has to be spread over several messages of the same transaction.
const ELEMENTS_PER_MESSAGE: usize = 256;

/// Set ids inside the creating transaction, by which the rule refers to sets made in it.
const SET_MANAGED: (&str, u32) = ("managed", 1);
const SET_WRONG_IFACE: (&str, u32) = ("wrong_iface", 2);

pub const NFT_REG_VERDICT: u32 = 0;
pub const NFT_REG_1: u32 = 1;
pub const NFT_META_IIFNAME: u32 = 6;
pub const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
pub const NFTA_FIB_F_DADDR: u32 = 2;
pub const NFTA_FIB_F_IIF: u32 = 8;
pub const NFT_CMP_EQ: u32 = 0;
pub const NFT_CMP_NEQ: u32 = 1;
pub const RTN_LOCAL: u32 = 2;
pub const NF_DROP: u32 = 0;

/// One expression of a rule, as stronghost writes them and as the kernel dumps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: u32,
        dreg: u32,
    },
    /// Set membership of the register (not inverted).
    Lookup {
        set: String,
        sreg: u32,
    },
    Fib {
        flags: u32,
        result: u32,
        dreg: u32,
    },
    Cmp {
        sreg: u32,
        op: u32,
        data: Vec<u8>,
    },
    /// The object (a counter) the map gives for the register's key.
    ObjrefMap {
        set: String,
        sreg: u32,
    },
    Verdict {
        code: u32,
    },
}

/// The receive filter's one rule:
/// `iifname @managed fib daddr . iif type != local fib daddr type local
///  counter name iifname map @wrong_iface drop`
pub fn receive_rule() -> Vec<Expr> {
    let local = RTN_LOCAL.to_ne_bytes().to_vec(); // fib results are in host order
    vec![
        Expr::Meta { key: NFT_META_IIFNAME, dreg: NFT_REG_1 },
        Expr::Lookup { set: SET_MANAGED.0.into(), sreg: NFT_REG_1 },
        Expr::Fib { flags: NFTA_FIB_F_DADDR | NFTA_FIB_F_IIF, result: NFT_FIB_RESULT_ADDRTYPE, dreg: NFT_REG_1 },
        Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_NEQ, data: local.clone() },
        Expr::Fib { flags: NFTA_FIB_F_DADDR, result: NFT_FIB_RESULT_ADDRTYPE, dreg: NFT_REG_1 },
        Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_EQ, data: local },
        Expr::Meta { key: NFT_META_IIFNAME, dreg: NFT_REG_1 },
        Expr::ObjrefMap { set: SET_WRONG_IFACE.0.into(), sreg: NFT_REG_1 },
        Expr::Verdict { code: NF_DROP },
    ]
}

/// Appends one attribute. Lengths are 16 bits: callers keep what they nest small (elements go
/// ELEMENTS_PER_MESSAGE to a message), and a value that would not fit is a bug, not a truncation.
fn attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = u16::try_from(4 + data.len()).expect("netlink attribute longer than 64 KiB");
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + ((4 - usize::from(len) % 4) % 4), 0);
}

fn nested(buf: &mut Vec<u8>, kind: u16, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    attr(buf, kind | NLA_F_NESTED, &inner);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn find<'a>(a: &[(u16, &'a [u8])], kind: u16) -> Option<&'a [u8]> {
    a.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(&[])).into_owned()
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

/// Appends one nfnetlink message: nlmsghdr, nfgenmsg (family, version 0, res_id), attributes.
fn put_message(buf: &mut Vec<u8>, seq: u32, kind: u16, flags: u16, family: u8, res_id: u16, attrs: &[u8]) {
    let len = u32::try_from(16 + 4 + attrs.len()).expect("nfnetlink message longer than 4 GiB");
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(super::transport::NLM_F_REQUEST | flags).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
}

impl Expr {
    /// NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }, as `nft --debug=netlink` shows
    /// the same rule; set ids refer to sets created in the same transaction.
    fn encode(&self, out: &mut Vec<u8>) {
        let (name, data): (&str, Vec<u8>) = match self {
            Expr::Meta { key, dreg } => {
                let mut d = Vec::new();
                attr(&mut d, 2, &be(*key)); // NFTA_META_KEY
                attr(&mut d, 1, &be(*dreg)); // NFTA_META_DREG
                ("meta", d)
            }
            Expr::Lookup { set, sreg } => {
                let mut d = Vec::new();
                attr(&mut d, 2, &be(*sreg)); // NFTA_LOOKUP_SREG
                attr(&mut d, 1, &cstr(set)); // NFTA_LOOKUP_SET
                attr(&mut d, 4, &be(set_id(set))); // NFTA_LOOKUP_SET_ID
                ("lookup", d)
            }
            Expr::Fib { flags, result, dreg } => {
                let mut d = Vec::new();
                attr(&mut d, 3, &be(*flags)); // NFTA_FIB_FLAGS
                attr(&mut d, 2, &be(*result)); // NFTA_FIB_RESULT
                attr(&mut d, 1, &be(*dreg)); // NFTA_FIB_DREG
                ("fib", d)
            }
            Expr::Cmp { sreg, op, data } => {
                let mut d = Vec::new();
                attr(&mut d, 1, &be(*sreg)); // NFTA_CMP_SREG
                attr(&mut d, 2, &be(*op)); // NFTA_CMP_OP
                nested(&mut d, 3, |v| attr(v, 1, data)); // NFTA_CMP_DATA / NFTA_DATA_VALUE
                ("cmp", d)
            }
            Expr::ObjrefMap { set, sreg } => {
                let mut d = Vec::new();
                attr(&mut d, 3, &be(*sreg)); // NFTA_OBJREF_SET_SREG
                attr(&mut d, 4, &cstr(set)); // NFTA_OBJREF_SET_NAME
                attr(&mut d, 5, &be(set_id(set))); // NFTA_OBJREF_SET_ID
                ("objref", d)
            }
            Expr::Verdict { code } => {
                let mut d = Vec::new();
                attr(&mut d, 1, &be(NFT_REG_VERDICT)); // NFTA_IMMEDIATE_DREG
                nested(&mut d, 2, |v| nested(v, 2, |verdict| attr(verdict, 1, &be(*code)))); // DATA / VERDICT / CODE
                ("immediate", d)
            }
        };
        nested(out, 1, |e| {
            attr(e, 1, &cstr(name)); // NFTA_EXPR_NAME
            attr(e, 2 | NLA_F_NESTED, &data); // NFTA_EXPR_DATA
        });
    }

    /// One dumped expression, if it is one of the shapes above with nothing else set (an
    /// inverted lookup, a different register or any attribute stronghost does not write makes
    /// it another rule).
    fn decode(elem: &[u8]) -> Option<Expr> {
        let e: Vec<_> = attributes(elem).collect();
        let name = text(find(&e, 1)?);
        let d: Vec<_> = attributes(find(&e, 2)?).collect();
        let only = |kinds: &[u16]| d.iter().all(|(k, _)| kinds.contains(k));
        let u = |k: u16| find(&d, k).and_then(be32);
        Some(match name.as_str() {
            "meta" if only(&[1, 2]) => Expr::Meta { key: u(2)?, dreg: u(1)? },
            // The kernel reports NFTA_LOOKUP_FLAGS; 0 is a plain (not inverted) lookup.
            "lookup" if only(&[1, 2, 5]) && u(5).unwrap_or(0) == 0 => Expr::Lookup { set: text(find(&d, 1)?), sreg: u(2)? },
            "fib" if only(&[1, 2, 3]) => Expr::Fib { flags: u(3)?, result: u(2)?, dreg: u(1)? },
            "cmp" if only(&[1, 2, 3]) => {
                let data: Vec<_> = attributes(find(&d, 3)?).collect();
                if data.len() != 1 {
                    return None;
                }
                Expr::Cmp { sreg: u(1)?, op: u(2)?, data: find(&data, 1)?.to_vec() }
            }
            "objref" if only(&[3, 4]) => Expr::ObjrefMap { set: text(find(&d, 4)?), sreg: u(3)? },
            "immediate" if only(&[1, 2]) && u(1)? == NFT_REG_VERDICT => {
                let data: Vec<_> = attributes(find(&d, 2)?).collect();
                let verdict: Vec<_> = attributes(find(&data, 2)?).collect();
                if data.len() != 1 || verdict.len() != 1 {
                    return None;
                }
                Expr::Verdict { code: find(&verdict, 1).and_then(be32)? }
            }
            _ => return None,
        })
    }
}

fn set_id(set: &str) -> u32 {
    if set == SET_MANAGED.0 { SET_MANAGED.1 } else { SET_WRONG_IFACE.1 }
}

/// A set element as read back: its key, and for a map the object it names.
pub type Element = (String, Option<String>);

/// A rule as read back: its expressions (`None` when one of them is outside `Expr`) and its
/// user data (the comment).
#[derive(Debug, Clone)]
pub struct InstalledRule {
    pub exprs: Option<Vec<Expr>>,
    pub userdata: Vec<u8>,
}

/// One nftables netlink conversation.
pub struct Nft {
    t: Transport,
}

impl Nft {
    pub fn open() -> std::io::Result<Nft> {
        Ok(Nft { t: Transport::open(NETLINK_NETFILTER)? })
    }

    /// Sends one request; returns the payloads (after the nfgenmsg) of every answer.
    /// `Ok(None)` when the kernel says the object does not exist.
    fn request(&mut self, msg: u16, flags: u16, attributes: &[u8]) -> Result<Option<Vec<Vec<u8>>>, NetlinkError> {
        let flags = NLM_F_ACK | flags;
        let answers = self.t.request(flags, |seq| {
            let mut buf = Vec::with_capacity(64);
            put_message(&mut buf, seq, (NFNL_SUBSYS_NFTABLES << 8) | msg, flags, NFPROTO_INET, 0, attributes);
            buf
        });
        match answers {
            Ok(a) => Ok(Some(a.iter().map(|m| m.payload().get(4..).unwrap_or_default().to_vec()).collect())),
            Err(e) if e.errno() == Some(Errno::ENOENT) => Ok(None), // no such table, chain or set
            Err(e) => Err(e),
        }
    }

    pub fn table_exists(&mut self, table: &str) -> Result<bool, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_TABLE_NAME
        Ok(self.request(NFT_MSG_GETTABLE, 0, &a)?.is_some())
    }

    /// Adds and removes receive-filter members in one nftables transaction: the counter object,
    /// the `managed` set element and the `wrong_iface` map element of each. All or nothing.
    pub fn update_members(&mut self, table: &str, add: &[(String, String)], remove: &[(String, String)]) -> Result<(), NetlinkError> {
        let msgs = member_messages(table, add, remove);
        self.transaction(NFNL_SUBSYS_NFTABLES, &msgs)
    }

    /// Creates the whole receive-filter table in one transaction, as filter.rs's script would:
    ///
    /// ```text
    /// chain receive { type filter hook prerouting priority -300; policy accept; }
    /// set managed { type ifname; }   map wrong_iface { type ifname : counter; }
    /// <receive_rule()> comment "<tag>"
    /// ```
    /// The sets carry the same user data nft writes (key byte order), so `nft list` prints them
    /// as usual.
    pub fn create_table(&mut self, table: &str, chain: &str, members: &[(String, String)], tag: &str) -> Result<(), NetlinkError> {
        const NFT_SET_OBJECT: u32 = 0x40;
        const TYPE_IFNAME: u32 = 41;
        const NF_INET_PRE_ROUTING: u32 = 0;
        const PRIORITY_RAW: i32 = -300;
        let mut msgs: Vec<(u16, u16, Vec<u8>)> = Vec::new();

        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_TABLE_NAME
        attr(&mut a, 2, &be(0)); // NFTA_TABLE_FLAGS
        msgs.push((NFT_MSG_NEWTABLE, NLM_F_CREATE, a));

        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_CHAIN_TABLE
        attr(&mut a, 3, &cstr(chain)); // NFTA_CHAIN_NAME
        attr(&mut a, 7, &cstr("filter")); // NFTA_CHAIN_TYPE
        attr(&mut a, 5, &be(1)); // NFTA_CHAIN_POLICY: accept
        nested(&mut a, 4, |h| {
            attr(h, 1, &be(NF_INET_PRE_ROUTING)); // NFTA_HOOK_HOOKNUM
            attr(h, 2, &PRIORITY_RAW.to_be_bytes()); // NFTA_HOOK_PRIORITY
        });
        msgs.push((NFT_MSG_NEWCHAIN, NLM_F_CREATE, a));

        // NFTNL_UDATA_SET_KEYBYTEORDER = host; for the map also the trailer nft adds (type 6, 0),
        // so both print as nft would have made them.
        let set = |(name, id): (&str, u32), map: bool| {
            let mut a = Vec::new();
            attr(&mut a, 1, &cstr(table)); // NFTA_SET_TABLE
            attr(&mut a, 2, &cstr(name)); // NFTA_SET_NAME
            attr(&mut a, 3, &be(if map { NFT_SET_OBJECT } else { 0 })); // NFTA_SET_FLAGS
            attr(&mut a, 4, &be(TYPE_IFNAME)); // NFTA_SET_KEY_TYPE
            attr(&mut a, 5, &be(IFNAMSIZ as u32)); // NFTA_SET_KEY_LEN
            if map {
                attr(&mut a, 15, &be(NFT_OBJECT_COUNTER)); // NFTA_SET_OBJ_TYPE
            }
            attr(&mut a, 10, &be(id)); // NFTA_SET_ID
            let udata: &[u8] = if map { &[0, 4, 1, 0, 0, 0, 6, 4, 0, 0, 0, 0] } else { &[0, 4, 1, 0, 0, 0] };
            attr(&mut a, 13, udata); // NFTA_SET_USERDATA
            a
        };
        msgs.push((NFT_MSG_NEWSET, NLM_F_CREATE, set(SET_MANAGED, false)));
        msgs.push((NFT_MSG_NEWSET, NLM_F_CREATE, set(SET_WRONG_IFACE, true)));

        // The counters and elements, as update_members writes them.
        msgs.extend(member_messages(table, members, &[]));

        let mut list = Vec::new();
        for e in receive_rule() {
            e.encode(&mut list);
        }
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_RULE_TABLE
        attr(&mut a, 2, &cstr(chain)); // NFTA_RULE_CHAIN
        attr(&mut a, 4 | NLA_F_NESTED, &list); // NFTA_RULE_EXPRESSIONS
        let tag = &tag.as_bytes()[..tag.len().min(200)];
        let mut comment = vec![0u8, (tag.len() + 1) as u8]; // NFTNL_UDATA_RULE_COMMENT, length
        comment.extend_from_slice(tag);
        comment.push(0);
        attr(&mut a, 7, &comment); // NFTA_RULE_USERDATA
        msgs.push((NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, a));
        self.transaction(NFNL_SUBSYS_NFTABLES, &msgs)
    }

    /// Deletes the table and everything in it; already gone is fine.
    pub fn delete_table(&mut self, table: &str) -> Result<(), NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_TABLE_NAME
        match self.transaction(NFNL_SUBSYS_NFTABLES, &[(NFT_MSG_DELTABLE, 0, a)]) {
            Err(e) if e.errno() == Some(Errno::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// Sends messages as one nfnetlink batch (one nftables transaction). Only the last message
    /// asks for an ACK: every failing message is answered with its error anyway, before the last
    /// one's answer, and an ACK per message would overrun the socket for a large table.
    ///
    /// An answer to the batch header itself is final: the kernel refused the batch before any of
    /// it ran (an unknown subsystem, a generation mismatch, no memory), or the commit failed — in
    /// which case the per-message answers that follow, the last one's ACK included, would read as
    /// success.
    fn transaction(&mut self, subsys: u16, msgs: &[(u16, u16, Vec<u8>)]) -> Result<(), NetlinkError> {
        if msgs.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let begin = self.t.next_seq();
        put_message(&mut buf, begin, NFNL_MSG_BATCH_BEGIN, 0, 0, subsys, &[]);
        let mut last = begin;
        for (i, (kind, flags, attrs)) in msgs.iter().enumerate() {
            last = self.t.next_seq();
            let ack = if i + 1 == msgs.len() { NLM_F_ACK } else { 0 };
            put_message(&mut buf, last, (NFNL_SUBSYS_NFTABLES << 8) | kind, ack | flags, NFPROTO_INET, 0, attrs);
        }
        let end = self.t.next_seq();
        put_message(&mut buf, end, NFNL_MSG_BATCH_END, 0, 0, subsys, &[]);
        self.t.send(&buf)?;
        let mut failed = None;
        self.t.receive(begin, last, |a| transaction_answer(begin, last, &a, &mut failed))
    }

    /// Elements of a set (keys) or map (key → object name) of an inet table; `None` if absent.
    pub fn elements(&mut self, table: &str, set: &str) -> Result<Option<Vec<Element>>, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_SET_ELEM_LIST_TABLE
        attr(&mut a, 2, &cstr(set)); // NFTA_SET_ELEM_LIST_SET
        let Some(msgs) = self.request(NFT_MSG_GETSETELEM, NLM_F_DUMP, &a)? else { return Ok(None) };
        let mut out = Vec::new();
        for m in &msgs {
            let top: Vec<_> = attributes(m).collect();
            let Some(list) = find(&top, 3) else { continue }; // NFTA_SET_ELEM_LIST_ELEMENTS
            for (_, elem) in attributes(list) {
                let e: Vec<_> = attributes(elem).collect();
                let key = find(&e, 1).and_then(|k| attributes(k).find(|(t, _)| *t == 1).map(|(_, v)| text(v))); // KEY → DATA_VALUE
                let obj = find(&e, 9).map(text); // NFTA_SET_ELEM_OBJREF
                if let Some(k) = key {
                    out.push((k, obj));
                }
            }
        }
        Ok(Some(out))
    }

    /// Counter objects of an inet table: name → packets.
    pub fn counters(&mut self, table: &str) -> Result<Option<BTreeMap<String, u64>>, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_OBJ_TABLE
        attr(&mut a, 3, &NFT_OBJECT_COUNTER.to_be_bytes()); // NFTA_OBJ_TYPE
        let Some(msgs) = self.request(NFT_MSG_GETOBJ, NLM_F_DUMP, &a)? else { return Ok(None) };
        let mut out = BTreeMap::new();
        for m in &msgs {
            let top: Vec<_> = attributes(m).collect();
            if find(&top, 1).map(text).as_deref() != Some(table) {
                continue;
            }
            let Some(name) = find(&top, 2).map(text) else { continue };
            let packets = find(&top, 4)
                .and_then(|d| attributes(d).find(|(t, _)| *t == 2).map(|(_, v)| v)) // NFTA_COUNTER_PACKETS
                .and_then(|p| Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?)))
                .unwrap_or(0);
            out.insert(name, packets);
        }
        Ok(Some(out))
    }

    /// The chain's hook number, priority and policy; `None` if it does not exist.
    pub fn chain(&mut self, table: &str, chain: &str) -> Result<Option<(u32, i32, u32)>, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_CHAIN_TABLE
        attr(&mut a, 3, &cstr(chain)); // NFTA_CHAIN_NAME
        let Some(msgs) = self.request(NFT_MSG_GETCHAIN, 0, &a)? else { return Ok(None) };
        let Some(m) = msgs.first() else { return Ok(None) };
        let top: Vec<_> = attributes(m).collect();
        let hook: Vec<_> = find(&top, 4).map(|h| attributes(h).collect()).unwrap_or_default();
        let num = find(&hook, 1).and_then(be32);
        let prio = find(&hook, 2).and_then(be32).map(|p| p as i32);
        let policy = find(&top, 5).and_then(be32);
        Ok(match (num, prio, policy) {
            (Some(n), Some(p), Some(pol)) => Some((n, p, pol)),
            _ => None,
        })
    }

    /// Every rule of a chain, body and comment; `None` if the chain does not exist.
    pub fn rules(&mut self, table: &str, chain: &str) -> Result<Option<Vec<InstalledRule>>, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_RULE_TABLE
        attr(&mut a, 2, &cstr(chain)); // NFTA_RULE_CHAIN
        let Some(msgs) = self.request(NFT_MSG_GETRULE, NLM_F_DUMP, &a)? else { return Ok(None) };
        Ok(Some(
            msgs.iter()
                .map(|m| {
                    let top: Vec<_> = attributes(m).collect();
                    let exprs = find(&top, 4) // NFTA_RULE_EXPRESSIONS
                        .and_then(|list| attributes(list).map(|(_, e)| Expr::decode(e)).collect::<Option<Vec<_>>>());
                    InstalledRule { exprs, userdata: find(&top, 7).unwrap_or_default().to_vec() } // NFTA_RULE_USERDATA
                })
                .collect(),
        ))
    }
}

/// One answer of a transaction whose header is `begin` and whose last message is `last`:
/// `Ok(true)` when the transaction is over and succeeded; the first error otherwise.
fn transaction_answer(
    begin: u32,
    last: u32,
    a: &super::transport::Answer,
    failed: &mut Option<NetlinkError>,
) -> Result<bool, NetlinkError> {
    if a.kind != NLMSG_ERROR {
        return Ok(false);
    }
    let verdict = a.verdict();
    if a.seq == begin {
        // About the batch as a whole: refused, or its commit failed. Nothing took effect.
        return verdict.map(|()| false);
    }
    if let Err(e) = verdict {
        // Any error aborts the transaction as a whole; the first one says why.
        failed.get_or_insert(e);
    }
    if a.seq == last {
        return match failed.take() {
            Some(e) => Err(e),
            None => Ok(true),
        };
    }
    Ok(false)
}

/// The messages that add and remove members: counter objects, `managed` set elements and
/// `wrong_iface` map elements, at most ELEMENTS_PER_MESSAGE elements to a message.
fn member_messages(table: &str, add: &[(String, String)], remove: &[(String, String)]) -> Vec<(u16, u16, Vec<u8>)> {
    let mut msgs: Vec<(u16, u16, Vec<u8>)> = Vec::new();
    let elements = |set: &str, list: &[(String, String)], objref: bool| {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_SET_ELEM_LIST_TABLE
        attr(&mut a, 2, &cstr(set)); // NFTA_SET_ELEM_LIST_SET
        nested(&mut a, 3, |elems| {
            // NFTA_SET_ELEM_LIST_ELEMENTS
            for (ifname, counter) in list {
                nested(elems, 1, |e| {
                    // NFTA_LIST_ELEM
                    let mut key = ifname.as_bytes().to_vec();
                    key.resize(IFNAMSIZ, 0);
                    nested(e, 1, |k| attr(k, 1, &key)); // NFTA_SET_ELEM_KEY / NFTA_DATA_VALUE
                    if objref {
                        attr(e, 9, &cstr(counter)); // NFTA_SET_ELEM_OBJREF
                    }
                });
            }
        });
        a
    };
    let object = |name: &str, with_data: bool| {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_OBJ_TABLE
        attr(&mut a, 2, &cstr(name)); // NFTA_OBJ_NAME
        attr(&mut a, 3, &NFT_OBJECT_COUNTER.to_be_bytes()); // NFTA_OBJ_TYPE
        if with_data {
            attr(&mut a, 4 | NLA_F_NESTED, &[]); // NFTA_OBJ_DATA: a counter starting at zero
        }
        a
    };
    for chunk in remove.chunks(ELEMENTS_PER_MESSAGE) {
        msgs.push((NFT_MSG_DELSETELEM, 0, elements(SET_WRONG_IFACE.0, chunk, false)));
        msgs.push((NFT_MSG_DELSETELEM, 0, elements(SET_MANAGED.0, chunk, false)));
    }
    for (_, counter) in remove {
        msgs.push((NFT_MSG_DELOBJ, 0, object(counter, false)));
    }
    for (_, counter) in add {
        msgs.push((NFT_MSG_NEWOBJ, NLM_F_CREATE, object(counter, true)));
    }
    for chunk in add.chunks(ELEMENTS_PER_MESSAGE) {
        msgs.push((NFT_MSG_NEWSETELEM, NLM_F_CREATE, elements(SET_MANAGED.0, chunk, false)));
        msgs.push((NFT_MSG_NEWSETELEM, NLM_F_CREATE, elements(SET_WRONG_IFACE.0, chunk, true)));
    }
    msgs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::testns::in_new_netns;

    #[test]
    fn attributes_round_trip() {
        let mut b = Vec::new();
        attr(&mut b, 1, &cstr("stronghost"));
        attr(&mut b, 3, &7u32.to_be_bytes());
        let a: Vec<_> = attributes(&b).collect();
        assert_eq!(text(find(&a, 1).unwrap()), "stronghost");
        assert_eq!(be32(find(&a, 3).unwrap()), Some(7));
        // Truncated or garbage input ends the walk instead of panicking.
        assert_eq!(attributes(&[0xff, 0xff, 0, 0, 1]).count(), 0);
        assert_eq!(attributes(&b[..5]).count(), 0);
    }

    #[test]
    fn the_rule_decodes_to_what_it_encodes() {
        for e in receive_rule() {
            let mut b = Vec::new();
            e.encode(&mut b);
            let (_, elem) = attributes(&b).next().unwrap();
            // The creating transaction's set ids are not part of what the kernel reports.
            let dumped: Vec<u8> = strip_set_ids(elem);
            assert_eq!(Expr::decode(&dumped), Some(e));
        }
    }

    /// What the kernel does to an expression: drops NFTA_*_SET_ID.
    fn strip_set_ids(elem: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in attributes(elem) {
            if k == 2 {
                let name = text(find(&attributes(elem).collect::<Vec<_>>(), 1).unwrap());
                let id = if name == "lookup" { 4 } else { 5 };
                let mut d = Vec::new();
                for (dk, dv) in attributes(v) {
                    if !(matches!(name.as_str(), "lookup" | "objref") && dk == id) {
                        attr(&mut d, dk, dv);
                    }
                }
                attr(&mut out, k | NLA_F_NESTED, &d);
            } else {
                attr(&mut out, k, v);
            }
        }
        out
    }

    /// An answer to the batch header ends the transaction with its error, even when the last
    /// message's ACK follows (a failed commit); a refused batch is not waited on further.
    #[test]
    fn a_failed_commit_is_a_failure() {
        let error = |seq: u32, code: i32| {
            let mut b = Vec::new();
            let mut p = code.to_ne_bytes().to_vec();
            p.extend_from_slice(&[0; 16]);
            b.extend_from_slice(&((16 + p.len()) as u32).to_ne_bytes());
            b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            b.extend_from_slice(&0x100u16.to_ne_bytes());
            b.extend_from_slice(&seq.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend(p);
            super::super::transport::split(&b).next().unwrap().unwrap()
        };
        let mut failed = None;
        let r = transaction_answer(10, 14, &error(10, -(Errno::ENOMEM as i32)), &mut failed);
        assert_eq!(r.unwrap_err().errno(), Some(Errno::ENOMEM));
        // A message's error, then the last one's ACK: the message's error.
        let mut failed = None;
        assert!(!transaction_answer(10, 14, &error(12, -(Errno::EEXIST as i32)), &mut failed).unwrap());
        assert_eq!(transaction_answer(10, 14, &error(14, 0), &mut failed).unwrap_err().errno(), Some(Errno::EEXIST));
        let mut failed = None;
        assert!(transaction_answer(10, 14, &error(14, 0), &mut failed).unwrap());
    }

    /// Against the kernel, in a network namespace of the test's own thread.
    #[test]
    fn kernel_refusing_a_batch_is_reported_not_waited_on() {
        in_new_netns(|| {
            let mut nft = Nft::open().unwrap();
            let mut a = Vec::new();
            attr(&mut a, 1, &cstr("refused"));
            // An unknown subsystem in the batch header: the kernel answers the header only.
            let e = nft.transaction(200, &[(NFT_MSG_NEWTABLE, NLM_F_CREATE, a)]).unwrap_err();
            assert_eq!(e.errno(), Some(Errno::EINVAL), "{e}");
            assert!(!nft.table_exists("refused").unwrap());
        });
    }

    /// Thousands of members (more than one message's worth) all arrive, and all leave.
    #[test]
    fn thousands_of_members_survive_a_round_trip() {
        in_new_netns(|| {
            let mut nft = Nft::open().unwrap();
            let members: Vec<(String, String)> = (0..3000).map(|i| (format!("m{i}"), format!("drop_{}", 5000 + i))).collect();
            nft.create_table("sh_test", "receive", &members, "test").unwrap();
            assert_eq!(nft.elements("sh_test", "managed").unwrap().unwrap().len(), 3000);
            let map = nft.elements("sh_test", "wrong_iface").unwrap().unwrap();
            assert_eq!(map.len(), 3000);
            assert!(map.contains(&("m2999".to_string(), Some("drop_7999".to_string()))));
            assert_eq!(nft.counters("sh_test").unwrap().unwrap().len(), 3000);
            let rules = nft.rules("sh_test", "receive").unwrap().unwrap();
            assert_eq!(rules.len(), 1);
            assert_eq!(rules[0].exprs.as_deref(), Some(&receive_rule()[..]));
            nft.update_members("sh_test", &[], &members[..2000]).unwrap();
            assert_eq!(nft.elements("sh_test", "managed").unwrap().unwrap().len(), 1000);
            nft.delete_table("sh_test").unwrap();
            assert!(!nft.table_exists("sh_test").unwrap());
        });
    }
}
