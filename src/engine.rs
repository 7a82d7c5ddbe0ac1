//! The reconcile engine: read the kernel, decide (policy.rs), diff against what stronghost owns,
//! and apply only the difference. Shared by every command, hook and (later) the watcher; callers
//! hold the host-wide lock around `snapshot` → `plan_*` → `execute`.

use crate::config::Config;
use crate::filter;
use crate::netlink::{Address, KernelRoute, Link, Netlink, Op};
use crate::policy::{self, Gateways, InterfaceFacts, RT_TABLE_MAIN, Route, Rule, Selector};
use crate::state::{Record, State};
use crate::sysctl;
use netlink_packet_route::route::RouteType;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One read of everything the engine looks at.
pub struct Kernel {
    pub links: Vec<Link>,
    pub addrs: Vec<Address>,
    pub rules: Vec<crate::netlink::Owned<Rule>>,
    pub routes: Vec<KernelRoute>,
    // Lookups a plan makes per interface, indexed once: a `sync` of hundreds of interfaces would
    // otherwise scan every link, address and route for each of them.
    by_name: HashMap<String, usize>,
    by_index: HashMap<u32, usize>,
    addrs_of: HashMap<u32, Vec<usize>>,
    routes_in: HashMap<u32, Vec<usize>>,
    /// Main-table routes by device: (route, gateway through that device); a multipath route
    /// appears under each of its devices.
    main_via: HashMap<u32, Vec<(usize, Option<IpAddr>)>>,
}

impl Kernel {
    pub fn new(links: Vec<Link>, addrs: Vec<Address>, rules: Vec<crate::netlink::Owned<Rule>>, routes: Vec<KernelRoute>) -> Kernel {
        let by_name = links.iter().enumerate().map(|(i, l)| (l.name.clone(), i)).collect();
        let by_index = links.iter().enumerate().map(|(i, l)| (l.index, i)).collect();
        let mut addrs_of: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, a) in addrs.iter().enumerate() {
            addrs_of.entry(a.index).or_default().push(i);
        }
        let mut routes_in: HashMap<u32, Vec<usize>> = HashMap::new();
        let mut main_via: HashMap<u32, Vec<(usize, Option<IpAddr>)>> = HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            routes_in.entry(r.table).or_default().push(i);
            if r.table != RT_TABLE_MAIN {
                continue;
            }
            if let Some(o) = r.oif {
                main_via.entry(o).or_default().push((i, r.gateway));
            }
            for &(o, gw) in &r.nexthops {
                main_via.entry(o).or_default().push((i, gw));
            }
        }
        Kernel { links, addrs, rules, routes, by_name, by_index, addrs_of, routes_in, main_via }
    }

    pub fn read(nl: &mut Netlink) -> io::Result<Kernel> {
        Ok(Kernel::new(nl.links()?, nl.addresses(0)?, nl.rules()?, nl.routes(0)?))
    }

    fn addrs_of(&self, index: u32) -> impl Iterator<Item = &Address> {
        self.addrs_of.get(&index).into_iter().flatten().map(|&i| &self.addrs[i])
    }

    /// The main-table routes through one interface, each with its gateway through it.
    fn main_via(&self, index: u32) -> impl Iterator<Item = (&KernelRoute, Option<IpAddr>)> {
        self.main_via.get(&index).into_iter().flatten().map(|&(i, gw)| (&self.routes[i], gw))
    }

    /// The routes of one table.
    pub fn routes_in(&self, table: u32) -> impl Iterator<Item = &KernelRoute> {
        self.routes_in.get(&table).into_iter().flatten().map(|&i| &self.routes[i])
    }

    /// What one interface's plan needs, and no more: its link and addresses, every rule (few),
    /// and the routes of its table and of main (of every table while it has none: allocating one
    /// looks at all of the range). The cost of an event then hardly grows with the number of
    /// interfaces on the host.
    pub fn read_one(nl: &mut Netlink, ifname: &str, table: Option<u32>) -> io::Result<Kernel> {
        let links: Vec<Link> = nl.link(ifname)?.into_iter().collect();
        let addrs = match links.first() {
            Some(l) => nl.addresses(l.index)?,
            None => vec![],
        };
        let routes = match table {
            // No table yet: allocating one looks at every table in the range.
            None => nl.routes(0)?,
            Some(t) => {
                let mut r = nl.routes(t)?;
                r.extend(nl.routes(RT_TABLE_MAIN)?);
                r
            }
        };
        Ok(Kernel::new(links, addrs, nl.rules()?, routes))
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.by_name.get(name).map(|&i| &self.links[i])
    }

    pub fn name_of(&self, index: u32) -> String {
        self.by_index.get(&index).map(|&i| self.links[i].name.clone()).unwrap_or_else(|| format!("if{index}"))
    }

    pub fn facts(&self, link: &Link) -> InterfaceFacts {
        let mut f = InterfaceFacts { name: link.name.clone(), index: link.index, addresses: vec![], addresses6: vec![] };
        for a in self.addrs_of(link.index) {
            // Deprecated and tentative addresses keep their rules: sockets bound to them still
            // send. Link-local ones need none, and one that failed DAD is not the host's.
            match a.addr {
                IpAddr::V4(v) => f.addresses.push((v, a.prefix_len)),
                IpAddr::V6(v) if a.gets_policy(true) => f.addresses6.push((v, a.prefix_len)),
                IpAddr::V6(_) => {}
            }
        }
        f
    }

    /// The main-table default routes through this interface, best first.
    fn main_defaults(&self, index: u32, v6: bool) -> impl Iterator<Item = IpAddr> + '_ {
        let mut v: Vec<(u32, IpAddr)> = self
            .main_via(index)
            .filter(|(r, _)| r.dst.is_default() && r.dst.is_v6() == v6 && r.kind == RouteType::Unicast)
            .filter_map(|(r, gw)| Some((r.metric, gw?)))
            .collect();
        // Several routers on a link (IPv6 keeps one route per advertising router): the same one
        // every time, so the policy does not flap between them.
        v.sort();
        v.into_iter().map(|(_, g)| g)
    }

    /// A default route in main through this interface (static configuration, another client).
    fn main_gateway(&self, index: u32) -> Option<Ipv4Addr> {
        self.main_defaults(index, false).find_map(|g| match g {
            IpAddr::V4(g) => Some(g),
            IpAddr::V6(_) => None,
        })
    }

    /// The IPv6 router through this interface: what router advertisements (or the admin) put in main.
    fn main_gateway6(&self, index: u32) -> Option<Ipv6Addr> {
        self.main_defaults(index, true).find_map(|g| match g {
            IpAddr::V6(g) => Some(g),
            IpAddr::V4(_) => None,
        })
    }

    /// IPv6 prefixes main holds as on-link through this interface (address prefixes, and the
    /// prefixes router advertisements mark on-link).
    fn onlink6(&self, index: u32) -> Vec<crate::net::IpNet> {
        self.main_via(index)
            .filter(|(r, gw)| r.dst.is_v6() && !r.dst.is_default() && r.kind == RouteType::Unicast && gw.is_none())
            .filter(|(r, _)| matches!(r.dst.addr, IpAddr::V6(a) if crate::net::is_routable_v6(a)))
            .map(|(r, _)| r.dst)
            .collect()
    }

    /// Something in `table` that stronghost did not write, described for the admin.
    fn foreign_in_table(&self, table: u32, protocol: u8) -> Option<String> {
        if let Some(r) = self.routes_in(table).find(|r| r.protocol != protocol) {
            return Some(format!("route {} (protocol {})", r.dst, r.protocol));
        }
        self.rules
            .iter()
            .find(|r| r.item.table == table && r.protocol != protocol)
            .map(|r| format!("rule `{}` (protocol {})", r.item, r.protocol))
    }

    fn owned_routes(&self, table: u32, protocol: u8) -> Vec<Route> {
        let names = |i| self.name_of(i);
        self.routes_in(table).filter(|r| r.protocol == protocol).filter_map(|r| r.model(&names)).collect()
    }

    fn owned_rules(&self, protocol: u8) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.protocol == protocol).map(|r| &r.item)
    }
}

/// A hook's lease, else networkd's; `None`: the gateway comes from main (static configuration).
pub fn lease_in_force(record: &Record, ifindex: u32) -> Option<crate::lease::Lease> {
    record.lease.clone().or_else(|| crate::clients::networkd::lease_for(ifindex))
}

/// The changes for one interface, in the order they are made.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub ifname: String,
    pub table: Option<u32>,
    /// The link's index, when it exists.
    pub ifindex: Option<u32>,
    /// The families the interface has a policy for once the plan is done (IPv4, IPv6).
    pub families: (bool, bool),
    pub link_group: Option<(u32, u32)>,
    pub rules_del: Vec<Rule>,
    pub routes_del: Vec<Route>,
    pub routes_add: Vec<Route>,
    pub rules_add: Vec<Rule>,
    pub sysctls: Vec<(&'static str, u32)>,
    /// The record to keep (`None`: remove it).
    pub record: Option<Record>,
    /// Cleanup of objects no interface claims: no record to keep or remove.
    pub orphans: bool,
}

/// Host-wide changes: the shared main-table rule and the receive filter.
#[derive(Debug, Default, Clone)]
pub struct HostPlan {
    pub rules_add: Vec<Rule>,
    pub rules_del: Vec<Rule>,
    pub filter: Option<filter::Change>,
    pub filter_error: Option<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Writes {
    pub netlink: u32,
    pub sysctl: u32,
    pub nft: u32,
}

pub enum Intent {
    Apply,
    Release,
}

pub struct Engine {
    pub cfg: Config,
    pub nl: Netlink,
    pub state: State,
    /// Records loaded under the lock: all of them (`lock`) or the one being worked on (`lock_one`).
    pub records: BTreeMap<String, Record>,
    /// The records as they are on disk: what `execute` compares against before writing (the
    /// records above may have been changed in memory, a hook's lease for one).
    loaded: BTreeMap<String, Record>,
    /// Names of every interface that has a record (claimed by stronghost).
    pub names: BTreeSet<String>,
    pub tables: BTreeMap<String, u32>,
    tables_dirty: bool,
    pub sysctl_writes: u32,
    pub nft_writes: u32,
}

fn diff<T: Clone + PartialEq>(current: &[T], desired: &[T]) -> (Vec<T>, Vec<T>) {
    let mut del: Vec<T> = Vec::new();
    let mut seen: Vec<&T> = Vec::new();
    for c in current {
        // Anything not desired goes, and so does a second copy of something desired.
        if !desired.contains(c) || seen.contains(&c) {
            del.push(c.clone());
        } else {
            seen.push(c);
        }
    }
    let add = desired.iter().filter(|d| !current.contains(d)).cloned().collect();
    (del, add)
}

impl Engine {
    pub fn new(cfg: Config) -> Result<Engine, String> {
        let nl = Netlink::open().map_err(|e| format!("cannot open rtnetlink: {e} (stronghost must run as root)"))?;
        let state = State::open().map_err(|e| format!("state directory: {e}"))?;
        Ok(Engine {
            cfg,
            nl,
            state,
            records: BTreeMap::new(),
            loaded: BTreeMap::new(),
            names: BTreeSet::new(),
            tables: BTreeMap::new(),
            tables_dirty: false,
            sysctl_writes: 0,
            nft_writes: 0,
        })
    }

    /// Takes the host-wide lock and only then reads stronghost's records: whatever another hook
    /// wrote before releasing the lock is seen.
    pub fn lock(&mut self, wait: std::time::Duration) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
        let guard = self.state.lock(wait).map_err(|e| e.to_string())?;
        self.state.clean_temporaries();
        self.names = self.state.recorded().into_iter().collect();
        self.records = self.names.iter().map(|n| (n.clone(), self.state.record(n))).collect();
        self.loaded = self.records.clone();
        self.tables = self.state.tables();
        self.tables_dirty = false;
        Ok(guard)
    }

    /// As `lock`, reading only the record of `ifname` (and the names of the others).
    pub fn lock_one(&mut self, wait: std::time::Duration, ifname: &str) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
        let guard = self.state.lock(wait).map_err(|e| e.to_string())?;
        self.state.clean_temporaries();
        self.names = self.state.recorded().into_iter().collect();
        self.records.clear();
        if self.names.contains(ifname) {
            self.records.insert(ifname.to_string(), self.state.record(ifname));
        }
        self.loaded = self.records.clone();
        self.tables = self.state.tables();
        self.tables_dirty = false;
        Ok(guard)
    }

    /// The kernel as one interface's plan sees it; every route when it has no table yet (the
    /// allocation looks at every table in the range), but never every link.
    pub fn kernel_for(&mut self, ifname: &str) -> Result<Kernel, String> {
        let table = self.tables.get(ifname).copied();
        Kernel::read_one(&mut self.nl, ifname, table).map_err(|e| format!("reading the kernel's routing state: {e}"))
    }

    pub fn kernel(&mut self) -> Result<Kernel, String> {
        Kernel::read(&mut self.nl).map_err(|e| format!("reading the kernel's routing state: {e}"))
    }

    /// The interface's table: the one it had, or the lowest free one in range that nobody else
    /// uses. A table holding anything stronghost did not write is never taken.
    fn table_for(&mut self, k: &Kernel, ifname: &str) -> Result<u32, String> {
        let proto = self.cfg.protocol;
        if let Some(&t) = self.tables.get(ifname)
            && self.cfg.in_table_range(t)
        {
            if let Some(f) = k.foreign_in_table(t, proto) {
                return Err(format!(
                    "table {t} (allocated to {ifname}) holds a {f} that stronghost did not write; remove it, or drop {ifname} from {} to let stronghost allocate another",
                    crate::state::LIB_DIR.to_string() + "/tables.json"
                ));
            }
            return Ok(t);
        }
        let taken: BTreeSet<u32> = self.tables.values().copied().collect();
        let t =
            (self.cfg.table_min..=self.cfg.table_max).find(|t| !taken.contains(t) && k.foreign_in_table(*t, proto).is_none()).ok_or_else(
                || format!("no free routing table in {}-{}; widen `tables` in the config", self.cfg.table_min, self.cfg.table_max),
            )?;
        self.tables.insert(ifname.to_string(), t);
        self.tables_dirty = true;
        Ok(t)
    }

    /// The interface as the policy sees it: without IPv6 addresses when `ipv6 = no`.
    pub fn facts(&self, k: &Kernel, link: &Link) -> InterfaceFacts {
        let mut f = k.facts(link);
        if !self.cfg.ipv6 {
            f.addresses6.clear();
        }
        f
    }

    pub fn plan_interface(&mut self, k: &Kernel, ifname: &str, intent: Intent) -> Result<Plan, String> {
        let mut plan = Plan { ifname: ifname.to_string(), ..Default::default() };
        let mut record = self.records.get(ifname).cloned().unwrap_or_default();
        let link = k.link(ifname);
        let facts = link.map(|l| self.facts(k, l));
        // Claimed: stronghost manages the interface (ARP and rp_filter hardening, link group,
        // receive filter). Routed: it also has addresses, so it gets its rules and table.
        let claimed = matches!(intent, Intent::Apply) && link.is_some();
        let applying = claimed && facts.as_ref().is_some_and(|f| !f.addresses.is_empty() || !f.addresses6.is_empty());
        if matches!(intent, Intent::Apply) && link.is_none() {
            return Err(format!("{ifname}: no such interface"));
        }
        if claimed && (!self.cfg.manages(ifname) || !filter::quotable(ifname)) {
            return Err(format!("{ifname} is not managed: check `interfaces` and `exclude` in {}", crate::config::DEFAULT_PATH));
        }
        let proto = self.cfg.protocol;
        let table = if claimed { Some(self.table_for(k, ifname)?) } else { self.tables.get(ifname).copied() };
        plan.table = table;

        // What stronghost owns for this interface now.
        let addrs: Vec<IpAddr> = facts
            .iter()
            .flat_map(|f| f.addresses.iter().map(|a| IpAddr::V4(a.0)).chain(f.addresses6.iter().map(|a| IpAddr::V6(a.0))))
            .collect();
        let cur_rules: Vec<Rule> = k
            .owned_rules(proto)
            .filter(|r| r.selector != Selector::All)
            .filter(|r| {
                Some(r.table) == table
                    || r.selector == Selector::Oif(ifname.to_string())
                    || matches!(r.selector, Selector::From(a) if addrs.contains(&a) && self.cfg.in_table_range(r.table))
            })
            .cloned()
            .collect();
        let cur_routes = table.map(|t| k.owned_routes(t, proto)).unwrap_or_default();

        let desired = match (&facts, applying, table) {
            (Some(f), true, Some(t)) => {
                let mut gw = match lease_in_force(&record, f.index) {
                    Some(l) => Gateways { gateway: l.gateway, routes: l.routes, ..Default::default() },
                    None => Gateways { gateway: k.main_gateway(f.index), ..Default::default() },
                };
                // DHCPv6 has no routes: the IPv6 router and on-link prefixes always come from main.
                if !f.addresses6.is_empty() {
                    gw.gateway6 = k.main_gateway6(f.index);
                    gw.onlink6 = k.onlink6(f.index);
                }
                let mut d = policy::desired(&self.cfg, f, t, &gw);
                // An interface that is down cannot carry routes (the kernel refuses and flushes
                // them); its table keeps only the terminator until it comes up again.
                if !link.is_some_and(|l| l.up) {
                    d.routes.retain(|r| r.kind == policy::RouteKind::Unreachable);
                }
                d
            }
            _ => policy::Desired::default(),
        };
        plan.families = (desired.rules.iter().any(|r| !r.v6), desired.rules.iter().any(|r| r.v6));
        (plan.rules_del, plan.rules_add) = diff(&cur_rules, &desired.rules);
        (plan.routes_del, plan.routes_add) = diff(&cur_routes, &desired.routes);

        if let Some(l) = link {
            let g = self.cfg.link_group;
            if claimed && l.group != g {
                if l.group != 0 {
                    return Err(format!(
                        "{ifname} is in link group {} (set by another tool); stronghost needs group {g} on managed interfaces. Exclude {ifname} or set link_group in {}",
                        l.group,
                        crate::config::DEFAULT_PATH
                    ));
                }
                record.saved_group.get_or_insert(l.group);
                plan.link_group = Some((l.index, g));
            } else if !claimed && l.group == g {
                plan.link_group = Some((l.index, record.saved_group.unwrap_or(0)));
            }
            plan.ifindex = Some(l.index);
            for (knob, want) in sysctl::wanted(&self.cfg) {
                // From the link dump; /proc only if the kernel did not include it.
                let Some(cur) = l.sysctl(knob).or_else(|| sysctl::read(ifname, knob).ok()) else { continue };
                if claimed && cur != want {
                    record.saved_sysctls.entry(knob.to_string()).or_insert(cur);
                    plan.sysctls.push((knob, want));
                } else if !claimed {
                    // Restore only what still holds our value: a later change by the admin stands.
                    if let Some(&old) = record.saved_sysctls.get(knob)
                        && cur == want
                        && old != want
                    {
                        plan.sysctls.push((knob, old));
                    }
                }
            }
        }
        record.applied = applying;
        plan.record = claimed.then_some(record);
        Ok(plan)
    }

    /// The shared rule and the filter for the set of interfaces applied once `plans` are done.
    pub fn plan_host(&mut self, k: &Kernel, plans: &[Plan]) -> HostPlan {
        let mut names = self.names.clone();
        for p in plans.iter().filter(|p| !p.orphans) {
            match &p.record {
                Some(_) => names.insert(p.ifname.clone()),
                None => names.remove(&p.ifname),
            };
        }
        // The shared rule stays while any interface is routed: one of these plans, or another
        // interface whose rules are in the kernel.
        let proto = self.cfg.protocol;
        // Per family: a host booted with ipv6.disable=1 cannot hold an IPv6 rule at all, so the
        // IPv6 one exists only while some interface has an IPv6 policy.
        let planned: BTreeSet<u32> = plans.iter().filter_map(|p| p.table).collect();
        let routed = |v6: bool| {
            plans.iter().any(|p| if v6 { p.families.1 } else { p.families.0 })
                || k.owned_rules(proto)
                    .any(|r| r.v6 == v6 && r.selector != Selector::All && self.cfg.in_table_range(r.table) && !planned.contains(&r.table))
        };
        let want_main: Vec<Rule> = [false, true].into_iter().filter(|&v6| routed(v6)).map(|v6| policy::main_rule(&self.cfg, v6)).collect();
        let cur_main: Vec<Rule> = k.owned_rules(proto).filter(|r| r.selector == Selector::All).cloned().collect();
        let (rules_del, rules_add) = diff(&cur_main, &want_main);
        let mut host = HostPlan { rules_add, rules_del, ..Default::default() };

        // Every claimed interface, addressed or not: an interface without an address must not
        // accept packets for the others' addresses either.
        let members: filter::Members = if self.cfg.receive_filter {
            names.iter().filter_map(|n| Some((n.clone(), filter::counter_name(*self.tables.get(n)?)))).collect()
        } else {
            filter::Members::new()
        };
        match filter::read() {
            Ok(cur) => host.filter = filter::plan(&cur, &members),
            // Without nft the routing half still works; say so once, with what to do.
            Err(e) if members.is_empty() => log::debug!("{e}"),
            Err(e) => host.filter_error = Some(e),
        }
        host
    }

    /// Makes the changes. Records and table allocations are written first, so a crash part-way
    /// leaves enough behind for the next run to converge and to restore what it changed.
    pub fn execute(&mut self, plans: &[Plan], host: &HostPlan) -> Result<(), String> {
        let proto = self.cfg.protocol;
        let mut errors = Vec::new();
        if self.tables_dirty {
            self.state.save_tables(&self.tables).map_err(|e| format!("saving table allocation: {e}"))?;
            self.tables_dirty = false;
        }
        for p in plans.iter().filter(|p| !p.orphans) {
            if let Some(r) = &p.record
                && self.loaded.get(&p.ifname) != Some(r)
            {
                self.state.save_record(&p.ifname, r).map_err(|e| format!("saving state of {}: {e}", p.ifname))?;
                self.loaded.insert(p.ifname.clone(), r.clone());
            }
        }
        // Every netlink write, in order, sent as one batch.
        let mut ops: Vec<(String, Op)> = host.rules_add.iter().map(|r| (String::new(), Op::AddRule(r.clone()))).collect();
        for p in plans {
            let name = || p.ifname.clone();
            if let Some(index) = p.ifindex.filter(|_| p.link_group.is_some() || !p.sysctls.is_empty()) {
                self.sysctl_writes += p.sysctls.len() as u32;
                ops.push((name(), Op::SetLink { index, group: p.link_group.map(|(_, g)| g), sysctls: p.sysctls.clone() }));
            }
            ops.extend(p.rules_del.iter().map(|r| (name(), Op::DelRule(r.clone()))));
            ops.extend(p.routes_del.iter().map(|r| (name(), Op::DelRoute(r.clone()))));
            ops.extend(p.routes_add.iter().map(|r| (name(), Op::AddRoute(r.clone()))));
            ops.extend(p.rules_add.iter().map(|r| (name(), Op::AddRule(r.clone()))));
        }
        ops.extend(host.rules_del.iter().map(|r| (String::new(), Op::DelRule(r.clone()))));
        let just_ops: Vec<Op> = ops.iter().map(|(_, o)| o.clone()).collect();
        match self.nl.batch(&just_ops, proto) {
            Ok(results) => {
                for ((ifname, op), r) in ops.iter().zip(results) {
                    if let Err(e) = r
                        && !op.harmless(e.raw_os_error())
                    {
                        errors.push(format!("{}: {e}", op.describe(ifname)));
                    }
                }
            }
            Err(e) => errors.push(format!("netlink: {e}")),
        }
        // Set over netlink, rp_filter does not invalidate the routes sockets have cached (early
        // demux would skip the new check for established connections); /proc would have. Do what
        // the sysctl handler does, once.
        if plans.iter().any(|p| p.sysctls.iter().any(|(k, _)| *k == sysctl::RP.0))
            && let Err(e) = sysctl::flush_route_cache()
        {
            errors.push(format!("flushing the route cache after changing rp_filter: {e}"));
        }
        if let Some(s) = &host.filter {
            self.nft_writes += 1;
            if let Err(e) = filter::apply(s) {
                errors.push(e);
            }
        }
        if let Some(e) = &host.filter_error {
            errors.push(format!("receive filter not applied: {e}"));
        }
        for p in plans.iter().filter(|p| !p.orphans) {
            match &p.record {
                Some(r) => {
                    self.records.insert(p.ifname.clone(), r.clone());
                    self.names.insert(p.ifname.clone());
                }
                None => {
                    if let Err(e) = self.state.remove_record(&p.ifname) {
                        errors.push(format!("removing state of {}: {e}", p.ifname));
                    }
                    self.records.remove(&p.ifname);
                    self.loaded.remove(&p.ifname);
                    self.names.remove(&p.ifname);
                }
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
    }

    pub fn writes(&self) -> Writes {
        Writes { netlink: self.nl.writes, sysctl: self.sysctl_writes, nft: self.nft_writes }
    }

    /// Plans for `sync`: every managed interface with an address is applied; every recorded one
    /// that is gone, unmanaged or without address is released; orphans in our range are removed.
    ///
    /// An interface not yet managed whose gateway nobody can tell (no lease seen, no default route
    /// through it) is left alone until its next lease or address event: taking it now would refuse
    /// its off-link traffic and cut the connections it carries (an SSH session when the package is
    /// installed, say). `apply IFACE` takes it regardless.
    pub fn plan_sync(&mut self, k: &Kernel, release_all: bool) -> (Vec<Plan>, Vec<String>) {
        let mut plans = Vec::new();
        let mut errors = Vec::new();
        let mut names: BTreeSet<String> = self.records.keys().cloned().collect();
        for l in k.links.iter().filter(|_| !release_all) {
            if !self.records.contains_key(&l.name) && self.cfg.manages(&l.name) && filter::quotable(&l.name) {
                let f = self.facts(k, l);
                if f.addresses.is_empty() && f.addresses6.is_empty() {
                    continue;
                }
                let v4_unknown =
                    !f.addresses.is_empty() && lease_in_force(&Record::default(), l.index).is_none() && k.main_gateway(l.index).is_none();
                let v6_unknown = f.addresses.is_empty() && k.main_gateway6(l.index).is_none();
                if v4_unknown || v6_unknown {
                    log::info!(
                        "{}: no gateway known yet (no lease seen, no default route through it); left as it is until its next lease or address change. `stronghost apply {}` manages it now, refusing its off-link traffic until a gateway is known",
                        l.name,
                        l.name
                    );
                    continue;
                }
                names.insert(l.name.clone());
            }
        }
        for n in &names {
            let manage = !release_all && self.cfg.manages(n) && k.link(n).is_some();
            let intent = if manage { Intent::Apply } else { Intent::Release };
            match self.plan_interface(k, n, intent) {
                Ok(p) => plans.push(p),
                Err(e) => errors.push(e),
            }
        }
        // Orphans: our rules and routes in our range whose table no live record uses (a crash
        // between allocation and record, an interface renamed while nothing watched).
        let live: BTreeSet<u32> = plans.iter().filter(|p| p.record.as_ref().is_some_and(|r| r.applied)).filter_map(|p| p.table).collect();
        let mut orphan = Plan { ifname: String::new(), record: None, ..Default::default() };
        let proto = self.cfg.protocol;
        let claimed: Vec<Rule> = plans.iter().flat_map(|p| p.rules_del.iter().cloned()).collect();
        for r in k.owned_rules(proto) {
            if r.selector != Selector::All && self.cfg.in_table_range(r.table) && !live.contains(&r.table) && !claimed.contains(r) {
                orphan.rules_del.push(r.clone());
            }
        }
        let claimed: Vec<Route> = plans.iter().flat_map(|p| p.routes_del.iter().cloned()).collect();
        for t in self.cfg.table_min..=self.cfg.table_max {
            if !live.contains(&t) {
                orphan.routes_del.extend(k.owned_routes(t, proto).into_iter().filter(|r| !claimed.contains(r)));
            }
        }
        if !orphan.rules_del.is_empty() || !orphan.routes_del.is_empty() {
            orphan.ifname = "(orphans)".into();
            orphan.orphans = true;
            plans.push(orphan);
        }
        (plans, errors)
    }
}

/// The rules and routes plans add and remove, by their `ip` description: the watcher uses them to
/// notice an object it added being removed behind its back, again and again.
pub fn touched(plans: &[Plan], host: &HostPlan) -> (Vec<String>, Vec<String>) {
    let rule = |r: &Rule| format!("{} rule {r}", r.ip());
    let route = |r: &Route| format!("{} route {r}", r.ip());
    let mut added: Vec<String> = host.rules_add.iter().map(rule).collect();
    let mut removed: Vec<String> = host.rules_del.iter().map(rule).collect();
    for p in plans {
        added.extend(p.rules_add.iter().map(rule).chain(p.routes_add.iter().map(route)));
        removed.extend(p.rules_del.iter().map(rule).chain(p.routes_del.iter().map(route)));
    }
    (added, removed)
}

/// The equivalent commands for a plan, for `stronghost plan` and for logs.
pub fn render(plans: &[Plan], host: &HostPlan, protocol: u8) -> Vec<String> {
    let mut out = Vec::new();
    for r in &host.rules_add {
        out.push(format!("{} rule add {r} protocol {protocol}", r.ip()));
    }
    for p in plans {
        if let Some((_, g)) = p.link_group {
            out.push(format!("ip link set dev {} group {g}", p.ifname));
        }
        out.extend(p.rules_del.iter().map(|r| format!("{} rule del {r}", r.ip())));
        out.extend(p.routes_del.iter().map(|r| format!("{} route del {r}", r.ip())));
        out.extend(p.routes_add.iter().map(|r| format!("{} route add {r} proto {protocol}", r.ip())));
        out.extend(p.rules_add.iter().map(|r| format!("{} rule add {r} protocol {protocol}", r.ip())));
        out.extend(p.sysctls.iter().map(|(k, v)| sysctl::command(&p.ifname, k, *v)));
    }
    for r in &host.rules_del {
        out.push(format!("{} rule del {r}", r.ip()));
    }
    if let Some(c) = &host.filter {
        out.push(c.describe());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator: the properties below hold for every seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_rules(rng: &mut Rng, n: u64) -> Vec<Rule> {
        (0..rng.below(n))
            .map(|_| Rule {
                priority: 4110 + 10 * rng.below(2) as u32,
                v6: false,
                selector: Selector::From(IpAddr::V4(Ipv4Addr::new(198, 51, 100, rng.below(6) as u8))),
                table: 4101 + rng.below(3) as u32,
                suppress_ifgroup: None,
            })
            .collect()
    }

    /// Applying a plan reaches the desired state exactly (duplicates included), and a converged
    /// state plans nothing — for random kernel states and random desired policies.
    #[test]
    fn diff_converges_and_converged_plans_nothing() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        for _ in 0..20_000 {
            let current = random_rules(&mut rng, 8);
            let mut desired = random_rules(&mut rng, 6);
            desired.dedup();
            desired.sort();
            desired.dedup();
            let (del, add) = diff(&current, &desired);
            let mut state = current.clone();
            for d in &del {
                let i = state.iter().position(|x| x == d).expect("deleting something that is there");
                state.remove(i);
            }
            state.extend(add);
            state.sort();
            assert_eq!(state, desired);
            let (del, add) = diff(&state, &desired);
            assert!(del.is_empty() && add.is_empty());
        }
    }
}
