//! Deciding what to change: pure functions from what was gathered — the kernel snapshot,
//! stronghost's records and table allocations, the stacks' leases, the receive filter as it is —
//! to plans. Nothing here reads or writes anything: gather/ reads, execute/ writes.
//! Table allocations are part of the plan (the executor saves them first).

pub mod filter;
pub mod policy;

use crate::config::Config;
use crate::error::Error;
use crate::model::kernel::Kernel;
use crate::model::kernel::Link;
use crate::model::lease::Lease;
use crate::model::net::{IpNet, Ipv4Net};
use crate::model::record::Record;
use crate::model::routing::{Gateways, InterfaceFacts, RT_TABLE_MAIN, Route, RouteKind, Rule, Selector};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;

/// Everything a decision looks at, read under the host-wide lock before deciding.
pub struct Gathered {
    pub kernel: Kernel,
    /// Records of the interfaces being decided (every one for `sync`), as the decision should see
    /// them: a hook's new lease is put here before planning.
    pub records: BTreeMap<String, Record>,
    /// The same records as they are on disk, so the executor writes only what changed.
    pub on_disk: BTreeMap<String, Record>,
    /// Names of every interface stronghost has a record for.
    pub names: crate::model::record::Names,
    /// Interface → table, as allocated so far.
    pub tables: crate::model::record::Tables,
    /// Leases that network stacks keep themselves (systemd-networkd), by interface index.
    pub stack_leases: BTreeMap<u32, Lease>,
    /// The receive filter as it is, or why it could not be read.
    pub filter: Result<crate::model::table::Current, crate::error::FilterError>,
    /// The kernel snapshot holds every link and route (not just one interface's).
    pub complete: bool,
    /// Names of every link that exists, read for a one-interface gather that needs a table (a
    /// full gather's snapshot holds every link): a table whose interface is gone can be given to
    /// another.
    pub present: Option<BTreeSet<String>>,
    /// Interfaces renamed since their record was written (old name, new name): record, lease and
    /// table moved to the new name before planning.
    pub renames: Vec<(String, String)>,
}

impl Gathered {
    /// Moves the records and tables of renamed interfaces to their new names. A record follows
    /// its interface index: a gone name whose index now carries a name without a record.
    pub fn follow_renames(&mut self) {
        let k = &self.kernel;
        let renames: Vec<(String, String)> = self
            .records
            .iter()
            .filter(|(old, _)| k.link(old).is_none())
            .filter_map(|(old, r)| {
                let l = k.link_by_index(r.ifindex?)?;
                (!self.records.contains_key(&l.name)).then(|| (old.clone(), l.name.clone()))
            })
            .collect();
        for (old, new) in &renames {
            if let Some(r) = self.records.remove(old) {
                self.records.insert(new.clone(), r);
            }
            let names = Rc::make_mut(&mut self.names);
            names.remove(old);
            names.insert(new.clone());
            let tables = Rc::make_mut(&mut self.tables);
            if let Some(t) = tables.remove(old) {
                tables.insert(new.clone(), t);
            }
        }
        self.renames = renames;
    }
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
    /// The addresses the interface has a `from` rule for once the plan is done: its pairs in the
    /// receive filter's fast path.
    pub own: Vec<IpAddr>,
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
    pub filter: Option<crate::model::table::Change>,
    pub filter_error: Option<crate::error::FilterError>,
    /// A family gets its first policy in a run that read one interface, which cannot tell which
    /// networks are connected through unmanaged interfaces: a pass over the whole host follows.
    pub needs_host_pass: bool,
    /// The receive filter's table must be created or rewritten whole, and this run read one
    /// interface: the host pass plans it from every interface (a table written from one
    /// interface's view would drop the others' traffic as "reverse path").
    pub filter_in_host_pass: bool,
}

/// Everything one run decided.
#[derive(Debug, Default)]
pub struct Plans {
    pub interfaces: Vec<Plan>,
    pub host: HostPlan,
    /// The table allocation to save first, when planning changed it.
    pub tables: Option<BTreeMap<String, u32>>,
}

/// What a client's event asks of the interface itself, when stronghost configures it in the
/// client's place (udhcpc runs no configuration script of its own on Debian).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ClientPlan {
    pub ifindex: u32,
    pub ifname: String,
    /// (address, prefix length) to remove / to add (or refresh).
    pub address_del: Option<(std::net::Ipv4Addr, u8)>,
    pub address_add: Option<(std::net::Ipv4Addr, u8)>,
    /// The lease's default route in main.
    pub route_del: Option<Route>,
    pub route_add: Option<Route>,
    /// udhcpc needs the link up before its first lease.
    pub link_up: bool,
}

#[derive(Clone, Copy, Debug)]
pub enum Intent {
    Apply,
    Release,
}

/// Deletions and additions that turn `current` into `desired`.
pub fn diff<T: Clone + PartialEq>(current: &[T], desired: &[T]) -> (Vec<T>, Vec<T>) {
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

pub struct Planner<'a> {
    cfg: &'a Config,
    g: &'a Gathered,
    tables: crate::model::record::Tables,
    tables_changed: bool,
    /// Addresses on more than one managed interface (a VIP moved by hand, a mistake), each with
    /// the index of the one that gets its `from` rule: the lowest. Every planner, of one
    /// interface or of the host, decides the same, so they never undo each other's rule.
    owners: BTreeMap<IpAddr, u32>,
}

impl<'a> Planner<'a> {
    pub fn new(cfg: &'a Config, g: &'a Gathered) -> Planner<'a> {
        Planner { cfg, g, tables: g.tables.clone(), tables_changed: !g.renames.is_empty(), owners: shared_addresses(cfg, &g.kernel) }
    }

    /// The plans, with the table allocation they made.
    pub fn finish(self, interfaces: Vec<Plan>) -> Plans {
        let host = self.host(&interfaces);
        Plans { interfaces, host, tables: self.tables_changed.then(|| Rc::unwrap_or_clone(self.tables)) }
    }

    /// A hook's lease, else the stack's own; `None`: the gateway comes from main (static
    /// configuration).
    fn lease_in_force(&self, record: &Record, ifindex: u32) -> Option<Lease> {
        record.lease.clone().or_else(|| self.g.stack_leases.get(&ifindex).cloned())
    }

    /// The IPv4 gateway and routes for K, and where they came from, in order of authority: the
    /// admin's `gateway.K`; a DHCP lease (a hook's, networkd's, dhclient's lease file); a default
    /// route through K in main; a gateway known for another interface that is on one of K's
    /// networks — on one segment it is on-link for both (addresses added by hand or by static
    /// configuration next to DHCP ones).
    fn gateways(&self, record: &Record, f: &InterfaceFacts) -> (Gateways, Option<String>) {
        let lease = self.lease_in_force(record, f.index);
        let routes = lease.as_ref().map(|l| l.routes.clone()).unwrap_or_default();
        if let Some(&g) = self.cfg.gateways.get(&f.name) {
            return (Gateways { gateway: Some(g), routes, ..Default::default() }, Some("configuration".into()));
        }
        if let Some(l) = lease {
            // A DHCP server speaks for its network: a lease without a router means there is none.
            // A static stanza without `gateway` only means the admin did not write one there.
            if l.gateway.is_some() || !l.is_static() {
                let from = l.gateway.map(|_| format!("lease ({})", l.source));
                return (Gateways { gateway: l.gateway, routes, ..Default::default() }, from);
            }
        }
        let k = &self.g.kernel;
        if let Some(g) = k.main_gateway(f.index) {
            return (Gateways { gateway: Some(g), ..Default::default() }, Some("main table".into()));
        }
        let nets: Vec<Ipv4Net> = f.addresses.iter().filter(|(_, l)| *l < 32).map(|&(a, l)| Ipv4Net::containing(a, l)).collect();
        let own = |g: &Ipv4Addr| f.addresses.iter().any(|(a, _)| a == g);
        let known = k
            .default_gateways(self.cfg.protocol)
            .into_iter()
            .chain(self.cfg.gateways.values().copied())
            .chain(self.g.records.values().filter_map(|r| r.lease.as_ref()?.gateway))
            .chain(self.g.stack_leases.values().filter_map(|l| l.gateway));
        for g in known {
            if !own(&g)
                && let Some(n) = nets.iter().find(|n| n.contains(g))
            {
                return (Gateways { gateway: Some(g), ..Default::default() }, Some(format!("another interface on {n}")));
            }
        }
        (Gateways::default(), None)
    }

    /// The interface's table: the one it had, or the lowest free one in range that nobody else
    /// uses. A table holding anything stronghost did not write is never taken.
    fn table_for(&mut self, ifname: &str) -> Result<u32, Error> {
        let (k, proto) = (&self.g.kernel, self.cfg.protocol);
        if let Some(&t) = self.tables.get(ifname)
            && self.cfg.in_table_range(t)
        {
            if let Some(what) = k.foreign_in_table(t, proto) {
                return Err(Error::ForeignInTable { ifname: ifname.into(), table: t, what });
            }
            return Ok(t);
        }
        let taken: BTreeSet<u32> = self.tables.values().copied().collect();
        let free = (self.cfg.table_min..=self.cfg.table_max).find(|t| !taken.contains(t) && k.foreign_in_table(*t, proto).is_none());
        // None free: take the table of an interface that is gone (a USB NIC, a container's link,
        // a ppp session). Only then: an interface keeps its number across reboots while it exists.
        let reclaimed = || {
            let exists = |n: &str| match &self.g.present {
                Some(present) => Some(present.contains(n)),
                None => self.g.complete.then(|| k.link(n).is_some()),
            };
            self.tables
                .iter()
                .filter(|(n, t)| {
                    exists(n) == Some(false)
                        && !self.g.names.contains(*n)
                        && self.cfg.in_table_range(**t)
                        && k.foreign_in_table(**t, proto).is_none()
                })
                .min_by_key(|(_, t)| **t)
                .map(|(n, t)| (n.clone(), *t))
        };
        let t = match free {
            Some(t) => t,
            None => {
                let (gone, t) = reclaimed().ok_or_else(|| Error::NoFreeTable {
                    min: self.cfg.table_min,
                    max: self.cfg.table_max,
                    config: self.cfg.path.clone(),
                })?;
                Rc::make_mut(&mut self.tables).remove(&gone);
                t
            }
        };
        Rc::make_mut(&mut self.tables).insert(ifname.to_string(), t);
        self.tables_changed = true;
        Ok(t)
    }

    /// The interface as the policy sees it: without IPv6 addresses when `ipv6 = no`.
    pub fn facts(&self, link: &Link) -> InterfaceFacts {
        facts(self.cfg, &self.g.kernel, link)
    }

    pub fn interface(&mut self, ifname: &str, intent: Intent) -> Result<Plan, Error> {
        let (cfg, k) = (self.cfg, &self.g.kernel);
        let mut plan = Plan { ifname: ifname.to_string(), ..Default::default() };
        let mut record = self.g.records.get(ifname).cloned().unwrap_or_default();
        let link = k.link(ifname);
        let facts = link.map(|l| self.facts(l));
        // Claimed: stronghost manages the interface (ARP and rp_filter hardening, link group,
        // receive filter). Routed: it also has addresses, so it gets its rules and table.
        let claimed = matches!(intent, Intent::Apply) && link.is_some();
        let applying = claimed && facts.as_ref().is_some_and(|f| !f.addresses.is_empty() || !f.addresses6.is_empty());
        if matches!(intent, Intent::Apply) && link.is_none() {
            return Err(Error::NoSuchInterface { ifname: ifname.into() });
        }
        if claimed && !cfg.manages(ifname) {
            return Err(Error::NotManaged { ifname: ifname.into(), config: cfg.path.clone() });
        }
        let proto = cfg.protocol;
        let table = if claimed { Some(self.table_for(ifname)?) } else { self.tables.get(ifname).copied() };
        let k = &self.g.kernel;
        plan.table = table;

        // What stronghost owns for this interface now.
        let addrs: Vec<IpAddr> = facts
            .iter()
            .flat_map(|f| f.addresses.iter().map(|a| IpAddr::V4(a.0)).chain(f.addresses6.iter().map(|a| IpAddr::V6(a.0))))
            .collect();
        // An address another managed interface holds too is this one's only if its index is the
        // lowest: the other's `from` rule for it is not this plan's to remove.
        let index = link.map(|l| l.index);
        let owners = &self.owners;
        let owns = |a: &IpAddr| owners.get(a).is_none_or(|o| Some(*o) == index);
        let cur_rules: Vec<Rule> = k
            .owned_rules(proto)
            .filter(|r| r.selector != Selector::All)
            .filter(|r| {
                Some(r.table) == table
                    || matches!(&r.selector, Selector::Oif(d) if d == ifname)
                    || matches!(r.selector, Selector::From(a) if addrs.contains(&a) && owns(&a) && cfg.in_table_range(r.table))
            })
            .cloned()
            .collect();
        let cur_routes = table.map(|t| k.owned_routes(t, proto)).unwrap_or_default();

        let desired = match (&facts, applying, table) {
            (Some(f), true, Some(t)) => {
                let (mut gw, from) = self.gateways(&record, f);
                record.gateway_from = from.filter(|_| !f.addresses.is_empty());
                // DHCPv6 has no routes: the IPv6 router and on-link prefixes always come from main.
                if !f.addresses6.is_empty() {
                    gw.gateway6 = k.main_gateway6(f.index);
                    gw.onlink6 = k.onlink6(f.index);
                }
                let mut d = policy::desired(cfg, f, t, &gw);
                d.rules.retain(|r| !matches!(&r.selector, Selector::From(a) if !owns(a)));
                // An interface that is down cannot carry routes (the kernel refuses and flushes
                // them); its table keeps only the terminator until it comes up again.
                if !link.is_some_and(|l| l.up) {
                    d.routes.retain(|r| r.kind == RouteKind::Unreachable);
                }
                d
            }
            _ => crate::model::routing::Desired::default(),
        };
        plan.families = (desired.rules.iter().any(|r| !r.v6), desired.rules.iter().any(|r| r.v6));
        plan.own = desired.rules.iter().filter_map(Rule::source).collect();
        (plan.rules_del, plan.rules_add) = diff(&cur_rules, &desired.rules);
        (plan.routes_del, plan.routes_add) = diff(&cur_routes, &desired.routes);

        if let Some(l) = link {
            let g = cfg.link_group;
            if claimed && l.group != g {
                if l.group != 0 {
                    return Err(Error::ForeignLinkGroup { ifname: ifname.into(), group: l.group, want: g, config: cfg.path.clone() });
                }
                record.saved_group.get_or_insert(l.group);
                plan.link_group = Some((l.index, g));
            } else if !claimed && l.group == g {
                plan.link_group = Some((l.index, record.saved_group.unwrap_or(0)));
            }
            plan.ifindex = Some(l.index);
            if claimed {
                record.ifindex = Some(l.index);
            }
            for (knob, want) in policy::sysctls_wanted(cfg) {
                let Some(cur) = l.sysctl(knob) else { continue };
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
    pub fn host(&self, plans: &[Plan]) -> HostPlan {
        let (cfg, k) = (self.cfg, &self.g.kernel);
        // The names on record once the plans are done: the plans' say over what is on disk. Built
        // whole only where all of them are needed — a host may have thousands.
        let planned: BTreeMap<&str, bool> = plans.iter().filter(|p| !p.orphans).map(|p| (p.ifname.as_str(), p.record.is_some())).collect();
        let named = |n: &str| planned.get(n).copied().unwrap_or_else(|| self.g.names.contains(n));
        let candidates = || self.g.names.iter().map(String::as_str).chain(planned.keys().copied());
        let all_names = || -> BTreeSet<String> { candidates().filter(|n| named(n)).map(str::to_string).collect() };
        // The shared rules stay while any interface is routed: one of these plans, or another
        // interface whose rules are in the kernel. Per family: a host booted with ipv6.disable=1
        // cannot hold an IPv6 rule at all, so IPv6 ones exist only while some interface has an
        // IPv6 policy.
        let proto = cfg.protocol;
        let planned: BTreeSet<u32> = plans.iter().filter_map(|p| p.table).collect();
        let others_routed = |v6: bool| {
            k.owned_rules(proto)
                .any(|r| r.v6 == v6 && r.selector != Selector::All && cfg.in_table_range(r.table) && !planned.contains(&r.table))
        };
        let routed = |v6: bool| plans.iter().any(|p| if v6 { p.families.1 } else { p.families.0 }) || others_routed(v6);
        let routed_before =
            |v6: bool| k.owned_rules(proto).any(|r| r.v6 == v6 && r.selector != Selector::All && cfg.in_table_range(r.table));
        // The networks directly connected through unmanaged interfaces, as main has them now; a
        // gather of one interface does not see which interfaces those are, so it keeps the rules
        // as they are (the watcher and `sync` keep them current) — but for the networks of the
        // interfaces it claims: a network a managed interface is on is that interface's own.
        let connected: Vec<IpNet> = if self.g.complete {
            k.connected_unmanaged(cfg.link_group, &all_names()).into_iter().map(|(n, _)| n).collect()
        } else {
            let claimed: Vec<IpNet> = plans
                .iter()
                .filter(|p| p.record.as_ref().is_some_and(|r| r.applied))
                .filter_map(|p| k.link(&p.ifname))
                .flat_map(|l| k.addrs_of(l.index))
                .map(|a| IpNet::containing(a.addr, a.prefix_len))
                .collect();
            k.owned_rules(proto)
                .filter_map(|r| if let Selector::To(n) = r.selector { Some(n) } else { None })
                .filter(|n| !claimed.contains(n))
                .collect()
        };
        let mut want: Vec<Rule> = connected.into_iter().filter(|n| routed(n.is_v6())).map(|n| policy::connected_rule(cfg, n)).collect();
        want.extend([false, true].into_iter().filter(|v6| routed(*v6)).map(|v6| policy::unmarked_rule(cfg, v6)));
        // The receive filter marks connections that arrive on unmanaged interfaces.
        want.extend(
            [false, true].into_iter().filter(|v6| cfg.receive_filter && routed(*v6)).map(|v6| policy::unmanaged_mark_rule(cfg, v6)),
        );
        // The mark tree's inner nodes above every routed interface's leaf. A gather of one
        // interface knows the leaves of its plans only: it adds their paths and removes nothing
        // (a node without leaves costs one comparison; the watcher and `sync` remove it).
        let leaves: Vec<u32> = if self.g.complete {
            all_names().iter().filter_map(|n| self.tables.get(n).copied()).collect()
        } else {
            planned.iter().copied().collect()
        };
        for v6 in [false, true].into_iter().filter(|v6| routed(*v6)) {
            want.extend(policy::mark_tree(cfg, leaves.iter().copied(), v6));
        }
        // The shared rules: `to` rules into main, the unmarked packets' shortcut, the unmanaged
        // interfaces' mark, the mark tree (and the single `from all` rule of earlier versions).
        let cur: Vec<Rule> = k
            .owned_rules(proto)
            .filter(|r| {
                (r.table == RT_TABLE_MAIN && matches!(r.selector, Selector::All | Selector::To(_) | Selector::Fwmark(..)))
                    || matches!(r.selector, Selector::Unmarked(_))
                    || r.is_mark_tree_node()
            })
            .cloned()
            .collect();
        let (mut rules_del, rules_add) = diff(&cur, &want);
        if !self.g.complete {
            rules_del.retain(|r| !r.is_mark_tree_node());
        }
        let needs_host_pass = !self.g.complete && [false, true].into_iter().any(|v6| routed(v6) && !routed_before(v6));
        let mut host = HostPlan { rules_add, rules_del, needs_host_pass, ..Default::default() };

        // Every claimed interface, addressed or not: an interface without an address must not
        // accept packets for the others' addresses either.
        // A filter read for one interface is planned for that one alone (crate::plan::filter::plan): the want
        // names it alone, not the thousands of others a host may have.
        let scope = self.g.filter.as_ref().ok().and_then(|c| c.scope.as_deref());
        // (A table outside the range, after an edit of `tables`, is given up by the interface's
        // own plan before it gets a member's mark.)
        let member = |n: &str| Some((n.to_string(), *self.tables.get(n)?)).filter(|(_, t)| cfg.in_table_range(*t));
        let (members, others): (crate::model::table::Members, bool) = match scope {
            _ if !cfg.receive_filter => Default::default(),
            Some(s) => (
                Some(s).filter(|s| named(s)).and_then(member).into_iter().collect(),
                candidates().any(|n| n != s && named(n) && self.tables.contains_key(n)),
            ),
            None => (all_names().iter().filter_map(|n| member(n)).collect(), false),
        };
        let indexes = members.keys().filter_map(|n| k.link(n)).map(|l| l.index).collect();
        // The fast path's pairs follow the `from` rules: a member's planned ones, or the ones in
        // the kernel for a member without a plan here (a batch of events reads the host whole
        // but plans its interfaces only).
        let by_plan: BTreeMap<&str, &Plan> = plans.iter().filter(|p| !p.orphans).map(|p| (p.ifname.as_str(), p)).collect();
        let mut from_rules: BTreeMap<u32, Vec<IpAddr>> = BTreeMap::new();
        if members.keys().any(|n| !by_plan.contains_key(n.as_str())) {
            for r in k.owned_rules(proto) {
                if let Some(a) = r.source() {
                    from_rules.entry(r.table).or_default().push(a);
                }
            }
        }
        let own = members
            .iter()
            .filter_map(|(n, t)| {
                let index = k.link(n)?.index;
                let addrs = by_plan.get(n.as_str()).map_or_else(|| from_rules.get(t).cloned().unwrap_or_default(), |p| p.own.clone());
                Some(addrs.into_iter().map(move |a| (a, index)))
            })
            .flatten()
            .collect();
        // A plan for a link that is gone decides the pairs under its index on record.
        let own_indexes =
            plans.iter().filter_map(|p| p.ifindex.or_else(|| self.g.records.get(&p.ifname).and_then(|r| r.ifindex))).collect();
        let want = crate::model::table::Want {
            members,
            indexes,
            exact: self.g.complete,
            shape: crate::model::table::Shape::of(cfg),
            own,
            own_indexes,
            others,
        };
        match &self.g.filter {
            Ok(cur) => {
                host.filter = crate::plan::filter::plan(cur, &want);
                if !self.g.complete
                    && matches!(host.filter, Some(crate::model::table::Change::Create(_) | crate::model::table::Change::Repair { .. }))
                {
                    host.filter = None;
                    host.filter_in_host_pass = true;
                    host.needs_host_pass = true;
                }
            }
            // Without nft the routing half still works; say so once, with what to do.
            Err(e) if want.members.is_empty() => log::debug!("{e}"),
            Err(e) => host.filter_error = Some(e.clone()),
        }
        host
    }

    /// Plans for `sync`: every managed interface with an address is applied; every recorded one
    /// that is gone or unmanaged is released; orphans in our range are removed. An interface whose
    /// gateway nobody can tell is applied all the same (its off-link traffic is refused, and
    /// `check` says so): the hooks and the watcher do the same, so the host does not depend on
    /// which of them saw the address first.
    pub fn sync(&mut self, release_all: bool) -> (Vec<Plan>, Vec<Error>) {
        let (cfg, k) = (self.cfg, &self.g.kernel);
        let mut plans = Vec::new();
        let mut errors = Vec::new();
        let mut names: BTreeSet<String> = self.g.records.keys().cloned().collect();
        for l in k.links.iter().filter(|_| !release_all) {
            if !self.g.records.contains_key(&l.name) && cfg.manages(&l.name) && crate::model::net::check_ifname(&l.name).is_ok() {
                let f = self.facts(l);
                if !f.addresses.is_empty() || !f.addresses6.is_empty() {
                    names.insert(l.name.clone());
                }
            }
        }
        let lowers: Vec<String> = names.iter().filter_map(|n| self.lower_to_claim(n)).collect();
        names.extend(lowers);
        for n in &names {
            let manage = !release_all && cfg.manages(n) && k.link(n).is_some();
            let intent = if manage { Intent::Apply } else { Intent::Release };
            match self.interface(n, intent) {
                Ok(p) => plans.push(p),
                Err(e) => errors.push(e),
            }
        }
        if let Some(o) = self.orphans(&plans) {
            plans.push(o);
        }
        (plans, errors)
    }

    /// The device under `ifname` (a macvlan's or ipvlan's) when it must be claimed with it: in
    /// this snapshot, managed by the configuration, not claimed yet, and without addresses of its
    /// own. It is on the child's segment and, unclaimed, answers ARP for the child's addresses with
    /// its own MAC (arp_ignore=0) and accepts their traffic; claimed, it gets the ARP knobs and the
    /// receive filter as any managed interface without an address. (One with addresses is
    /// claimed for them anyway.)
    pub fn lower_to_claim(&self, ifname: &str) -> Option<String> {
        let k = &self.g.kernel;
        let lower = k.link_by_index(k.link(ifname)?.lower?)?;
        let f = self.facts(lower);
        let addressed = !f.addresses.is_empty() || !f.addresses6.is_empty();
        claims_lower(self.cfg, &lower.name, self.g.records.contains_key(&lower.name), addressed).then(|| lower.name.clone())
    }

    /// Our rules and routes in our range whose table no live record uses (a crash between
    /// allocation and record, an interface renamed while nothing watched).
    fn orphans(&self, plans: &[Plan]) -> Option<Plan> {
        let (cfg, k) = (self.cfg, &self.g.kernel);
        let live: BTreeSet<u32> = plans.iter().filter(|p| p.record.is_some()).filter_map(|p| p.table).collect();
        let mut orphan = Plan { ifname: "(orphans)".into(), orphans: true, ..Default::default() };
        let claimed: Vec<&Rule> = plans.iter().flat_map(|p| p.rules_del.iter()).collect();
        for r in k.owned_rules(cfg.protocol) {
            if r.selector != Selector::All && cfg.in_table_range(r.table) && !live.contains(&r.table) && !claimed.contains(&r) {
                orphan.rules_del.push(r.clone());
            }
        }
        let claimed: Vec<&Route> = plans.iter().flat_map(|p| p.routes_del.iter()).collect();
        for t in cfg.table_min..=cfg.table_max {
            if !live.contains(&t) {
                orphan.routes_del.extend(k.owned_routes(t, cfg.protocol).into_iter().filter(|r| !claimed.contains(&r)));
            }
        }
        (!orphan.rules_del.is_empty() || !orphan.routes_del.is_empty()).then_some(orphan)
    }
}

/// Whether the device under a claimed macvlan or ipvlan child is claimed with it
/// (`Planner::lower_to_claim`): not claimed yet, managed by the configuration, a name stronghost
/// can manage, and no address of its own (one with addresses is claimed for them anyway).
pub fn claims_lower(cfg: &Config, name: &str, recorded: bool, addressed: bool) -> bool {
    !recorded && !addressed && cfg.manages(name) && crate::model::net::check_ifname(name).is_ok()
}

/// Addresses that more than one managed interface holds, each with the lowest of their indexes
/// (`Planner::owners`).
pub fn shared_addresses(cfg: &Config, k: &Kernel) -> BTreeMap<IpAddr, u32> {
    let mut held: Vec<(IpAddr, u32)> = k
        .addrs
        .iter()
        .filter(|a| a.gets_policy(cfg.ipv6) && k.link_by_index(a.index).is_some_and(|l| cfg.manages(&l.name)))
        .map(|a| (a.addr, a.index))
        .collect();
    held.sort_unstable();
    held.dedup();
    let mut owners = BTreeMap::new();
    // Sorted: the first pair of a group holds its lowest index.
    for w in held.windows(2).filter(|w| w[0].0 == w[1].0) {
        owners.entry(w[0].0).or_insert(w[0].1);
    }
    owners
}

/// The interface as the policy sees it: without IPv6 addresses when `ipv6 = no`.
pub fn facts(cfg: &Config, k: &Kernel, link: &Link) -> InterfaceFacts {
    let mut f = k.facts(link);
    if !cfg.ipv6 {
        f.addresses6.clear();
    }
    f
}

/// What udhcpc's event asks of the interface: the new lease's address and main default route
/// (marked with stronghost's protocol), the previous lease's removed where they changed.
pub fn client(k: &Kernel, ifname: &str, old: Option<&Lease>, new: Option<&Lease>) -> Option<ClientPlan> {
    let link = k.link(ifname)?;
    let metric = 1000 + link.index;
    let default_via = |l: &Lease| {
        l.gateway.map(|g| Route {
            table: RT_TABLE_MAIN,
            dst: Ipv4Net::DEFAULT.into(),
            metric,
            kind: RouteKind::Via {
                dev: ifname.to_string(),
                oif: link.index,
                gateway: IpAddr::V4(g),
                src: Some(IpAddr::V4(l.address)),
                onlink: !Ipv4Net::containing(l.address, l.prefix_len).contains(g),
            },
        })
    };
    let mut p = ClientPlan { ifindex: link.index, ifname: ifname.into(), ..Default::default() };
    if let Some(o) = old {
        if new.is_none_or(|n| n.address != o.address || n.prefix_len != o.prefix_len) {
            p.address_del = Some((o.address, o.prefix_len));
        }
        if new.is_none_or(|n| default_via(n) != default_via(o)) {
            p.route_del = default_via(o);
        }
    }
    match new {
        Some(n) => {
            p.address_add = Some((n.address, n.prefix_len));
            p.route_add = default_via(n);
        }
        // deconfig also comes first, before any lease: udhcpc needs the link up.
        None => p.link_up = !link.up,
    }
    Some(p)
}

impl ClientPlan {
    pub fn render(&self) -> Vec<String> {
        let dev = &self.ifname;
        let mut out = Vec::new();
        if let Some(r) = &self.route_del {
            out.push(format!("ip route del {r}"));
        }
        if let Some((a, l)) = self.address_del {
            out.push(format!("ip address del {a}/{l} dev {dev}"));
        }
        if self.link_up {
            out.push(format!("ip link set {dev} up"));
        }
        if let Some((a, l)) = self.address_add {
            out.push(format!("ip address replace {a}/{l} dev {dev}"));
        }
        if let Some(r) = &self.route_add {
            out.push(format!("ip route add {r}"));
        }
        out
    }
}
/// One write of a set of plans. `steps` lists them in the order `execute` makes them; the
/// commands shown (`render`), their number (`count`) and the watcher's record of what it touched
/// (`touched`) are all made from that one list.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    AddRule(&'a Rule),
    DelRule(&'a Rule),
    AddRoute(&'a Route),
    DelRoute(&'a Route),
    /// The link's group and IPv4 sysctls, in one netlink message (index: the link's, if it is
    /// there to be changed).
    Link {
        ifname: &'a str,
        index: Option<u32>,
        group: Option<u32>,
        sysctls: &'a [(&'static str, u32)],
    },
    /// The nftables table, changed last.
    Filter(&'a crate::model::table::Change),
}

impl Step<'_> {
    /// The equivalent commands (`ip`, `sysctl`, `nft`).
    pub fn commands(&self, protocol: u8) -> Vec<String> {
        match *self {
            Step::AddRule(r) => vec![format!("{} rule add {r} protocol {protocol}", r.ip())],
            Step::DelRule(r) => vec![format!("{} rule del {r}", r.ip())],
            Step::AddRoute(r) => vec![format!("{} route add {r} proto {protocol}", r.ip())],
            Step::DelRoute(r) => vec![format!("{} route del {r}", r.ip())],
            Step::Link { ifname, group, sysctls, .. } => group
                .map(|g| format!("ip link set dev {ifname} group {g}"))
                .into_iter()
                .chain(sysctls.iter().map(|(k, v)| crate::model::kernel::sysctl_command(ifname, k, *v)))
                .collect(),
            Step::Filter(c) => vec![c.describe()],
        }
    }

    /// How many commands `commands` gives, without making them.
    pub fn count(&self) -> usize {
        match self {
            Step::Link { group, sysctls, .. } => usize::from(group.is_some()) + sysctls.len(),
            _ => 1,
        }
    }
}

/// Every write of `plans` and `host`, each with the interface it is for (None: shared), in the
/// order they are made: the shared rules added first (a new interface's traffic to the networks
/// of unmanaged interfaces keeps its way there), then per interface its link, the rules and
/// routes it gives up, the routes and rules it gets (routes before the rules that lead to them),
/// the shared rules removed, and the nftables table last.
pub fn steps<'a>(plans: &'a [Plan], host: &'a HostPlan) -> Vec<(Option<&'a str>, Step<'a>)> {
    let mut out: Vec<(Option<&str>, Step)> = host.rules_add.iter().map(|r| (None, Step::AddRule(r))).collect();
    for p in plans {
        let me = Some(p.ifname.as_str());
        if p.link_group.is_some() || !p.sysctls.is_empty() {
            let link = Step::Link { ifname: &p.ifname, index: p.ifindex, group: p.link_group.map(|(_, g)| g), sysctls: &p.sysctls };
            out.push((me, link));
        }
        out.extend(p.rules_del.iter().map(|r| (me, Step::DelRule(r))));
        out.extend(p.routes_del.iter().map(|r| (me, Step::DelRoute(r))));
        out.extend(p.routes_add.iter().map(|r| (me, Step::AddRoute(r))));
        out.extend(p.rules_add.iter().map(|r| (me, Step::AddRule(r))));
    }
    out.extend(host.rules_del.iter().map(|r| (None, Step::DelRule(r))));
    out.extend(host.filter.iter().map(|c| (None, Step::Filter(c))));
    out
}

/// The rules and routes plans add and remove, by their `ip` description: the watcher uses them to
/// notice an object it added being removed behind its back, again and again.
pub fn touched(plans: &[Plan], host: &HostPlan) -> (Vec<String>, Vec<String>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for (_, s) in steps(plans, host) {
        match s {
            Step::AddRule(r) => added.push(format!("{} rule {r}", r.ip())),
            Step::AddRoute(r) => added.push(format!("{} route {r}", r.ip())),
            Step::DelRule(r) => removed.push(format!("{} rule {r}", r.ip())),
            Step::DelRoute(r) => removed.push(format!("{} route {r}", r.ip())),
            Step::Link { .. } | Step::Filter(_) => {}
        }
    }
    (added, removed)
}

/// How many commands `render` would give.
pub fn count(plans: &[Plan], host: &HostPlan) -> usize {
    steps(plans, host).iter().map(|(_, s)| s.count()).sum()
}

/// The equivalent commands for a plan, for `stronghost plan` and for logs.
pub fn render(plans: &[Plan], host: &HostPlan, protocol: u8) -> Vec<String> {
    steps(plans, host).iter().flat_map(|(_, s)| s.commands(protocol)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

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
                suppress: None,
                goto: None,
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

    // ---- Deciding against kernel fixtures: every rule that needs the host's state. ----

    use crate::model::kernel::{Address, KernelRoute, Owned};
    use netlink_packet_route::route::{RouteScope, RouteType};
    use std::net::Ipv6Addr;

    const PROTO: u8 = 83;

    fn link(index: u32, name: &str, group: u32, sysctls: &[(&'static str, u32)]) -> Link {
        Link { index, name: name.into(), group, up: true, sysctls: sysctls.to_vec(), lower: None }
    }

    fn v4(index: u32, last: u8) -> Address {
        Address { index, addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)), prefix_len: 24, dadfailed: false }
    }

    fn v6(index: u32, last: u16) -> Address {
        Address { index, addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, last)), prefix_len: 64, dadfailed: false }
    }

    /// A route as the kernel would dump it after stronghost (or `protocol`) wrote it.
    fn dumped(r: &Route, protocol: u8) -> KernelRoute {
        let (kind, scope, oif, gateway, src, onlink) = match &r.kind {
            RouteKind::Unreachable => (RouteType::Unreachable, RouteScope::Universe, None, None, None, false),
            RouteKind::Link { oif, src, .. } => {
                let scope = if r.dst.is_v6() { RouteScope::Universe } else { RouteScope::Link };
                (RouteType::Unicast, scope, Some(*oif), None, *src, false)
            }
            RouteKind::Via { oif, gateway, src, onlink, .. } => {
                (RouteType::Unicast, RouteScope::Universe, Some(*oif), Some(*gateway), *src, *onlink)
            }
        };
        KernelRoute {
            table: r.table,
            protocol,
            kind,
            scope,
            dst: r.dst,
            oif,
            gateway,
            src,
            metric: r.metric,
            onlink,
            exotic: false,
            nexthops: vec![],
        }
    }

    fn main_default(oif: u32, gw: [u8; 4]) -> KernelRoute {
        let r = Route {
            table: RT_TABLE_MAIN,
            dst: Ipv4Net::DEFAULT.into(),
            metric: 100,
            kind: RouteKind::Via { dev: String::new(), oif, gateway: IpAddr::V4(gw.into()), src: None, onlink: false },
        };
        KernelRoute { src: None, ..dumped(&r, 4) }
    }

    fn gathered(links: Vec<Link>, addrs: Vec<Address>, rules: Vec<Owned<Rule>>, routes: Vec<KernelRoute>) -> Gathered {
        Gathered {
            kernel: Kernel::new(links, addrs, rules, routes),
            records: BTreeMap::new(),
            on_disk: BTreeMap::new(),
            names: Default::default(),
            tables: Default::default(),
            stack_leases: BTreeMap::new(),
            filter: Ok(crate::model::table::Current::default()),
            complete: true,
            present: None,
            renames: vec![],
        }
    }

    impl Planner<'_> {
        fn sync_plans(mut self, release_all: bool) -> Plans {
            let (plans, errors) = self.sync(release_all);
            assert!(errors.is_empty(), "{errors:?}");
            self.finish(plans)
        }
    }

    /// The kernel after `plans` were executed on `g`'s kernel (rules and routes only).
    fn after(g: &Gathered, plans: &Plans) -> Gathered {
        let mut rules: Vec<Owned<Rule>> = g.kernel.rules.to_vec();
        let mut routes: Vec<KernelRoute> = g.kernel.routes.clone();
        let all = plans.interfaces.iter().map(|p| (&p.rules_del, &p.rules_add, &p.routes_del, &p.routes_add));
        for (rd, ra, od, oa) in all.chain([(&plans.host.rules_del, &plans.host.rules_add, &vec![], &vec![])]) {
            rules.retain(|r| !(r.protocol == PROTO && rd.contains(&r.item)));
            rules.extend(ra.iter().map(|r| Owned { protocol: PROTO, item: r.clone() }));
            let names = |i| g.kernel.name_of(i);
            routes.retain(|r| !(r.protocol == PROTO && r.model(&names).is_some_and(|m| od.contains(&m))));
            routes.extend(oa.iter().map(|r| dumped(r, PROTO)));
        }
        let mut links = g.kernel.links.clone();
        for p in &plans.interfaces {
            if let Some(l) = links.iter_mut().find(|l| Some(l.index) == p.ifindex) {
                if let Some((_, grp)) = p.link_group {
                    l.group = grp;
                }
                for (k, v) in &p.sysctls {
                    l.sysctls.retain(|(x, _)| x != k);
                    l.sysctls.push((k, *v));
                }
            }
        }
        let mut n = gathered(links, g.kernel.addrs.clone(), rules, routes);
        n.tables = plans.tables.clone().map(Rc::new).unwrap_or_else(|| g.tables.clone());
        n.names = g.names.clone();
        for p in &plans.interfaces {
            match &p.record {
                Some(r) if !p.orphans => {
                    n.records.insert(p.ifname.clone(), r.clone());
                    Rc::make_mut(&mut n.names).insert(p.ifname.clone());
                }
                _ => {}
            }
        }
        n
    }

    fn plan_one(cfg: &Config, g: &Gathered, ifname: &str, intent: Intent) -> Result<Plans, Error> {
        let mut p = Planner::new(cfg, g);
        let plan = p.interface(ifname, intent)?;
        Ok(p.finish(vec![plan]))
    }

    fn is_empty(p: &Plans) -> bool {
        p.tables.is_none()
            && p.host.rules_add.is_empty()
            && p.host.rules_del.is_empty()
            && p.interfaces.iter().all(|p| {
                p.rules_add.is_empty()
                    && p.rules_del.is_empty()
                    && p.routes_add.is_empty()
                    && p.routes_del.is_empty()
                    && p.sysctls.is_empty()
                    && p.link_group.is_none()
            })
    }

    /// A route main has through `oif` (`gw` None: on-link), written by `protocol`.
    fn main_route(oif: u32, dst: &str, gw: Option<&str>, protocol: u8) -> KernelRoute {
        let dst: IpNet = dst.parse().unwrap();
        let kind = match gw {
            Some(g) => RouteKind::Via { dev: String::new(), oif, gateway: g.parse().unwrap(), src: None, onlink: false },
            None => RouteKind::Link { dev: String::new(), oif, src: None },
        };
        let r = dumped(&Route { table: RT_TABLE_MAIN, dst, metric: 0, kind }, protocol);
        KernelRoute { scope: if gw.is_none() && !dst.is_v6() { RouteScope::Link } else { RouteScope::Universe }, ..r }
    }

    #[test]
    fn applying_converges_and_a_converged_host_plans_nothing() {
        let cfg = Config::default();
        let knobs = [("arp_ignore", 0), ("arp_announce", 0), ("arp_filter", 0), ("rp_filter", 2)];
        // docker0 (unmanaged, a bridge with IPv4 and IPv6 networks) and tun0 (a def1 VPN: its
        // peer is connected, its /1 routes go via a gateway and are not).
        let g = gathered(
            vec![link(2, "eth0", 0, &knobs), link(3, "eth1", 0, &knobs), link(8, "docker0", 0, &[]), link(9, "tun0", 0, &[])],
            vec![v4(2, 10), v4(3, 11), v6(3, 11)],
            vec![],
            vec![
                main_default(2, [198, 51, 100, 1]),
                main_route(8, "172.17.0.0/16", None, 2),
                main_route(8, "2001:db8:99::/64", None, 2),
                main_route(8, "fe80::/64", None, 2),
                main_route(9, "10.8.0.5/32", None, 2),
                main_route(9, "0.0.0.0/1", Some("10.8.0.5"), 3),
                main_route(9, "128.0.0.0/1", Some("10.8.0.5"), 3),
                main_route(9, "10.9.0.0/16", None, 4),
            ],
        );
        let connected = |n: &str| policy::connected_rule(&cfg, n.parse().unwrap());
        // Read for one interface, the first policy of a family asks for a pass over the whole host.
        let first =
            Gathered { complete: false, ..gathered(g.kernel.links.clone(), g.kernel.addrs.clone(), vec![], g.kernel.routes.clone()) };
        let p = plan_one(&cfg, &first, "eth0", Intent::Apply).unwrap();
        let tree = |tables: &[u32], v6: bool| policy::mark_tree(&cfg, tables.iter().copied(), v6);
        assert!(p.host.needs_host_pass);
        assert_eq!(
            p.host.rules_add,
            [
                vec![policy::unmarked_rule(&cfg, false), policy::unmanaged_mark_rule(&cfg, false)],
                tree(&[4101], false).into_iter().collect()
            ]
            .concat()
        );
        let p = plan_one(&cfg, &g, "eth0", Intent::Apply).unwrap();
        assert!(!p.host.needs_host_pass);
        assert_eq!(p.tables.as_ref().and_then(|t| t.get("eth0")), Some(&4101));
        assert!(p.interfaces[0].routes_add.iter().any(|r| matches!(r.kind, RouteKind::Via { .. })), "default via the main gateway");
        assert!(p.interfaces[0].rules_add.contains(&Rule {
            v6: false,
            priority: 4106 + 9, // the tree's root, 7 inner nodes down its left spine, slot 0's leaf, slot 1's
            selector: Selector::Fwmark(policy::mark_of(&cfg, 4101), cfg.mark_mask),
            table: 4101,
            suppress: None,
            goto: None,
        }));
        // Only the kernel's connected networks through unmanaged interfaces, only IPv4 so far; and
        // the shortcut that spares unmarked packets the walk through every fwmark rule.
        assert_eq!(
            p.host.rules_add,
            [
                vec![
                    connected("10.8.0.5/32"),
                    connected("172.17.0.0/16"),
                    policy::unmarked_rule(&cfg, false),
                    policy::unmanaged_mark_rule(&cfg, false)
                ],
                tree(&[4101], false).into_iter().collect()
            ]
            .concat()
        );
        assert_eq!(p.host.rules_add[2].to_string(), "priority 4104 fwmark 0/0xff000000 goto 4620");
        assert_eq!(
            p.host.rules_add[1].to_string(),
            "priority 4100 to 172.17.0.0/16 lookup main suppress_prefixlength 15 suppress_ifgroup 4100"
        );
        // `count` says how many commands `render` gives, without writing them.
        let rendered = render(&p.interfaces, &p.host, PROTO);
        assert!(
            rendered.len() > 10
                && rendered.iter().any(|l| l.starts_with("ip link set"))
                && rendered.iter().any(|l| l.starts_with("sysctl"))
        );
        assert_eq!(count(&p.interfaces, &p.host), rendered.len());
        let g = after(&g, &p);
        assert!(is_empty(&plan_one(&cfg, &g, "eth0", Intent::Apply).unwrap()));
        // eth1 has IPv6 too: the IPv6 connected network's rule comes with it, and goes with it.
        let p = plan_one(&cfg, &g, "eth1", Intent::Apply).unwrap();
        assert_eq!(p.tables.as_ref().and_then(|t| t.get("eth1")), Some(&4102));
        // (and the path to its leaf in both families' trees)
        let eth1_shared: BTreeSet<Rule> =
            [connected("2001:db8:99::/64"), policy::unmarked_rule(&cfg, true), policy::unmanaged_mark_rule(&cfg, true)]
                .into_iter()
                .chain(tree(&[4101, 4102], true))
                .chain(tree(&[4101, 4102], false).difference(&tree(&[4101], false)).cloned())
                .collect();
        assert_eq!(p.host.rules_add.iter().cloned().collect::<BTreeSet<Rule>>(), eth1_shared);
        let g = after(&g, &p);
        assert!(is_empty(&plan_one(&cfg, &g, "eth1", Intent::Apply).unwrap()));
        let p = plan_one(&cfg, &g, "eth1", Intent::Release).unwrap();
        assert_eq!(p.host.rules_del.iter().cloned().collect::<BTreeSet<Rule>>(), eth1_shared);
        assert!(p.interfaces[0].record.is_none());
        assert_eq!(count(&p.interfaces, &p.host), render(&p.interfaces, &p.host, PROTO).len());
        // A gather of one interface cannot tell which links are unmanaged: it keeps the rules.
        let mut one = after(&g, &p);
        one.complete = false;
        one.kernel = Kernel::new(
            one.kernel.links.iter().filter(|l| l.name == "eth0").cloned().collect(),
            one.kernel.addrs.clone(),
            one.kernel.rules.clone(),
            one.kernel.routes.clone(),
        );
        assert!(is_empty(&plan_one(&cfg, &one, "eth0", Intent::Apply).unwrap()));
        // But for the network of the interface it claims (unmanaged before, with a `to` rule of
        // its own network): that network is the interface's own now.
        let stale = connected("198.51.100.0/24");
        let mut rules = one.kernel.rules.to_vec();
        rules.push(Owned { protocol: PROTO, item: stale.clone() });
        one.kernel = Kernel::new(one.kernel.links.clone(), one.kernel.addrs.clone(), rules, one.kernel.routes.clone());
        let p = plan_one(&cfg, &one, "eth0", Intent::Apply).unwrap();
        assert_eq!(p.host.rules_del, vec![stale]);
        assert!(p.host.rules_add.is_empty());
        // The receive filter's table is missing (this gather never wrote one): a run that read
        // one interface does not create it from that interface's view alone — the host pass does,
        // from every interface's.
        assert!(!one.filter.as_ref().unwrap().exists);
        assert!(p.host.filter.is_none() && p.host.filter_in_host_pass && p.host.needs_host_pass);
    }

    /// A one-interface read keeps only the rules a plan for that interface looks at
    /// (`crate::model::kernel::rules_of_one`): whatever the host holds, the plans are the ones every rule gives.
    #[test]
    fn a_plan_for_one_interface_needs_only_its_own_rules() {
        let cfg = Config::default();
        let knobs = [("arp_ignore", 0), ("arp_announce", 0), ("arp_filter", 0), ("rp_filter", 2)];
        let links: Vec<Link> = (0..4).map(|k| link(2 + k, &format!("eth{k}"), 0, &knobs)).chain([link(8, "docker0", 0, &[])]).collect();
        let addrs = vec![v4(2, 10), v4(3, 11), v6(3, 11), v4(4, 12), v4(5, 13)];
        let routes = vec![main_default(2, [198, 51, 100, 1]), main_route(8, "172.17.0.0/16", None, 2)];
        let g0 = gathered(links, addrs, vec![], routes);
        let g = after(&g0, &Planner::new(&cfg, &g0).sync_plans(false));
        let rule =
            |selector: Selector, table: u32, priority: u32| Rule { v6: false, priority, selector, table, suppress: None, goto: None };
        let t = |n: &str| g.tables[n];
        // Damage and strangers: eth1's `from` rule gone, a stale one of ours pointing eth1's
        // address at eth2's table, another tool's rule in eth3's table, another tool's `from`.
        let mut rules: Vec<Owned<Rule>> = g
            .kernel
            .rules
            .iter()
            .filter(|r| !(r.item.table == t("eth1") && matches!(r.item.selector, Selector::From(IpAddr::V4(_)))))
            .cloned()
            .collect();
        rules.push(Owned { protocol: PROTO, item: rule(Selector::From("198.51.100.11".parse().unwrap()), t("eth2"), 4110) });
        rules.push(Owned { protocol: 4, item: rule(Selector::Fwmark(7, u32::MAX), t("eth3"), 4000) });
        rules.push(Owned { protocol: 4, item: rule(Selector::From("192.0.2.9".parse().unwrap()), 100, 50) });
        for name in ["eth0", "eth1", "eth2", "eth3"] {
            for intent in [Intent::Apply, Intent::Release] {
                let l = g.kernel.link(name).unwrap().clone();
                let addrs: Vec<Address> = g.kernel.addrs_of(l.index).cloned().collect();
                let one = |rules: Vec<Owned<Rule>>| Gathered {
                    complete: false,
                    kernel: Kernel::new(vec![l.clone()], addrs.clone(), rules, g.kernel.routes.clone()),
                    records: g.records.clone(),
                    on_disk: g.on_disk.clone(),
                    names: g.names.clone(),
                    tables: g.tables.clone(),
                    ..gathered(vec![], vec![], vec![], vec![])
                };
                let kept = crate::model::kernel::rules_of_one(&rules, name, &addrs, t(name), PROTO, &(cfg.table_min..=cfg.table_max));
                assert!(kept.len() < rules.len(), "{name}: kept all {} rules", rules.len());
                // A table another tool writes into is refused alike (eth3).
                let show = |p: Result<Plans, Error>| {
                    p.map(|p| (render(&p.interfaces, &p.host, PROTO), p.tables, p.host.needs_host_pass)).map_err(|e| e.to_string())
                };
                let (all, few) = (one(rules.clone()), one(kept));
                assert_eq!(show(plan_one(&cfg, &few, name, intent)), show(plan_one(&cfg, &all, name, intent)), "{name} {intent:?}");
            }
        }
    }

    /// A host set up by an earlier version: its single shared `from all lookup main` rule goes.
    #[test]
    fn the_shared_rule_of_earlier_versions_is_replaced() {
        let cfg = Config::default();
        let old = Rule { v6: false, priority: 4100, selector: Selector::All, table: RT_TABLE_MAIN, suppress: Some((0, 4100)), goto: None };
        let g = gathered(
            vec![link(2, "eth0", 0, &[])],
            vec![v4(2, 10)],
            vec![Owned { protocol: PROTO, item: old.clone() }],
            vec![main_default(2, [198, 51, 100, 1])],
        );
        let p = plan_one(&cfg, &g, "eth0", Intent::Apply).unwrap();
        assert_eq!(p.host.rules_del, vec![old]);
        let tree: Vec<Rule> = policy::mark_tree(&cfg, [4101], false).into_iter().collect();
        assert_eq!(p.host.rules_add, [vec![policy::unmarked_rule(&cfg, false), policy::unmanaged_mark_rule(&cfg, false)], tree].concat());
    }

    #[test]
    fn sysctls_are_saved_once_and_restored_only_while_still_ours() {
        let cfg = Config::default();
        let knobs = [("arp_ignore", 0), ("arp_announce", 0), ("arp_filter", 0), ("rp_filter", 2)];
        let g = gathered(vec![link(2, "eth0", 0, &knobs)], vec![v4(2, 10)], vec![], vec![main_default(2, [198, 51, 100, 1])]);
        let p = plan_one(&cfg, &g, "eth0", Intent::Apply).unwrap();
        let plan = &p.interfaces[0];
        assert_eq!(plan.sysctls, vec![("arp_ignore", 1), ("arp_announce", 2), ("arp_filter", 1), ("rp_filter", 0)]);
        let saved = &plan.record.as_ref().unwrap().saved_sysctls;
        assert_eq!(saved.get("rp_filter"), Some(&2));
        // Without the receive filter, nothing replaces the kernel's check: rp_filter stays.
        let no_filter = Config { receive_filter: false, ..Config::default() };
        let p2 = plan_one(&no_filter, &g, "eth0", Intent::Apply).unwrap();
        assert!(!p2.interfaces[0].sysctls.iter().any(|(k, _)| *k == "rp_filter"));
        // The admin changes arp_ignore afterwards; release restores the rest and leaves it.
        let mut g = after(&g, &p);
        let l = &mut g.kernel.links[0];
        l.sysctls.retain(|(k, _)| *k != "arp_ignore");
        l.sysctls.push(("arp_ignore", 2));
        g.kernel = Kernel::new(g.kernel.links.clone(), g.kernel.addrs.clone(), g.kernel.rules.clone(), g.kernel.routes.clone());
        let p = plan_one(&cfg, &g, "eth0", Intent::Release).unwrap();
        assert_eq!(p.interfaces[0].sysctls, vec![("arp_announce", 0), ("arp_filter", 0), ("rp_filter", 2)]);
    }

    #[test]
    fn link_groups_of_other_tools_are_refused_and_ours_restored() {
        let cfg = Config::default();
        let g = gathered(vec![link(2, "eth0", 7, &[]), link(3, "eth1", 0, &[])], vec![v4(2, 10), v4(3, 11)], vec![], vec![]);
        let e = plan_one(&cfg, &g, "eth0", Intent::Apply).unwrap_err();
        assert_eq!(e.kind(), "foreign-link-group");
        assert!(e.to_string().contains("link group 7"), "{e}");
        let p = plan_one(&cfg, &g, "eth1", Intent::Apply).unwrap();
        assert_eq!(p.interfaces[0].link_group, Some((3, cfg.link_group)));
        assert_eq!(p.interfaces[0].record.as_ref().unwrap().saved_group, Some(0));
        let g = after(&g, &p);
        let p = plan_one(&cfg, &g, "eth1", Intent::Release).unwrap();
        assert_eq!(p.interfaces[0].link_group, Some((3, 0)));
    }

    #[test]
    fn tables_skip_taken_and_foreign_ones_and_run_out_loudly() {
        let cfg = Config { table_min: 4101, table_max: 4103, ..Config::default() };
        let foreign = Route {
            table: 4102,
            dst: Ipv4Net::DEFAULT.into(),
            metric: 0,
            kind: RouteKind::Via { dev: String::new(), oif: 9, gateway: IpAddr::V4([192, 0, 2, 1].into()), src: None, onlink: true },
        };
        let mut g = gathered(
            vec![link(2, "eth0", 0, &[]), link(3, "eth1", 0, &[]), link(4, "eth2", 0, &[])],
            vec![v4(2, 10), v4(3, 11), v4(4, 12)],
            vec![],
            vec![dumped(&foreign, 4)],
        );
        // old0 is recorded (it comes back), so its table is not for the taking.
        Rc::make_mut(&mut g.tables).insert("old0".into(), 4101);
        Rc::make_mut(&mut g.names).insert("old0".into());
        let p = plan_one(&cfg, &g, "eth0", Intent::Apply).unwrap();
        assert_eq!(p.interfaces[0].table, Some(4103), "4101 is allocated, 4102 holds another tool's route");
        let g2 = after(&g, &p);
        let e = plan_one(&cfg, &g2, "eth1", Intent::Apply).unwrap_err();
        assert_eq!(e.kind(), "no-free-table");
        // An allocation whose table someone else wrote into is not used.
        Rc::make_mut(&mut g.tables).insert("eth2".into(), 4102);
        assert_eq!(plan_one(&cfg, &g, "eth2", Intent::Apply).unwrap_err().kind(), "foreign-table-content");
    }

    /// One address on two interfaces (a VIP moved by hand, a mistake): the lower index gets its
    /// `from` rule, in a `sync` and in a plan for either interface alone, so that they never undo
    /// each other's rule and a second `sync` writes nothing.
    #[test]
    fn an_address_on_two_interfaces_has_one_owner_in_every_planner() {
        let cfg = Config::default();
        let vip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));
        let g = gathered(
            vec![link(2, "eth0", 0, &[]), link(3, "eth1", 0, &[])],
            vec![v4(2, 10), v4(3, 11), v4(3, 10)],
            vec![],
            vec![main_default(2, [198, 51, 100, 1])],
        );
        let from = |p: &Plans, table: u32| {
            let rules = p.interfaces.iter().flat_map(|i| &i.rules_add);
            rules.filter(|r| r.selector == Selector::From(vip)).map(|r| r.table).collect::<Vec<_>>() == [table]
        };
        let p = Planner::new(&cfg, &g).sync_plans(false);
        assert!(from(&p, 4101), "eth0, the lower index, owns {vip}: {:?}", p.interfaces);
        let g = after(&g, &p);
        assert!(is_empty(&Planner::new(&cfg, &g).sync_plans(false)), "a second sync writes nothing");
        for n in ["eth0", "eth1"] {
            assert!(is_empty(&plan_one(&cfg, &g, n, Intent::Apply).unwrap()), "{n} alone undoes nothing");
        }
        // eth0 loses it: eth1's now.
        let mut lost = after(&g, &Plans::default());
        lost.kernel = Kernel::new(lost.kernel.links.clone(), vec![v4(2, 12), v4(3, 11), v4(3, 10)], lost.kernel.rules.clone(), vec![]);
        let p = Planner::new(&cfg, &lost).sync_plans(false);
        assert!(from(&p, 4102), "{:?}", p.interfaces);
    }

    #[test]
    fn sync_removes_orphans_and_takes_gateways_from_every_source() {
        let cfg = Config::default();
        let orphan_rule = Rule {
            v6: false,
            priority: 4110,
            selector: Selector::From(IpAddr::V4([198, 51, 100, 99].into())),
            table: 4150,
            suppress: None,
            goto: None,
        };
        let foreign_rule = Rule { table: 4151, ..orphan_rule.clone() };
        let orphan_route = Route { table: 4150, dst: Ipv4Net::DEFAULT.into(), metric: u32::MAX, kind: RouteKind::Unreachable };
        let mut g = gathered(
            vec![
                link(2, "eth0", 0, &[]),
                link(3, "eth1", 0, &[]),
                link(4, "eth2", 0, &[]),
                link(5, "eth3", 0, &[]),
                link(6, "eth4", 0, &[]),
            ],
            vec![
                v4(2, 10),
                v4(3, 11),
                v4(4, 12),
                Address { index: 5, addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 5)), prefix_len: 24, dadfailed: false },
                Address { index: 6, addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 6)), prefix_len: 24, dadfailed: false },
            ],
            vec![Owned { protocol: PROTO, item: orphan_rule.clone() }, Owned { protocol: 4, item: foreign_rule }],
            vec![main_default(2, [198, 51, 100, 1]), dumped(&orphan_route, PROTO)],
        );
        // eth0's gateway is main's, eth1's from networkd's lease, eth2's from its neighbour on the
        // same network, eth3's from the configuration; eth4's from nowhere.
        g.stack_leases.insert(
            3,
            Lease {
                address: [198, 51, 100, 11].into(),
                prefix_len: 24,
                gateway: Some([198, 51, 100, 1].into()),
                routes: vec![],
                source: "networkd".into(),
            },
        );
        let cfg = Config { gateways: [("eth3".to_string(), Ipv4Addr::new(192, 0, 2, 1))].into(), ..cfg };
        let mut p = Planner::new(&cfg, &g);
        let (plans, errors) = p.sync(false);
        assert!(errors.is_empty());
        let names: Vec<&str> = plans.iter().map(|p| p.ifname.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1", "eth2", "eth3", "eth4", "(orphans)"]);
        let from: Vec<Option<&str>> = plans[..5].iter().map(|p| p.record.as_ref().unwrap().gateway_from.as_deref()).collect();
        assert_eq!(
            from,
            [Some("main table"), Some("lease (networkd)"), Some("another interface on 198.51.100.0/24"), Some("configuration"), None]
        );
        let default_via = |p: &Plan| {
            p.routes_add.iter().find_map(|r| match &r.kind {
                RouteKind::Via { gateway, .. } if r.dst.is_default() => Some(*gateway),
                _ => None,
            })
        };
        assert_eq!(default_via(&plans[2]), Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))));
        assert_eq!(default_via(&plans[3]), Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
        // No gateway: managed all the same, off-link refused by the terminator.
        assert_eq!(default_via(&plans[4]), None);
        assert!(plans[4].rules_add.iter().any(|r| r.selector == Selector::Oif("eth4".into())));
        assert!(plans[4].routes_add.iter().any(|r| r.kind == RouteKind::Unreachable));
        let o = plans.last().unwrap();
        assert_eq!((o.rules_del.clone(), o.routes_del.clone()), (vec![orphan_rule], vec![orphan_route]), "another tool's rule stays");
        // release --all takes everything stronghost recorded, and nothing else.
        g.records.insert("eth0".into(), Record { applied: true, ..Default::default() });
        let mut p = Planner::new(&cfg, &g);
        let (plans, _) = p.sync(true);
        assert!(plans.iter().filter(|p| !p.orphans).all(|p| p.record.is_none()));
    }

    /// Renamed while its record was kept: record, lease and table follow the interface index,
    /// the rule naming the old device goes, and no second table is taken.
    #[test]
    fn a_renamed_interface_keeps_its_table_and_lease() {
        let cfg = Config::default();
        let old_oif = Rule { v6: false, priority: 4120, selector: Selector::Oif("eth1".into()), table: 4102, suppress: None, goto: None };
        let mut g =
            gathered(vec![link(3, "lan1", 4100, &[])], vec![v4(3, 11)], vec![Owned { protocol: PROTO, item: old_oif.clone() }], vec![]);
        let lease = Lease {
            address: [198, 51, 100, 11].into(),
            prefix_len: 24,
            gateway: Some([198, 51, 100, 1].into()),
            routes: vec![],
            source: "dhclient".into(),
        };
        g.records.insert("eth1".into(), Record { applied: true, lease: Some(lease.clone()), ifindex: Some(3), ..Default::default() });
        g.on_disk = g.records.clone();
        Rc::make_mut(&mut g.names).insert("eth1".into());
        Rc::make_mut(&mut g.tables).insert("eth1".into(), 4102);
        g.follow_renames();
        assert_eq!(g.renames, [("eth1".to_string(), "lan1".to_string())]);
        let plans = Planner::new(&cfg, &g).sync_plans(false);
        let lan1 = plans.interfaces.iter().find(|p| p.ifname == "lan1").unwrap();
        assert_eq!(lan1.table, Some(4102));
        assert_eq!(lan1.record.as_ref().unwrap().lease, Some(lease));
        assert_eq!(lan1.rules_del, [old_oif]);
        assert!(lan1.rules_add.iter().any(|r| r.selector == Selector::Oif("lan1".into()) && r.table == 4102));
        assert_eq!(plans.tables, Some([("lan1".to_string(), 4102)].into()));
        assert!(plans.interfaces.iter().all(|p| p.ifname != "eth1"));
    }

    /// The range exhausted by interfaces that are gone: a new one takes the lowest of their
    /// tables; while they exist (or are recorded), their numbers are theirs.
    #[test]
    fn tables_of_gone_interfaces_are_reclaimed_only_when_needed() {
        let cfg = Config { table_min: 4101, table_max: 4102, ..Config::default() };
        let mut g = gathered(vec![link(2, "eth0", 0, &[])], vec![v4(2, 10)], vec![], vec![]);
        g.tables = Rc::new([("usb0".to_string(), 4102), ("usb1".to_string(), 4101)].into());
        g.complete = false;
        // Nobody read which links exist: no guessing.
        assert!(matches!(Planner::new(&cfg, &g).interface("eth0", Intent::Apply), Err(Error::NoFreeTable { .. })));
        // A full snapshot holds every link: neither usb0 nor usb1 exists.
        g.complete = true;
        assert_eq!(Planner::new(&cfg, &g).interface("eth0", Intent::Apply).unwrap().table, Some(4101));
        g.complete = false;
        g.present = Some(["eth0".to_string(), "usb0".to_string()].into());
        let mut p = Planner::new(&cfg, &g);
        assert_eq!(p.interface("eth0", Intent::Apply).unwrap().table, Some(4101));
        let plans = p.finish(vec![]);
        assert_eq!(plans.tables, Some([("eth0".to_string(), 4101), ("usb0".to_string(), 4102)].into()));
        // A recorded interface is not gone, whatever the links say.
        g.present = Some(["eth0".to_string()].into());
        g.names = Rc::new(["usb0".to_string(), "usb1".to_string()].into());
        assert!(Planner::new(&cfg, &g).interface("eth0", Intent::Apply).is_err());
    }

    #[test]
    fn udhcpc_moves_address_and_route_with_the_lease() {
        let g = gathered(vec![Link { up: false, ..link(2, "eth0", 0, &[]) }], vec![], vec![], vec![]);
        let lease = |a: u8, gw: u8| Lease {
            address: [198, 51, 100, a].into(),
            prefix_len: 24,
            gateway: Some([198, 51, 100, gw].into()),
            routes: vec![],
            source: "udhcpc".into(),
        };
        let c = client(&g.kernel, "eth0", None, None).unwrap();
        assert!(c.link_up && c.address_add.is_none());
        let c = client(&g.kernel, "eth0", Some(&lease(10, 1)), Some(&lease(20, 1))).unwrap();
        assert_eq!(c.address_del, Some(([198, 51, 100, 10].into(), 24)));
        assert_eq!(c.address_add, Some(([198, 51, 100, 20].into(), 24)));
        assert!(c.route_del.is_some() && c.route_add.is_some(), "the route's src changed");
        let c = client(&g.kernel, "eth0", Some(&lease(10, 1)), Some(&lease(10, 1))).unwrap();
        assert!(c.address_del.is_none() && c.route_del.is_none(), "a renewal removes nothing");
        assert!(client(&g.kernel, "eth9", None, None).is_none());
    }
}
