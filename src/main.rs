mod config;
mod lease;
mod net;
mod netlink;
mod policy;
fn main() {}
