//! Doing, for the receive filter: nftables table `inet stronghost`. Every change is one atomic
//! transaction: creating, removing and changing members over nfnetlink (netlink/nftables.rs); repairing a
//! table someone else altered with `nft -f`, which merges with what is there.
//!
//! ```text
//! table inet stronghost {
//!   set managed { type ifname; elements = { "eth0", ... } }
//!   map wrong_iface { type ifname : counter; elements = { "eth0" : "drop_4101", ... } }
//!   counter drop_4101 { }
//!   chain receive {
//!     type filter hook prerouting priority raw; policy accept;
//!     iifname @managed fib daddr . iif type != local fib daddr type local
//!         counter name iifname map @wrong_iface drop
//!   }
//! }
//! ```
//! One rule for both families. For IPv6, neighbour discovery, DHCPv6 and router advertisements
//! are multicast or go to the interface's own (link-local) address, so they pass. (IPv6 is strong
//! already where it matters least: ND answers only for the receiving interface's addresses, and a
//! link-local destination is only local on its own link.)
//!
//! A packet is dropped only when its destination is an address of this host but not of the
//! interface it arrived on; broadcast, multicast, DHCP, forwarded traffic and anything arriving on
//! unmanaged interfaces (lo included, so host-local traffic) pass. It runs before routing because
//! rp_filter would otherwise drop the packet uncounted. Named counters survive rule replacement, so
//! the per-interface drop counts are never reset by an unrelated change.

use crate::netlink::nftables::{Nft, receive_rule};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

pub const TABLE: &str = "stronghost";
const CHAIN: &str = "receive";
/// Names the rule's version: a table with an older rule (v1 covered IPv4 only) is rewritten.
const RULE_TAG: &str = "stronghost wrong-interface drop v2 ipv4+ipv6";

/// Interface name → counter name for every interface the filter covers.
pub type Members = BTreeMap<String, String>;

pub fn counter_name(table: u32) -> String {
    format!("drop_{table}")
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Current {
    pub exists: bool,
    pub rule_ok: bool,
    pub set: Vec<String>,
    pub map: Members,
    /// Counter name → packets dropped.
    pub counters: BTreeMap<String, u64>,
}

fn nft_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nft").exists() { "/usr/sbin/nft" } else { "nft" }
}

/// Reads our table over nfnetlink; `Ok(Current::default())` when it does not exist.
pub fn read() -> Result<Current, String> {
    let err = |e: crate::netlink::NetlinkError| format!("reading nft table inet {TABLE}: {e}");
    let mut nft = Nft::open().map_err(|e| err(e.into()))?;
    if !nft.table_exists(TABLE).map_err(err)? {
        return Ok(Current::default());
    }
    let mut c = Current { exists: true, ..Default::default() };
    // prerouting (hook 0), priority raw (-300), policy accept (1): the chain stronghost creates.
    let chain_ok = nft.chain(TABLE, CHAIN).map_err(err)? == Some((0, -300, 1));
    // Judged by its body, whatever its comment says: an edited rule is not ours any more.
    let rules = nft.rules(TABLE, CHAIN).map_err(err)?.unwrap_or_default();
    c.rule_ok = chain_ok && rules.len() == 1 && rules[0].exprs.as_deref() == Some(&receive_rule()[..]);
    c.set = nft.elements(TABLE, "managed").map_err(err)?.unwrap_or_default().into_iter().map(|(k, _)| k).collect();
    c.set.sort();
    c.map = nft.elements(TABLE, "wrong_iface").map_err(err)?.unwrap_or_default().into_iter().filter_map(|(k, o)| Some((k, o?))).collect();
    c.counters = nft.counters(TABLE).map_err(err)?.unwrap_or_default();
    Ok(c)
}

/// A change to the receive filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create the table: over nfnetlink in one transaction (`nft -f` if that fails).
    Create(Members),
    /// Remove the table (no interface is managed any more): over nfnetlink.
    Delete,
    /// Rewrite the whole table with `nft -f` (it is not as stronghost left it): nft merges with
    /// what is there and keeps the counters.
    Script(String),
    /// Only members come or go: done over nfnetlink, one transaction, no `nft` process.
    Members { add: Vec<(String, String)>, remove: Vec<(String, String)> },
}

impl Change {
    /// The equivalent `nft` commands.
    pub fn describe(&self) -> String {
        match self {
            Change::Script(s) => format!("nft -f - <<'EOF'\n{s}EOF"),
            Change::Create(want) => Change::Script(script(&Current::default(), want).unwrap_or_default()).describe(),
            Change::Delete => format!("nft delete table inet {TABLE}"),
            Change::Members { add, remove } => {
                let t = format!("inet {TABLE}");
                let mut s = Vec::new();
                for (n, c) in remove {
                    s.push(format!("nft delete element {t} wrong_iface {{ \"{n}\" }}; nft delete element {t} managed {{ \"{n}\" }}; nft delete counter {t} {c}"));
                }
                for (n, c) in add {
                    s.push(format!("nft add counter {t} {c}; nft add element {t} managed {{ \"{n}\" }}; nft add element {t} wrong_iface {{ \"{n}\" : \"{c}\" }}"));
                }
                s.join("\n")
            }
        }
    }
}

/// What brings the table from `cur` to `want`, or `None` when it is converged.
pub fn plan(cur: &Current, want: &Members) -> Option<Change> {
    let intact = cur.exists
        && cur.rule_ok
        && cur.set.iter().eq(cur.map.keys())
        && cur.map.values().all(|c| cur.counters.contains_key(c))
        && cur.counters.keys().all(|c| cur.map.values().any(|m| m == c));
    if want.is_empty() {
        return cur.exists.then_some(Change::Delete);
    }
    if !cur.exists {
        return Some(Change::Create(want.clone()));
    }
    if want.is_empty() || !intact {
        return script(cur, want).map(Change::Script);
    }
    let add: Vec<(String, String)> =
        want.iter().filter(|(n, c)| cur.map.get(*n) != Some(*c)).map(|(n, c)| (n.clone(), c.clone())).collect();
    let remove: Vec<(String, String)> =
        cur.map.iter().filter(|(n, c)| want.get(*n) != Some(*c)).map(|(n, c)| (n.clone(), c.clone())).collect();
    (!add.is_empty() || !remove.is_empty()).then_some(Change::Members { add, remove })
}

/// The transaction that brings the table from `cur` to `want`, or `None` when it is converged.
pub fn script(cur: &Current, want: &Members) -> Option<String> {
    if want.is_empty() {
        // `add` first makes the delete succeed even if the table went away meanwhile.
        return cur.exists.then(|| format!("add table inet {TABLE}\ndelete table inet {TABLE}\n"));
    }
    let names: Vec<String> = want.keys().cloned().collect();
    let converged = cur.exists
        && cur.rule_ok
        && cur.set == names
        && cur.map == *want
        && want.values().all(|c| cur.counters.contains_key(c))
        && cur.counters.keys().all(|c| want.values().any(|w| w == c));
    if converged {
        return None;
    }
    let t = format!("inet {TABLE}");
    let mut s = String::new();
    s += &format!("add table {t}\n");
    s += &format!("add chain {t} receive {{ type filter hook prerouting priority -300; policy accept; }}\n");
    s += &format!("flush chain {t} receive\n");
    s += &format!("add set {t} managed {{ type ifname; }}\n");
    s += &format!("flush set {t} managed\n");
    s += &format!("add map {t} wrong_iface {{ type ifname : counter; }}\n");
    s += &format!("flush map {t} wrong_iface\n");
    for c in want.values() {
        s += &format!("add counter {t} {c}\n");
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    s += &format!("add element {t} managed {{ {} }}\n", quoted.join(", "));
    let pairs: Vec<String> = want.iter().map(|(n, c)| format!("\"{n}\" : \"{c}\"")).collect();
    s += &format!("add element {t} wrong_iface {{ {} }}\n", pairs.join(", "));
    for c in cur.counters.keys().filter(|c| !want.values().any(|w| w == *c)) {
        s += &format!("delete counter {t} {c}\n");
    }
    s += &format!(
        "add rule {t} receive iifname @managed fib daddr . iif type != local fib daddr type local counter name iifname map @wrong_iface drop comment \"{RULE_TAG}\"\n"
    );
    Some(s)
}

fn nft() -> Result<Nft, crate::netlink::NetlinkError> {
    Ok(Nft::open()?)
}

/// Makes a change; each kind is one transaction: all of it takes effect or none does.
pub fn apply(change: &Change) -> Result<(), String> {
    match change {
        Change::Script(s) => run_script(s),
        Change::Delete => nft().and_then(|mut n| n.delete_table(TABLE)).or_else(|e| {
            log::info!("removing the receive filter over nfnetlink failed ({e}); removing it with nft");
            run_script(&format!("add table inet {TABLE}\ndelete table inet {TABLE}\n"))
        }),
        Change::Create(want) => {
            let members: Vec<(String, String)> = want.iter().map(|(n, c)| (n.clone(), c.clone())).collect();
            nft().and_then(|mut n| n.create_table(TABLE, CHAIN, &members, RULE_TAG)).or_else(|e| {
                log::info!("creating the receive filter over nfnetlink failed ({e}); writing it with nft");
                match script(&Current::default(), want) {
                    Some(s) => run_script(&s),
                    None => Ok(()),
                }
            })
        }
        Change::Members { add, remove } => nft().and_then(|mut n| n.update_members(TABLE, add, remove)).or_else(|e| {
            // Whatever went wrong, writing the whole table is always correct.
            log::debug!("nfnetlink update of the receive filter failed ({e}); rewriting it with nft");
            let cur = read()?;
            let mut want: Members = cur.map.clone();
            for (n, _) in remove {
                want.remove(n);
            }
            want.extend(add.iter().cloned());
            match script(&Current { rule_ok: false, ..cur }, &want) {
                Some(s) => run_script(&s),
                None => Ok(()),
            }
        }),
    }
}

const NFT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn run_script(script: &str) -> Result<(), String> {
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
        .map_err(|e| format!("cannot run nft ({e}); install the nftables package or set receive_filter = no"))?;
    child.stdin.take().expect("piped").write_all(script.as_bytes()).map_err(|e| format!("nft: {e}"))?;
    // nft answers in milliseconds; one that hangs must not hold the host-wide lock for ever.
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| format!("nft: {e}"))? {
            Some(s) => break s,
            None if start.elapsed() > NFT_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "nft -f did not finish within {} s and was killed; run `stronghost sync` again",
                    NFT_TIMEOUT.as_secs()
                ));
            }
            None => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    };
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr);
    if status.success() { Ok(()) } else { Err(format!("nft -f refused the receive filter: {}", stderr.trim())) }
}

/// Names safe to place inside an nft string literal.
pub fn quotable(ifname: &str) -> bool {
    ifname.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(v: &[(&str, &str)]) -> Members {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    /// The nft text (written when a table is repaired) and the bytecode (written when it is
    /// created, and what an installed rule is judged by) are the same rule: nft's own translation
    /// of the text reads back as `receive_rule()`. A rule edited behind stronghost's back is not
    /// taken for its own, whatever its comment says. In a network namespace of the test's own.
    #[test]
    fn nft_text_and_bytecode_are_one_rule_and_edits_are_noticed() {
        crate::netlink::testns::in_new_netns(|| {
            let want = members(&[("eth0", "drop_4101"), ("eth1", "drop_4102")]);
            run_script(&script(&Current::default(), &want).unwrap()).expect("nft -f");
            let cur = read().unwrap();
            assert!(cur.exists && cur.rule_ok, "{cur:?}");
            assert_eq!(plan(&cur, &want), None);
            // Same comment, different verdict.
            let edited = format!(
                "flush chain inet {TABLE} {CHAIN}\nadd rule inet {TABLE} {CHAIN} iifname @managed fib daddr . iif type != local \
                 fib daddr type local counter name iifname map @wrong_iface accept comment \"{RULE_TAG}\"\n"
            );
            run_script(&edited).expect("nft -f");
            let cur = read().unwrap();
            assert!(!cur.rule_ok);
            assert!(matches!(plan(&cur, &want), Some(Change::Script(_))));
            // Created over nfnetlink: the same.
            apply(&Change::Delete).unwrap();
            apply(&Change::Create(want.clone())).unwrap();
            assert!(read().unwrap().rule_ok);
        });
    }

    #[test]
    fn converged_table_needs_no_transaction() {
        let want = members(&[("eth0", "drop_4101"), ("eth1", "drop_4102")]);
        let cur = Current {
            exists: true,
            rule_ok: true,
            set: vec!["eth0".into(), "eth1".into()],
            map: want.clone(),
            counters: [("drop_4101".to_string(), 3), ("drop_4102".to_string(), 0)].into(),
        };
        assert_eq!(script(&cur, &want), None);
        // One member fewer on an intact table: a nfnetlink update, not a script.
        let fewer = members(&[("eth0", "drop_4101")]);
        assert_eq!(plan(&cur, &fewer), Some(Change::Members { add: vec![], remove: vec![("eth1".into(), "drop_4102".into())] }));
        let more = members(&[("eth0", "drop_4101"), ("eth1", "drop_4102"), ("eth2", "drop_4103")]);
        assert_eq!(plan(&cur, &more), Some(Change::Members { add: vec![("eth2".into(), "drop_4103".into())], remove: vec![] }));
        assert_eq!(plan(&cur, &want), None);
        assert!(matches!(plan(&Current { rule_ok: false, ..cur.clone() }, &want), Some(Change::Script(_))));
        let s = script(&cur, &fewer).unwrap();
        assert!(s.contains("delete counter inet stronghost drop_4102") && !s.contains("delete counter inet stronghost drop_4101"));
        assert_eq!(script(&cur, &Members::new()).unwrap(), "add table inet stronghost\ndelete table inet stronghost\n");
        assert_eq!(script(&Current::default(), &Members::new()), None);
    }
}
