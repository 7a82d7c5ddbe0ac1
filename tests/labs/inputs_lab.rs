//! Local inputs chosen by others: an address put on two interfaces at once, names that look like
//! options or like stronghost's own temporary files, reaching a hook.

use crate::lab::{Lab, wait_for};
use std::time::Duration;

fn sync_writes(lab: &Lab) -> u64 {
    let v = lab.stronghost_json(&["sync", "--json"]);
    assert_eq!(v["ok"], true, "{v}");
    ["netlink", "sysctl", "nft"].iter().map(|k| v["writes"][k].as_u64().unwrap()).sum()
}

/// One address on eth0 and eth1 (a VIP moved by hand), with the watcher running: one `from`
/// rule for it, eth0's (the lower index), and one pair in the receive filter's fast path, a
/// second `sync` writes nothing, and `check` warns.
#[test]
fn an_address_on_two_interfaces_converges_and_is_reported() {
    let mut lab = Lab::builder(2).build();
    lab.start_watcher();
    let vip = "198.51.100.77";
    for (e, own) in [("eth0", "198.51.100.40"), ("eth1", "198.51.100.41")] {
        lab.host_ok(&["ip", "addr", "add", &format!("{own}/24"), "dev", e]);
    }
    lab.wait_applied(0, "198.51.100.40");
    lab.wait_applied(1, "198.51.100.41");
    // eth1 first, then eth0: the watcher runs each interface alone.
    lab.host_ok(&["ip", "addr", "add", &format!("{vip}/24"), "dev", "eth1"]);
    std::thread::sleep(Duration::from_millis(300));
    lab.host_ok(&["ip", "addr", "add", &format!("{vip}/24"), "dev", "eth0"]);
    let t0 = lab.status_of("eth0").unwrap()["table"].as_u64().unwrap();
    let rules = |lab: &Lab| {
        lab.host_ok(&["ip", "rule"]).lines().filter(|l| l.contains(&format!("from {vip} "))).map(str::to_string).collect::<Vec<_>>()
    };
    wait_for(Duration::from_secs(5), "the VIP's rule in eth0's table", || {
        rules(&lab) == [format!("4620:\tfrom {vip} lookup {t0} proto 83")]
    });
    // Nothing fights: the watcher's runs and `sync` agree.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sync_writes(&lab), 0, "a sync after the watcher");
    assert_eq!(sync_writes(&lab), 0, "a second sync");
    // The receive filter's fast path holds the owner's pair alone (eth1 takes the slower check).
    let pairs = |lab: &Lab| lab.host_ok(&["nft", "list", "set", "inet", "stronghost", "own4"]);
    let p = pairs(&lab);
    assert!(p.contains(&format!("{vip} . \"eth0\"")) && !p.contains(&format!("{vip} . \"eth1\"")), "{p}");
    assert!(!lab.log("watch").contains("keeps removing"), "{}", lab.log("watch"));
    let out = lab.stronghost(&["check"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("warning: {vip} is on eth0 and eth1 at once: traffic from it follows eth0")), "{said}");
    // eth0 gives it up: eth1's.
    lab.host_ok(&["ip", "addr", "del", &format!("{vip}/24"), "dev", "eth0"]);
    let t1 = lab.status_of("eth1").unwrap()["table"].as_u64().unwrap();
    wait_for(Duration::from_secs(5), "the VIP's rule in eth1's table", || {
        rules(&lab) == [format!("4620:\tfrom {vip} lookup {t1} proto 83")]
    });
    wait_for(Duration::from_secs(5), "the VIP's pair on eth1", || {
        let p = pairs(&lab);
        p.contains(&format!("{vip} . \"eth1\"")) && !p.contains(&format!("{vip} . \"eth0\""))
    });
    assert_eq!(sync_writes(&lab), 0);
}

/// A NetworkManager dispatcher event for an interface called `-x` (an option, had the hook not
/// passed it after `--`), and one for `e.tmp1` (a temporary file's name, had the queue not
/// suffixed its entries), each queued and applied: both are interfaces with their policy.
#[test]
fn names_that_look_like_options_or_temporaries_are_names() {
    let lab = Lab::builder(1).build();
    lab.install("hooks/networkmanager-dispatcher", "/etc/NetworkManager/dispatcher.d/70-stronghost", "0755");
    let mut current = "eth0".to_string();
    for name in ["-x", "e.tmp1"] {
        lab.host_ok(&["ip", "link", "set", "dev", &current, "down"]);
        lab.host_ok(&["ip", "link", "set", "dev", &current, "name", name]);
        current = name.to_string();
        lab.host_ok(&["ip", "link", "set", "dev", name, "up"]);
        lab.host_ok(&["ip", "addr", "add", "198.51.100.50/24", "dev", name]);
        let out = lab.host(&[
            "env",
            "IP4_ADDRESS_0=198.51.100.50/24 198.51.100.1",
            "IP4_NUM_ADDRESSES=1",
            "IP4_GATEWAY=198.51.100.1",
            "/etc/NetworkManager/dispatcher.d/70-stronghost",
            name,
            "up",
        ]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !said.contains("Usage") && !said.contains("unexpected argument"), "{name}: {said}");
        let status = lab.stronghost_json(&["status", "--json"]);
        let of = status["interfaces"].as_array().unwrap().iter().find(|i| i["interface"] == name).cloned();
        assert!(of.as_ref().is_some_and(|i| i["applied"] == true && i["gateway"] == "198.51.100.1"), "{name}: {status}\n{said}");
        assert!(lab.host_ok(&["ls", "/run/stronghost/queue"]).trim().is_empty(), "{name}: an event left in the queue");
        lab.host_ok(&["ip", "addr", "flush", "dev", name]);
        lab.host_ok(&["/usr/sbin/stronghost", "release", "--", name]);
    }
}

/// `status`, `check` and `plan` only read: on a host stronghost never ran on, they leave no
/// directory behind.
#[test]
fn read_only_commands_create_nothing() {
    let lab = Lab::builder(1).build();
    lab.host_ok(&["ip", "addr", "add", "198.51.100.40/24", "dev", "eth0"]);
    for args in [&["status"][..], &["status", "--json"], &["check"], &["plan"], &["plan", "eth0"]] {
        let out = lab.stronghost(args);
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(!said.contains("cannot create"), "{args:?}: {said}");
        for d in ["/run/stronghost", "/var/lib/stronghost"] {
            assert!(!lab.host(&["test", "-e", d]).status.success(), "{args:?} created {d}: {said}");
        }
    }
    // `check` still says what is wrong: an address on an interface nothing manages yet.
    let said = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(said.contains("eth0: has address 198.51.100.40 but is not managed") && said.contains("stronghost plan -- eth0"), "{said}");
}

/// Every name the kernel accepts is managed like `eth1`: quotes, shell and nft metacharacters,
/// a trailing `*`, a non-ASCII letter. Each is applied by `sync`, drops a packet for eth0's
/// address sent to its MAC (counted on it), passes `check`, and has its table repaired after an
/// edit — over nfnetlink when nft text cannot hold the name.
#[test]
fn every_name_the_kernel_accepts_is_managed() {
    let lab = Lab::builder(2).build();
    lab.host_ok(&["ip", "addr", "add", "198.51.100.40/24", "dev", "eth0"]);
    lab.host_ok(&["ip", "route", "add", "default", "via", crate::lab::GW, "dev", "eth0"]);
    let mut current = "eth1".to_string();
    for name in ["a;b", "e'q", "e\"q", "e*", "e`x`", "e$IFS", "e|x", "eé", "e\\n"] {
        lab.host_ok(&["ip", "link", "set", "dev", &current, "down"]);
        lab.host_ok(&["ip", "link", "set", "dev", &current, "name", name]);
        current = name.to_string();
        lab.host_ok(&["ip", "link", "set", "dev", name, "up"]);
        lab.host_ok(&["ip", "addr", "add", "198.51.100.41/24", "dev", name]);
        let out = lab.stronghost(&["sync"]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name:?}: {said}");
        let s = lab.status_of(name).unwrap_or_else(|| panic!("{name:?} not managed: {said}"));
        assert_eq!(s["applied"], true, "{name:?}: {s}");
        let before = s["wrong_interface_drops"].as_u64().unwrap();
        assert!(!lab.wrong_interface_probe("198.51.100.40", 1), "{name:?}: eth0's address accepted on it");
        assert!(lab.status_of(name).unwrap()["wrong_interface_drops"].as_u64().unwrap() > before, "{name:?}: drop not counted");
        let out = lab.stronghost(&["check"]);
        assert!(out.status.success(), "{name:?}: {}", String::from_utf8_lossy(&out.stdout));
        // An edit of the table, repaired with every member (nft text or nfnetlink).
        lab.host_ok(&["nft", "flush", "chain", "inet", "stronghost", "egress"]);
        let out = lab.stronghost(&["sync"]);
        assert!(out.status.success(), "{name:?}: {}", String::from_utf8_lossy(&out.stderr));
        let out = lab.stronghost(&["check"]);
        assert!(out.status.success(), "{name:?} after a repair: {}", String::from_utf8_lossy(&out.stdout));
        lab.host_ok(&["ip", "addr", "flush", "dev", name]);
        lab.host_ok(&["/usr/sbin/stronghost", "release", "--", name]);
    }
}
