//! busybox udhcpc: `-s SCRIPT` is called with the action as $1 and the lease in the environment
//! (interface, ip, mask or subnet, router, staticroutes). udhcpc configures nothing itself; the
//! script does, so stronghost's udhcpc script also sets the address (see commands/hook.rs).

use super::{LeaseEvent, Reasons, Triage, ignored, triage};
use crate::model::lease::{Env, assemble, check_address, ipv4_field, netmask_field, parse_route_pairs, prefix_field};
use crate::model::net::Invalid;

/// The actions the script passes on (hooks/udhcpc-script lists the same).
pub const REASONS: Reasons = Reasons { bound: &["bound", "renew"], gone: &["deconfig", "leasefail", "nak"], changed: &[] };

pub fn event(action: &str, env: Env, warnings: &mut Vec<String>) -> Result<LeaseEvent, Invalid> {
    // udhcpc6 runs the same kind of script with `ipv6` instead of `ip`; stronghost's script
    // configures IPv4 only (the watcher picks up IPv6 addresses set by other means).
    if env("ipv6").is_some() && env("ip").is_none() {
        return ignored("udhcpc6 (IPv6) event");
    }
    let ifname = match triage(action, &REASONS, env, "interface")? {
        Triage::Done(e) => return Ok(e),
        Triage::Bound(ifname) => ifname,
    };
    let address = ipv4_field(env, "ip")?;
    let prefix_len = if env("mask").is_some_and(|v| !v.is_empty()) {
        prefix_field(env, "mask")?
    } else if env("subnet").is_some_and(|v| !v.is_empty()) {
        netmask_field(env, "subnet")?
    } else {
        32
    };
    check_address("ip", address, prefix_len)?;
    let classless = env("staticroutes").filter(|v| !v.trim().is_empty()).map(|v| ("staticroutes", parse_route_pairs(&v)));
    let lease = assemble(address, prefix_len, ("router", env("router")), classless, "udhcpc", warnings);
    Ok(LeaseEvent::Bound { ifname, lease })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::testenv;

    #[test]
    fn actions() {
        let vars = [("interface", "eth3"), ("ip", "198.51.100.13"), ("mask", "24"), ("router", "198.51.100.1")];
        let (r, _) = testenv::with(&vars, |e, w| event("bound", e, w));
        let LeaseEvent::Bound { lease, .. } = r.unwrap() else { panic!() };
        assert_eq!(lease.prefix_len, 24);
        let (r, _) = testenv::with(&vars, |e, w| event("deconfig", e, w));
        assert_eq!(r.unwrap(), LeaseEvent::Gone { ifname: "eth3".into() });
        let (r, _) = testenv::with(&vars, |e, w| event("$(reboot)", e, w));
        assert!(matches!(r.unwrap(), LeaseEvent::Ignored { .. }));
    }
}
