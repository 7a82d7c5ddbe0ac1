//! Talking to the kernel over netlink: one transport (transport.rs) under rtnetlink for links,
//! addresses, rules and routes (route.rs) and nfnetlink for the receive filter (nftables.rs).

pub mod abi;
pub mod conntrack;
pub mod nftables;
pub mod route;
pub mod subscription;
#[cfg(test)]
pub mod testns;
pub mod transport;

pub use route::*;
pub use transport::NetlinkError;
