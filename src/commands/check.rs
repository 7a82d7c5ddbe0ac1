//! `check`: asks the kernel how it would route and compares with what a strong host must do.

use crate::config::Config;
use crate::error::Error;
use crate::handoff::{self, Watcher};
use crate::reconcile::Engine;
use crate::sysctl;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Candidate off-link destinations for route lookups: documentation ranges (TEST-NET-1..3, the
/// IPv6 documentation prefixes), never routed on a real network — but a lab or an odd host may
/// use one, so the first that is neither an address of the host nor on a network it is connected
/// to is taken.
const PROBES: [IpAddr; 3] =
    [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), IpAddr::V4(Ipv4Addr::new(203, 0, 113, 254)), IpAddr::V4(Ipv4Addr::new(198, 51, 100, 254))];
const PROBES6: [IpAddr; 3] = [
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0xffff, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0x3fff, 0xfff, 0xffff, 0xffff, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xfffe, 0xffff, 0, 0, 0, 1)),
];

/// A destination off every link of the host: not one of its addresses, not in a network any
/// route of any table reaches without a gateway.
fn probe(k: &crate::model::kernel::Kernel, candidates: &[IpAddr]) -> IpAddr {
    let on_link = |a: &IpAddr| {
        k.addrs.iter().any(|x| x.addr == *a)
            || k.routes.iter().any(|r| r.gateway.is_none() && !r.dst.is_default() && r.dst.contains(*a) && r.oif.is_some())
    };
    candidates.iter().copied().find(|a| !on_link(a)).unwrap_or(candidates[0])
}

/// How long `check` gives the watcher to answer.
const WATCHER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How old a queued hook event must be for `check` to call it left behind: longer than any hook
/// runs (`timeout 20`).
const QUEUED_TOO_LONG: std::time::Duration = std::time::Duration::from_secs(30);

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Where the host is not a strong host.
    pub violations: Vec<String>,
    /// Strong, but limited: an interface that cannot send beyond its own network.
    pub warnings: Vec<String>,
    pub checked: usize,
    /// The drops the policy counted so far.
    pub drops: Vec<String>,
}

pub fn violations(e: &mut Engine) -> Result<Report, Error> {
    // Before taking the lock: the watcher answers only once it has held it.
    let watcher = handoff::probe(WATCHER_WAIT);
    let _lock = e.lock()?;
    let g = e.gather(None)?;
    let k = &g.kernel;
    let (probe4, probe6) = (probe(k, &PROBES), probe(k, &PROBES6));
    let nft = if e.cfg().receive_filter { Some(g.filter.clone()) } else { None };
    let mut v = Vec::new();
    let mut checked = 0;
    let mut drops = Vec::new();
    let mut warnings = Vec::new();
    match watcher {
        Watcher::Stale => warnings.push(
            "stronghost watch is not running: its socket was left by one that died (see `journalctl -u stronghost-watch`). \
             Hooks apply their events themselves, but addresses added by hand or by stacks without hooks are not followed; \
             `systemctl restart stronghost-watch`"
                .to_string(),
        ),
        Watcher::Silent => warnings.push(format!(
            "stronghost watch did not answer within {} s (busy that long, or stuck): every hook waits for it up to {} s \
             before applying its event itself; if it stays so, `systemctl restart stronghost-watch`",
            WATCHER_WAIT.as_secs(),
            crate::handoff::HOOK_WAIT.as_secs()
        )),
        Watcher::Absent | Watcher::Answers => {}
    }
    // Under the lock: a hook's event still queued now, long after any hook's time is up, was
    // left by a run that could not take the lock and has no run to apply it (no watcher).
    let stale = e.records().queued_before(std::time::SystemTime::now() - QUEUED_TOO_LONG);
    if !stale.is_empty() {
        v.push(format!(
            "DHCP event(s) for {} queued more than {} s ago and never applied (the lock was held too long with no watcher to \
             try again, or the host's storage is full or read-only: see the log); `stronghost sync` applies them once it can",
            stale.join(", "),
            QUEUED_TOO_LONG.as_secs()
        ));
    }
    let records: Vec<(String, bool)> = g.records.iter().map(|(n, r)| (n.clone(), r.applied)).collect();
    let connected = k.connected_unmanaged(e.cfg().link_group, &g.names);
    let locals: Vec<IpAddr> = k.addrs.iter().map(|a| a.addr).collect();
    for (name, applied) in records {
        checked += 1;
        let Some(link) = k.link(&name).cloned() else {
            v.push(format!("{name}: recorded as managed but the interface is gone; run `stronghost sync`"));
            continue;
        };
        if !applied {
            // Managed, without an address (a lease that ended, `nmcli con down` with the link
            // up): the kernel takes traffic bound to it for on-link and borrows another
            // interface's address; the receive filter's egress chain must be there to drop it.
            let covered = matches!(&nft, Some(Ok(c)) if c.rules_ok && c.managed.contains(&name));
            if !covered && let Ok((Some(_), Some(src))) = e.reads().route_get(probe4, None, Some(link.index), None) {
                v.push(format!(
                    "{name}: has no IPv4 address, and traffic bound to it would leave with {src}, another interface's address \
                     (the receive filter that drops it is not in place); set receive_filter = yes in {} and run `stronghost apply {name}`",
                    e.cfg().path.display()
                ));
            }
            continue;
        }
        // The device under a macvlan or ipvlan child, on the same segment: unclaimed, it answers
        // ARP for the child's addresses with its own MAC, and the router then delivers the child's
        // traffic to it, where nothing refuses it.
        if let Some(lower) = link.lower.and_then(|i| k.link_by_index(i))
            && !g.records.contains_key(&lower.name)
            && let Ok(0) = sysctl::effective(&lower.name, "arp_ignore")
        {
            let what = if e.cfg().manages(&lower.name) {
                "run `stronghost sync` (it claims the device, which needs no address)".to_string()
            } else {
                format!(
                    "it is not managed ({}): manage it (it needs no address), or set net.ipv4.conf.{}.arp_ignore=1 yourself",
                    e.cfg().path.display(),
                    lower.name
                )
            };
            v.push(format!(
                "{}: the device under {name} answers ARP for {name}'s addresses with its own MAC (arp_ignore 0) and accepts \
                 their traffic; {what}",
                lower.name
            ));
        }
        if link.group != e.cfg().link_group {
            v.push(format!("{name}: link group is {} not {}: main-table routes through it would leak traffic of other interfaces; run `stronghost apply {name}`", link.group, e.cfg().link_group));
        }
        let facts = crate::plan::facts(e.cfg(), k, &link);
        let addrs: Vec<IpAddr> =
            facts.addresses.iter().map(|a| IpAddr::V4(a.0)).chain(facts.addresses6.iter().map(|a| IpAddr::V6(a.0))).collect();
        for a in &addrs {
            let probe = if a.is_ipv6() { probe6 } else { probe4 };
            match e.reads().route_get(probe, Some(*a), None, None) {
                Ok((Some(o), _)) if o == link.index => {}
                Ok((Some(o), _)) => v.push(format!("{name}: traffic from {a} to {probe} would leave by {}, not {name}; run `stronghost apply {name}` and look for rules below priority {} (`ip rule`, `ip -6 rule`)", k.name_of(o), e.cfg().priority)),
                Ok((None, _)) => v.push(format!("{name}: traffic from {a} has no route out")),
                // Refused (no gateway known): strict, not a leak — but say so.
                Err(_) => warnings.push(format!(
                    "{name}: no gateway known, so traffic from {a} reaches only {name}'s own network{}; name one with `gateway.{name} = \
                     <address>` in {} (or let DHCP, a default route through {name}, or another interface on the same network provide it), \
                     then run `stronghost apply {name}`",
                    if a.is_ipv6() { " (no router advertises itself on it)" } else { "" },
                    e.cfg().path.display()
                )),
            }
        }
        // Networks directly connected through unmanaged interfaces (a container bridge, a tunnel's
        // peer) stay reachable from the interface's addresses, by their own interface.
        for a in &addrs {
            for (net, via) in connected.iter().filter(|(n, _)| n.is_v6() == a.is_ipv6()) {
                let dst = crate::model::net::probe_in(*net, &locals);
                match e.reads().route_get(dst, Some(*a), None, None) {
                    Ok((Some(o), _)) if o == *via => {}
                    Ok((o, _)) => v.push(format!(
                        "{name}: traffic from {a} to {net} (directly connected through {}) would leave by {}; run `stronghost sync` \
                         (the watcher does it by itself when a network comes or goes)",
                        k.name_of(*via),
                        o.map(|o| k.name_of(o)).unwrap_or_else(|| "no interface".into())
                    )),
                    Err(err) => v.push(format!("{name}: traffic from {a} to {net} is refused: {err}; run `stronghost sync`")),
                }
            }
        }
        // Bound to the interface, for each family it has addresses of.
        for (probe, has) in [(probe4, !facts.addresses.is_empty()), (probe6, !facts.addresses6.is_empty())] {
            if !has {
                continue;
            }
            match e.reads().route_get(probe, None, Some(link.index), None) {
                Ok((Some(o), src)) if o == link.index => {
                    if let Some(s) = src.filter(|s| !addrs.contains(s)) {
                        v.push(format!("{name}: traffic bound to {name} would use source {s}, not one of its own addresses"));
                    }
                }
                Ok((o, _)) => v.push(format!(
                    "{name}: traffic to {probe} bound to {name} would leave by {}; run `stronghost apply {name}`",
                    o.map(|o| k.name_of(o)).unwrap_or_else(|| "no interface".into())
                )),
                Err(_) => {}
            }
        }
        // Replies of connections that arrived here (marked by the receive filter): routed as a
        // container's or a forwarded host's packet, they must still leave by this interface.
        if let Some(t) = g.tables.get(&name).copied().filter(|t| e.cfg().receive_filter && e.cfg().in_table_range(*t)) {
            for (probe, has) in [(probe4, !facts.addresses.is_empty()), (probe6, !facts.addresses6.is_empty())] {
                let mark = crate::plan::policy::mark_of(e.cfg(), t);
                match e.reads().route_get(probe, None, None, Some(mark)) {
                    Ok((Some(o), _)) if o == link.index || !has => {}
                    Ok((o, _)) if has => v.push(format!(
                        "{name}: replies of connections that arrived on {name} (published ports, port forwards) would leave by {}; \
                         run `stronghost apply {name}` and look for rules below priority {} (`ip rule`)",
                        o.map(|o| k.name_of(o)).unwrap_or_else(|| "no interface".into()),
                        crate::plan::policy::fwmark_priority(e.cfg(), t)
                    )),
                    _ => {}
                }
            }
        }
        for (knob, want) in crate::plan::policy::sysctls_wanted(e.cfg()) {
            match sysctl::effective(&name, knob) {
                Ok(eff) if eff == want => {}
                // The kernel's loose check (2) passes whatever main can route back: harmless.
                Ok(2) if knob == crate::plan::policy::RP_SYSCTL.0 => {}
                Ok(eff) if knob == crate::plan::policy::RP_SYSCTL.0 => v.push(format!(
                    "{name}: the kernel's strict reverse-path check is on (rp_filter effectively {eff}, net.ipv4.conf.all.rp_filter={}): \
                     it runs after DNAT and drops, uncounted, connections to published ports on every interface but the one of main's \
                     default route (nstat TcpExtIPReversePathFilter); stronghost's own check replaces it — set \
                     net.ipv4.conf.all.rp_filter to 0 or 2",
                    sysctl::read("all", knob).unwrap_or(0)
                )),
                Ok(eff) => {
                    let all = sysctl::read("all", knob).unwrap_or(0);
                    let why = if all > want { format!(" because net.ipv4.conf.all.{knob}={all} overrides it") } else { String::new() };
                    v.push(format!("{name}: {knob} is effectively {eff}, not {want}{why}"));
                }
                Err(err) => v.push(format!("{name}: cannot read {knob}: {err}")),
            }
        }
        match &nft {
            Some(Ok(c)) if c.rules_ok && c.members().is_some() && c.managed.contains(&name) => {}
            Some(Ok(_)) => v.push(format!(
                "{name}: not covered by the receive filter (nft table inet {}); run `stronghost apply {name}`",
                crate::model::table::TABLE
            )),
            Some(Err(err)) => v.push(format!("{name}: receive filter: {err}")),
            None => {}
        }
        if let (Some(Ok(c)), Some(t)) = (&nft, g.tables.get(&name)) {
            let d = c.drops(*t);
            if d.total() > 0 {
                drops.push(format!(
                    "{name}: dropped {} packet(s) for another interface's address, {} whose source is not routed back by {name}, \
                     {} leaving {name} with a source of another interface",
                    d.wrong_interface.unwrap_or(0),
                    d.reverse_path.unwrap_or(0),
                    d.foreign_source.unwrap_or(0)
                ));
            }
        }
    }
    // The table as a whole against what the whole host needs: every member, mark, counter and
    // reverse-path index (an interface's own entries can look right while another's are gone).
    if let Some(Ok(_)) = &nft
        && let Some(change) = crate::plan::Planner::new(e.cfg(), &g).finish(vec![]).host.filter
    {
        let repair = match watcher {
            Watcher::Answers => "stronghost watch repairs it within a second unless another tool keeps changing it (see its log); \
                                 `stronghost sync` repairs it now"
                .to_string(),
            _ => "no watcher runs, so nothing repairs it before the next DHCP event: run `stronghost sync`, and \
                  `systemctl enable --now stronghost-watch` to have it repaired at once next time"
                .to_string(),
        };
        v.push(format!(
            "receive filter (nft table inet {}): {}; {repair}",
            crate::model::table::TABLE,
            change.summary(&|i| k.link_by_index(i).map(|l| l.name.clone()))
        ));
    }
    if e.cfg().receive_filter {
        marks(e, &g, &mut v, &mut warnings);
    }
    // One address on several managed interfaces: one of them has its rule (every planner agrees
    // which), and the others' traffic from it follows that one.
    for (a, owner) in crate::plan::shared_addresses(e.cfg(), k) {
        let mut holders: Vec<String> = k.addrs.iter().filter(|x| x.addr == a).map(|x| k.name_of(x.index)).collect();
        holders.dedup();
        warnings.push(format!(
            "{a} is on {} at once: traffic from it follows {} (the lowest interface index) alone; remove it from the others",
            holders.join(" and "),
            k.name_of(owner)
        ));
    }
    // An interface stronghost should manage but does not (the hooks ran into an error — a
    // foreign link group, no free table — or only hooks run and the address was added by hand):
    // it is a weak host's interface, whatever the others are.
    for l in &k.links {
        if g.records.contains_key(&l.name) || !e.cfg().manages(&l.name) {
            continue;
        }
        let f = crate::plan::facts(e.cfg(), k, l);
        let name = crate::model::net::printable(&l.name);
        if let Some(a) = f.addresses.first().map(|a| a.0.to_string()).or_else(|| f.addresses6.first().map(|a| a.0.to_string())) {
            if l.name.contains('\u{fffd}') {
                // The kernel takes any bytes; stronghost's records and rules name interfaces in UTF-8.
                v.push(format!(
                    "{name}: has address {a} but a name that is not UTF-8 (shown with U+FFFD), which stronghost cannot manage: \
                     its traffic is routed as on a weak host; rename it (`ip link set dev … name …`)"
                ));
                continue;
            }
            v.push(format!(
                "{name}: has address {a} but is not managed (its traffic is routed as on a weak host); `stronghost plan -- {name}` \
                 shows why (it changes nothing), or exclude it in {}",
                e.cfg().path.display()
            ));
        }
    }
    Ok(Report { violations: v, warnings, checked, drops })
}

/// The mark field (`mark_mask`) against other tools: a rule that puts a value into it makes the
/// replies of the connections or packets it marks leave by another interface's table (a
/// violation); one that overwrites the whole mark clears it, which matters only if it runs after
/// stronghost's chains (a warning: the order is the other tool's). Connections whose field holds
/// a value no managed interface has: another tool's doing, or left from an interface released
/// (they time out) — a violation only when no table of the range could have given it.
fn marks(e: &mut Engine, g: &crate::plan::Gathered, v: &mut Vec<String>, warnings: &mut Vec<String>) {
    let (cfg, m) = (e.cfg(), e.cfg().mark_mask);
    let fix = format!(
        "give one of them other bits (`mark_mask` in {}; /usr/share/doc/stronghost/design.md lists which tools use which)",
        cfg.path.display()
    );
    match crate::netlink::nftables::Nft::open().map_err(Into::into).and_then(|mut n| n.mark_writers(m, crate::model::table::TABLE)) {
        Ok(writers) => {
            for w in writers {
                let text = format!(
                    "nft table {} {}, chain {}: {} — stronghost's field of the marks is {m:#x}",
                    w.family, w.table, w.chain, w.what
                );
                if w.sets {
                    v.push(format!("{text}: replies of the connections it marks are routed as another interface's; {fix}"));
                } else {
                    warnings.push(format!("{text}: if it runs after stronghost's chains, the replies it marks lose their interface"));
                }
            }
        }
        Err(err) => warnings.push(format!("cannot read the nftables rules to look for other tools' marks: {err}")),
    }
    let managed: BTreeSet<u32> = g
        .records
        .keys()
        .filter_map(|n| g.tables.get(n))
        .filter(|t| cfg.in_table_range(**t))
        .map(|t| crate::plan::policy::mark_of(cfg, *t))
        .chain([crate::plan::policy::unmanaged_mark(cfg)])
        .collect();
    let slots = u64::from(cfg.table_max - cfg.table_min + 1);
    match crate::netlink::conntrack::marks_in(m) {
        Ok(found) => {
            for (value, n) in found.into_iter().filter(|(value, _)| !managed.contains(value)) {
                let slot = u64::from(value >> m.trailing_zeros());
                let text = format!("{n} connection(s) carry {value:#x} in stronghost's field of the connection mark ({m:#x})");
                if slot > slots {
                    v.push(format!("{text}, a value stronghost never sets: another tool writes into these bits; {fix}"));
                } else {
                    warnings.push(format!(
                        "{text}, the mark of no managed interface: left from an interface released (they time out), or another \
                         tool writes into these bits"
                    ));
                }
            }
        }
        Err(err) => warnings.push(format!("cannot read the connection tracking table: {err}")),
    }
}

pub fn run(cfg: &Config) -> i32 {
    match super::reader(cfg).and_then(|mut e| violations(&mut e)) {
        Ok(r) => {
            if r.violations.is_empty() {
                println!("ok: {} interface(s) behave as a strong host", r.checked);
            }
            for x in &r.violations {
                println!("violation: {x}");
            }
            for w in &r.warnings {
                println!("warning: {w}");
            }
            for d in &r.drops {
                println!("drops: {d}");
            }
            if r.violations.is_empty() { 0 } else { 1 }
        }
        Err(err) => {
            log::error!("{err}");
            1
        }
    }
}
