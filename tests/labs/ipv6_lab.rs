//! IPv6: the same strong host for SLAAC, DHCPv6 and hand-made addresses. The lab router (dnsmasq)
//! advertises a prefix and itself as default router and serves DHCPv6; the host runs dhclient -4
//! with stronghost's hook on every interface, dhclient -6 on eth0, and `stronghost watch`.

use crate::lab::{Lab, PREFIX6, RTR6, addr, mac, wait_for};
use serde_json::Value;
use std::time::Duration;

const N: usize = 3;

fn eth(k: usize) -> String {
    format!("eth{k}")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_string)).collect()
}

/// Waits until stronghost's IPv6 policy for ethK matches the kernel: a `from` rule for exactly
/// the interface's usable global addresses, and a default route in its table iff `router`.
/// Returns those addresses.
fn wait_policy6(lab: &Lab, k: usize, router: bool, what: &str) -> Vec<String> {
    let mut addrs = Vec::new();
    wait_for(Duration::from_secs(30), &format!("eth{k}: {what}"), || {
        addrs = lab.global6(k);
        let Some(s) = lab.status_of(&eth(k)) else { return false };
        let mut from: Vec<String> =
            strings(&s["rules6"]).iter().filter_map(|r| r.split(" from ").nth(1)?.split(' ').next().map(str::to_string)).collect();
        let mut want = addrs.clone();
        from.sort();
        want.sort();
        !want.is_empty() && from == want && s["gateway6"].is_string() == router
    });
    addrs
}

/// `curl -6 --interface BIND`: what the server saw and which interfaces the request left by.
fn curl6(lab: &Lab, bind: &str) -> (Option<String>, Vec<String>) {
    lab.reset_counters();
    let seen = lab.curl6_from_host(bind);
    (seen, lab.nonzero("inet", "web_"))
}

#[test]
fn ipv6_slaac_dhcpv6_router_lifetime_and_prefix_change() {
    let mut lab = Lab::builder(N).dhclient_hook().ipv6().build();
    lab.seed_foreign();
    lab.host_ok(&["ip", "-6", "rule", "add", "priority", "4105", "from", "2001:db8:77::1", "lookup", "100"]);
    lab.host_ok(&["ip", "-6", "route", "add", "blackhole", "2001:db8:77::/64", "table", "100"]);
    lab.start_watcher();
    for k in 0..N {
        lab.start_dhclient(k);
    }
    for k in 0..N {
        lab.wait_applied(k, &addr(k));
    }

    // SLAAC: every interface gets an address in the advertised prefix, and its own policy.
    for k in 0..N {
        let addrs = wait_policy6(&lab, k, true, "SLAAC address with its rules and router");
        let a = addrs[0].clone();
        assert!(a.starts_with(PREFIX6), "{a}");
        let s = lab.status_of(&eth(k)).unwrap();
        assert!(s["gateway6"].as_str().unwrap().starts_with("fe80::"), "the router is learned from its advertisements: {s}");
        assert!(strings(&s["routes6"]).iter().any(|r| r.starts_with("fe80::/64 dev ")), "{s}");

        assert_eq!(curl6(&lab, &a), (Some(a.clone()), vec![eth(k)]), "curl -6 --interface {a}");
        let (seen, out) = curl6(&lab, &eth(k));
        assert!(seen.as_ref().is_some_and(|s| addrs.contains(s)), "curl -6 --interface eth{k}: server saw {seen:?}, not one of {addrs:?}");
        assert_eq!(out, vec![eth(k)], "curl -6 --interface eth{k} left by");

        lab.reset_counters();
        assert_eq!(lab.curl_to_host("inet", &a).as_deref(), Some(a.as_str()), "request to {a}");
        assert_eq!(lab.nonzero("inet", "srv_"), vec![eth(k)], "the reply from {a} left by");
        // Neighbour discovery resolved the address to ethK's MAC (and only ethK answers).
        let neigh = lab.in_ns("rtr", &["ip", "-6", "neigh", "show", &a, "dev", "lan0"]);
        assert!(
            String::from_utf8_lossy(&neigh.stdout).contains(&mac(k)),
            "router's neighbour entry for {a}: {}",
            String::from_utf8_lossy(&neigh.stdout)
        );

        let j = (k + 1) % N;
        let before = lab.drops(&eth(j));
        assert!(!lab.wrong_interface_probe(&a, j), "{a} reached through eth{j} was accepted");
        assert!(lab.drops(&eth(j)) > before, "the wrong-interface drop of {a} on eth{j} was not counted");
    }
    // IPv4 is as strong as before, next to IPv6.
    lab.assert_strong(1, &addr(1));

    // DHCPv6 (stateful): a /128 whose on-link prefix comes from the router's advertisement.
    // The watcher is stopped meanwhile: dhclient's exit hook (BOUND6) alone must do it.
    lab.kill_child("watch");
    lab.start_dhclient6(0);
    let mut leased = String::new();
    wait_for(Duration::from_secs(30), "a DHCPv6 address on eth0", || {
        let out = lab.host_ok(&["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"]);
        match out.split_whitespace().find(|w| w.starts_with(PREFIX6) && w.ends_with("/128")) {
            Some(w) => {
                leased = w.trim_end_matches("/128").to_string();
                true
            }
            None => false,
        }
    });
    // `ip addr` lists it while duplicate address detection runs; the policy is for usable ones.
    wait_for(Duration::from_secs(10), "the DHCPv6 address past DAD", || lab.global6(0).contains(&leased));
    let addrs0 = wait_policy6(&lab, 0, true, "the DHCPv6 address's rule");
    assert!(addrs0.contains(&leased), "{addrs0:?}");
    assert_eq!(curl6(&lab, &leased), (Some(leased.clone()), vec![eth(0)]), "curl -6 --interface {leased} (DHCPv6)");
    lab.start_watcher();

    // `check` agrees, and a converged host costs nothing.
    let check = lab.stronghost(&["check"]);
    assert!(check.status.success(), "check: {}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    for k in 0..N {
        let v = lab.stronghost_json(&["apply", &eth(k), "--json"]);
        assert_eq!(v["writes"], serde_json::json!({"netlink": 0, "sysctl": 0, "nft": 0}), "second apply of eth{k} wrote");
    }

    // Router lifetime 0: the router is no longer a default router. The kernel drops its default
    // routes; each table keeps its on-link routes and refuses the rest instead of leaking.
    let slaac: Vec<String> = (0..N).map(|k| lab.global6(k).into_iter().find(|a| *a != leased).unwrap()).collect();
    let router = lab.status_of("eth0").unwrap()["gateway6"].as_str().unwrap().to_string();
    lab.set_ipv6(Lab::ipv6_options(PREFIX6, Some(0)));
    for k in 0..N {
        wait_policy6(&lab, k, false, "no IPv6 router after router lifetime 0");
    }
    assert!(!lab.host_ok(&["ip", "-6", "route", "show", "default"]).contains("via"), "the kernel kept a default route");
    for a in &slaac {
        let (seen, out) = curl6(&lab, a);
        assert_eq!(seen, None, "curl from {a} reached the server without a router");
        assert!(out.is_empty(), "traffic from {a} leaked by {out:?}");
    }
    // On-link traffic still flows: the router reaches every address.
    for (k, a) in slaac.iter().enumerate() {
        let out = lab.in_ns("rtr", &["curl", "-s", "--max-time", "2", &format!("http://[{a}]:8080/")]);
        assert!(String::from_utf8_lossy(&out.stdout).contains(a.as_str()), "eth{k}: on-link request to {a} failed");
    }
    // A static default through two interfaces at once (the kernel keeps it as one multipath
    // route): each of them gets its own next hop as its router; the third still refuses.
    lab.host_ok(&[
        "ip", "-6", "route", "add", "default", "metric", "1024", "nexthop", "via", &router, "dev", "eth0", "nexthop", "via", &router,
        "dev", "eth1",
    ]);
    for (k, a) in slaac.iter().enumerate().take(2) {
        wait_policy6(&lab, k, true, "its next hop of the multipath default as its router");
        assert_eq!(curl6(&lab, a), (Some(a.clone()), vec![eth(k)]), "curl -6 --interface {a} (multipath default)");
    }
    assert!(lab.status_of("eth2").unwrap()["gateway6"].is_null());
    lab.host_ok(&["ip", "-6", "route", "del", "default", "metric", "1024"]);
    for k in 0..2 {
        wait_policy6(&lab, k, false, "no router once the multipath default is gone");
    }

    // A new prefix, and the router is back: new SLAAC addresses get their rules, the old ones
    // stay (deprecated, still valid) with theirs.
    lab.in_ns("rtr", &["ip", "addr", "add", "2001:db8:2::1/64", "dev", "lan0", "nodad"]);
    lab.set_ipv6(Lab::ipv6_options("2001:db8:2::", None));
    for (k, old) in slaac.iter().enumerate() {
        let addrs = wait_policy6(&lab, k, true, "an address in the new prefix, and the router back");
        let new = addrs
            .iter()
            .find(|a| a.starts_with("2001:db8:2:"))
            .unwrap_or_else(|| panic!("eth{k}: no address in 2001:db8:2::/64: {addrs:?}"))
            .clone();
        assert!(addrs.contains(old), "eth{k}: the old address went early: {addrs:?}");
        assert_eq!(curl6(&lab, &new), (Some(new.clone()), vec![eth(k)]), "curl -6 --interface {new} (new prefix)");
        let routes = strings(&lab.status_of(&eth(k)).unwrap()["routes6"]);
        assert!(routes.iter().any(|r| r.starts_with("2001:db8:2::/64 dev")), "eth{k}: new prefix not on-link in its table: {routes:?}");
    }
    // An address that expires (here removed by hand: the kernel sends the same event) loses its rule.
    lab.host_ok(&["ip", "-6", "addr", "del", &format!("{}/64", slaac[1]), "dev", "eth1"]);
    wait_policy6(&lab, 1, true, "the removed address's rule gone");

    // Nothing of anyone else's was touched, and release restores the host.
    lab.assert_foreign_intact("ipv6");
    let r6 = lab.host_ok(&["ip", "-6", "rule"]);
    assert!(r6.contains("4105:\tfrom 2001:db8:77::1 lookup 100"), "foreign IPv6 rule gone:\n{r6}");
    assert!(lab.host_ok(&["ip", "-6", "route", "show", "table", "100"]).contains("blackhole 2001:db8:77::/64"), "foreign IPv6 route gone");
    lab.kill_child("watch");
    // `ipv6 = no`: the IPv6 policy goes at the next sync, the IPv4 one stays.
    lab.write_host_file("/etc/stronghost/stronghost.conf", "ipv6 = no\n");
    let out = lab.stronghost(&["sync"]);
    assert!(out.status.success(), "sync with ipv6 = no: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lab.host_ok(&["ip", "-6", "route", "show", "table", "all", "proto", "83"]).trim(), "", "IPv6 routes kept with ipv6 = no");
    assert!(!lab.host_ok(&["ip", "-6", "rule"]).contains("proto 83"), "IPv6 rules kept with ipv6 = no");
    assert!(lab.host_ok(&["ip", "-4", "rule"]).contains(&format!("from {} ", addr(0))), "IPv4 rules lost with ipv6 = no");
    let out = lab.stronghost(&["release", "--all"]);
    assert!(out.status.success(), "release --all: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lab.host_ok(&["ip", "-6", "route", "show", "table", "all", "proto", "83"]).trim(), "", "IPv6 routes left behind");
    assert!(!lab.host_ok(&["ip", "-6", "rule"]).contains("proto 83"), "IPv6 rules left behind");
}

/// dhcpcd runs IPv6 itself (it takes router advertisements and DHCPv6 out of the kernel's hands)
/// and reports them to its hooks as ROUTERADVERT and BOUND6: its hook alone, no watcher, keeps
/// the IPv6 policy in step.
#[test]
fn dhcpcd_router_advertisements_and_dhcpv6_through_its_hook() {
    let mut lab = Lab::builder(2).dhclient_hook().ipv6().build();
    lab.install("hooks/dhcpcd-hook", "/usr/lib/dhcpcd/dhcpcd-hooks/70-stronghost", "0644");
    lab.write_host_file(
        "/etc/dhcpcd.conf",
        "nodev\nnoarp\nipv6only\nslaac hwaddr\nnohook resolv.conf, hostname, ntp.conf, timesyncd.conf, chrony.conf, openntpd.conf\n",
    );
    for k in 0..2 {
        lab.spawn_in_host(&format!("dhcpcd-eth{k}"), &["dhcpcd", "-B", "-6", "-f", "/etc/dhcpcd.conf", &eth(k)]);
    }
    for k in 0..2 {
        let addrs = wait_policy6(&lab, k, true, "dhcpcd's addresses with their rules and router");
        for a in &addrs {
            assert_eq!(curl6(&lab, a), (Some(a.clone()), vec![eth(k)]), "curl -6 --interface {a} (dhcpcd)");
        }
        let (seen, out) = curl6(&lab, &eth(k));
        assert!(seen.as_ref().is_some_and(|s| addrs.contains(s)) && out == vec![eth(k)], "curl -6 --interface eth{k}: {seen:?} by {out:?}");
    }
    assert!(lab.stronghost(&["check"]).status.success());
}

/// ifupdown `inet6 static` stanzas: its if-up.d / if-post-down.d hook alone (no watcher) applies
/// the address's policy with the stanza's gateway, and takes it away at ifdown.
#[test]
fn ifupdown_inet6_static_stanza_through_its_hook() {
    let lab = Lab::builder(2).ipv6().build();
    lab.install("hooks/ifupdown-hook", "/etc/network/if-up.d/stronghost", "0755");
    lab.install("hooks/ifupdown-hook", "/etc/network/if-post-down.d/stronghost", "0755");
    let a = "2001:db8:1::50";
    lab.write_host_file("/etc/network/interfaces", &format!("iface eth1 inet6 static\n  address {a}/64\n  gateway {}\n", RTR6));
    lab.host_ok(&["mkdir", "-p", "/run/network"]);
    lab.host_ok(&["ifup", "eth1"]);
    wait_for(Duration::from_secs(20), "eth1's static IPv6 address with its rule and gateway", || {
        lab.status_of("eth1")
            .is_some_and(|s| strings(&s["rules6"]).iter().any(|r| r.contains(&format!("from {a} "))) && s["gateway6"] == RTR6)
    });
    assert_eq!(curl6(&lab, a), (Some(a.to_string()), vec![eth(1)]), "curl -6 --interface {a} (ifupdown)");
    lab.host_ok(&["ifdown", "eth1"]);
    wait_for(Duration::from_secs(10), "the rule of eth1's static address gone", || {
        lab.status_of("eth1").is_some_and(|s| !strings(&s["rules6"]).iter().any(|r| r.contains(&format!("from {a} "))))
    });
}
