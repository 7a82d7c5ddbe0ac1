//! Gathering: reading what a decision needs and nothing else — the kernel's links, addresses,
//! rules and routes (kernel.rs), the nftables table (filter.rs); for a long-running process, the
//! rules and main's default routes kept from notifications instead of dumped on every run
//! (rule_cache.rs, default_cache.rs). Nothing here writes.

pub mod default_cache;
pub mod filter;
pub mod kernel;
pub mod rule_cache;

use crate::model::kernel::{KernelRoute, Rules};
use crate::model::routing::RT_TABLE_MAIN;
use crate::netlink::{Netlink, NetlinkError};
use default_cache::DefaultCache;
use rule_cache::RuleCache;

/// What a long-running process keeps between runs instead of dumping it again (the watcher:
/// `follow_rules`, `follow_main_defaults`); everyone else reads afresh.
#[derive(Default)]
pub struct Caches {
    rules: Option<RuleCache>,
    defaults: Option<DefaultCache>,
}

impl Caches {
    /// Every rule of both families, as the kernel holds them now.
    pub fn rules(&mut self, nl: &mut Netlink) -> Result<Rules, NetlinkError> {
        match &mut self.rules {
            Some(cache) => cache.rules(nl),
            None => nl.rules(),
        }
    }

    /// From now on, read the rules from a cache kept current by the kernel's notifications.
    pub fn follow_rules(&mut self) -> std::io::Result<()> {
        self.rules = Some(RuleCache::open()?);
        Ok(())
    }

    /// Main as a run of one interface needs it when that interface's IPv4 gateway may have to
    /// come from another interface on its network: its routes (`every_route_via`: all of them,
    /// else its IPv4 default routes) and the default routes through other devices a gateway is
    /// borrowed from. From the cache when following them; else all of main.
    pub fn main_for(&mut self, nl: &mut Netlink, oif: u32, every_route_via: bool) -> Result<Vec<KernelRoute>, NetlinkError> {
        match &mut self.defaults {
            Some(cache) => cache.main_for(nl, oif, every_route_via),
            None => nl.routes(RT_TABLE_MAIN),
        }
    }

    /// From now on, keep main's IPv4 default routes from notifications (`main_for`).
    pub fn follow_main_defaults(&mut self) -> std::io::Result<()> {
        self.defaults = Some(DefaultCache::open()?);
        Ok(())
    }
}
