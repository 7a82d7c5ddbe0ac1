//! The other network stacks drive stronghost through their own hooks: dhcpcd, busybox udhcpc,
//! ifupdown (a static stanza, and a dhcp stanza that runs dhclient). Each is checked with the same
//! user-level assertions as the dhclient lab, and foreign state stays untouched.

use crate::lab::{Lab, addr, wait_for};
use std::time::Duration;

fn strong_everywhere(lab: &Lab, addrs: &[(usize, String)]) {
    for (k, a) in addrs {
        lab.assert_strong(*k, a);
    }
    assert!(lab.stronghost(&["check"]).status.success(), "{}", String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout));
}

#[test]
fn dhcpcd() {
    let n = 3;
    let mut lab = Lab::builder(n).build();
    lab.seed_foreign();
    lab.install("hooks/dhcpcd-hook", "/usr/lib/dhcpcd/dhcpcd-hooks/70-stronghost", "0644");
    // No udev here (nodev); no ARP probing (noarp) to keep the lab fast.
    lab.write_host_file("/etc/dhcpcd.conf", "nodev\nnoarp\nipv4only\noption classless_static_routes\nnohook resolv.conf, hostname, ntp.conf, timesyncd.conf, chrony.conf, openntpd.conf\n");
    for k in 0..n {
        lab.spawn_in_host(&format!("dhcpcd-eth{k}"), &["dhcpcd", "-B", "-4", "-f", "/etc/dhcpcd.conf", &format!("eth{k}")]);
    }
    for k in 0..n {
        lab.wait_applied(k, &addr(k));
    }
    assert_eq!(lab.status_of("eth1").unwrap()["lease_source"], "dhcpcd");
    strong_everywhere(&lab, &(0..n).map(|k| (k, addr(k))).collect::<Vec<_>>());
    // dhcpcd -k releases: the lease's policy goes, the others stay.
    lab.host_ok(&["dhcpcd", "-k", "-4", "eth2"]);
    wait_for(Duration::from_secs(10), "eth2 released", || !lab.routed("eth2"));
    lab.assert_strong(0, &addr(0));
    lab.assert_foreign_intact("dhcpcd");
}

#[test]
fn udhcpc() {
    let n = 3;
    let mut lab = Lab::builder(n).build();
    lab.seed_foreign();
    lab.install("hooks/udhcpc-script", "/usr/lib/stronghost/udhcpc-script", "0755");
    for k in 0..n {
        lab.spawn_in_host(
            &format!("udhcpc-eth{k}"),
            &[
                "udhcpc",
                "-f",
                "-i",
                &format!("eth{k}"),
                "-s",
                "/usr/lib/stronghost/udhcpc-script",
                "-t",
                "10",
                "-T",
                "1",
                "-O",
                "staticroutes",
            ],
        );
    }
    for k in 0..n {
        lab.wait_applied(k, &addr(k));
    }
    // stronghost's udhcpc script configured the address and a main default route, as its own.
    let addrs = lab.host_ok(&["ip", "-4", "-o", "addr", "show", "dev", "eth1"]);
    assert!(addrs.contains(&format!("{}/24", addr(1))), "{addrs}");
    let main = lab.host_ok(&["ip", "-4", "route", "show", "default"]);
    assert!(main.contains("dev eth1 proto 83"), "{main}");
    strong_everywhere(&lab, &(0..n).map(|k| (k, addr(k))).collect::<Vec<_>>());
    // A new address: udhcpc's next request is NAKed after the reservation moves.
    let new1 = "198.51.100.71".to_string();
    lab.write_dhcp_hosts(&std::collections::BTreeMap::from([(1, new1.clone())]));
    lab.reload_dhcp();
    lab.kill_child("udhcpc-eth1");
    lab.spawn_in_host(
        "udhcpc-eth1b",
        &["udhcpc", "-f", "-i", "eth1", "-s", "/usr/lib/stronghost/udhcpc-script", "-t", "10", "-T", "1", "-r", &addr(1)],
    );
    lab.wait_applied(1, &new1);
    let addrs = lab.host_ok(&["ip", "-4", "-o", "addr", "show", "dev", "eth1"]);
    assert!(!addrs.contains(&format!("{}/", addr(1))), "old address left on eth1: {addrs}");
    lab.assert_strong(1, &new1);
    lab.assert_foreign_intact("udhcpc");
}

#[test]
fn ifupdown_static_and_dhcp_stanzas() {
    let n = 3;
    let lab = Lab::builder(n).dhclient_hook().build(); // the dhcp stanza's dhclient runs the dhclient hook
    lab.seed_foreign();
    lab.install("hooks/ifupdown-hook", "/etc/network/if-up.d/stronghost", "0755");
    lab.install("hooks/ifupdown-hook", "/etc/network/if-post-down.d/stronghost", "0755");
    let stat = "198.51.100.31";
    lab.write_host_file(
        "/etc/network/interfaces",
        &format!("iface eth0 inet static\n  address {stat}/24\n  gateway 198.51.100.1\n\niface eth1 inet static\n  address 198.51.100.32\n  netmask 255.255.255.0\n  stronghost-gateway 198.51.100.1\n\niface eth2 inet dhcp\n"),
    );
    lab.host_ok(&["mkdir", "-p", "/run/network"]);
    for k in 0..n {
        lab.host_ok(&["ifup", &format!("eth{k}")]);
    }
    lab.wait_applied(0, stat);
    lab.wait_applied(1, "198.51.100.32");
    lab.wait_applied(2, &addr(2));
    assert_eq!(lab.status_of("eth0").unwrap()["lease_source"], "ifupdown");
    assert_eq!(lab.status_of("eth2").unwrap()["lease_source"], "dhclient");
    strong_everywhere(&lab, &[(0, stat.to_string()), (1, "198.51.100.32".to_string()), (2, addr(2))]);
    lab.host_ok(&["ifdown", "eth1"]);
    wait_for(Duration::from_secs(10), "eth1 down", || !lab.routed("eth1"));
    lab.host_ok(&["ifdown", "eth2"]);
    wait_for(Duration::from_secs(10), "eth2 down", || !lab.routed("eth2"));
    // (eth1 is down now, so the wrong-interface probe cannot reach it: no drop to count there.)
    let f = lab.evaluate(0, stat).failures(0, stat);
    assert!(f.is_empty(), "{f:?}");
    lab.assert_foreign_intact("ifupdown");
}
