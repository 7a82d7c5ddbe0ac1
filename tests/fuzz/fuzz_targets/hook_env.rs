//! A hook's environment, as `NAME=value` lines; the first byte picks the stack. Whatever comes
//! in, a parser returns an error, "ignored" or a lease that passes validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use stronghost::clients::{dhclient, dhcpcd, ifupdown, networkmanager, udhcpc, LeaseEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let env: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| env.get(k).map(|v| v.to_string());
    let mut w = Vec::new();
    let r = match which % 5 {
        0 => dhclient::event(&get, &mut w),
        1 => dhcpcd::event(&get, &mut w),
        2 => udhcpc::event(env.get("ACTION").copied().unwrap_or("bound"), &get, &mut w),
        3 => networkmanager::event(env.get("DEVICE").copied().unwrap_or("eth0"), env.get("ACTION").copied().unwrap_or("up"), &get, &mut w),
        _ => ifupdown::event(&get, &mut w),
    };
    if let Ok(LeaseEvent::Bound { ifname, lease }) = r {
        stronghost::model::net::check_ifname(&ifname).unwrap();
        stronghost::model::lease::check_address("address", lease.address, lease.prefix_len).unwrap();
        if let Some(g) = lease.gateway {
            stronghost::model::net::check_unicast("gateway", g).unwrap();
            assert_ne!(g, lease.address);
        }
        assert!(lease.routes.len() <= stronghost::model::lease::MAX_CLASSLESS_ROUTES);
    }
});
