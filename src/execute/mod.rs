//! Doing: the one place that writes. Table allocations and records first (a crash part-way then
//! leaves enough behind for the next run to converge and to restore what it changed), then every
//! netlink write of the plans in one batch, then the receive filter, then records of released
//! interfaces. Every failure is collected and reported; nothing is dropped.

pub mod filter;

use crate::error::Error;
use crate::netlink::{Netlink, Op};
use crate::plan::{ClientPlan, Gathered, Plans, Step};
use crate::state::State;
use crate::sysctl;

/// Writes made, by kind: a converged host costs none.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Writes {
    pub netlink: u32,
    pub sysctl: u32,
    pub nft: u32,
}

pub fn execute(
    nl: &mut Netlink,
    state: &State,
    writes: &mut Writes,
    g: &Gathered,
    plans: &Plans,
    cfg: &crate::config::Config,
) -> Result<(), Error> {
    let protocol = cfg.protocol;
    let mut errors = Vec::new();
    if let Some(t) = &plans.tables {
        state.save_tables(t).map_err(Error::state("saving the table allocation"))?;
    }
    let changed: Vec<(&str, &crate::model::record::Record, Option<&crate::model::record::Record>)> = plans
        .interfaces
        .iter()
        .filter(|p| !p.orphans)
        .filter_map(|p| {
            let before = g.on_disk.get(&p.ifname);
            p.record.as_ref().filter(|r| before != Some(*r)).map(|r| (p.ifname.as_str(), r, before))
        })
        .collect();
    state.save_records(&changed).map_err(Error::state("saving the interfaces' records"))?;
    // Renamed interfaces: their records now live under the new names (saved just above).
    let renamed: Vec<&str> = g.renames.iter().map(|(old, _)| old.as_str()).collect();
    if let Err(source) = state.remove_records(&renamed) {
        errors.push(Error::State { doing: format!("removing the records of {} (renamed)", renamed.join(", ")), source });
    }
    // Every netlink write, in the plans' order (`plan::steps`), sent as one batch; the table last.
    let host = &plans.host;
    let mut ops: Vec<(String, Op)> = Vec::new();
    for (owner, step) in crate::plan::steps(&plans.interfaces, host) {
        let op = match step {
            Step::AddRule(r) => Op::AddRule(r.clone()),
            Step::DelRule(r) => Op::DelRule(r.clone()),
            Step::AddRoute(r) => Op::AddRoute(r.clone()),
            Step::DelRoute(r) => Op::DelRoute(r.clone()),
            // A link that is gone has nothing left to set.
            Step::Link { index: None, .. } | Step::Filter(_) => continue,
            Step::Link { index: Some(index), group, sysctls, .. } => {
                writes.sysctl += sysctls.len() as u32;
                Op::SetLink { index, group, sysctls: sysctls.to_vec() }
            }
        };
        ops.push((owner.unwrap_or_default().to_string(), op));
    }
    run_ops(nl, writes, &ops, protocol, &mut errors);
    // Set over netlink, rp_filter does not invalidate the routes sockets have cached (early
    // demux would skip the new check for established connections); /proc would have. Do what
    // the sysctl handler does, once.
    if plans.interfaces.iter().any(|p| p.sysctls.iter().any(|(k, _)| *k == crate::plan::policy::RP_SYSCTL.0))
        && let Err(source) = sysctl::flush_route_cache()
    {
        errors.push(Error::Sysctl { doing: "flushing the route cache after changing rp_filter".into(), source });
    }
    if let Some(s) = &host.filter {
        writes.nft += 1;
        if let Err(source) = crate::execute::filter::apply(s, &crate::model::table::Shape::of(cfg)) {
            errors.push(Error::Filter { source, unapplied: false });
        }
    }
    if let Some(e) = &host.filter_error {
        errors.push(Error::Filter { source: e.clone(), unapplied: true });
    }
    let released: Vec<&str> = plans.interfaces.iter().filter(|p| !p.orphans && p.record.is_none()).map(|p| p.ifname.as_str()).collect();
    if let Err(source) = state.remove_records(&released) {
        errors.push(Error::State { doing: format!("removing the records of {}", released.join(", ")), source });
    }
    Error::collect(errors).map_or(Ok(()), Err)
}

/// udhcpc's own configuration: the address and main default route of its lease.
pub fn execute_client(nl: &mut Netlink, writes: &mut Writes, c: &ClientPlan, protocol: u8) -> Result<(), Error> {
    let mut errors = Vec::new();
    let dev = &c.ifname;
    if let Some(r) = &c.route_del {
        note(&mut errors, nl.del_route(r, protocol).or_else(gone), || format!("ip route del {r}"));
    }
    if let Some((a, l)) = c.address_del {
        note(&mut errors, nl.del_address(c.ifindex, a, l).or_else(gone), || format!("ip address del {a}/{l} dev {dev}"));
    }
    if c.link_up {
        note(&mut errors, nl.set_link_up(c.ifindex), || format!("ip link set {dev} up"));
    }
    if let Some((a, l)) = c.address_add {
        note(&mut errors, nl.add_address(c.ifindex, a, l, protocol), || format!("ip address replace {a}/{l} dev {dev}"));
    }
    if let Some(r) = &c.route_add {
        // Already there (a renewal): nothing to do.
        let r2 = nl.add_route(r, protocol).or_else(|e| if e.errno() == Some(nix::errno::Errno::EEXIST) { Ok(()) } else { Err(e) });
        note(&mut errors, r2, || format!("ip route add {r}"));
    }
    writes.netlink = nl.writes;
    Error::collect(errors).map_or(Ok(()), Err)
}

/// Deleting what is already gone is done.
fn gone(e: crate::netlink::NetlinkError) -> Result<(), crate::netlink::NetlinkError> {
    use nix::errno::Errno;
    if matches!(e.errno(), Some(Errno::ESRCH) | Some(Errno::EADDRNOTAVAIL) | Some(Errno::ENOENT)) { Ok(()) } else { Err(e) }
}

fn note(errors: &mut Vec<Error>, r: Result<(), crate::netlink::NetlinkError>, what: impl FnOnce() -> String) {
    if let Err(source) = r {
        errors.push(Error::Netlink { doing: what(), source });
    }
}

fn run_ops(nl: &mut Netlink, writes: &mut Writes, ops: &[(String, Op)], protocol: u8, errors: &mut Vec<Error>) {
    if ops.is_empty() {
        return;
    }
    let just_ops: Vec<Op> = ops.iter().map(|(_, o)| o.clone()).collect();
    match nl.batch(&just_ops, protocol) {
        Ok(results) => {
            for ((ifname, op), r) in ops.iter().zip(results) {
                if let Err(source) = r
                    && !op.harmless(source.errno())
                {
                    errors.push(Error::Netlink { doing: op.describe(ifname), source });
                }
            }
        }
        Err(source) => errors.push(Error::Netlink { doing: "sending the changes".into(), source }),
    }
    writes.netlink = nl.writes;
}
