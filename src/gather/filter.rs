//! Reading stronghost's nftables table over nfnetlink: whether it exists, whether its chains and
//! rules are what model/table.rs describes (judged by their bodies, whatever their comments say),
//! and its members — for one interface by key, or every member.

use crate::error::FilterError;
use crate::model::kernel::Kernel;
use crate::model::nft::Expr;
use crate::model::table::*;
use crate::netlink::NetlinkError;
use crate::netlink::abi::{c_string, u32_ne};
use crate::netlink::nftables::{Chain, Element, InstalledRule, NFPROTO_BRIDGE, Nft};
use std::net::IpAddr;
use std::sync::Arc;

fn read_err(e: NetlinkError) -> FilterError {
    FilterError::Read(Arc::new(e))
}

/// Whether an installed chain's rules are `want`, judged by their bodies whatever their comments
/// say: an edited rule is not ours any more.
fn same_rules(rules: Option<Vec<InstalledRule>>, want: &[Vec<Expr>]) -> bool {
    let now: Vec<Option<Vec<Expr>>> = rules.unwrap_or_default().into_iter().map(|r| r.exprs).collect();
    now.len() == want.len() && now.iter().zip(want).all(|(a, b)| a.as_ref() == Some(b))
}

/// The table's existence and its base chains and rules (`rules_ok`); `None` when it does not exist.
fn read_rules(nft: &mut Nft, shape: &Shape) -> Result<Option<Current>, FilterError> {
    let err = read_err;
    if !nft.table_exists(TABLE).map_err(err)? {
        // The bridge table alone, left by a partial removal: created anew, or removed.
        let bridge = Nft::open_family(NFPROTO_BRIDGE).map_err(|e| err(e.into()))?.table_exists(TABLE).map_err(err)?;
        return Ok(bridge.then(|| Current { bridge_alone: true, shape: *shape, ..Default::default() }));
    }
    let mut c = Current { exists: true, rules_ok: true, shape: *shape, ..Default::default() };
    let bodies = rule_bodies(shape);
    for (name, kind, hook, priority, _) in CHAINS {
        let chain = nft.chain(TABLE, name).map_err(err)?;
        let rules = nft.rules(TABLE, name).map_err(err)?;
        c.rules_ok &= chain == Some(Chain { kind: kind.into(), hook, priority, policy: 1 })
            && same_rules(rules, bodies.get(name).map_or(&[][..], Vec::as_slice));
    }
    for name in SHARED {
        // A regular chain: there, with no hook.
        c.rules_ok &=
            nft.chain_entry(TABLE, name).map_err(err)? == Some(None) && same_rules(nft.rules(TABLE, name).map_err(err)?, &bodies[name]);
    }
    for name in LEGACY_CHAINS {
        c.legacy |= nft.has_chain(TABLE, name).map_err(err)?;
    }
    c.rules_ok &= read_bridge(shape)?;
    Ok(Some(c))
}

/// Whether the bridge table is as stronghost writes it.
fn read_bridge(shape: &Shape) -> Result<bool, FilterError> {
    let err = read_err;
    let mut nft = Nft::open_family(NFPROTO_BRIDGE).map_err(|e| err(e.into()))?;
    let (name, kind, hook, priority, _) = BRIDGE_CHAIN;
    Ok(nft.chain(TABLE, name).map_err(err)? == Some(Chain { kind: kind.into(), hook, priority, policy: 1 })
        && same_rules(nft.rules(TABLE, name).map_err(err)?, &[bridge_rule(shape).body()])
        && nft.chains(TABLE).map_err(err)?.is_some_and(|c| c.len() == 1))
}

/// The pairs the fast path may hold for the interface with `index` and routing table `table`:
/// each of its addresses on it and on any other interface that holds it too (the owner's pair
/// is the one kept), and each address its `from` rules still name (a pair follows its rule, so
/// an address the interface lost is found through the rule this run removes).
pub fn own_candidates(k: &Kernel, index: Option<u32>, table: Option<u32>, protocol: u8) -> Vec<(IpAddr, u32)> {
    let Some(i) = index else { return vec![] };
    let mine: Vec<IpAddr> = k.addrs_of(i).map(|a| a.addr).collect();
    let holders = k.addrs.iter().filter(|a| mine.contains(&a.addr)).map(|a| (a.addr, a.index));
    let from_rules = k.owned_rules(protocol).filter(|r| Some(r.table) == table).filter_map(|r| Some((r.source()?, i)));
    let mut v: Vec<(IpAddr, u32)> = holders.chain(from_rules).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// What an event for one interface needs of the table: its base rules, and that interface's
/// entries and chain only — looked up by key, a constant cost whatever the number of members
/// (dumping every set and counter of a 4,096-interface host costs more than the rest of the
/// event). Falls back to reading everything when the table is not as stronghost left it or the
/// interface's entries disagree: a repair rewrites the whole table.
///
/// The fast path's pairs are looked up for `candidates` (`own_candidates`).
pub fn read_member(shape: &Shape, name: &str, index: Option<u32>, candidates: &[(IpAddr, u32)]) -> Result<Current, FilterError> {
    let err = read_err;
    let mut nft = Nft::open().map_err(|e| err(e.into()))?;
    let Some(mut c) = read_rules(&mut nft, shape)? else { return Ok(Current { shape: *shape, ..Default::default() }) };
    if !c.exists {
        return Ok(c);
    }
    if !c.rules_ok {
        return read_members(&mut nft, c);
    }
    c.scope = Some(name.to_string());
    let key = Element::ifname(name);
    let mut element = |set: &str, key: &[u8]| nft.element(TABLE, set, key).map_err(err);
    if element("managed", &key)?.is_some() {
        c.managed.insert(name.to_string());
    }
    for map in ["wrong_iface", "src_iface"] {
        if let Some(o) = element(map, &key)?.and_then(|e| e.objref) {
            c.map_mut(map).insert(name.to_string(), o);
        }
    }
    if let Some(chain) = element("reverse_path", &key)?.and_then(|e| e.branch?.jump()) {
        c.reverse_path.insert(name.to_string(), chain);
    }
    if let Some(chain) = element("iface_mark", &key)?.and_then(|e| e.branch?.goto()) {
        c.iface_mark.insert(name.to_string(), chain.clone());
        if let Some(t) = table_of_chain(&chain) {
            let v = shape.mark(t);
            if let Some(to) = element("mark_iface", &m32(v))?.and_then(|e| e.branch?.goto()) {
                c.mark_iface.insert(v, to);
            }
            for chain in chains_of(t) {
                let rules = nft.rules(TABLE, &chain).map_err(err)?;
                let ok = chain_bodies(shape, &chain).is_some_and(|b| same_rules(rules, &b));
                c.chains.insert(chain, ok);
            }
            for counter in counters_of(t) {
                if let Some(p) = nft.counter(TABLE, &counter).map_err(err)? {
                    c.counters.insert(counter, p);
                }
            }
        }
    }
    if let Some(i) = index
        && nft.element(TABLE, "rpf_ok", &[i.to_ne_bytes(), i.to_ne_bytes()].concat()).map_err(err)?.is_some()
    {
        c.rpf_ok.insert(i);
    }
    for &(a, i) in candidates {
        let (set, key) = own_element(a, i);
        if nft.element(TABLE, set, &key).map_err(err)?.is_some() {
            c.own.insert((a, i));
        }
    }
    if c.members().is_none() {
        let rules_ok = c.rules_ok;
        return read_members(&mut nft, Current { exists: true, rules_ok, shape: *shape, ..Default::default() });
    }
    Ok(c)
}

/// Reads the table over nfnetlink; an empty `Current` when it does not exist.
pub fn read(shape: &Shape) -> Result<Current, FilterError> {
    let err = read_err;
    let mut nft = Nft::open().map_err(|e| err(e.into()))?;
    match read_rules(&mut nft, shape)? {
        Some(c) if c.exists => read_members(&mut nft, c),
        Some(c) => Ok(c),
        None => Ok(Current { shape: *shape, ..Default::default() }),
    }
}

/// Every member's entries: each set and map dumped, every chain's rules, and the counters.
fn read_members(nft: &mut Nft, mut c: Current) -> Result<Current, FilterError> {
    let err = read_err;
    let mut elements = |set: &str| nft.elements(TABLE, set).map_err(err);
    c.managed = elements("managed")?.unwrap_or_default().into_iter().map(|e| c_string(&e.key)).collect();
    for map in ["wrong_iface", "src_iface"] {
        *c.map_mut(map) = elements(map)?.unwrap_or_default().into_iter().filter_map(|e| Some((c_string(&e.key), e.objref?))).collect();
    }
    c.reverse_path =
        elements("reverse_path")?.unwrap_or_default().into_iter().filter_map(|e| Some((c_string(&e.key), e.branch?.jump()?))).collect();
    c.iface_mark =
        elements("iface_mark")?.unwrap_or_default().into_iter().filter_map(|e| Some((c_string(&e.key), e.branch?.goto()?))).collect();
    c.mark_iface =
        elements("mark_iface")?.unwrap_or_default().into_iter().filter_map(|e| Some((u32_ne(&e.key)?, e.branch?.goto()?))).collect();
    c.legacy |= elements("conn_mark")?.is_some() || elements("conn_marks")?.is_some() || elements("rpf_iface")?.is_some();
    // Pairs i . i; anything else is not ours.
    let pairs = elements("rpf_ok")?.unwrap_or_default();
    c.rpf_ok =
        pairs.iter().filter_map(|e| Some((u32_ne(&e.key)?, u32_ne(e.key.get(4..)?)?))).filter(|(a, b)| a == b).map(|(a, _)| a).collect();
    c.rules_ok &= c.rpf_ok.len() == pairs.len();
    for set in ["own4", "own6"] {
        let keys = elements(set)?.unwrap_or_default();
        let before = c.own.len();
        c.own.extend(keys.iter().filter_map(|e| own_pair_of(set, &e.key)));
        c.rules_ok &= c.own.len() - before == keys.len();
    }
    let mut rules = nft.rules_by_chain(TABLE).map_err(err)?.unwrap_or_default();
    for chain in nft.chains(TABLE).map_err(err)?.unwrap_or_default() {
        if CHAINS.iter().any(|(n, ..)| *n == chain) || SHARED.contains(&chain.as_str()) || LEGACY_CHAINS.contains(&chain.as_str()) {
            continue;
        }
        let ok = chain_bodies(&c.shape, &chain).is_some_and(|b| same_rules(rules.remove(&chain), &b));
        c.chains.insert(chain, ok);
    }
    c.counters = nft.counters(TABLE).map_err(err)?.unwrap_or_default();
    Ok(c)
}
