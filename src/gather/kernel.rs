//! Reading the kernel: the snapshot a decision needs (model/kernel.rs), everything for a full run
//! or what one interface's plan looks at.

use crate::gather::Caches;
use crate::model::kernel::{Kernel, Link, Rules, foreign_in, rules_of_one};
use crate::model::routing::RT_TABLE_MAIN;
use crate::netlink::{Netlink, NetlinkError};
use std::ops::RangeInclusive;

/// How many free tables a one-interface read looks into for one that holds nothing foreign
/// before it reads them all.
const MAX_TABLE_PROBES: usize = 16;

/// The table of the interface a one-interface read is for.
pub enum Table<'a> {
    /// Its table, with stronghost's route protocol and table range: of the rules, the read keeps
    /// those a plan for the interface looks at (`rules_of_one`).
    Known { table: u32, protocol: u8, range: RangeInclusive<u32> },
    /// None yet: the free tables of the range, lowest first (the order the planner takes them in),
    /// and stronghost's route protocol (anything else in a table makes it someone else's).
    Allocate { free: &'a mut dyn Iterator<Item = u32>, protocol: u8 },
}

impl Kernel {
    /// Everything, for a full run; of the links' IPv4 configuration only that of the links
    /// `configured(name, group)` picks: those a plan may change (`Netlink::links_with`).
    pub fn read(nl: &mut Netlink, caches: &mut Caches, configured: impl Fn(&str, u32) -> bool) -> Result<Kernel, NetlinkError> {
        Ok(Kernel::new(nl.links_with(configured)?, nl.addresses(0)?, caches.rules(nl)?, nl.routes(0)?))
    }

    /// What one interface's plan needs, and no more: its link and addresses, every rule (the
    /// kernel cannot filter a rule dump), and the routes of its table and of main. Of main, when
    /// `gateway_known` (a gateway is configured or leased), only the routes through the interface,
    /// and only if it has IPv6 addresses: the other interfaces' defaults are only looked at for a
    /// gateway on the same network. The cost of an event then grows with the number of interfaces
    /// on the host by the rule dump alone.
    ///
    /// An interface without a table yet (`Table::Allocate`) gets the lowest free one nobody else
    /// uses: those tables are read one at a time, in the order the planner takes them, until one
    /// holds nothing foreign — not every route of every table, which on a host of thousands of
    /// interfaces made each first event cost a full read. Only when none is free (a table of an
    /// interface that is gone gets reclaimed) is every table read. Returns, with the snapshot, the
    /// table whose routes were read: the known one, the free one found, or None (every table).
    pub fn read_one(
        nl: &mut Netlink,
        caches: &mut Caches,
        ifname: &str,
        table: Table,
        gateway_known: bool,
    ) -> Result<(Kernel, Option<u32>), NetlinkError> {
        let links: Vec<Link> = nl.link(ifname)?.into_iter().collect();
        let addrs = match links.first() {
            Some(l) => nl.addresses(l.index)?,
            None => vec![],
        };
        let mut rules = caches.rules(nl)?;
        let mut routes = vec![];
        let table = match table {
            Table::Known { table: t, protocol, range } => {
                routes = nl.routes(t)?;
                let name = links.first().map_or(ifname, |l| l.name.as_str());
                rules = Rules::new(rules_of_one(&rules, name, &addrs, t, protocol, &range));
                Some(t)
            }
            Table::Allocate { free, protocol } => {
                let mut clean = None;
                for t in free.take(MAX_TABLE_PROBES) {
                    let r = nl.routes(t)?;
                    let foreign = foreign_in(r.iter(), &rules, t, protocol).is_some();
                    routes.extend(r);
                    if !foreign {
                        clean = Some(t);
                        break;
                    }
                }
                clean
            }
        };
        // The IPv4 gateway known (configured, leased), main matters only for IPv6: its router and
        // on-link prefixes through the interface (planner `gateways`). Without IPv6 addresses, main
        // is not read at all — the kernel walks every route of it to answer even a dump filtered
        // by device, on a host of thousands of interfaces most of what is left of an event.
        let v6 = addrs.iter().any(|a| a.addr.is_ipv6() && a.gets_policy(true));
        match table {
            Some(_) if gateway_known && !v6 => {}
            Some(_) => {
                let oif = links.first().map(|l| l.index);
                routes.extend(match oif {
                    // The gateway may be another interface's: main's default routes too (the
                    // watcher keeps those; anyone else reads all of main).
                    Some(o) if !gateway_known => caches.main_for(nl, o, v6)?,
                    // ENODEV: the link went away since it was read; all of main, then.
                    Some(o) => match nl.routes_via(RT_TABLE_MAIN, Some(o)) {
                        Err(e) if e.errno() == Some(nix::errno::Errno::ENODEV) => nl.routes(RT_TABLE_MAIN)?,
                        other => other?,
                    },
                    None => nl.routes(RT_TABLE_MAIN)?,
                });
            }
            // No free table: the planner may reclaim one of a gone interface, looking at all of them.
            None => routes = nl.routes(0)?,
        }
        Ok((Kernel::new(links, addrs, rules, routes), table))
    }

    /// Fills in, from /proc, the knobs a link dump did not carry (a kernel without
    /// IFLA_INET_CONF in dumps) for the links `configured` picks, so that deciding never has to
    /// read anything.
    pub fn complete_sysctls(&mut self, knobs: &[(&'static str, u32)], configured: impl Fn(&str, u32) -> bool) {
        for l in self.links.iter_mut().filter(|l| configured(&l.name, l.group)) {
            for (knob, _) in knobs {
                if l.sysctl(knob).is_none()
                    && let Ok(v) = crate::sysctl::read(&l.name, knob)
                {
                    l.sysctls.push((knob, v));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::routing::Route;
    use crate::model::routing::RouteKind;
    use crate::netlink::Op;

    fn unreachable(table: u32) -> Route {
        Route { table, dst: "192.0.2.0/24".parse().unwrap(), metric: 0, kind: RouteKind::Unreachable }
    }

    /// A first event reads the free tables one by one until one holds nothing foreign (here the
    /// second: the first carries another tool's route), not every table; with none free, all.
    #[test]
    fn allocating_a_table_reads_the_free_ones_up_to_a_clean_one() {
        crate::netlink::testns::in_new_netns(|| {
            let mut nl = Netlink::open().unwrap();
            let ops = [Op::AddRoute(unreachable(4101)), Op::AddRoute(unreachable(4102)), Op::AddRoute(unreachable(4104))];
            nl.batch(&ops[..1], 4).unwrap().into_iter().for_each(|r| r.unwrap()); // another tool's
            nl.batch(&ops[1..], 83).unwrap().into_iter().for_each(|r| r.unwrap()); // an orphan of ours, and 4104
            let tables = |k: &Kernel| {
                let mut t: Vec<u32> = k.routes.iter().map(|r| r.table).filter(|t| (4101..=4104).contains(t)).collect();
                t.sort();
                t.dedup();
                t
            };
            let mut free = 4101..=4104u32;
            let (k, found) =
                Kernel::read_one(&mut nl, &mut Caches::default(), "lo", Table::Allocate { free: &mut free, protocol: 83 }, false).unwrap();
            assert_eq!(found, Some(4102));
            assert_eq!(tables(&k), [4101, 4102], "read up to the first clean table, not 4104");
            assert!(k.foreign_in_table(4101, 83).is_some() && k.foreign_in_table(4102, 83).is_none());
            let mut none = 4101..=4101u32;
            let (k, found) =
                Kernel::read_one(&mut nl, &mut Caches::default(), "lo", Table::Allocate { free: &mut none, protocol: 83 }, false).unwrap();
            assert_eq!(found, None);
            assert_eq!(tables(&k), [4101, 4102, 4104], "nothing free: every table");
        });
    }
}
