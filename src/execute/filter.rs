//! Writing the nftables table: every change is one atomic transaction — creating it, changing
//! members and removing it over nfnetlink; repairing a table someone else altered with `nft -f`,
//! which merges with what is there and keeps the counters.

use crate::error::FilterError;
use crate::gather::filter::read;
use crate::model::nft::{Branch, NFT_DATA_VERDICT};
use crate::model::table::*;
use crate::netlink::abi::*;
use crate::netlink::nftables::{Chain, ChainSpec, Edit, Element, NFPROTO_BRIDGE, Nft, SetSpec, TableSpec};
use crate::plan::filter::script;
use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

fn nft() -> Result<Nft, crate::netlink::NetlinkError> {
    Ok(Nft::open()?)
}

/// What a `Change::Members` changes, borrowed from it.
#[derive(Clone, Copy)]
struct MemberEdits<'a> {
    add: &'a [(String, u32)],
    remove: &'a [(String, u32)],
    add_indexes: &'a [u32],
    remove_indexes: &'a [u32],
    add_own: &'a [(IpAddr, u32)],
    remove_own: &'a [(IpAddr, u32)],
}

/// The nfnetlink edits of a `Change::Members`: everything of the interfaces that leave first
/// (the maps' elements, then their chains, counters last: the maps refer to them); for those that
/// come, counters and chains first.
fn edits(change: &MemberEdits, shape: &Shape) -> Vec<Edit> {
    let MemberEdits { add, remove, add_indexes, remove_indexes, add_own, remove_own } = *change;
    let by_name = |list: &[(String, u32)], value: &dyn Fn(u32) -> Element| -> Vec<Element> {
        list.iter().map(|(n, t)| Element { key: Element::ifname(n), ..value(*t) }).collect()
    };
    let by_mark = |list: &[(String, u32)]| -> Vec<Element> {
        list.iter().map(|(_, t)| Element { branch: Some(Branch::Goto(member_chain(*t))), ..Element::key(m32(shape.mark(*t))) }).collect()
    };
    let pairs = |list: &[u32]| -> Vec<Element> { list.iter().map(|i| Element::key([i.to_ne_bytes(), i.to_ne_bytes()].concat())).collect() };
    let plain = |_| Element::key(vec![]);
    let objref = |c: String| Element { objref: Some(c), ..Element::key(vec![]) };
    let mut e = Vec::new();
    if !remove.is_empty() {
        for set in ["wrong_iface", "src_iface", "reverse_path", "iface_mark", "managed"] {
            e.push(Edit::DelElements { set: set.into(), elements: by_name(remove, &plain) });
        }
        e.push(Edit::DelElements { set: "mark_iface".into(), elements: by_mark(remove) });
        e.extend(remove.iter().flat_map(|(_, t)| chains_of(*t).map(Edit::DelChain)));
        e.extend(remove.iter().flat_map(|(_, t)| counters_of(*t).map(Edit::DelCounter)));
    }
    if !remove_indexes.is_empty() {
        e.push(Edit::DelElements { set: "rpf_ok".into(), elements: pairs(remove_indexes) });
    }
    if !add_indexes.is_empty() {
        e.push(Edit::AddElements { set: "rpf_ok".into(), elements: pairs(add_indexes) });
    }
    // The fast path's stale pairs go first, in the same transaction as everything else.
    for (set, list, add) in [("own4", remove_own, false), ("own6", remove_own, false), ("own4", add_own, true), ("own6", add_own, true)] {
        let elements: Vec<Element> =
            list.iter().map(|(a, i)| own_element(*a, *i)).filter(|(s, _)| *s == set).map(|(_, k)| Element::key(k)).collect();
        if !elements.is_empty() {
            e.push(if add { Edit::AddElements { set: set.into(), elements } } else { Edit::DelElements { set: set.into(), elements } });
        }
    }
    if !add.is_empty() {
        e.extend(add.iter().flat_map(|(_, t)| counters_of(*t).map(Edit::AddCounter)));
        for (_, t) in add {
            let [chain, reverse] = chains_of(*t);
            for (name, rules) in [(chain, member_rules(shape, *t)), (reverse, reverse_rules(shape, *t))] {
                e.push(Edit::AddChain(name.clone()));
                for r in rules {
                    e.push(Edit::AddRule { chain: name.clone(), exprs: r.body(), comment: r.comment.into() });
                }
            }
        }
        e.push(Edit::AddElements { set: "managed".into(), elements: by_name(add, &plain) });
        e.push(Edit::AddElements { set: "wrong_iface".into(), elements: by_name(add, &|t| objref(drop_counter(t))) });
        e.push(Edit::AddElements { set: "src_iface".into(), elements: by_name(add, &|t| objref(src_counter(t))) });
        let to = |b: Branch| Element { branch: Some(b), ..Element::key(vec![]) };
        e.push(Edit::AddElements { set: "reverse_path".into(), elements: by_name(add, &|t| to(Branch::Jump(reverse_chain(t)))) });
        e.push(Edit::AddElements { set: "iface_mark".into(), elements: by_name(add, &|t| to(Branch::Goto(member_chain(t)))) });
        e.push(Edit::AddElements { set: "mark_iface".into(), elements: by_mark(add) });
    }
    e
}

/// The whole table in one nfnetlink transaction, as `script` would write it: no `nft` process on
/// the common path (a first lease on a fresh host).
fn create(want: &Want) -> Result<(), crate::netlink::NetlinkError> {
    const NFT_SET_MAP: u32 = 0x8;
    const NFT_SET_OBJECT: u32 = 0x40;
    // nft's datatypes: ifname, mark, and iface_index . iface_index (6 bits per concatenated type).
    const TYPE_IFNAME: u32 = 41;
    const TYPE_MARK: u32 = 19;
    const TYPE_IFINDEX: u32 = 20;
    const TYPE_IPADDR: u32 = 7;
    const TYPE_IP6ADDR: u32 = 8;
    let set = |name: &str, flags: u32, key_type: u32, key_len: u32, data: Option<(u32, u32)>, obj_type: Option<u32>| SetSpec {
        name: name.into(),
        flags,
        key_type,
        key_len,
        data,
        obj_type,
    };
    let rules = base_rules(&want.shape).iter().map(|r| (r.chain.to_string(), r.body(), r.comment.to_string())).collect();
    let spec = TableSpec {
        chains: CHAINS
            .iter()
            .map(|(name, kind, hook, priority, _)| ChainSpec {
                name: name.to_string(),
                base: Some(Chain { kind: kind.to_string(), hook: *hook, priority: *priority, policy: 1 }),
            })
            .chain(SHARED.iter().map(|name| ChainSpec { name: name.to_string(), base: None }))
            .collect(),
        sets: vec![
            set("managed", 0, TYPE_IFNAME, 16, None, None),
            set("wrong_iface", NFT_SET_OBJECT, TYPE_IFNAME, 16, None, Some(NFT_OBJECT_COUNTER)),
            set("src_iface", NFT_SET_OBJECT, TYPE_IFNAME, 16, None, Some(NFT_OBJECT_COUNTER)),
            set("rpf_ok", 0, (TYPE_IFINDEX << 6) | TYPE_IFINDEX, 8, None, None),
            set("own4", 0, (TYPE_IPADDR << 6) | TYPE_IFINDEX, 8, None, None),
            set("own6", 0, (TYPE_IP6ADDR << 6) | TYPE_IFINDEX, 20, None, None),
            set("reverse_path", NFT_SET_MAP, TYPE_IFNAME, 16, Some((NFT_DATA_VERDICT, 0)), None),
            set("iface_mark", NFT_SET_MAP, TYPE_IFNAME, 16, Some((NFT_DATA_VERDICT, 0)), None),
            set("mark_iface", NFT_SET_MAP, TYPE_MARK, 4, Some((NFT_DATA_VERDICT, 0)), None),
        ],
        rules,
    };
    let members: Vec<(String, u32)> = want.members.iter().map(|(n, t)| (n.clone(), *t)).collect();
    let indexes: Vec<u32> = want.indexes.iter().copied().collect();
    let own: Vec<(IpAddr, u32)> = want.own.iter().copied().collect();
    let all = MemberEdits { add: &members, remove: &[], add_indexes: &indexes, remove_indexes: &[], add_own: &own, remove_own: &[] };
    nft()?.create_table(TABLE, &spec, &edits(&all, &want.shape))?;
    // The bridge table, anew (its rule is appended: a table left behind would hold it twice).
    let (name, kind, hook, priority, _) = BRIDGE_CHAIN;
    let bridge = TableSpec {
        chains: vec![ChainSpec { name: name.into(), base: Some(Chain { kind: kind.into(), hook, priority, policy: 1 }) }],
        sets: vec![],
        rules: vec![{
            let r = bridge_rule(&want.shape);
            (name.into(), r.body(), r.comment.into())
        }],
    };
    Nft::open_family(NFPROTO_BRIDGE)?.replace_table(TABLE, &bridge, &[])
}

/// Both tables gone (already gone is fine).
fn delete_tables() -> Result<(), crate::netlink::NetlinkError> {
    nft()?.delete_table(TABLE)?;
    Nft::open_family(NFPROTO_BRIDGE)?.delete_table(TABLE)
}

/// Makes a change; each kind is one transaction: all of it takes effect or none does.
pub fn apply(change: &Change, shape: &Shape) -> Result<(), FilterError> {
    match change {
        Change::Create(want) => create(want).or_else(|e| {
            if !want.members.keys().all(|n| text_safe(n)) {
                return Err(FilterError::Create(Arc::new(e)));
            }
            log::info!("creating nft table {T} over nfnetlink failed ({e}); writing it with nft");
            run_script(&script(&Current::default(), want))
        }),
        Change::Repair { script, want } => {
            { if want.members.keys().all(|n| text_safe(n)) { run_script(script) } else { Err(FilterError::NotText) } }.or_else(|e| {
                log::warn!(
                    "repairing nft table {T} with nft failed ({e}); recreating it over nfnetlink (its drop counters start again from 0)"
                );
                delete_tables()
                    .and_then(|()| create(want))
                    .map_err(|e2| FilterError::Both(Box::new(e), Box::new(FilterError::Create(Arc::new(e2)))))
            })
        }
        Change::Delete => delete_tables().or_else(|e| {
            log::info!("removing the receive filter over nfnetlink failed ({e}); removing it with nft");
            run_script(&format!("add table {T}\ndelete table {T}\nadd table {B}\ndelete table {B}\n"))
        }),
        Change::Members { add, remove, add_indexes, remove_indexes, add_own, remove_own, shape: s } => {
            let change = MemberEdits { add, remove, add_indexes, remove_indexes, add_own, remove_own };
            nft().and_then(|mut n| n.edit(TABLE, &edits(&change, s))).or_else(|e| {
                // Whatever went wrong, writing the whole table is always correct: every member
                // the table has, with this change made.
                log::debug!("nfnetlink update of nft table {T} failed ({e}); rewriting it with nft");
                let cur = read(shape)?;
                let mut members: Members = cur.iface_mark.iter().filter_map(|(n, c)| Some((n.clone(), table_of_chain(c)?))).collect();
                for (n, _) in remove {
                    members.remove(n);
                }
                members.extend(add.iter().cloned());
                let mut indexes: BTreeSet<u32> = cur.rpf_ok.iter().filter(|i| !remove_indexes.contains(i)).copied().collect();
                indexes.extend(add_indexes);
                let mut own: BTreeSet<(IpAddr, u32)> = cur.own.iter().filter(|p| !remove_own.contains(p)).copied().collect();
                own.extend(add_own);
                let want = Want { members, indexes, exact: true, shape: *shape, own, own_indexes: BTreeSet::new(), others: false };
                apply(&Change::Repair { script: script(&Current { rules_ok: false, ..cur }, &want), want }, shape)
            })
        }
    }
}

fn nft_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nft").exists() { "/usr/sbin/nft" } else { "nft" }
}

const NFT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn run_script(script: &str) -> Result<(), FilterError> {
    let mut cmd = Command::new(nft_binary());
    // If stronghost dies (killed mid-run), nft dies with it: a transaction must never land after
    // the next run has read the table. (nft's transaction itself is atomic either way.)
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from));
    }
    let mut child = cmd
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| FilterError::NoNft(Arc::new(e)))?;
    let io = |e| FilterError::Nft(Arc::new(e));
    child.stdin.take().expect("piped").write_all(script.as_bytes()).map_err(io)?;
    // nft answers in milliseconds; one that hangs must not hold the host-wide lock for ever.
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait().map_err(io)? {
            Some(s) => break s,
            None if start.elapsed() > NFT_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(FilterError::TimedOut(NFT_TIMEOUT));
            }
            None => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    };
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr);
    if status.success() { Ok(()) } else { Err(FilterError::Refused(stderr.trim().to_string())) }
}

/// Whether a name can be written inside an nft string literal as itself: nft's scanner ends it
/// at the first `"`, and reads a trailing `*` as a wildcard and `\` as an escape. A table with a
/// member that cannot is written over nfnetlink only (names are bytes there).
fn text_safe(ifname: &str) -> bool {
    !ifname.ends_with('*') && ifname.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gather::filter::read_member;
    use crate::plan::filter::plan;
    use crate::plan::filter::tests::want;

    /// The nft text (written when a table is created or repaired) and the rule bodies an installed
    /// table is judged by are the same rules: nft's own translation of the text reads back as
    /// `rule_bodies`. A rule edited behind stronghost's back is not taken for its own, whatever its
    /// comment says; members change over nfnetlink and read back. In a network namespace of the
    /// test's own.
    #[test]
    fn nft_text_and_rule_bodies_agree_and_edits_are_noticed() {
        crate::netlink::testns::in_new_netns(|| {
            for reverse_path in [true, false] {
                let shape = Shape { reverse_path, ..Shape::default() };
                let w = Want { shape, ..want(&[("eth0", 4101), ("eth1", 4102)], &[2, 3]) };
                apply(&Change::Create(w.clone()), &shape).expect("nft -f");
                let cur = read(&shape).unwrap();
                assert!(cur.exists && cur.rules_ok, "{cur:?}");
                assert_eq!(cur.rpf_ok, [2, 3].into());
                assert_eq!(plan(&cur, &w), None);
                // The other setting's rules are not these.
                assert!(!read(&Shape { reverse_path: !reverse_path, ..shape }).unwrap().rules_ok);
                // Nor those of another mark field: the base chains' rules and the members' chains.
                let wider = Shape { mark_mask: 0xfff0_0000, ..shape };
                let other = read(&wider).unwrap();
                assert!(
                    !other.rules_ok
                        && plan(&other, &Want { shape: wider, ..w.clone() }).is_some_and(|c| matches!(c, Change::Repair { .. }))
                );
                apply(&Change::Delete, &shape).unwrap();
            }
            // Created over nfnetlink: the same rules, sets and members, and nft reads it as its own.
            let sh = Shape::default();
            let w = want(&[("eth0", 4101), ("eth1", 4102)], &[2, 3]);
            create(&w).expect("nfnetlink");
            let cur = read(&sh).unwrap();
            assert!(cur.rules_ok && cur.members() == Some(w.members.clone()) && cur.rpf_ok == [2, 3].into(), "{cur:?}");
            run_script(&script(&cur, &w)).expect("nft -f over a table made over nfnetlink");
            let again = read(&sh).unwrap();
            assert!(again.rules_ok, "{again:?}");
            // Same comment, different verdict.
            let edited = format!(
                "flush chain {T} receive\nadd rule {T} receive iifname @managed fib daddr . iif type != local \
                 fib daddr type local counter name iifname map @wrong_iface accept comment \"stronghost: wrong interface\"\n"
            );
            run_script(&edited).expect("nft -f");
            let cur = read(&sh).unwrap();
            assert!(!cur.rules_ok);
            let Some(repair @ Change::Repair { .. }) = plan(&cur, &w) else { panic!("no repair") };
            apply(&repair, &sh).unwrap();
            assert!(read(&sh).unwrap().rules_ok);
            // Members over nfnetlink: one leaves, one comes, an index goes stale.
            let w2 = want(&[("eth0", 4101), ("eth2", 4103)], &[2, 4]);
            // (nft -f added elements to a table made over nfnetlink: the marks are in host order.)
            let before = read(&sh).unwrap();
            assert_eq!(before.members(), Some(w.members.clone()));
            let change = plan(&before, &w2).unwrap();
            assert!(matches!(change, Change::Members { .. }), "{change:?}");
            apply(&change, &sh).unwrap();
            let cur = read(&sh).unwrap();
            assert_eq!(cur.members(), Some(w2.members.clone()));
            assert_eq!(cur.rpf_ok, [2, 4].into());
            assert_eq!(plan(&cur, &w2), None);
            // The fast path's pairs, both families: written, read back whole and by key, and a
            // plan for one interface replaces that interface's pairs and keeps the others'.
            let (a, b, c): (IpAddr, IpAddr, IpAddr) =
                ("198.51.100.10".parse().unwrap(), "198.51.100.11".parse().unwrap(), "2001:db8::10".parse().unwrap());
            let with_own = Want { own: [(a, 2), (c, 2), (b, 4)].into(), ..w2.clone() };
            let change = plan(&cur, &with_own).unwrap();
            assert!(matches!(&change, Change::Members { add_own, .. } if add_own.len() == 3), "{change:?}");
            apply(&change, &sh).unwrap();
            let cur = read(&sh).unwrap();
            assert!(cur.rules_ok && cur.own == with_own.own, "{cur:?}");
            assert_eq!(plan(&cur, &with_own), None);
            let one = read_member(&sh, "eth0", Some(2), &[(a, 2), (c, 2)]).unwrap();
            assert_eq!(one.own, [(a, 2), (c, 2)].into(), "the candidates alone");
            // eth0's 198.51.100.10 gone: its pair goes, eth2's (not looked at) stays.
            let moved = Want { exact: false, indexes: [2].into(), own: [(c, 2)].into(), own_indexes: [2].into(), ..w2.clone() };
            let change = plan(&one, &moved).unwrap();
            assert_eq!(
                change.summary(&|i| (i == 2).then(|| "eth0".to_string())),
                "stale addresses in the receive filter's fast path (packets for them pass unchecked on these interfaces): 198.51.100.10 on eth0 (index 2)"
            );
            apply(&change, &sh).unwrap();
            assert_eq!(read(&sh).unwrap().own, [(c, 2), (b, 4)].into());
            // The same pairs in nft's text: a repair writes them back.
            let cur = read(&sh).unwrap();
            let whole = Want { own: cur.own.clone(), ..w2.clone() };
            run_script(&script(&Current { rules_ok: false, ..cur }, &whole)).expect("nft -f with the pairs");
            let cur = read(&sh).unwrap();
            assert!(cur.rules_ok && cur.own == whole.own, "{cur:?}");
            apply(&plan(&cur, &w2).unwrap(), &sh).unwrap();
            assert!(read(&sh).unwrap().own.is_empty());
            // A gather of one interface adds indexes and keeps the others.
            assert_eq!(
                plan(&cur, &Want { exact: false, ..want(&[("eth0", 4101), ("eth2", 4103)], &[9]) }),
                Some(Change::Members {
                    add: vec![],
                    remove: vec![],
                    add_indexes: vec![9],
                    remove_indexes: vec![],
                    add_own: vec![],
                    remove_own: vec![],
                    shape: sh
                })
            );
            // Read for one interface: its entries alone, looked up by key; planned on alone.
            let one = read_member(&sh, "eth2", Some(4), &[]).unwrap();
            assert_eq!(one.scope.as_deref(), Some("eth2"));
            assert_eq!(one.members(), Some([("eth2".to_string(), 4103)].into()));
            assert_eq!((one.rpf_ok.clone(), one.counters.len()), ([4].into(), 3));
            // (The kernel snapshot of a one-interface gather holds that interface's index alone.)
            let of_one = |w: &Want, index: u32| Want { exact: false, indexes: [index].into(), ..w.clone() };
            assert_eq!(plan(&one, &of_one(&w2, 4)), None, "eth0 is not looked at");
            let three = Want { exact: false, ..want(&[("eth0", 4101), ("eth2", 4103), ("eth3", 4104)], &[5]) };
            let new = read_member(&sh, "eth3", Some(5), &[]).unwrap();
            assert_eq!((new.scope.as_deref(), new.members()), (Some("eth3"), Some(Members::new())));
            let add = plan(&new, &three).unwrap();
            assert_eq!(
                add,
                Change::Members {
                    add: vec![("eth3".into(), 4104)],
                    remove: vec![],
                    add_indexes: vec![5],
                    remove_indexes: vec![],
                    add_own: vec![],
                    remove_own: vec![],
                    shape: sh
                }
            );
            apply(&add, &sh).unwrap();
            let gone = plan(&read_member(&sh, "eth3", Some(5), &[]).unwrap(), &of_one(&w2, 5)).unwrap();
            assert_eq!(
                gone,
                Change::Members {
                    add: vec![],
                    remove: vec![("eth3".into(), 4104)],
                    add_indexes: vec![],
                    remove_indexes: vec![],
                    add_own: vec![],
                    remove_own: vec![],
                    shape: sh
                }
            );
            // The same, planned from that interface's entry alone (plan.rs `host`, scoped): the
            // others exist, so no entry wanted is not "delete the table".
            let alone = Want { members: Members::new(), indexes: [5].into(), exact: false, shape: sh, others: true, ..Want::default() };
            assert_eq!(plan(&read_member(&sh, "eth3", Some(5), &[]).unwrap(), &alone), Some(gone.clone()));
            apply(&gone, &sh).unwrap();
            assert_eq!(read(&sh).unwrap().members(), Some(w2.members.clone()));
            // One interface's entries disagreeing: everything is read, and the table repaired.
            run_script(&format!("delete element {T} managed {{ \"eth2\" }}\n")).unwrap();
            let torn = read_member(&sh, "eth2", Some(4), &[]).unwrap();
            assert!(torn.scope.is_none() && torn.iface_mark.len() == 2, "{torn:?}");
            assert!(matches!(plan(&torn, &of_one(&w2, 4)), Some(Change::Repair { .. })));
            apply(&Change::Repair { script: script(&torn, &w2), want: w2.clone() }, &sh).unwrap();
            let cur = read(&sh).unwrap();
            apply(&plan(&cur, &Want::default()).unwrap(), &sh).unwrap();
            assert!(!read(&sh).unwrap().exists);
            // A table as 0.2 wrote it (whole-word marks, the table numbers): repaired into this
            // layout by one `nft -f`, the drop counters kept.
            let legacy = format!(
                "add table {T}\nadd chain {T} connections {{ type filter hook prerouting priority mangle; policy accept; }}\n\
                 add set {T} managed {{ type ifname; }}\nadd map {T} conn_mark {{ type ifname : mark; }}\n\
                 add set {T} conn_marks {{ type mark; }}\nadd counter {T} drop_4101\n\
                 add element {T} managed {{ \"eth0\" }}\nadd element {T} conn_mark {{ \"eth0\" : 4101 }}\n\
                 add element {T} conn_marks {{ 4101 }}\n\
                 add rule {T} connections ct state new ct mark 0 iifname @managed ct mark set iifname map @conn_mark\n\
                 add rule {T} connections meta mark 0 ct direction reply ct mark @conn_marks meta mark set ct mark\n"
            );
            run_script(&legacy).unwrap();
            let old = read(&sh).unwrap();
            assert!(old.legacy && old.members().is_none(), "{old:?}");
            let w1 = want(&[("eth0", 4101)], &[2]);
            let Some(Change::Repair { script: repair, .. }) = plan(&old, &w1) else { panic!("no repair of the legacy table") };
            run_script(&repair).expect("nft -f repairs a table of 0.2 in place");
            let cur = read(&sh).unwrap();
            assert!(cur.rules_ok && !cur.legacy && cur.members() == Some(w1.members.clone()), "{cur:?}");
            assert_eq!(plan(&cur, &w1), None);
            // As 0.3 wrote it: the reverse-path rule counted through a map of counters by name.
            run_script(&format!(
                "add map {T} rpf_iface {{ type ifname : counter; }}\nadd element {T} rpf_iface {{ \"eth0\" : \"rpf_4101\" }}\n\
                 add rule {T} receive iifname @managed fib daddr type local iif . fib saddr oif != @rpf_ok \
                 counter name iifname map @rpf_iface drop\n"
            ))
            .unwrap();
            let old = read(&sh).unwrap();
            assert!(old.legacy && !old.rules_ok, "{old:?}");
            let Some(Change::Repair { script: repair, .. }) = plan(&old, &w1) else { panic!("no repair of the 0.3 table") };
            run_script(&repair).expect("nft -f repairs a table of 0.3 in place");
            assert_eq!(plan(&read(&sh).unwrap(), &w1), None);
            // As 0.4.0 wrote it: the reverse path in a base chain of its own at -151, reached by
            // `goto`. Read for one interface, it is not taken for converged either.
            run_script(&format!(
                "add chain {T} reverse {{ type filter hook prerouting priority -151; policy accept; }}
                 add rule {T} reverse meta nfproto ipv4 ct state new,invalid,untracked iifname @managed                  fib daddr type local iifname vmap @reverse_path
                 flush map {T} reverse_path
add element {T} reverse_path {{ \"eth0\" : goto reverse_4101 }}
"
            ))
            .unwrap();
            let old = read(&sh).unwrap();
            assert!(old.legacy && old.members().is_none(), "{old:?}");
            assert!(plan(&read_member(&sh, "eth0", Some(2), &[]).unwrap(), &of_one(&w1, 2)).is_some());
            let Some(Change::Repair { script: repair, .. }) = plan(&old, &w1) else { panic!("no repair of the 0.4.0 table") };
            run_script(&repair).expect("nft -f repairs a table of 0.4.0 in place");
            let cur = read(&sh).unwrap();
            assert!(cur.rules_ok && !cur.legacy && cur.reverse_path.get("eth0").map(String::as_str) == Some("reverse_4101"), "{cur:?}");
            assert_eq!(plan(&cur, &w1), None);
            // As the 0.4.0 release wrote it: no fast path, no pairs. Its sets and rules are added
            // in place, and its pair with them.
            let a: IpAddr = "198.51.100.40".parse().unwrap();
            let w1 = Want { own: [(a, 2)].into(), ..w1 };
            let wrong = base_rules(&sh).into_iter().find(|r| r.comment == "stronghost: wrong interface").unwrap();
            run_script(&format!(
                "flush chain {T} receive\nadd rule {T} receive {}\ndelete set {T} own4\ndelete set {T} own6\n",
                wrong.text()
            ))
            .unwrap();
            let old = read(&sh).unwrap();
            assert!(!old.rules_ok && old.own.is_empty(), "{old:?}");
            let Some(Change::Repair { script: repair, .. }) = plan(&old, &w1) else { panic!("no repair of the 0.4.0 release's table") };
            run_script(&repair).expect("nft -f repairs the 0.4.0 release's table in place");
            let cur = read(&sh).unwrap();
            assert!(cur.rules_ok && cur.own == w1.own, "{cur:?}");
            assert_eq!(plan(&cur, &w1), None);
            apply(&Change::Delete, &sh).unwrap();
        });
    }
}
