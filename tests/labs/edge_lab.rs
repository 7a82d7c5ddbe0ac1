//! The cases around the main path: classless static routes, an interface without a gateway, a
//! container bridge on the host, hostile hook input, and `check`/`plan` on a damaged policy.

use crate::lab;
use crate::lab::{Lab, addr};
use std::process::Command;

fn setup() -> Lab {
    // eth1: option 121 with a route and a default; eth2: no router at all.
    let mut lab = Lab::builder(3)
        .dhclient_hook()
        .dhcp_options(&["--dhcp-option=tag:if1,121,192.0.2.0/24,198.51.100.1,0.0.0.0/0,198.51.100.1", "--dhcp-option=tag:if2,3"])
        .build();
    for k in 0..3 {
        lab.start_dhclient(k);
    }
    for k in 0..3 {
        lab.wait_applied(k, &addr(k));
    }
    lab
}

/// `ip route get` in the host: (device, source) or the kernel's refusal.
fn route_get(lab: &Lab, args: &[&str]) -> Result<String, String> {
    let mut a = vec!["ip", "-4", "-o", "route", "get"];
    a.extend_from_slice(args);
    let out = lab.host(&a);
    if out.status.success() {
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let dev = s.split_whitespace().skip_while(|w| *w != "dev").nth(1).unwrap_or("").to_string();
        Ok(dev)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[test]
fn classless_routes_no_gateway_containers_and_damage() {
    let lab = setup();

    // Option 121: its route and its default are in eth1's table (router option ignored).
    let t1 = lab.status_of("eth1").unwrap()["table"].as_u64().unwrap();
    let table = lab.host_ok(&["ip", "route", "show", "table", &t1.to_string()]);
    assert!(table.contains("192.0.2.0/24 via 198.51.100.1 dev eth1"), "{table}");
    assert!(table.contains("default via 198.51.100.1 dev eth1"), "{table}");
    // Debian's rfc3442 hook also put the route in main, through eth1. Traffic from eth0's
    // address must still not take it; unbound traffic keeps main's choice.
    let main = lab.host_ok(&["ip", "-4", "route", "show", "table", "main"]);
    assert!(main.contains("192.0.2.0/24 via 198.51.100.1 dev eth1"), "lab premise: main has the classless route via eth1\n{main}");
    assert_eq!(
        route_get(&lab, &["192.0.2.5", "from", &addr(0)]),
        Ok("eth0".into()),
        "eth0's traffic leaked to eth1 via a main-table route"
    );
    assert_eq!(route_get(&lab, &["192.0.2.5"]), Ok("eth1".into()), "unbound traffic must keep main's choice");

    // eth2 has no gateway: its off-link traffic is refused, and nothing leaves by any interface.
    lab.reset_counters();
    assert_eq!(lab.curl_from_host(&addr(2)), None);
    assert_eq!(lab.nonzero("inet", "web_"), Vec::<String>::new(), "traffic of a gateway-less interface leaked");
    assert!(route_get(&lab, &["203.0.113.10", "from", &addr(2)]).is_err());
    assert_eq!(lab.status_of("eth2").unwrap()["gateway"], serde_json::Value::Null);
    // ... while its on-link traffic and the others still work.
    assert_eq!(route_get(&lab, &["198.51.100.1", "from", &addr(2)]), Ok("eth2".into()));
    assert_eq!(lab.curl_from_host(&addr(0)).as_deref(), Some(addr(0).as_str()));

    // A container bridge (unmanaged by default) with a container: it reaches the host's service
    // on a managed address, and the reply takes docker0, not eth1's default route.
    let ctr = lab.ns("ctr");
    let ip = |args: &[&str]| lab::ok(Command::new("ip").args(args));
    ip(&["netns", "add", &ctr]);
    let _guard = NsGuard(ctr.clone());
    lab.host_ok(&["ip", "link", "add", "docker0", "type", "bridge"]);
    lab.host_ok(&["ip", "addr", "add", "172.17.0.1/16", "dev", "docker0"]);
    lab.host_ok(&["ip", "link", "set", "docker0", "up"]);
    // (The host's mount namespace has its own /run, so name the container from outside.)
    ip(&["-n", &lab.ns("host"), "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", &ctr]);
    lab.host_ok(&["ip", "link", "set", "veth0", "master", "docker0", "up"]);
    ip(&["-n", &ctr, "addr", "add", "172.17.0.2/16", "dev", "eth0"]);
    ip(&["-n", &ctr, "link", "set", "eth0", "up"]);
    ip(&["-n", &ctr, "route", "add", "default", "via", "172.17.0.1"]);
    // Hooks alone do not see a network appear later (the watcher does): `check` says what is
    // missing and what to run.
    let said = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(said.contains("to 172.17.0.0/16 (directly connected through docker0)") && said.contains("stronghost sync"), "{said}");
    lab.host_ok(&["/usr/sbin/stronghost", "sync"]);
    assert_eq!(lab.curl_to_host("ctr", &addr(1)).as_deref(), Some(addr(1).as_str()), "container to host address");
    assert_eq!(route_get(&lab, &["172.17.0.2", "from", &addr(1)]), Ok("docker0".into()));
    assert!(lab.stronghost(&["check"]).status.success());

    // Hostile hook input: rejected with the field named, nothing run, nothing changed, exit 0.
    let canary = lab.dir.join("canary");
    let before = lab.routing_dump();
    for (field, value) in [
        ("new_ip_address", format!("198.51.100.10;touch {}", canary.display())),
        ("new_ip_address", "224.0.0.9".to_string()),
        ("new_subnet_mask", "255.0.255.0".to_string()),
        ("interface", format!("eth0$(touch {})", canary.display())),
    ] {
        let mut env = vec![
            ("reason", "BOUND".to_string()),
            ("interface", "eth0".to_string()),
            ("new_ip_address", addr(0)),
            ("new_subnet_mask", "255.255.255.0".to_string()),
            ("new_routers", lab::GW.to_string()),
        ];
        env.retain(|(k, _)| *k != field);
        env.push((field, value.clone()));
        let mut c = lab.host_cmd(&["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "STRONGHOST_LOG_STDERR=1"]);
        for (k, v) in &env {
            c.arg(format!("{k}={v}"));
        }
        c.args(["sh", "-c", ". /etc/dhcp/dhclient-exit-hooks.d/stronghost; echo hook-returned-$?"]);
        let out = lab::run(&mut c);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && stdout.contains("hook-returned-0"), "{field}={value:?}: hook failed: {stdout}{stderr}");
        assert!(stderr.contains(field) && stderr.contains("rejected"), "{field}={value:?}: log does not name the field: {stderr}");
        assert!(!canary.exists(), "{field}={value:?}: a command was executed");
    }
    // A malformed option 121 is ignored with a warning naming it; the router option applies.
    let out = lab::run(&mut lab.host_cmd(&[
        "env",
        "-i",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "STRONGHOST_LOG_STDERR=1",
        "reason=RENEW",
        "interface=eth0",
        &format!("new_ip_address={}", addr(0)),
        "new_subnet_mask=255.255.255.0",
        "new_routers=198.51.100.1",
        "new_rfc3442_classless_static_routes=33 1 2 3 4 5 6 7 8",
        "/usr/sbin/stronghost",
        "hook",
        "dhclient",
    ]));
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("new_rfc3442_classless_static_routes ignored"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lab.routing_dump(), before, "rejected or equivalent input changed the routing policy");

    // Damage: an admin deletes eth0's `from` rule. `check` reports the leak, `plan` shows the
    // repair without making it, `apply` makes exactly that repair.
    let t0 = lab.status_of("eth0").unwrap()["table"].as_u64().unwrap();
    lab.host_ok(&["ip", "rule", "del", "from", &addr(0), "lookup", &t0.to_string()]);
    let check = lab.stronghost(&["check"]);
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success() && said.contains(&format!("from {}", addr(0))), "check missed the damage: {said}");
    let plan = lab.host_ok(&["/usr/sbin/stronghost", "plan", "eth0"]);
    assert_eq!(plan.trim(), format!("ip rule add priority 4620 from {} lookup {t0} protocol 83", addr(0)), "{plan}");
    assert!(!lab.stronghost(&["check"]).status.success(), "plan changed something");
    let v = lab.stronghost_json(&["apply", "eth0", "--json"]);
    assert_eq!(v["writes"]["netlink"], 1, "{v}");
    assert!(lab.stronghost(&["check"]).status.success());
    assert_eq!(lab.host_ok(&["/usr/sbin/stronghost", "plan"]).trim(), "# nothing to change");

    // `all` overriding an interface value is reported with its cause; the kernel's loose
    // reverse-path check is harmless, its strict one is not (it drops published ports, uncounted).
    lab.host_ok(&["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=2"]);
    let said = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(said.contains("arp_ignore is effectively 2") && said.contains("net.ipv4.conf.all.arp_ignore=2"), "{said}");
    lab.host_ok(&["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=0"]);
    lab.host_ok(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"]);
    assert!(lab.stronghost(&["check"]).status.success());
    lab.host_ok(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"]);
    let said = String::from_utf8_lossy(&lab.stronghost(&["check"]).stdout).into_owned();
    assert!(said.contains("strict reverse-path check is on") && said.contains("net.ipv4.conf.all.rp_filter=1"), "{said}");
    lab.host_ok(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
}

struct NsGuard(String);
impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
