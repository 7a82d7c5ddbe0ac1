//! `stronghost watch`: follows rtnetlink address, link, route and rule events and reconciles the
//! interfaces they touch. This is what keeps the policy in place when no hook runs: an address
//! added by hand or by a stack without hooks, an address re-added after a reconfigure (which makes
//! the kernel flush every route with that source, ours included), an interface renamed or removed.
//!
//! It follows the receive filter's nftables table the same way (nfnetlink notifications): a
//! firewall reload (`flush ruleset`), `nft delete table inet stronghost` or an edit is repaired
//! by a full sync within milliseconds, not at the next lease.
//!
//! Bursts are debounced (events.rs decodes them); an overrun of the socket buffer triggers a full
//! sync; an interface (or the table) that keeps being undone by another tool is paused instead of
//! fought in a loop (fights.rs).

mod events;
mod fights;

use crate::config::Config;
use crate::handoff;
use crate::netlink::nftables::Monitor;
use crate::netlink::subscription::Subscription;
use crate::reconcile::{self, ClientEvent, Engine, Target, reconcile};
use crate::state::Queued;
use events::*;
use fights::*;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Quiet time that ends a burst, and the longest a burst may delay a reconcile.
const QUIET: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(50);

/// From this many interfaces in one burst, one run over the whole host instead of one run each
/// (which reads only its interface: on a host of thousands, a few of those cost less than one read
/// of everything).
const BATCH_FROM: usize = 4;
/// How long a DHCP client may take from adding an address to running its hook before the
/// watcher calls the interface's gateway missing (dhclient-script takes milliseconds,
/// NetworkManager's dispatcher can take seconds when D-Bus activates it on a loaded host).
const GATEWAY_GRACE: Duration = Duration::from_secs(10);

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
    let mut sock = match subscribe() {
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
            Ok(r) => take(r, &mut sock, &mut monitor, listener.as_ref(), cfg, &mut p, &mut seen, &mut hooks),
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
                Ok(r) => take(r, &mut sock, &mut monitor, listener.as_ref(), cfg, &mut p, &mut seen, &mut hooks),
            }
        }
        if !hooks.is_empty() {
            // Whatever else the kernel said meanwhile goes into the same decisions.
            drain(&mut sock, cfg, &mut p, &mut seen);
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

/// Takes what woke the watcher: the kernel's events and the nftables monitor's into `p`, the
/// hooks' connections into `hooks`.
#[allow(clippy::too_many_arguments)]
fn take(
    r: Ready,
    sock: &mut Subscription,
    monitor: &mut Option<Monitor>,
    listener: Option<&handoff::Listener>,
    cfg: &Config,
    p: &mut Pending,
    seen: &mut Seen,
    hooks: &mut Vec<std::os::unix::net::UnixStream>,
) {
    if r.events {
        drain(sock, cfg, p, seen);
    }
    if r.nft {
        drain_filter(monitor, p);
    }
    if r.hook {
        hooks.extend(listener.iter().flat_map(|l| l.accept_all()));
    }
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
    sock: &Subscription,
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
