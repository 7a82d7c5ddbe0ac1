//! `hook dhclient`: runs inside dhclient-script's exit hook. Whatever happens it exits 0, because
//! a non-zero status on BOUND/RENEW makes dhclient decline the lease.

use super::apply::{reconcile, Target};
use super::engine;
use crate::config::Config;
use crate::lease::{dhclient_event, LeaseEvent};

pub fn dhclient(cfg: &Config) -> i32 {
    let env = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
    let mut warnings = Vec::new();
    let event = dhclient_event(&env, &mut warnings);
    let ifname = std::env::var("interface").unwrap_or_default();
    for w in &warnings {
        log::warn!("dhclient lease on {}: {w}", crate::net::printable(&ifname));
    }
    let event = match event {
        Ok(e) => e,
        Err(e) => {
            log::error!("dhclient event on {} rejected, nothing changed: {e}", crate::net::printable(&ifname));
            return 0;
        }
    };
    let (name, target) = match &event {
        LeaseEvent::Ignored { reason } => {
            log::debug!("dhclient reason {reason:?}: nothing to do");
            return 0;
        }
        LeaseEvent::Bound { ifname, .. } => (ifname.clone(), Target::Apply(ifname)),
        LeaseEvent::Gone { ifname } => (ifname.clone(), Target::LeaseGone(ifname)),
    };
    if !cfg.manages(&name) {
        log::debug!("{name} is not managed by the configuration; lease ignored");
        return 0;
    }
    let mut e = match engine(cfg) {
        Ok(e) => e,
        Err(err) => {
            log::error!("{err}");
            return 0;
        }
    };
    let record_lease = |e: &mut crate::engine::Engine| {
        if let LeaseEvent::Bound { lease, .. } = &event {
            e.records.entry(name.clone()).or_default().lease = Some(lease.clone());
        }
    };
    match reconcile(&mut e, &target, false, record_lease) {
        Ok(done) => log::info!("dhclient {}: {name}: {} change(s)", std::env::var("reason").unwrap_or_default(), done.lines.len()),
        Err(err) => log::error!("dhclient {}: {name}: {err}", std::env::var("reason").unwrap_or_default()),
    }
    0
}
