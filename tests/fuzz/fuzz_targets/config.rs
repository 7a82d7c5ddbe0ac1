//! The configuration file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = stronghost::config::Config::parse(&String::from_utf8_lossy(data)) {
        assert!(c.table_min <= c.table_max && c.table_min > 255);
    }
});
