//! `apply`, `release`, `sync` and `plan`: the same engine run, with or without writing.

use super::{LOCK_WAIT, engine};
use crate::config::Config;
use crate::engine::{Engine, Intent, Plan, render, touched};

/// What a reconcile did (or, dry, would do).
#[derive(Debug, Default)]
pub struct Done {
    /// The changes as equivalent commands.
    pub lines: Vec<String>,
    /// Rules and routes added and removed, by description.
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

pub enum Target<'a> {
    Apply(&'a str),
    Release(&'a str),
    /// A DHCP lease ended: the interface stays managed (its other addresses keep their policy,
    /// its ARP hardening stays); released only if the interface itself is gone.
    LeaseGone(&'a str),
    Sync,
    /// Everything stronghost has set up, everywhere (package removal).
    ReleaseAll,
}

/// Plans and (unless `dry_run`) executes under the host-wide lock.
/// `prepare` runs under the lock, before planning (a hook records its lease there).
pub fn reconcile(e: &mut Engine, target: &Target, dry_run: bool, prepare: impl FnOnce(&mut Engine)) -> Result<Done, String> {
    // One interface: read only its state. Everything: read everything.
    let one = match target {
        Target::Apply(n) | Target::Release(n) | Target::LeaseGone(n) => Some(*n),
        Target::Sync | Target::ReleaseAll => None,
    };
    let lock = match one {
        Some(n) => e.lock_one(LOCK_WAIT, n)?,
        None => e.lock(LOCK_WAIT)?,
    };
    prepare(e);
    let k = match one {
        Some(n) => e.kernel_for(n)?,
        None => e.kernel()?,
    };
    let (plans, mut errors): (Vec<Plan>, Vec<String>) = match target {
        Target::Apply(n) => (vec![e.plan_interface(&k, n, Intent::Apply)?], vec![]),
        Target::Release(n) => (vec![e.plan_interface(&k, n, Intent::Release)?], vec![]),
        Target::LeaseGone(n) => {
            if let Some(r) = e.records.get_mut(*n) {
                r.lease = None;
            }
            let intent = if k.link(n).is_some() && e.names.contains(*n) { Intent::Apply } else { Intent::Release };
            (vec![e.plan_interface(&k, n, intent)?], vec![])
        }
        Target::Sync => e.plan_sync(&k, false),
        Target::ReleaseAll => e.plan_sync(&k, true),
    };
    let host = e.plan_host(&k, &plans);
    let lines = render(&plans, &host, e.cfg.protocol);
    let (added, removed) = touched(&plans, &host);
    if !dry_run {
        for l in &lines {
            log::debug!("{l}");
        }
        if let Err(err) = e.execute(&plans, &host) {
            errors.push(err);
        }
    }
    drop(lock);
    if errors.is_empty() { Ok(Done { lines, added, removed }) } else { Err(errors.join("; ")) }
}

pub fn run(cfg: &Config, target: Target, json: bool) -> i32 {
    let mut e = match engine(cfg) {
        Ok(e) => e,
        Err(err) => {
            log::error!("{err}");
            return 1;
        }
    };
    let what = match &target {
        Target::Apply(n) => format!("apply {n}"),
        Target::Release(n) | Target::LeaseGone(n) => format!("release {n}"),
        Target::Sync => "sync".to_string(),
        Target::ReleaseAll => "release --all".to_string(),
    };
    let result = reconcile(&mut e, &target, false, |_| {});
    let w = e.writes();
    if json {
        let v = serde_json::json!({"command": what, "ok": result.is_ok(), "writes": w,
            "error": result.as_ref().err()});
        println!("{v}");
    } else if result.is_ok() {
        if w.netlink + w.sysctl + w.nft == 0 {
            println!("{what}: already in place, nothing written");
        } else {
            println!("{what}: {} netlink, {} sysctl, {} nft writes", w.netlink, w.sysctl, w.nft);
        }
    }
    match result {
        Ok(done) => {
            if !done.lines.is_empty() {
                log::info!("{what}: {} change(s)", done.lines.len());
            }
            0
        }
        Err(err) => {
            log::error!("{what}: {err}");
            1
        }
    }
}

pub fn plan(cfg: &Config, interface: Option<&str>) -> i32 {
    let mut e = match engine(cfg) {
        Ok(e) => e,
        Err(err) => {
            log::error!("{err}");
            return 1;
        }
    };
    let target = match interface {
        Some(n) => Target::Apply(n),
        None => Target::Sync,
    };
    match reconcile(&mut e, &target, true, |_| {}) {
        Ok(done) if done.lines.is_empty() => {
            println!("# nothing to change");
            0
        }
        Ok(done) => {
            for l in done.lines {
                println!("{l}");
            }
            0
        }
        Err(err) => {
            log::error!("{err}");
            1
        }
    }
}
