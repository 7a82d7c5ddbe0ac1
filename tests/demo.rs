//! The demo: the same five-interface host, first as plain Linux, then with stronghost's dhclient
//! hook installed. Run it with `bash tests/demo.sh` (or `cargo test --test demo -- --ignored
//! --nocapture` as root). It only ever touches namespaces it creates and removes them at the end.

mod lab;

use lab::{addr, Lab};

fn report(lab: &Lab, title: &str) -> usize {
    println!("\n== {title} ==");
    let mut broken = 0;
    for k in 0..lab.n {
        let a = addr(k);
        let f = lab.evaluate(k, &a).failures(k, &a);
        if f.is_empty() {
            println!("  eth{k} {a}: PASS  bound traffic leaves by eth{k} from {a}; replies leave by eth{k}; wrong-interface packets dropped; only eth{k} answers ARP");
        } else {
            broken += 1;
            println!("  eth{k} {a}: FAIL");
            for x in f {
                println!("      - {x}");
            }
        }
    }
    broken
}

#[test]
#[ignore = "a demonstration, not a test: bash tests/demo.sh"]
fn demo() {
    let n = 5;
    println!("Lab: a host with eth0..eth4 on 198.51.100.0/24 behind one gateway (198.51.100.1, dnsmasq),");
    println!("an 'internet' server at {} that echoes the source address it sees; isc-dhcp-client on each interface.", lab::SERVER);
    let mut lab = Lab::new(n, false);
    for k in 0..n {
        lab.start_dhclient(k);
    }
    lab.wait_addresses(&(0..n).map(addr).collect::<Vec<_>>());
    let weak = report(&lab, "plain Linux: a weak host");

    println!("\n.. installing stronghost's dhclient exit hook and restarting the DHCP clients");
    lab.install_hook();
    for k in 0..n {
        lab.kill_dhclient(k);
        lab.start_dhclient(k);
    }
    for k in 0..n {
        lab.wait_applied(k, &addr(k));
    }
    let strong = report(&lab, "with stronghost: a strong host");
    println!("\n== stronghost status ==");
    print!("{}", String::from_utf8_lossy(&lab.stronghost(&["status"]).stdout));
    println!("\n== stronghost check ==");
    print!("{}", String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout));
    println!("\nplain Linux: {weak} of {n} interfaces break the strong-host requirements; with stronghost: {strong}.");
    assert_eq!(strong, 0);
}
