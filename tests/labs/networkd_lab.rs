//! systemd-networkd, which has no hooks: its leases are followed by `stronghost watch` (address
//! events) with the gateway and option 121 from networkd's lease files, and the routes the kernel
//! flushes when networkd re-adds an address on `networkctl reconfigure` are repaired.

use crate::lab::{Lab, addr, wait_for};
use std::time::Duration;

fn acquisitions(lab: &Lab, ifname: &str) -> usize {
    lab.log("networkd").lines().filter(|l| l.starts_with(&format!("{ifname}: DHCPv4 address"))).count()
}

fn wait_check(lab: &Lab, what: &str) {
    wait_for(Duration::from_secs(15), what, || lab.stronghost(&["check"]).status.success());
}

#[test]
fn networkd_with_watcher_through_reconfigure_and_a_new_address() {
    let n = 3;
    let mut lab = Lab::builder(n).daemons().build();
    lab.seed_foreign();
    lab.install("dist/networkd.conf.d/stronghost.conf", "/usr/lib/systemd/networkd.conf.d/stronghost.conf", "0644");
    lab.write_host_file(
        "/etc/systemd/network/10-eth.network",
        "[Match]\nName=eth*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n[DHCPv4]\nSendHostname=no\n",
    );
    lab.start_watcher();
    lab.spawn_in_host("networkd", &["/lib/systemd/systemd-networkd"]);
    for k in 0..n {
        lab.wait_applied(k, &addr(k));
    }
    wait_check(&lab, "the policy after the first leases");
    assert_eq!(lab.status_of("eth1").unwrap()["lease_source"], "networkd");
    for k in 0..n {
        lab.assert_strong(k, &addr(k));
    }
    lab.assert_foreign_intact("networkd bound");

    // `networkctl reconfigure` drops and re-adds the address: the kernel flushes every route with
    // that source, ours included; the watcher puts them back. The drop-in keeps networkd from
    // deleting stronghost's (and everybody else's) rules and routes.
    let before = acquisitions(&lab, "eth1");
    lab.host_ok(&["networkctl", "reconfigure", "eth1"]);
    wait_for(Duration::from_secs(15), "eth1's new acquisition", || acquisitions(&lab, "eth1") > before);
    wait_check(&lab, "the policy after reconfigure");
    lab.assert_strong(1, &addr(1));
    lab.assert_foreign_intact("after networkctl reconfigure");

    // A new address: the reservation moves and networkd asks again; its request for the old
    // address is NAKed and it binds the new one. (`networkctl renew` would take the same path, but
    // a renewing client only hears the broadcast NAK once it rebinds at T2, 105 s here.)
    let new1 = "198.51.100.81".to_string();
    lab.write_dhcp_hosts(&std::collections::BTreeMap::from([(1, new1.clone())]));
    lab.reload_dhcp();
    lab.host_ok(&["networkctl", "reconfigure", "eth1"]);
    lab.wait_applied(1, &new1);
    wait_check(&lab, "the policy after the new address");
    lab.assert_strong(1, &new1);
    assert!(!lab.host_ok(&["ip", "-4", "rule"]).contains(&format!("from {} ", addr(1))), "rule of the old address left behind");
    lab.assert_foreign_intact("after a new address");
}

/// Installed on a host whose networkd leases are already bound (no watcher yet): the first `sync`
/// takes the gateway of every interface from networkd's lease files, at once.
#[test]
fn networkd_leases_bound_before_installation() {
    let n = 3;
    let mut lab = Lab::builder(n).daemons().build();
    lab.install("dist/networkd.conf.d/stronghost.conf", "/usr/lib/systemd/networkd.conf.d/stronghost.conf", "0644");
    lab.write_host_file(
        "/etc/systemd/network/10-eth.network",
        "[Match]\nName=eth*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n[DHCPv4]\nSendHostname=no\n",
    );
    lab.spawn_in_host("networkd", &["/lib/systemd/systemd-networkd"]);
    lab.wait_addresses(&(0..n).map(addr).collect::<Vec<_>>());
    let out = lab.stronghost(&["sync"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for k in 0..n {
        let s = lab.status_of(&format!("eth{k}")).unwrap();
        assert_eq!((s["gateway"].as_str(), s["gateway_source"].as_str()), (Some(crate::lab::GW), Some("lease (networkd)")), "{s}");
    }
    for k in 0..n {
        lab.assert_strong(k, &addr(k));
    }
}
