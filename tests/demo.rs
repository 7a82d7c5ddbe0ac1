//! The demo: the same five-interface host, first as plain Linux, then with stronghost's dhclient
//! hook and watcher installed; IPv4 from DHCP and IPv6 from router advertisements (SLAAC). Run it with `bash tests/demo.sh` (or `cargo test --test demo -- --ignored
//! --nocapture` as root). It only ever touches namespaces it creates and removes them at the end.

#[path = "labs/lab/mod.rs"]
mod lab;

use lab::{Lab, addr};
use std::time::Duration;

/// What breaks for ethK's IPv6 address `a`: by address, by name, the reply interface, the
/// wrong-interface probe.
fn failures6(lab: &Lab, k: usize, a: &str) -> Vec<String> {
    let e = vec![format!("eth{k}")];
    let mut f = Vec::new();
    for bind in [a.to_string(), format!("eth{k}")] {
        lab.reset_counters();
        let seen = lab.curl6_from_host(&bind);
        let out = lab.nonzero("inet", "web_");
        if seen.as_deref() != Some(a) || out != e {
            f.push(format!(
                "curl -6 --interface {bind}: server saw {}, packets left by {}",
                seen.as_deref().unwrap_or("nothing (failed)"),
                out.join("+")
            ));
        }
    }
    lab.reset_counters();
    let served = lab.curl_to_host("inet", a);
    let out = lab.nonzero("inet", "srv_");
    if served.as_deref() != Some(a) || out != e {
        f.push(format!("request to {a}: answered by {}, reply left by {}", served.as_deref().unwrap_or("nobody"), out.join("+")));
    }
    if lab.wrong_interface_probe(a, (k + 1) % lab.n) {
        f.push(format!("{a} reached through another interface was accepted"));
    }
    f
}

fn report(lab: &Lab, title: &str) -> usize {
    println!("\n== {title} ==");
    let mut broken = 0;
    for k in 0..lab.n {
        let a = addr(k);
        let f = lab.evaluate(k, &a).failures(k, &a);
        broken += show(
            k,
            &a,
            f,
            "bound traffic leaves by eth{k} from {a}; replies leave by eth{k}; wrong-interface packets dropped; only eth{k} answers ARP",
        );
        // The SLAAC address (EUI-64: the privacy extensions are off in a fresh namespace).
        if let Some(a6) = lab.global6(k).into_iter().next() {
            let f = failures6(lab, k, &a6);
            broken += show(k, &a6, f, "bound traffic leaves by eth{k} from {a}; replies leave by eth{k}; wrong-interface packets dropped");
        }
    }
    broken
}

fn show(k: usize, a: &str, f: Vec<String>, pass: &str) -> usize {
    if f.is_empty() {
        println!("  eth{k} {a}: PASS  {}", pass.replace("{k}", &k.to_string()).replace("{a}", a));
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
    println!("\nplain Linux: {weak} of {} addresses break the strong-host requirements; with stronghost: {strong}.", 2 * n);
    assert_eq!(strong, 0);
}
