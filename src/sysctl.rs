//! Per-interface IPv4 sysctls, read from /proc (plan/policy.rs says which, and to what; they are
//! written over netlink with the routes).
//!
//! Only `net.ipv4.conf.<iface>.*` is ever written, never `all` or `default`: those belong to the
//! admin. For all four knobs the kernel acts on the larger of `all` and the interface value, so the
//! *effective* value is shown next to ours.

use std::io;
use std::path::PathBuf;

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
