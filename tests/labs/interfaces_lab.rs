//! Every interface in every state: DHCP, static and hand-made addresses side by side; installed
//! on a host whose leases are already bound; an interface that loses its address with the link
//! up; renames; hundreds of interfaces coming and going.

use crate::lab::{GW, Lab, SERVER, addr, mac, wait_for};
use std::time::Duration;

fn gateway_source(lab: &Lab, ifname: &str) -> String {
    lab.status_of(ifname).and_then(|s| s["gateway_source"].as_str().map(str::to_string)).unwrap_or_default()
}

/// The seed's host: eth0-eth2 by DHCP (dhclient and its hook), eth3 by an ifupdown static stanza
/// that names no gateway, eth4 by `ip addr add` while the watcher runs. All five strong by address,
/// by name and inbound; the static ones take the gateway of their DHCP neighbours' network.
#[test]
fn dhcp_static_and_hand_made_addresses_are_all_strong() {
    let n = 5;
    let mut lab = Lab::builder(n).dhclient_hook().build();
    lab.seed_foreign();
    lab.install("hooks/ifupdown-hook", "/etc/network/if-up.d/stronghost", "0755");
    lab.install("hooks/ifupdown-hook", "/etc/network/if-post-down.d/stronghost", "0755");
    lab.start_watcher();
    for k in 0..3 {
        lab.start_dhclient(k);
    }
    for k in 0..3 {
        lab.wait_applied(k, &addr(k));
    }
    lab.write_host_file("/etc/network/interfaces", &format!("iface eth3 inet static\n  address {}/24\n", addr(3)));
    lab.host_ok(&["mkdir", "-p", "/run/network"]);
    lab.host_ok(&["ifup", "eth3"]);
    lab.host_ok(&["ip", "addr", "add", &format!("{}/24", addr(4)), "dev", "eth4"]);
    lab.wait_applied(3, &addr(3));
    lab.wait_applied(4, &addr(4));
    for k in [3, 4] {
        let e = format!("eth{k}");
        wait_for(Duration::from_secs(10), &format!("{e}'s gateway"), || lab.status_of(&e).unwrap()["gateway"] == GW);
        assert_eq!(gateway_source(&lab, &e), "another interface on 198.51.100.0/24");
    }
    for k in 0..n {
        lab.assert_strong(k, &addr(k));
    }
    let check = lab.stronghost(&["check"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && !text.contains("warning"), "{text}");
    lab.assert_foreign_intact("five interfaces");
}

/// isc-dhcp-client under ifupdown (lease files in /var/lib/dhcp) bound every lease before
/// stronghost existed; dhclient-script could give only the first interface main's default route.
/// The package's first `sync` reads the lease files: every interface is strong at once.
#[test]
fn installed_on_a_running_host_takes_every_lease_at_once() {
    let n = 3;
    let mut lab = Lab::builder(n).build();
    for k in 0..n {
        lab.start_dhclient_debian(k);
    }
    lab.wait_addresses(&(0..n).map(addr).collect::<Vec<_>>());
    let main = lab.host_ok(&["ip", "-4", "route", "show", "default"]);
    assert_eq!(main.lines().count(), 1, "dhclient-script gave more than one interface a default route:\n{main}");
    // Before the first sync, `check` sees the weak host's interfaces for what they are.
    let check = lab.stronghost(&["check"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        !check.status.success() && (0..n).all(|k| text.contains(&format!("eth{k}: has address {} but is not managed", addr(k)))),
        "{text}"
    );
    let out = lab.stronghost(&["sync"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(lab.stronghost(&["check"]).status.success());
    for k in 0..n {
        let e = format!("eth{k}");
        assert_eq!(lab.status_of(&e).unwrap()["gateway"], GW, "{e}");
        assert_eq!(gateway_source(&lab, &e), "lease (dhclient lease file)", "{e}");
    }
    for k in 0..n {
        lab.assert_strong(k, &addr(k));
    }
}

/// `nmcli con down` or a lease that ends with the link up: the interface keeps no address. Traffic
/// bound to it is refused, a route through it carries nothing with another interface's address,
/// and the gateway's neighbour entry for that address stays where it belongs. Then the same
/// without stronghost, as the positive control: the kernel borrows eth0's address on eth1.
#[test]
fn an_interface_that_loses_its_address_sends_nothing() {
    let n = 3;
    let mut lab = Lab::bound_under_the_watcher(n);
    // What the router receives from eth1's MAC with eth0's address, as IP source or ARP sender.
    let watch = format!(
        "table netdev watch {{\n counter borrowed_ip {{}}\n counter borrowed_arp {{}}\n chain in {{ type filter hook ingress device lan0 priority 0;\n  ether saddr {m} ip saddr {a} counter name borrowed_ip\n  ether saddr {m} arp saddr ip {a} counter name borrowed_arp\n }}\n}}\n",
        m = mac(1),
        a = addr(0)
    );
    let f = lab.dir.join("watch.nft");
    std::fs::write(&f, watch).unwrap();
    lab.in_ns("rtr", &["nft", "-f", f.to_str().unwrap()]);
    let borrowed = |lab: &Lab| -> (u64, u64) {
        let out =
            String::from_utf8_lossy(&lab.in_ns("rtr", &["nft", "-j", "list", "counters", "table", "netdev", "watch"]).stdout).into_owned();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let get = |name: &str| {
            v["nftables"].as_array().unwrap().iter().filter_map(|i| i.get("counter")).find(|c| c["name"] == name).unwrap()["packets"]
                .as_u64()
                .unwrap()
        };
        (get("borrowed_ip"), get("borrowed_arp"))
    };
    let neighbour_of_eth0 = |lab: &Lab| String::from_utf8_lossy(&lab.in_ns("rtr", &["ip", "neigh", "show", &addr(0)]).stdout).into_owned();

    lab.kill_dhclient(1);
    lab.host_ok(&["ip", "addr", "flush", "dev", "eth1"]);
    wait_for(Duration::from_secs(10), "eth1 without policy for an address", || {
        lab.status_of("eth1").is_some_and(|s| s["applied"] == false) && !lab.routed("eth1")
    });
    let t1 = lab.status_of("eth1").unwrap()["table"].as_u64().unwrap();
    lab.assert_addressless_refused("eth1", t1);
    // A route through eth1 left in main: unbound traffic picks eth0's address for it, and that
    // address's rule then sends it by eth0, never by eth1.
    lab.host_ok(&["ip", "route", "add", "203.0.113.0/24", "dev", "eth1"]);
    lab.reset_counters();
    let seen = lab.curl_in("host", &format!("http://{SERVER}/"), &[]).map(|(client, _)| client);
    assert_eq!(seen.as_deref(), Some(addr(0).as_str()), "unbound traffic over a stale route");
    assert_eq!(lab.nonzero("inet", "web_"), ["eth0"]);
    lab.host_ok(&["ip", "route", "del", "203.0.113.0/24", "dev", "eth1"]);
    assert_eq!(borrowed(&lab), (0, 0), "the router received eth0's address from eth1's MAC");
    assert!(neighbour_of_eth0(&lab).contains(&mac(0)), "router's entry for eth0: {}", neighbour_of_eth0(&lab));
    assert_eq!(lab.curl_from_host("eth0").as_deref(), Some(addr(0).as_str()));
    let check = lab.stronghost(&["check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));

    // Positive control: without stronghost, `curl --interface eth1` goes on the wire with eth0's
    // address (the kernel assumes the destination is on-link) and the counters see it.
    let out = lab.stronghost(&["release", "--all"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = lab.host(&["curl", "-sS", "--max-time", "2", "--interface", "eth1", &format!("http://{SERVER}/")]);
    let (ip, arp) = borrowed(&lab);
    assert!(ip + arp > 0, "positive control: the weak host's borrowed address was not seen (ip {ip}, arp {arp})");
}

/// A managed interface renamed under its running DHCP client keeps its table, lease and gateway;
/// 300 interfaces created and deleted in turn (veth pairs: more than the 256 tables of the range) leave the
/// range usable: a new one is managed, and the live interfaces keep their numbers.
#[test]
fn tables_follow_renames_and_are_reclaimed() {
    let n = 2;
    let lab = Lab::bound_under_the_watcher(n);
    let table = |lab: &Lab, e: &str| lab.status_of(e).and_then(|s| s["table"].as_u64());
    let (t0, t1) = (table(&lab, "eth0").unwrap(), table(&lab, "eth1").unwrap());
    for cmd in [
        vec!["ip", "link", "set", "eth1", "down"],
        vec!["ip", "link", "set", "eth1", "name", "lan1"],
        vec!["ip", "link", "set", "lan1", "up"],
    ] {
        lab.host_ok(&cmd);
    }
    wait_for(Duration::from_secs(10), "lan1 strong", || lab.routed("lan1") && lab.status_of("eth1").is_none());
    let s = lab.status_of("lan1").unwrap();
    assert_eq!(s["table"].as_u64(), Some(t1), "a second table for the renamed interface: {s}");
    assert_eq!((s["lease_source"].as_str(), s["gateway"].as_str()), (Some("dhclient"), Some(GW)), "{s}");
    let tables = lab.host_ok(&["cat", "/var/lib/stronghost/tables.json"]);
    assert!(!tables.contains("\"eth1\""), "{tables}");
    wait_for(Duration::from_secs(10), "lan1's gateway after the link came back up", || {
        lab.curl_from_host("lan1").as_deref() == Some(addr(1).as_str())
    });
    assert!(!lab.routing_dump().contains("oif eth1 "), "the old name's rule is left");

    let start = std::time::Instant::now();
    for i in 0..300u32 {
        let d = format!("d{i}");
        let q = format!("q{i}");
        lab.host_ok(&["ip", "link", "add", &d, "type", "veth", "peer", "name", &q]);
        lab.host_ok(&["ip", "addr", "add", &format!("10.{}.{}.1/24", 100 + i / 200, i % 200), "dev", &d]);
        lab.host_ok(&["ip", "link", "set", &q, "up"]);
        lab.host_ok(&["ip", "link", "set", &d, "up"]);
        wait_for(Duration::from_secs(10), &format!("{d} managed"), || lab.routed(&d));
        lab.host_ok(&["ip", "link", "del", &d]);
    }
    wait_for(Duration::from_secs(10), "the last one released", || lab.status_of("d299").is_none());
    println!("interfaces: 300 created, managed and deleted in {:?}", start.elapsed());
    lab.host_ok(&["ip", "link", "add", "late0", "type", "veth", "peer", "name", "late1"]);
    lab.host_ok(&["ip", "addr", "add", "10.200.0.1/24", "dev", "late0"]);
    lab.host_ok(&["ip", "link", "set", "late1", "up"]);
    lab.host_ok(&["ip", "link", "set", "late0", "up"]);
    wait_for(Duration::from_secs(10), "late0 managed", || lab.routed("late0"));
    assert_eq!((table(&lab, "eth0"), table(&lab, "lan1")), (Some(t0), Some(t1)), "a live interface lost its number");
    let tables: serde_json::Value = serde_json::from_str(&lab.host_ok(&["cat", "/var/lib/stronghost/tables.json"])).unwrap();
    assert!(tables.as_object().unwrap().len() <= 256, "more allocations than tables");
    assert_eq!(lab.curl_from_host("eth0").as_deref(), Some(addr(0).as_str()));
}

/// udev renaming interfaces at boot while the host is busy: eth1 renamed back and forth 16 times
/// with both CPUs taken by busy loops and another link's address added and removed every 50 ms.
/// Every round, the renamed interface keeps its table, its record and its lease.
#[test]
fn renames_under_load_keep_table_record_and_lease() {
    let mut lab = Lab::bound_under_the_watcher(2);
    let table = |lab: &Lab, e: &str| lab.status_of(e).and_then(|s| s["table"].as_u64());
    let t1 = table(&lab, "eth1").unwrap();
    lab.host_ok(&["ip", "link", "add", "noise0", "type", "veth", "peer", "name", "noise1"]);
    lab.host_ok(&["ip", "link", "set", "noise0", "up"]);
    lab.host_ok(&["ip", "link", "set", "noise1", "up"]);
    lab.spawn_in_host(
        "noise",
        &["sh", "-c", "while :; do ip addr add 10.99.0.1/24 dev noise0; sleep 0.05; ip addr del 10.99.0.1/24 dev noise0; sleep 0.05; done"],
    );
    for i in 0..2 {
        lab.spawn_in_host(&format!("hog{i}"), &["sh", "-c", "while :; do :; done"]);
    }
    let mut name = "eth1".to_string();
    for round in 0..16 {
        let new = if round % 2 == 0 { "lan1" } else { "eth1" };
        lab.host_ok(&["ip", "link", "set", &name, "down"]);
        lab.host_ok(&["ip", "link", "set", &name, "name", new]);
        lab.host_ok(&["ip", "link", "set", new, "up"]);
        wait_for(Duration::from_secs(20), &format!("round {round}: {new} strong, {name} gone"), || {
            lab.routed(new) && lab.status_of(&name).is_none() && lab.status_of(new).is_some_and(|s| s["applied"] == true)
        });
        let s = lab.status_of(new).unwrap();
        assert_eq!(s["table"].as_u64(), Some(t1), "round {round}: a second table for {new}: {s}\n{}", lab.log("watch"));
        assert_eq!((s["lease_source"].as_str(), s["gateway"].as_str()), (Some("dhclient"), Some(GW)), "round {round}: {s}");
        name = new.to_string();
    }
    for c in ["hog0", "hog1", "noise"] {
        lab.kill_child(c);
    }
    let tables = lab.host_ok(&["cat", "/var/lib/stronghost/tables.json"]);
    assert_eq!(tables.matches(&format!(": {t1}")).count() + tables.matches(&format!(":{t1}")).count(), 1, "{tables}");
}
