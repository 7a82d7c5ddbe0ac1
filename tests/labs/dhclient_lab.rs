//! End to end with isc-dhcp-client: five interfaces on one subnet behind one gateway.

use crate::lab;
use crate::lab::{GW, Lab, addr};
use std::collections::BTreeMap;

fn eth(k: usize) -> String {
    format!("eth{k}")
}

#[test]
fn five_interfaces_on_one_subnet_are_a_strong_host_through_the_lease_lifecycle() {
    let n = 5;
    let mut lab = Lab::builder(n).dhclient_hook().build();
    lab.seed_foreign();

    // Five leases bound in the same second: the lock serialises the hooks, all must be applied.
    for k in 0..n {
        lab.start_dhclient(k);
    }
    for k in 0..n {
        lab.wait_applied(k, &addr(k));
    }
    lab.assert_foreign_intact("after bind");
    let status = lab.status();
    let tables: BTreeMap<String, u64> = status["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["interface"].as_str().unwrap().to_string(), i["table"].as_u64().unwrap()))
        .collect();
    assert!(!tables.values().any(|t| *t == 4102), "table 4102 holds a foreign route and must not be allocated: {tables:?}");
    for i in status["interfaces"].as_array().unwrap() {
        assert_eq!(i["gateway"], GW, "{i}");
        for knob in ["arp_ignore", "arp_announce", "arp_filter", "rp_filter"] {
            assert_eq!(i["sysctls"][knob]["effective"], i["sysctls"][knob]["wanted"], "{knob} on {}", i["interface"]);
        }
    }

    for k in 0..n {
        lab.assert_strong(k, &addr(k));
    }

    // ARP requests the host sends carry the sending interface's own address.
    for k in 0..n {
        lab.host_ok(&["ip", "neigh", "flush", "dev", &eth(k)]);
        lab.nft(&format!(
            "table arp probe {{\ncounter own {{}}\ncounter other {{}}\nchain o {{\ntype filter hook output priority 0;\n\
             oifname \"eth{k}\" arp operation request arp saddr ip {a} counter name own\n\
             oifname \"eth{k}\" arp operation request arp saddr ip != {a} counter name other\n}}\n}}\n",
            a = addr(k)
        ));
        assert_eq!(lab.curl_from_host(&eth(k)).as_deref(), Some(addr(k).as_str()));
        let c = lab.counters("arp", "probe");
        lab.host_ok(&["nft", "delete", "table", "arp", "probe"]);
        assert!(c["own"] > 0 && c["other"] == 0, "eth{k} ARP requests by source: {c:?}");
    }

    // No IPv6 address, no IPv6 rule at all (not even the shared one: a host booted with
    // ipv6.disable=1 could not hold it).
    assert!(!lab.host_ok(&["ip", "-6", "rule"]).contains("proto 83"), "IPv6 rules on an IPv4-only host");

    // `check` agrees, and a second apply writes nothing.
    let check = lab.stronghost(&["check"]);
    assert!(check.status.success(), "check: {}", String::from_utf8_lossy(&check.stdout));
    // Stronghost says it wrote nothing, and the kernel announced no change.
    let changes = lab.kernel_changes_during(|lab| {
        for k in 0..n {
            let v = lab.stronghost_json(&["apply", &eth(k), "--json"]);
            assert_eq!(v["writes"], serde_json::json!({"netlink": 0, "sysctl": 0, "nft": 0}), "second apply of eth{k} wrote");
        }
        let sync = lab.stronghost_json(&["sync", "--json"]);
        assert_eq!(sync["writes"], serde_json::json!({"netlink": 0, "sysctl": 0, "nft": 0}), "sync of a converged host wrote");
    });
    assert!(changes.is_empty(), "a converged host was changed:\n{}", changes.join("\n"));
    // The monitors do see changes (so the emptiness above means something).
    let control = lab.kernel_changes_during(|lab| {
        lab.host_ok(&["ip", "rule", "add", "priority", "31000", "from", "192.0.2.99", "lookup", "main"]);
        lab.host_ok(&["ip", "rule", "del", "priority", "31000", "from", "192.0.2.99", "lookup", "main"]);
        lab.host_ok(&["nft", "add", "table", "inet", "monitor_control"]);
        lab.host_ok(&["nft", "delete", "table", "inet", "monitor_control"]);
    });
    assert!(control.len() >= 4, "the monitors missed changes: {control:?}");

    // A new address: eth2's reservation changes; its client restarts (as after a reboot) and asks
    // for its old address, dnsmasq NAKs it, dhclient-script runs EXPIRE for the old address and
    // BOUND for the new one — the same NAK path a renewal takes when the server moves a client.
    let new2 = "198.51.100.62".to_string();
    lab.write_dhcp_hosts(&BTreeMap::from([(2, new2.clone())]));
    lab.reload_dhcp();
    lab.kill_dhclient(2);
    lab.start_dhclient(2);
    lab.wait_applied(2, &new2);
    let rules = lab.host_ok(&["ip", "-4", "rule"]);
    assert!(!rules.contains(&format!("from {} ", addr(2))), "rule for eth2's old address left behind:\n{rules}");
    lab.assert_strong(2, &new2);
    lab.assert_foreign_intact("after renew with a new address");

    // Release: eth4's routing policy goes; it stays managed without an address, so its ARP
    // hardening stays (else it would answer ARP for the others' addresses), it stays in the
    // receive filter, and traffic bound to it is dropped rather than sent with another
    // interface's address.
    lab.release_dhclient(4);
    lab::wait_for(std::time::Duration::from_secs(10), "eth4 released", || lab.status_of("eth4").is_some_and(|s| s["applied"] == false));
    let t4 = tables["eth4"];
    lab.assert_addressless_refused("eth4", t4);
    assert_eq!(lab.host_ok(&["cat", "/proc/sys/net/ipv4/conf/eth4/arp_ignore"]).trim(), "1");
    for k in 0..4 {
        let a = if k == 2 { new2.clone() } else { addr(k) };
        lab.assert_strong(k, &a);
    }

    // Expire (as dhclient-script does it: the address is removed, then the hook runs).
    lab.host_ok(&["ip", "addr", "flush", "dev", "eth3"]);
    lab.host_ok(&[
        "env",
        "-i",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "reason=EXPIRE",
        "interface=eth3",
        "sh",
        "-c",
        ". /etc/dhcp/dhclient-exit-hooks.d/stronghost",
    ]);
    assert_eq!(lab.status_of("eth3").unwrap()["applied"], false, "eth3 still routed after EXPIRE");
    lab.assert_addressless_refused("eth3", tables["eth3"]);

    // An explicit release gives the interface back as it was: sysctls, link group, filter.
    let out = lab.stronghost(&["release", "eth4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(lab.status_of("eth4").is_none());
    for knob in ["arp_ignore", "arp_announce", "arp_filter", "rp_filter"] {
        let v = lab.host_ok(&["cat", &format!("/proc/sys/net/ipv4/conf/eth4/{knob}")]);
        assert_eq!(v.trim(), "0", "{knob} not restored on eth4");
    }
    assert!(lab.host_ok(&["ip", "link", "show", "eth4"]).contains("group default"), "link group not restored");
    let members = lab.status()["receive_filter"]["members"].clone();
    assert!(!members.as_array().unwrap().iter().any(|m| m == "eth4"), "eth4 still in the receive filter: {members}");

    // Re-bind eth4: same table as before (allocation is persistent), strong again.
    lab.start_dhclient(4);
    lab.wait_applied(4, &addr(4));
    assert_eq!(lab.status_of("eth4").unwrap()["table"].as_u64().unwrap(), t4);
    lab.assert_strong(4, &addr(4));
    lab.assert_foreign_intact("after re-bind");

    // A warm reboot (a VM or container whose interfaces keep their state): /run is empty again and
    // the boot-time sync finds the interfaces hardened. The values to restore were kept in
    // /var/lib, so they are still the ones from before stronghost, not the hardened ones.
    lab.host_ok(&["rm", "-rf", "/run/stronghost"]);
    lab.host_ok(&["/usr/sbin/stronghost", "sync"]);
    assert!(lab.host_ok(&["cat", "/var/lib/stronghost/originals.json"]).contains("\"eth1\": {"));

    // Removal: `release --all` (what the package's prerm runs) leaves the host as it found it.
    let sysctls_before_any: Vec<String> = vec!["0".into(); 4];
    let out = lab.stronghost(&["release", "--all"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dump = lab.routing_dump();
    assert!(!dump.contains("proto 83"), "stronghost objects left after release --all:\n{dump}");
    assert!(!lab.host(&["nft", "list", "table", "inet", "stronghost"]).status.success(), "receive filter left behind");
    for k in 0..n {
        let now: Vec<String> = ["arp_ignore", "arp_announce", "arp_filter", "rp_filter"]
            .iter()
            .map(|knob| lab.host_ok(&["cat", &format!("/proc/sys/net/ipv4/conf/eth{k}/{knob}")]).trim().to_string())
            .collect();
        assert_eq!(now, sysctls_before_any, "eth{k} sysctls not restored");
        assert!(lab.host_ok(&["ip", "link", "show", &eth(k)]).contains("group default"), "eth{k} link group not restored");
    }
    lab.assert_foreign_intact("after release --all");
}
