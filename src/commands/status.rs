//! `status`: what stronghost has in force, per interface, read from the kernel.

use crate::config::Config;
use crate::error::Error;
use crate::model::routing::Selector;
use crate::reconcile::Engine;
use crate::sysctl;
use serde_json::{Value, json};

pub fn collect(e: &mut Engine) -> Result<Value, Error> {
    let g = {
        let _lock = e.lock()?;
        e.gather(None)?
    };
    let k = &g.kernel;
    let nft = if e.cfg().receive_filter { g.filter.clone() } else { Ok(crate::model::table::Current::default()) };
    let mut ifaces = Vec::new();
    for (name, rec) in &g.records {
        let table = g.tables.get(name).copied();
        let link = k.link(name);
        let facts = link.map(|l| crate::plan::facts(e.cfg(), k, l));
        let addrs: Vec<String> = facts.iter().flat_map(|f| f.addresses.iter().map(|(a, l)| format!("{a}/{l}"))).collect();
        let addrs6: Vec<String> = facts.iter().flat_map(|f| f.addresses6.iter().map(|(a, l)| format!("{a}/{l}"))).collect();
        let rules = |v6: bool| -> Vec<String> {
            k.rules
                .iter()
                .filter(|r| {
                    r.item.v6 == v6 && r.protocol == e.cfg().protocol && Some(r.item.table) == table && r.item.selector != Selector::All
                })
                .map(|r| r.item.to_string())
                .collect()
        };
        let names = |i| k.name_of(i);
        let routes = |v6: bool| -> Vec<String> {
            k.routes
                .iter()
                .filter(|r| Some(r.table) == table && r.dst.is_v6() == v6)
                .map(|r| r.model(&names).map(|m| m.to_string()).unwrap_or_else(|| format!("{} (protocol {})", r.dst, r.protocol)))
                .collect()
        };
        // What is in force: the default route of the interface's table.
        let gateway = |v6: bool| {
            k.routes
                .iter()
                .find(|r| Some(r.table) == table && r.dst.is_default() && r.dst.is_v6() == v6 && r.gateway.is_some())
                .and_then(|r| r.gateway)
                .map(|g| g.to_string())
        };
        let sysctls: serde_json::Map<String, Value> = crate::plan::policy::sysctls_wanted(e.cfg())
            .iter()
            .map(|(knob, want)| {
                (
                    knob.to_string(),
                    json!({"wanted": want, "interface": sysctl::read(name, knob).ok(), "effective": sysctl::effective(name, knob).ok()}),
                )
            })
            .collect();
        let lease = link.and_then(|l| rec.lease.clone().or_else(|| g.stack_leases.get(&l.index).cloned()));
        let drops = match (&nft, table) {
            (Ok(c), Some(t)) => c.drops(t),
            _ => Default::default(),
        };
        ifaces.push(json!({
            "interface": name,
            "present": link.is_some(),
            "applied": rec.applied,
            "table": table,
            "link_group": link.map(|l| l.group),
            "addresses": addrs,
            "addresses6": addrs6,
            "gateway": gateway(false),
            "gateway6": gateway(true),
            "lease_source": lease.as_ref().map(|l| l.source.clone()),
            "gateway_source": rec.gateway_from,
            "classless_routes": lease.as_ref().map(|l| l.routes.len()).unwrap_or(0),
            "rules": rules(false),
            "routes": routes(false),
            "rules6": rules(true),
            "routes6": routes(true),
            "sysctls": sysctls,
            "wrong_interface_drops": drops.wrong_interface,
            "drops": {"wrong_interface": drops.wrong_interface, "reverse_path": drops.reverse_path, "foreign_source": drops.foreign_source},
        }));
    }
    Ok(json!({
        "interfaces": ifaces,
        "receive_filter": match &nft {
            Ok(c) => json!({"present": c.exists, "intact": c.rules_ok && c.members().is_some(), "members": c.managed}),
            Err(err) => json!({"error": err.to_string()}),
        },
    }))
}

/// The status as Prometheus metrics: per interface whether it is strong and whether each family
/// has a gateway, every drop counter by interface and reason, and whether the nftables table is
/// intact. Interface names are validated on the way in; labels are escaped all the same.
pub fn prometheus(v: &Value) -> String {
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        out += &format!("# HELP stronghost_{name} {help}\n# TYPE stronghost_{name} {kind}\n");
        for (labels, value) in samples {
            out += &format!("stronghost_{name}{labels} {value}\n");
        }
    };
    let list = v["interfaces"].as_array().cloned().unwrap_or_default();
    let name = |i: &Value| label(i["interface"].as_str().unwrap_or(""));
    metric(
        "interface_strong",
        "gauge",
        "1 when the interface has its strong-host policy in force, 0 when it is gone or has no address.",
        list.iter()
            .map(|i| {
                let strong = i["present"] == true && i["applied"] == true;
                (format!("{{interface=\"{}\",table=\"{}\"}}", name(i), i["table"]), if strong { 1.0 } else { 0.0 })
            })
            .collect(),
    );
    metric(
        "interface_gateway_known",
        "gauge",
        "1 when off-link traffic from the interface's addresses of that family has a gateway; 0: refused.",
        list.iter()
            .flat_map(|i| {
                [("ipv4", ""), ("ipv6", "6")]
                    .into_iter()
                    .filter(|(_, s)| i[format!("addresses{s}")].as_array().is_some_and(|a| !a.is_empty()))
                    .map(move |(family, s)| {
                        (
                            format!("{{interface=\"{}\",family=\"{family}\"}}", name(i)),
                            if i[format!("gateway{s}")].is_string() { 1.0 } else { 0.0 },
                        )
                    })
            })
            .collect(),
    );
    metric(
        "dropped_packets_total",
        "counter",
        "Packets the strong-host policy dropped on the interface, by reason (wrong_interface, reverse_path, foreign_source).",
        list.iter()
            .flat_map(|i| {
                ["wrong_interface", "reverse_path", "foreign_source"]
                    .into_iter()
                    .filter_map(move |r| Some((format!("{{interface=\"{}\",reason=\"{r}\"}}", name(i)), i["drops"][r].as_u64()? as f64)))
            })
            .collect(),
    );
    let f = &v["receive_filter"];
    if f.get("error").is_none() {
        metric(
            "receive_filter_intact",
            "gauge",
            "1 when nft table inet stronghost holds exactly the chains, rules and members stronghost wrote.",
            vec![(String::new(), if f["present"] == true && f["intact"] == true { 1.0 } else { 0.0 })],
        );
    }
    out
}

pub fn run(cfg: &Config, as_json: bool, as_prometheus: bool) -> i32 {
    let v = match super::reader(cfg).and_then(|mut e| collect(&mut e)) {
        Ok(v) => v,
        Err(err) => {
            log::error!("{err}");
            return 1;
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return 0;
    }
    if as_prometheus {
        print!("{}", prometheus(&v));
        return 0;
    }
    let list = v["interfaces"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no interface is managed yet (run `stronghost sync`, or wait for a DHCP lease)");
    }
    for i in list {
        let state = if !i["present"].as_bool().unwrap_or(false) {
            "gone"
        } else if i["applied"].as_bool().unwrap_or(false) {
            "strong"
        } else {
            "no address"
        };
        println!("{}: {state}, table {}", i["interface"].as_str().unwrap_or("?"), i["table"]);
        for (fam, sfx) in [("IPv4", ""), ("IPv6", "6")] {
            let addrs = &i[format!("addresses{sfx}")];
            if addrs.as_array().is_none_or(|a| a.is_empty()) {
                continue;
            }
            println!("  {fam} addresses: {}", join(addrs));
            let from = match (sfx, i["gateway_source"].as_str()) {
                ("", Some(f)) => format!(" (from {f})"),
                _ => String::new(),
            };
            println!("  {fam} gateway: {}{from}", i[format!("gateway{sfx}")].as_str().unwrap_or("none (off-link traffic refused)"));
            for r in i[format!("rules{sfx}")].as_array().into_iter().flatten() {
                println!("  rule  {}", r.as_str().unwrap_or(""));
            }
            for r in i[format!("routes{sfx}")].as_array().into_iter().flatten() {
                println!("  route {}", r.as_str().unwrap_or(""));
            }
        }
        let mut s = Vec::new();
        for (k, x) in i["sysctls"].as_object().into_iter().flatten() {
            s.push(format!("{k}={} (effective {})", x["interface"], x["effective"]));
        }
        println!("  sysctl {}", s.join(", "));
        println!(
            "  dropped: {} for another interface's address, {} failing the reverse path, {} leaving with another interface's source",
            i["drops"]["wrong_interface"], i["drops"]["reverse_path"], i["drops"]["foreign_source"]
        );
    }
    if let Some(err) = v["receive_filter"]["error"].as_str() {
        println!("receive filter: {err}");
    }
    0
}

fn join(v: &Value) -> String {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_metrics_name_interface_and_reason() {
        let v = json!({
            "interfaces": [
                {"interface": "eth1", "present": true, "applied": true, "table": 4102,
                 "addresses": ["198.51.100.11/24"], "gateway": "198.51.100.1", "addresses6": [], "gateway6": null,
                 "drops": {"wrong_interface": 2, "reverse_path": 5, "foreign_source": 7}},
                {"interface": "eth9", "present": false, "applied": false, "table": 4109,
                 "addresses": [], "addresses6": ["2001:db8::9/64"], "gateway6": null,
                 "drops": {"wrong_interface": null, "reverse_path": null}}
            ],
            "receive_filter": {"present": true, "intact": true, "members": ["eth1", "eth9"]}
        });
        let p = prometheus(&v);
        for line in [
            "stronghost_interface_strong{interface=\"eth1\",table=\"4102\"} 1",
            "stronghost_interface_strong{interface=\"eth9\",table=\"4109\"} 0",
            "stronghost_interface_gateway_known{interface=\"eth1\",family=\"ipv4\"} 1",
            "stronghost_interface_gateway_known{interface=\"eth9\",family=\"ipv6\"} 0",
            "stronghost_dropped_packets_total{interface=\"eth1\",reason=\"reverse_path\"} 5",
            "stronghost_dropped_packets_total{interface=\"eth1\",reason=\"foreign_source\"} 7",
            "# TYPE stronghost_dropped_packets_total counter",
            "stronghost_receive_filter_intact 1",
        ] {
            assert!(p.lines().any(|l| l == line), "{line} missing from\n{p}");
        }
        assert!(!p.contains("eth9\",reason"), "a counter that does not exist is not a zero");
    }
}
