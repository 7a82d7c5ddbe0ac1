//! `status`: what stronghost has in force, per interface, read from the kernel.

use super::engine;
use crate::config::Config;
use crate::error::Error;
use crate::filter;
use crate::policy::Selector;
use crate::reconcile::Engine;
use crate::sysctl;
use serde_json::{Value, json};

pub fn collect(e: &mut Engine) -> Result<Value, Error> {
    let g = {
        let _lock = e.lock()?;
        e.gather(None)?
    };
    let k = &g.kernel;
    let nft = if e.cfg.receive_filter { g.filter.clone() } else { Ok(filter::Current::default()) };
    let mut ifaces = Vec::new();
    for (name, rec) in &g.records {
        let table = g.tables.get(name).copied();
        let link = k.link(name);
        let facts = link.map(|l| crate::plan::facts(&e.cfg, k, l));
        let addrs: Vec<String> = facts.iter().flat_map(|f| f.addresses.iter().map(|(a, l)| format!("{a}/{l}"))).collect();
        let addrs6: Vec<String> = facts.iter().flat_map(|f| f.addresses6.iter().map(|(a, l)| format!("{a}/{l}"))).collect();
        let rules = |v6: bool| -> Vec<String> {
            k.rules
                .iter()
                .filter(|r| {
                    r.item.v6 == v6 && r.protocol == e.cfg.protocol && Some(r.item.table) == table && r.item.selector != Selector::All
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
        let sysctls: serde_json::Map<String, Value> = sysctl::wanted(&e.cfg)
            .iter()
            .map(|(knob, want)| {
                (
                    knob.to_string(),
                    json!({"wanted": want, "interface": sysctl::read(name, knob).ok(), "effective": sysctl::effective(name, knob).ok()}),
                )
            })
            .collect();
        let lease = link.and_then(|l| rec.lease.clone().or_else(|| g.stack_leases.get(&l.index).cloned()));
        let (wrong, rpf) = match (&nft, table) {
            (Ok(c), Some(t)) => c.drops(t),
            _ => (None, None),
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
            "lease_source": lease.as_ref().map(|l| l.source.clone()).unwrap_or_else(|| "main table".into()),
            "classless_routes": lease.as_ref().map(|l| l.routes.len()).unwrap_or(0),
            "rules": rules(false),
            "routes": routes(false),
            "rules6": rules(true),
            "routes6": routes(true),
            "sysctls": sysctls,
            "wrong_interface_drops": wrong,
            "drops": {"wrong_interface": wrong, "reverse_path": rpf},
        }));
    }
    Ok(json!({
        "interfaces": ifaces,
        "receive_filter": match &nft {
            Ok(c) => json!({"present": c.exists, "intact": c.rules_ok && c.members().is_some(), "members": c.managed}),
            Err(err) => json!({"error": err}),
        },
    }))
}

pub fn run(cfg: &Config, as_json: bool) -> i32 {
    let v = match engine(cfg).and_then(|mut e| collect(&mut e)) {
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
            println!("  {fam} gateway: {}", i[format!("gateway{sfx}")].as_str().unwrap_or("none (off-link traffic refused)"));
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
            "  dropped: {} for another interface's address, {} failing the reverse path",
            i["drops"]["wrong_interface"], i["drops"]["reverse_path"]
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
