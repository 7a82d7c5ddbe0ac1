//! NetworkManager with its internal DHCP client: its dispatcher runs stronghost's script on up,
//! dhcp4-change, reapply and down (at down NM passes no IP variables; stronghost's own record
//! suffices).

use crate::lab::{Lab, addr, wait_for};
use std::time::Duration;

fn connection(k: usize) -> String {
    format!("[connection]\nid=eth{k}\ntype=ethernet\ninterface-name=eth{k}\n\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=disabled\n")
}

#[test]
fn networkmanager_dispatcher_drives_stronghost() {
    let n = 3;
    let mut lab = Lab::builder(n).daemons().build();
    lab.seed_foreign();
    lab.install("hooks/networkmanager-dispatcher", "/usr/lib/NetworkManager/dispatcher.d/70-stronghost", "0755");
    lab.write_host_file(
        "/etc/NetworkManager/NetworkManager.conf",
        "[main]\nplugins=keyfile\ndhcp=internal\ndns=none\nrc-manager=unmanaged\nno-auto-default=*\n\n[logging]\nlevel=INFO\n",
    );
    for k in 0..n {
        let path = format!("/etc/NetworkManager/system-connections/eth{k}.nmconnection");
        lab.write_host_file(&path, &connection(k));
        lab.host_ok(&["chmod", "0600", &path]);
    }
    // D-Bus activation needs the setuid launch helper, which does not work in this private bus:
    // run the dispatcher service ourselves, as activation would.
    lab.spawn_in_host("nm-dispatcher", &["/usr/lib/NetworkManager/nm-dispatcher", "--persist", "--debug"]);
    wait_for(Duration::from_secs(10), "nm-dispatcher on the bus", || {
        lab.host(&[
            "dbus-send",
            "--system",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            "string:org.freedesktop.nm_dispatcher",
        ])
        .stdout
        .ends_with(b"true\n")
    });
    lab.spawn_in_host("nm", &["NetworkManager", "--no-daemon", "--debug"]);
    for k in 0..n {
        lab.wait_applied(k, &addr(k));
    }
    assert_eq!(lab.status_of("eth1").unwrap()["lease_source"], "NetworkManager");
    for k in 0..n {
        lab.assert_strong(k, &addr(k));
    }
    assert!(lab.stronghost(&["check"]).status.success());

    // down: the policy of eth2 goes although NM says nothing about addresses then.
    lab.host_ok(&["nmcli", "device", "disconnect", "eth2"]);
    wait_for(Duration::from_secs(15), "eth2 down", || !lab.routed("eth2"));
    lab.assert_strong(0, &addr(0));
    // up again.
    lab.host_ok(&["nmcli", "connection", "up", "eth2"]);
    wait_for(Duration::from_secs(15), "eth2 up", || lab.routed("eth2"));
    lab.assert_strong(2, &addr(2));
    lab.assert_foreign_intact("NetworkManager");
}

/// IPv6 with NetworkManager (it takes router advertisements out of the kernel's hands and runs
/// SLAAC and DHCPv6 itself): an IPv6-only connection's `up` carries IP6_* and no IP4_*; the
/// dispatcher hook alone, no watcher, gives the addresses their policy with NM's router.
#[test]
fn networkmanager_ipv6_only_connection() {
    let mut lab = Lab::builder(1).daemons().ipv6().build();
    lab.install("hooks/networkmanager-dispatcher", "/usr/lib/NetworkManager/dispatcher.d/70-stronghost", "0755");
    lab.write_host_file(
        "/etc/NetworkManager/NetworkManager.conf",
        "[main]\nplugins=keyfile\ndhcp=internal\ndns=none\nrc-manager=unmanaged\nno-auto-default=*\n\n[logging]\nlevel=INFO\n",
    );
    let path = "/etc/NetworkManager/system-connections/eth0.nmconnection";
    lab.write_host_file(path, "[connection]\nid=eth0\ntype=ethernet\ninterface-name=eth0\n\n[ipv4]\nmethod=disabled\n\n[ipv6]\nmethod=auto\naddr-gen-mode=eui64\nmay-fail=false\n");
    lab.host_ok(&["chmod", "0600", path]);
    lab.spawn_in_host("nm-dispatcher", &["/usr/lib/NetworkManager/nm-dispatcher", "--persist", "--debug"]);
    wait_for(Duration::from_secs(10), "nm-dispatcher on the bus", || {
        lab.host(&[
            "dbus-send",
            "--system",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            "string:org.freedesktop.nm_dispatcher",
        ])
        .stdout
        .ends_with(b"true\n")
    });
    lab.spawn_in_host("nm", &["NetworkManager", "--no-daemon", "--debug"]);
    let mut addrs = Vec::new();
    wait_for(Duration::from_secs(30), "eth0's IPv6 policy from NM's dispatcher", || {
        addrs = lab.global6(0);
        lab.status_of("eth0").is_some_and(|s| {
            let rules: Vec<String> = s["rules6"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_string)).collect();
            !addrs.is_empty() && addrs.iter().all(|a| rules.iter().any(|r| r.contains(&format!("from {a} ")))) && s["gateway6"].is_string()
        })
    });
    for a in &addrs {
        lab.reset_counters();
        assert_eq!(lab.curl6_from_host(a).as_deref(), Some(a.as_str()), "curl -6 --interface {a} (NetworkManager)");
        assert_eq!(lab.nonzero("inet", "web_"), vec!["eth0".to_string()]);
    }
}
