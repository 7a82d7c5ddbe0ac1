//! Connections, not just addresses: published container ports (DNAT to a bridge, as Docker writes
//! them with nft and with iptables-nft), a port forward to a host behind the machine, full-tunnel
//! VPNs (OpenVPN's def1 routes, a plain default through the tunnel, wg-quick's fwmark rules) —
//! IPv4 and IPv6 — and the reverse-path drop, provoked on purpose and counted.
//!
//! ```text
//!   {id}-ctr   172.17.0.2 / 2001:db8:17::2, echo on :80   — docker0 (bridge) in the host
//!   {id}-back  10.77.0.2, echo on :80                      — veth-back in the host
//!   {id}-vpn   10.8.0.1 on tun0's peer, 10.9.0.1 on wg0's peer, 192.0.2.1 towards {id}-inet,
//!              masquerading: the server sees the VPN's exit address for tunnelled traffic
//! ```

use crate::lab::{Lab, SERVER, SERVER6, addr, wait_for};
use std::collections::BTreeMap;
use std::time::Duration;

const N: usize = 3;

fn eth(k: usize) -> String {
    format!("eth{k}")
}

/// Counts, per host interface, the reply packets of connections to `SERVER` clients that leave
/// by it, and the packets to the web server that leave by each interface (tunnels included).
fn observe(lab: &Lab) {
    let mut s = String::from("table inet labconn {\n");
    let ifaces: Vec<String> = (0..N).map(eth).chain(["tun0".to_string(), "wg0".to_string()]).collect();
    for i in &ifaces {
        s += &format!("counter rep_{i} {{}}\ncounter web_{i} {{}}\n");
    }
    s += "chain post { type filter hook postrouting priority 0; policy accept;\n";
    for i in &ifaces {
        s += &format!("oifname \"{i}\" ct direction reply ip daddr {SERVER} counter name rep_{i}\n");
        s += &format!("oifname \"{i}\" ct direction reply ip6 daddr {SERVER6} counter name rep_{i}\n");
        s += &format!("oifname \"{i}\" ct direction original ip daddr {SERVER} tcp dport 80 counter name web_{i}\n");
        s += &format!("oifname \"{i}\" ct direction original ip6 daddr {SERVER6} tcp dport 80 counter name web_{i}\n");
    }
    s += "}\n}\n";
    lab.nft(&s);
}

/// The interfaces whose `prefix_X` counter rose since the last reset.
fn left_by(lab: &Lab, prefix: &str) -> Vec<String> {
    lab.counters("inet", "labconn")
        .into_iter()
        .filter(|(n, p)| n.starts_with(prefix) && *p > 0)
        .map(|(n, _)| n[prefix.len()..].into())
        .collect()
}

fn reset(lab: &Lab) {
    lab.host_ok(&["nft", "reset", "counters", "table", "inet", "labconn"]);
}

/// Every drop counter of the policy, by interface: (wrong interface, reverse path).
fn drops(lab: &Lab) -> BTreeMap<String, (u64, u64)> {
    (0..N)
        .map(|k| {
            let s = lab.status_of(&eth(k)).unwrap();
            (eth(k), (s["drops"]["wrong_interface"].as_u64().unwrap_or(0), s["drops"]["reverse_path"].as_u64().unwrap_or(0)))
        })
        .collect()
}

/// The global IPv6 address of ethK (SLAAC).
fn v6(lab: &Lab, k: usize) -> String {
    lab.global6(k).into_iter().next().unwrap_or_else(|| panic!("eth{k} has no global IPv6 address"))
}

/// The host as Docker leaves it: a bridge with a container, its egress masqueraded, port 8081
/// published with nft (both families) and 8082 forwarded with iptables-nft to a host behind.
fn containers(lab: &mut Lab) {
    let ctr = lab.add_container_bridge();
    let back = lab.add_ns("back");
    let host = lab.ns("host");
    let ip = |args: &[&str]| crate::lab::ok(std::process::Command::new("ip").args(args));
    ip(&["-n", &host, "addr", "add", "2001:db8:17::1/64", "dev", "docker0", "nodad"]);
    ip(&["-n", &ctr, "addr", "add", "2001:db8:17::2/64", "dev", "eth0", "nodad"]);
    ip(&["-n", &ctr, "-6", "route", "add", "default", "via", "2001:db8:17::1"]);
    ip(&["-n", &host, "link", "add", "veth-back", "type", "veth", "peer", "name", "eth0", "netns", &back]);
    ip(&["-n", &host, "addr", "add", "10.77.0.1/24", "dev", "veth-back"]);
    ip(&["-n", &host, "link", "set", "veth-back", "up"]);
    ip(&["-n", &back, "addr", "add", "10.77.0.2/24", "dev", "eth0"]);
    ip(&["-n", &back, "link", "set", "eth0", "up"]);
    ip(&["-n", &back, "route", "add", "default", "via", "10.77.0.1"]);
    lab.serve_echo("ctr", 80);
    lab.serve_echo("back", 80);
    // Forwarding on, and router advertisements still heard on the NICs (as Docker's docs say).
    for k in 0..N {
        lab.host_ok(&["sysctl", "-qw", &format!("net.ipv6.conf.eth{k}.accept_ra=2")]);
    }
    lab.host_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    lab.host_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    lab.publish_container_port();
    lab.nft(
        "table ip6 labdocker6 {
           chain prerouting { type nat hook prerouting priority dstnat; policy accept;
             fib daddr type local tcp dport 8081 dnat to [2001:db8:17::2]:80
           }
           chain postrouting { type nat hook postrouting priority srcnat; policy accept;
             ip6 saddr 2001:db8:17::/64 oifname != \"docker0\" masquerade
           }
         }\n",
    );
    lab.host_ok(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-p",
        "tcp",
        "--dport",
        "8082",
        "-j",
        "DNAT",
        "--to-destination",
        "10.77.0.2:80",
    ]);
    lab.host_ok(&["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.77.0.0/24", "!", "-o", "veth-back", "-j", "MASQUERADE"]);
}

/// A VPN server namespace with two tunnels into the host (veths standing in for tun0 and wg0)
/// and a path of its own to the server, masquerading what it forwards.
fn vpn(lab: &mut Lab) {
    let vpn = lab.add_ns("vpn");
    let (host, inet) = (lab.ns("host"), lab.ns("inet"));
    let ip = |args: &[&str]| crate::lab::ok(std::process::Command::new("ip").args(args));
    for (dev, net4, net6) in [("tun0", "10.8.0", "2001:db8:ff08:"), ("wg0", "10.9.0", "2001:db8:ff09:")] {
        ip(&["-n", &host, "link", "add", dev, "type", "veth", "peer", "name", dev, "netns", &vpn]);
        ip(&["-n", &host, "addr", "add", &format!("{net4}.2/24"), "dev", dev]);
        ip(&["-n", &host, "addr", "add", &format!("{net6}:2/64"), "dev", dev, "nodad"]);
        ip(&["-n", &vpn, "addr", "add", &format!("{net4}.1/24"), "dev", dev]);
        ip(&["-n", &vpn, "addr", "add", &format!("{net6}:1/64"), "dev", dev, "nodad"]);
        ip(&["-n", &host, "link", "set", dev, "up"]);
        ip(&["-n", &vpn, "link", "set", dev, "up"]);
    }
    ip(&["-n", &vpn, "link", "add", "out0", "type", "veth", "peer", "name", "vpn0", "netns", &inet]);
    ip(&["-n", &vpn, "addr", "add", "192.0.2.1/24", "dev", "out0"]);
    ip(&["-n", &vpn, "addr", "add", "2001:db8:ff01::1/64", "dev", "out0", "nodad"]);
    ip(&["-n", &inet, "addr", "add", "192.0.2.10/24", "dev", "vpn0"]);
    ip(&["-n", &inet, "addr", "add", "2001:db8:ff01::10/64", "dev", "vpn0", "nodad"]);
    ip(&["-n", &vpn, "link", "set", "out0", "up"]);
    ip(&["-n", &inet, "link", "set", "vpn0", "up"]);
    ip(&["-n", &vpn, "route", "add", &format!("{SERVER}/32"), "via", "192.0.2.10"]);
    // Back to the host's LAN addresses through the tunnel (what a VPN server learns from its client).
    ip(&["-n", &vpn, "route", "add", "198.51.100.0/24", "via", "10.8.0.2"]);
    ip(&["-n", &vpn, "-6", "route", "add", &format!("{SERVER6}/128"), "via", "2001:db8:ff01::10"]);
    lab.in_ns("vpn", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    lab.in_ns("vpn", &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    let script = lab.dir.join("vpn.nft");
    std::fs::write(
        &script,
        "table inet vpnnat {\n chain post {\n  type nat hook postrouting priority srcnat;\n  oifname \"out0\" masquerade\n }\n}\n",
    )
    .unwrap();
    let out = lab.in_ns("vpn", &["nft", "-f", &script.display().to_string()]);
    assert!(out.status.success(), "vpn nft: {}", String::from_utf8_lossy(&out.stderr));
}

/// Bound traffic (by address, by name) leaves by its interface and the server sees its address;
/// unbound traffic takes the tunnel `tunnel` and the server sees the VPN's exit; inbound on every
/// interface answers from that interface. IPv4 and IPv6.
fn assert_vpn_respected(lab: &Lab, tunnel: &str, what: &str) {
    for k in 0..N {
        for (bind, family, server, want) in [
            (addr(k), "-4", SERVER.to_string(), addr(k)),
            (eth(k), "-4", SERVER.to_string(), addr(k)),
            (v6(lab, k), "-6", format!("[{SERVER6}]"), v6(lab, k)),
        ] {
            reset(lab);
            let seen = lab.curl_in("host", &format!("http://{server}/"), &[family, "--interface", &bind]).map(|s| s.0);
            assert_eq!(seen, Some(want), "{what}: curl {family} --interface {bind}");
            assert_eq!(left_by(lab, "web_"), vec![eth(k)], "{what}: curl {family} --interface {bind} left by");
        }
    }
    reset(lab);
    let seen = lab.curl_in("host", &format!("http://{SERVER}/"), &["-4"]).map(|s| s.0);
    assert_eq!(seen.as_deref(), Some("192.0.2.1"), "{what}: unbound IPv4 traffic must take the tunnel");
    let seen = lab.curl_in("host", &format!("http://[{SERVER6}]/"), &["-6"]).map(|s| s.0);
    assert_eq!(seen.as_deref(), Some("2001:db8:ff01::1"), "{what}: unbound IPv6 traffic must take the tunnel");
    assert_eq!(left_by(lab, "web_"), vec![tunnel.to_string()], "{what}: unbound traffic left by");
    for k in 0..N {
        assert_eq!(lab.curl_to_host("inet", &addr(k)).as_deref(), Some(addr(k).as_str()), "{what}: inbound to eth{k}");
        assert_eq!(lab.curl_to_host("inet", &v6(lab, k)).as_deref(), Some(v6(lab, k).as_str()), "{what}: inbound to eth{k} (IPv6)");
    }
    // The tunnel's own network stays reachable from a managed address (connected, not via a gateway).
    let peer = if tunnel == "tun0" { "10.8.0.1" } else { "10.9.0.1" };
    let ping = lab.host(&["ping", "-c", "1", "-W", "1", "-I", &addr(0), peer]);
    assert!(ping.status.success(), "{what}: ping -I {} {peer}", addr(0));
}

#[test]
fn published_ports_port_forwards_and_vpns_follow_their_connection() {
    let mut lab = Lab::builder(N).dhclient_hook().ipv6().build();
    lab.seed_foreign();
    observe(&lab);
    containers(&mut lab);
    vpn(&mut lab);
    lab.start_watcher();
    for k in 0..N {
        lab.start_dhclient(k);
    }
    for k in 0..N {
        lab.wait_applied(k, &addr(k));
        wait_for(Duration::from_secs(30), &format!("eth{k}'s IPv6 policy"), || {
            !lab.global6(k).is_empty() && lab.status_of(&eth(k)).is_some_and(|s| s["gateway6"].is_string())
        });
    }
    // The container bridge and the tunnels are directly connected: managed addresses reach them
    // through `to` rules, never through a route via a gateway.
    let connected = |lab: &Lab| {
        let rules = lab.host_ok(&["ip", "-N", "rule"]);
        ["172.17.0.0/16", "10.77.0.0/24", "10.8.0.0/24", "10.9.0.0/24"].iter().all(|n| rules.contains(&format!("to {n} lookup 254")))
    };
    let start = std::time::Instant::now();
    while !connected(&lab) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no rules for the connected networks:\n{}\n{}",
            lab.host_ok(&["ip", "-N", "rule"]),
            lab.log("watch")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let nstat = |lab: &Lab| -> u64 {
        let out = lab.host_ok(&["nstat", "-az", "TcpExtIPReversePathFilter"]);
        out.lines().find_map(|l| l.strip_prefix("TcpExtIPReversePathFilter")?.split_whitespace().next()?.parse().ok()).unwrap_or(0)
    };
    let kernel_rpf = nstat(&lab);

    // Published ports on every interface, both families, and a port forward: the client connects,
    // the reply leaves by the interface the connection arrived on, nothing is dropped.
    for k in 0..N {
        for (dst, port, server, what) in [
            (addr(k), 8081, "172.17.0.2", "published port (nft DNAT to a container)"),
            (addr(k), 8082, "10.77.0.2", "port forward (iptables-nft DNAT to a host behind)"),
            (format!("[{}]", v6(&lab, k)), 8081, "2001:db8:17::2", "published port, IPv6"),
        ] {
            reset(&lab);
            let got = lab.curl_in("inet", &format!("http://{dst}:{port}/"), &[]);
            let client = if dst.starts_with('[') { SERVER6 } else { SERVER };
            assert_eq!(got, Some((client.to_string(), server.to_string())), "eth{k}: {what} at {dst}:{port}");
            assert_eq!(left_by(&lab, "rep_"), vec![eth(k)], "eth{k}: {what}: the reply left by");
        }
    }
    assert!(drops(&lab).values().all(|d| *d == (0, 0)), "drops: {:?}", drops(&lab));
    assert_eq!(nstat(&lab), kernel_rpf, "the kernel's reverse-path check dropped something");
    // The container still reaches the world (masqueraded by main's default) and the host.
    assert!(lab.curl_in("ctr", &format!("http://{SERVER}/"), &[]).is_some(), "container egress");
    assert_eq!(lab.curl_in("ctr", &format!("http://{}:8080/", addr(1)), &[]).map(|s| s.1), Some(addr(1)), "container to host");

    // Full-tunnel VPN, OpenVPN style: def1 routes through the tunnel in main.
    for r in ["0.0.0.0/1", "128.0.0.0/1"] {
        lab.host_ok(&["ip", "route", "add", r, "via", "10.8.0.1", "dev", "tun0"]);
    }
    for r in ["::/1", "8000::/1"] {
        lab.host_ok(&["ip", "-6", "route", "add", r, "via", "2001:db8:ff08::1", "dev", "tun0"]);
    }
    assert_vpn_respected(&lab, "tun0", "def1 VPN");
    let check = lab.stronghost(&["check"]);
    assert!(check.status.success(), "check with a def1 VPN: {}", String::from_utf8_lossy(&check.stdout));
    for r in ["0.0.0.0/1", "128.0.0.0/1"] {
        lab.host_ok(&["ip", "route", "del", r, "via", "10.8.0.1", "dev", "tun0"]);
    }
    for r in ["::/1", "8000::/1"] {
        lab.host_ok(&["ip", "-6", "route", "del", r, "via", "2001:db8:ff08::1", "dev", "tun0"]);
    }

    // A plain default route through the tunnel, in place of the DHCP client's (IPv6: preferred to
    // the router advertisements', by metric).
    let main_default = lab.host_ok(&["ip", "-4", "route", "show", "default"]);
    let main_default: Vec<&str> = main_default.split_whitespace().collect();
    lab.host_ok(&["ip", "route", "replace", "default", "via", "10.8.0.1", "dev", "tun0"]);
    lab.host_ok(&["ip", "-6", "route", "add", "default", "via", "2001:db8:ff08::1", "dev", "tun0", "metric", "1"]);
    assert_vpn_respected(&lab, "tun0", "default route through a tunnel");
    let mut restore = vec!["ip", "route", "replace"];
    restore.extend(&main_default);
    lab.host_ok(&restore);
    lab.host_ok(&["ip", "-6", "route", "del", "default", "via", "2001:db8:ff08::1", "dev", "tun0", "metric", "1"]);

    // Full-tunnel VPN, wg-quick style: its own table, reached by every packet without its mark.
    // wg-quick adds its rules without a priority: the kernel puts them just before the first rule
    // after `local` — before stronghost's. Then they take bound traffic too; stronghost cannot
    // move another tool's rules, so `check` says so, naming where to look.
    lab.host_ok(&["ip", "route", "add", "default", "via", "10.9.0.1", "dev", "wg0", "table", "51820"]);
    lab.host_ok(&["ip", "-6", "route", "add", "default", "via", "2001:db8:ff09::1", "dev", "wg0", "table", "51820"]);
    for f in ["-4", "-6"] {
        lab.host_ok(&["ip", f, "rule", "add", "not", "fwmark", "51820", "table", "51820"]);
        lab.host_ok(&["ip", f, "rule", "add", "table", "main", "suppress_prefixlength", "0"]);
    }
    let said = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(
        said.contains(&format!("traffic from {} to 192.0.2.1 would leave by wg0", addr(0))) && said.contains("rules below priority 4100"),
        "{said}"
    );
    // Given priorities after stronghost's band (docs/design.md: `PostUp` in the wg-quick configuration),
    // the VPN keeps unbound traffic and stronghost keeps bound traffic.
    for f in ["-4", "-6"] {
        lab.host_ok(&["ip", f, "rule", "del", "not", "fwmark", "51820", "table", "51820"]);
        lab.host_ok(&["ip", f, "rule", "del", "table", "main", "suppress_prefixlength", "0"]);
        lab.host_ok(&["ip", f, "rule", "add", "priority", "32000", "not", "fwmark", "51820", "table", "51820"]);
        lab.host_ok(&["ip", f, "rule", "add", "priority", "31999", "table", "main", "suppress_prefixlength", "0"]);
    }
    assert_vpn_respected(&lab, "wg0", "wg-quick VPN");
    let check = lab.stronghost(&["check"]);
    assert!(check.status.success(), "check with a wg-quick VPN: {}", String::from_utf8_lossy(&check.stdout));
    for f in ["-4", "-6"] {
        lab.host_ok(&["ip", f, "rule", "del", "priority", "32000", "not", "fwmark", "51820", "table", "51820"]);
        lab.host_ok(&["ip", f, "rule", "del", "priority", "31999", "table", "main", "suppress_prefixlength", "0"]);
    }
    assert!(drops(&lab).values().all(|d| *d == (0, 0)), "drops: {:?}", drops(&lab));

    // A reverse-path drop on purpose: a packet for eth1's address, arriving on eth1, from an
    // address of the container network — not routed back by eth1. Counted, shown, and said.
    let rtr = lab.ns("rtr");
    crate::lab::ok(std::process::Command::new("ip").args(["-n", &rtr, "addr", "add", "172.17.0.99/32", "dev", "lan0"]));
    let spoofed = lab.in_ns("rtr", &["curl", "-s", "--max-time", "1", "--interface", "172.17.0.99", &format!("http://{}:8080/", addr(1))]);
    assert!(!spoofed.status.success(), "a spoofed connection was answered");
    let d = drops(&lab);
    assert!(d["eth1"].1 > 0 && d["eth1"].0 == 0, "the reverse-path drop was not counted on eth1: {d:?}");
    assert!(d["eth0"] == (0, 0) && d["eth2"] == (0, 0), "{d:?}");
    let check = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(
        check.contains("eth1: dropped 0 packet(s) for another interface's address") && check.contains("not routed back by eth1"),
        "{check}"
    );
    let prom = lab.host_ok(&["/usr/sbin/stronghost", "status", "--prometheus"]);
    let rpf = "stronghost_dropped_packets_total{interface=\"eth1\",reason=\"reverse_path\"} ";
    assert!(prom.lines().any(|l| l.strip_prefix(rpf).is_some_and(|n| n != "0")), "{prom}");
    assert!(prom.lines().any(|l| l == "stronghost_receive_filter_intact 1"), "{prom}");

    // What `check` says when the setup is broken (the watcher stopped, so it stays broken):
    // replies of eth2's connections without their fwmark rule; a foreign rule sending bound
    // traffic into a tunnel; the kernel's strict reverse-path check switched on for everything.
    lab.kill_child("watch");
    // (An interface that does not hold main's default: without their rule, its replies take it.)
    let main_default = lab.host_ok(&["ip", "-4", "route", "show", "default"]);
    let k = (0..N).find(|k| !main_default.contains(&format!("dev {} ", eth(*k)))).unwrap();
    let t = lab.status_of(&eth(k)).unwrap()["table"].as_u64().unwrap().to_string();
    let mark = format!("{:#x}/0xff000000", (t.parse::<u32>().unwrap() - 4100) << 24);
    lab.host_ok(&["ip", "rule", "del", "fwmark", &mark, "lookup", &t]);
    let said = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(said.contains(&format!("eth{k}: replies of connections that arrived on eth{k}")), "{said}");
    lab.host_ok(&["ip", "route", "add", "128.0.0.0/1", "via", "10.8.0.1", "dev", "tun0"]);
    lab.host_ok(&["ip", "rule", "add", "priority", "4000", "lookup", "main"]);
    let said = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(said.contains(&format!("traffic from {} to 192.0.2.1 would leave by tun0", addr(0))), "{said}");
    lab.host_ok(&["ip", "rule", "del", "priority", "4000", "lookup", "main"]);
    lab.host_ok(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"]);
    let said = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(said.contains("strict reverse-path check is on"), "{said}");
    lab.host_ok(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
    lab.host_ok(&["/usr/sbin/stronghost", "sync"]);
    let check = lab.stronghost(&["check"]);
    assert!(check.status.success(), "after sync: {}", String::from_utf8_lossy(&check.stdout));
    lab.assert_foreign_intact("after the connections lab");
}
