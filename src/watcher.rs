//! `stronghost watch`: follows rtnetlink address, link, route and rule events and reconciles the
//! interfaces they touch. This is what keeps the policy in place when no hook runs: an address
//! added by hand or by a stack without hooks, an address re-added after a reconfigure (which makes
//! the kernel flush every route with that source, ours included), an interface renamed or removed.
//!
//! It follows the receive filter's nftables table the same way (nfnetlink notifications): a
//! firewall reload (`flush ruleset`), `nft delete table inet stronghost` or an edit is repaired
//! by a full sync within milliseconds, not at the next lease.
//!
//! Bursts are debounced; an overrun of the socket buffer triggers a full sync; an interface (or
//! the table) that keeps being undone by another tool is paused instead of fought in a loop.

use crate::config::Config;
use crate::handoff;
use crate::netlink::abi::*;
use crate::netlink::nftables::{Heard, Monitor};
use crate::reconcile::{self, ClientEvent, Engine, Target, reconcile};
use crate::state::Queued;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

// rtnetlink multicast groups (linux/rtnetlink.h, enum rtnetlink_groups).
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;

/// Quiet time that ends a burst, and the longest a burst may delay a reconcile.
const QUIET: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(50);
/// Re-adding the same object more often than this within WINDOW means someone undoes our work.
const FIGHT_LIMIT: usize = 5;
const WINDOW: Duration = Duration::from_secs(10);
const PAUSE: Duration = Duration::from_secs(60);
/// From this many interfaces in one burst, one run over the whole host instead of one run each
/// (which reads only its interface: on a host of thousands, a few of those cost less than one read
/// of everything).
const BATCH_FROM: usize = 4;
/// How long a DHCP client may take from adding an address to running its hook before the
/// watcher calls the interface's gateway missing (dhclient-script takes milliseconds,
/// NetworkManager's dispatcher can take seconds when D-Bus activates it on a loaded host).
const GATEWAY_GRACE: Duration = Duration::from_secs(10);

/// What a burst of events asks for.
#[derive(Debug, Default)]
struct Pending {
    ifindexes: BTreeSet<u32>,
    /// Names of links that went away (their index no longer resolves).
    gone: BTreeSet<String>,
    tables: BTreeSet<u32>,
    /// Link names as link events carry them, by index: a rename is a name change of an index.
    links: BTreeMap<u32, String>,
    /// Indexes of links that were deleted.
    unlinked: BTreeSet<u32>,
    /// Devices of main-table routes the kernel made for an address (a network comes or goes):
    /// through an unmanaged interface, that changes the shared `to` rules.
    connected: BTreeSet<u32>,
    /// Of those, the devices whose network went (not only came).
    disconnected: BTreeSet<u32>,
    /// Another process changed the receive filter's table: who (or that notifications were lost).
    filter: Option<String>,
    resync: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.ifindexes.is_empty()
            && self.gone.is_empty()
            && self.tables.is_empty()
            && self.connected.is_empty()
            && self.filter.is_none()
            && !self.resync
    }
}

/// Takes what the nftables monitor heard into `p`.
fn drain_filter(monitor: &mut Option<Monitor>, p: &mut Pending) {
    match monitor.as_mut().map(Monitor::drain) {
        Some(Heard::Changed(by)) => p.filter = Some(by),
        Some(Heard::Lost) => p.filter = Some("someone (nftables notifications were lost)".into()),
        Some(Heard::Nothing) | None => {}
    }
}

/// Repairs of the receive filter's table in WINDOW beyond which another tool is taken to fight
/// it. Higher than for rules: an admin reloading a firewall a few times in a row is no fight, a
/// tool deleting the table in a loop makes hundreds of changes in that time.
const FILTER_FIGHT_LIMIT: usize = 20;

/// Repairs of the receive filter's table, to notice a tool that keeps undoing it (a firewall
/// manager reloading in a loop): repaired up to FILTER_FIGHT_LIMIT times in WINDOW, then left
/// alone for PAUSE — `check` reports the table missing meanwhile — and repaired once the pause
/// ends.
#[derive(Default)]
struct FilterRepairs {
    at: Vec<Instant>,
    paused_until: Option<Instant>,
    /// A change heard during the pause, to repair when it ends.
    owed: bool,
}

impl FilterRepairs {
    /// Whether a repair may run now; if not, it is owed for when the pause ends.
    fn may_repair(&mut self, now: Instant) -> bool {
        match self.paused_until {
            Some(t) if now < t => {
                self.owed = true;
                false
            }
            _ => {
                self.paused_until = None;
                true
            }
        }
    }

    /// Records a repair that changed something; true if that starts a pause.
    fn repaired(&mut self, now: Instant) -> bool {
        self.at.retain(|t| now.duration_since(*t) < WINDOW);
        self.at.push(now);
        if self.at.len() > FILTER_FIGHT_LIMIT {
            self.at.clear();
            self.paused_until = Some(now + PAUSE);
            return true;
        }
        false
    }

    /// When a pause with a repair owed ends.
    fn due(&self) -> Option<Instant> {
        self.paused_until.filter(|_| self.owed)
    }
}

fn subscribe() -> std::io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind(&SocketAddr::new(0, 0))?;
    for g in [
        RTNLGRP_LINK,
        RTNLGRP_IPV4_IFADDR,
        RTNLGRP_IPV4_ROUTE,
        RTNLGRP_IPV4_RULE,
        RTNLGRP_IPV6_IFADDR,
        RTNLGRP_IPV6_ROUTE,
        RTNLGRP_IPV6_RULE,
    ] {
        s.add_membership(g)?;
    }
    crate::netlink::transport::set_receive_buffer(&s, 8 << 20)?;
    s.set_non_blocking(true)?;
    Ok(s)
}

/// What the watcher knows of the events' sources across bursts.
#[derive(Debug, Default)]
struct Seen {
    /// The watcher's own netlink port: notifications of its own changes carry it.
    own: u32,
    /// Each link's state as its last event gave it.
    links: BTreeMap<u32, LinkState>,
}

/// What of a link matters to the policy: its name, whether it is up (the kernel flushes the
/// routes through a link that goes down: they are put back when it comes up), its group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LinkState {
    name: Option<String>,
    up: bool,
    group: Option<u32>,
}

impl Seen {
    /// Whether a link event says anything new. The kernel announces every change of a link,
    /// stronghost's own setting of its group and sysctls included, without saying who made it;
    /// those would cost a second run (and merge with the next event into a run over the host).
    fn link_changed(&mut self, index: u32, state: LinkState, cfg: &Config) -> bool {
        let changed = match self.links.get(&index) {
            None => true,
            Some(old) => old.name != state.name || old.up != state.up || (old.group != state.group && state.group != Some(cfg.link_group)),
        };
        self.links.insert(index, state);
        changed
    }
}

fn link_state(header: &netlink_packet_route::link::LinkHeader, attributes: &[LinkAttribute]) -> LinkState {
    use netlink_packet_route::link::LinkFlags;
    LinkState {
        name: ifname(attributes),
        up: header.flags.contains(LinkFlags::Up),
        group: attributes.iter().find_map(|a| if let LinkAttribute::Group(g) = a { Some(*g) } else { None }),
    }
}

fn classify(msg: RouteNetlinkMessage, cfg: &Config, p: &mut Pending, seen: &mut Seen) {
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

fn ifname(attributes: &[LinkAttribute]) -> Option<String> {
    attributes.iter().find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.clone()) } else { None })
}

fn route_event(r: &RouteMessage, deleted: bool, cfg: &Config, p: &mut Pending) {
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

fn has_gateway(r: &RouteMessage) -> bool {
    r.attributes.iter().any(|a| matches!(a, RouteAttribute::Gateway(_)))
}

/// Classifies every event of one datagram into `p`. An event that cannot be read (a newer
/// kernel's attribute) does not hide the ones after it, and asks for a full sync: whatever it
/// was, that catches up with it. Events of the changes the watcher made itself (sent from its own
/// port, `own`) are already in its model: reacting to them would run every change twice.
fn absorb(datagram: &[u8], cfg: &Config, p: &mut Pending, seen: &mut Seen) {
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
fn drain(sock: &Socket, cfg: &Config, p: &mut Pending, buf: &mut Vec<u8>, seen: &mut Seen) -> bool {
    loop {
        buf.clear();
        match sock.recv(buf, 0) {
            Ok(0) => return true,
            Ok(_) => {
                absorb(buf, cfg, p, seen);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => {
                // ENOBUFS: events were lost; only a full sync is safe now.
                log::warn!("netlink event buffer overran; resynchronising every interface");
                p.resync = true;
                return false;
            }
            Err(e) => {
                log::error!("netlink: {e}");
                p.resync = true;
                return false;
            }
        }
    }
}

/// Notices another tool undoing stronghost's work: a rule stronghost added, and never removed
/// itself, has to be added again. Made again and again, that is a fight: pause instead of looping.
/// Only rules count: the kernel itself flushes routes (link down, an address re-added), never rules.
struct Fights {
    /// (interface, object) → when stronghost had to add it again although it had never removed it.
    present: BTreeSet<(String, String)>,
    undone: BTreeMap<(String, String), Vec<Instant>>,
    paused: BTreeMap<String, Instant>,
}

impl Fights {
    /// Records what a reconcile of `name` added and removed; true if `name` is now paused.
    fn note(&mut self, name: &str, added: &[String], removed: &[String]) -> bool {
        let now = Instant::now();
        for r in removed {
            self.present.remove(&(name.to_string(), r.clone()));
        }
        for a in added {
            let key = (name.to_string(), a.clone());
            if !self.present.insert(key.clone()) {
                let v = self.undone.entry(key).or_default();
                v.retain(|t| now.duration_since(*t) < WINDOW);
                v.push(now);
                if v.len() > FIGHT_LIMIT {
                    log::warn!(
                        "{name}: another tool keeps removing `{a}` ({} times in {}s); pausing {name} for {}s. \
                         For systemd-networkd set ManageForeignRoutingPolicyRules=no and ManageForeignRoutes=no.",
                        v.len(),
                        WINDOW.as_secs(),
                        PAUSE.as_secs()
                    );
                    self.paused.insert(name.to_string(), now + PAUSE);
                    self.undone.retain(|(n, _), _| n != name);
                    return true;
                }
            }
        }
        false
    }

    fn is_paused(&mut self, name: &str) -> bool {
        match self.paused.get(name) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                self.paused.remove(name);
                false
            }
            None => false,
        }
    }
}

pub fn run(cfg: &Config) -> i32 {
    // SIGTERM (systemctl stop) and SIGINT end the watcher between runs, never in the middle of
    // one, and let it remove its socket: a socket left behind means one that died (`check`).
    let stop = match stop_signals() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot take SIGTERM and SIGINT: {e}");
            return 1;
        }
    };
    let sock = match subscribe() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot subscribe to rtnetlink events: {e} (stronghost watch must run as root)");
            return 1;
        }
    };
    // Subscribed before the first sync too: a reload from then on is heard.
    let mut monitor = if cfg.receive_filter {
        Monitor::open(crate::model::table::TABLE)
            .map_err(|e| {
                log::warn!(
                    "cannot follow nftables notifications ({e}): a firewall reload that removes the receive filter is \
                     repaired only by the next event or `stronghost sync`"
                )
            })
            .ok()
    } else {
        None
    };
    let mut repairs = FilterRepairs::default();
    let mut engine = match Engine::new(cfg.clone()) {
        Ok(e) => e,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    // Which rules each run added and removed (`Fights` notices another tool undoing them); rules
    // and main's default routes from notifications instead of a dump per run.
    for missed in engine.become_watcher() {
        log::warn!("{missed}");
    }
    // The links as they are (read after subscribing): the first event of each is then judged
    // against its state, not taken as news.
    let links = engine.reads().links().unwrap_or_default();
    let mut seen = Seen {
        own: engine.reads().port(),
        links: links.iter().map(|l| (l.index, LinkState { name: Some(l.name.clone()), up: l.up, group: Some(l.group) })).collect(),
    };
    // Interfaces to look at again for a missing gateway, and when.
    let mut second_looks: BTreeMap<String, Instant> = BTreeMap::new();
    // Subscribed first, then synced: nothing that happens in between is missed.
    if let Err(e) = reconcile(&mut engine, &Target::Sync, false, ClientEvent::default()) {
        log::error!("initial sync: {e}");
    }
    // Hooks hand their events over from now on (handoff.rs).
    let listener = match handoff::Listener::bind() {
        Ok(Some(l)) => Some(l),
        Ok(None) => {
            log::warn!("another stronghost watch answers the hooks; this one only follows kernel events");
            None
        }
        Err(e) => {
            log::warn!("cannot listen for hooks ({e}); they will apply their events themselves");
            None
        }
    };
    log::info!("watching address, link, route and rule events{}", if monitor.is_some() { " and the nft table" } else { "" });
    let mut fights = Fights { present: BTreeSet::new(), undone: BTreeMap::new(), paused: BTreeMap::new() };
    let mut buf = Vec::with_capacity(1 << 16);
    let mut names: BTreeMap<u32, String> = links.into_iter().map(|l| (l.index, l.name)).collect();
    // When to try the hooks' queue again: the lock was held for longer than they wait.
    let mut retry: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if retry.is_some_and(|t| t <= now) {
            serve(&mut engine, vec![], &mut retry);
        }
        for name in engine.take_gateway_later() {
            second_looks.entry(name).or_insert(now + GATEWAY_GRACE);
        }
        let due: Vec<String> = second_looks.iter().filter(|(_, t)| **t <= now).map(|(n, _)| n.clone()).collect();
        for name in due {
            second_looks.remove(&name);
            reconcile::warn_if_still_gatewayless(&mut engine, &name);
        }
        let mut p = Pending::default();
        if repairs.due().is_some_and(|t| t <= now) {
            repairs.owed = false;
            p.filter = Some("another tool, while repairs were paused".into());
        }
        let timeout = match second_looks.values().chain(&retry).chain(&repairs.due()).min() {
            Some(t) => PollTimeout::try_from(t.saturating_duration_since(now) + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let mut hooks = Vec::new();
        let timeout = if p.filter.is_some() { PollTimeout::ZERO } else { timeout };
        match wait(&sock, listener.as_ref(), monitor.as_ref(), &stop, timeout) {
            Ok(r) if r.stop => {
                log::info!("stopping");
                return 0;
            }
            Ok(Ready { events: false, hook: false, nft: false, .. }) if p.filter.is_none() => continue,
            Ok(Ready { events, hook, nft, .. }) => {
                if events {
                    drain(&sock, cfg, &mut p, &mut buf, &mut seen);
                }
                if nft {
                    drain_filter(&mut monitor, &mut p);
                }
                if hook {
                    hooks.extend(listener.iter().flat_map(|l| l.accept_all()));
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("poll: {e}");
                return 1;
            }
        }
        // Debounce: take what else arrives until the burst goes quiet, or a hook asks (its client
        // is done changing the interface: its events are in).
        let start = Instant::now();
        while hooks.is_empty() {
            let left = MAX_DELAY.saturating_sub(start.elapsed()).min(QUIET);
            if left.is_zero() {
                break;
            }
            match wait(&sock, listener.as_ref(), monitor.as_ref(), &stop, PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO)) {
                // A stop waits for the next round: what arrived so far is handled first.
                Ok(Ready { events: false, hook: false, nft: false, .. }) | Ok(Ready { stop: true, .. }) | Err(_) => break,
                Ok(Ready { events, hook, nft, .. }) => {
                    if events {
                        drain(&sock, cfg, &mut p, &mut buf, &mut seen);
                    }
                    if nft {
                        drain_filter(&mut monitor, &mut p);
                    }
                    if hook {
                        hooks.extend(listener.iter().flat_map(|l| l.accept_all()));
                    }
                }
            }
        }
        if !hooks.is_empty() {
            // Whatever else the kernel said meanwhile goes into the same decisions.
            drain(&sock, cfg, &mut p, &mut buf, &mut seen);
            drain_filter(&mut monitor, &mut p);
        }
        // The hooks' events first: their runs read the kernel after these events too, and carry
        // the lease; an interface one of them applied needs no second run for the events.
        let served = serve(&mut engine, hooks, &mut retry);
        if p.is_empty() {
            continue;
        }
        // A managed interface renamed: its record, lease and table follow it (a full sync, which
        // matches records to interfaces by index; renames are rare).
        let renamed: Vec<String> = p.links.iter().filter_map(|(i, n)| names.insert(*i, n.clone()).filter(|old| old != n)).collect();
        for i in &p.unlinked {
            names.remove(i);
        }
        if !renamed.is_empty() && engine.records().names().iter().any(|r| renamed.contains(r)) {
            p.resync = true;
        }
        // A full resync covers the table too.
        if let Some(by) = p.filter.take().filter(|_| !p.resync) {
            repair_filter(&mut engine, &by, &mut repairs);
        }
        if !p.is_empty() {
            handle(&mut engine, cfg, p, &mut fights, &served, &names);
        }
    }
}

/// Another process changed the receive filter's table (`by` says who): a full sync puts back the
/// whole host's table — every member, chain and rule, counters kept where nft can merge — unless
/// repairs are paused.
fn repair_filter(engine: &mut Engine, by: &str, repairs: &mut FilterRepairs) {
    let now = Instant::now();
    if !repairs.may_repair(now) {
        log::debug!("nft table inet {} changed by {by}; repairs are paused", crate::model::table::TABLE);
        return;
    }
    match reconcile(engine, &Target::Sync, false, ClientEvent::default()) {
        Ok(done) if done.changes > 0 => {
            log::warn!("nft table inet {} was changed by {by}: repaired ({} change(s))", crate::model::table::TABLE, done.changes);
            if repairs.repaired(now) {
                log::warn!(
                    "another tool keeps changing nft table inet {} ({} repairs in {} s); leaving it alone for {} s \
                     (`stronghost check` reports the host weak meanwhile). A firewall that flushes the whole ruleset \
                     on reload: keep its reloads rare, or exclude the table from its flush",
                    crate::model::table::TABLE,
                    FILTER_FIGHT_LIMIT + 1,
                    WINDOW.as_secs(),
                    PAUSE.as_secs()
                );
            }
        }
        Ok(_) => log::debug!("nft table inet {} changed by {by}: nothing to repair", crate::model::table::TABLE),
        Err(e) => log::error!("repairing nft table inet {} after a change by {by}: {e}", crate::model::table::TABLE),
    }
}

/// What woke the watcher.
#[derive(Default)]
struct Ready {
    /// Kernel events.
    events: bool,
    /// A hook handing its event over (handoff.rs).
    hook: bool,
    /// SIGTERM or SIGINT.
    stop: bool,
    /// nftables notifications.
    nft: bool,
}

/// Blocks SIGTERM and SIGINT (in every thread started after) and takes them from a descriptor.
fn stop_signals() -> nix::Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

fn wait(
    sock: &Socket,
    listener: Option<&handoff::Listener>,
    monitor: Option<&Monitor>,
    stop: &SignalFd,
    timeout: PollTimeout,
) -> nix::Result<Ready> {
    let mut fds = vec![PollFd::new(sock.as_fd(), PollFlags::POLLIN), PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
    let hook_at = listener.map(|l| {
        fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        fds.len() - 1
    });
    let nft_at = monitor.map(|m| {
        fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        fds.len() - 1
    });
    if poll(&mut fds, timeout)? == 0 {
        return Ok(Ready::default());
    }
    let ready = |i: Option<usize>| i.is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty()));
    Ok(Ready { events: ready(Some(0)), stop: ready(Some(1)), hook: ready(hook_at), nft: ready(nft_at) })
}

/// How soon the watcher tries again for a queue the lock kept it from.
const QUEUE_RETRY: Duration = Duration::from_secs(1);
/// How soon it tries again for events kept after the host's storage failed (full, read-only):
/// each try that fails logs, so not every second.
const LOCAL_RETRY: Duration = Duration::from_secs(5);

/// Applies the events the waiting hooks queued (or, `retry` due, that the lock kept waiting) and
/// tells them how it went. The interfaces applied.
fn serve(engine: &mut Engine, hooks: Vec<std::os::unix::net::UnixStream>, retry: &mut Option<Instant>) -> BTreeSet<String> {
    if hooks.is_empty() && !retry.is_some_and(|t| t <= Instant::now()) {
        return BTreeSet::new();
    }
    let (result, applied) = reconcile::apply_queue(engine);
    // A stronghost run holding the lock drains the queue before letting go; a holder that is
    // something else, or stuck, does not: try again until the queue is ours. Events kept after a
    // failure of the host's storage (a full disk) are tried again too, less often.
    *retry = match &result {
        Err(crate::error::Error::Busy { .. }) => Some(Instant::now() + QUEUE_RETRY),
        Err(e) if e.local() => Some(Instant::now() + LOCAL_RETRY),
        _ => None,
    };
    let answer = match result {
        Ok(n) => handoff::Answer::Applied(n),
        Err(e @ crate::error::Error::Busy { .. }) => handoff::Answer::Queued(e.to_string()),
        Err(e) => handoff::Answer::Failed(e.to_string()),
    };
    handoff::answer(hooks, &answer);
    applied
}

/// Reconciles what the events `p` name; `served`: interfaces a hook's event was just applied for;
/// `known`: each link's name as its latest event gave it.
fn handle(engine: &mut Engine, cfg: &Config, p: Pending, fights: &mut Fights, served: &BTreeSet<String>, known: &BTreeMap<u32, String>) {
    if p.resync {
        if let Err(e) = reconcile(engine, &Target::Sync, false, ClientEvent::default()) {
            log::error!("sync: {e}");
        }
        return;
    }
    log::debug!(
        "kernel events: {} link(s) or their addresses, {} table(s), {} gone, {} network(s)",
        p.ifindexes.len(),
        p.tables.len(),
        p.gone.len(),
        p.connected.len()
    );
    // Resolve what the events name, asking the kernel about those interfaces only.
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut addressed: BTreeSet<String> = BTreeSet::new();
    let mut claimed_now: BTreeSet<u32> = BTreeSet::new();
    let recorded = engine.records().names();
    for &i in &p.ifindexes {
        if let Ok(Some(l)) = engine.reads().link_by_index(i) {
            // Renamed since its events were sent (udev at boot, on a busy host: the rename's own
            // event comes in a later burst): a run under the new name would give a managed
            // interface a second table and lose its lease. A sync moves its record by index.
            if known.get(&i).is_some_and(|old| *old != l.name && recorded.contains(old)) {
                if let Err(e) = reconcile(engine, &Target::Sync, false, ClientEvent::default()) {
                    log::error!("sync: {e}");
                }
                return;
            }
            // A link-local IPv6 address comes with every link that goes up: not a reason to claim it.
            if engine.reads().addresses(i).is_ok_and(|a| a.iter().any(|a| a.gets_policy(cfg.ipv6))) {
                addressed.insert(l.name.clone());
                if cfg.manages(&l.name) && !fights.is_paused(&l.name) {
                    claimed_now.insert(i);
                }
            }
            names.insert(l.name);
        }
    }
    // A network directly connected through an unmanaged interface came or went (a container
    // bridge, a tunnel): the shared rules follow, which takes the whole host. Not for the network
    // of an interface this very run claims: that network becomes the interface's own (and the
    // run drops a shared rule it had), which a run over the interface decides alone.
    let unmanaged = |i: &u32| {
        (p.disconnected.contains(i) || !claimed_now.contains(i))
            && engine.reads().link_by_index(*i).ok().flatten().is_none_or(|l| l.group != cfg.link_group)
    };
    if p.connected.iter().any(unmanaged) {
        if let Err(e) = reconcile(engine, &Target::Sync, false, ClientEvent::default()) {
            log::error!("sync: {e}");
        }
        return;
    }
    names.extend(p.gone.iter().cloned());
    let tables = engine.records().tables();
    for (n, t) in tables.iter() {
        if p.tables.contains(t) {
            names.insert(n.clone());
        }
    }
    // Claim an interface when an address appears on it (a lease, a hand-made address): an event,
    // unlike `sync`, means someone is configuring it now. After that, follow it.
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| recorded.contains(n) || cfg.manages(n) && addressed.contains(n))
        .filter(|n| !fights.is_paused(n) && !served.contains(n))
        .collect();
    let applies: Vec<Queued> =
        names.iter().filter(|n| cfg.manages(n)).map(|n| Queued { ifname: n.clone(), gone: false, lease: None }).collect();
    if applies.len() >= BATCH_FROM {
        // Many interfaces at once (a boot, a switch port flapping a trunk): one run over the whole
        // host instead of one per interface.
        let n = applies.len();
        // As for one interface below: a failure can be a race with the change that raised the
        // event (an address removed between the read and the write); look again once.
        let result = reconcile(engine, &Target::Events(&applies), false, ClientEvent::default()).or_else(|e| {
            log::debug!("{n} interfaces: {e}; retrying");
            reconcile(engine, &Target::Events(&applies), false, ClientEvent::default())
        });
        match result {
            Ok(done) if done.changes > 0 => log::info!("{n} interfaces: {} change(s) after kernel events", done.changes),
            Ok(_) => {}
            Err(e) => log::error!("{n} interfaces: {e}"),
        }
    }
    for name in names {
        if applies.len() >= BATCH_FROM && cfg.manages(&name) {
            continue;
        }
        let target = if cfg.manages(&name) { Target::Apply(&name) } else { Target::Release(&name) };
        // A failure can be a race with the very change that raised the event (an address removed
        // while its routes were being written): look again once before calling it an error.
        let result = reconcile(engine, &target, false, ClientEvent::default()).or_else(|e| {
            log::debug!("{name}: {e}; retrying");
            reconcile(engine, &target, false, ClientEvent::default())
        });
        let result = match result {
            // Renamed between the event and now (its index lives on under another name): a sync
            // moves its record and table to the new name. Releasing would give it a new table.
            Err(e) if e.is_vanished_interface() && renamed(engine, &name) => {
                reconcile(engine, &Target::Sync, false, ClientEvent::default())
            }
            // Gone between the event and now: forget it.
            Err(e) if e.is_vanished_interface() => reconcile(engine, &Target::Release(&name), false, ClientEvent::default()),
            r => r,
        };
        match result {
            Ok(done) if done.changes > 0 => {
                log::info!(iface = name.as_str(); "{name}: {} change(s) after kernel events", done.changes);
                let rules = |v: &[String]| {
                    v.iter().filter(|x| x.starts_with("ip rule ") || x.starts_with("ip -6 rule ")).cloned().collect::<Vec<_>>()
                };
                fights.note(&name, &rules(&done.added), &rules(&done.removed));
            }
            Ok(_) => {}
            Err(e) => log::error!(iface = name.as_str(); "{name}: {e}"),
        }
    }
}

/// Whether the interface recorded as `name` now carries another name.
fn renamed(engine: &mut Engine, name: &str) -> bool {
    let Some(index) = engine.records().record(name).ifindex else { return false };
    engine.reads().link_by_index(index).ok().flatten().is_some_and(|l| l.name != name)
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
