//! One parser per network stack: each turns its hook's arguments and environment into a
//! `LeaseEvent`. Reasons and actions are allowlists; anything else is ignored. `Err` means the
//! input was invalid: the caller logs it, changes nothing, and the hook still succeeds.

pub mod dhclient;
pub mod dhcpcd;
pub mod ifupdown;
pub mod networkd;
pub mod networkmanager;
pub mod udhcpc;

use crate::lease::Lease;

#[derive(Debug, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A lease (or static configuration) is in force on the interface: record it and apply.
    Bound { ifname: String, lease: Lease },
    /// It ended: the interface keeps its other addresses' policy; its lease is forgotten.
    Gone { ifname: String },
    /// Nothing for stronghost to do.
    Ignored { reason: String },
}

pub fn ignored(what: &str) -> Result<LeaseEvent, String> {
    Ok(LeaseEvent::Ignored { reason: crate::net::printable(what) })
}

#[cfg(test)]
pub mod testenv {
    use std::collections::HashMap;

    /// An environment from pairs, and the parse result with its warnings.
    pub fn with<T>(vars: &[(&str, &str)], f: impl Fn(crate::lease::Env, &mut Vec<String>) -> T) -> (T, Vec<String>) {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut w = Vec::new();
        let r = f(&|k| map.get(k).cloned(), &mut w);
        (r, w)
    }
}
