//! Deciding the nftables table: what brings it from what was read (`Current`) to what the host
//! needs (`Want`), as the smallest change (members over nfnetlink) or a whole repair script, and
//! the same change in words and as `nft` commands. Pure.

use crate::config::Config;
use crate::model::table::*;
use std::collections::BTreeSet;
use std::net::IpAddr;

impl Shape {
    /// The shape the configuration asks for.
    pub fn of(cfg: &Config) -> Shape {
        Shape { reverse_path: cfg.rp_filter, mark_mask: cfg.mark_mask, table_min: cfg.table_min }
    }
}

/// The default configuration's.
impl Default for Shape {
    fn default() -> Self {
        Shape::of(&Config::default())
    }
}

impl Change {
    /// What is wrong with the table, for an operator: `check` reports this. `name_of` names an
    /// interface index, if a link has it (the table's sets hold indexes; an operator knows names).
    pub fn summary(&self, name_of: &dyn Fn(u32) -> Option<String>) -> String {
        let names = |v: &[(String, u32)]| v.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(" ");
        let iface = |i: u32| match name_of(i) {
            Some(name) => format!("{name} (index {i})"),
            None => format!("index {i} (no such interface)"),
        };
        let numbers = |v: &[u32]| v.iter().map(|&i| iface(i)).collect::<Vec<_>>().join(", ");
        let pairs = |v: &[(IpAddr, u32)]| v.iter().map(|&(a, i)| format!("{a} on {}", iface(i))).collect::<Vec<_>>().join(", ");
        match self {
            Change::Create(_) => "the table is missing".into(),
            Change::Delete => "the table exists although no interface is managed".into(),
            Change::Repair { .. } => {
                "its chains, rules, sets or counters are not as stronghost writes them (changed by hand or by another tool)".into()
            }
            Change::Members { add, remove, add_indexes, remove_indexes, add_own, remove_own, .. } => {
                let mut parts = Vec::new();
                if !add.is_empty() {
                    parts.push(format!("members missing or with another table: {}", names(add)));
                }
                if !remove.is_empty() {
                    parts.push(format!("members that should not be there: {}", names(remove)));
                }
                if !add_indexes.is_empty() {
                    parts.push(format!(
                        "interfaces missing from the reverse-path set (their traffic is dropped as reverse path): {}",
                        numbers(add_indexes)
                    ));
                }
                if !remove_indexes.is_empty() {
                    parts.push(format!("stale indexes in the reverse-path set: {}", numbers(remove_indexes)));
                }
                if !remove_own.is_empty() {
                    parts.push(format!(
                        "stale addresses in the receive filter's fast path (packets for them pass unchecked on these interfaces): {}",
                        pairs(remove_own)
                    ));
                }
                if !add_own.is_empty() {
                    parts.push(format!(
                        "addresses missing from the receive filter's fast path (their packets take the slower check): {}",
                        pairs(add_own)
                    ));
                }
                parts.join("; ")
            }
        }
    }

    /// The equivalent `nft` commands.
    pub fn describe(&self) -> String {
        match self {
            Change::Repair { script, .. } => format!("nft -f - <<'EOF'\n{script}EOF"),
            Change::Create(want) => format!("nft -f - <<'EOF'\n{}EOF", script(&Current::default(), want)),
            Change::Delete => format!("nft delete table {T}; nft delete table {B}"),
            Change::Members { add, remove, add_indexes, remove_indexes, add_own, remove_own, shape } => {
                let mut s = Vec::new();
                for (n, t) in remove {
                    let mut c: Vec<String> = ["wrong_iface", "src_iface", "reverse_path", "iface_mark", "managed"]
                        .iter()
                        .map(|map| format!("nft delete element {T} {map} {{ \"{n}\" }}"))
                        .collect();
                    c.push(format!("nft delete element {T} mark_iface {{ {} }}", hex(shape.mark(*t))));
                    c.extend(chains_of(*t).iter().map(|chain| format!("nft delete chain {T} {chain}")));
                    c.extend(counters_of(*t).iter().map(|ctr| format!("nft delete counter {T} {ctr}")));
                    s.push(c.join("; "));
                }
                for i in remove_indexes {
                    s.push(format!("nft delete element {T} rpf_ok {{ {i} . {i} }}"));
                }
                for i in add_indexes {
                    s.push(format!("nft add element {T} rpf_ok {{ {i} . {i} }}"));
                }
                for (verb, list) in [("delete", remove_own), ("add", add_own)] {
                    for (a, i) in list {
                        s.push(format!("nft {verb} element {T} {} {{ {a} . {i} }}", own_element(*a, *i).0));
                    }
                }
                for (n, t) in add {
                    let (chain, reverse) = (member_chain(*t), reverse_chain(*t));
                    let mut c: Vec<String> = counters_of(*t).iter().map(|ctr| format!("nft add counter {T} {ctr}")).collect();
                    c.push(format!("nft add chain {T} {chain}"));
                    c.extend(member_rules(shape, *t).iter().map(|r| format!("nft add rule {T} {chain} {}", r.text())));
                    c.push(format!("nft add chain {T} {reverse}"));
                    c.extend(reverse_rules(shape, *t).iter().map(|r| format!("nft add rule {T} {reverse} {}", r.text())));
                    c.push(format!("nft add element {T} managed {{ \"{n}\" }}"));
                    c.extend(counter_maps(*t).iter().map(|(map, ctr)| format!("nft add element {T} {map} {{ \"{n}\" : \"{ctr}\" }}")));
                    c.push(format!("nft add element {T} reverse_path {{ \"{n}\" : jump {reverse} }}"));
                    c.push(format!("nft add element {T} iface_mark {{ \"{n}\" : goto {chain} }}"));
                    c.push(format!("nft add element {T} mark_iface {{ {} : goto {chain} }}", hex(shape.mark(*t))));
                    s.push(c.join("; "));
                }
                s.join("\n")
            }
        }
    }
}

/// What brings the table from `cur` to `want`, or `None` when it is converged.
pub fn plan(cur: &Current, want: &Want) -> Option<Change> {
    if want.members.is_empty() && !want.others {
        return (cur.exists || cur.bridge_alone).then_some(Change::Delete);
    }
    if !cur.exists {
        return Some(Change::Create(want.clone()));
    }
    let Some(have) = cur.members().filter(|_| cur.rules_ok && cur.shape == want.shape) else {
        return Some(Change::Repair { script: script(cur, want), want: want.clone() });
    };
    // Read for one interface: decide on that one alone.
    let wanted: Members = match &cur.scope {
        Some(n) => want.members.iter().filter(|(m, _)| *m == n).map(|(m, t)| (m.clone(), *t)).collect(),
        None => want.members.clone(),
    };
    let add: Vec<(String, u32)> = wanted.iter().filter(|(n, t)| have.get(*n) != Some(*t)).map(|(n, t)| (n.clone(), *t)).collect();
    let remove: Vec<(String, u32)> = have.iter().filter(|(n, t)| wanted.get(*n) != Some(*t)).map(|(n, t)| (n.clone(), *t)).collect();
    let indexes = wanted_indexes(cur, want);
    let add_indexes: Vec<u32> = indexes.difference(&cur.rpf_ok).copied().collect();
    let remove_indexes: Vec<u32> = cur.rpf_ok.difference(&indexes).copied().collect();
    let own = wanted_own(cur, want);
    let add_own: Vec<(IpAddr, u32)> = own.difference(&cur.own).copied().collect();
    let remove_own: Vec<(IpAddr, u32)> = cur.own.difference(&own).copied().collect();
    let changed = [add.is_empty(), remove.is_empty(), add_indexes.is_empty(), remove_indexes.is_empty()].contains(&false)
        || !add_own.is_empty()
        || !remove_own.is_empty();
    changed.then_some(Change::Members { add, remove, add_indexes, remove_indexes, add_own, remove_own, shape: want.shape })
}

pub(crate) fn wanted_indexes(cur: &Current, want: &Want) -> BTreeSet<u32> {
    if want.exact { want.indexes.clone() } else { cur.rpf_ok.union(&want.indexes).copied().collect() }
}

/// The fast path's pairs the table should hold: `want`'s, and — for a plan of some interfaces
/// only — the table's pairs of the others, but for the addresses this plan gives a pair (an
/// address has one pair, its owner's: an interface that takes an address over takes its pair).
/// Unlike a stale index, a stale pair is never kept: it would let a packet for a moved address
/// through on the interface it left.
pub(crate) fn wanted_own(cur: &Current, want: &Want) -> BTreeSet<(IpAddr, u32)> {
    if want.exact {
        return want.own.clone();
    }
    let decided: BTreeSet<IpAddr> = want.own.iter().map(|(a, _)| *a).collect();
    cur.own.iter().filter(|(a, i)| !want.own_indexes.contains(i) && !decided.contains(a)).chain(&want.own).copied().collect()
}

/// The `nft -f` transaction that makes the table what `want` says, keeping its counters.
pub fn script(cur: &Current, want: &Want) -> String {
    let shape = &want.shape;
    let (bridge_chain, _, _, _, bridge_spec) = BRIDGE_CHAIN;
    let bridge = bridge_rule(shape);
    let mut s = format!(
        "add table {B}\nadd chain {B} {bridge_chain} {{ {bridge_spec} }}\nflush chain {B} {bridge_chain}\n\
         add rule {B} {bridge_chain} {} comment \"{}\"\n",
        bridge.text(),
        bridge.comment
    );
    s += &format!("add table {T}\n");
    for (name, _, _, _, spec) in CHAINS {
        s += &format!("add chain {T} {name} {{ {spec} }}\nflush chain {T} {name}\n");
    }
    for name in SHARED {
        s += &format!("add chain {T} {name}\nflush chain {T} {name}\n");
    }
    for (kind, name, spec) in SETS {
        s += &format!("add {kind} {T} {name} {{ {spec} }}\nflush {kind} {T} {name}\n");
    }
    if cur.legacy {
        // 0.2's whole-word marks and 0.3's reverse-path counters by name; their rules went with
        // the flushes above.
        s += &format!("add map {T} conn_mark {{ type ifname : mark; }}\ndelete map {T} conn_mark\n");
        s += &format!("add set {T} conn_marks {{ type mark; }}\ndelete set {T} conn_marks\n");
        s += &format!("add map {T} rpf_iface {{ type ifname : counter; }}\ndelete map {T} rpf_iface\n");
        // 0.4.0's base chain; `add` first, as the other deletions above: it may not be there.
        for c in LEGACY_CHAINS {
            s += &format!("add chain {T} {c}\nflush chain {T} {c}\ndelete chain {T} {c}\n");
        }
    }
    let chains: BTreeSet<String> = want.members.values().flat_map(|t| chains_of(*t)).collect();
    // Nothing refers to a chain any more once the maps and base chains are flushed.
    for c in cur.chains.keys().filter(|c| !chains.contains(*c)) {
        s += &format!("delete chain {T} {c}\n");
    }
    // Counters before the chains whose rules name them.
    let counters: BTreeSet<String> = want.members.values().flat_map(|t| counters_of(*t)).collect();
    for c in &counters {
        s += &format!("add counter {T} {c}\n");
    }
    for t in want.members.values().collect::<BTreeSet<_>>() {
        let [chain, reverse] = chains_of(*t);
        for (name, rules) in [(chain, member_rules(shape, *t)), (reverse, reverse_rules(shape, *t))] {
            s += &format!("add chain {T} {name}\nflush chain {T} {name}\n");
            for r in rules {
                s += &format!("add rule {T} {name} {} comment \"{}\"\n", r.text(), r.comment);
            }
        }
    }
    let list = |f: &dyn Fn(&String, u32) -> String| want.members.iter().map(|(n, t)| f(n, *t)).collect::<Vec<_>>().join(", ");
    s += &format!("add element {T} managed {{ {} }}\n", list(&|n, _| format!("\"{n}\"")));
    s += &format!("add element {T} wrong_iface {{ {} }}\n", list(&|n, t| format!("\"{n}\" : \"{}\"", drop_counter(t))));

    s += &format!("add element {T} src_iface {{ {} }}\n", list(&|n, t| format!("\"{n}\" : \"{}\"", src_counter(t))));
    s += &format!("add element {T} reverse_path {{ {} }}\n", list(&|n, t| format!("\"{n}\" : jump {}", reverse_chain(t))));
    s += &format!("add element {T} iface_mark {{ {} }}\n", list(&|n, t| format!("\"{n}\" : goto {}", member_chain(t))));
    let marks: BTreeSet<u32> = want.members.values().copied().collect();
    let by_mark = marks.iter().map(|t| format!("{} : goto {}", hex(shape.mark(*t)), member_chain(*t))).collect::<Vec<_>>();
    s += &format!("add element {T} mark_iface {{ {} }}\n", by_mark.join(", "));
    let indexes = wanted_indexes(cur, want);
    if !indexes.is_empty() {
        s += &format!("add element {T} rpf_ok {{ {} }}\n", indexes.iter().map(|i| format!("{i} . {i}")).collect::<Vec<_>>().join(", "));
    }
    let own = wanted_own(cur, want);
    for set in ["own4", "own6"] {
        let pairs: Vec<String> = own.iter().filter(|(a, i)| own_element(*a, *i).0 == set).map(|(a, i)| format!("{a} . {i}")).collect();
        if !pairs.is_empty() {
            s += &format!("add element {T} {set} {{ {} }}\n", pairs.join(", "));
        }
    }
    for c in cur.counters.keys().filter(|c| !counters.contains(*c)) {
        s += &format!("delete counter {T} {c}\n");
    }
    for r in base_rules(shape) {
        s += &format!("add rule {T} {} {} comment \"{}\"\n", r.chain, r.text(), r.comment);
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A table of these members, with the default shape.
    pub(crate) fn want(v: &[(&str, u32)], indexes: &[u32]) -> Want {
        Want {
            members: v.iter().map(|(a, b)| (a.to_string(), *b)).collect(),
            indexes: indexes.iter().copied().collect(),
            exact: true,
            shape: Shape::default(),
            others: false,
            ..Want::default()
        }
    }

    #[test]
    fn converged_table_needs_no_transaction() {
        let w = want(&[("eth0", 4101), ("eth1", 4102)], &[2, 3]);
        let cur = Current {
            exists: true,
            bridge_alone: false,
            scope: None,
            rules_ok: true,
            managed: ["eth0".to_string(), "eth1".to_string()].into(),
            wrong_iface: [("eth0".to_string(), "drop_4101".to_string()), ("eth1".to_string(), "drop_4102".to_string())].into(),
            reverse_path: [("eth0".to_string(), "reverse_4101".to_string()), ("eth1".to_string(), "reverse_4102".to_string())].into(),
            src_iface: [("eth0".to_string(), "src_4101".to_string()), ("eth1".to_string(), "src_4102".to_string())].into(),
            shape: Shape::default(),
            iface_mark: [("eth0".to_string(), "mark_4101".to_string()), ("eth1".to_string(), "mark_4102".to_string())].into(),
            mark_iface: [(0x0100_0000, "mark_4101".to_string()), (0x0200_0000, "mark_4102".to_string())].into(),
            chains: ["mark_4101", "mark_4102", "reverse_4101", "reverse_4102"].map(|c| (c.to_string(), true)).into(),
            legacy: false,
            rpf_ok: [2, 3].into(),
            own: BTreeSet::new(),
            counters: [
                ("drop_4101".to_string(), 3),
                ("drop_4102".to_string(), 0),
                ("rpf_4101".to_string(), 1),
                ("rpf_4102".to_string(), 0),
                ("src_4101".to_string(), 2),
                ("src_4102".to_string(), 0),
            ]
            .into(),
        };
        assert_eq!(plan(&cur, &w), None);
        assert_eq!(cur.drops(4101), Drops { wrong_interface: Some(3), reverse_path: Some(1), foreign_source: Some(2) });
        // One member fewer on an intact table: a nfnetlink update, not a script.
        let fewer = want(&[("eth0", 4101)], &[2]);
        assert_eq!(
            plan(&cur, &fewer),
            Some(Change::Members {
                add: vec![],
                remove: vec![("eth1".into(), 4102)],
                add_indexes: vec![],
                remove_indexes: vec![3],
                add_own: vec![],
                remove_own: vec![],
                shape: Shape::default()
            })
        );
        // `check` names an index by its link, and says when no link has it.
        let name_of = |i: u32| (i == 2).then(|| "eth0".to_string());
        let gone = Change::Members {
            add: vec![],
            remove: vec![("eth1".into(), 4102)],
            add_indexes: vec![2],
            remove_indexes: vec![3],
            add_own: vec![],
            remove_own: vec![],
            shape: Shape::default(),
        };
        assert_eq!(
            gone.summary(&name_of),
            "members that should not be there: eth1; interfaces missing from the reverse-path set (their traffic is dropped \
             as reverse path): eth0 (index 2); stale indexes in the reverse-path set: index 3 (no such interface)"
        );
        assert!(matches!(plan(&Current { rules_ok: false, ..cur.clone() }, &w), Some(Change::Repair { .. })));
        // A member's chain edited, a stray chain, the maps of 0.2 left over: not intact, and the
        // script deletes what is not wanted.
        let mut edited = cur.clone();
        edited.chains.insert("mark_4102".into(), false);
        assert!(matches!(plan(&edited, &w), Some(Change::Repair { .. })));
        let mut stray = cur.clone();
        stray.chains.insert("other".into(), false);
        stray.legacy = true;
        assert!(matches!(plan(&stray, &w), Some(Change::Repair { .. })));
        let s = script(&stray, &fewer);
        assert!(s.contains("delete chain inet stronghost other\n") && s.contains("delete chain inet stronghost mark_4102\n"), "{s}");
        assert!(s.contains("delete map inet stronghost conn_mark\n") && s.contains("delete set inet stronghost conn_marks\n"), "{s}");
        // A counter missing: not intact.
        let mut broken = cur.clone();
        broken.counters.remove("rpf_4102");
        assert!(matches!(plan(&broken, &w), Some(Change::Repair { .. })));
        let s = script(&cur, &fewer);
        assert!(s.contains("delete counter inet stronghost drop_4102") && !s.contains("delete counter inet stronghost drop_4101"), "{s}");
        assert_eq!(plan(&cur, &Want::default()), Some(Change::Delete));
        assert_eq!(plan(&Current::default(), &Want::default()), None);
    }

    /// A plan for one interface decides its own pairs and those of the addresses it owns, and
    /// leaves every other pair as it is; a plan of the whole host decides every pair.
    #[test]
    fn a_pair_follows_its_address_and_the_owner_takes_it_over() {
        let (a, b, vip): (IpAddr, IpAddr, IpAddr) =
            ("198.51.100.40".parse().unwrap(), "198.51.100.41".parse().unwrap(), "198.51.100.77".parse().unwrap());
        // eth1 (index 3) held the VIP alone; eth0 (index 2) took it, as the lower index.
        let cur = Current { own: [(a, 2), (b, 3), (vip, 3)].into(), ..Current::default() };
        let eth0 = Want { exact: false, own: [(a, 2), (vip, 2)].into(), own_indexes: [2].into(), ..Want::default() };
        assert_eq!(wanted_own(&cur, &eth0), [(a, 2), (b, 3), (vip, 2)].into());
        // eth0 lost 198.51.100.40 (found through its old `from` rule): its pair goes, eth1's stay.
        let lost = Want { exact: false, own: [(vip, 2)].into(), own_indexes: [2].into(), ..Want::default() };
        assert_eq!(wanted_own(&cur, &lost), [(b, 3), (vip, 2)].into());
        // eth1 planned alone, not the owner: eth0's pair of the VIP stays.
        let cur = Current { own: [(b, 3), (vip, 2)].into(), ..Current::default() };
        let eth1 = Want { exact: false, own: [(b, 3)].into(), own_indexes: [3].into(), ..Want::default() };
        assert_eq!(wanted_own(&cur, &eth1), cur.own);
        // The whole host: exactly what is wanted.
        let host = Want { exact: true, own: [(b, 3)].into(), ..Want::default() };
        assert_eq!(wanted_own(&cur, &host), [(b, 3)].into());
    }
}
