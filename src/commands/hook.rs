//! `hook CLIENT`: runs inside a network stack's hook. Whatever happens it exits 0: a non-zero
//! status makes dhclient decline the lease and ifup abort.

use crate::cli::HookClient;
use crate::clients::{self, LeaseEvent};
use crate::config::Config;
use crate::handoff::{self, Answer};
use crate::model::net::printable;
use crate::reconcile::{self, ClientEvent, Engine, Target, reconcile};
use crate::state::Queued;
use std::time::{Duration, Instant};

/// What a hook may spend: the hooks run stronghost under `timeout 20` (hooks/), which would kill
/// it mid-run; this leaves the run itself 2 s.
const BUDGET: Duration = Duration::from_secs(18);

pub fn run(cfg: Config, client: &HookClient) -> i32 {
    let started = Instant::now();
    let env = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
    let mut warnings = Vec::new();
    let name = client.name();
    let event = match client {
        HookClient::Dhclient => clients::dhclient::event(&env, &mut warnings),
        HookClient::Dhcpcd => clients::dhcpcd::event(&env, &mut warnings),
        HookClient::Udhcpc { action } => clients::udhcpc::event(action, &env, &mut warnings),
        HookClient::Networkmanager { interface, action } => clients::networkmanager::event(interface, action, &env, &mut warnings),
        HookClient::Ifupdown => clients::ifupdown::event(&env, &mut warnings),
    };
    let what = match client {
        HookClient::Networkmanager { interface, action } => format!("{name} {} on {}", printable(action), printable(interface)),
        HookClient::Udhcpc { action } => format!("{name} {} on {}", printable(action), printable(&env("interface").unwrap_or_default())),
        HookClient::Ifupdown => {
            format!("{name} {} on {}", printable(&env("MODE").unwrap_or_default()), printable(&env("IFACE").unwrap_or_default()))
        }
        _ => format!("{name} {} on {}", printable(&env("reason").unwrap_or_default()), printable(&env("interface").unwrap_or_default())),
    };
    for w in &warnings {
        log::warn!("{what}: {w}");
    }
    let event = match event {
        Ok(e) => e,
        Err(e) => {
            log::error!("{what} rejected, nothing changed: {e}");
            return 0;
        }
    };
    let ifname = match &event {
        LeaseEvent::Ignored { reason } => {
            log::debug!("{what}: nothing to do ({reason})");
            return 0;
        }
        LeaseEvent::Bound { ifname, .. } | LeaseEvent::Gone { ifname } | LeaseEvent::Changed { ifname } => ifname.clone(),
    };
    if !cfg.manages(&ifname) {
        log::debug!("{ifname} is not managed by the configuration; {what} ignored");
        return 0;
    }
    let mut e = match Engine::new(cfg) {
        Ok(e) => e,
        Err(err) => {
            log::error!("{err}");
            return 0;
        }
    };
    // udhcpc configures nothing itself, and Debian ships no script for it: stronghost does the
    // script's job, over netlink with validated values, in the same run (plan/mod.rs `client`).
    let configure = matches!(client, HookClient::Udhcpc { .. }) && !matches!(event, LeaseEvent::Changed { .. });
    let target = match &event {
        LeaseEvent::Bound { .. } | LeaseEvent::Changed { .. } => Target::Apply(&ifname),
        _ => Target::LeaseGone(&ifname),
    };
    let lease = if let LeaseEvent::Bound { lease, .. } = &event { Some(lease.clone()) } else { None };
    if configure {
        match reconcile(&mut e, &target, false, ClientEvent { lease, configure }) {
            Ok(done) => log::info!(iface = ifname.as_str(); "{what}: {} change(s)", done.changes),
            Err(err) => log::error!(iface = ifname.as_str(); "{what}: {err}"),
        }
        return 0;
    }
    // Queued, then applied under the lock with whatever else is queued: when every interface
    // gets its lease in the same second, the first hook to hold the lock applies them all. With a
    // watcher running, by the watcher, which need not read every rule (handoff.rs).
    let q = Queued { ifname: ifname.clone(), gone: matches!(target, Target::LeaseGone(_)), lease };
    if let Err(err) = reconcile::enqueue(&e, &q) {
        log::error!(iface = ifname.as_str(); "{what}: {err}");
        return 0;
    }
    match handoff::ask_watcher(handoff::HOOK_WAIT) {
        Some(Answer::Applied(n)) => {
            log::info!(iface = ifname.as_str(); "{what}: {n} change(s), applied by the watcher");
            return 0;
        }
        Some(Answer::Queued(why)) => {
            queued(&what, &ifname, &why);
            return 0;
        }
        Some(Answer::Failed(err)) => {
            log::error!(iface = ifname.as_str(); "{what}: the watcher's run failed: {err}");
            return 0;
        }
        None => {}
    }
    // A watcher that did not answer has had most of the hook's time: wait for the lock with
    // what is left, not LOCK_WAIT again.
    e.limit_lock_wait(BUDGET.saturating_sub(started.elapsed()));
    match reconcile::apply_queued(&mut e, &q) {
        Ok((done, true)) => log::info!(iface = ifname.as_str(); "{what}: {} change(s)", done.changes),
        Ok((_, false)) => log::info!(iface = ifname.as_str(); "{what}: applied by another run"),
        Err(err @ crate::error::Error::Busy { .. }) => queued(&what, &ifname, &err.to_string()),
        // Kept in the queue (reconcile `run_queued`): not applied, not lost.
        Err(err) if err.local() => log::error!(iface = ifname.as_str();
            "{what}: not applied ({err}); the event stays queued for the watcher (it tries again every few seconds) or \
             the next stronghost run, once there is room"),
        Err(err) => log::error!(iface = ifname.as_str(); "{what}: {err}"),
    }
    0
}

/// The lock was held for longer than a hook waits: the event stays queued for the next stronghost
/// run to take the lock — later than the DHCP client returns, not lost.
fn queued(what: &str, ifname: &str, why: &str) {
    log::warn!(iface = ifname;
        "{what}: not applied yet ({why}); the event is queued for the next stronghost run to take the lock (one holding it \
         applies the queue before letting go; a running watcher tries again every second)"
    );
}
