//! stronghost's nftables table over nfnetlink, without running `nft`: reading which interfaces
//! the receive filter covers, its counters, and whether its rule is the one stronghost wrote;
//! creating the table; changing its members. Each write is one nftables transaction. Repairing a
//! table someone else changed still goes through `nft -f` (filter.rs), which merges with what is
//! there and keeps the counters.

use netlink_sys::{Socket, SocketAddr};
use std::collections::BTreeMap;
use std::io;

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_GETOBJ: u16 = 19;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFT_MSG_DELOBJ: u16 = 20;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NLA_F_NESTED: u16 = 0x8000;
const NLM_F_CREATE: u16 = 0x400;
const IFNAMSIZ: usize = 16;
const NFPROTO_INET: u8 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NFT_OBJECT_COUNTER: u32 = 1;
const NLM_F_APPEND: u16 = 0x800;

/// An answer from the kernel: its type, sequence number and what follows the header.
struct Message {
    kind: u16,
    seq: u32,
    payload: Vec<u8>,
}

impl Message {
    /// The errno of an NLMSG_ERROR (negative), 0 for an ACK.
    fn error_code(&self) -> i32 {
        self.payload.get(..4).map(|b| i32::from_ne_bytes(b.try_into().unwrap())).unwrap_or(-71) // EPROTO: too short to carry a code
    }
}

/// Appends one nfnetlink message: nlmsghdr, nfgenmsg (family, version 0, res_id), attributes.
fn put_message(buf: &mut Vec<u8>, seq: u32, kind: u16, flags: u16, family: u8, res_id: u16, attrs: &[u8]) {
    buf.extend_from_slice(&((16 + 4 + attrs.len()) as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
}

/// One nftables netlink conversation.
pub struct Nft {
    sock: Socket,
    seq: u32,
}

fn attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + ((4 - len % 4) % 4), 0);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The attributes in `data` as (type without flags, payload).
fn attrs(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((kind, &data[4..len]));
        let step = (len + 3) & !3;
        data = &data[step.min(data.len())..];
    }
    out
}

fn find(a: &[(u16, &[u8])], kind: u16) -> Option<Vec<u8>> {
    a.iter().find(|(k, _)| *k == kind).map(|(_, v)| v.to_vec())
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(&[])).into_owned()
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

impl Nft {
    pub fn open() -> io::Result<Nft> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Reads of a large table come back in many messages.
        let _ = sock.set_rx_buf_sz(1 << 20);
        Ok(Nft { sock, seq: 0 })
    }

    /// Sends one request; returns the payloads (after the nfgenmsg) of every answer.
    /// `Ok(None)` when the kernel says the object does not exist.
    fn request(&mut self, msg: u16, flags: u16, attributes: &[u8]) -> io::Result<Option<Vec<Vec<u8>>>> {
        self.seq += 1;
        let mut buf = Vec::with_capacity(64);
        put_message(&mut buf, self.seq, (NFNL_SUBSYS_NFTABLES << 8) | msg, NLM_F_ACK | flags, NFPROTO_INET, 0, attributes);
        self.sock.send(&buf, 0)?;
        let mut out = Vec::new();
        let mut rx = vec![0u8; 1 << 16];
        loop {
            for m in self.receive(&mut rx)? {
                if m.seq != self.seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => return Ok(Some(out)),
                    NLMSG_ERROR => {
                        return match -m.error_code() {
                            0 if flags & NLM_F_DUMP == 0 => Ok(Some(out)),
                            0 => continue,
                            2 => Ok(None), // ENOENT: no such table, chain or set
                            e => Err(io::Error::from_raw_os_error(e)),
                        };
                    }
                    _ => out.push(m.payload.get(4..).unwrap_or_default().to_vec()),
                }
            }
        }
    }

    /// One datagram from the kernel, split into its messages.
    fn receive(&self, rx: &mut [u8]) -> io::Result<Vec<Message>> {
        let n = self.sock.recv(&mut &mut rx[..], 0)?;
        let mut out = Vec::new();
        let mut off = 0;
        while off + 16 <= n {
            let h = &rx[off..n];
            let len = u32::from_ne_bytes(h[0..4].try_into().unwrap()) as usize;
            if len < 16 || len > h.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "nfnetlink: truncated message"));
            }
            out.push(Message {
                kind: u16::from_ne_bytes([h[4], h[5]]),
                seq: u32::from_ne_bytes(h[8..12].try_into().unwrap()),
                payload: h[16..len].to_vec(),
            });
            off += (len + 3) & !3;
        }
        Ok(out)
    }

    pub fn table_exists(&mut self, table: &str) -> io::Result<bool> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_TABLE_NAME
        Ok(self.request(NFT_MSG_GETTABLE, 0, &a)?.is_some())
    }

    /// Adds and removes receive-filter members in one nftables transaction: the counter object,
    /// the `managed` set element and the `wrong_iface` map element of each. All or nothing.
    pub fn update_members(&mut self, table: &str, add: &[(String, String)], remove: &[(String, String)]) -> io::Result<()> {
        let msgs = self.member_messages(table, add, remove);
        self.transaction(&msgs)
    }

    fn member_messages(&self, table: &str, add: &[(String, String)], remove: &[(String, String)]) -> Vec<(u16, u16, Vec<u8>)> {
        let mut msgs: Vec<(u16, u16, Vec<u8>)> = Vec::new();
        let key = |ifname: &str| {
            let mut v = ifname.as_bytes().to_vec();
            v.resize(IFNAMSIZ, 0);
            let mut data = Vec::new();
            attr(&mut data, 1, &v); // NFTA_DATA_VALUE
            data
        };
        let elements = |set: &str, list: &[(String, String)], objref: bool| {
            let mut elems = Vec::new();
            for (ifname, counter) in list {
                let mut e = Vec::new();
                attr(&mut e, 1 | NLA_F_NESTED, &key(ifname)); // NFTA_SET_ELEM_KEY
                if objref {
                    attr(&mut e, 9, &cstr(counter)); // NFTA_SET_ELEM_OBJREF
                }
                attr(&mut elems, 1 | NLA_F_NESTED, &e); // NFTA_LIST_ELEM
            }
            let mut a = Vec::new();
            attr(&mut a, 1, &cstr(table)); // NFTA_SET_ELEM_LIST_TABLE
            attr(&mut a, 2, &cstr(set)); // NFTA_SET_ELEM_LIST_SET
            attr(&mut a, 3 | NLA_F_NESTED, &elems); // NFTA_SET_ELEM_LIST_ELEMENTS
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
        if !remove.is_empty() {
            msgs.push((NFT_MSG_DELSETELEM, 0, elements("wrong_iface", remove, false)));
            msgs.push((NFT_MSG_DELSETELEM, 0, elements("managed", remove, false)));
            for (_, counter) in remove {
                msgs.push((NFT_MSG_DELOBJ, 0, object(counter, false)));
            }
        }
        if !add.is_empty() {
            for (_, counter) in add {
                msgs.push((NFT_MSG_NEWOBJ, NLM_F_CREATE, object(counter, true)));
            }
            msgs.push((NFT_MSG_NEWSETELEM, NLM_F_CREATE, elements("managed", add, false)));
            msgs.push((NFT_MSG_NEWSETELEM, NLM_F_CREATE, elements("wrong_iface", add, true)));
        }
        msgs
    }

    /// Creates the whole receive-filter table in one transaction, as filter.rs's script would:
    ///
    /// ```text
    /// chain receive { type filter hook prerouting priority -300; policy accept; }
    /// set managed { type ifname; }   map wrong_iface { type ifname : counter; }
    /// iifname @managed fib daddr . iif type != local fib daddr type local
    ///     counter name iifname map @wrong_iface drop comment "<tag>"
    /// ```
    /// The bytecode is what `nft --debug=netlink` shows for that rule; the sets carry the same
    /// user data nft writes (key byte order), so `nft list` prints them as usual.
    pub fn create_table(&mut self, table: &str, chain: &str, members: &[(String, String)], tag: &str) -> io::Result<()> {
        const NFT_REG_VERDICT: u32 = 0;
        const NFT_REG_1: u32 = 1;
        const NFT_META_IIFNAME: u32 = 6;
        const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
        const NFTA_FIB_F_DADDR: u32 = 2;
        const NFTA_FIB_F_IIF: u32 = 8;
        const NFT_CMP_EQ: u32 = 0;
        const NFT_CMP_NEQ: u32 = 1;
        const RTN_LOCAL: u32 = 2;
        const NF_DROP: u32 = 0;
        const NFT_SET_OBJECT: u32 = 0x40;
        const TYPE_IFNAME: u32 = 41;
        const NF_INET_PRE_ROUTING: u32 = 0;
        const PRIORITY_RAW: i32 = -300;
        let be = |v: u32| v.to_be_bytes();
        let nested = |kind: u16, f: &dyn Fn(&mut Vec<u8>)| {
            let mut inner = Vec::new();
            f(&mut inner);
            let mut out = Vec::new();
            attr(&mut out, kind | NLA_F_NESTED, &inner);
            out
        };
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
        a.extend(nested(4, &|h| {
            attr(h, 1, &be(NF_INET_PRE_ROUTING)); // NFTA_HOOK_HOOKNUM
            attr(h, 2, &PRIORITY_RAW.to_be_bytes()); // NFTA_HOOK_PRIORITY
        }));
        msgs.push((NFT_MSG_NEWCHAIN, NLM_F_CREATE, a));

        // NFTNL_UDATA_SET_KEYBYTEORDER = host; for the map also NFTNL_UDATA_SET_MERGE_ELEMENTS-style
        // trailer nft adds (type 6, 0), so both print as nft would have made them.
        let set = |name: &str, id: u32, map: bool| {
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
        msgs.push((NFT_MSG_NEWSET, NLM_F_CREATE, set("managed", 1, false)));
        msgs.push((NFT_MSG_NEWSET, NLM_F_CREATE, set("wrong_iface", 2, true)));

        let expr = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
            let mut e = Vec::new();
            attr(&mut e, 1, &cstr(name)); // NFTA_EXPR_NAME
            e.extend(nested(2, f)); // NFTA_EXPR_DATA
            let mut out = Vec::new();
            attr(&mut out, 1 | NLA_F_NESTED, &e); // NFTA_LIST_ELEM
            out
        };
        let iifname = || {
            expr("meta", &|d| {
                attr(d, 2, &be(NFT_META_IIFNAME)); // NFTA_META_KEY
                attr(d, 1, &be(NFT_REG_1)); // NFTA_META_DREG
            })
        };
        let fib_type = |flags: u32| {
            expr("fib", &move |d| {
                attr(d, 3, &be(flags)); // NFTA_FIB_FLAGS
                attr(d, 2, &be(NFT_FIB_RESULT_ADDRTYPE)); // NFTA_FIB_RESULT
                attr(d, 1, &be(NFT_REG_1)); // NFTA_FIB_DREG
            })
        };
        let cmp_local = |op: u32| {
            expr("cmp", &move |d| {
                attr(d, 1, &be(NFT_REG_1)); // NFTA_CMP_SREG
                attr(d, 2, &be(op)); // NFTA_CMP_OP
                d.extend(nested(3, &|v| attr(v, 1, &RTN_LOCAL.to_ne_bytes()))); // NFTA_CMP_DATA / NFTA_DATA_VALUE (host order)
            })
        };
        let mut list = Vec::new();
        list.extend(iifname());
        list.extend(expr("lookup", &|d| {
            attr(d, 2, &be(NFT_REG_1)); // NFTA_LOOKUP_SREG
            attr(d, 1, &cstr("managed")); // NFTA_LOOKUP_SET
            attr(d, 4, &be(1)); // NFTA_LOOKUP_SET_ID
        }));
        list.extend(fib_type(NFTA_FIB_F_DADDR | NFTA_FIB_F_IIF));
        list.extend(cmp_local(NFT_CMP_NEQ));
        list.extend(fib_type(NFTA_FIB_F_DADDR));
        list.extend(cmp_local(NFT_CMP_EQ));
        list.extend(iifname());
        list.extend(expr("objref", &|d| {
            attr(d, 3, &be(NFT_REG_1)); // NFTA_OBJREF_SET_SREG
            attr(d, 4, &cstr("wrong_iface")); // NFTA_OBJREF_SET_NAME
            attr(d, 5, &be(2)); // NFTA_OBJREF_SET_ID
        }));
        list.extend(expr("immediate", &|d| {
            attr(d, 1, &be(NFT_REG_VERDICT)); // NFTA_IMMEDIATE_DREG
            d.extend(nested(2, &|v| v.extend(nested(2, &|verdict| attr(verdict, 1, &be(NF_DROP)))))); // DATA / VERDICT / CODE
        }));

        // The counters and elements, as update_members writes them.
        msgs.extend(self.member_messages(table, members, &[]));

        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_RULE_TABLE
        attr(&mut a, 2, &cstr(chain)); // NFTA_RULE_CHAIN
        attr(&mut a, 4 | NLA_F_NESTED, &list); // NFTA_RULE_EXPRESSIONS
        let mut comment = vec![0u8, (tag.len() + 1) as u8]; // NFTNL_UDATA_RULE_COMMENT, length
        comment.extend_from_slice(&cstr(tag));
        attr(&mut a, 7, &comment); // NFTA_RULE_USERDATA
        msgs.push((NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, a));
        self.transaction(&msgs)
    }

    /// Deletes the table and everything in it; already gone is fine.
    pub fn delete_table(&mut self, table: &str) -> io::Result<()> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_TABLE_NAME
        match self.transaction(&[(NFT_MSG_DELTABLE, 0, a)]) {
            Err(e) if e.raw_os_error() == Some(2) => Ok(()), // ENOENT
            r => r,
        }
    }

    /// Sends messages as one nfnetlink batch (one nftables transaction). Only the last message
    /// asks for an ACK: every failing message is answered with its error anyway, before the last
    /// one's answer, and an ACK per message (each echoing its request) would overrun the socket
    /// for a table of hundreds of members.
    fn transaction(&mut self, msgs: &[(u16, u16, Vec<u8>)]) -> io::Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let first = self.seq + 1;
        self.seq += 1;
        put_message(&mut buf, self.seq, NFNL_MSG_BATCH_BEGIN, 0, 0, NFNL_SUBSYS_NFTABLES, &[]);
        for (i, (kind, flags, attrs)) in msgs.iter().enumerate() {
            self.seq += 1;
            let ack = if i + 1 == msgs.len() { NLM_F_ACK } else { 0 };
            put_message(&mut buf, self.seq, (NFNL_SUBSYS_NFTABLES << 8) | kind, ack | flags, NFPROTO_INET, 0, attrs);
        }
        let last = self.seq;
        self.seq += 1;
        put_message(&mut buf, self.seq, NFNL_MSG_BATCH_END, 0, 0, NFNL_SUBSYS_NFTABLES, &[]);
        self.sock.send(&buf, 0)?;
        let mut failed = None;
        let mut rx = vec![0u8; 1 << 16];
        loop {
            for m in self.receive(&mut rx)? {
                if m.kind != NLMSG_ERROR || m.seq <= first || m.seq > last {
                    continue;
                }
                // Any error aborts the transaction as a whole: nothing of it took effect.
                let code = m.error_code();
                if code != 0 && failed.is_none() {
                    failed = Some(io::Error::from_raw_os_error(-code));
                }
                if m.seq == last {
                    return failed.map_or(Ok(()), Err);
                }
            }
        }
    }

    /// Elements of a set (keys) or map (key → object name) of an inet table; `None` if absent.
    pub fn elements(&mut self, table: &str, set: &str) -> io::Result<Option<Vec<(String, Option<String>)>>> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_SET_ELEM_LIST_TABLE
        attr(&mut a, 2, &cstr(set)); // NFTA_SET_ELEM_LIST_SET
        let Some(msgs) = self.request(NFT_MSG_GETSETELEM, NLM_F_DUMP, &a)? else { return Ok(None) };
        let mut out = Vec::new();
        for m in &msgs {
            let top = attrs(m);
            let Some(list) = find(&top, 3) else { continue }; // NFTA_SET_ELEM_LIST_ELEMENTS
            for (_, elem) in attrs(&list) {
                let e = attrs(elem);
                let key = find(&e, 1).and_then(|k| find(&attrs(&k), 1)).map(|v| text(&v)); // KEY → DATA_VALUE
                let obj = find(&e, 9).map(|v| text(&v)); // NFTA_SET_ELEM_OBJREF
                if let Some(k) = key {
                    out.push((k, obj));
                }
            }
        }
        Ok(Some(out))
    }

    /// Counter objects of an inet table: name → packets.
    pub fn counters(&mut self, table: &str) -> io::Result<Option<BTreeMap<String, u64>>> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_OBJ_TABLE
        attr(&mut a, 3, &NFT_OBJECT_COUNTER.to_be_bytes()); // NFTA_OBJ_TYPE
        let Some(msgs) = self.request(NFT_MSG_GETOBJ, NLM_F_DUMP, &a)? else { return Ok(None) };
        let mut out = BTreeMap::new();
        for m in &msgs {
            let top = attrs(m);
            if find(&top, 1).map(|t| text(&t)).as_deref() != Some(table) {
                continue;
            }
            let Some(name) = find(&top, 2).map(|v| text(&v)) else { continue };
            let packets = find(&top, 4)
                .and_then(|d| find(&attrs(&d), 2)) // NFTA_COUNTER_PACKETS
                .and_then(|p| Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?)))
                .unwrap_or(0);
            out.insert(name, packets);
        }
        Ok(Some(out))
    }

    /// The chain's hook number, priority and policy; `None` if it does not exist.
    pub fn chain(&mut self, table: &str, chain: &str) -> io::Result<Option<(u32, i32, u32)>> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_CHAIN_TABLE
        attr(&mut a, 3, &cstr(chain)); // NFTA_CHAIN_NAME
        let Some(msgs) = self.request(NFT_MSG_GETCHAIN, 0, &a)? else { return Ok(None) };
        let Some(m) = msgs.first() else { return Ok(None) };
        let top = attrs(m);
        let hook = find(&top, 4).map(|h| attrs(&h).iter().map(|(k, v)| (*k, v.to_vec())).collect::<Vec<_>>()).unwrap_or_default();
        let num = hook.iter().find(|(k, _)| *k == 1).and_then(|(_, v)| be32(v));
        let prio = hook.iter().find(|(k, _)| *k == 2).and_then(|(_, v)| be32(v)).map(|p| p as i32);
        let policy = find(&top, 5).and_then(|v| be32(&v));
        Ok(match (num, prio, policy) {
            (Some(n), Some(p), Some(pol)) => Some((n, p, pol)),
            _ => None,
        })
    }

    /// The user data (comment) of every rule in a chain; `None` if the chain does not exist.
    pub fn rule_userdata(&mut self, table: &str, chain: &str) -> io::Result<Option<Vec<Vec<u8>>>> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table)); // NFTA_RULE_TABLE
        attr(&mut a, 2, &cstr(chain)); // NFTA_RULE_CHAIN
        let Some(msgs) = self.request(NFT_MSG_GETRULE, NLM_F_DUMP, &a)? else { return Ok(None) };
        Ok(Some(msgs.iter().map(|m| find(&attrs(m), 7).unwrap_or_default()).collect())) // NFTA_RULE_USERDATA
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let mut b = Vec::new();
        attr(&mut b, 1, &cstr("stronghost"));
        attr(&mut b, 3, &7u32.to_be_bytes());
        let a = attrs(&b);
        assert_eq!(text(&find(&a, 1).unwrap()), "stronghost");
        assert_eq!(be32(&find(&a, 3).unwrap()), Some(7));
        // Truncated or garbage input ends the walk instead of panicking.
        assert!(attrs(&[0xff, 0xff, 0, 0, 1]).is_empty());
        assert!(attrs(&b[..5]).is_empty());
    }
}
