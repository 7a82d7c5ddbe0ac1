//! Option 121 in its encodings: Debian's decimal bytes, RHEL's descriptors, "dst/len gw" pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stronghost::model::lease::{parse_rfc3442_bytes, parse_rfc3442_descriptors, parse_route_pairs};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    for r in [parse_rfc3442_bytes(&s), parse_rfc3442_descriptors(&s), parse_route_pairs(&s)].into_iter().flatten() {
        for route in r {
            // Whatever is accepted is a proper prefix.
            assert_eq!(stronghost::model::net::Ipv4Net::new(route.dst.addr, route.dst.len), Ok(route.dst));
        }
    }
});
