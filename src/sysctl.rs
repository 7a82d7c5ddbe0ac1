//! Per-interface IPv4 sysctls that make ARP and reverse-path checks per interface.
//!
//! Only `net.ipv4.conf.<iface>.*` is ever written, never `all` or `default`: those belong to the
//! admin. For all four knobs the kernel acts on the larger of `all` and the interface value, so the
//! *effective* value is shown next to ours.

use crate::config::Config;
use std::io;
use std::path::PathBuf;

/// arp_ignore=1: answer ARP only for addresses of the receiving interface.
/// arp_announce=2: ARP requests carry the outgoing interface's own address.
/// arp_filter=1: answer only if the reply would leave by that interface.
/// rp_filter=0: the kernel's reverse-path check runs after DNAT, on the container's address, and
/// would drop connections to published ports on every interface but main's default one without
/// counting them; stronghost's own check (filter.rs) runs before NAT and counts what it drops.
pub const ARP: [(&str, u32); 3] = [("arp_ignore", 1), ("arp_announce", 2), ("arp_filter", 1)];
pub const RP: (&str, u32) = ("rp_filter", 0);

pub fn wanted(cfg: &Config) -> Vec<(&'static str, u32)> {
    let mut v = Vec::new();
    if cfg.arp_sysctls {
        v.extend(ARP);
    }
    // The kernel's check is turned off only where stronghost's own (in the receive filter)
    // replaces it: with the filter off, rp_filter is left as the admin has it.
    if cfg.rp_filter && cfg.receive_filter {
        v.push(RP);
    }
    v
}

fn path(ifname: &str, knob: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv4/conf/{ifname}/{knob}"))
}

pub fn read(ifname: &str, knob: &str) -> io::Result<u32> {
    let s = std::fs::read_to_string(path(ifname, knob))?;
    s.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{knob}: {s:?}")))
}

/// What writing rp_filter through /proc does besides setting it (devinet_conf_proc): invalidate
/// cached routes, so established sockets are checked again.
pub fn flush_route_cache() -> io::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/route/flush", "1\n")
}

/// The value the kernel acts on: IN_DEV_MAXCONF for all four knobs.
pub fn effective(ifname: &str, knob: &str) -> io::Result<u32> {
    Ok(read("all", knob)?.max(read(ifname, knob)?))
}

pub fn command(ifname: &str, knob: &str, value: u32) -> String {
    // sysctl(8) swaps '.' and '/' in names: eth0.100 is written eth0/100.
    format!("sysctl -w net.ipv4.conf.{}.{knob}={value}", ifname.replace('.', "/"))
}
