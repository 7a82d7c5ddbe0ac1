//! A shared host: another tool reloads the whole ruleset (Debian's stock /etc/nftables.conf starts
//! with `flush ruleset`), deletes stronghost's table or edits a member, and keeps doing it. The
//! watcher hears it from the kernel's nftables notifications and puts the whole host's table back
//! within a second; without a watcher, `check` says the host is weak and who would repair it, and
//! the next run for one interface writes every interface's members, not that one's alone.

use crate::lab::{Lab, addr, wait_for};
use std::time::{Duration, Instant};

/// Debian 12's and 13's /etc/nftables.conf, as the nftables package ships it.
const DEBIAN_NFTABLES_CONF: &str = "#!/usr/sbin/nft -f

flush ruleset

table inet filter {
	chain input {
		type filter hook input priority filter;
	}
	chain forward {
		type filter hook forward priority filter;
	}
	chain output {
		type filter hook output priority filter;
	}
}
";

fn table_complete(lab: &Lab, n: usize) -> bool {
    let out = lab.host(&["nft", "list", "table", "inet", "stronghost"]);
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && text.contains("chain receive") && (0..n).all(|k| text.contains(&format!("\"eth{k}\"")))
}

fn check(lab: &Lab) -> (bool, String) {
    let out = lab.stronghost(&["check"]);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The wrong-interface probe (eth1's address sent to eth0's MAC) is refused, and counted on eth0.
fn assert_wrong_interface_dropped(lab: &Lab, what: &str) {
    let before = lab.drops("eth0");
    assert!(!lab.wrong_interface_probe(&addr(1), 0), "{what}: a connection to eth1's address arriving on eth0 was accepted");
    assert!(lab.drops("eth0") > before, "{what}: the wrong-interface drop was not counted on eth0");
}

#[test]
fn a_ruleset_reload_is_repaired_within_a_second_and_check_tells_without_a_watcher() {
    let n = 3;
    let mut lab = Lab::bound_under_the_watcher(n);
    assert_wrong_interface_dropped(&lab, "before any reload");

    // `systemctl reload nftables`: the stock ruleset, `flush ruleset` first, while a client on
    // eth0's side keeps connecting. Timed from nft's exit to the table being whole again (as seen
    // through `nft list`, a process start per look).
    let mut repairs = Vec::new();
    for round in 0..5 {
        lab.nft(DEBIAN_NFTABLES_CONF);
        let t = Instant::now();
        wait_for(Duration::from_secs(1), &format!("reload {round}: the table repaired"), || table_complete(&lab, n));
        repairs.push(t.elapsed());
        assert_wrong_interface_dropped(&lab, &format!("after reload {round}"));
        assert_eq!(lab.curl_to_host("rtr", &addr(0)).as_deref(), Some(addr(0).as_str()), "eth0's own service after reload {round}");
    }
    repairs.sort();
    println!("ruleset reload -> table repaired: median {:?}, worst {:?} over {} reloads", repairs[2], repairs[4], repairs.len());
    assert!(lab.log("watch").contains("was changed by"), "the watcher says who changed the table:\n{}", lab.log("watch"));
    let (ok, text) = check(&lab);
    assert!(ok, "check after the reloads:\n{text}");

    // One member edited by hand: eth2's reverse-path entry deleted (eth2's inbound traffic would be
    // dropped as "reverse path"). Put back, with the others untouched.
    lab.host_ok(&["nft", "delete", "element", "inet", "stronghost", "rpf_ok", "{ \"eth2\" . \"eth2\" }"]);
    wait_for(Duration::from_secs(1), "eth2's reverse-path entry back", || {
        lab.host_ok(&["nft", "list", "set", "inet", "stronghost", "rpf_ok"]).contains("\"eth2\" . \"eth2\"")
    });
    assert_eq!(lab.curl_to_host("rtr", &addr(2)).as_deref(), Some(addr(2).as_str()), "eth2's service");

    // A tool that keeps deleting the table is not fought for ever: the watcher pauses, says so,
    // and `check` reports the host weak meanwhile.
    for _ in 0..40 {
        let _ = lab.host(&["nft", "delete", "table", "inet", "stronghost"]);
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for(Duration::from_secs(3), "the watcher pausing repairs", || lab.log("watch").contains("keeps changing"));
    let _ = lab.host(&["nft", "delete", "table", "inet", "stronghost"]);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, text) = check(&lab);
    assert!(!ok && text.contains("the table is missing") && text.contains("repairs it"), "check while repairs are paused:\n{text}");
    assert!(lab.wrong_interface_probe(&addr(1), 0), "without the table the host is weak (the probe is the real thing)");
    lab.host_ok(&["/usr/sbin/stronghost", "sync"]);
    assert!(table_complete(&lab, n));

    // Without a watcher: the table deleted stays deleted, and `check` says so and who repairs it.
    lab.stop_child("watch");
    lab.host_ok(&["nft", "delete", "table", "inet", "stronghost"]);
    let (ok, text) = check(&lab);
    assert!(!ok && text.contains("the table is missing") && text.contains("no watcher runs"), "check without a watcher:\n{text}");
    // A run for one interface (a lease renewed on eth1) writes the whole host's table: eth0's and
    // eth2's members and reverse-path entries too, so their services keep answering.
    lab.host_ok(&["/usr/sbin/stronghost", "apply", "eth1"]);
    assert!(table_complete(&lab, n), "{}", lab.host_ok(&["nft", "list", "table", "inet", "stronghost"]));
    let rpf = lab.host_ok(&["nft", "list", "set", "inet", "stronghost", "rpf_ok"]);
    for k in 0..n {
        assert!(rpf.contains(&format!("\"eth{k}\" . \"eth{k}\"")), "eth{k}'s reverse-path entry missing after a run for eth1:\n{rpf}");
        assert_eq!(lab.curl_to_host("rtr", &addr(k)).as_deref(), Some(addr(k).as_str()), "eth{k}'s service after a run for eth1");
    }
    assert_wrong_interface_dropped(&lab, "after the run for eth1");
    let (ok, text) = check(&lab);
    assert!(ok, "check after the run for eth1:\n{text}");

    // Without nft (not installed, or failing): a table edited by hand cannot be merged back with
    // `nft -f`, so it is recreated over nfnetlink — by a run for one interface, with every
    // interface's members all the same.
    lab.host_ok(&["mv", "/usr/sbin/nft", "/usr/sbin/nft.away"]);
    lab.host_ok(&["/usr/sbin/nft.away", "delete", "element", "inet", "stronghost", "rpf_ok", "{ \"eth0\" . \"eth0\" }"]);
    lab.host_ok(&["/usr/sbin/nft.away", "flush", "chain", "inet", "stronghost", "egress"]);
    let out = lab.stronghost(&["apply", "eth1"]);
    assert!(out.status.success(), "apply eth1 without nft: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("recreating it over nfnetlink"), "{}", String::from_utf8_lossy(&out.stderr));
    lab.host_ok(&["mv", "/usr/sbin/nft.away", "/usr/sbin/nft"]);
    assert!(table_complete(&lab, n));
    let rpf = lab.host_ok(&["nft", "list", "set", "inet", "stronghost", "rpf_ok"]);
    for k in 0..n {
        assert!(rpf.contains(&format!("\"eth{k}\" . \"eth{k}\"")), "eth{k}'s reverse-path entry after the recreation:\n{rpf}");
        assert_eq!(lab.curl_to_host("rtr", &addr(k)).as_deref(), Some(addr(k).as_str()), "eth{k}'s service after the recreation");
    }
    let (ok, text) = check(&lab);
    assert!(ok, "check after the recreation without nft:\n{text}");
}

/// The MACs that answer an ARP request for `addr` on the LAN, asked from the router (iputils'
/// arping: "Unicast reply from IP [MAC]"; a missing arping fails the test, not passes it).
fn arp_answers(lab: &Lab, addr: &str) -> std::collections::BTreeSet<String> {
    let out = lab.in_ns("rtr", &["arping", "-c", "3", "-w", "3", "-I", "lan0", addr]);
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains("arping"), "arping did not run: {}", String::from_utf8_lossy(&out.stderr));
    text.lines().filter_map(|l| Some(l.split('[').nth(1)?.split(']').next()?.to_string())).collect()
}

/// Five addresses on five macvlans of one NIC, each by DHCP: the NIC itself has no address. Only
/// each child answers ARP for its address (the router's neighbour entries are the children's
/// MACs), a packet for a child's address sent to the NIC's MAC is dropped and counted on the NIC,
/// and `check` names the NIC when it is left unmanaged.
#[test]
fn macvlan_children_alone_answer_for_their_addresses() {
    let mut lab = Lab::builder(1).dhclient_hook().build();
    let nic_mac = "02:00:00:00:ff:ff";
    lab.host_ok(&["ip", "link", "set", "eth0", "down"]);
    lab.host_ok(&["ip", "link", "set", "eth0", "name", "nic0", "address", nic_mac]);
    lab.host_ok(&["ip", "link", "set", "nic0", "up"]);
    let n = 5;
    for k in 0..n {
        let e = format!("eth{k}");
        lab.host_ok(&["ip", "link", "add", &e, "link", "nic0", "address", &crate::lab::mac(k), "type", "macvlan", "mode", "bridge"]);
        lab.host_ok(&["ip", "link", "set", &e, "up"]);
    }
    lab.n = n;
    lab.write_dhcp_hosts(&Default::default());
    lab.reload_dhcp();
    lab.start_watcher();
    for k in 0..n {
        lab.start_dhclient(k);
    }
    for k in 0..n {
        lab.wait_applied(k, &addr(k));
    }
    // Claimed with its children, by the runs for them (hooks and watcher read one interface).
    wait_for(Duration::from_secs(5), "nic0 claimed", || lab.status_of("nic0").is_some());
    assert_eq!(lab.host_ok(&["sysctl", "-n", "net.ipv4.conf.nic0.arp_ignore"]).trim(), "1");
    lab.in_ns("rtr", &["ip", "neigh", "flush", "dev", "lan0"]);
    for k in 0..n {
        assert_eq!(arp_answers(&lab, &addr(k)), [crate::lab::mac(k)].into(), "who answers ARP for eth{k}'s address");
        assert_eq!(lab.curl_to_host("rtr", &addr(k)).as_deref(), Some(addr(k).as_str()), "eth{k}'s service");
        let neigh = String::from_utf8_lossy(&lab.in_ns("rtr", &["ip", "neigh", "show", &addr(k), "dev", "lan0"]).stdout).to_lowercase();
        assert!(neigh.contains(&crate::lab::mac(k)), "the router's entry for eth{k}'s address: {neigh}");
    }
    // A router that delivers a child's address to the NIC's MAC anyway: dropped, counted on nic0.
    let drops = |lab: &Lab| lab.status_of("nic0").unwrap()["wrong_interface_drops"].as_u64().unwrap();
    let before = drops(&lab);
    lab.in_ns("rtr", &["ip", "neigh", "replace", &addr(1), "lladdr", nic_mac, "dev", "lan0", "nud", "permanent"]);
    assert_eq!(lab.curl_to_host("rtr", &addr(1)), None, "eth1's address accepted on nic0");
    lab.in_ns("rtr", &["ip", "neigh", "del", &addr(1), "dev", "lan0"]);
    assert!(drops(&lab) > before, "the drop on nic0 was not counted");
    let (ok, text) = check(&lab);
    assert!(ok, "check with the children and nic0 managed:\n{text}");

    // The NIC left unmanaged (excluded): it answers ARP for every child again — and `check` says so.
    // (A running watcher keeps the configuration it started with: restarted, as after any edit.)
    lab.stop_child("watch");
    lab.write_host_file("/etc/stronghost/stronghost.conf", "exclude = lo nic0\n");
    lab.start_watcher();
    wait_for(Duration::from_secs(5), "nic0 released", || lab.status_of("nic0").is_none());
    assert_eq!(lab.host_ok(&["sysctl", "-n", "net.ipv4.conf.nic0.arp_ignore"]).trim(), "0", "restored on release");
    assert_eq!(arp_answers(&lab, &addr(2)), [crate::lab::mac(2), nic_mac.to_string()].into(), "the weak host, as the probe sees it");
    let (ok, text) = check(&lab);
    assert!(
        !ok && text.contains("nic0: the device under eth0 answers ARP"),
        "check with nic0 excluded:\n{text}\n{}",
        lab.host_ok(&["ip", "-d", "link", "show", "eth0"])
    );
}

/// A container bridge made after the leases (Docker started later), a container on it and a
/// port published from it (DNAT), as connections_lab's: only the kernel objects.
fn docker(lab: &mut Lab) {
    lab.add_container_bridge();
    lab.serve_echo("ctr", 80);
    lab.publish_container_port();
}

/// Other tools' marks around stronghost's, and stronghost's own field: connections from the
/// internet to a published port and to the host's own service on a NIC that does not hold main's
/// default are answered through that NIC while another table ORs packet-mark bits (kube-proxy's
/// 0x4000 and 0x8000, a QoS classifier's 0x100) and connection-mark bits (0x10) before and after
/// stronghost's chains — and those bits arrive untouched, with stronghost's value beside them in
/// its own field. Before any of that, with hooks alone: a container reaches the host's addresses
/// on a bridge made after the leases, before any `sync`. And `check` names a rule that writes
/// into stronghost's field.
#[test]
fn other_tools_marks_live_beside_stronghosts() {
    let n = 3;
    let mut lab = Lab::builder(n).dhclient_hook().build();
    for k in 0..n {
        lab.start_dhclient(k);
    }
    for k in 0..n {
        lab.wait_applied(k, &addr(k));
    }
    // Hooks only, no watcher, no sync: the bridge is new to stronghost. The connection arrived on
    // an unmanaged interface, so its replies follow main, through docker0.
    docker(&mut lab);
    for k in 0..n {
        let got = lab.curl_in("ctr", &format!("http://{}:8080/", addr(k)), &[]);
        assert_eq!(got, Some(("172.17.0.2".to_string(), addr(k))), "container to eth{k}'s address, hooks only");
    }
    lab.start_watcher();

    let main_default = lab.host_ok(&["ip", "-4", "route", "show", "default"]);
    let k = (0..n).find(|k| !main_default.contains(&format!("dev eth{k} "))).expect("a NIC without main's default");
    let mark = (lab.status_of(&format!("eth{k}")).unwrap()["table"].as_u64().unwrap() as u32 - 4100) << 24;
    lab.nft(&format!(
        "table inet othertool {{
           counter kept_forwarded {{}}
           counter kept_local {{}}
           counter ours {{}}
           counter ct_kept {{}}
           chain pre_first {{ type filter hook prerouting priority -400; policy accept;
             meta mark set meta mark or 0x4000
           }}
           chain pre_after {{ type filter hook prerouting priority -140; policy accept;
             ct mark set ct mark or 0x10
             meta mark set meta mark or 0x8000
           }}
           chain out_first {{ type route hook output priority -400; policy accept;
             meta mark set meta mark or 0x4000
           }}
           chain out_after {{ type route hook output priority -140; policy accept;
             meta mark set meta mark or 0x100
           }}
           chain post {{ type filter hook postrouting priority 300; policy accept;
             oifname \"eth{k}\" ct direction reply meta mark and 0x00ffffff == 0xc000 counter name kept_forwarded
             oifname \"eth{k}\" ct direction reply meta mark and 0x00ffffff == 0x4100 counter name kept_local
             oifname \"eth{k}\" ct direction reply meta mark and 0xff000000 == {mark:#x} counter name ours
             oifname \"eth{k}\" ct direction reply ct mark and 0xff == 0x10 counter name ct_kept
           }}
         }}\n"
    ));
    let counters = |lab: &Lab| lab.counters("inet", "othertool");
    // The container's reply is forwarded (the other tool's prerouting bits on it), the host's
    // own is sent (its output bits).
    for (port, server, kept, what) in
        [(8081, "172.17.0.2", "kept_forwarded", "published port"), (8080, addr(k).as_str(), "kept_local", "the host's own service")]
    {
        let before = counters(&lab);
        let got = lab.curl_in("inet", &format!("http://{}:{port}/", addr(k)), &[]);
        assert_eq!(got, Some((crate::lab::SERVER.to_string(), server.to_string())), "eth{k}: {what} with other tools' marks");
        let after = counters(&lab);
        for c in [kept, "ours", "ct_kept"] {
            assert!(after[c] > before[c], "eth{k}: {what}: counter {c} did not rise: {before:?} → {after:?}");
        }
    }
    let (ok, text) = check(&lab);
    assert!(ok, "check with other tools' marks beside stronghost's:\n{text}");

    // A tool that writes into stronghost's field: named by `check`.
    lab.nft("add rule inet othertool pre_after ct mark set ct mark or 0x7f000000\n");
    let (ok, text) = check(&lab);
    assert!(
        !ok && text.contains("nft table inet othertool, chain pre_after: sets 0x7f000000 in ct mark"),
        "check with a tool writing into stronghost's field:\n{text}"
    );
}

/// A KVM host as libvirt leaves it: eth0 enslaved to br0, br0 holding eth0's lease, a VM (a
/// namespace) on br0 with an address of the LAN, and br_netfilter handing bridged frames to the
/// inet hooks (bridge-nf-call-iptables=1). The VM reaches every address of the host like any host
/// on the LAN — eth1's, whose frames br0 only bridges through — and the wrong-interface check
/// still holds for what br0 itself receives.
#[test]
fn a_vm_on_a_bridge_reaches_every_host_address_with_br_netfilter() {
    let n = 3;
    let mut lab = Lab::builder(n).dhclient_hook().build();
    let br0 = format!("ip link add br0 address {} type bridge", crate::lab::mac(0)); // eth0's reservation
    for cmd in [
        "ip link set eth0 down",
        &br0,
        "ip link set eth0 master br0",
        "ip link set eth0 up",
        "ip link set br0 up",
        "sysctl -qw net.bridge.bridge-nf-call-iptables=1",
        "sysctl -qw net.bridge.bridge-nf-call-ip6tables=1",
    ] {
        lab.host_ok(&cmd.split(' ').collect::<Vec<_>>());
    }
    let vm = lab.add_ns("vm");
    let ip = |args: &[&str]| crate::lab::ok(std::process::Command::new("ip").args(args));
    ip(&["-n", &lab.ns("host"), "link", "add", "vnet0", "type", "veth", "peer", "name", "eth0", "netns", &vm]);
    lab.host_ok(&["ip", "link", "set", "vnet0", "master", "br0", "up"]);
    let vm_addr = "198.51.100.60";
    ip(&["-n", &vm, "addr", "add", &format!("{vm_addr}/24"), "dev", "eth0"]);
    ip(&["-n", &vm, "link", "set", "eth0", "up"]);
    ip(&["-n", &vm, "route", "add", "default", "via", crate::lab::GW]);
    let d = lab.dir.display().to_string();
    lab.spawn_in_host("dhclient-br0", &["dhclient", "-4", "-d", "-pf", &format!("{d}/br0.pid"), "-lf", &format!("{d}/br0.leases"), "br0"]);
    for k in 1..n {
        lab.start_dhclient(k);
    }
    wait_for(Duration::from_secs(30), "br0 strong", || {
        lab.status_of("br0").is_some_and(|s| s["applied"] == true && s["addresses"].to_string().contains(&addr(0)))
    });
    for k in 1..n {
        lab.wait_applied(k, &addr(k));
    }
    let drops = |lab: &Lab| lab.status_of("br0").unwrap()["wrong_interface_drops"].as_u64().unwrap();
    let reach = |lab: &Lab, k: usize| lab.curl_in("vm", &format!("http://{}:8080/", addr(k)), &[]);
    let before = drops(&lab);
    for k in 0..n {
        assert_eq!(reach(&lab, k), Some((vm_addr.to_string(), addr(k))), "the VM on br0 to eth{k}'s address (br0 for 0)");
    }
    assert_eq!(drops(&lab), before, "frames bridged through br0 counted as wrong-interface drops");
    // What br0 itself receives is still judged: eth1's address sent to br0's MAC.
    assert!(!lab.wrong_interface_probe(&addr(1), 0), "eth1's address accepted on br0");
    assert!(drops(&lab) > before, "the wrong-interface drop on br0 was not counted");
    let (ok, text) = check(&lab);
    assert!(ok, "check with a VM on br0 and br_netfilter:\n{text}");

    // The positive control: without stronghost's bridge table, br_netfilter's view wins and the
    // VM cannot reach eth1 — and `check` says the table is not as it should be.
    lab.host_ok(&["nft", "delete", "table", "bridge", "stronghost"]);
    assert_eq!(reach(&lab, 1), None, "without the bridge table, the VM's frames for eth1 are dropped on br0");
    let (ok, text) = check(&lab);
    assert!(!ok && text.contains("receive filter"), "check without the bridge table:\n{text}");
    lab.host_ok(&["/usr/sbin/stronghost", "sync"]);
    assert_eq!(reach(&lab, 1), Some((vm_addr.to_string(), addr(1))), "repaired by sync");
}
