//! The kernel's rules as a long-running process follows them: one dump, then every rule
//! notification applied as it comes. The kernel cannot filter a rule dump, whose cost grows with
//! every interface of the host; the watcher reads the rules this way instead.
//!
//! Exact, not approximate: the kernel queues a change's notification on every subscribed socket
//! before it acknowledges the change to whoever made it, and a run reads the cache only after
//! taking the host-wide lock, so everything the previous holder wrote is in the queue by then.
//! A socket that overran (the kernel could not queue a notification) is re-dumped. Rules are kept
//! as a set (stronghost never writes two identical rules): replaying the notifications queued
//! since the subscription onto a dump taken after it then ends in the kernel's state, whatever
//! the order of dump and notifications.

use crate::model::kernel::Rules;
use crate::netlink::abi::*;
use crate::netlink::route::{Netlink, rule_from_raw};
use crate::netlink::subscription::Subscription;
use crate::netlink::transport::NetlinkError;

// rtnetlink groups and message types (linux/rtnetlink.h).
const RTM_DELRULE: u16 = 33;

pub struct RuleCache {
    sub: Subscription,
    /// Shared with the runs that read it; changed in place once they are done with it.
    rules: Rules,
    /// False until the first dump, and after an overrun.
    valid: bool,
    /// Dumps taken (the first, and one after each overrun or flood).
    pub dumps: u32,
}

/// More notifications than this at once and the cache is dumped anew.
const MAX_BACKLOG: usize = 1024;
/// Dumps tried for one read before it falls back to a plain dump.
const DUMP_TRIES: usize = 3;

impl RuleCache {
    /// Subscribes to the rule notifications of both families (the dump comes with the first read).
    pub fn open() -> std::io::Result<RuleCache> {
        // A sync of thousands of interfaces writes three rules each between two reads.
        let sub = Subscription::open(&[RTNLGRP_IPV4_RULE, RTNLGRP_IPV6_RULE], 16 << 20)?;
        Ok(RuleCache { sub, rules: Rules::default(), valid: false, dumps: 0 })
    }

    /// The rules as the kernel holds them now (dumped over `nl` when the cache cannot tell).
    pub fn rules(&mut self, nl: &mut Netlink) -> Result<Rules, NetlinkError> {
        self.catch_up();
        for _ in 0..DUMP_TRIES {
            if self.valid {
                return Ok(self.rules.clone());
            }
            // Dump after the subscription; what was queued before the dump is replayed after it.
            // A replay that floods or overruns again leaves the cache invalid: dump once more.
            self.rules = Rules::new(nl.dump_rules()?);
            self.dumps += 1;
            self.valid = true;
            self.catch_up();
        }
        // Changing faster than it can be followed: this read is a plain dump, the cache stays
        // invalid until a later read catches up.
        self.valid = false;
        nl.dump_rules().map(Rules::new)
    }

    /// Applies every queued notification; an overrun or an unreadable one invalidates the cache.
    fn catch_up(&mut self) {
        let mut backlog = 0;
        let (rules, valid) = (&mut self.rules, &mut self.valid);
        let complete = self.sub.drain(|m| {
            if m.kind != RTM_NEWRULE && m.kind != RTM_DELRULE {
                return;
            }
            // A flood (a sync of thousands of interfaces): a dump is cheaper than looking up
            // each one, and the cache is gone anyway once invalid.
            backlog += 1;
            if *valid && backlog <= MAX_BACKLOG {
                apply(rules, m.kind, m.payload());
            } else {
                *valid = false;
            }
        });
        self.valid &= complete;
    }
}

fn apply(rules: &mut Rules, kind: u16, payload: &[u8]) {
    // A rule outside the model (iif, uid range…) is outside the dump too.
    let Some(r) = rule_from_raw(RTM_NEWRULE, payload) else { return };
    let at = rules.iter().position(|x| *x == r);
    match (kind, at) {
        (RTM_NEWRULE, None) => std::rc::Rc::make_mut(rules).push(r),
        (RTM_DELRULE, Some(i)) => {
            std::rc::Rc::make_mut(rules).remove(i);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernel::Owned;
    use crate::model::routing::{Rule, Selector};
    use crate::netlink::route::Op;
    use std::net::Ipv4Addr;

    fn sorted(v: &[Owned<Rule>]) -> Vec<(u8, Rule)> {
        let mut v: Vec<(u8, Rule)> = v.iter().map(|r| (r.protocol, r.item.clone())).collect();
        v.sort();
        v
    }

    fn from(k: u32, table: u32) -> Rule {
        let a = Ipv4Addr::from(0xc612_0000 + k); // 198.18.0.0/15
        Rule { v6: false, priority: 4110, selector: Selector::From(a.into()), table, suppress: None, goto: None }
    }

    /// The cache equals a dump after every kind of change: before its first read, by another
    /// socket (another process: a hook), by its own socket (the watcher's writes), by another
    /// tool (another protocol), and after a flood that makes it dump anew.
    #[test]
    fn the_cache_follows_the_kernel() {
        crate::netlink::testns::in_new_netns(|| {
            let mut cached = Netlink::open().unwrap();
            let mut cache = RuleCache::open().unwrap();
            let mut other = Netlink::open().unwrap();
            let run = |nl: &mut Netlink, ops: Vec<Op>, protocol: u8| {
                nl.batch(&ops, protocol).unwrap().into_iter().for_each(|r| r.unwrap());
            };
            let check = |cache: &mut RuleCache, cached: &mut Netlink, other: &mut Netlink, when: &str| {
                assert_eq!(sorted(&cache.rules(cached).unwrap()), sorted(&other.dump_rules().unwrap()), "{when}");
            };
            run(&mut other, (0..10).map(|k| Op::AddRule(from(k, 4101))).collect(), 83);
            check(&mut cache, &mut cached, &mut other, "the first read");
            run(&mut other, (10..20).map(|k| Op::AddRule(from(k, 4102))).collect(), 83);
            run(&mut other, (0..5).map(|k| Op::DelRule(from(k, 4101))).collect(), 83);
            check(&mut cache, &mut cached, &mut other, "after another socket's changes");
            run(&mut cached, (20..30).map(|k| Op::AddRule(from(k, 4103))).collect(), 83);
            run(&mut cached, (10..15).map(|k| Op::DelRule(from(k, 4102))).collect(), 83);
            check(&mut cache, &mut cached, &mut other, "after its own changes");
            run(&mut other, vec![Op::AddRule(from(99, 100))], 4);
            check(&mut cache, &mut cached, &mut other, "after another tool's rule");
            assert_eq!(cache.dumps, 1, "the cache dumped again");
            run(&mut other, (1000..3000).map(|k| Op::AddRule(from(k, 4104))).collect(), 83);
            check(&mut cache, &mut cached, &mut other, "after a flood");
            run(&mut other, (1000..1010).map(|k| Op::DelRule(from(k, 4104))).collect(), 83);
            check(&mut cache, &mut cached, &mut other, "after the flood");
            assert_eq!(cache.dumps, 2, "a flood is dumped anew, once");
        });
    }
}
