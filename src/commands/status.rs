//! `status`: what stronghost has in force, per interface, read from the kernel.

use super::{engine, LOCK_WAIT};
use crate::config::Config;
use crate::engine::{Engine, Kernel};
use crate::filter;
use crate::policy::Selector;
use crate::sysctl;
use serde_json::{json, Value};

pub fn collect(e: &mut Engine) -> Result<Value, String> {
    let _lock = e.lock(LOCK_WAIT)?;
    let k: Kernel = e.kernel()?;
    let nft = if e.cfg.receive_filter { filter::read() } else { Ok(filter::Current::default()) };
    let mut ifaces = Vec::new();
    for (name, rec) in &e.records {
        let table = e.tables.get(name).copied();
        let link = k.link(name);
        let addrs: Vec<String> = link
            .map(|l| k.addrs.iter().filter(|a| a.index == l.index).map(|a| format!("{}/{}", a.addr, a.prefix_len)).collect())
            .unwrap_or_default();
        let rules: Vec<String> = k
            .rules
            .iter()
            .filter(|r| r.protocol == e.cfg.protocol && Some(r.item.table) == table && r.item.selector != Selector::All)
            .map(|r| r.item.to_string())
            .collect();
        let names = |i| k.name_of(i);
        let routes: Vec<String> = k
            .routes
            .iter()
            .filter(|r| Some(r.table) == table)
            .map(|r| r.model(&names).map(|m| m.to_string()).unwrap_or_else(|| format!("{} (protocol {})", r.dst, r.protocol)))
            .collect();
        let sysctls: serde_json::Map<String, Value> = sysctl::wanted(&e.cfg)
            .iter()
            .map(|(knob, want)| {
                (knob.to_string(), json!({"wanted": want, "interface": sysctl::read(name, knob).ok(), "effective": sysctl::effective(name, knob).ok()}))
            })
            .collect();
        let lease = link.and_then(|l| crate::engine::lease_in_force(rec, l.index));
        let drops = match (&nft, table) {
            (Ok(c), Some(t)) => c.counters.get(&filter::counter_name(t)).copied(),
            _ => None,
        };
        ifaces.push(json!({
            "interface": name,
            "present": link.is_some(),
            "applied": rec.applied,
            "table": table,
            "link_group": link.map(|l| l.group),
            "addresses": addrs,
            // What is in force: the default route of the interface's table.
            "gateway": k.routes.iter().find(|r| Some(r.table) == table && r.dst.is_default() && r.gateway.is_some()).and_then(|r| r.gateway).map(|g| g.to_string()),
            "lease_source": lease.as_ref().map(|l| l.source.clone()).unwrap_or_else(|| "main table".into()),
            "classless_routes": lease.as_ref().map(|l| l.routes.len()).unwrap_or(0),
            "rules": rules,
            "routes": routes,
            "sysctls": sysctls,
            "wrong_interface_drops": drops,
        }));
    }
    Ok(json!({
        "interfaces": ifaces,
        "receive_filter": match &nft { Ok(c) => json!({"present": c.exists, "members": c.set}), Err(err) => json!({"error": err}) },
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
        println!("{}: {state}, table {}, gateway {}", i["interface"].as_str().unwrap_or("?"), i["table"], i["gateway"].as_str().unwrap_or("none (off-link traffic refused)"));
        println!("  addresses: {}", join(&i["addresses"]));
        for r in i["rules"].as_array().into_iter().flatten() {
            println!("  rule  {}", r.as_str().unwrap_or(""));
        }
        for r in i["routes"].as_array().into_iter().flatten() {
            println!("  route {}", r.as_str().unwrap_or(""));
        }
        let mut s = Vec::new();
        for (k, x) in i["sysctls"].as_object().into_iter().flatten() {
            s.push(format!("{k}={} (effective {})", x["interface"], x["effective"]));
        }
        println!("  sysctl {}", s.join(", "));
        println!("  wrong-interface drops: {}", i["wrong_interface_drops"]);
    }
    if let Some(err) = v["receive_filter"]["error"].as_str() {
        println!("receive filter: {err}");
    }
    0
}

fn join(v: &Value) -> String {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}
