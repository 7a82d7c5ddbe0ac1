//! Degraded environments: an invalid configuration, no nft binary, a read-only /run. Each failure
//! is reported once, plainly, with what to do; routing is applied where it can be; a hook never
//! fails its DHCP client.

use crate::lab::{GW, Lab, wait_for};
use std::time::Duration;

fn run(lab: &Lab, args: &[&str]) -> (i32, String) {
    let out = lab.host(args);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn failures_are_reported_and_contained() {
    let lab = Lab::builder(2).build();
    lab.host_ok(&["ip", "addr", "add", "198.51.100.20/24", "dev", "eth0"]);
    lab.host_ok(&["ip", "route", "add", "default", "via", "198.51.100.1", "dev", "eth0"]);
    let hook = [
        "env",
        "reason=BOUND",
        "interface=eth0",
        "new_ip_address=198.51.100.20",
        "new_subnet_mask=255.255.255.0",
        "new_routers=198.51.100.1",
        "/usr/sbin/stronghost",
        "hook",
        "dhclient",
    ];

    // An invalid configuration: the CLI stops with the line and the accepted values; a hook
    // logs the same and returns 0.
    lab.write_host_file("/etc/stronghost/stronghost.conf", "# test\ntables = 10-20\n");
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "sync"]);
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("stronghost.conf: line 2: tables") && said.contains("above 255"), "{said}");
    let (code, said) = run(&lab, &hook);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("line 2"), "{said}");
    assert!(!lab.host_ok(&["ip", "rule"]).contains("proto 83"), "applied despite a broken configuration");
    lab.host_ok(&["rm", "/etc/stronghost/stronghost.conf"]);
    // A configuration named on the command line must exist (the defaults apply only to the
    // default path); state directories others can write to are refused.
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "--config", "/etc/stronghost/typo.conf", "sync"]);
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("/etc/stronghost/typo.conf: no such configuration file"), "{said}");
    lab.host_ok(&["mkdir", "-p", "/run/stronghost"]);
    lab.host_ok(&["chmod", "0777", "/run/stronghost"]);
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "sync"]);
    assert_ne!(code, 0, "{said}");
    assert!(said.contains("/run/stronghost is writable by others (mode 0777)") && said.contains("chmod 0700"), "{said}");
    lab.host_ok(&["chmod", "0700", "/run/stronghost"]);
    // Not root: told so, not sent to remove the state directory.
    let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/sbin/stronghost", "status"];
    let (code, said) = run(&lab, &nobody);
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("stronghost needs root") && !said.contains("remove it"), "{said}");

    // No nft binary: the table is created, and its members change, over nfnetlink all the same.
    lab.host_ok(&["mv", "/usr/sbin/nft", "/usr/sbin/nft.away"]);
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "apply", "eth0"]);
    assert_eq!(code, 0, "{said}");
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "apply", "eth1"]);
    assert_eq!(code, 0, "{said}");
    let st = lab.stronghost_json(&["status", "--json"]);
    assert!(st["receive_filter"]["present"] == true && st["receive_filter"]["members"] == serde_json::json!(["eth0", "eth1"]), "{st}");
    // Repairing a table someone changed is nft's job (it keeps the counters); without nft the
    // table is recreated over nfnetlink, and the log says the counters start again.
    lab.host_ok(&["/usr/sbin/nft.away", "flush", "chain", "inet", "stronghost", "receive"]);
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "apply", "eth0"]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("cannot run nft") && said.contains("recreating it over nfnetlink"), "{said}");
    let st = lab.stronghost_json(&["status", "--json"]);
    assert!(st["receive_filter"]["intact"] == true, "{st}");
    let (code, _) = run(&lab, &hook);
    assert_eq!(code, 0, "a hook failed its DHCP client");
    lab.write_host_file("/etc/stronghost/stronghost.conf", "receive_filter = no\n");
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "apply", "eth0"]);
    assert_eq!(code, 0, "{said}");

    // /run read-only: nothing can be locked or recorded, so nothing is changed; said plainly.
    lab.host_ok(&["/usr/sbin/stronghost", "release", "--all"]);
    lab.host_ok(&["rm", "-rf", "/run/stronghost"]);
    lab.host_ok(&["mount", "-o", "remount,ro", "/run"]);
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "apply", "eth0"]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("/run/stronghost") && said.contains("Read-only"), "{said}");
    let (code, _) = run(&lab, &hook);
    assert_eq!(code, 0);
    lab.host_ok(&["mount", "-o", "remount,rw", "/run"]);

    // (No filter for the rest: what follows is about state files.)
    lab.write_host_file("/etc/stronghost/stronghost.conf", "receive_filter = no\n");

    // State files: private modes; a corrupt record is reported and rebuilt from the kernel; a
    // symlink planted in stronghost's directory is never followed.
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "apply", "eth0"]);
    assert_eq!(code, 0, "{said}");
    let modes = lab.host_ok(&[
        "stat",
        "-c",
        "%a %n",
        "/run/stronghost",
        "/run/stronghost/iface",
        "/run/stronghost/iface/eth0.json",
        "/var/lib/stronghost",
        "/var/lib/stronghost/tables.json",
    ]);
    for l in modes.lines() {
        let (m, n) = l.split_once(' ').unwrap();
        assert!(m == "700" || m == "600", "{n} has mode {m}");
    }
    lab.write_host_file("/run/stronghost/iface/eth0.json", "{ not json");
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "apply", "eth0"]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("eth0.json: corrupt") && said.contains("rebuilding"), "{said}");
    assert!(lab.host_ok(&["cat", "/run/stronghost/iface/eth0.json"]).contains("\"applied\": true"));
    lab.write_host_file("/tmp/precious", "precious\n");
    lab.host_ok(&["ln", "-sf", "/tmp/precious", "/run/stronghost/iface/eth0.json"]);
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "apply", "eth0"]);
    assert_eq!(code, 0, "{said}");
    assert_eq!(lab.host_ok(&["cat", "/tmp/precious"]), "precious\n", "a symlink was followed");
    assert!(said.contains("eth0.json"), "the refused symlink is not reported: {said}");
    assert!(lab.stronghost(&["check"]).status.success());

    // `sync` (what the package runs on installation) takes every managed interface with an
    // address, like the hooks and the watcher: one whose gateway nobody knows refuses off-link
    // traffic, says so in the log, and `check` warns (the host is strong, but limited) ...
    lab.host_ok(&["ip", "addr", "add", "192.0.2.21/24", "dev", "eth1"]);
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "sync"]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("eth1: no gateway known"), "{said}");
    assert!(lab.status_of("eth1").is_some_and(|s| s["applied"] == true && s["gateway"].is_null()));
    let check = lab.stronghost(&["check"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && text.contains("warning: eth1: no gateway known") && text.contains("gateway.eth1 ="), "{text}");
    // ... until an address on a network with a known gateway: that of another interface there.
    lab.host_ok(&["ip", "addr", "add", "198.51.100.21/24", "dev", "eth1"]);
    let (code, said) = run(&lab, &["/usr/sbin/stronghost", "sync"]);
    assert_eq!(code, 0, "{said}");
    let s = lab.status_of("eth1").unwrap();
    assert_eq!((s["gateway"].as_str(), s["gateway_source"].as_str()), (Some(GW), Some("another interface on 198.51.100.0/24")), "{s}");
}

/// A full /var/lib/stronghost when a first lease arrives: the run fails, the event is kept in the
/// queue, and once there is room the watcher applies it — the lease's gateway in force, no
/// renewal needed. Meanwhile `check` says the interface is not managed.
#[test]
fn a_lease_that_arrives_on_a_full_disk_is_applied_once_there_is_room() {
    let mut lab = Lab::builder(2).dhclient_hook().build();
    lab.start_watcher();
    lab.start_dhclient(0);
    lab.wait_applied(0, &crate::lab::addr(0));
    // A tiny file system over /var/lib/stronghost, the tables and originals copied in, then full.
    lab.host_ok(&["cp", "-a", "/var/lib/stronghost", "/tmp/lib-copy"]);
    lab.host_ok(&["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", "/var/lib/stronghost"]);
    lab.host_ok(&["sh", "-c", "cp -a /tmp/lib-copy/. /var/lib/stronghost/"]);
    let _ = lab.host(&["dd", "if=/dev/zero", "of=/var/lib/stronghost/filler", "bs=4k"]);
    lab.start_dhclient(1);
    wait_for(Duration::from_secs(20), "the hook's run failing", || lab.log("watch").contains("event kept in the queue"));
    assert!(lab.status_of("eth1").is_none_or(|s| s["applied"] != true), "applied on a full disk?");
    let said = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(said.contains("eth1: has address") && said.contains("not managed"), "{said}");
    // Room again: applied by the watcher with the lease, not the main table's guess.
    lab.host_ok(&["rm", "/var/lib/stronghost/filler"]);
    wait_for(Duration::from_secs(20), "eth1 applied once there is room", || {
        lab.status_of("eth1").is_some_and(|s| s["applied"] == true && s["gateway"] == crate::lab::GW)
    });
    let eth1 = lab.status_of("eth1").unwrap();
    assert_eq!(eth1["gateway_source"], "lease (dhclient)", "{eth1}");
    assert!(lab.host_ok(&["ls", "/run/stronghost/queue"]).trim().is_empty(), "an event left in the queue");
    let out = lab.stronghost(&["check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
