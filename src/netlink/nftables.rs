//! stronghost's nftables table over nfnetlink, without running `nft`: reading its sets, maps,
//! counters, chains and rules; changing its members; deleting it. Each write is one nftables
//! transaction. Creating and repairing the table goes through `nft -f` (execute/filter.rs), which
//! merges with what is there and keeps the counters.
//!
//! Installed rules are read back as lists of `Expr` and compared with what model/table.rs describes, so a
//! table whose rules were edited — whatever their comments say — is noticed.

use super::abi::*;
use super::transport::{NLM_F_ACK, NLM_F_DUMP, NLMSG_ERROR, NetlinkError, Transport, attributes};
use crate::model::nft::*;
use nix::errno::Errno;
use std::collections::BTreeMap;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
const NLM_F_APPEND: u16 = 0x800;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFT_MSG_GETOBJ: u16 = 19;
const NFT_MSG_DELOBJ: u16 = 20;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NLM_F_CREATE: u16 = 0x400;
const IFNAMSIZ: usize = 16;
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_BRIDGE: u8 = 7;
/// Elements per NEWSETELEM/DELSETELEM message: a nested attribute's length is 16 bits, so a list
/// of thousands of interfaces has to be spread over several messages of the same transaction.
const ELEMENTS_PER_MESSAGE: usize = 256;

const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_LOOKUP_F_INV: u32 = 1;

/// nfnetlink's multicast group of nftables' changes (linux/netfilter/nfnetlink.h).
const NFNLGRP_NFTABLES: u32 = 7;
/// The message that closes every committed transaction: its generation and who made it.
const NFT_MSG_NEWGEN: u16 = 15;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;

/// What the notifications drained so far say about the followed table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Nothing, or only this process's own transactions.
    Nothing,
    /// Another process's transaction touched the table (created, flushed, deleted, edited, a
    /// member or counter changed): "pid N (comm)" of the last one.
    Changed(String),
    /// Notifications were lost (the buffer overran): the table may have changed.
    Lost,
}

/// Follows one nftables table of family inet through the kernel's notifications
/// (NFNLGRP_NFTABLES, as `nft monitor`): `flush ruleset`, `nft delete table`, an edit by hand —
/// whatever removes or alters it is heard at once, not at the next lease.
///
/// A transaction's notifications end with NFT_MSG_NEWGEN, whose header carries the port of the
/// socket that committed it (and whose attributes name the process). Transactions this process
/// committed over nfnetlink (`OWN_PORTS`) are its own writes and ignored; any other one that
/// touched the table counts — `nft -f` run by stronghost itself and other stronghost processes
/// included (the run it causes finds the table converged and writes nothing).
pub struct Monitor {
    sub: super::subscription::Subscription,
    table: Vec<u8>,
    /// The transaction being read touched the table; decided at its NEWGEN.
    touched: bool,
}

/// The ports of the sockets this process committed its latest transactions from. A socket's
/// port is unique while it is open and ports are not handed out again soon after (the kernel
/// counts them down from its rover); the notifications of a commit arrive before a few hundred
/// more of this process's own.
static OWN_PORTS: std::sync::Mutex<std::collections::VecDeque<u32>> = std::sync::Mutex::new(std::collections::VecDeque::new());
const OWN_PORTS_KEPT: usize = 256;

fn note_own_port(port: u32) {
    let mut p = OWN_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    if p.back() != Some(&port) {
        if p.len() == OWN_PORTS_KEPT {
            p.pop_front();
        }
        p.push_back(port);
    }
}

fn is_own_port(port: u32) -> bool {
    OWN_PORTS.lock().unwrap_or_else(|e| e.into_inner()).contains(&port)
}

impl Monitor {
    pub fn open(table: &str) -> std::io::Result<Monitor> {
        // A `flush ruleset` of a large foreign ruleset is one notification per object.
        let sub = super::subscription::Subscription::open_protocol(NETLINK_NETFILTER, &[NFNLGRP_NFTABLES], 8 << 20)?;
        Ok(Monitor { sub, table: table.as_bytes().to_vec(), touched: false })
    }

    /// Reads every notification queued now.
    pub fn drain(&mut self) -> Heard {
        let mut heard = Heard::Nothing;
        let (table, touched) = (&self.table, &mut self.touched);
        let complete = self.sub.drain(|m| {
            if let Some(by) = judge(m.kind, m.port, m.payload(), table, touched) {
                heard = Heard::Changed(by);
            }
        });
        if complete { heard } else { Heard::Lost }
    }
}

impl std::os::fd::AsFd for Monitor {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sub.as_fd()
    }
}

/// One notification (its type, sender port and what follows the netlink header): marks `touched`
/// when it is about `table` of family inet; at the transaction's end, who made it, unless that
/// was this process.
fn judge(kind: u16, port: u32, payload: &[u8], table: &[u8], touched: &mut bool) -> Option<String> {
    if kind >> 8 != NFNL_SUBSYS_NFTABLES || payload.len() < 4 {
        return None;
    }
    let attrs: Vec<(u16, &[u8])> = attributes(&payload[4..]).collect();
    if kind & 0xff == NFT_MSG_NEWGEN {
        let was = std::mem::take(touched);
        return (was && !is_own_port(port)).then(|| {
            let pid = find(&attrs, NFTA_GEN_PROC_PID).and_then(be32).unwrap_or(0);
            let comm = find(&attrs, NFTA_GEN_PROC_NAME).map(text).unwrap_or_default();
            format!("pid {pid} ({comm})")
        });
    }
    // Every object's notification names its table first (NFTA_{TABLE_NAME,CHAIN,RULE,SET,
    // SET_ELEM_LIST,OBJ}_TABLE are all 1); the family is nfgenmsg's.
    // (stronghost's bridge table has the same name.)
    if matches!(payload[0], NFPROTO_INET | NFPROTO_BRIDGE) && find(&attrs, 1).is_some_and(|n| c_str(n) == table) {
        *touched = true;
    }
    None
}

/// A rule of another tool that writes a mark's bits in stronghost's field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkWriter {
    pub family: String,
    pub table: String,
    pub chain: String,
    /// "meta mark" or "ct mark", and how.
    pub what: String,
    /// It puts a value there (else it only clears them, by overwriting the whole mark).
    pub sets: bool,
}

fn family_name(f: u8) -> &'static str {
    match f {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "?",
    }
}

/// What a rule's expressions (NFTA_RULE_EXPRESSIONS) write into `mask`'s bits of the packet or
/// connection mark: a constant (`meta mark set 0x…`), a constant combined with the mark (`meta
/// mark set meta mark or 0x…`), or a value from elsewhere (a map, a hash) — each a description
/// and whether it sets a value there (else it clears them). Copies between the two marks (`meta
/// mark set ct mark`) carry stronghost's own value and are not writes of another tool.
fn writes_into(list: &[u8], mask: u32) -> Vec<(String, bool)> {
    #[derive(Clone, Copy)]
    enum Reg {
        Mark(bool),                     // meta (false) or ct (true) mark, unchanged
        Const(u32),                     // a 32-bit constant
        Masked(Option<bool>, u32, u32), // (source mark, if any) & mask ^ xor
        Other,
    }
    let mut regs: BTreeMap<u32, Reg> = BTreeMap::new();
    let mut out = Vec::new();
    for (_, e) in attributes(list) {
        let e: Vec<_> = attributes(e).collect();
        let name = find(&e, 1).map(text).unwrap_or_default();
        let d: Vec<_> = attributes(find(&e, 2).unwrap_or_default()).collect();
        let u = |k: u16| find(&d, k).and_then(be32);
        let value = |k: u16| -> Option<u32> {
            let v = attributes(find(&d, k)?).find(|(t, _)| *t == 1)?.1;
            Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?)).filter(|_| v.len() == 4)
        };
        let store = |regs: &BTreeMap<u32, Reg>, ct: bool, sreg: u32, out: &mut Vec<(String, bool)>| {
            let key = if ct { "ct mark" } else { "meta mark" };
            let (changed, set_to) = match regs.get(&sreg).copied().unwrap_or(Reg::Other) {
                Reg::Mark(_) => return,
                Reg::Const(v) => (mask, v & mask),
                Reg::Masked(from, m, x) => {
                    let kept = if from == Some(ct) { m & mask } else { 0 };
                    (mask & !kept, x & mask & !kept)
                }
                Reg::Other => (mask, mask),
            };
            if changed == 0 {
                return;
            }
            let how = match regs.get(&sreg) {
                Some(Reg::Other) | None => format!("sets {key} from a map, hash or other value (whole word)"),
                _ if set_to != 0 => format!("sets {:#x} in {key}", set_to),
                _ => format!("overwrites {key} (clears bits {changed:#x})"),
            };
            out.push((how, set_to != 0));
        };
        match name.as_str() {
            "immediate" => {
                if let (Some(r), Some(v)) = (u(1).filter(|r| *r != NFT_REG_VERDICT), value(2)) {
                    regs.insert(r, Reg::Const(v));
                }
            }
            "meta" | "ct" => {
                let ct = name == "ct";
                let key = u(2).unwrap_or(u32::MAX);
                let is_mark = key == if ct { NFT_CT_MARK } else { NFT_META_MARK };
                let sreg = if ct { u(4) } else { u(3) };
                match (u(1), sreg) {
                    (Some(dreg), _) => {
                        regs.insert(dreg, if is_mark { Reg::Mark(ct) } else { Reg::Other });
                    }
                    (None, Some(sreg)) if is_mark => store(&regs, ct, sreg, &mut out),
                    _ => {}
                }
            }
            "bitwise" => {
                let (Some(sreg), Some(dreg)) = (u(1), u(2)) else { continue };
                let r = match (regs.get(&sreg).copied(), value(4), value(5), u(6).unwrap_or(0)) {
                    (Some(Reg::Mark(ct)), Some(m), Some(x), 0) => Reg::Masked(Some(ct), m, x),
                    (Some(Reg::Masked(from, m0, x0)), Some(m), Some(x), 0) => Reg::Masked(from, m0 & m, (x0 & m) ^ x),
                    (Some(Reg::Const(v)), Some(m), Some(x), 0) => Reg::Const((v & m) ^ x),
                    _ => Reg::Other,
                };
                regs.insert(dreg, r);
            }
            // The other expressions that load a register (their DREG attribute) make it unknown.
            "lookup" => {
                if let Some(r) = u(3).filter(|r| *r != NFT_REG_VERDICT) {
                    regs.insert(r, Reg::Other);
                }
            }
            "hash" => {
                if let Some(r) = u(2) {
                    regs.insert(r, Reg::Other);
                }
            }
            "payload" | "fib" | "numgen" | "exthdr" | "rt" | "socket" | "osf" | "xfrm" | "tunnel" | "inner" => {
                if let Some(r) = u(1) {
                    regs.insert(r, Reg::Other);
                }
            }
            _ => {}
        }
    }
    out
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

fn find<'a>(a: &[(u16, &'a [u8])], kind: u16) -> Option<&'a [u8]> {
    a.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
}

fn text(v: &[u8]) -> String {
    c_string(v)
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
    /// NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }, as nft writes the same
    /// expression; `set_id` gives the transaction id of a set created in the same transaction.
    fn encode(&self, out: &mut Vec<u8>, set_id: &dyn Fn(&str) -> u32) {
        let be = |v: u32| v.to_be_bytes();
        let mut d = Vec::new();
        let name = match self {
            Expr::Meta { key, dreg } => {
                attr(&mut d, 2, &be(*key));
                attr(&mut d, 1, &be(*dreg));
                "meta"
            }
            Expr::Payload { base, offset, len, dreg } => {
                attr(&mut d, 1, &be(*dreg));
                attr(&mut d, 2, &be(*base));
                attr(&mut d, 3, &be(*offset));
                attr(&mut d, 4, &be(*len));
                "payload"
            }
            Expr::MetaSet { key, sreg } => {
                attr(&mut d, 2, &be(*key));
                attr(&mut d, 3, &be(*sreg));
                "meta"
            }
            Expr::Ct { key, dreg } => {
                attr(&mut d, 2, &be(*key));
                attr(&mut d, 1, &be(*dreg));
                "ct"
            }
            Expr::CtSet { key, sreg } => {
                attr(&mut d, 2, &be(*key));
                attr(&mut d, 4, &be(*sreg));
                "ct"
            }
            Expr::Lookup { set, sreg, dreg, invert } => {
                attr(&mut d, 1, &cstr(set));
                attr(&mut d, 2, &be(*sreg));
                if let Some(r) = dreg {
                    attr(&mut d, 3, &be(*r));
                }
                attr(&mut d, 4, &be(set_id(set)));
                if *invert {
                    attr(&mut d, 5, &be(NFT_LOOKUP_F_INV));
                }
                "lookup"
            }
            Expr::Fib { flags, result, dreg } => {
                attr(&mut d, 1, &be(*dreg));
                attr(&mut d, 2, &be(*result));
                attr(&mut d, 3, &be(*flags));
                "fib"
            }
            Expr::Cmp { sreg, op, data } => {
                attr(&mut d, 1, &be(*sreg));
                attr(&mut d, 2, &be(*op));
                nested(&mut d, 3, |v| attr(v, 1, data));
                "cmp"
            }
            Expr::Bitwise { sreg, dreg, mask, xor } => {
                attr(&mut d, 1, &be(*sreg));
                attr(&mut d, 2, &be(*dreg));
                attr(&mut d, 3, &be(mask.len() as u32));
                nested(&mut d, 4, |v| attr(v, 1, mask));
                nested(&mut d, 5, |v| attr(v, 1, xor));
                "bitwise"
            }
            Expr::ObjrefMap { set, sreg } => {
                attr(&mut d, 3, &be(*sreg));
                attr(&mut d, 4, &cstr(set));
                attr(&mut d, 5, &be(set_id(set)));
                "objref"
            }
            Expr::Counter { name } => {
                attr(&mut d, 1, &be(NFT_OBJECT_COUNTER)); // NFTA_OBJREF_IMM_TYPE
                attr(&mut d, 2, &cstr(name)); // NFTA_OBJREF_IMM_NAME
                "objref"
            }
            Expr::Verdict { code } => {
                attr(&mut d, 1, &be(NFT_REG_VERDICT));
                nested(&mut d, 2, |v| nested(v, 2, |verdict| attr(verdict, 1, &be(*code))));
                "immediate"
            }
            Expr::Branch(b) => {
                attr(&mut d, 1, &be(NFT_REG_VERDICT));
                nested(&mut d, 2, |v| {
                    nested(v, 2, |verdict| {
                        attr(verdict, 1, &be(b.code()));
                        attr(verdict, 2, &cstr(b.chain()));
                    })
                });
                "immediate"
            }
        };
        nested(out, 1, |e| {
            attr(e, 1, &cstr(name)); // NFTA_EXPR_NAME
            attr(e, 2 | NLA_F_NESTED, &d); // NFTA_EXPR_DATA
        });
    }

    /// One dumped expression, if it is one of the shapes above with nothing else set (an
    /// inverted lookup, a different register or any attribute stronghost does not write makes
    /// it another rule).
    fn decode(elem: &[u8]) -> Option<Expr> {
        let e: Vec<_> = attributes(elem).collect();
        let name = text(find(&e, 1)?);
        let d: Vec<_> = attributes(find(&e, 2).unwrap_or_default()).collect();
        let only = |kinds: &[u16]| d.iter().all(|(k, _)| kinds.contains(k));
        let u = |k: u16| find(&d, k).and_then(be32);
        // NFTA_DATA_VALUE inside a nested data attribute.
        let value = |k: u16| -> Option<Vec<u8>> {
            let data: Vec<_> = attributes(find(&d, k)?).collect();
            (data.len() == 1).then(|| find(&data, 1).map(<[u8]>::to_vec))?
        };
        Some(match name.as_str() {
            // NFTA_META_DREG 1, KEY 2, SREG 3
            "meta" if only(&[1, 2]) => Expr::Meta { key: u(2)?, dreg: u(1)? },
            "meta" if only(&[2, 3]) => Expr::MetaSet { key: u(2)?, sreg: u(3)? },
            // NFTA_PAYLOAD_DREG 1, BASE 2, OFFSET 3, LEN 4
            "payload" if only(&[1, 2, 3, 4]) => Expr::Payload { base: u(2)?, offset: u(3)?, len: u(4)?, dreg: u(1)? },
            // NFTA_CT_DREG 1, KEY 2, SREG 4 (a direction, 3, only for keys stronghost does not use)
            "ct" if only(&[1, 2]) => Expr::Ct { key: u(2)?, dreg: u(1)? },
            "ct" if only(&[2, 4]) => Expr::CtSet { key: u(2)?, sreg: u(4)? },
            // NFTA_LOOKUP_SET 1, SREG 2, DREG 3, FLAGS 5
            "lookup" if only(&[1, 2, 3, 5]) && u(5).unwrap_or(0) & !NFT_LOOKUP_F_INV == 0 => {
                Expr::Lookup { set: text(find(&d, 1)?), sreg: u(2)?, dreg: u(3), invert: u(5).unwrap_or(0) & NFT_LOOKUP_F_INV != 0 }
            }
            "fib" if only(&[1, 2, 3]) => Expr::Fib { flags: u(3)?, result: u(2)?, dreg: u(1)? },
            "cmp" if only(&[1, 2, 3]) => Expr::Cmp { sreg: u(1)?, op: u(2)?, data: value(3)? },
            // NFTA_BITWISE_SREG 1, DREG 2, LEN 3, MASK 4, XOR 5, OP 6 (0: mask and xor)
            "bitwise" if only(&[1, 2, 3, 4, 5, 6]) && u(6).unwrap_or(0) == 0 => {
                let (mask, xor) = (value(4)?, value(5)?);
                if u(3)? as usize != mask.len() {
                    return None;
                }
                Expr::Bitwise { sreg: u(1)?, dreg: u(2)?, mask, xor }
            }
            "objref" if only(&[3, 4]) => Expr::ObjrefMap { set: text(find(&d, 4)?), sreg: u(3)? },
            "objref" if only(&[1, 2]) && u(1)? == NFT_OBJECT_COUNTER => Expr::Counter { name: text(find(&d, 2)?) },
            "immediate" if only(&[1, 2]) && u(1)? == NFT_REG_VERDICT => {
                let data: Vec<_> = attributes(find(&d, 2)?).collect();
                let verdict: Vec<_> = attributes(find(&data, 2)?).collect();
                let code = find(&verdict, 1).and_then(be32)?;
                match (data.len(), verdict.len()) {
                    (1, 1) => Expr::Verdict { code },
                    (1, 2) => Expr::Branch(Branch::of(code, text(find(&verdict, 2)?))?),
                    _ => return None,
                }
            }
            _ => return None,
        })
    }
}

/// A rule as read back: its expressions (`None` when one of them is outside `Expr`) and its
/// user data (the comment).
#[derive(Debug, Clone)]
pub struct InstalledRule {
    pub exprs: Option<Vec<Expr>>,
    pub userdata: Vec<u8>,
}

/// One nftables netlink conversation about the tables of one family.
pub struct Nft {
    t: Transport,
    family: u8,
}

impl Nft {
    /// For tables of family inet.
    pub fn open() -> std::io::Result<Nft> {
        Self::open_family(NFPROTO_INET)
    }

    pub fn open_family(family: u8) -> std::io::Result<Nft> {
        Ok(Nft { t: Transport::open(NETLINK_NETFILTER)?, family })
    }

    /// Sends one request; returns the payloads (after the nfgenmsg) of every answer.
    /// `Ok(None)` when the kernel says the object does not exist.
    fn request(&mut self, msg: u16, flags: u16, attributes: &[u8]) -> Result<Option<Vec<Vec<u8>>>, NetlinkError> {
        let flags = NLM_F_ACK | flags;
        let family = self.family;
        let answers = self.t.request(flags, |seq| {
            let mut buf = Vec::with_capacity(64);
            put_message(&mut buf, seq, (NFNL_SUBSYS_NFTABLES << 8) | msg, flags, family, 0, attributes);
            buf
        });
        match answers {
            Ok(a) => Ok(Some(a.iter().map(|m| m.payload().get(4..).unwrap_or_default().to_vec()).collect())),
            Err(e) if e.errno() == Some(Errno::ENOENT) => Ok(None), // no such table, chain or set
            Err(e) => Err(e),
        }
    }

    /// Every rule of every table of every family but `own` (an inet table), that writes a packet
    /// or connection mark in a way that touches `mask`'s bits. Read, never changed.
    pub fn mark_writers(&mut self, mask: u32, own: &str) -> Result<Vec<MarkWriter>, NetlinkError> {
        let flags = NLM_F_ACK | NLM_F_DUMP;
        let mut out = Vec::new();
        self.t.request_each(
            flags,
            |seq| {
                let mut buf = Vec::with_capacity(32);
                put_message(&mut buf, seq, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE, flags, 0, 0, &[]); // NFPROTO_UNSPEC: all
                buf
            },
            |a| {
                let p = a.payload();
                let Some(family) = p.first().copied() else { return };
                let top: Vec<_> = attributes(p.get(4..).unwrap_or_default()).collect();
                let table = find(&top, 1).map(text).unwrap_or_default();
                if matches!(family, NFPROTO_INET | NFPROTO_BRIDGE) && table == own {
                    return;
                }
                let Some(list) = find(&top, 4) else { return };
                for (what, sets) in writes_into(list, mask) {
                    let chain = find(&top, 2).map(text).unwrap_or_default();
                    out.push(MarkWriter { family: family_name(family).into(), table: table.clone(), chain, what, sets });
                }
            },
        )?;
        Ok(out)
    }

    pub fn table_exists(&mut self, table: &str) -> Result<bool, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_TABLE_NAME
        Ok(self.request(NFT_MSG_GETTABLE, 0, &a)?.is_some())
    }

    /// Makes `edits`, in order, as one nftables transaction: all of them or none.
    pub fn edit(&mut self, table: &str, edits: &[Edit]) -> Result<(), NetlinkError> {
        let mut msgs = Vec::new();
        for e in edits {
            e.messages(table, &mut msgs);
        }
        self.transaction(NFNL_SUBSYS_NFTABLES, &msgs)
    }

    /// Creates a table in one transaction: its chains, sets and maps, then `edits` (counters and
    /// elements), then the rules, each with its comment. Sets are referred to by the ids they get
    /// in this transaction, as nft does.
    pub fn create_table(&mut self, table: &str, spec: &TableSpec, edits: &[Edit]) -> Result<(), NetlinkError> {
        self.write_table(Vec::new(), table, spec, edits)
    }

    /// The same, in place of whatever was there (or nothing), in the same transaction: there is
    /// no moment without the table. A table that is not there is not deleted (see `delete_table`).
    pub fn replace_table(&mut self, table: &str, spec: &TableSpec, edits: &[Edit]) -> Result<(), NetlinkError> {
        let first = if self.table_exists(table)? { absent_table(table) } else { Vec::new() };
        self.write_table(first, table, spec, edits)
    }

    fn write_table(
        &mut self,
        mut msgs: Vec<(u16, u16, Vec<u8>)>,
        table: &str,
        spec: &TableSpec,
        edits: &[Edit],
    ) -> Result<(), NetlinkError> {
        let be = |v: u32| v.to_be_bytes();
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_TABLE_NAME
        attr(&mut a, 2, &be(0)); // NFTA_TABLE_FLAGS
        msgs.push((NFT_MSG_NEWTABLE, NLM_F_CREATE, a));
        for c in &spec.chains {
            msgs.push((NFT_MSG_NEWCHAIN, NLM_F_CREATE, chain_attributes(table, c)));
        }
        let id = |name: &str| spec.sets.iter().position(|s| s.name == name).map_or(0, |i| i as u32 + 1);
        for (i, set) in spec.sets.iter().enumerate() {
            let mut a = Vec::new();
            attr(&mut a, 1, &cstr(table)); // NFTA_SET_TABLE
            attr(&mut a, 2, &cstr(&set.name)); // NFTA_SET_NAME
            attr(&mut a, 3, &be(set.flags)); // NFTA_SET_FLAGS
            attr(&mut a, 4, &be(set.key_type)); // NFTA_SET_KEY_TYPE
            attr(&mut a, 5, &be(set.key_len)); // NFTA_SET_KEY_LEN
            if let Some((t, l)) = set.data {
                attr(&mut a, 6, &be(t)); // NFTA_SET_DATA_TYPE
                attr(&mut a, 7, &be(l)); // NFTA_SET_DATA_LEN
            }
            if let Some(o) = set.obj_type {
                attr(&mut a, 15, &be(o)); // NFTA_SET_OBJ_TYPE
            }
            attr(&mut a, 10, &be(i as u32 + 1)); // NFTA_SET_ID
            // NFTNL_UDATA_SET_KEYBYTEORDER (and DATABYTEORDER for a map's data): host, as nft
            // writes them. nft reads them back to print the set — and to encode what it adds to
            // it: without them, `nft -f` would store a mark in network order.
            let mut udata = vec![0, 4, 1, 0, 0, 0];
            if set.data.is_some_and(|(t, _)| t != NFT_DATA_VERDICT) {
                udata.extend([1, 4, 1, 0, 0, 0]);
            }
            attr(&mut a, 13, &udata); // NFTA_SET_USERDATA
            msgs.push((NFT_MSG_NEWSET, NLM_F_CREATE, a));
        }
        for e in edits {
            e.messages(table, &mut msgs);
        }
        for (chain, exprs, comment) in &spec.rules {
            msgs.push((NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, rule_attributes(table, chain, exprs, comment, &id)));
        }
        self.transaction(NFNL_SUBSYS_NFTABLES, &msgs)
    }

    /// The names of the table's chains; `None` if the table does not exist.
    pub fn chains(&mut self, table: &str) -> Result<Option<Vec<String>>, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_CHAIN_TABLE: the dump is of this table's chains
        let Some(msgs) = self.request(NFT_MSG_GETCHAIN, NLM_F_DUMP, &a)? else { return Ok(None) };
        let names = msgs
            .iter()
            .filter_map(|m| {
                let top: Vec<_> = attributes(m).collect();
                (find(&top, 1).map(text).as_deref() == Some(table)).then(|| find(&top, 3).map(text))?
            })
            .collect();
        Ok(Some(names))
    }

    /// Every rule of the table in one dump, by chain; `None` if the table does not exist.
    pub fn rules_by_chain(&mut self, table: &str) -> Result<Option<BTreeMap<String, Vec<InstalledRule>>>, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_RULE_TABLE
        let Some(msgs) = self.request(NFT_MSG_GETRULE, NLM_F_DUMP, &a)? else { return Ok(None) };
        let mut out: BTreeMap<String, Vec<InstalledRule>> = BTreeMap::new();
        for m in &msgs {
            let top: Vec<_> = attributes(m).collect();
            if find(&top, 1).map(text).as_deref() != Some(table) {
                continue;
            }
            let Some(chain) = find(&top, 2).map(text) else { continue };
            out.entry(chain).or_default().push(installed_rule(&top));
        }
        Ok(Some(out))
    }

    /// Deletes the table and everything in it; already gone is fine. A transaction that deletes
    /// anything (a table, a chain, an element) — or fails — returns about 12 ms later than one
    /// that only adds (measured in a namespace here, kernel 6.18: the kernel waits out the packet
    /// path's readers first), so a table that is not there is looked up, not deleted.
    pub fn delete_table(&mut self, table: &str) -> Result<(), NetlinkError> {
        if !self.table_exists(table)? {
            return Ok(());
        }
        self.transaction(NFNL_SUBSYS_NFTABLES, &absent_table(table))
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
            put_message(&mut buf, last, (NFNL_SUBSYS_NFTABLES << 8) | kind, ack | flags, self.family, 0, attrs);
        }
        let end = self.t.next_seq();
        put_message(&mut buf, end, NFNL_MSG_BATCH_END, 0, 0, subsys, &[]);
        note_own_port(self.t.port());
        self.t.send(&buf)?;
        let mut failed = None;
        self.t.receive(begin, last, |a| transaction_answer(begin, last, &a, &mut failed))
    }

    /// Elements of a set or map of an inet table; `None` if it does not exist.
    ///
    /// A dump longer than one message is resumed by position, and the kernel resizes a hash set
    /// some time after many elements were added or removed (deferred work): a resize between two
    /// parts of a dump (or inside one) reorders the buckets, so the dump repeats some elements and
    /// misses others, and nothing in the answer says so (NLM_F_DUMP_INTR tracks transactions, not
    /// resizes): seen here as 2,350 members of 3,000. Skipping is by count and a restarted walk
    /// only counts more, so a dump never returns fewer entries than the set has members: one
    /// without a repeat holds every member. Repeated until one is, and an error if none is.
    pub fn elements(&mut self, table: &str, set: &str) -> Result<Option<Vec<Element>>, NetlinkError> {
        const TRIES: u32 = 20;
        for attempt in 0..TRIES {
            let Some(mut out) = self.elements_once(table, set)? else { return Ok(None) };
            let n = out.len();
            out.sort();
            out.dedup();
            if out.len() == n {
                return Ok(Some(out));
            }
            log::debug!("{table}/{set}: a dump returned {} element(s) twice (set resized meanwhile); dumping again", n - out.len());
            std::thread::sleep(std::time::Duration::from_millis(1 << attempt.min(4)));
        }
        Err(NetlinkError::Kernel {
            errno: Errno::EAGAIN,
            extack: Some(format!("the elements of {table}/{set} kept changing under {TRIES} dumps; try again")),
        })
    }

    fn elements_once(&mut self, table: &str, set: &str) -> Result<Option<Vec<Element>>, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_SET_ELEM_LIST_TABLE
        attr(&mut a, 2, &cstr(set)); // NFTA_SET_ELEM_LIST_SET
        let Some(msgs) = self.request(NFT_MSG_GETSETELEM, NLM_F_DUMP, &a)? else { return Ok(None) };
        Ok(Some(parse_elements(&msgs)))
    }

    /// One element of a set or map, looked up by its key; `None` if it (or the set) does not
    /// exist. What an event for one interface reads, instead of dumping thousands.
    pub fn element(&mut self, table: &str, set: &str, key: &[u8]) -> Result<Option<Element>, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_SET_ELEM_LIST_TABLE
        attr(&mut a, 2, &cstr(set)); // NFTA_SET_ELEM_LIST_SET
        nested(&mut a, 3, |list| nested(list, 1, |e| nested(e, 1, |k| attr(k, 1, key)))); // ELEMENTS / LIST_ELEM / KEY / DATA_VALUE
        let Some(msgs) = self.request(NFT_MSG_GETSETELEM, 0, &a)? else { return Ok(None) };
        Ok(parse_elements(&msgs).into_iter().find(|e| e.key == key))
    }

    /// One counter object's packets; `None` if it does not exist.
    pub fn counter(&mut self, table: &str, name: &str) -> Result<Option<u64>, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_OBJ_TABLE
        attr(&mut a, 2, &cstr(name)); // NFTA_OBJ_NAME
        attr(&mut a, 3, &NFT_OBJECT_COUNTER.to_be_bytes()); // NFTA_OBJ_TYPE
        let Some(msgs) = self.request(NFT_MSG_GETOBJ, 0, &a)? else { return Ok(None) };
        Ok(msgs.first().map(|m| counter_packets(&attributes(m).collect::<Vec<_>>())))
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
            out.insert(name, counter_packets(&top));
        }
        Ok(Some(out))
    }

    /// A chain as a base chain: `None` when it is missing or a regular chain.
    pub fn chain(&mut self, table: &str, chain: &str) -> Result<Option<Chain>, NetlinkError> {
        Ok(self.chain_entry(table, chain)?.flatten())
    }

    /// Whether the table has a chain of that name, base or regular.
    pub fn has_chain(&mut self, table: &str, chain: &str) -> Result<bool, NetlinkError> {
        Ok(self.chain_entry(table, chain)?.is_some())
    }

    /// A chain: `None` when it is missing, `Some(None)` for a regular chain (no hook), the hook
    /// for a base chain.
    pub fn chain_entry(&mut self, table: &str, chain: &str) -> Result<Option<Option<Chain>>, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_CHAIN_TABLE
        attr(&mut a, 3, &cstr(chain)); // NFTA_CHAIN_NAME
        let Some(msgs) = self.request(NFT_MSG_GETCHAIN, 0, &a)? else { return Ok(None) };
        let Some(m) = msgs.first() else { return Ok(None) };
        let top: Vec<_> = attributes(m).collect();
        let hook: Vec<_> = find(&top, 4).map(|h| attributes(h).collect()).unwrap_or_default(); // NFTA_CHAIN_HOOK
        Ok(Some((|| {
            Some(Chain {
                kind: text(find(&top, 7)?),                      // NFTA_CHAIN_TYPE
                hook: find(&hook, 1).and_then(be32)?,            // NFTA_HOOK_HOOKNUM
                priority: find(&hook, 2).and_then(be32)? as i32, // NFTA_HOOK_PRIORITY
                policy: find(&top, 5).and_then(be32)?,           // NFTA_CHAIN_POLICY
            })
        })()))
    }

    /// Every rule of a chain, body and comment; `None` if the chain does not exist.
    pub fn rules(&mut self, table: &str, chain: &str) -> Result<Option<Vec<InstalledRule>>, NetlinkError> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_RULE_TABLE
        attr(&mut a, 2, &cstr(chain)); // NFTA_RULE_CHAIN
        let Some(msgs) = self.request(NFT_MSG_GETRULE, NLM_F_DUMP, &a)? else { return Ok(None) };
        Ok(Some(msgs.iter().map(|m| installed_rule(&attributes(m).collect::<Vec<_>>())).collect()))
    }
}

fn installed_rule(top: &[(u16, &[u8])]) -> InstalledRule {
    let exprs = find(top, 4) // NFTA_RULE_EXPRESSIONS
        .and_then(|list| attributes(list).map(|(_, e)| Expr::decode(e)).collect::<Option<Vec<_>>>());
    InstalledRule { exprs, userdata: find(top, 7).unwrap_or_default().to_vec() } // NFTA_RULE_USERDATA
}

/// The messages that leave no table `table`, whether or not there was one: it is declared (a
/// table that exists is left as it is: no flags given), then deleted — `nft`'s "add table; delete
/// table". A delete alone would fail if another tool removed the table meanwhile.
fn absent_table(table: &str) -> Vec<(u16, u16, Vec<u8>)> {
    let mut a = Vec::new();
    attr(&mut a, 1, &cstr(table)); // NFTA_TABLE_NAME
    vec![(NFT_MSG_NEWTABLE, NLM_F_CREATE, a.clone()), (NFT_MSG_DELTABLE, 0, a)]
}

/// A chain's attributes: a base chain's type, hook, priority and policy; a regular chain's name.
fn chain_attributes(table: &str, c: &ChainSpec) -> Vec<u8> {
    let be = |v: u32| v.to_be_bytes();
    let mut a = Vec::new();
    attr(&mut a, 1, &cstr(table)); // NFTA_CHAIN_TABLE
    attr(&mut a, 3, &cstr(&c.name)); // NFTA_CHAIN_NAME
    if let Some(b) = &c.base {
        attr(&mut a, 7, &cstr(&b.kind)); // NFTA_CHAIN_TYPE
        attr(&mut a, 5, &be(b.policy)); // NFTA_CHAIN_POLICY
        nested(&mut a, 4, |h| {
            attr(h, 1, &be(b.hook)); // NFTA_HOOK_HOOKNUM
            attr(h, 2, &b.priority.to_be_bytes()); // NFTA_HOOK_PRIORITY
        });
    }
    a
}

/// A rule's attributes, appended to its chain, with its comment (as nft writes comments).
fn rule_attributes(table: &str, chain: &str, exprs: &[Expr], comment: &str, set_id: &dyn Fn(&str) -> u32) -> Vec<u8> {
    let mut list = Vec::new();
    for x in exprs {
        x.encode(&mut list, set_id);
    }
    let mut a = Vec::new();
    attr(&mut a, 1, &cstr(table)); // NFTA_RULE_TABLE
    attr(&mut a, 2, &cstr(chain)); // NFTA_RULE_CHAIN
    attr(&mut a, 4 | NLA_F_NESTED, &list); // NFTA_RULE_EXPRESSIONS
    let c = &comment.as_bytes()[..comment.len().min(250)];
    let mut udata = vec![0u8, (c.len() + 1) as u8]; // NFTNL_UDATA_RULE_COMMENT, length
    udata.extend_from_slice(c);
    udata.push(0);
    attr(&mut a, 7, &udata); // NFTA_RULE_USERDATA
    a
}

/// The elements in the answers to a GETSETELEM, dumped or looked up.
fn parse_elements(msgs: &[Vec<u8>]) -> Vec<Element> {
    let mut out = Vec::new();
    for m in msgs {
        let top: Vec<_> = attributes(m).collect();
        let Some(list) = find(&top, 3) else { continue }; // NFTA_SET_ELEM_LIST_ELEMENTS
        for (_, elem) in attributes(list) {
            let e: Vec<_> = attributes(elem).collect();
            let value = |k: u16| find(&e, k).and_then(|v| attributes(v).find(|(t, _)| *t == 1).map(|(_, v)| v.to_vec()));
            // A vmap's data: NFTA_DATA_VERDICT { CODE, CHAIN }; only a jump or goto is stronghost's.
            let branch = find(&e, 2).and_then(|v| attributes(v).find(|(t, _)| *t == 2)).and_then(|(_, verdict)| {
                let v: Vec<_> = attributes(verdict).collect();
                Branch::of(find(&v, 1).and_then(be32)?, find(&v, 2).map(text)?)
            });
            if let Some(key) = value(1) {
                // NFTA_SET_ELEM_KEY 1, DATA 2 (each a NFTA_DATA_VALUE), OBJREF 9
                out.push(Element { key, data: value(2), objref: find(&e, 9).map(text), branch });
            }
        }
    }
    out
}

/// A counter object's packets (NFTA_OBJ_DATA / NFTA_COUNTER_PACKETS).
fn counter_packets(top: &[(u16, &[u8])]) -> u64 {
    find(top, 4)
        .and_then(|d| attributes(d).find(|(t, _)| *t == 2).map(|(_, v)| v))
        .and_then(|p| Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?)))
        .unwrap_or(0)
}

/// One answer of a transaction whose header is `begin` and whose last message is `last`:
/// `Ok(true)` when the transaction is over and succeeded; the first error otherwise.
fn transaction_answer<B: AsRef<[u8]>>(
    begin: u32,
    last: u32,
    a: &super::transport::Answer<B>,
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

/// One element of a set or map: its key, and for a map the data or the object (a counter) it
/// gives. Keys and data are as the kernel holds them (names NUL-padded to IFNAMSIZ, numbers in
/// host order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Element {
    pub key: Vec<u8>,
    pub data: Option<Vec<u8>>,
    pub objref: Option<String>,
    /// A vmap's verdict: `jump` or `goto` a chain.
    pub branch: Option<Branch>,
}

impl Element {
    /// An element of a set: its key alone.
    pub fn key(key: Vec<u8>) -> Element {
        Element { key, data: None, objref: None, branch: None }
    }

    pub fn ifname(name: &str) -> Vec<u8> {
        let mut v = name.as_bytes().to_vec();
        v.resize(IFNAMSIZ, 0);
        v
    }
}

/// The chain attributes stronghost checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub kind: String,
    pub hook: u32,
    pub priority: i32,
    pub policy: u32,
}

/// A table to create: its chains, sets (in the order their transaction ids are given) and rules.
#[derive(Debug, Clone, Default)]
pub struct TableSpec {
    pub chains: Vec<ChainSpec>,
    pub sets: Vec<SetSpec>,
    /// (chain, expressions, comment)
    pub rules: Vec<(String, Vec<Expr>, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    pub name: String,
    /// A base chain's hook; `None` for a chain only jumped or gone to.
    pub base: Option<Chain>,
}

/// A set or map: key type and length (nft's datatype numbers), flags, and for a map its data
/// type and length or its object type.
#[derive(Debug, Clone)]
pub struct SetSpec {
    pub name: String,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub data: Option<(u32, u32)>,
    pub obj_type: Option<u32>,
}

/// One change of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    AddCounter(String),
    DelCounter(String),
    AddElements {
        set: String,
        elements: Vec<Element>,
    },
    DelElements {
        set: String,
        elements: Vec<Element>,
    },
    /// A regular chain (no hook).
    AddChain(String),
    /// A chain and its rules; nothing may refer to it any more (delete the elements that go to
    /// it first, in the same transaction).
    DelChain(String),
    /// A rule appended to a chain, with its comment.
    AddRule {
        chain: String,
        exprs: Vec<Expr>,
        comment: String,
    },
}

impl Edit {
    /// Its messages; at most ELEMENTS_PER_MESSAGE elements to a message.
    fn messages(&self, table: &str, msgs: &mut Vec<(u16, u16, Vec<u8>)>) {
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
        let elements = |set: &str, list: &[Element]| {
            let mut a = Vec::new();
            attr(&mut a, 1, &cstr(table)); // NFTA_SET_ELEM_LIST_TABLE
            attr(&mut a, 2, &cstr(set)); // NFTA_SET_ELEM_LIST_SET
            nested(&mut a, 3, |elems| {
                // NFTA_SET_ELEM_LIST_ELEMENTS
                for el in list {
                    nested(elems, 1, |e| {
                        // NFTA_LIST_ELEM
                        nested(e, 1, |k| attr(k, 1, &el.key)); // NFTA_SET_ELEM_KEY / NFTA_DATA_VALUE
                        if let Some(d) = &el.data {
                            nested(e, 2, |k| attr(k, 1, d)); // NFTA_SET_ELEM_DATA / NFTA_DATA_VALUE
                        }
                        if let Some(o) = &el.objref {
                            attr(e, 9, &cstr(o)); // NFTA_SET_ELEM_OBJREF
                        }
                        if let Some(b) = &el.branch {
                            // NFTA_SET_ELEM_DATA / NFTA_DATA_VERDICT / CODE, CHAIN
                            nested(e, 2, |d| {
                                nested(d, 2, |v| {
                                    attr(v, 1, &b.code().to_be_bytes());
                                    attr(v, 2, &cstr(b.chain()));
                                })
                            });
                        }
                    });
                }
            });
            a
        };
        match self {
            Edit::AddCounter(c) => msgs.push((NFT_MSG_NEWOBJ, NLM_F_CREATE, object(c, true))),
            Edit::DelCounter(c) => msgs.push((NFT_MSG_DELOBJ, 0, object(c, false))),
            Edit::AddElements { set, elements: list } => {
                for chunk in list.chunks(ELEMENTS_PER_MESSAGE) {
                    msgs.push((NFT_MSG_NEWSETELEM, NLM_F_CREATE, elements(set, chunk)));
                }
            }
            Edit::DelElements { set, elements: list } => {
                for chunk in list.chunks(ELEMENTS_PER_MESSAGE) {
                    msgs.push((NFT_MSG_DELSETELEM, 0, elements(set, chunk)));
                }
            }
            Edit::AddChain(name) => {
                msgs.push((NFT_MSG_NEWCHAIN, NLM_F_CREATE, chain_attributes(table, &ChainSpec { name: name.clone(), base: None })))
            }
            Edit::DelChain(name) => {
                msgs.push((NFT_MSG_DELCHAIN, 0, chain_attributes(table, &ChainSpec { name: name.clone(), base: None })))
            }
            Edit::AddRule { chain, exprs, comment } => {
                msgs.push((NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, rule_attributes(table, chain, exprs, comment, &|_| 0)))
            }
        }
    }
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
            super::super::transport::split(&b).next().unwrap().unwrap().detached()
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

    /// The monitor hears another process change the table — a member, a deletion, `flush
    /// ruleset` — and not this process's own transactions, nor a table of the same name in another
    /// family, nor other tables.
    #[test]
    fn the_monitor_hears_others_change_the_table_not_itself() {
        in_new_netns(|| {
            let nft_f = |script: &str| {
                let mut c = std::process::Command::new("nft").args(["-f", "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
                std::io::Write::write_all(&mut c.stdin.take().unwrap(), script.as_bytes()).unwrap();
                assert!(c.wait().unwrap().success(), "nft -f {script}");
            };
            let mut m = Monitor::open("sh_mon").unwrap();
            assert_eq!(m.drain(), Heard::Nothing);
            nft_f("add table inet sh_mon\nadd set inet sh_mon managed { type ifname; }\n");
            assert!(matches!(m.drain(), Heard::Changed(by) if by.ends_with("(nft)")), "created by nft");
            // Its own writes: nothing.
            let mut nft = Nft::open().unwrap();
            let add = Edit::AddElements { set: "managed".into(), elements: vec![Element::key(Element::ifname("eth0"))] };
            nft.edit("sh_mon", &[add]).unwrap();
            assert_eq!(m.drain(), Heard::Nothing);
            // Others' tables, and a table of the same name in family ip: nothing.
            nft_f("add table inet other\nadd table ip sh_mon\ndelete table ip sh_mon\n");
            assert_eq!(m.drain(), Heard::Nothing);
            nft_f("delete element inet sh_mon managed { \"eth0\" }\n");
            assert!(matches!(m.drain(), Heard::Changed(_)), "a member removed");
            nft_f("flush ruleset\n");
            assert!(matches!(m.drain(), Heard::Changed(_)), "flush ruleset");
            nft.create_table("sh_mon", &TableSpec { chains: vec![], sets: vec![], rules: vec![] }, &[]).unwrap();
            nft.delete_table("sh_mon").unwrap();
            assert_eq!(m.drain(), Heard::Nothing, "created and deleted by this process");
        });
    }

    /// Other tools' rules that write into a mark field, read back from the kernel: constants,
    /// ORs, ANDs and whole-word overwrites are told apart; bits outside the field and copies
    /// between the two marks are not writes into it.
    #[test]
    fn mark_writers_are_found_by_what_they_do_to_the_field() {
        in_new_netns(|| {
            let script = "add table ip fw\nadd chain ip fw c\n\
                          add rule ip fw c meta mark set meta mark or 0x4000\n\
                          add rule ip fw c ct mark set ct mark and 0xffff0000 or 0x10\n\
                          add rule ip fw c meta mark set ct mark\n\
                          add rule ip fw c meta mark set 0x01000000\n\
                          add rule ip fw c ct mark set ct mark or 0x02000000\n\
                          add rule ip fw c meta mark set 0x4000\n\
                          add rule ip fw c meta mark set ip saddr map { 10.0.0.1 : 0x1 }\n\
                          add table inet stronghost\nadd chain inet stronghost c\n\
                          add rule inet stronghost c meta mark set 0x01000000\n";
            let mut c = std::process::Command::new("nft").args(["-f", "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
            std::io::Write::write_all(&mut c.stdin.take().unwrap(), script.as_bytes()).unwrap();
            assert!(c.wait().unwrap().success());
            let found = Nft::open().unwrap().mark_writers(0xff00_0000, "stronghost").unwrap();
            let said: Vec<(String, bool)> = found.iter().map(|w| (w.what.clone(), w.sets)).collect();
            assert_eq!(
                said,
                [
                    ("sets 0x1000000 in meta mark".to_string(), true),
                    ("sets 0x2000000 in ct mark".to_string(), true),
                    ("overwrites meta mark (clears bits 0xff000000)".to_string(), false),
                    ("sets meta mark from a map, hash or other value (whole word)".to_string(), true),
                ],
                "{found:?}"
            );
            assert!(found.iter().all(|w| w.family == "ip" && w.table == "fw" && w.chain == "c"));
        });
    }

    /// A table replaced holds what it was given once (a rule appended to a table left behind would
    /// be there twice); deleting a table that is not there is fine. (That it then sends no
    /// transaction is seen only in time: the bench's first bind.)
    #[test]
    fn a_table_is_replaced_whole_and_an_absent_one_is_not_deleted() {
        in_new_netns(|| {
            let (name, kind, hook, priority, _) = crate::model::table::BRIDGE_CHAIN;
            let rule = crate::model::table::bridge_rule(&crate::model::table::Shape::default());
            let spec = TableSpec {
                chains: vec![ChainSpec { name: name.into(), base: Some(Chain { kind: kind.into(), hook, priority, policy: 1 }) }],
                sets: vec![],
                rules: vec![(name.into(), rule.body(), rule.comment.into())],
            };
            let mut nft = Nft::open_family(NFPROTO_BRIDGE).unwrap();
            nft.delete_table("sh_br").unwrap();
            for _ in 0..2 {
                nft.replace_table("sh_br", &spec, &[]).unwrap();
                assert_eq!(nft.rules("sh_br", name).unwrap().map(|r| r.len()), Some(1));
            }
            nft.delete_table("sh_br").unwrap();
            assert!(!nft.table_exists("sh_br").unwrap());
            nft.delete_table("sh_br").unwrap();
        });
    }

    /// Thousands of elements and counters (more than one message's worth) all arrive, and all
    /// leave, in one transaction each.
    #[test]
    fn thousands_of_members_survive_a_round_trip() {
        in_new_netns(|| {
            let script = "add table inet sh_test\nadd set inet sh_test managed { type ifname; }\n\
                          add map inet sh_test wrong_iface { type ifname : counter; }\n";
            let out = std::process::Command::new("nft").args(["-f", "-"]).stdin(std::process::Stdio::piped()).spawn().and_then(|mut c| {
                std::io::Write::write_all(&mut c.stdin.take().unwrap(), script.as_bytes())?;
                c.wait()
            });
            assert!(out.unwrap().success(), "nft -f");
            let mut nft = Nft::open().unwrap();
            let names: Vec<(Vec<u8>, String)> =
                (0..3000).map(|i| (Element::ifname(&format!("m{i}")), format!("drop_{}", 5000 + i))).collect();
            let set = |with_obj: bool| -> Vec<Element> {
                names.iter().map(|(k, c)| Element { objref: with_obj.then(|| c.clone()), ..Element::key(k.clone()) }).collect()
            };
            let mut add: Vec<Edit> = names.iter().map(|(_, c)| Edit::AddCounter(c.clone())).collect();
            add.push(Edit::AddElements { set: "managed".into(), elements: set(false) });
            add.push(Edit::AddElements { set: "wrong_iface".into(), elements: set(true) });
            nft.edit("sh_test", &add).unwrap();
            assert_eq!(nft.elements("sh_test", "managed").unwrap().unwrap().len(), 3000);
            let map = nft.elements("sh_test", "wrong_iface").unwrap().unwrap();
            assert_eq!(map.len(), 3000);
            assert!(map.contains(&Element { objref: Some("drop_7999".into()), ..Element::key(Element::ifname("m2999")) }));
            assert_eq!(nft.counters("sh_test").unwrap().unwrap().len(), 3000);
            let del = vec![
                Edit::DelElements { set: "wrong_iface".into(), elements: set(true)[..2000].to_vec() },
                Edit::DelElements { set: "managed".into(), elements: set(false)[..2000].to_vec() },
            ];
            nft.edit("sh_test", &del).unwrap();
            assert_eq!(nft.elements("sh_test", "managed").unwrap().unwrap().len(), 1000);
            nft.delete_table("sh_test").unwrap();
            assert!(!nft.table_exists("sh_test").unwrap());
        });
    }
}
