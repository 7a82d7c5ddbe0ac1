//! `stronghost watch` alone: addresses and routes configured by hand (or by any stack without a
//! hook) are followed, kernel route flushes repaired, vanished interfaces released.

use crate::lab::{GW, Lab, addr, wait_for};
use std::time::{Duration, Instant};

fn rules(lab: &Lab) -> String {
    lab.host_ok(&["ip", "-4", "rule"])
}

/// Static configuration by hand, the watcher applying it: `a0` on eth0 and `a1` on eth1, and a
/// default route through each.
fn configure_by_hand(lab: &Lab, a0: &str, a1: &str) {
    lab.host_ok(&["ip", "addr", "add", &format!("{a0}/24"), "dev", "eth0"]);
    lab.host_ok(&["ip", "addr", "add", &format!("{a1}/24"), "dev", "eth1"]);
    lab.host_ok(&["ip", "route", "add", "default", "via", GW, "dev", "eth0"]);
    lab.host_ok(&["ip", "route", "add", "default", "via", GW, "dev", "eth1", "metric", "101"]);
    lab.wait_applied(0, a0);
    lab.wait_applied(1, a1);
}

#[test]
fn watcher_follows_hand_made_addresses_flushes_and_removals() {
    let mut lab = Lab::builder(3).build();
    lab.host_ok(&["ip", "rule", "add", "priority", "4115", "from", "192.0.2.77", "lookup", "100"]);
    lab.start_watcher();

    let (a0, a1) = ("198.51.100.40", "198.51.100.41");
    configure_by_hand(&lab, a0, a1);
    wait_for(Duration::from_secs(5), "eth1's gateway from main", || lab.status_of("eth1").unwrap()["gateway"] == GW);
    for (k, a) in [(0, a0), (1, a1)] {
        lab.reset_counters();
        assert_eq!(lab.curl_from_host(a).as_deref(), Some(a));
        assert_eq!(lab.nonzero("inet", "web_"), vec![format!("eth{k}")]);
    }

    // The kernel flushes routes (here by hand, as an address re-add by a network manager does):
    // the table is repaired.
    let t1 = lab.status_of("eth1").unwrap()["table"].as_u64().unwrap().to_string();
    lab.host_ok(&["ip", "route", "flush", "table", &t1]);
    wait_for(Duration::from_secs(5), "eth1's table repaired", || {
        lab.host_ok(&["ip", "route", "show", "table", &t1]).contains("default via")
    });
    assert_eq!(lab.curl_from_host(a1).as_deref(), Some(a1));

    // Latency from an address appearing to its rule being in the kernel, over 100 events.
    let mut samples = Vec::new();
    for i in 0..100 {
        let a = format!("198.51.100.{}", 100 + i);
        lab.host_ok(&["ip", "addr", "add", &format!("{a}/24"), "dev", "eth2"]);
        let t = Instant::now();
        let want = format!("from {a} lookup");
        while !rules(&lab).contains(&want) {
            assert!(t.elapsed() < Duration::from_secs(5), "no rule for {a} after 5 s: {}", lab.log("watch"));
        }
        samples.push(t.elapsed());
        lab.host_ok(&["ip", "addr", "del", &format!("{a}/24"), "dev", "eth2"]);
    }
    samples.sort();
    println!(
        "watcher: address added -> rule in place (as seen by polling `ip rule`): median {:?}, worst {:?} over {} events",
        samples[50],
        samples[99],
        samples.len()
    );
    wait_for(Duration::from_secs(5), "eth2 without rules", || !rules(&lab).contains("from 198.51.100.1"));

    // eth2's address has no gateway of its own: it borrows the best of main's default routes on
    // its network, which the watcher follows from notifications — including the removals the
    // kernel makes without one (a device going down takes its routes silently).
    let borrowed = |lab: &Lab, a: &str| {
        lab.host_ok(&["ip", "addr", "add", &format!("{a}/24"), "dev", "eth2"]);
        lab.wait_applied(2, a);
        let t2 = lab.status_of("eth2").unwrap()["table"].as_u64().unwrap().to_string();
        let table = lab.host_ok(&["ip", "route", "show", "table", &t2]);
        lab.host_ok(&["ip", "addr", "del", &format!("{a}/24"), "dev", "eth2"]);
        table.lines().find_map(|l| l.strip_prefix("default via ")?.split(' ').next().map(str::to_string)).unwrap_or_default()
    };
    let other_router = "198.51.100.254";
    lab.host_ok(&["ip", "route", "replace", "default", "via", other_router, "dev", "eth0"]);
    assert_eq!(borrowed(&lab, "198.51.100.50"), other_router, "the best default route's router");
    lab.host_ok(&["ip", "link", "set", "eth0", "down"]);
    assert_eq!(borrowed(&lab, "198.51.100.51"), GW, "eth0's route went with eth0: eth1's router");
    lab.host_ok(&["ip", "link", "set", "eth0", "up"]);
    lab.host_ok(&["ip", "route", "replace", "default", "via", GW, "dev", "eth0"]);
    assert_eq!(borrowed(&lab, "198.51.100.52"), GW);
    lab.wait_applied(0, a0);

    // An address removed by hand: its rule goes. An interface removed: everything of it goes.
    lab.host_ok(&["ip", "addr", "del", &format!("{a0}/24"), "dev", "eth0"]);
    wait_for(Duration::from_secs(5), "eth0's rule removed", || !rules(&lab).contains(&format!("from {a0} ")));
    let t1 = lab.status_of("eth1").unwrap()["table"].as_u64().unwrap().to_string();
    lab.host_ok(&["ip", "link", "del", "eth1"]);
    wait_for(Duration::from_secs(5), "eth1 released", || lab.status_of("eth1").is_none());
    let r = rules(&lab);
    assert!(!r.contains(&format!("lookup {t1}")), "{r}");
    assert!(r.contains("4115:\tfrom 192.0.2.77 lookup 100"), "foreign rule touched: {r}");
    assert!(!lab.log("watch").contains("error"), "{}", lab.log("watch"));

    // Another tool that deletes stronghost's rule each time it appears is not fought forever.
    let a2 = "198.51.100.42";
    lab.host_ok(&["ip", "addr", "add", &format!("{a2}/24"), "dev", "eth2"]);
    lab.wait_applied(2, a2);
    let t2 = lab.status_of("eth2").unwrap()["table"].as_u64().unwrap().to_string();
    let want = format!("from {a2} lookup {t2}");
    for _ in 0..20 {
        if lab.log("watch").contains("keeps removing") {
            break;
        }
        wait_for(Duration::from_secs(5), "the rule back", || rules(&lab).contains(&want));
        lab.host_ok(&["ip", "rule", "del", "from", a2, "lookup", &t2]);
    }
    assert!(lab.log("watch").contains("another tool keeps removing"), "{}", lab.log("watch"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!rules(&lab).contains(&want), "the watcher kept fighting");
}

/// The receive filter lets a packet for an interface's own address through with one lookup of
/// (address, interface) in `own4`, which follows the addresses: one moved by hand from eth0 to
/// eth1 is refused on eth0 and counted there, answered on eth1, and `check` is ok. A pair left
/// behind would let it through on eth0 — the weak host again.
#[test]
fn an_address_moved_by_hand_is_refused_on_the_interface_it_left() {
    let mut lab = Lab::builder(2).build();
    lab.start_watcher();
    let (a, a1) = ("198.51.100.40", "198.51.100.41");
    configure_by_hand(&lab, a, a1);
    let pairs = |lab: &Lab| lab.host_ok(&["nft", "list", "set", "inet", "stronghost", "own4"]);
    wait_for(Duration::from_secs(5), "both pairs", || pairs(&lab).contains(&format!("{a} . \"eth0\"")));
    assert!(pairs(&lab).contains(&format!("{a1} . \"eth1\"")), "{}", pairs(&lab));
    assert!(lab.wrong_interface_probe(a, 0), "eth0's address on eth0");
    assert!(!lab.wrong_interface_probe(a1, 0), "eth1's address on eth0");

    lab.host_ok(&["ip", "addr", "del", &format!("{a}/24"), "dev", "eth0"]);
    lab.host_ok(&["ip", "addr", "add", &format!("{a}/24"), "dev", "eth1"]);
    wait_for(Duration::from_secs(5), "the pair moved to eth1", || {
        let p = pairs(&lab);
        p.contains(&format!("{a} . \"eth1\"")) && !p.contains(&format!("{a} . \"eth0\""))
    });
    let before = lab.drops("eth0");
    assert!(!lab.wrong_interface_probe(a, 0), "the moved address was answered on the interface it left");
    assert!(lab.drops("eth0") > before, "the drop was not counted on eth0");
    assert!(lab.wrong_interface_probe(a, 1), "the moved address on its new interface");
    let check = lab.stronghost(&["check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));

    // A pair left behind (written by hand here, as a failed write would leave it), no watcher:
    // packets for the address get past the receive check on eth0 (a TCP reply would still be
    // dropped as leaving eth0 from a foreign source; a datagram would be delivered), and `check`
    // says so. The watcher, started again, takes it away.
    lab.kill_child("watch");
    lab.host_ok(&["nft", "add", "element", "inet", "stronghost", "own4", &format!("{{ {a} . \"eth0\" }}")]);
    let check = lab.stronghost(&["check"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success() && text.contains("pass unchecked"), "{text}");
    assert!(text.contains(&format!("{a} on eth0 (index ")), "the stale pair not named by its interface: {text}");
    lab.start_watcher();
    wait_for(Duration::from_secs(5), "the stale pair gone", || !pairs(&lab).contains(&format!("{a} . \"eth0\"")));
    assert!(!lab.wrong_interface_probe(a, 0), "refused again");

    // eth1 deleted: its pairs go with it (found under the index on record).
    lab.host_ok(&["ip", "link", "del", "eth1"]);
    wait_for(Duration::from_secs(5), "eth1 released", || lab.status_of("eth1").is_none());
    let listed = |lab: &Lab| String::from_utf8_lossy(&lab.host(&["nft", "list", "set", "inet", "stronghost", "own4"]).stdout).into_owned();
    wait_for(Duration::from_secs(5), "eth1's pairs gone", || !listed(&lab).contains("198.51.100."));
    let check = lab.stronghost(&["check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}

/// A DHCP client adds the address first and its default route (and hook) after: the watcher, which
/// sees the address first, does not call the gateway missing in between. An address whose
/// gateway stays unknown is warned about, once, after a grace of some seconds.
#[test]
fn watcher_warns_of_a_missing_gateway_only_when_it_stays_missing() {
    let mut lab = Lab::builder(2).build();
    lab.start_watcher();
    let started = Instant::now();
    // As dhclient-script on a slow host: the address, a second of nothing, the default route.
    lab.host_ok(&["ip", "addr", "add", "198.51.100.40/24", "dev", "eth0"]);
    lab.wait_applied(0, "198.51.100.40");
    // Hand-made, on a network no gateway is known for.
    lab.host_ok(&["ip", "addr", "add", "192.0.2.21/24", "dev", "eth1"]);
    lab.wait_applied(1, "192.0.2.21");
    std::thread::sleep(Duration::from_secs(1));
    lab.host_ok(&["ip", "route", "add", "default", "via", GW, "dev", "eth0"]);
    wait_for(Duration::from_secs(5), "eth0's gateway from main", || lab.status_of("eth0").unwrap()["gateway"] == GW);
    assert!(!lab.log("watch").contains("no gateway known"), "warned before the grace was over:\n{}", lab.log("watch"));

    wait_for(Duration::from_secs(20), "the warning for eth1", || lab.log("watch").contains("eth1: no gateway known"));
    println!("watcher: a missing gateway warned about {:?} after the address appeared", started.elapsed());
    let log = lab.log("watch");
    assert_eq!(log.matches("eth1: no gateway known").count(), 1, "{log}");
    assert!(!log.contains("eth0: no gateway known"), "{log}");
    let check = lab.stronghost(&["check"]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("warning: eth1: no gateway known"));
}

/// With the watcher running, a hook hands its event to it (handoff.rs) and returns with the
/// policy in force; with no watcher to answer — one killed outright, its socket left behind — the
/// hook does the work itself, at once; a watcher started again takes the socket back.
#[test]
fn hooks_hand_their_events_to_the_watcher_and_do_without_it() {
    let mut lab = Lab::builder(2).dhclient_hook().build();
    lab.start_watcher();
    lab.start_dhclient(0);
    lab.wait_applied(0, &addr(0));
    wait_for(Duration::from_secs(10), "eth0's hook to hand its event over", || lab.dhclient_log(0).contains("applied by the watcher"));
    assert!(lab.log("watch").contains("queued event(s) applied (eth0)"), "{}", lab.log("watch"));

    // Killed: no chance to remove its socket.
    lab.kill_child("watch");
    lab.host_ok(&["test", "-S", "/run/stronghost/watch.sock"]);
    let check = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(check.contains("warning: stronghost watch is not running: its socket was left by one that died"), "{check}");
    lab.start_dhclient(1);
    lab.wait_applied(1, &addr(1));
    wait_for(Duration::from_secs(10), "eth1's hook to finish", || lab.dhclient_log(1).contains("change(s)"));
    let log = lab.dhclient_log(1);
    assert!(!log.contains("applied by the watcher") && !log.contains("ERROR"), "{log}");
    lab.assert_strong(0, &addr(0));
    lab.assert_strong(1, &addr(1));

    // Back: the stale socket is replaced, and a hook's event (a renewal with a new router, run
    // as dhclient-script runs it) is the watcher's again — in force when the hook returns.
    lab.start_watcher();
    let check = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(check.starts_with("ok: 2 interface(s)") && !check.contains("warning"), "{check}");
    let hook = |lab: &Lab, router: &str| {
        let env = [
            "reason=RENEW".to_string(),
            "interface=eth0".into(),
            format!("new_ip_address={}", addr(0)),
            "new_subnet_mask=255.255.255.0".into(),
            format!("new_routers={router}"),
            "STRONGHOST_LOG_STDERR=1".into(),
        ];
        let args: Vec<&str> =
            ["env"].into_iter().chain(env.iter().map(String::as_str)).chain(["/usr/sbin/stronghost", "hook", "dhclient"]).collect();
        String::from_utf8_lossy(&lab.host(&args).stderr).into_owned()
    };
    let table = lab.status_of("eth0").unwrap()["table"].as_u64().unwrap().to_string();
    let out = hook(&lab, "198.51.100.2");
    assert!(out.contains("applied by the watcher"), "{out}");
    assert!(lab.host_ok(&["ip", "route", "show", "table", &table]).contains("default via 198.51.100.2 "), "{out}");
    let out = hook(&lab, GW);
    assert!(out.contains("applied by the watcher"), "{out}");
    assert!(lab.host_ok(&["ip", "route", "show", "table", &table]).contains(&format!("default via {GW} ")), "{out}");
    lab.assert_strong(0, &addr(0));

    // The lock held for longer than a hook waits (by `flock`, standing in for a run that is slow
    // and, unlike a stronghost run, will not drain the queue): the hook says its event is queued,
    // not applied, and returns without failing the lease; once the lock is free the watcher
    // applies the queue by itself.
    lab.spawn_in_host("holder", &["flock", "/run/stronghost/lock", "sleep", "13"]);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let out = hook(&lab, "198.51.100.2");
    assert!(out.contains("not applied yet") && out.contains("the event is queued") && !out.contains("ERROR"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(12), "the hook waited {:?}", t.elapsed());
    assert!(lab.host_ok(&["ip", "route", "show", "table", &table]).contains(&format!("default via {GW} ")), "applied early?");
    wait_for(Duration::from_secs(10), "the queued renewal to be applied once the lock is free", || {
        lab.host_ok(&["ip", "route", "show", "table", &table]).contains("default via 198.51.100.2 ")
    });
    lab.host_ok(&["sh", "-c", "test -z \"$(ls -A /run/stronghost/queue)\""]);

    // A watcher that stops answering (stopped here; stuck, in the field) while the lock is held
    // too: `check` says so, and a hook waits for the watcher, then for the lock, within its
    // `timeout 20`, and leaves its event queued; the watcher, going again, applies it.
    use nix::sys::signal::Signal;
    lab.signal_child("watch", Signal::SIGSTOP);
    let check = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(check.contains("stronghost watch did not answer within 5 s"), "{check}");
    lab.spawn_in_host("holder", &["flock", "/run/stronghost/lock", "sleep", "22"]);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let out = hook(&lab, GW);
    let took = t.elapsed();
    assert!(out.contains("not applied yet") && !out.contains("ERROR"), "{out}");
    assert!((Duration::from_secs(17)..Duration::from_millis(19_500)).contains(&took), "the hook took {took:?}: {out}");
    lab.signal_child("watch", Signal::SIGCONT);
    wait_for(Duration::from_secs(10), "the watcher to apply the queued renewal once the lock is free", || {
        lab.host_ok(&["ip", "route", "show", "table", &table]).contains(&format!("default via {GW} "))
    });
    let check = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(check.starts_with("ok: 2 interface(s)") && !check.contains("warning"), "{check}");

    // Stopped as systemd stops it: it exits cleanly and takes its socket with it, so `check` has
    // nothing to warn of (the hooks do without it).
    assert!(lab.stop_child("watch").is_some_and(|s| s.success()), "{}", lab.log("watch"));
    assert!(!lab.host(&["test", "-e", "/run/stronghost/watch.sock"]).status.success());
    let check = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(check.starts_with("ok: 2 interface(s)") && !check.contains("warning"), "{check}");

    // A renewal left in the queue with nobody to apply it (a hook kept from the lock, no watcher):
    // `check` does not call the host ok, and `sync` applies it — its new router is in force.
    let entry = format!(
        r#"{{"ifname":"eth0","gone":false,"lease":{{"address":"{}","prefix_len":24,"gateway":"198.51.100.2","routes":[],"source":"dhclient"}}}}"#,
        addr(0)
    );
    lab.write_host_file("/run/stronghost/queue/01600000000000000000-1-eth0", &entry);
    let check = lab.stronghost(&["check"]);
    let text = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(!check.status.success() && text.contains("DHCP event(s) for eth0 queued more than 30 s ago and never applied"), "{text}");
    lab.stronghost(&["sync"]);
    assert!(
        lab.host_ok(&["ip", "route", "show", "table", &table]).contains("default via 198.51.100.2 "),
        "the queued renewal was not applied"
    );
    let check = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(check.starts_with("ok: 2 interface(s)"), "{check}");
}
