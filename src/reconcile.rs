//! One run of stronghost, for every command, hook and the watcher: take the host-wide lock,
//! gather what the decision needs, plan (plan/, pure), and — unless it is a dry run — execute
//! (execute/). The lock is held from the first read to the last write, so two hooks for two
//! interfaces never decide on a state the other is changing.

use crate::clients::{lease_files, networkd};
use crate::config::Config;
use crate::error::Error;
use crate::execute::{self, Writes};
use crate::gather::kernel::Table;
use crate::model::kernel::Kernel;
use crate::model::lease::Lease;
use crate::model::record::Record;
use crate::netlink::Netlink;
use crate::plan::{self, Gathered, Intent, Planner, Plans, render, touched};
use crate::state::{Queued, State};
use nix::fcntl::Flock;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::time::Duration;

/// How long a run waits for another stronghost (a hook for another interface) to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

pub enum Target<'a> {
    Apply(&'a str),
    Release(&'a str),
    /// A DHCP lease ended: the interface stays managed (its other addresses keep their policy,
    /// its ARP hardening stays); released only if the interface itself is gone.
    LeaseGone(&'a str),
    Sync,
    /// Everything stronghost has set up, everywhere (package removal).
    ReleaseAll,
    /// Hook events for several interfaces that queued up while another run held the lock (a
    /// boot storm): decided together, in one run over the whole host.
    Events(&'a [Queued]),
}

impl Target<'_> {
    pub fn describe(&self) -> String {
        match self {
            Target::Apply(n) => format!("apply {n}"),
            Target::Release(n) | Target::LeaseGone(n) => format!("release {n}"),
            Target::Sync => "sync".to_string(),
            Target::ReleaseAll => "release --all".to_string(),
            Target::Events(b) => format!("{} queued events", b.len()),
        }
    }

    fn one(&self) -> Option<&str> {
        match self {
            Target::Apply(n) | Target::Release(n) | Target::LeaseGone(n) => Some(n),
            Target::Sync | Target::ReleaseAll | Target::Events(_) => None,
        }
    }
}

/// What a DHCP client's hook adds to a run.
#[derive(Default)]
pub struct ClientEvent {
    /// The new lease, to record before deciding.
    pub lease: Option<Lease>,
    /// stronghost configures the address and main default route itself (udhcpc).
    pub configure: bool,
}

/// What a reconcile did (or, dry, would do).
#[derive(Debug, Default)]
pub struct Done {
    /// How many changes (one per equivalent command).
    pub changes: usize,
    /// The changes as equivalent commands: for a dry run, or when debug logging is on.
    pub lines: Vec<String>,
    /// Rules and routes added and removed, by description: when the engine `tracks_touched`.
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

pub struct Engine {
    cfg: Config,
    nl: Netlink,
    /// The watcher's: rules and main's defaults kept from notifications between runs.
    caches: crate::gather::Caches,
    state: State,
    writes: Writes,
    /// The watcher's: interfaces found without a gateway, to look at again before warning
    /// (`None`: warn at once). A DHCP client adds the address before its default route and runs
    /// its hook last, so the watcher, which sees the address first, would warn on every bind
    /// that has no usable lease on disk yet.
    gateway_later: Option<Vec<String>>,
    /// How long `lock` waits: LOCK_WAIT, or less for a hook that spent part of its time bound
    /// waiting for the watcher.
    lock_wait: Duration,
    /// The watcher's: each run says which rules it added and removed (`Done`), to notice another
    /// tool undoing them. Nobody else reads them, and a `sync` of many interfaces would spend
    /// longer describing its rules than planning them.
    tracks_touched: bool,
}

/// What the watcher and `check` may do with the kernel through a run's socket: read. Writing
/// is execute/'s alone (it gets the socket from `reconcile`).
pub struct Reads<'a>(&'a mut Netlink);

impl Reads<'_> {
    pub fn links(&mut self) -> Result<Vec<crate::model::kernel::Link>, crate::netlink::NetlinkError> {
        self.0.links()
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<crate::model::kernel::Link>, crate::netlink::NetlinkError> {
        self.0.link_by_index(index)
    }

    pub fn addresses(&mut self, index: u32) -> Result<Vec<crate::model::kernel::Address>, crate::netlink::NetlinkError> {
        self.0.addresses(index)
    }

    /// The kernel's route lookup (`ip route get`): (output interface, source).
    pub fn route_get(
        &mut self,
        dst: std::net::IpAddr,
        src: Option<std::net::IpAddr>,
        oif: Option<u32>,
        mark: Option<u32>,
    ) -> Result<(Option<u32>, Option<std::net::IpAddr>), crate::netlink::NetlinkError> {
        self.0.route_get(dst, src, oif, mark)
    }

    /// The socket's netlink port: notifications of the changes a run makes carry it.
    pub fn port(&self) -> u32 {
        self.0.port()
    }
}

impl Engine {
    pub fn cfg(&self) -> &Config {
        &self.cfg
    }

    /// Reading the kernel outside a run.
    pub fn reads(&mut self) -> Reads<'_> {
        Reads(&mut self.nl)
    }

    /// What the runs so far wrote.
    pub fn writes(&self) -> &Writes {
        &self.writes
    }

    /// The records, read only: names on record, the table map, one record, old queue entries.
    pub fn records(&self) -> &crate::state::State {
        &self.state
    }

    /// Waits for the host-wide lock at most `wait` from now on (a hook with less time left).
    pub fn limit_lock_wait(&mut self, wait: Duration) {
        self.lock_wait = self.lock_wait.min(wait);
    }

    /// Becomes the watcher's engine: runs say which rules they touched, rules and main's defaults
    /// are kept from notifications, the records' names and table map are kept between runs, and
    /// an interface without a gateway is looked at again before warning. Says what it could not
    /// follow (each run then reads it).
    pub fn become_watcher(&mut self) -> Vec<String> {
        self.tracks_touched = true;
        self.gateway_later = Some(Vec::new());
        self.state.keep_copies();
        let mut missed = Vec::new();
        if let Err(e) = self.caches.follow_rules() {
            missed.push(format!("cannot follow rule notifications ({e}); every run will read every rule"));
        }
        if let Err(e) = self.caches.follow_main_defaults() {
            missed
                .push(format!("cannot follow route notifications ({e}); every run for an address without a gateway will read all of main"));
        }
        missed
    }

    /// Interfaces found without a gateway since the last call (the watcher's second looks).
    pub fn take_gateway_later(&mut self) -> Vec<String> {
        self.gateway_later.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub fn new(cfg: Config) -> Result<Engine, Error> {
        Engine::with(cfg, State::open())
    }

    /// An engine for a command that only reads (`plan`, `status`, `check`): its state creates
    /// no directory (`State::open_read_only`).
    pub fn read_only(cfg: Config) -> Result<Engine, Error> {
        Engine::with(cfg, State::open_read_only())
    }

    fn with(cfg: Config, state: std::io::Result<State>) -> Result<Engine, Error> {
        let nl = Netlink::open().map_err(|e| Error::netlink("opening rtnetlink")(e.into()))?;
        let state = state.map_err(Error::state("opening the state directory"))?;
        Ok(Engine {
            cfg,
            nl,
            caches: Default::default(),
            state,
            writes: Writes::default(),
            gateway_later: None,
            lock_wait: LOCK_WAIT,
            tracks_touched: false,
        })
    }

    /// Takes the host-wide lock. Everything read after it is what the previous holder left.
    /// (`None`: a reader on a host where stronghost never ran.)
    pub fn lock(&self) -> Result<Option<Flock<File>>, Error> {
        let guard = self.state.lock(self.lock_wait).map_err(|source| match source.kind() {
            std::io::ErrorKind::WouldBlock => Error::Busy { detail: source.to_string() },
            _ => Error::State { doing: "taking the lock".into(), source },
        })?;
        Ok(guard)
    }

    /// Everything a decision about `one` interface (or, `None`, every interface) looks at. For
    /// one interface, only its own state: the cost of an event hardly grows with the number of
    /// interfaces on the host.
    pub fn gather(&mut self, one: Option<&str>) -> Result<Gathered, Error> {
        self.gather_with(one, None)
    }

    /// `gather`, knowing the lease an event brings for `one` (it decides how much of main is read).
    pub fn gather_with(&mut self, one: Option<&str>, incoming: Option<&Lease>) -> Result<Gathered, Error> {
        if one.is_none() {
            // Under the lock, which every writer holds: a temporary file now is a dead run's.
            // Only on a full run: listing thousands of records is no event's business.
            self.state.clean_temporaries();
        }
        let names = self.state.names();
        let records: BTreeMap<String, _> = match one {
            Some(n) => names.iter().filter(|r| *r == n).map(|n| (n.clone(), self.state.record(n))).collect(),
            None => names.iter().map(|n| (n.clone(), self.state.record(n))).collect(),
        };
        let tables = self.state.tables();
        // The links whose IPv4 configuration a plan may change: managed, being claimed (in the
        // link group) or recorded (being released).
        let cfg = &self.cfg;
        let configured = |name: &str, group: u32| group == cfg.link_group || cfg.manages(name) || names.contains(name);
        // The table whose routes a one-interface read took: None when it had to read every table.
        let (mut kernel, table_read) = match one {
            Some(n) => {
                // A gateway that does not depend on the other interfaces (planner `gateways`).
                let lease = incoming.or_else(|| records.get(n)?.lease.as_ref());
                let gateway_known = self.cfg.gateways.contains_key(n) || lease.is_some_and(|l| l.gateway.is_some());
                // The tables taken, only for an interface that has none yet.
                let known = tables.get(n).copied().filter(|t| self.cfg.in_table_range(*t));
                let taken: BTreeSet<u32> = if known.is_none() { tables.values().copied().collect() } else { BTreeSet::new() };
                let mut free = (self.cfg.table_min..=self.cfg.table_max).filter(|t| !taken.contains(t));
                let table = match known {
                    Some(t) => Table::Known { table: t, protocol: self.cfg.protocol, range: self.cfg.table_min..=self.cfg.table_max },
                    None => Table::Allocate { free: &mut free, protocol: self.cfg.protocol },
                };
                Kernel::read_one(&mut self.nl, &mut self.caches, n, table, gateway_known)
            }
            None => Kernel::read(&mut self.nl, &mut self.caches, configured).map(|k| (k, None)),
        }
        .map_err(Error::netlink("reading the kernel's routing state"))?;
        if let Some(n) = one {
            kernel = with_other_holders(&mut self.nl, &self.cfg, kernel, n, &tables)?;
        }
        kernel.complete_sysctls(&crate::plan::policy::sysctls_wanted(&self.cfg), configured);
        let stack_leases = stack_leases(&self.cfg, &kernel, &records);
        let present = match one {
            // No table known and none free: the planner takes one of an interface that is gone.
            Some(_) if table_read.is_none() => {
                Some(self.nl.links().map_err(Error::netlink("reading the links"))?.into_iter().map(|l| l.name).collect())
            }
            _ => None,
        };
        let filter = match one {
            Some(n) => {
                let index = kernel.link(n).map(|l| l.index);
                let table = tables.get(n).copied();
                // A link that is gone leaves its pairs under the index on record.
                let recorded = records.get(n).and_then(|r| r.ifindex);
                let candidates = crate::gather::filter::own_candidates(&kernel, index.or(recorded), table, self.cfg.protocol);
                crate::gather::filter::read_member(&crate::model::table::Shape::of(&self.cfg), n, index, &candidates)
            }
            None => crate::gather::filter::read(&crate::model::table::Shape::of(&self.cfg)),
        };
        let mut g = Gathered {
            kernel,
            on_disk: records.clone(),
            records,
            names,
            tables,
            stack_leases,
            filter,
            complete: one.is_none(),
            present,
            renames: vec![],
        };
        if one.is_none() {
            g.follow_renames();
        }
        Ok(g)
    }
}

/// A one-interface snapshot with the interfaces whose `from` rules hold one of `n`'s addresses
/// (one address on two interfaces): their links and addresses, so that the planner gives the
/// address the owner every planner gives it (`Planner::owners`). Nothing is read when no such
/// rule exists, which is every event but those.
fn with_other_holders(nl: &mut Netlink, cfg: &Config, k: Kernel, n: &str, tables: &BTreeMap<String, u32>) -> Result<Kernel, Error> {
    let Some(link) = k.link(n) else { return Ok(k) };
    let own = tables.get(n).copied();
    let others: BTreeSet<&String> = k
        .owned_rules(cfg.protocol)
        .filter(|r| Some(r.table) != own && cfg.in_table_range(r.table))
        .filter(|r| matches!(r.selector, crate::model::routing::Selector::From(a) if k.addrs_of(link.index).any(|x| x.addr == a)))
        .filter_map(|r| tables.iter().find(|(_, t)| **t == r.table).map(|(name, _)| name))
        .filter(|name| *name != n)
        .collect();
    if others.is_empty() {
        return Ok(k);
    }
    let (mut links, mut addrs) = (k.links.clone(), k.addrs.clone());
    for name in others {
        if let Some(l) = nl.link(name).map_err(Error::netlink("reading the links"))? {
            addrs.extend(nl.addresses(l.index).map_err(Error::netlink("reading the addresses"))?);
            links.push(l);
        }
    }
    Ok(Kernel::new(links, addrs, k.rules.clone(), k.routes.clone()))
}

/// The leases the network stacks keep themselves, for the managed interfaces no hook has told
/// stronghost about: networkd's, else the newest of dhclient's lease files. Only a lease for an
/// address the interface has now counts: a file outlives the lease it describes.
fn stack_leases(cfg: &Config, k: &Kernel, records: &BTreeMap<String, crate::model::record::Record>) -> BTreeMap<u32, Lease> {
    let holds = |l: &crate::model::kernel::Link, lease: &Lease| k.addrs_of(l.index).any(|a| a.addr == std::net::IpAddr::V4(lease.address));
    let unknown: Vec<&crate::model::kernel::Link> =
        k.links.iter().filter(|l| cfg.manages(&l.name) && records.get(&l.name).is_none_or(|r| r.lease.is_none())).collect();
    let mut out = BTreeMap::new();
    for l in &unknown {
        if let Some(lease) = networkd::lease_for(l.index).filter(|lease| holds(l, lease)) {
            out.insert(l.index, lease);
        }
    }
    let names = unknown.iter().filter(|l| !out.contains_key(&l.index)).map(|l| l.name.clone()).collect();
    let files = lease_files::read(&names, lease_files::now());
    for l in unknown {
        if let Some(lease) = files.get(&l.name).and_then(|v| v.iter().rev().find(|lease| holds(l, lease))) {
            out.entry(l.index).or_insert_with(|| lease.clone());
        }
    }
    out
}

/// How many rounds of queued events one run applies before letting go of the lock.
const QUEUE_ROUNDS: usize = 8;

/// Pauses before trying a batch of queued events again whose reads the kernel's churn kept
/// interrupting.
const INTERRUPTED_PAUSES: [Duration; 3] = [Duration::from_millis(20), Duration::from_millis(100), Duration::from_millis(500)];

/// Plans and (unless `dry_run`) executes under the host-wide lock; then, still holding it,
/// applies the hook events that queued up meanwhile.
pub fn reconcile(e: &mut Engine, target: &Target, dry_run: bool, client: ClientEvent) -> Result<Done, Error> {
    let _lock = e.lock()?;
    let done = reconcile_locked(e, target, dry_run, client);
    if !dry_run {
        drain_queue(e);
    }
    done
}

/// Queues a hook's event (state/queue.rs), for `apply_queued` or the watcher (`apply_queue`).
pub fn enqueue(e: &Engine, q: &Queued) -> Result<(), Error> {
    e.state.enqueue(q).map_err(Error::state(format!("queueing the event for {}", q.ifname)))
}

/// A hook's queued event, applied under the lock together with whatever else is queued.
/// Returns what the run did and whether this event was among it (false: an earlier holder of the
/// lock applied it already, which is just as good — it was applied before that run let go).
pub fn apply_queued(e: &mut Engine, q: &Queued) -> Result<(Done, bool), Error> {
    let _lock = e.lock()?;
    let batch = e.state.take_queue();
    let ours = batch.iter().any(|b| b == q || b.ifname == q.ifname);
    let done = if batch.is_empty() { Ok(Done::default()) } else { run_queued(e, &batch) };
    drain_queue(e);
    done.map(|d| (d, ours))
}

/// Runs a batch taken from the queue. The batch has left the queue: a run whose reads the
/// kernel's churn kept interrupting is tried again, not lost (at boot, the churn is the other
/// interfaces' leases arriving) — for the watcher's rounds and a hook's own run alike.
fn run_queued(e: &mut Engine, batch: &[Queued]) -> Result<Done, Error> {
    let mut result = run_batch(e, batch);
    for pause in INTERRUPTED_PAUSES {
        match &result {
            Err(err) if err.interrupted() => {
                let names: Vec<&str> = batch.iter().map(|q| q.ifname.as_str()).collect();
                log::debug!("queued events for {}: {err}; trying again", names.join(" "));
            }
            _ => break,
        }
        std::thread::sleep(pause);
        result = run_batch(e, batch);
    }
    // The host's own storage failed (full, read-only): the events go back in the queue, for the
    // watcher (which tries again) or the next run, instead of being lost with this run.
    if let Err(err) = &result
        && err.local()
    {
        for q in batch {
            match e.state.requeue(q) {
                Ok(()) => log::warn!(iface = q.ifname.as_str(); "{}: event kept in the queue after a failed run: {err}", q.ifname),
                Err(again) => log::error!(iface = q.ifname.as_str();
                    "{}: the event is lost ({err}; queueing it again failed too: {again}); once there is room, `stronghost apply {}` \
                     (or the client's next renewal) applies the interface's current lease", q.ifname, q.ifname),
            }
        }
    }
    result
}

fn run_batch(e: &mut Engine, batch: &[Queued]) -> Result<Done, Error> {
    match batch {
        [q] => {
            let target = if q.gone { Target::LeaseGone(&q.ifname) } else { Target::Apply(&q.ifname) };
            reconcile_locked(e, &target, false, ClientEvent { lease: q.lease.clone(), configure: false })
        }
        _ => reconcile_locked(e, &Target::Events(batch), false, ClientEvent::default()),
    }
}

/// An interface in force with IPv4 addresses and no lease to take a gateway from.
fn gatewayless(cfg: &Config, k: &Kernel, ifname: &str, r: &Record) -> bool {
    r.applied
        && r.gateway_from.is_none()
        && r.lease.is_none()
        && k.link(ifname).is_some_and(|l| !plan::facts(cfg, k, l).addresses.is_empty())
}

fn warn_gatewayless(cfg: &Config, iface: &str, table: u32) {
    log::warn!(iface, table;
        "{iface}: no gateway known (no lease, no default route through it, none on its network, none configured): its \
         addresses reach only its own network. Name one with `gateway.{iface} = <address>` in {}",
        cfg.path.display()
    )
}

/// The watcher's second look at an interface that had no gateway when its address appeared
/// (`Engine::gateway_later`): warns if it still has none. Reads the record and the link's
/// addresses only (every change that could bring a gateway runs the interface and rewrites its
/// record), never the host's rules: on a host of thousands of interfaces, each look stays cheap.
pub fn warn_if_still_gatewayless(e: &mut Engine, ifname: &str) {
    let r = e.state.record(ifname);
    if !e.cfg.manages(ifname) || !r.applied || r.gateway_from.is_some() || r.lease.is_some() {
        return;
    }
    let Some(index) = r.ifindex else { return };
    if e.nl.link_by_index(index).ok().flatten().is_none_or(|l| l.name != ifname) {
        return;
    }
    if e.nl.addresses(index).is_ok_and(|a| a.iter().any(|a| a.addr.is_ipv4())) {
        warn_gatewayless(&e.cfg, ifname, e.state.tables().get(ifname).copied().unwrap_or(0));
    }
}

/// Applies the events queued while this run held the lock, in a few rounds at most.
fn drain_queue(e: &mut Engine) {
    let _ = drain_rounds(e, &mut BTreeSet::new());
}

/// The watcher's part of a hand-off (handoff.rs): applies, under the lock, the events hooks
/// queued before asking it to. The number of changes, or every error; and the interfaces whose
/// events were applied.
pub fn apply_queue(e: &mut Engine) -> (Result<usize, Error>, BTreeSet<String>) {
    let mut applied = BTreeSet::new();
    let result = e.lock().and_then(|_lock| drain_rounds(e, &mut applied));
    (result, applied)
}

fn drain_rounds(e: &mut Engine, applied: &mut BTreeSet<String>) -> Result<usize, Error> {
    let (mut changes, mut errors) = (0, vec![]);
    for _ in 0..QUEUE_ROUNDS {
        let batch = e.state.take_queue();
        if batch.is_empty() {
            break;
        }
        let names: Vec<&str> = batch.iter().map(|q| q.ifname.as_str()).collect();
        match run_queued(e, &batch) {
            Ok(done) => {
                log::info!("{} queued event(s) applied ({}): {} change(s)", batch.len(), names.join(" "), done.changes);
                changes += done.changes;
                applied.extend(names.iter().map(|n| n.to_string()));
            }
            Err(err) => {
                log::error!("queued events for {}: {err}", names.join(" "));
                // Put back (the host's storage failed): taking them again now would fail again.
                let kept = err.local();
                errors.push(err);
                if kept {
                    break;
                }
            }
        }
    }
    Error::collect(errors).map_or(Ok(changes), Err)
}

fn reconcile_locked(e: &mut Engine, target: &Target, dry_run: bool, client: ClientEvent) -> Result<Done, Error> {
    // One line per run (-v): the benchmarks count runs by it.
    log::debug!("run: {}", target.describe());
    let mut errors = Vec::new();
    // The changes as commands only where someone reads them: formatting every rule and route of
    // a `sync` of hundreds of interfaces costs more than planning them.
    let text = dry_run || log::log_enabled!(log::Level::Debug);
    let (mut changes, mut lines) = (0, Vec::new());
    let mut g = e.gather_with(target.one(), client.lease.as_ref())?;
    if let (true, Some(n)) = (client.configure, target.one()) {
        let old = g.records.get(n).and_then(|r| r.lease.as_ref()).filter(|l| l.source == "udhcpc");
        if let Some(c) = plan::client(&g.kernel, n, old, client.lease.as_ref()) {
            let rendered = c.render();
            changes += rendered.len();
            if text {
                lines.extend(rendered);
            }
            if !dry_run {
                if let Err(err) = execute::execute_client(&mut e.nl, &mut e.writes, &c, e.cfg.protocol) {
                    errors.push(err);
                }
                // The addresses changed: decide on what the kernel holds now.
                g = e.gather_with(Some(n), client.lease.as_ref())?;
            }
        }
    }
    if let (Some(l), Some(n)) = (client.lease, target.one()) {
        g.records.entry(n.to_string()).or_default().lease = Some(l);
    }
    let plans = decide(&e.cfg, &mut g, target, &mut errors);
    if target.one().is_some() && !errors.is_empty() {
        // The one interface asked about cannot be decided on: change nothing.
        return Err(Error::collect(errors).expect("an error"));
    }
    for p in &plans.interfaces {
        let Some(r) = p.record.as_ref().filter(|r| r.applied) else { continue };
        // Said once: when the interface gets its policy, and when the gateway's source changes.
        let before = g.on_disk.get(&p.ifname).filter(|r| r.applied).map(|r| &r.gateway_from);
        if before == Some(&r.gateway_from) {
            continue;
        }
        let (iface, table) = (p.ifname.as_str(), p.table.unwrap_or(0));
        match &r.gateway_from {
            Some(from) => log::info!(iface, table; "{iface}: gateway from {from}"),
            None if gatewayless(&e.cfg, &g.kernel, iface, r) => match e.gateway_later.as_mut() {
                Some(later) => {
                    log::debug!(iface, table; "{iface}: no gateway known yet; looking again before warning");
                    later.push(iface.to_string());
                }
                None => warn_gatewayless(&e.cfg, iface, table),
            },
            None => {}
        }
    }
    changes += plan::count(&plans.interfaces, &plans.host);
    if text {
        lines.extend(render(&plans.interfaces, &plans.host, e.cfg.protocol));
    }
    let (added, removed) = if e.tracks_touched { touched(&plans.interfaces, &plans.host) } else { Default::default() };
    if !dry_run {
        for l in &lines {
            log::debug!("{l}");
        }
        let executed = execute::execute(&mut e.nl, &e.state, &mut e.writes, &g, &plans, &e.cfg);
        let written = executed.is_ok();
        if let Err(err) = executed {
            errors.push(err);
        }
        // One line per interface changed, with its journal fields (IFACE, TABLE): for what was
        // written — a run that failed says so in its error instead.
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for (owner, step) in plan::steps(&plans.interfaces, &plans.host) {
            *per.entry(owner.unwrap_or_default()).or_default() += step.count();
        }
        for p in plans.interfaces.iter().filter(|_| written) {
            let n = per.get(p.ifname.as_str()).copied().unwrap_or(0);
            if n > 0 {
                let (iface, table) = (p.ifname.as_str(), p.table.unwrap_or(0));
                log::info!(iface, table; "{iface}: {n} change(s) to its link, rules, routes and sysctls (table {table})");
            }
        }
    }
    // A macvlan or ipvlan child claimed by a run that read it alone: the device under it is
    // claimed too, in the same lock (`Planner::lower_to_claim`; `sync` does it from its full read).
    if !dry_run && target.one().is_some() {
        let claimed: Vec<&str> = plans.interfaces.iter().filter(|p| p.record.is_some()).map(|p| p.ifname.as_str()).collect();
        let lowers: Vec<String> = claimed.into_iter().filter_map(|n| lower_to_claim(e, &g, n)).collect();
        for lower in lowers {
            log::info!(iface = lower.as_str(); "{lower}: claimed as the device under a managed macvlan or ipvlan");
            match reconcile_locked(e, &Target::Apply(&lower), false, ClientEvent::default()) {
                Ok(d) => changes += d.changes,
                Err(err) => errors.push(err),
            }
        }
    }
    if plans.host.needs_host_pass {
        // Under the same lock: the shared rules for the networks connected through unmanaged
        // interfaces, which only a read of every link can tell.
        let g = e.gather(None)?;
        let mut host = Planner::new(&e.cfg, &g).finish(vec![]);
        // The receive filter was this run's already (and said so if it failed), unless it needs
        // the whole host.
        if !plans.host.filter_in_host_pass {
            host.host.filter = None;
            host.host.filter_error = None;
        }
        changes += plan::count(&host.interfaces, &host.host);
        if text {
            lines.extend(render(&host.interfaces, &host.host, e.cfg.protocol));
        }
        if !dry_run && let Err(err) = execute::execute(&mut e.nl, &e.state, &mut e.writes, &g, &host, &e.cfg) {
            errors.push(err);
        }
    }
    match Error::collect(errors) {
        None => Ok(Done { changes, lines, added, removed }),
        Some(err) => Err(err),
    }
}

/// `Planner::lower_to_claim` for a run that read `ifname` alone: the device under it is looked
/// up in the kernel.
fn lower_to_claim(e: &mut Engine, g: &Gathered, ifname: &str) -> Option<String> {
    let lower = e.nl.link_by_index(g.kernel.link(ifname)?.lower?).ok()??;
    let addressed = e.nl.addresses(lower.index).map(|a| a.iter().any(|a| a.gets_policy(e.cfg.ipv6))).unwrap_or(true);
    plan::claims_lower(&e.cfg, &lower.name, e.state.names().contains(&lower.name), addressed).then_some(lower.name)
}

/// The plans for `target`; an interface that cannot be planned is an error in `errors`, the
/// others are still planned.
fn decide(cfg: &Config, g: &mut Gathered, target: &Target, errors: &mut Vec<Error>) -> Plans {
    if let Target::LeaseGone(n) = target
        && let Some(r) = g.records.get_mut(*n)
    {
        r.lease = None;
    }
    if let Target::Events(batch) = target {
        for q in batch.iter() {
            if q.gone {
                if let Some(r) = g.records.get_mut(&q.ifname) {
                    r.lease = None;
                }
            } else if let Some(l) = &q.lease {
                g.records.entry(q.ifname.clone()).or_default().lease = Some(l.clone());
            }
        }
    }
    let mut planner = Planner::new(cfg, g);
    let mut one = |p: &mut Planner, n: &str, intent| match p.interface(n, intent) {
        Ok(plan) => vec![plan],
        Err(e) => {
            errors.push(e);
            vec![]
        }
    };
    let interfaces = match target {
        Target::Apply(n) => one(&mut planner, n, Intent::Apply),
        Target::Release(n) => one(&mut planner, n, Intent::Release),
        Target::LeaseGone(n) => {
            let intent = if g.kernel.link(n).is_some() && g.names.contains(*n) { Intent::Apply } else { Intent::Release };
            one(&mut planner, n, intent)
        }
        Target::Events(batch) => {
            let mut plans = vec![];
            for q in batch.iter() {
                let n = q.ifname.as_str();
                let keep = !q.gone || g.kernel.link(n).is_some() && g.names.contains(n);
                plans.extend(one(&mut planner, n, if keep { Intent::Apply } else { Intent::Release }));
            }
            // Read whole: the devices under the children claimed are claimed here too.
            let lowers: BTreeSet<String> =
                plans.iter().filter(|p| p.record.is_some()).filter_map(|p| planner.lower_to_claim(&p.ifname)).collect();
            for lower in lowers.iter().filter(|l| !batch.iter().any(|q| &q.ifname == *l)) {
                plans.extend(one(&mut planner, lower, Intent::Apply));
            }
            plans
        }
        Target::Sync | Target::ReleaseAll => {
            let (plans, errs) = planner.sync(matches!(target, Target::ReleaseAll));
            errors.extend(errs);
            plans
        }
    };
    planner.finish(interfaces)
}
