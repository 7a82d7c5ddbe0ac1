//! systemd-networkd's lease file, as read from /run/systemd/netif/leases.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut w = Vec::new();
    if let Ok(l) = stronghost::clients::networkd::parse_lease(&String::from_utf8_lossy(data), &mut w) {
        stronghost::model::lease::check_address("ADDRESS", l.address, l.prefix_len).unwrap();
    }
});
