//! A hostile DHCP server (dnsmasq forcing options) against real dhclient running stronghost's
//! hook: nothing is ever executed, invalid values are rejected with a log line naming the field,
//! what is valid is applied as documented, and dhclient keeps its lease every time.

mod lab;

use lab::{addr, wait_for, Lab};
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
        case("router is our own address", &[&format!("--dhcp-option-force=tag:if0,3,{}", addr(0))], Some("is the lease's own address"), None),
        case("router multicast", &["--dhcp-option-force=tag:if0,3,224.0.0.1"], Some("multicast"), None),
        case("router broadcast", &["--dhcp-option-force=tag:if0,3,255.255.255.255"], Some("broadcast"), None),
        case("router loopback, then a good one", &["--dhcp-option-force=tag:if0,3,127.0.0.1,198.51.100.1"], Some("loopback"), Some("198.51.100.1")),
        case("router off-subnet (kept, onlink)", &["--dhcp-option-force=tag:if0,3,203.0.113.1"], None, Some("203.0.113.1")),
        case("option 121 with a /0 only", &["--dhcp-option-force=tag:if0,121,0.0.0.0/0,198.51.100.1"], None, Some("198.51.100.1")),
        case("option 121 without a default: router ignored (RFC 3442)", &["--dhcp-option-force=tag:if0,121,192.0.2.0/24,198.51.100.1"], None, None),
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
    cases.push(Case { name: "option 121 with 30 routes", options: vec![format!("--dhcp-option-force=tag:if0,121,{},0.0.0.0/0,198.51.100.1", many.join(","))], logged: None, gateway: Some("198.51.100.1") });

    let total = cases.len();
    for c in cases {
        let opts: Vec<&str> = c.options.iter().map(String::as_str).collect();
        let mut lab = Lab::with_dhcp_options(1, true, &opts);
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
