//! systemd-networkd has no hooks. Its lease file, /run/systemd/netif/leases/<ifindex>
//! ("private, do not parse" — but the only place the gateway and option 121 are kept), supplies
//! them when no hook recorded a lease; the watcher reacts to networkd's address events.

use crate::model::lease::{Env, Lease, assemble, check_address, ipv4_field, netmask_field, parse_route_pairs};
use crate::model::net::Invalid;
use std::collections::HashMap;

pub const LEASE_DIR: &str = "/run/systemd/netif/leases";

/// Parses a networkd DHCPv4 lease file. Values are validated like any lease: they came from the
/// network.
pub fn parse_lease(text: &str, warnings: &mut Vec<String>) -> Result<Lease, Invalid> {
    let map: HashMap<&str, &str> = text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')).collect();
    let env = |k: &str| map.get(k).map(|v| v.to_string());
    let env: Env = &env;
    let address = ipv4_field(env, "ADDRESS")?;
    let prefix_len = if map.contains_key("NETMASK") { netmask_field(env, "NETMASK")? } else { 32 };
    check_address("ADDRESS", address, prefix_len)?;
    let classless = env("CLASSLESS_ROUTES").filter(|v| !v.trim().is_empty()).map(|v| ("CLASSLESS_ROUTES", parse_route_pairs(&v)));
    Ok(assemble(address, prefix_len, ("ROUTER", env("ROUTER")), classless, "networkd", warnings))
}

/// The current networkd lease of an interface, if networkd manages it.
pub fn lease_for(ifindex: u32) -> Option<Lease> {
    // Most hosts do not run networkd: one look at the directory per second (the watcher lives
    // long, networkd may start later), not one failed open per interface.
    static PRESENT: std::sync::Mutex<Option<(std::time::Instant, bool)>> = std::sync::Mutex::new(None);
    let present = {
        let mut p = PRESENT.lock().unwrap_or_else(|e| e.into_inner());
        match *p {
            Some((at, v)) if at.elapsed() < std::time::Duration::from_secs(1) => v,
            _ => {
                let v = std::path::Path::new(LEASE_DIR).is_dir();
                *p = Some((std::time::Instant::now(), v));
                v
            }
        }
    };
    if !present {
        return None;
    }
    let path = format!("{LEASE_DIR}/{ifindex}");
    let text = std::fs::read_to_string(&path).ok()?;
    let mut warnings = Vec::new();
    let r = parse_lease(&text, &mut warnings);
    for w in warnings {
        log::warn!("{path}: {w}");
    }
    r.map_err(|e| log::warn!("{path}: {e}; ignored")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_networkd_lease() {
        let text = "# This is private data. Do not parse.\nADDRESS=198.51.100.11\nNETMASK=255.255.255.0\nROUTER=198.51.100.1\nCLASSLESS_ROUTES=192.0.2.0/24,198.51.100.254 0.0.0.0/0,198.51.100.2\nDNS=198.51.100.1\n";
        let mut w = Vec::new();
        let l = parse_lease(text, &mut w).unwrap();
        assert_eq!((l.prefix_len, l.gateway.unwrap().to_string(), l.routes.len()), (24, "198.51.100.2".to_string(), 1));
        assert!(parse_lease("ADDRESS=1.2.3\n", &mut w).unwrap_err().to_string().starts_with("ADDRESS"));
    }
}
