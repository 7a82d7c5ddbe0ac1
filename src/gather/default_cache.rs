//! Main's IPv4 default routes as a long-running process follows them, for a run of one interface
//! whose gateway must come from another interface on its network (an address with no lease, no
//! configured gateway and no default route of its own in main). Without it that run reads all of
//! main, and on a host of thousands of interfaces main holds thousands of routes: most of the
//! watcher's work for such an event.
//!
//! Exact, not approximate, and by reading, not by replaying: a notification only marks the
//! devices whose default routes may have changed, and those are read again (the kernel filters
//! a dump by device) before the routes are used. Replaying would not do: the kernel removes
//! routes without a notification of their own — every route through a device that goes down or
//! loses its last address, one replaced by a route through another device, and (on some
//! kernels) every route whose preferred source was a deleted address; the link, address or
//! replacing route's event is all there is. A next-hop object changing, an overrun or anything
//! unreadable, and all of main is read again.

use crate::model::kernel::KernelRoute;
use crate::model::routing::RT_TABLE_MAIN;
use crate::netlink::abi::*;
use crate::netlink::route::Netlink;
use crate::netlink::subscription::Subscription;
use crate::netlink::transport::{NetlinkError, attributes};
use netlink_packet_route::route::RouteType;
use nix::errno::Errno;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

// rtnetlink groups and message types (linux/rtnetlink.h).
const RTNLGRP_NEXTHOP: u32 = 32;
const RTM_DELLINK: u16 = 17;
const RTM_DELADDR: u16 = 21;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEXTHOP: u16 = 104;
const RTM_DELNEXTHOP: u16 = 105;
const NLM_F_REPLACE: u16 = 0x100;

pub struct DefaultCache {
    sub: Subscription,
    /// Main's IPv4 default routes, as last read.
    routes: Vec<KernelRoute>,
    /// False until all of main was read, and after a notification that cannot be followed.
    valid: bool,
    /// Devices whose default routes may have changed since they were read.
    stale: BTreeSet<u32>,
    /// Reads of all of main (the first, and one after each loss).
    pub dumps: u32,
}

/// More devices than this to read again and all of main is read instead: the kernel walks every
/// route of main to answer a read filtered by device, and on a host of thousands of interfaces
/// one read of everything costs about four of those.
const MAX_STALE: usize = 4;

/// Whether `r` goes through device `index` (a multipath route if one of its hops does).
fn uses(r: &KernelRoute, index: u32) -> bool {
    r.oif == Some(index) || r.nexthops.iter().any(|(i, _)| *i == index)
}

fn is_default_v4(r: &KernelRoute) -> bool {
    r.table == RT_TABLE_MAIN && r.dst.is_default() && !r.dst.is_v6()
}

impl DefaultCache {
    pub fn open() -> std::io::Result<DefaultCache> {
        // Every IPv4 route notification comes here (a sync of thousands of interfaces writes
        // three routes each between two reads), but only main's default routes and the events
        // that remove routes silently count.
        let sub = Subscription::open(&[RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_NEXTHOP], 16 << 20)?;
        Ok(DefaultCache { sub, routes: vec![], valid: false, stale: BTreeSet::new(), dumps: 0 })
    }

    /// What a run for interface `oif` needs of main: its IPv4 default routes (all its routes,
    /// `every_route_via`: the interface has IPv6 addresses, whose routers and on-link prefixes
    /// main holds), and of the default routes through other devices what a gateway borrowed from
    /// another interface is chosen by (`best_per_gateway`). All of main when the cache cannot tell.
    pub fn main_for(&mut self, nl: &mut Netlink, oif: u32, every_route_via: bool) -> Result<Vec<KernelRoute>, NetlinkError> {
        // Before reading: what changes after this read is marked for the next one.
        self.catch_up();
        if !self.valid || self.stale.len() > MAX_STALE {
            return self.reload(nl);
        }
        let mut out = vec![];
        if every_route_via {
            out = match nl.routes_via(RT_TABLE_MAIN, Some(oif)) {
                // The link went away since it was read: all of main, then.
                Err(e) if e.errno() == Some(Errno::ENODEV) => return self.reload(nl),
                other => other?,
            };
            self.replace(oif, &out);
            self.stale.remove(&oif);
        }
        while let Some(&index) = self.stale.first() {
            let fresh = match nl.routes_via(RT_TABLE_MAIN, Some(index)) {
                Err(e) if e.errno() == Some(Errno::ENODEV) => vec![],
                Err(e) => {
                    self.valid = false;
                    return Err(e);
                }
                Ok(r) => r,
            };
            self.replace(index, &fresh);
            self.stale.remove(&index);
        }
        if !every_route_via {
            out.extend(self.routes.iter().filter(|r| uses(r, oif)).cloned());
        }
        out.extend(best_per_gateway(self.routes.iter().filter(|r| !uses(r, oif))));
        Ok(out)
    }

    #[cfg(test)]
    pub fn held(&self) -> &[KernelRoute] {
        &self.routes
    }

    /// All of main, read now; the cache is its default routes from then on.
    fn reload(&mut self, nl: &mut Netlink) -> Result<Vec<KernelRoute>, NetlinkError> {
        let all = nl.routes(RT_TABLE_MAIN)?;
        self.routes = all.iter().filter(|r| is_default_v4(r)).cloned().collect();
        self.stale.clear();
        self.valid = true;
        self.dumps += 1;
        Ok(all)
    }

    /// The default routes through `index` are those of `fresh`, a read of main through it.
    fn replace(&mut self, index: u32, fresh: &[KernelRoute]) {
        self.routes.retain(|r| !uses(r, index));
        // A multipath route read through another of its hops is already there.
        for r in fresh.iter().filter(|r| is_default_v4(r) && uses(r, index)) {
            if !self.routes.contains(r) {
                self.routes.push(r.clone());
            }
        }
    }

    /// Marks what queued notifications may have changed; a loss invalidates everything.
    fn catch_up(&mut self) {
        let mut changed = Changed::default();
        let complete = self.sub.drain(|m| changed.note(m.kind, m.flags, m.payload()));
        if !complete || changed.everything {
            self.valid = false;
            return;
        }
        for r in &self.routes {
            // A replaced route is gone without a notification of its own; a deleted source
            // address takes every route that preferred it.
            let replaced = changed.metrics.contains(&r.metric);
            let sourced = r.src.is_some_and(|s| changed.sources.contains(&s));
            if replaced || sourced {
                self.stale.extend(r.oif.iter().chain(r.nexthops.iter().map(|(i, _)| i)));
            }
        }
        self.stale.extend(changed.devices);
    }
}

/// Of main's IPv4 default routes, for each gateway the one with the lowest metric: all that
/// choosing another interface's gateway looks at (the lowest metric first, among the gateways on
/// the interface's networks), without the thousands of routes through the same router that a
/// host of thousands of interfaces has.
fn best_per_gateway<'a>(routes: impl Iterator<Item = &'a KernelRoute>) -> Vec<KernelRoute> {
    let mut best: BTreeMap<IpAddr, &KernelRoute> = BTreeMap::new();
    for r in routes.filter(|r| r.kind == RouteType::Unicast) {
        for g in r.gateway.iter().chain(r.nexthops.iter().filter_map(|(_, g)| g.as_ref())) {
            let b = best.entry(*g).or_insert(r);
            if r.metric < b.metric {
                *b = r;
            }
        }
    }
    let mut out: Vec<KernelRoute> = vec![];
    for r in best.into_values() {
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    out
}

/// What a batch of notifications may have changed in main's IPv4 default routes.
#[derive(Default)]
struct Changed {
    devices: BTreeSet<u32>,
    /// Metrics of default routes replaced in place (another device's route may be gone).
    metrics: BTreeSet<u32>,
    /// IPv4 addresses deleted.
    sources: BTreeSet<IpAddr>,
    everything: bool,
}

impl Changed {
    fn note(&mut self, kind: u16, flags: u16, p: &[u8]) {
        let index = |p: &[u8]| p.get(4..8).map(|b| u32::from_ne_bytes(b.try_into().unwrap()));
        match kind {
            // struct ifinfomsg: family, pad, type, index. Down, up, renamed, moved under a
            // master, gone: routes through it may have been removed.
            RTM_NEWLINK | RTM_DELLINK => match index(p) {
                Some(i) => {
                    self.devices.insert(i);
                }
                None => self.everything = true,
            },
            // struct ifaddrmsg: family, prefix length, flags, scope, index.
            RTM_DELADDR if p.first() == Some(&AF_INET) => {
                let Some(i) = index(p) else {
                    self.everything = true;
                    return;
                };
                self.devices.insert(i);
                for (t, v) in attributes(p.get(8..).unwrap_or_default()) {
                    if let (IFA_LOCAL, Ok(a)) = (t, <[u8; 4]>::try_from(v)) {
                        self.sources.insert(IpAddr::from(a));
                    }
                }
            }
            // struct rtmsg: family, destination length, source length, tos, table…
            RTM_NEWROUTE | RTM_DELROUTE if p.len() >= 12 && p[0] == AF_INET && p[1] == 0 && u32::from(p[4]) == RT_TABLE_MAIN => {
                match KernelRoute::parse(p) {
                    Some(r) if r.oif.is_some() || !r.nexthops.is_empty() => {
                        self.devices.extend(r.oif.iter().chain(r.nexthops.iter().map(|(i, _)| i)));
                        if kind == RTM_NEWROUTE && flags & NLM_F_REPLACE != 0 {
                            self.metrics.insert(r.metric);
                        }
                    }
                    // Through no device (a blackhole, a next-hop object): not one a device's read
                    // finds again.
                    _ => self.everything = true,
                }
            }
            RTM_NEWNEXTHOP | RTM_DELNEXTHOP => self.everything = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(v: Vec<KernelRoute>) -> Vec<String> {
        let mut s: Vec<String> = v.iter().map(|r| format!("{r:?}")).collect();
        s.sort();
        s
    }

    fn ip(args: &str) {
        let out = std::process::Command::new("ip").args(args.split_whitespace()).output().unwrap();
        assert!(out.status.success(), "ip {args}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// For each gateway its lowest-metric unicast default route, each route once: what
    /// `Kernel::default_gateways` orders by.
    #[test]
    fn each_gateway_keeps_its_best_route() {
        let route = |oif: u32, g: [u8; 4], metric: u32| KernelRoute {
            table: RT_TABLE_MAIN,
            protocol: 3,
            kind: RouteType::Unicast,
            scope: netlink_packet_route::route::RouteScope::Universe,
            dst: crate::model::net::IpNet::default_for(false),
            oif: Some(oif),
            gateway: Some(IpAddr::from(g)),
            src: None,
            metric,
            onlink: false,
            exotic: false,
            nexthops: vec![],
        };
        let a = [192, 0, 2, 1];
        let b = [192, 0, 2, 2];
        let mut multipath = route(7, a, 5);
        (multipath.oif, multipath.gateway, multipath.nexthops) = (None, None, vec![(7, Some(IpAddr::from(a))), (8, Some(IpAddr::from(b)))]);
        let mut blackhole = route(9, b, 1);
        blackhole.kind = RouteType::BlackHole;
        let routes = [route(1, a, 20), route(2, a, 10), route(3, b, 30), multipath.clone(), route(4, b, 3), blackhole];
        let best = best_per_gateway(routes.iter());
        assert_eq!(sorted(best), sorted(vec![multipath, route(4, b, 3)]));
    }

    /// The cache's default routes equal a read of all of main after each way the kernel changes
    /// them, the silent ones included: a device down, its last address deleted, a preferred
    /// source address deleted on another device, a route replaced by one through another device,
    /// a device deleted. A multipath route is there once, whichever of its devices was read.
    #[test]
    fn the_cache_follows_mains_default_routes() {
        crate::netlink::testns::in_new_netns(|| {
            for k in 0..4 {
                ip(&format!("link add d{k} type veth peer name d{k}p"));
                ip(&format!("link set d{k}p up"));
                ip(&format!("link set d{k} up"));
                ip(&format!("addr add 192.0.2.{}/24 dev d{k}", 10 + k));
            }
            let mut cached = Netlink::open().unwrap();
            let mut cache = DefaultCache::open().unwrap();
            let mut other = Netlink::open().unwrap();
            let d0 = other.link("d0").unwrap().unwrap().index;
            let check = |cache: &mut DefaultCache, cached: &mut Netlink, other: &mut Netlink, when: &str| {
                let main = other.routes(RT_TABLE_MAIN).unwrap();
                let via = |r: &&KernelRoute| uses(r, d0);
                let best = best_per_gateway(main.iter().filter(|r| is_default_v4(r) && !uses(r, d0)));
                // Without IPv6 on the interface: its default routes, and the best of the others.
                let want: Vec<KernelRoute> = main.iter().filter(via).filter(|r| is_default_v4(r)).cloned().chain(best.clone()).collect();
                assert_eq!(sorted(cache.main_for(cached, d0, false).unwrap()), sorted(want), "{when}");
                assert_eq!(
                    sorted(cache.main_for(cached, 0, false).map(|_| cache.held().to_vec()).unwrap()),
                    sorted(main.iter().filter(|r| is_default_v4(r)).cloned().collect()),
                    "{when}: the cache"
                );
                // With IPv6: every route through it.
                let want: Vec<KernelRoute> = main.iter().filter(via).cloned().chain(best).collect();
                assert_eq!(sorted(cache.main_for(cached, d0, true).unwrap()), sorted(want), "{when}, every route through it");
            };
            // The first read is all of main.
            assert_eq!(sorted(cache.main_for(&mut cached, d0, false).unwrap()), sorted(other.routes(RT_TABLE_MAIN).unwrap()));
            check(&mut cache, &mut cached, &mut other, "no default route");
            ip("route add default via 192.0.2.1 dev d1 metric 101");
            ip("route add default via 192.0.2.2 dev d2 metric 102");
            ip("route add default via 192.0.2.3 dev d3 metric 103 src 192.0.2.10");
            ip("route add default metric 105 nexthop via 192.0.2.4 dev d1 nexthop via 192.0.2.5 dev d2");
            check(&mut cache, &mut cached, &mut other, "routes added");
            ip("link set d1 down");
            check(&mut cache, &mut cached, &mut other, "a device down");
            ip("addr flush dev d2");
            check(&mut cache, &mut cached, &mut other, "a device's last address deleted");
            ip("addr del 192.0.2.10/24 dev d0");
            check(&mut cache, &mut cached, &mut other, "another device's address, the preferred source, deleted");
            ip("link set d1 up");
            ip("addr add 192.0.2.10/24 dev d0");
            ip("addr add 192.0.2.12/24 dev d2");
            ip("route add default via 192.0.2.6 dev d1 metric 106");
            ip("route add default via 192.0.2.9 dev d0 metric 100");
            check(&mut cache, &mut cached, &mut other, "a route through d1");
            ip("route replace default via 192.0.2.6 dev d2 metric 106");
            check(&mut cache, &mut cached, &mut other, "that route replaced by one through d2");
            ip("route add default metric 107 nexthop via 192.0.2.7 dev d2 nexthop via 192.0.2.8 dev d3");
            check(&mut cache, &mut cached, &mut other, "a multipath route");
            ip("link del d3");
            check(&mut cache, &mut cached, &mut other, "a device deleted");
            assert_eq!(cache.dumps, 1, "all of main was read again");
        });
    }
}
