//! The model every stage shares, data only: values from outside (addresses, prefixes, leases,
//! validated), the kernel's objects as stronghost sees them, the rules and routes it writes, its
//! records, and the nftables table it wants. Nothing here reads or writes anything: a unit test
//! keeps it so (lib.rs `layout`: no file of this folder imports netlink, state, sysctl, std::fs
//! or std::process).

pub mod kernel;
pub mod lease;
pub mod net;
pub mod nft;
pub mod record;
pub mod routing;
pub mod table;
