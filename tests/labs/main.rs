//! Every namespace lab, in one test binary: one link for all of them, run one at a time by
//! `tests/run.sh` (each builds a handful of namespaces and DHCP clients on a 2-core machine).
//! `cargo test --test labs dhclient_lab` runs one.

mod concurrency_lab;
mod connections_lab;
mod crash_lab;
mod degraded_lab;
mod dhclient_lab;
mod edge_lab;
mod hostile_lab;
mod inputs_lab;
mod interfaces_lab;
mod ipv6_lab;
mod lab;
mod networkd_lab;
mod networkmanager_lab;
mod package_lab;
mod shared_host_lab;
mod stacks_lab;
mod system_lab;
mod watcher_lab;
mod weak_host_baseline;
