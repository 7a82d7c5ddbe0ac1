//! 1000 random events on five interfaces, fired in parallel: leases bound and renewed with new
//! addresses, expiries, addresses added and removed by hand, links down and up — from the
//! dhclient hook and, for everything else, the watcher. Afterwards the kernel holds exactly the
//! policy the final addresses and leases call for.

use crate::lab::{Lab, wait_for};
use std::collections::BTreeMap;
use std::time::Duration;

const IFACES: usize = 5;
const EVENTS_PER_IFACE: usize = 200;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What one interface should end with.
#[derive(Debug, Default)]
struct Model {
    lease: Option<String>,
    secondaries: Vec<String>,
}

fn hook(lab: &Lab, reason: &str, k: usize, a: Option<&str>) {
    let mut args = vec![
        "env".to_string(),
        "-i".into(),
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin".into(),
        format!("reason={reason}"),
        format!("interface=eth{k}"),
    ];
    if let Some(a) = a {
        args.extend([format!("new_ip_address={a}"), "new_subnet_mask=255.255.255.0".into(), "new_routers=198.51.100.1".into()]);
    }
    args.extend(["sh".into(), "-c".into(), ". /etc/dhcp/dhclient-exit-hooks.d/stronghost".into()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.host_ok(&a);
}

fn run_interface(lab: &Lab, k: usize, seed: u64) -> Model {
    let mut rng = Rng(seed);
    let mut m = Model::default();
    let e = format!("eth{k}");
    let pool = |i: u64| format!("198.51.100.{}", 20 + k as u64 * 40 + i);
    for _ in 0..EVENTS_PER_IFACE {
        match rng.below(6) {
            // BOUND or RENEW with a (maybe new) address, as dhclient-script does it.
            0 | 1 => {
                let a = pool(rng.below(10));
                if let Some(old) = m.lease.take()
                    && old != a
                {
                    let _ = lab.host(&["ip", "addr", "del", &format!("{old}/24"), "dev", &e]);
                }
                m.secondaries.retain(|s| *s != a);
                let _ = lab.host(&["ip", "addr", "replace", &format!("{a}/24"), "dev", &e]);
                hook(lab, if rng.below(2) == 0 { "BOUND" } else { "RENEW" }, k, Some(&a));
                m.lease = Some(a);
            }
            // EXPIRE
            2 => {
                if let Some(old) = m.lease.take() {
                    let _ = lab.host(&["ip", "addr", "del", &format!("{old}/24"), "dev", &e]);
                }
                hook(lab, "EXPIRE", k, None);
            }
            // An address added by hand (the watcher acts).
            3 => {
                let a = pool(10 + rng.below(10));
                if !m.secondaries.contains(&a) {
                    lab.host_ok(&["ip", "addr", "add", &format!("{a}/24"), "dev", &e]);
                    m.secondaries.push(a);
                }
            }
            // ... and removed by hand.
            4 => {
                if !m.secondaries.is_empty() {
                    let a = m.secondaries.remove(rng.below(m.secondaries.len() as u64) as usize);
                    lab.host_ok(&["ip", "addr", "del", &format!("{a}/24"), "dev", &e]);
                }
            }
            // Link down and up: the kernel flushes every route through it, ours included.
            _ => {
                lab.host_ok(&["ip", "link", "set", &e, "down"]);
                lab.host_ok(&["ip", "link", "set", &e, "up"]);
            }
        }
    }
    m
}

#[test]
fn a_thousand_parallel_events_end_in_the_model_state() {
    let mut lab = Lab::builder(IFACES).dhclient_hook().build();
    lab.seed_foreign();
    // Removing a primary address would otherwise take the secondaries of its subnet with it.
    for k in 0..IFACES {
        lab.host_ok(&["sysctl", "-qw", &format!("net.ipv4.conf.eth{k}.promote_secondaries=1")]);
    }
    lab.start_watcher();
    let models: Vec<Model> = std::thread::scope(|s| {
        let lab = &lab;
        let handles: Vec<_> = (0..IFACES).map(|k| s.spawn(move || run_interface(lab, k, 0x1234_5678 + k as u64 * 7919))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // Quiet, then compare.
    std::thread::sleep(Duration::from_secs(1));
    let plan = lab.host_ok(&["/usr/sbin/stronghost", "plan"]);
    if plan.trim() != "# nothing to change" {
        eprintln!(
            "not converged:\n{plan}\nwatcher:\n{}",
            lab.log("watch").lines().filter(|l| !l.contains("change(s)")).collect::<Vec<_>>().join("\n")
        );
    }
    wait_for(Duration::from_secs(20), "convergence", || {
        std::thread::sleep(Duration::from_millis(300));
        lab.host_ok(&["/usr/sbin/stronghost", "plan"]).trim() == "# nothing to change"
    });
    let status = lab.status();
    let tables: BTreeMap<String, u64> = status["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["interface"].as_str().unwrap().to_string(), i["table"].as_u64().unwrap()))
        .collect();
    let rules = lab.host_ok(&["ip", "-N", "-4", "rule"]);
    let mut expected_rules = 0;
    for (k, m) in models.iter().enumerate() {
        let e = format!("eth{k}");
        let addrs: Vec<&String> = m.lease.iter().chain(m.secondaries.iter()).collect();
        let t = tables.get(&e).copied();
        for a in &addrs {
            let t = t.unwrap_or_else(|| panic!("{e} has {a} but no table"));
            assert!(rules.contains(&format!("from {a} lookup {t} proto 83")), "{e}: no rule for {a}:\n{rules}");
            expected_rules += 1;
        }
        if let Some(t) = t {
            let table = lab.host_ok(&["ip", "route", "show", "table", &t.to_string()]);
            // A lease in force means its gateway; hand-made addresses alone get the gateway of
            // another interface's lease on the same network, if one is in force anywhere.
            let any_lease = models.iter().any(|m| m.lease.is_some());
            assert_eq!(
                table.contains("default via 198.51.100.1"),
                m.lease.is_some() || (!addrs.is_empty() && any_lease),
                "{e} ({m:?}):\n{table}\nmain:\n{}\nrecord:\n{}",
                lab.host_ok(&["ip", "route", "show", "table", "main"]),
                lab.host_ok(&["cat", &format!("/run/stronghost/iface/{e}.json")])
            );
            if addrs.is_empty() {
                assert!(!table.contains("unreachable"), "{e} has no address but a table:\n{table}");
            } else {
                assert!(rules.contains(&format!("oif {e} lookup {t} proto 83")), "{e}: no oif rule");
                let mark = (t - 4100) << 24; // its place in the default table range, in the default mark field
                assert!(rules.contains(&format!("fwmark {mark:#x}/0xff000000 lookup {t} proto 83")), "{e}: no fwmark rule:\n{rules}");
                expected_rules += 2;
            }
        }
    }
    let ours = rules
        .lines()
        .filter(|l| {
            l.contains("proto 83")
                && !l.contains("suppress_ifgroup")
                && !l.contains(" goto ")
                && !l.contains("fwmark 0xff000000/0xff000000")
        })
        .count();
    assert_eq!(ours, expected_rules, "stray rules:\n{rules}");
    assert!(lab.stronghost(&["check"]).status.success(), "{}", String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout));
    lab.assert_foreign_intact("after 1000 events");
    println!("concurrency: {} events on {IFACES} interfaces, final state as modelled", IFACES * EVENTS_PER_IFACE);
}
