//! The demo: the same five-interface host, first as plain Linux, then with stronghost's dhclient
//! hook and watcher installed; IPv4 from DHCP and IPv6 from router advertisements (SLAAC). Run it with `bash tests/demo.sh` (or `cargo test --test demo -- --ignored
//! --nocapture` as root). It only ever touches namespaces it creates and removes them at the end.

#[path = "labs/lab/mod.rs"]
mod lab;

use lab::{Lab, addr};
use std::time::Duration;

/// What breaks for ethK's IPv6 address `a` (by address, by name, the reply interface, the
/// wrong-interface probe), and what was seen.
fn failures6(lab: &Lab, k: usize, a: &str) -> (Vec<String>, String) {
    let e = format!("eth{k}");
    let (mut f, mut seen_all) = (Vec::new(), Vec::new());
    for bind in [a.to_string(), format!("eth{k}")] {
        lab.reset_counters();
        let seen = lab.curl6_from_host(&bind).unwrap_or_else(|| "nothing".into());
        let out = lab.nonzero("inet", "web_").join("+");
        if seen != a || out != e {
            f.push(format!("curl -6 --interface {bind}: server saw {seen}, packets left by {out}"));
        }
        seen_all.push(format!("curl -6 --interface {bind}: server saw {seen} via {out}"));
    }
    lab.reset_counters();
    let served = lab.curl_to_host("inet", a).unwrap_or_else(|| "nobody".into());
    let out = lab.nonzero("inet", "srv_").join("+");
    if served != a || out != e {
        f.push(format!("request to {a}: answered by {served}, reply left by {out}"));
    }
    seen_all.push(format!("{a} asked: {served} answered, reply via {out}"));
    let accepted = lab.wrong_interface_probe(a, (k + 1) % lab.n);
    if accepted {
        f.push(format!("{a} reached through another interface was accepted"));
    }
    seen_all.push(format!("wrong interface: {}", if accepted { "accepted" } else { "dropped" }));
    (f, seen_all.join("; "))
}

fn report(lab: &Lab, title: &str) -> usize {
    println!("\n== {title} ==");
    let mut broken = 0;
    for k in 0..lab.n {
        let a = addr(k);
        let outcome = lab.evaluate(k, &a);
        broken += show(k, &a, outcome.failures(k, &a), &outcome.evidence(&a));
        // The SLAAC address (EUI-64: the privacy extensions are off in a fresh namespace).
        if let Some(a6) = lab.global6(k).into_iter().next() {
            let (f, seen) = failures6(lab, k, &a6);
            broken += show(k, &a6, f, &seen);
        }
    }
    broken
}

fn show(k: usize, a: &str, f: Vec<String>, seen: &str) -> usize {
    if f.is_empty() {
        println!("  eth{k} {a}: PASS  {seen}");
        0
    } else {
        println!("  eth{k} {a}: FAIL");
        for x in f {
            println!("      - {x}");
        }
        1
    }
}

#[test]
#[ignore = "a demonstration, not a test: bash tests/demo.sh"]
fn demo() {
    let n = 5;
    println!("Lab: a host with eth0..eth4 on 198.51.100.0/24 and {}/64 behind one router (198.51.100.1, dnsmasq:", lab::PREFIX6);
    println!(
        "DHCP and router advertisements), an 'internet' server at {} and [{}] that echoes the source address it",
        lab::SERVER,
        lab::SERVER6
    );
    println!("sees; isc-dhcp-client on each interface, IPv6 addresses by SLAAC.");
    let mut lab = Lab::builder(n).ipv6().build();
    for k in 0..n {
        lab.start_dhclient(k);
    }
    lab.wait_addresses(&(0..n).map(addr).collect::<Vec<_>>());
    lab::wait_for(Duration::from_secs(20), "SLAAC addresses", || (0..n).all(|k| !lab.global6(k).is_empty()));
    let weak = report(&lab, "plain Linux: a weak host");

    println!("\n.. installing stronghost's dhclient exit hook, starting its watcher, restarting the DHCP clients");
    lab.install_hook();
    lab.spawn_in_host("watch", &["/usr/sbin/stronghost", "watch"]);
    for k in 0..n {
        lab.kill_dhclient(k);
        lab.start_dhclient(k);
    }
    for k in 0..n {
        lab.wait_applied(k, &addr(k));
    }
    lab::wait_for(Duration::from_secs(20), "IPv6 rules", || {
        (0..n).all(|k| {
            lab.status_of(&format!("eth{k}"))
                .is_some_and(|s| s["rules6"].as_array().is_some_and(|r| r.len() >= 2) && s["gateway6"].is_string())
        })
    });
    let strong = report(&lab, "with stronghost: a strong host");
    println!("\n== stronghost status ==");
    print!("{}", String::from_utf8_lossy(&lab.stronghost(&["status"]).stdout));
    println!("\n== stronghost check ==");
    print!("{}", String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout));
    let verdict = format!(
        "verdict: {} — plain Linux: {weak} of {} addresses break the strong-host requirements; with stronghost: {strong}.",
        if strong == 0 && weak > 0 { "PASS" } else { "FAIL" },
        2 * n
    );
    // tests/demo.sh prints it last, after cargo's own lines.
    let _ = std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/demo-verdict"), format!("{verdict}\n"));
    println!("\n{verdict}");
    assert_eq!(strong, 0);
}
