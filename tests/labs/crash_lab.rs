//! Crash consistency: stronghost killed (SIGKILL) at random points of a `sync` or a
//! `release --all`, 200 times; each time the next complete run reaches exactly the state an
//! uninterrupted run reaches — no duplicate or orphan rule, route, nft element or state file.

use crate::lab::Lab;
use std::process::Stdio;
use std::time::Duration;

const N: usize = 5;

/// Everything stronghost may touch, in a canonical text form.
fn state(lab: &Lab) -> String {
    let mut s = String::new();
    let rules = lab.host_ok(&["ip", "-N", "-4", "rule"]);
    let routes = lab.host_ok(&["ip", "-N", "-4", "route", "show", "table", "all"]);
    let ours: Vec<&str> = rules.lines().chain(routes.lines()).filter(|l| l.contains("proto 83")).collect();
    let mut sorted = ours.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ours.len(), "duplicate rule or route:\n{}", ours.join("\n"));
    s += &sorted.join("\n");
    s += "\n--\n";
    // Counter values differ from run to run; everything else, counter names included, must not.
    let nft = String::from_utf8_lossy(&lab.host(&["nft", "list", "table", "inet", "stronghost"]).stdout).into_owned();
    for line in nft.lines() {
        s += &if line.trim_start().starts_with("packets ") { line.replace(|c: char| c.is_ascii_digit(), "#") } else { line.to_string() };
        s.push('\n');
    }
    s += "\n--\n";
    for k in 0..N {
        for knob in ["arp_ignore", "arp_announce", "arp_filter", "rp_filter"] {
            s += &lab.host_ok(&["cat", &format!("/proc/sys/net/ipv4/conf/eth{k}/{knob}")]);
        }
        s += &lab.host_ok(&["cat", &format!("/sys/class/net/eth{k}/netdev_group")]);
    }
    s += &lab.host_ok(&["sh", "-c", "ls -A /run/stronghost/iface /var/lib/stronghost 2>/dev/null || true"]);
    s
}

#[test]
fn killed_anywhere_the_next_run_converges_exactly() {
    let lab = Lab::builder(N).build();
    let mut b = String::new();
    for k in 0..N {
        b += &format!("addr add 198.51.100.{}/24 dev eth{k}\nroute add default via 198.51.100.1 dev eth{k} metric {}\n", 20 + k, 100 + k);
    }
    lab.write_host_file("/tmp/addrs.batch", &b);
    lab.host_ok(&["ip", "-batch", "/tmp/addrs.batch"]);
    lab.seed_foreign();
    let pristine = state(&lab);
    lab.host_ok(&["/usr/sbin/stronghost", "sync"]);
    let synced = state(&lab);
    assert_ne!(synced, pristine);
    lab.host_ok(&["/usr/sbin/stronghost", "release", "--all"]);
    // Released: the kernel as it was; stronghost keeps only its table allocation.
    let clean = state(&lab);
    let kernel_part = |s: &str| {
        s.lines().filter(|l| !l.starts_with('/') && !l.ends_with(".json") && !l.is_empty()).map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(kernel_part(&clean), kernel_part(&pristine), "release --all did not restore the host");
    assert!(clean.contains("tables.json") && !clean.contains("eth0.json"), "{clean}");

    // A cheap deterministic spread of kill times over a run (a run takes a few ms here).
    let mut seed: u64 = 0x5eed;
    let mut killed_mid_run = 0;
    for i in 0..200 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = Duration::from_micros(seed >> 33 & 0x3fff);
        let (interrupted, complete, want) = if i % 2 == 0 {
            ("sync", vec!["sync"], &synced)
        } else {
            lab.host_ok(&["/usr/sbin/stronghost", "sync"]);
            ("release", vec!["release", "--all"], &clean)
        };
        let mut args = vec!["/usr/sbin/stronghost", interrupted];
        if interrupted == "release" {
            args.push("--all");
        }
        let mut child = lab.host_cmd(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let mut a = vec!["/usr/sbin/stronghost"];
        a.extend(complete);
        lab.host_ok(&a);
        assert_eq!(&state(&lab), want, "run {i}: a killed {interrupted}, then a complete one");
    }
    lab.assert_foreign_intact("after 200 kills");
    println!("crash consistency: 200 runs, {killed_mid_run} killed before they finished");
    assert!(killed_mid_run > 50, "the kill points did not fall inside runs ({killed_mid_run})");
}
