//! `hook CLIENT`: runs inside a network stack's hook. Whatever happens it exits 0: a non-zero
//! status makes dhclient decline the lease and ifup abort.

use super::apply::{Target, reconcile};
use super::engine;
use crate::cli::HookClient;
use crate::clients::{self, LeaseEvent};
use crate::config::Config;
use crate::engine::Engine;
use crate::lease::Lease;
use crate::net::{Ipv4Net, printable};
use crate::policy::{RT_TABLE_MAIN, Route, RouteKind};
use std::net::IpAddr;

pub fn run(cfg: &Config, client: &HookClient) -> i32 {
    let env = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
    let mut warnings = Vec::new();
    let (name, event) = match client {
        HookClient::Dhclient => ("dhclient", clients::dhclient::event(&env, &mut warnings)),
        HookClient::Dhcpcd => ("dhcpcd", clients::dhcpcd::event(&env, &mut warnings)),
        HookClient::Udhcpc { action } => ("udhcpc", clients::udhcpc::event(action, &env, &mut warnings)),
        HookClient::Networkmanager { interface, action } => {
            ("NetworkManager", clients::networkmanager::event(interface, action, &env, &mut warnings))
        }
        HookClient::Ifupdown => ("ifupdown", clients::ifupdown::event(&env, &mut warnings)),
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
    let mut e = match engine(cfg) {
        Ok(e) => e,
        Err(err) => {
            log::error!("{err}");
            return 0;
        }
    };
    let udhcpc = matches!(client, HookClient::Udhcpc { .. }) && !matches!(event, LeaseEvent::Changed { .. });
    let target = match &event {
        LeaseEvent::Bound { .. } | LeaseEvent::Changed { .. } => Target::Apply(&ifname),
        _ => Target::LeaseGone(&ifname),
    };
    let prepare = |e: &mut Engine| {
        let lease = if let LeaseEvent::Bound { lease, .. } = &event { Some(lease) } else { None };
        if udhcpc {
            configure_for_udhcpc(e, &ifname, lease);
        }
        if let Some(l) = lease {
            e.records.entry(ifname.clone()).or_default().lease = Some(l.clone());
        }
    };
    match reconcile(&mut e, &target, false, prepare) {
        Ok(done) => log::info!("{what}: {} change(s)", done.lines.len()),
        Err(err) => log::error!("{what}: {err}"),
    }
    0
}

/// udhcpc configures nothing itself, and Debian ships no script for it: this is the script's
/// job, done over netlink with validated values. The address and the main-table default route
/// are marked with stronghost's protocol; the previous lease's are removed when they change.
fn configure_for_udhcpc(e: &mut Engine, ifname: &str, lease: Option<&Lease>) {
    let Ok(k) = e.kernel() else { return };
    let Some(link) = k.link(ifname).cloned() else { return };
    let proto = e.cfg.protocol;
    let old = e.records.get(ifname).and_then(|r| r.lease.clone()).filter(|l| l.source == "udhcpc");
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
    if let Some(o) = &old {
        let changed = lease.is_none_or(|n| n.address != o.address || n.prefix_len != o.prefix_len);
        if let (true, Some(r)) = (lease.is_none_or(|n| default_via(n) != default_via(o)), default_via(o)) {
            let _ = e.nl.del_route(&r, proto);
        }
        if changed && let Err(err) = e.nl.del_address(link.index, o.address, o.prefix_len) {
            log::debug!("removing {} from {ifname}: {err}", o.address);
        }
    }
    match lease {
        Some(n) => {
            if let Err(err) = e.nl.add_address(link.index, n.address, n.prefix_len, proto) {
                log::error!("udhcpc: cannot add {}/{} to {ifname}: {err}", n.address, n.prefix_len);
            }
            if let Some(r) = default_via(n) {
                match e.nl.add_route(&r, proto) {
                    Err(err) if err.raw_os_error() != Some(17) => log::error!("udhcpc: ip route add {r}: {err}"),
                    _ => {}
                }
            }
        }
        None => {
            // deconfig also comes first, before any lease: udhcpc needs the link up.
            if !link.up {
                let _ = e.nl.set_link_up(link.index);
            }
        }
    }
}
