//! NetworkManager with its internal DHCP client: its dispatcher runs stronghost's script on up,
//! dhcp4-change, reapply and down (at down NM passes no IP variables; stronghost's own record
//! suffices).

mod lab;

use lab::{addr, wait_for, Lab};
use std::time::Duration;

fn connection(k: usize) -> String {
    format!("[connection]\nid=eth{k}\ntype=ethernet\ninterface-name=eth{k}\n\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=disabled\n")
}


#[test]
fn networkmanager_dispatcher_drives_stronghost() {
    let n = 3;
    let mut lab = Lab::for_daemons(n);
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
        lab.host(&["dbus-send", "--system", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.nm_dispatcher"]).stdout.ends_with(b"true\n")
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
