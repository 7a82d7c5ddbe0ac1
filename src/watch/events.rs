//! What the kernel said: rtnetlink notifications (links, addresses, routes, rules) and the
//! nftables monitor's, decoded into the work a burst asks for (`Pending`).

use crate::config::Config;
use crate::netlink::abi::*;
use crate::netlink::nftables::{Heard, Monitor};
use crate::netlink::subscription::Subscription;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::{BTreeMap, BTreeSet};

// rtnetlink multicast groups (linux/rtnetlink.h, enum rtnetlink_groups).
pub(super) const RTNLGRP_IPV6_IFADDR: u32 = 9;
pub(super) const RTNLGRP_IPV6_ROUTE: u32 = 11;

/// What a burst of events asks for.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) ifindexes: BTreeSet<u32>,
    /// Names of links that went away (their index no longer resolves).
    pub(super) gone: BTreeSet<String>,
    pub(super) tables: BTreeSet<u32>,
    /// Link names as link events carry them, by index: a rename is a name change of an index.
    pub(super) links: BTreeMap<u32, String>,
    /// Indexes of links that were deleted.
    pub(super) unlinked: BTreeSet<u32>,
    /// Devices of main-table routes the kernel made for an address (a network comes or goes):
    /// through an unmanaged interface, that changes the shared `to` rules.
    pub(super) connected: BTreeSet<u32>,
    /// Of those, the devices whose network went (not only came).
    pub(super) disconnected: BTreeSet<u32>,
    /// Another process changed the receive filter's table: who (or that notifications were lost).
    pub(super) filter: Option<String>,
    pub(super) resync: bool,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.ifindexes.is_empty()
            && self.gone.is_empty()
            && self.tables.is_empty()
            && self.connected.is_empty()
            && self.filter.is_none()
            && !self.resync
    }
}

/// Takes what the nftables monitor heard into `p`.
pub(super) fn drain_filter(monitor: &mut Option<Monitor>, p: &mut Pending) {
    match monitor.as_mut().map(Monitor::drain) {
        Some(Heard::Changed(by)) => p.filter = Some(by),
        Some(Heard::Lost) => p.filter = Some("someone (nftables notifications were lost)".into()),
        Some(Heard::Nothing) | None => {}
    }
}

/// Every link, address, route and rule change of both families, with room for a burst of
/// thousands of notifications between two reads.
pub(super) fn subscribe() -> std::io::Result<Subscription> {
    let groups = [
        RTNLGRP_LINK,
        RTNLGRP_IPV4_IFADDR,
        RTNLGRP_IPV4_ROUTE,
        RTNLGRP_IPV4_RULE,
        RTNLGRP_IPV6_IFADDR,
        RTNLGRP_IPV6_ROUTE,
        RTNLGRP_IPV6_RULE,
    ];
    Subscription::open(&groups, 8 << 20)
}

/// What the watcher knows of the events' sources across bursts.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// The watcher's own netlink port: notifications of its own changes carry it.
    pub(super) own: u32,
    /// Each link's state as its last event gave it.
    pub(super) links: BTreeMap<u32, LinkState>,
}

/// What of a link matters to the policy: its name, whether it is up (the kernel flushes the
/// routes through a link that goes down: they are put back when it comes up), its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LinkState {
    pub(super) name: Option<String>,
    pub(super) up: bool,
    pub(super) group: Option<u32>,
}

impl Seen {
    /// Whether a link event says anything new. The kernel announces every change of a link,
    /// stronghost's own setting of its group and sysctls included, without saying who made it;
    /// those would cost a second run (and merge with the next event into a run over the host).
    pub(super) fn link_changed(&mut self, index: u32, state: LinkState, cfg: &Config) -> bool {
        let changed = match self.links.get(&index) {
            None => true,
            Some(old) => old.name != state.name || old.up != state.up || (old.group != state.group && state.group != Some(cfg.link_group)),
        };
        self.links.insert(index, state);
        changed
    }
}

pub(super) fn link_state(header: &netlink_packet_route::link::LinkHeader, attributes: &[LinkAttribute]) -> LinkState {
    use netlink_packet_route::link::LinkFlags;
    LinkState {
        name: ifname(attributes),
        up: header.flags.contains(LinkFlags::Up),
        group: attributes.iter().find_map(|a| if let LinkAttribute::Group(g) = a { Some(*g) } else { None }),
    }
}

pub(super) fn classify(msg: RouteNetlinkMessage, cfg: &Config, p: &mut Pending, seen: &mut Seen) {
    use RouteNetlinkMessage::*;
    match msg {
        // IPv6 addresses change state too (tentative → valid, deprecated): each is an event,
        // and a reconcile of a converged interface writes nothing.
        NewAddress(AddressMessage { header, .. }) | DelAddress(AddressMessage { header, .. })
            if matches!(header.family, AddressFamily::Inet | AddressFamily::Inet6) =>
        {
            p.ifindexes.insert(header.index);
        }
        NewLink(LinkMessage { header, attributes, .. }) => {
            // Renames and state changes; the name is re-read from the kernel at reconcile time.
            if !seen.link_changed(header.index, link_state(&header, &attributes), cfg) {
                return;
            }
            p.ifindexes.insert(header.index);
            if let Some(n) = ifname(&attributes) {
                p.links.insert(header.index, n);
            }
        }
        DelLink(LinkMessage { header, attributes, .. }) => {
            seen.links.remove(&header.index);
            p.unlinked.insert(header.index);
            if let Some(n) = ifname(&attributes) {
                p.gone.insert(n);
            }
        }
        NewRoute(r) => route_event(&r, false, cfg, p),
        DelRoute(r) => route_event(&r, true, cfg, p),
        DelRule(RuleMessage { attributes, .. }) => {
            let ours = attributes.iter().any(|a| matches!(a, RuleAttribute::Protocol(x) if u8::from(*x) == cfg.protocol));
            if ours && let Some(t) = attributes.iter().find_map(|a| if let RuleAttribute::Table(t) = a { Some(*t) } else { None }) {
                if cfg.in_table_range(t) {
                    p.tables.insert(t);
                } else {
                    p.resync = true; // the shared main-table rule
                }
            }
        }
        _ => {}
    }
}

pub(super) fn ifname(attributes: &[LinkAttribute]) -> Option<String> {
    attributes.iter().find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.clone()) } else { None })
}

pub(super) fn route_event(r: &RouteMessage, deleted: bool, cfg: &Config, p: &mut Pending) {
    let table = r
        .attributes
        .iter()
        .find_map(|a| if let RouteAttribute::Table(t) = a { Some(*t) } else { None })
        .unwrap_or(u32::from(r.header.table));
    if cfg.in_table_range(table) {
        // Our own additions need nothing; anything else in our tables (a flush, a foreign route) does.
        if deleted || u8::from(r.header.protocol) != cfg.protocol {
            p.tables.insert(table);
        }
    } else if table == crate::model::routing::RT_TABLE_MAIN
        && r.header.protocol == netlink_packet_route::route::RouteProtocol::Kernel
        && r.header.destination_prefix_length != 0
        && !has_gateway(r)
        && let Some(o) = r.attributes.iter().find_map(|a| if let RouteAttribute::Oif(o) = a { Some(*o) } else { None })
    {
        p.connected.insert(o);
        if deleted {
            p.disconnected.insert(o);
        }
        // IPv6 on-link prefixes are copied into the interface's own table too.
        if r.header.address_family == AddressFamily::Inet6 {
            p.ifindexes.insert(o);
        }
    } else if table == crate::model::routing::RT_TABLE_MAIN
        && (r.header.destination_prefix_length == 0 || (r.header.address_family == AddressFamily::Inet6 && !has_gateway(r)))
    {
        // A main default route through an interface is the gateway of interfaces without a lease
        // (and of every interface's IPv6); an IPv6 on-link prefix through it is copied to its table.
        if let Some(o) = r.attributes.iter().find_map(|a| if let RouteAttribute::Oif(o) = a { Some(*o) } else { None }) {
            p.ifindexes.insert(o);
        }
    }
}

pub(super) fn has_gateway(r: &RouteMessage) -> bool {
    r.attributes.iter().any(|a| matches!(a, RouteAttribute::Gateway(_)))
}

/// Classifies every event of one datagram into `p`. An event that cannot be read (a newer
/// kernel's attribute) does not hide the ones after it, and asks for a full sync: whatever it
/// was, that catches up with it. Events of the changes the watcher made itself (sent from its own
/// port, `own`) are already in its model: reacting to them would run every change twice.
pub(super) fn absorb(datagram: &[u8], cfg: &Config, p: &mut Pending, seen: &mut Seen) {
    for m in crate::netlink::transport::split(datagram) {
        if m.as_ref().is_ok_and(|m| seen.own != 0 && m.port == seen.own) {
            continue;
        }
        let decoded = m.and_then(|m| {
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(m.bytes)
                .map_err(|e| crate::netlink::NetlinkError::Malformed(format!("event of type {}: {e}", m.kind)))
        });
        match decoded {
            Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(msg), .. }) => classify(msg, cfg, p, seen),
            Ok(NetlinkMessage { payload: NetlinkPayload::Overrun(_), .. }) => p.resync = true,
            Ok(_) => {}
            Err(e) => {
                log::warn!("{e}; resynchronising every interface");
                p.resync = true;
            }
        }
    }
}

/// Reads everything queued on the socket into `p`. Returns false if the socket overran.
pub(super) fn drain(sub: &mut Subscription, cfg: &Config, p: &mut Pending, seen: &mut Seen) -> bool {
    match sub.drain_datagrams(|d| absorb(d, cfg, p, seen)) {
        Ok(()) => true,
        Err(e) => {
            if e.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) {
                log::warn!("netlink event buffer overran; resynchronising every interface");
            } else {
                log::error!("netlink: {e}");
            }
            // Events were lost: only a full sync is safe now.
            p.resync = true;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;

    fn event(msg: RouteNetlinkMessage) -> Vec<u8> {
        let mut m = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        m.finalize();
        let mut b = vec![0; m.buffer_len()];
        m.serialize(&mut b);
        b
    }

    fn new_address(index: u32) -> Vec<u8> {
        let mut a = AddressMessage::default();
        a.header.family = AddressFamily::Inet;
        a.header.index = index;
        event(RouteNetlinkMessage::NewAddress(a))
    }

    #[test]
    fn an_unreadable_event_resyncs_and_hides_nothing_after_it() {
        let cfg = Config::default();
        let mut datagram = new_address(3);
        // RTM_NEWADDR too short to hold its ifaddrmsg: well framed, undecodable.
        let mut bad = new_address(4);
        bad.truncate(16 + 4);
        bad[0..4].copy_from_slice(&20u32.to_ne_bytes());
        datagram.extend(bad);
        datagram.extend(new_address(5));
        let mut p = Pending::default();
        absorb(&datagram, &cfg, &mut p, &mut Seen::default());
        assert!(p.resync);
        assert_eq!(p.ifindexes.into_iter().collect::<Vec<_>>(), [3, 5]);
        // A length that does not fit ends the datagram, and resyncs too.
        let mut p = Pending::default();
        let mut broken = new_address(6);
        broken[0] = 0xff;
        absorb(&broken, &cfg, &mut p, &mut Seen::default());
        assert!(p.resync && p.ifindexes.is_empty());
    }

    #[test]
    fn a_link_event_counts_when_the_name_the_state_or_a_foreign_group_changes() {
        let cfg = Config::default();
        let st = |name: &str, up: bool, group: u32| LinkState { name: Some(name.into()), up, group: Some(group) };
        let mut seen = Seen::default();
        assert!(seen.link_changed(3, st("eth0", true, 0), &cfg), "a link not seen before");
        assert!(!seen.link_changed(3, st("eth0", true, 0), &cfg), "nothing changed");
        assert!(!seen.link_changed(3, st("eth0", true, cfg.link_group), &cfg), "stronghost's own group");
        assert!(seen.link_changed(3, st("eth0", false, cfg.link_group), &cfg), "down");
        assert!(seen.link_changed(3, st("eth0", true, cfg.link_group), &cfg), "up");
        assert!(seen.link_changed(3, st("lan0", true, cfg.link_group), &cfg), "renamed");
        assert!(seen.link_changed(3, st("lan0", true, 7), &cfg), "another tool's group");
    }

    #[test]
    fn the_watchers_own_changes_are_not_events() {
        let from = |port: u32, index: u32| {
            let mut b = new_address(index);
            b[12..16].copy_from_slice(&port.to_ne_bytes());
            b
        };
        // The kernel's own (port 0), another process's, the watcher's.
        let datagram = [from(0, 3), from(4242, 4), from(77, 5)].concat();
        let mut p = Pending::default();
        absorb(&datagram, &Config::default(), &mut p, &mut Seen { own: 77, ..Default::default() });
        assert_eq!(p.ifindexes.into_iter().collect::<Vec<_>>(), [3, 4]);
    }
}
