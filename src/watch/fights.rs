//! Another tool undoing stronghost's work: a rule re-added again and again, the nftables table
//! repaired again and again. Past a limit, stronghost pauses instead of fighting in a loop, and
//! says so (`check` fails meanwhile).

use crate::reconcile::{ClientEvent, Engine, Target, reconcile};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Re-adding the same object more often than this within WINDOW means someone undoes our work.
pub(super) const FIGHT_LIMIT: usize = 5;
pub(super) const WINDOW: Duration = Duration::from_secs(10);
pub(super) const PAUSE: Duration = Duration::from_secs(60);

/// Repairs of the receive filter's table in WINDOW beyond which another tool is taken to fight
/// it. Higher than for rules: an admin reloading a firewall a few times in a row is no fight, a
/// tool deleting the table in a loop makes hundreds of changes in that time.
pub(super) const FILTER_FIGHT_LIMIT: usize = 20;

/// Repairs of the receive filter's table, to notice a tool that keeps undoing it (a firewall
/// manager reloading in a loop): repaired up to FILTER_FIGHT_LIMIT times in WINDOW, then left
/// alone for PAUSE — `check` reports the table missing meanwhile — and repaired once the pause
/// ends.
#[derive(Default)]
pub(super) struct FilterRepairs {
    pub(super) at: Vec<Instant>,
    pub(super) paused_until: Option<Instant>,
    /// A change heard during the pause, to repair when it ends.
    pub(super) owed: bool,
}

impl FilterRepairs {
    /// Whether a repair may run now; if not, it is owed for when the pause ends.
    pub(super) fn may_repair(&mut self, now: Instant) -> bool {
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
    pub(super) fn repaired(&mut self, now: Instant) -> bool {
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
    pub(super) fn due(&self) -> Option<Instant> {
        self.paused_until.filter(|_| self.owed)
    }
}

/// Notices another tool undoing stronghost's work: a rule stronghost added, and never removed
/// itself, has to be added again. Made again and again, that is a fight: pause instead of looping.
/// Only rules count: the kernel itself flushes routes (link down, an address re-added), never rules.
pub(super) struct Fights {
    /// (interface, object) → when stronghost had to add it again although it had never removed it.
    pub(super) present: BTreeSet<(String, String)>,
    pub(super) undone: BTreeMap<(String, String), Vec<Instant>>,
    pub(super) paused: BTreeMap<String, Instant>,
}

impl Fights {
    /// Records what a reconcile of `name` added and removed; true if `name` is now paused.
    pub(super) fn note(&mut self, name: &str, added: &[String], removed: &[String]) -> bool {
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

    pub(super) fn is_paused(&mut self, name: &str) -> bool {
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

/// Another process changed the receive filter's table (`by` says who): a full sync puts back the
/// whole host's table — every member, chain and rule, counters kept where nft can merge — unless
/// repairs are paused.
pub(super) fn repair_filter(engine: &mut Engine, by: &str, repairs: &mut FilterRepairs) {
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
