//! `apply`, `release`, `sync` and `plan`: the same run (reconcile.rs), with or without writing.

use super::engine;
use crate::config::Config;
use crate::error::Error;
use crate::reconcile::{ClientEvent, Target, reconcile};

pub fn run(cfg: &Config, target: Target, json: bool) -> i32 {
    let what = target.describe();
    let (result, w) = match engine(cfg) {
        Ok(mut e) => (reconcile(&mut e, &target, false, ClientEvent::default()), e.writes().clone()),
        Err(err) => (Err(err), Default::default()),
    };
    if json {
        let v = serde_json::json!({"command": what, "ok": result.is_ok(), "writes": w,
            "error": result.as_ref().err().map(Error::to_json)});
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
            if done.changes > 0 {
                log::info!("{what}: {} change(s)", done.changes);
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
    let target = match interface {
        Some(n) => Target::Apply(n),
        None => Target::Sync,
    };
    match super::reader(cfg).and_then(|mut e| reconcile(&mut e, &target, true, ClientEvent::default())) {
        Ok(done) if done.changes == 0 => {
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
