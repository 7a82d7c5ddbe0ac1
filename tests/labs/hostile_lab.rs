//! A hostile DHCP server (dnsmasq forcing options) against real dhclient running stronghost's
//! hook: nothing is ever executed, invalid values are rejected with a log line naming the field,
//! what is valid is applied as documented, and dhclient keeps its lease every time.

use crate::lab;
use crate::lab::{Lab, addr, wait_for};
use std::time::Duration;

struct Case {
    name: &'static str,
    options: Vec<String>,
    /// A substring of stronghost's log that must appear (the field named), if any.
    logged: Option<&'static str>,
    /// The default route stronghost must install in eth0's table: Some(gw), or None (refused).
    gateway: Option<&'static str>,
}

fn case(name: &'static str, options: &[&str], logged: Option<&'static str>, gateway: Option<&'static str>) -> Case {
    Case { name, options: options.iter().map(|o| o.to_string()).collect(), logged, gateway }
}

#[test]
fn hostile_dhcp_options_change_nothing_they_should_not() {
    let canary = std::env::temp_dir().join(format!("stronghost-canary-{}", std::process::id()));
    let c = canary.display().to_string();
    let meta = [
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("x;touch {c}"),
        format!("x|touch {c}"),
        format!("x&&touch {c}"),
        format!("'\"$(touch {c})"),
    ];
    let mut cases = vec![
        // (A router of 0.0.0.0 cannot be sent this way: dnsmasq reads 0.0.0.0 as its own address.
        // The lease parser's unit tests cover it.)
        case(
            "router is our own address",
            &[&format!("--dhcp-option-force=tag:if0,3,{}", addr(0))],
            Some("is the lease's own address"),
            None,
        ),
        case("router multicast", &["--dhcp-option-force=tag:if0,3,224.0.0.1"], Some("multicast"), None),
        case("router broadcast", &["--dhcp-option-force=tag:if0,3,255.255.255.255"], Some("broadcast"), None),
        case(
            "router loopback, then a good one",
            &["--dhcp-option-force=tag:if0,3,127.0.0.1,198.51.100.1"],
            Some("loopback"),
            Some("198.51.100.1"),
        ),
        case("router off-subnet (kept, onlink)", &["--dhcp-option-force=tag:if0,3,203.0.113.1"], None, Some("203.0.113.1")),
        case("option 121 with a /0 only", &["--dhcp-option-force=tag:if0,121,0.0.0.0/0,198.51.100.1"], None, Some("198.51.100.1")),
        case(
            "option 121 without a default: router ignored (RFC 3442)",
            &["--dhcp-option-force=tag:if0,121,192.0.2.0/24,198.51.100.1"],
            None,
            None,
        ),
        case("tiny MTU", &["--dhcp-option-force=tag:if0,26,68"], None, Some("198.51.100.1")),
        case("huge MTU", &["--dhcp-option-force=tag:if0,26,65535"], None, Some("198.51.100.1")),
    ];
    for (i, m) in meta.iter().enumerate() {
        let tag = Box::leak(format!("shell metacharacters in text options #{i}").into_boxed_str());
        let opts: Vec<String> = [12, 15, 17, 40, 66, 67].iter().map(|o| format!("--dhcp-option-force=tag:if0,{o},{m}")).collect();
        cases.push(Case { name: tag, options: opts, logged: None, gateway: Some("198.51.100.1") });
    }
    // Many classless routes (as many as fit in a DHCP packet of the size dhclient accepts; more
    // than stronghost's limit of 64 cannot reach it this way, the parser's unit tests cover that).
    let many: Vec<String> = (1..=30).map(|i| format!("10.{i}.0.0/16,198.51.100.1")).collect();
    cases.push(Case {
        name: "option 121 with 30 routes",
        options: vec![format!("--dhcp-option-force=tag:if0,121,{},0.0.0.0/0,198.51.100.1", many.join(","))],
        logged: None,
        gateway: Some("198.51.100.1"),
    });

    let total = cases.len();
    for c in cases {
        let opts: Vec<&str> = c.options.iter().map(String::as_str).collect();
        let mut lab = Lab::builder(1).dhclient_hook().dhcp_options(&opts).build();
        lab.start_dhclient(0);
        wait_for(Duration::from_secs(20), &format!("{}: dhclient bound", c.name), || lab.dhclient_log(0).contains("bound to"));
        lab.wait_applied(0, &addr(0));
        let log = lab.dhclient_log(0);
        assert!(!canary.exists(), "{}: a command was executed", c.name);
        assert!(!log.contains("DHCPDECLINE"), "{}: the lease was declined:\n{log}", c.name);
        if let Some(l) = c.logged {
            assert!(log.contains(l), "{}: no log line with {l:?}:\n{log}", c.name);
        }
        let t = lab.status_of("eth0").unwrap()["table"].as_u64().unwrap().to_string();
        let table = lab.host_ok(&["ip", "route", "show", "table", &t]);
        match c.gateway {
            Some(g) => assert!(table.contains(&format!("default via {g} dev eth0")), "{}: {table}", c.name),
            None => assert!(!table.lines().any(|l| l.starts_with("default via")), "{}: {table}", c.name),
        }
        assert!(table.contains("unreachable default"), "{}: {table}", c.name);
        if c.name.contains("30 routes") {
            assert_eq!(table.lines().filter(|l| l.starts_with("10.")).count(), 30, "{table}");
        }
        assert!(lab.stronghost(&["check"]).status.success(), "{}: check failed", c.name);
    }
    println!("hostile DHCP: {total} cases, no command executed, every lease kept");
}

/// What dnsmasq cannot send, from a DHCP server of the test's own.
#[test]
fn raw_hostile_leases_are_contained() {
    let canary = std::env::temp_dir().join(format!("stronghost-canary-raw-{}", std::process::id()));
    let junk: Vec<u8> = (1u8..=255)
        .filter(|b| *b != b'\n')
        .chain(format!("\n$(touch {})\n`touch {}`", canary.display(), canary.display()).bytes())
        .collect();
    let many = |n: usize| -> Vec<u8> {
        (0..n).flat_map(|i| [24u8, 10, (i / 250) as u8 + 1, (i % 250) as u8, 198, 51, 100, 1]).chain([0, 198, 51, 100, 1]).collect()
    };
    let gw = vec![198, 51, 100, 1];
    // (what, options sent, the log line expected, the gateway expected in the kernel)
    type Case<'a> = (&'a str, Vec<(u8, Vec<u8>)>, Option<&'a str>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("router 0.0.0.0", vec![(3, vec![0, 0, 0, 0])], Some("new_routers: gateway 0.0.0.0 is unspecified"), None),
        (
            "option 121 with 70 routes over several instances",
            vec![(3, gw.clone()), (121, many(70))],
            Some("71 routes, more than the 64 accepted"),
            Some("198.51.100.1"),
        ),
        (
            "option 121 with 100 routes",
            vec![(3, gw.clone()), (121, many(100))],
            Some("101 routes, more than the 64 accepted"),
            Some("198.51.100.1"),
        ),
        (
            "newlines, metacharacters and binary junk in text options",
            vec![(3, gw.clone()), (12, junk.clone()), (15, junk.clone())],
            None,
            Some("198.51.100.1"),
        ),
        ("lease time 2^32-1", vec![(3, gw.clone()), (51, u32::MAX.to_be_bytes().to_vec())], None, Some("198.51.100.1")),
        // (A lease time of 0 never reaches stronghost: dhclient itself never binds such a lease.)
        (
            "non-contiguous netmask",
            vec![(3, gw.clone()), (1, vec![255, 0, 255, 0])],
            Some("new_subnet_mask: netmask 255.0.255.0 is not contiguous"),
            None,
        ),
    ];
    let total = cases.len();
    for (name, options, logged, gateway) in cases {
        let mut lab = Lab::builder(1).dhclient_hook().build();
        lab.stop_dhcp();
        lab.in_ns("rtr", &["ip", "route", "add", "255.255.255.255/32", "dev", "lan0"]);
        let _rogue = lab::rogue_dhcp::start(&lab.ns("rtr"), addr(0).parse().unwrap(), options);
        lab.start_dhclient(0);
        wait_for(Duration::from_secs(20), &format!("{name}: the hook ran"), || lab.dhclient_log(0).contains("stronghost:"));
        std::thread::sleep(Duration::from_millis(300));
        let log = lab.dhclient_log(0);
        assert!(!canary.exists(), "{name}: a command was executed");
        assert!(!log.contains("DHCPDECLINE"), "{name}: the lease was declined:\n{log}");
        if let Some(l) = logged {
            assert!(log.contains(l), "{name}: no log line with {l:?}:\n{log}");
        }
        match (gateway, lab.status_of("eth0")) {
            (Some(g), Some(st)) => {
                assert_eq!(st["gateway"], g, "{name}");
                assert!(lab.stronghost(&["check"]).status.success(), "{name}: check failed");
            }
            (Some(_), None) => panic!("{name}: not applied:\n{log}"),
            (None, Some(st)) => assert!(st["gateway"].is_null(), "{name}: {st}"),
            (None, None) => {
                // Rejected as a whole: nothing of stronghost's in the kernel.
                let rules = lab.host_ok(&["ip", "-N", "rule"]);
                assert!(!rules.contains("proto 83"), "{name}: applied although rejected:\n{rules}");
            }
        }
    }
    println!("hostile DHCP (raw server): {total} cases, no command executed, no lease declined");
}
