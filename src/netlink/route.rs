//! Doing, for routing: a blocking rtnetlink socket that dumps links, addresses, rules and routes
//! of both families into the model (model/kernel.rs, model/routing.rs) and writes rules and routes, acknowledged.
//! Every write is counted, so a converged host can be shown to cost zero writes.

use super::abi::*;
use super::transport::{Answer, NetlinkError, Transport, attributes as raw_attributes};
use crate::model::kernel::{Address, KernelRoute, Link, Owned, Rules};
use crate::model::net::IpNet;
use crate::model::routing::{Route, RouteKind, Rule, Selector};
use netlink_packet_core::DefaultNla;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{AfSpecInet, AfSpecUnspec, LinkAttribute, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use nix::errno::Errno;
use std::net::{IpAddr, Ipv4Addr};

pub struct Netlink {
    t: Transport,
    /// Write requests sent (each add or delete of a rule or route, each link change).
    pub writes: u32,
}

/// How often a dump the kernel reports as interrupted (its state changed under it) is tried,
/// pausing 1, 2, 4 … ms before each try after the second: in a boot storm addresses and routes
/// change every millisecond, and a dump of thousands of interfaces that is tried again at once is
/// interrupted again (64 ms in all at most).
const DUMP_TRIES: usize = 8;

impl Netlink {
    pub fn open() -> std::io::Result<Netlink> {
        Ok(Netlink { t: Transport::open(NETLINK_ROUTE)?, writes: 0 })
    }

    /// The socket's netlink port: notifications of the changes it makes carry it.
    pub fn port(&self) -> u32 {
        self.t.port()
    }

    /// `msg` under sequence number `seq`, serialized.
    fn encode(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        buf
    }

    /// Sends one request and returns every answer, undecoded; an interrupted dump is repeated.
    #[cfg(test)]
    fn request_raw(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<Answer>, NetlinkError> {
        self.request_decoded(msg, flags, |a| Some(a.detached()))
    }

    /// Sends one request and decodes each answer where it was received (`decode` says None to
    /// one of no interest), keeping no copy of the messages; an interrupted dump is repeated.
    fn request_decoded<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut decode: impl FnMut(&Answer<&[u8]>) -> Option<T>,
    ) -> Result<Vec<T>, NetlinkError> {
        let mut tries = 0;
        loop {
            let mut out = Vec::new();
            match self.t.request_each(flags, |seq| Self::encode(msg.clone(), flags, seq), |a| out.extend(decode(a))) {
                Err(e) if e.errno() == Some(Errno::EINTR) && tries + 1 < DUMP_TRIES => {
                    if tries > 0 {
                        std::thread::sleep(std::time::Duration::from_millis(1 << (tries - 1)));
                    }
                    tries += 1;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(out),
            }
        }
    }

    /// Sends one request and decodes every answer.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.request_decoded(msg, flags, |a| match NetlinkMessage::<RouteNetlinkMessage>::deserialize(a.bytes) {
            Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(m), .. }) => Some(Ok(m)),
            Ok(_) => None,
            Err(e) => Some(Err(NetlinkError::Malformed(format!("rtnetlink message type {}: {e}", a.kind)))),
        })?
        .into_iter()
        .collect()
    }

    #[cfg(test)]
    fn dump(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.request(msg, NLM_F_DUMP)
    }

    fn write(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<(), NetlinkError> {
        self.writes += 1;
        self.request(msg, NLM_F_ACK | flags).map(|_| ())
    }

    /// Every link. Link messages are large (a kilobyte of per-family configuration each) and only
    /// four of their attributes matter here, so they are read in place rather than decoded whole:
    /// on a host with hundreds of interfaces decoding them was the biggest cost of a `sync` (and
    /// a link attribute the crate cannot decode cannot fail the read).
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        self.links_with(|_, _| true)
    }

    /// Every link; the IPv4 configuration (`sysctls`) only of those `configured(name, group)`
    /// picks: the configuration is most of a link's message, and decoding it for links no plan
    /// may change would make reading the links cost in proportion to the unmanaged ones.
    pub fn links_with(&mut self, configured: impl Fn(&str, u32) -> bool) -> Result<Vec<Link>, NetlinkError> {
        // Of no use here: the counters of SR-IOV virtual functions, which a physical function's
        // message carries per VF. (The link's own counters the kernel always sends.)
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::ExtMask(vec![netlink_packet_route::link::LinkExtentMask::SkipStats]));
        self.request_decoded(RouteNetlinkMessage::GetLink(m), NLM_F_DUMP, |a| link_from_raw(a.kind, a.payload(), &configured))
    }

    /// One link, asked for by name; `None` if there is no such interface.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(m)
    }

    /// One link, asked for by index; `None` if it is gone.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>, NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.get_link(m)
    }

    fn get_link(&mut self, mut m: LinkMessage) -> Result<Option<Link>, NetlinkError> {
        m.attributes.push(LinkAttribute::ExtMask(vec![netlink_packet_route::link::LinkExtentMask::SkipStats]));
        match self.request_decoded(RouteNetlinkMessage::GetLink(m), 0, |a| link_from_raw(a.kind, a.payload(), &|_, _| true)) {
            Ok(v) => Ok(v.into_iter().next()),
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Addresses of both families of every interface (`index` 0) or of one, read in place
    /// (`address_from_raw`).
    pub fn addresses(&mut self, index: u32) -> Result<Vec<Address>, NetlinkError> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Unspec;
        req.header.index = index;
        self.request_decoded(RouteNetlinkMessage::GetAddress(req), NLM_F_DUMP, |a| address_from_raw(a.kind, a.payload()))
    }

    /// The same, decoded whole by the crate: what the in-place reader must agree with.
    #[cfg(test)]
    fn addresses_decoded(&mut self) -> Result<Vec<Address>, NetlinkError> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Unspec;
        let mut out = Vec::new();
        for m in self.dump(RouteNetlinkMessage::GetAddress(req))? {
            let RouteNetlinkMessage::NewAddress(a) = m else { continue };
            if !matches!(a.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
                continue;
            }
            let (mut local, mut any, mut flags) = (None, None, u32::from(a.header.flags.bits()));
            for x in &a.attributes {
                match x {
                    AddressAttribute::Local(v) => local = Some(*v),
                    AddressAttribute::Address(v) => any = Some(*v),
                    AddressAttribute::Flags(f) => flags = f.bits(),
                    _ => {}
                }
            }
            if let Some(addr) = local.or(any) {
                use netlink_packet_route::address::AddressFlags;
                let dadfailed = AddressFlags::from_bits_retain(flags).contains(AddressFlags::Dadfailed);
                out.push(Address { index: a.header.index, addr, prefix_len: a.header.prefix_len, dadfailed });
            }
        }
        Ok(out)
    }

    /// Every rule of both families, as the kernel holds them now.
    pub fn rules(&mut self) -> Result<Rules, NetlinkError> {
        self.dump_rules().map(Rules::new)
    }

    /// The rules of both families, read in place: the kernel cannot filter a rule dump, so each
    /// reads every rule, three per managed interface.
    pub fn dump_rules(&mut self) -> Result<Vec<Owned<Rule>>, NetlinkError> {
        let mut req = RuleMessage::default();
        req.header.family = AddressFamily::Unspec;
        self.request_decoded(RouteNetlinkMessage::GetRule(req), NLM_F_DUMP, |a| rule_from_raw(a.kind, a.payload()))
    }

    /// The routes of both families in one table, or in every table (`table` 0), as the kernel
    /// holds them. (An unspecified family also spares the error a family-specific dump of a table
    /// that does not exist yet gets.)
    pub fn routes(&mut self, table: u32) -> Result<Vec<KernelRoute>, NetlinkError> {
        self.routes_via(table, None)
    }

    /// The same, only those through interface `oif` (a multipath route if one of its hops is)
    /// when one is given: the kernel filters, so the cost does not grow with other interfaces'.
    pub fn routes_via(&mut self, table: u32, oif: Option<u32>) -> Result<Vec<KernelRoute>, NetlinkError> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Unspec;
        if table != 0 {
            req.attributes.push(RouteAttribute::Table(table));
        }
        if let Some(o) = oif {
            req.attributes.push(RouteAttribute::Oif(o));
        }
        // The local table (every address's own route and broadcasts, two per address) is nobody's
        // business here: not decoded.
        const RT_TABLE_LOCAL: u8 = 255;
        self.request_decoded(RouteNetlinkMessage::GetRoute(req), NLM_F_DUMP, |a| {
            (a.payload().get(4) != Some(&RT_TABLE_LOCAL)).then(|| KernelRoute::from_raw(a.kind, a.payload())).flatten()
        })
    }

    /// Sends many write requests at once — as many per system call as fit — and returns each
    /// one's result, in order. The kernel handles them one after the other, as if sent singly.
    /// Only the last request of each send asks for an acknowledgement: the kernel reports every
    /// failed request anyway, in order, so once the last one is answered every earlier one that
    /// said nothing succeeded. One receive per send, not one per request.
    pub fn batch(&mut self, ops: &[Op], protocol: u8) -> Result<Vec<Result<(), NetlinkError>>, NetlinkError> {
        const CHUNK: usize = 32 * 1024;
        let mut results: Vec<Option<Result<(), NetlinkError>>> = (0..ops.len()).map(|_| None).collect();
        let mut start = 0;
        while start < ops.len() {
            let mut buf = Vec::with_capacity(CHUNK + 1024);
            let first = self.t.next_seq();
            let (mut seq, mut end, mut last_at) = (first, start, 0);
            while end < ops.len() && (buf.len() < CHUNK || end == start) {
                if end > start {
                    seq = self.t.next_seq();
                }
                let (msg, flags) = ops[end].message(protocol);
                last_at = buf.len();
                buf.extend_from_slice(&Self::encode(msg, flags, seq));
                end += 1;
            }
            // The last request of the send asks for the ACK (nlmsg_flags sits at byte 6).
            let flags = u16::from_ne_bytes([buf[last_at + 6], buf[last_at + 7]]) | NLM_F_ACK;
            buf[last_at + 6..last_at + 8].copy_from_slice(&flags.to_ne_bytes());
            // Sysctl values are counted as sysctl writes by the caller.
            self.writes += ops[start..end].iter().filter(|o| !matches!(o, Op::SetLink { group: None, .. })).count() as u32;
            let base = start;
            self.t.batch(&buf, first, seq, |s, r| results[base + (s - first) as usize] = Some(r))?;
            start = end;
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
    }

    pub fn add_route(&mut self, r: &Route, protocol: u8) -> Result<(), NetlinkError> {
        self.write(RouteNetlinkMessage::NewRoute(route_message(r, protocol)), NLM_F_CREATE | NLM_F_EXCL)
    }

    pub fn del_route(&mut self, r: &Route, protocol: u8) -> Result<(), NetlinkError> {
        self.write(RouteNetlinkMessage::DelRoute(route_message(r, protocol)), 0)
    }

    /// Adds (or refreshes) an IPv4 address; the protocol marks it as stronghost's (IFA_PROTO).
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix_len: u8, protocol: u8) -> Result<(), NetlinkError> {
        self.write(RouteNetlinkMessage::NewAddress(address_message(index, addr, prefix_len, Some(protocol))), NLM_F_CREATE | NLM_F_REPLACE)
    }

    pub fn del_address(&mut self, index: u32, addr: Ipv4Addr, prefix_len: u8) -> Result<(), NetlinkError> {
        self.write(RouteNetlinkMessage::DelAddress(address_message(index, addr, prefix_len, None)), 0)
    }

    /// Sets the link administratively up.
    pub fn set_link_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = netlink_packet_route::link::LinkFlags::Up;
        m.header.change_mask = netlink_packet_route::link::LinkFlags::Up;
        self.write(RouteNetlinkMessage::SetLink(m), 0)
    }

    /// The kernel's answer to `ip route get DST from SRC` / `oif DEV` / `mark MARK`: (oif,
    /// preferred source).
    pub fn route_get(
        &mut self,
        dst: IpAddr,
        src: Option<IpAddr>,
        oif: Option<u32>,
        mark: Option<u32>,
    ) -> Result<(Option<u32>, Option<IpAddr>), NetlinkError> {
        let mut m = RouteMessage::default();
        let width = if dst.is_ipv6() { 128 } else { 32 };
        m.header.address_family = family(dst.is_ipv6());
        m.header.destination_prefix_length = width;
        m.attributes.push(RouteAttribute::Destination(route_address(dst)));
        if let Some(s) = src {
            m.header.source_prefix_length = width;
            m.attributes.push(RouteAttribute::Source(route_address(s)));
        }
        if let Some(o) = oif {
            m.attributes.push(RouteAttribute::Oif(o));
        }
        if let Some(x) = mark {
            m.attributes.push(RouteAttribute::Mark(x));
        }
        let answer = self.request(RouteNetlinkMessage::GetRoute(m), 0)?;
        for a in answer {
            if let RouteNetlinkMessage::NewRoute(r) = a {
                let oif = r.attributes.iter().find_map(|x| if let RouteAttribute::Oif(o) = x { Some(*o) } else { None });
                let src = r.attributes.iter().find_map(|x| match x {
                    RouteAttribute::PrefSource(a) => ip_of(a),
                    _ => None,
                });
                return Ok((oif, src));
            }
        }
        Ok((None, None))
    }
}

fn family(v6: bool) -> AddressFamily {
    if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet }
}

fn route_address(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(v) => RouteAddress::Inet(v),
        IpAddr::V6(v) => RouteAddress::Inet6(v),
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn address_message(index: u32, addr: Ipv4Addr, prefix_len: u8, protocol: Option<u8>) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.prefix_len = prefix_len;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
    m.attributes.push(AddressAttribute::Address(IpAddr::V4(addr)));
    if prefix_len < 31 {
        let bcast = u32::from(addr) | !crate::model::net::mask(prefix_len);
        m.attributes.push(AddressAttribute::Broadcast(Ipv4Addr::from(bcast)));
    }
    if let Some(p) = protocol {
        m.attributes.push(AddressAttribute::Protocol(p.into()));
    }
    m
}

/// One write of a batch.
#[derive(Debug, Clone)]
pub enum Op {
    AddRule(Rule),
    DelRule(Rule),
    AddRoute(Route),
    DelRoute(Route),
    /// The link's group and `net.ipv4.conf.<link>.<knob>` values (IFLA_AF_SPEC / AF_INET /
    /// IFLA_INET_CONF), in one request: each link change makes the kernel announce it and
    /// re-check every route through the link (NETDEV_CHANGE), so one per link, not one per knob.
    SetLink {
        index: u32,
        group: Option<u32>,
        sysctls: Vec<(&'static str, u32)>,
    },
}

/// IPV4_DEVCONF_* (linux/ip.h): the attribute number of each knob in IFLA_INET_CONF.
fn devconf_index(knob: &str) -> Option<u16> {
    Some(match knob {
        "rp_filter" => 8,
        "arp_filter" => 13,
        "arp_announce" => 18,
        "arp_ignore" => 19,
        _ => return None,
    })
}

fn setlink_message(index: u32, group: Option<u32>, values: &[(&'static str, u32)]) -> LinkMessage {
    let mut conf = Vec::new();
    for (knob, value) in values {
        let Some(i) = devconf_index(knob) else { continue };
        conf.extend_from_slice(&8u16.to_ne_bytes());
        conf.extend_from_slice(&i.to_ne_bytes());
        conf.extend_from_slice(&value.to_ne_bytes());
    }
    let mut m = LinkMessage::default();
    m.header.index = index;
    if let Some(g) = group {
        m.attributes.push(LinkAttribute::Group(g));
    }
    if !conf.is_empty() {
        let inet = AfSpecInet::Other(DefaultNla::new(IFLA_INET_CONF | NLA_F_NESTED, conf));
        m.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![inet])]));
    }
    m
}

impl Op {
    fn message(&self, protocol: u8) -> (RouteNetlinkMessage, u16) {
        match self {
            // No NLM_F_EXCL: with it the kernel walks the whole rule list comparing each rule
            // (rule_exists), about 0.3 ms at 12,000 rules, per rule added. It would only catch
            // a copy of this very rule (same protocol, ours), and the plan adds only rules it
            // has just seen absent, under the host lock; should a stale view ever add a second
            // copy, the next plan removes it (`plan::diff`).
            Op::AddRule(r) => (RouteNetlinkMessage::NewRule(rule_message(r, protocol)), NLM_F_CREATE),
            Op::DelRule(r) => (RouteNetlinkMessage::DelRule(rule_message(r, protocol)), 0),
            Op::AddRoute(r) => (RouteNetlinkMessage::NewRoute(route_message(r, protocol)), NLM_F_CREATE | NLM_F_EXCL),
            Op::DelRoute(r) => (RouteNetlinkMessage::DelRoute(route_message(r, protocol)), 0),
            Op::SetLink { index, group, sysctls } => (RouteNetlinkMessage::SetLink(setlink_message(*index, *group, sysctls)), 0),
        }
    }

    /// The equivalent command, for error messages.
    pub fn describe(&self, ifname: &str) -> String {
        match self {
            Op::AddRule(r) => format!("{} rule add {r}", r.ip()),
            Op::DelRule(r) => format!("{} rule del {r}", r.ip()),
            Op::AddRoute(r) => format!("{} route add {r}", r.ip()),
            Op::DelRoute(r) => format!("{} route del {r}", r.ip()),
            Op::SetLink { group, sysctls, .. } => group
                .map(|g| format!("ip link set {ifname} group {g}"))
                .into_iter()
                .chain(sysctls.iter().map(|(k, v)| crate::model::kernel::sysctl_command(ifname, k, *v)))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// Errors that only mean the work was already done: deleting what is gone.
    pub fn harmless(&self, errno: Option<Errno>) -> bool {
        match self {
            Op::DelRule(_) => errno == Some(Errno::ENOENT),
            // ESRCH: no such route; ENODEV: its device is gone, and the route with it.
            Op::DelRoute(_) => matches!(errno, Some(Errno::ESRCH) | Some(Errno::ENODEV)),
            _ => false,
        }
    }
}

/// An RTM_NEWLINK payload (struct ifinfomsg, then attributes) read in place: name, group, up, and
/// the IPv4 knobs stronghost manages from IFLA_AF_SPEC / AF_INET / IFLA_INET_CONF (an array of
/// u32 indexed by IPV4_DEVCONF_* - 1). The knobs only if `configured(name, group)`; otherwise the
/// walk stops once name and group are known (they come first in what the kernel sends).
fn link_from_raw(kind: u16, p: &[u8], configured: &dyn Fn(&str, u32) -> bool) -> Option<Link> {
    const IFF_UP: u32 = 1;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_AF_SPEC: u16 = 26;
    const IFLA_GROUP: u16 = 27;
    const IFLA_LINK: u16 = 5;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_INFO_KIND: u16 = 1;
    const IFLA_LINK_NETNSID: u16 = 37;
    if kind != RTM_NEWLINK || p.len() < 16 {
        return None;
    }
    let index = u32::from_ne_bytes(p[4..8].try_into().ok()?);
    let flags = u32::from_ne_bytes(p[8..12].try_into().ok()?);
    let mut link = Link { index, name: String::new(), group: 0, up: flags & IFF_UP != 0, sysctls: vec![], lower: None };
    let (mut iflink, mut shares_segment, mut elsewhere) = (None, false, false);
    let u32_at = |v: &[u8]| v.get(..4).map(|b| u32::from_ne_bytes(b.try_into().unwrap()));
    // Asked once, as soon as both are known.
    let (mut named, mut grouped, mut asked) = (false, false, false);
    for (t, v) in raw_attributes(&p[16..]) {
        match t {
            IFLA_IFNAME => {
                link.name = c_string(v);
                named = true;
            }
            IFLA_GROUP => {
                link.group = u32_at(v).unwrap_or(0);
                grouped = true;
            }
            IFLA_LINK => iflink = u32_at(v),
            IFLA_LINK_NETNSID => elsewhere = true,
            IFLA_LINKINFO => {
                shares_segment = raw_attributes(v)
                    .filter(|(t, _)| *t == IFLA_INFO_KIND)
                    .any(|(_, k)| matches!(c_str(k), b"macvlan" | b"macvtap" | b"ipvlan" | b"ipvtap"));
            }
            IFLA_AF_SPEC => {
                for (_, conf) in raw_attributes(v)
                    .filter(|(f, _)| *f == u16::from(AF_INET))
                    .flat_map(|(_, inet)| raw_attributes(inet))
                    .filter(|(c, _)| *c == IFLA_INET_CONF)
                {
                    link.sysctls = ["rp_filter", "arp_filter", "arp_announce", "arp_ignore"]
                        .into_iter()
                        .filter_map(|knob| {
                            let i = usize::from(devconf_index(knob)?) - 1;
                            Some((knob, u32_at(conf.get(i * 4..)?)?))
                        })
                        .collect();
                }
            }
            _ => {}
        }
        if named && grouped && !asked {
            if !configured(&link.name, link.group) {
                break;
            }
            asked = true;
        }
    }
    link.lower = iflink.filter(|&i| shares_segment && !elsewhere && i != 0 && i != index);
    Some(link)
}

fn rule_message(r: &Rule, protocol: u8) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = family(r.v6);
    m.attributes.push(RuleAttribute::Priority(r.priority));
    if let Some(p) = r.goto {
        m.header.action = RuleAction::Goto;
        m.attributes.push(RuleAttribute::Goto(p));
    } else {
        m.header.action = RuleAction::ToTable;
        // Tables above 255 travel in FRA_TABLE only.
        m.header.table = if r.table < 256 { r.table as u8 } else { 0 };
        m.attributes.push(RuleAttribute::Table(r.table));
    }
    m.attributes.push(RuleAttribute::Protocol(RouteProtocol::from(protocol)));
    match &r.selector {
        Selector::All => {}
        Selector::From(a) => {
            m.header.src_len = if a.is_ipv6() { 128 } else { 32 };
            m.attributes.push(RuleAttribute::Source(*a));
        }
        Selector::Oif(d) => m.attributes.push(RuleAttribute::Oifname(d.clone())),
        Selector::To(n) => {
            m.header.dst_len = n.len;
            m.attributes.push(RuleAttribute::Destination(n.addr));
        }
        Selector::Fwmark(mark, mask) => {
            m.attributes.push(RuleAttribute::FwMark(*mark));
            m.attributes.push(RuleAttribute::FwMask(*mask));
        }
        Selector::Unmarked(mask) => {
            m.attributes.push(RuleAttribute::FwMark(0));
            m.attributes.push(RuleAttribute::FwMask(*mask));
        }
    }
    if let Some((l, g)) = r.suppress {
        m.attributes.push(RuleAttribute::SuppressPrefixLen(l));
        m.attributes.push(RuleAttribute::SuppressIfGroup(g));
    }
    m
}

/// An address message's payload (struct ifaddrmsg: family, prefix length, flags, scope, index;
/// then attributes) as stronghost needs it. IFA_LOCAL is the interface's own address (IFA_ADDRESS
/// is the peer on point-to-point links); IPv6 sends IFA_ADDRESS alone. IFA_FLAGS, when there,
/// holds the flags that do not fit the header's byte.
fn address_from_raw(kind: u16, p: &[u8]) -> Option<Address> {
    const RTM_NEWADDR: u16 = 20;
    const IFA_ADDRESS: u16 = 1;
    const IFA_FLAGS: u16 = 8;
    const IFA_F_DADFAILED: u32 = 0x08;
    if kind != RTM_NEWADDR || p.len() < 8 {
        return None;
    }
    let width = match p[0] {
        2 => 4,
        10 => 16,
        _ => return None,
    };
    let ip = |v: &[u8]| match v.len() {
        4 if width == 4 => Some(IpAddr::from(<[u8; 4]>::try_from(v).ok()?)),
        16 if width == 16 => Some(IpAddr::from(<[u8; 16]>::try_from(v).ok()?)),
        _ => None,
    };
    let (mut local, mut any, mut flags) = (None, None, u32::from(p[2]));
    for (t, v) in raw_attributes(&p[8..]) {
        match t {
            IFA_LOCAL => local = ip(v).or(local),
            IFA_ADDRESS => any = ip(v).or(any),
            IFA_FLAGS => flags = v.get(..4).map_or(flags, |b| u32::from_ne_bytes(b.try_into().unwrap())),
            _ => {}
        }
    }
    let index = u32::from_ne_bytes(p[4..8].try_into().ok()?);
    Some(Address { index, addr: local.or(any)?, prefix_len: p[1], dadfailed: flags & IFA_F_DADFAILED != 0 })
}

/// A rule message read in place (struct fib_rule_hdr, then FRA_* attributes): what
/// `rule_from_kernel` makes of the crate's decoding, without allocating every attribute — a unit
/// test holds the two to the same answer for every rule the kernel dumps.
pub fn rule_from_raw(kind: u16, p: &[u8]) -> Option<Owned<Rule>> {
    const FR_ACT_TO_TBL: u8 = 1;
    const FR_ACT_GOTO: u8 = 2;
    const FIB_RULE_UNRESOLVED: u32 = 0x4;
    const FIB_RULE_OIF_DETACHED: u32 = 0x10;
    const AF_INET6: u8 = 10;
    if kind != RTM_NEWRULE || p.len() < 12 {
        return None;
    }
    let (family, dst_len, src_len, tos, table8, action) = (p[0], p[1], p[2], p[3], p[4], p[7]);
    let flags = u32::from_ne_bytes(p[8..12].try_into().ok()?);
    // A rule whose oif is gone stays in the kernel flagged "detached", and a goto rule whose
    // target priority holds no rule (for now) "unresolved": either is still ours to keep or remove.
    if !matches!(action, FR_ACT_TO_TBL | FR_ACT_GOTO) || tos != 0 || flags & !(FIB_RULE_UNRESOLVED | FIB_RULE_OIF_DETACHED) != 0 {
        return None;
    }
    let v6 = match family {
        AF_INET => false,
        AF_INET6 => true,
        _ => return None,
    };
    let addr_of = |v: &[u8]| -> Option<IpAddr> {
        match (v6, v.len()) {
            (false, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(v).ok()?)),
            (true, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(v).ok()?)),
            _ => None,
        }
    };
    let mut f = RuleFields { table: u32::from(table8), dst_len, src_len, goto_action: action == FR_ACT_GOTO, ..Default::default() };
    for (t, v) in raw_attributes(&p[12..]) {
        match t {
            1 => f.dst = Some(addr_of(v)?),                                 // FRA_DST
            2 => f.src = Some(addr_of(v)?),                                 // FRA_SRC
            4 => f.goto = Some(u32_ne(v)?),                                 // FRA_GOTO
            6 => f.priority = u32_ne(v)?,                                   // FRA_PRIORITY
            10 => f.mark = Some(u32_ne(v)?),                                // FRA_FWMARK
            13 => f.sig = Some(u32_ne(v)?).filter(|g| *g != u32::MAX),      // FRA_SUPPRESS_IFGROUP ("unset" is -1)
            14 => f.spl = Some(u32_ne(v)?).filter(|l| *l != u32::MAX),      // FRA_SUPPRESS_PREFIXLEN
            15 => f.table = u32_ne(v)?,                                     // FRA_TABLE
            16 => f.mask = Some(u32_ne(v)?),                                // FRA_FWMASK
            17 => f.oif = Some(String::from_utf8(c_str(v).to_vec()).ok()?), // FRA_OIFNAME
            21 => f.protocol = *v.first()?,                                 // FRA_PROTOCOL
            _ => return None, // outside the model: iif, uid range, ports, tunnel id, l3mdev...
        }
    }
    f.rule(v6)
}

/// A rule's fields as the kernel reports them, before they are judged against the model.
#[derive(Default)]
struct RuleFields {
    priority: u32,
    table: u32,
    protocol: u8,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    src_len: u8,
    dst_len: u8,
    oif: Option<String>,
    mark: Option<u32>,
    mask: Option<u32>,
    goto: Option<u32>,
    goto_action: bool,
    spl: Option<u32>,
    sig: Option<u32>,
}

impl RuleFields {
    /// The rule in the model's terms, if it is of a shape stronghost writes.
    fn rule(self, v6: bool) -> Option<Owned<Rule>> {
        let width = if v6 { 128 } else { 32 };
        if self.goto_action != self.goto.is_some() {
            return None;
        }
        // The kernel reports a mark of 0 as the mask alone, and a mark without a mask as all bits.
        let fwmark = match (self.mark.filter(|m| *m != 0), self.mask.filter(|m| *m != 0)) {
            (None, None) => None,
            (None, Some(mask)) => Some((0, mask)),
            (Some(m), mask) => Some((m, mask.unwrap_or(u32::MAX))),
        };
        let selector = match (self.src, self.oif, self.dst, fwmark, self.src_len, self.dst_len) {
            (None, None, None, None, 0, 0) => Selector::All,
            (None, None, None, Some((0, mask)), 0, 0) => Selector::Unmarked(mask),
            (Some(s), None, None, None, l, 0) if l == width => Selector::From(s),
            (None, Some(o), None, None, 0, 0) => Selector::Oif(o),
            (None, None, Some(d), None, 0, l) => Selector::To(IpNet::new(d, l).ok()?),
            (None, None, None, Some((m, mask)), 0, 0) => Selector::Fwmark(m, mask),
            _ => return None,
        };
        let suppress = match (self.spl, self.sig) {
            (None, None) => None,
            (Some(l), Some(g)) => Some((l, g)),
            _ => return None,
        };
        let table = if self.goto.is_some() { 0 } else { self.table };
        Some(Owned { protocol: self.protocol, item: Rule { v6, priority: self.priority, selector, table, suppress, goto: self.goto } })
    }
}

/// Rules the model cannot express (other actions, iif, masked fwmarks, ...) are never ours: skip
/// them. The crate's decoding: the test oracle for `rule_from_raw`.
#[cfg(test)]
fn rule_from_kernel(r: &RuleMessage) -> Option<Owned<Rule>> {
    use netlink_packet_route::rule::RuleFlags;
    let detached = RuleFlags::OifDetached | RuleFlags::Unresolved;
    if !matches!(r.header.action, RuleAction::ToTable | RuleAction::Goto) || r.header.tos != 0 || !detached.contains(r.header.flags) {
        return None;
    }
    let v6 = match r.header.family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut f = RuleFields {
        table: u32::from(r.header.table),
        src_len: r.header.src_len,
        dst_len: r.header.dst_len,
        goto_action: r.header.action == RuleAction::Goto,
        ..Default::default()
    };
    for a in &r.attributes {
        match a {
            RuleAttribute::Priority(p) => f.priority = *p,
            RuleAttribute::Table(t) => f.table = *t,
            RuleAttribute::Protocol(p) => f.protocol = u8::from(*p),
            RuleAttribute::Source(s) if s.is_ipv6() == v6 => f.src = Some(*s),
            RuleAttribute::Destination(d) if d.is_ipv6() == v6 => f.dst = Some(*d),
            RuleAttribute::FwMark(m) => f.mark = Some(*m),
            RuleAttribute::FwMask(m) => f.mask = Some(*m),
            RuleAttribute::Goto(p) => f.goto = Some(*p),
            RuleAttribute::Oifname(o) => f.oif = Some(o.clone()),
            RuleAttribute::SuppressPrefixLen(l) => f.spl = Some(*l).filter(|l| *l != u32::MAX),
            RuleAttribute::SuppressIfGroup(g) => f.sig = Some(*g).filter(|g| *g != u32::MAX),
            _ => return None,
        }
    }
    f.rule(v6)
}

fn route_message(r: &Route, protocol: u8) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(r.dst.is_v6());
    m.header.destination_prefix_length = r.dst.len;
    m.header.table = if r.table < 256 { r.table as u8 } else { RouteHeader::RT_TABLE_UNSPEC };
    m.header.protocol = RouteProtocol::from(protocol);
    m.attributes.push(RouteAttribute::Table(r.table));
    if r.dst.len > 0 {
        m.attributes.push(RouteAttribute::Destination(route_address(r.dst.addr)));
    }
    if r.metric != 0 {
        m.attributes.push(RouteAttribute::Priority(r.metric));
    }
    match &r.kind {
        RouteKind::Unreachable => {
            m.header.kind = RouteType::Unreachable;
            m.header.scope = RouteScope::Universe;
        }
        RouteKind::Link { oif, src, .. } => {
            m.header.kind = RouteType::Unicast;
            // IPv6 has no route scopes (the kernel reports every route as universe).
            m.header.scope = if r.dst.is_v6() { RouteScope::Universe } else { RouteScope::Link };
            m.attributes.push(RouteAttribute::Oif(*oif));
            if let Some(s) = src {
                m.attributes.push(RouteAttribute::PrefSource(route_address(*s)));
            }
        }
        RouteKind::Via { oif, gateway, src, onlink, .. } => {
            m.header.kind = RouteType::Unicast;
            m.header.scope = RouteScope::Universe;
            if *onlink {
                m.header.flags = RouteFlags::Onlink;
            }
            m.attributes.push(RouteAttribute::Oif(*oif));
            m.attributes.push(RouteAttribute::Gateway(route_address(*gateway)));
            if let Some(s) = src {
                m.attributes.push(RouteAttribute::PrefSource(route_address(*s)));
            }
        }
    }
    m
}

impl KernelRoute {
    /// A route notification's payload (struct rtmsg and its attributes), new or deleted alike.
    pub fn parse(p: &[u8]) -> Option<KernelRoute> {
        Self::from_raw(24, p)
    }

    /// An RTM_NEWROUTE payload (struct rtmsg, then attributes) read in place, without building a
    /// message object per route (a full dump holds a few routes per interface). None for anything
    /// but an IPv4 or IPv6 route. Only the attributes below are understood; any other makes the route exotic.
    fn from_raw(kind: u16, p: &[u8]) -> Option<KernelRoute> {
        const RTNH_F_ONLINK: u32 = 4;
        const RTA_DST: u16 = 1;
        const RTA_OIF: u16 = 4;
        const RTA_GATEWAY: u16 = 5;
        const RTA_PRIORITY: u16 = 6;
        const RTA_PREFSRC: u16 = 7;
        const RTA_MULTIPATH: u16 = 9;
        const RTA_CACHEINFO: u16 = 12;
        const RTA_TABLE: u16 = 15;
        const RTA_PREF: u16 = 20;
        if kind != RTM_NEWROUTE || p.len() < 12 {
            return None;
        }
        let v6 = match p[0] {
            2 => false,
            10 => true,
            _ => return None,
        };
        let flags = u32::from_ne_bytes(p[8..12].try_into().ok()?);
        let mut k = KernelRoute {
            table: u32::from(p[4]),
            protocol: p[5],
            kind: RouteType::from(p[7]),
            scope: RouteScope::from(p[6]),
            dst: IpNet::default_for(v6),
            oif: None,
            gateway: None,
            src: None,
            metric: 0,
            onlink: flags & RTNH_F_ONLINK != 0,
            // A type of service or a source prefix: a route the model does not write.
            exotic: p[3] != 0 || p[2] != 0,
            nexthops: vec![],
        };
        // An address of the route's own family, or None.
        let ip = |v: &[u8]| match (v.len(), v6) {
            (4, false) => Some(IpAddr::from(<[u8; 4]>::try_from(v).ok()?)),
            (16, true) => Some(IpAddr::from(<[u8; 16]>::try_from(v).ok()?)),
            _ => None,
        };
        let mut dst = k.dst.addr;
        for (t, v) in raw_attributes(&p[12..]) {
            let understood = match t {
                RTA_TABLE => u32_ne(v).map(|t| k.table = t),
                RTA_DST => ip(v).map(|d| dst = d),
                RTA_OIF => u32_ne(v).map(|o| k.oif = Some(o)),
                RTA_GATEWAY => ip(v).map(|g| k.gateway = Some(g)),
                RTA_PREFSRC => ip(v).map(|s| k.src = Some(s)),
                RTA_PRIORITY => u32_ne(v).map(|m| k.metric = m),
                // struct rtnexthop each (length, flags, hops, ifindex), then its own attributes.
                RTA_MULTIPATH => {
                    let mut hops = v;
                    while hops.len() >= 8 {
                        let len = usize::from(u16::from_ne_bytes([hops[0], hops[1]]));
                        if len < 8 || len > hops.len() {
                            break;
                        }
                        let index = u32::from_ne_bytes(hops[4..8].try_into().ok()?);
                        let gw = raw_attributes(&hops[8..len]).find(|(t, _)| *t == RTA_GATEWAY).and_then(|(_, g)| ip(g));
                        k.nexthops.push((index, gw));
                        hops = &hops[(len + 3) & !3..];
                    }
                    None
                }
                // Every IPv6 route reports its router preference ("pref medium").
                RTA_CACHEINFO | RTA_PREF => Some(()),
                _ => None,
            };
            k.exotic |= understood.is_none();
        }
        match IpNet::new(dst, p[1]) {
            Ok(n) => k.dst = n,
            Err(_) => k.exotic = true,
        }
        Some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use netlink_packet_route::link::{InetDevConf, LinkFlags};

    /// The in-place link reader agrees with the crate's own encoder, knob by knob.
    #[test]
    fn raw_link_reader_matches_the_encoding() {
        let mut conf = InetDevConf::default();
        conf.arp_ignore = 1;
        conf.arp_announce = 2;
        conf.arpfilter = 1;
        conf.rp_filter = 2;
        conf.forwarding = 1;
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.header.flags = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName("eth1".into()));
        m.attributes.push(LinkAttribute::Mtu(1500));
        m.attributes.push(LinkAttribute::Group(4100));
        m.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![AfSpecInet::DevConf(conf)])]));
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        let l = link_from_raw(16, &buf, &|_, _| true).unwrap();
        assert_eq!((l.index, l.name.as_str(), l.group, l.up), (7, "eth1", 4100, true));
        assert_eq!(
            (l.sysctl("arp_ignore"), l.sysctl("arp_announce"), l.sysctl("arp_filter"), l.sysctl("rp_filter")),
            (Some(1), Some(2), Some(1), Some(2))
        );
        // Truncated input is refused, not read past.
        for cut in [0, 10, 20, buf.len() - 3] {
            let _ = link_from_raw(16, &buf[..cut], &|_, _| true);
        }
        assert!(link_from_raw(17, &buf, &|_, _| true).is_none());
        // A link not picked for its configuration: name and group, no knobs.
        let l = link_from_raw(16, &buf, &|name, group| name != "eth1" || group != 4100).unwrap();
        assert_eq!((l.name.as_str(), l.group, l.sysctls.len()), ("eth1", 4100, 0));
    }

    /// Every shape of rule stronghost writes reads back from the kernel as itself (otherwise it
    /// would be written again on every run, and never removed). In a network namespace of the
    /// test's own.
    #[test]
    fn every_rule_shape_reads_back_as_written() {
        use crate::model::routing::{RT_TABLE_MAIN, Selector};
        crate::netlink::testns::in_new_netns(|| {
            let mut nl = Netlink::open().unwrap();
            let (field, mark) = (0xff00_0000, 0x0100_0000);
            let rule =
                |v6: bool, priority: u32, selector: Selector| Rule { v6, priority, selector, table: 4101, suppress: None, goto: None };
            let main = |v6: bool, priority: u32, selector: Selector, suppress| Rule {
                table: RT_TABLE_MAIN,
                suppress,
                ..rule(v6, priority, selector)
            };
            let goto =
                |v6: bool, priority: u32, selector: Selector, to: u32| Rule { table: 0, goto: Some(to), ..rule(v6, priority, selector) };
            // Every shape stronghost writes (plan/policy.rs): `to` rules into main with their
            // suppressions, the unmarked packets' shortcut, the mark tree's nodes and leaves,
            // the unmanaged interfaces' mark, `from` and `oif`.
            let rules = vec![
                main(false, 4100, Selector::To("172.17.0.0/16".parse().unwrap()), Some((15, 4100))),
                main(true, 4100, Selector::To("2001:db8:17::/64".parse().unwrap()), Some((63, 4100))),
                goto(false, 4104, Selector::Unmarked(field), 4620),
                goto(true, 4104, Selector::Unmarked(field), 4620),
                goto(false, 4106, Selector::Fwmark(0x8000_0000, 0x8000_0000), 4362),
                rule(false, 4115, Selector::Fwmark(mark, field)),
                rule(true, 4115, Selector::Fwmark(mark, field)),
                main(false, 4105, Selector::Fwmark(field, field), None),
                main(true, 4105, Selector::Fwmark(field, field), None),
                rule(false, 4620, Selector::From("198.51.100.10".parse().unwrap())),
                rule(true, 4620, Selector::From("2001:db8:1::10".parse().unwrap())),
                rule(false, 4630, Selector::Oif("lo".into())),
            ];
            let ops: Vec<Op> = rules.iter().cloned().map(Op::AddRule).collect();
            for (r, result) in rules.iter().zip(nl.batch(&ops, 83).unwrap()) {
                result.unwrap_or_else(|e| panic!("ip rule add {r}: {e}"));
            }
            let read_back = |nl: &mut Netlink| {
                let mut v: Vec<Rule> = nl.rules().unwrap().iter().filter(|r| r.protocol == 83).map(|r| r.item.clone()).collect();
                v.sort();
                v
            };
            let mut want = rules.clone();
            want.sort();
            assert_eq!(read_back(&mut nl), want);
            // Rules are added without NLM_F_EXCL: a second copy is a second rule, not an error
            // (the plan's diff takes it away again: plan/mod.rs).
            let again = [Op::AddRule(rules[7].clone())];
            assert!(nl.batch(&again, 83).unwrap()[0].is_ok());
            let twice = read_back(&mut nl);
            assert_eq!(twice.iter().filter(|r| **r == rules[7]).count(), 2);
            nl.batch(&[Op::DelRule(rules[7].clone())], 83).unwrap().into_iter().for_each(|r| r.unwrap());
            assert_eq!(read_back(&mut nl), want);
            // The `goto` rules' target gone (the last `from` rules removed): still the same rules.
            let from: Vec<Op> = rules.iter().filter(|r| matches!(r.selector, Selector::From(_))).cloned().map(Op::DelRule).collect();
            nl.batch(&from, 83).unwrap().into_iter().for_each(|r| r.unwrap());
            want.retain(|r| !matches!(r.selector, Selector::From(_)));
            assert_eq!(read_back(&mut nl), want);
            // Other tools' rules of every kind: the in-place reader and the crate's decoding agree
            // on each, ours or not.
            for r in [
                "from 192.0.2.1 iif lo lookup 100",
                "not from 192.0.2.0/24 lookup 101",
                "from all uidrange 1000-2000 lookup 102",
                "from all ipproto tcp dport 443 lookup 103",
                "from all tos 0x10 lookup 104",
                "from all fwmark 0x10/0xff lookup 105",
                "from all lookup main suppress_prefixlength 0",
                "from all lookup main suppress_ifgroup 7",
                "from 192.0.2.0/24 to 198.51.100.0/24 prohibit",
                "from all blackhole",
                "priority 9 from all goto 10",
                "priority 10 from 192.0.2.9 nop",
                "from all oif lo lookup 106",
                "to 203.0.113.0/24 lookup 107 proto 83",
                "from all fwmark 0x7 lookup 108",
            ] {
                let ok = std::process::Command::new("ip").args(["rule", "add"]).args(r.split(' ')).status().unwrap().success();
                assert!(ok, "ip rule add {r}");
            }
            let v6 =
                std::process::Command::new("ip").args(["-6", "rule", "add", "from", "2001:db8::1", "iif", "lo", "lookup", "109"]).status();
            assert!(v6.unwrap().success());
            let mut req = RuleMessage::default();
            req.header.family = AddressFamily::Unspec;
            let raw = nl.request_raw(RouteNetlinkMessage::GetRule(req), NLM_F_DUMP).unwrap();
            assert!(raw.len() > 20, "{} rules", raw.len());
            let mut ours = 0;
            for a in &raw {
                let Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRule(m)), .. }) =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&a.bytes)
                else {
                    panic!("undecodable rule")
                };
                let (fast, oracle) = (rule_from_raw(a.kind, a.payload()), rule_from_kernel(&m));
                assert_eq!(fast, oracle, "{m:?}");
                ours += usize::from(fast.is_some());
            }
            // Ours, the kernel's three defaults per family, and the foreign ones the model can say.
            assert!(ours >= want.len() + 6, "{ours}");
        });
    }

    /// The crate's decoding, as routes were read before the in-place reader: its oracle.
    fn decoded(r: &RouteMessage) -> KernelRoute {
        let mut k = KernelRoute {
            table: u32::from(r.header.table),
            protocol: u8::from(r.header.protocol),
            kind: r.header.kind,
            scope: r.header.scope,
            dst: IpNet::default_for(r.header.address_family == AddressFamily::Inet6),
            oif: None,
            gateway: None,
            src: None,
            metric: 0,
            onlink: r.header.flags.contains(RouteFlags::Onlink),
            exotic: r.header.tos != 0 || r.header.source_prefix_length != 0,
            nexthops: vec![],
        };
        let mut dst = k.dst.addr;
        for a in &r.attributes {
            match a {
                RouteAttribute::Table(t) => k.table = *t,
                RouteAttribute::Destination(d) => match ip_of(d) {
                    Some(d) if d.is_ipv6() == dst.is_ipv6() => dst = d,
                    _ => k.exotic = true,
                },
                RouteAttribute::Oif(o) => k.oif = Some(*o),
                RouteAttribute::Gateway(g) => match ip_of(g) {
                    Some(g) => k.gateway = Some(g),
                    None => k.exotic = true,
                },
                RouteAttribute::PrefSource(s) => match ip_of(s) {
                    Some(s) => k.src = Some(s),
                    None => k.exotic = true,
                },
                RouteAttribute::Priority(p) => k.metric = *p,
                RouteAttribute::MultiPath(hops) => {
                    k.exotic = true;
                    for h in hops {
                        let gw = h.attributes.iter().find_map(|a| if let RouteAttribute::Gateway(g) = a { ip_of(g) } else { None });
                        k.nexthops.push((h.interface_index, gw));
                    }
                }
                // Every IPv6 route reports its router preference ("pref medium").
                RouteAttribute::CacheInfo(_) | RouteAttribute::Preference(_) => {}
                _ => k.exotic = true,
            }
        }
        match IpNet::new(dst, r.header.destination_prefix_length) {
            Ok(n) => k.dst = n,
            Err(_) => k.exotic = true,
        }
        k
    }

    /// The in-place address reader agrees with the crate's decoding: both families, a
    /// point-to-point address (its own, not the peer's), a tentative IPv6 one, a secondary; and
    /// the kernel's filter by interface.
    #[test]
    fn raw_address_reader_matches_the_crate() {
        crate::netlink::testns::in_new_netns(|| {
            let ip = |args: &str| {
                let ok = std::process::Command::new("ip").args(args.split(' ')).status().unwrap().success();
                assert!(ok, "ip {args}");
            };
            ip("link set lo up");
            ip("link add d0 type veth peer name d0p");
            ip("link set d0p up");
            ip("link set d0 up");
            ip("addr add 198.51.100.10/24 dev d0");
            ip("addr add 198.51.100.11/24 dev d0");
            ip("addr add 192.0.2.1 peer 192.0.2.2/32 dev d0");
            ip("-6 addr add 2001:db8:1::10/64 dev d0 nodad");
            ip("-6 addr add 2001:db8:1::11/64 dev d0");
            let mut nl = Netlink::open().unwrap();
            let raw = nl.addresses(0).unwrap();
            let decoded = nl.addresses_decoded().unwrap();
            assert_eq!(raw, decoded);
            assert!(raw.iter().any(|a| a.addr == "192.0.2.1".parse::<IpAddr>().unwrap()), "{raw:?}");
            assert!(raw.len() >= 6, "{raw:?}");
            let d0 = nl.link("d0").unwrap().unwrap().index;
            assert_eq!(nl.addresses(d0).unwrap(), decoded.into_iter().filter(|a| a.index == d0).collect::<Vec<_>>());
        });
    }

    /// The in-place route reader agrees with the crate's decoding on every shape of route, ours
    /// and other tools' (in a network namespace of the test's own), and leaves the local table out.
    #[test]
    fn raw_route_reader_matches_the_crate() {
        crate::netlink::testns::in_new_netns(|| {
            let ip = |args: &str| {
                let ok = std::process::Command::new("ip").args(args.split(' ')).status().unwrap().success();
                assert!(ok, "ip {args}");
            };
            ip("link set lo up");
            for d in ["d0", "d1"] {
                ip(&format!("link add {d} type veth peer name {d}p"));
                ip(&format!("link set {d}p up"));
                ip(&format!("link set {d} up"));
            }
            ip("addr add 198.51.100.10/24 dev d0");
            ip("addr add 203.0.113.10/24 dev d1");
            ip("-6 addr add 2001:db8:1::10/64 dev d0 nodad");
            for r in [
                "route add default via 198.51.100.1 dev d0 src 198.51.100.10 table 4101",
                "route add 198.51.100.0/24 dev d0 scope link src 198.51.100.10 table 4101",
                "route add unreachable default metric 4294967295 table 4101",
                "route add 192.0.2.0/24 via 198.51.100.1 dev d0 onlink table 4101 proto 83",
                "route add 192.0.2.128/25 nexthop via 198.51.100.1 dev d0 nexthop via 203.0.113.1 dev d1",
                "route add 192.0.2.64/26 via 198.51.100.1 mtu 1400",
                "route add 192.0.2.32/27 via 198.51.100.1 tos 0x10",
                "route add blackhole 192.0.2.16/28 table 100",
                "-6 route add default via 2001:db8:1::1 dev d0 table 4101",
                "-6 route add unreachable default metric 4294967295 table 4101",
                "-6 route add 2001:db8:9::/64 dev d0 table 4101",
                "-6 route add 2001:db8:8::/64 from 2001:db8:1::/64 via 2001:db8:1::1",
            ] {
                ip(r);
            }
            let mut nl = Netlink::open().unwrap();
            let mut req = RouteMessage::default();
            req.header.address_family = AddressFamily::Unspec;
            let raw = nl.request_raw(RouteNetlinkMessage::GetRoute(req), NLM_F_DUMP).unwrap();
            let mut seen = 0;
            for a in &raw {
                let Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(m)), .. }) =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&a.bytes)
                else {
                    continue;
                };
                assert_eq!(KernelRoute::from_raw(a.kind, a.payload()).as_ref(), Some(&decoded(&m)), "{m:?}");
                seen += 1;
            }
            assert!(seen >= 20, "{seen} routes");
            let read = nl.routes(0).unwrap();
            assert!(!read.iter().any(|r| r.table == 255), "the local table is left out");
            let multipath = read.iter().find(|r| r.dst.to_string() == "192.0.2.128/25").unwrap();
            assert!(multipath.exotic && multipath.nexthops.len() == 2, "{multipath:?}");
            let mtu = read.iter().find(|r| r.dst.to_string() == "192.0.2.64/26").unwrap();
            assert!(mtu.exotic, "{mtu:?}");
            assert_eq!(read.iter().filter(|r| r.table == 4101).filter(|r| !r.exotic).count(), 7);
            // Truncated input is refused, not read past.
            let some = &raw[0];
            for cut in [0, 5, 12, some.payload().len() - 3] {
                let _ = KernelRoute::from_raw(some.kind, &some.payload()[..cut]);
            }
        });
    }
}
