//! The leases isc-dhcp-client keeps on disk, read when no hook has told stronghost about an
//! interface: installed on a running host (ifupdown + dhclient, NetworkManager's dhclient backend,
//! RHEL's network scripts), stronghost finds every interface's gateway at once instead of waiting
//! half a lease time for the next renewal. dhcpcd, NetworkManager's internal client and
//! systemd-networkd put a default route through every interface in main (and networkd's own
//! lease file is read by networkd.rs), so their gateways are known without this.
//!
//! The files are written by dhclient from what a DHCP server sent: every value is validated like
//! a hook's, a lease that has expired or whose address the interface no longer has is not used,
//! and a file that is not a plain root-owned file of sensible size is not read at all.

use crate::model::lease::{Lease, assemble, check_address, parse_rfc3442_bytes};
use crate::model::net::{InField, Invalid, check_ifname, netmask_to_len, parse_ipv4};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Debian's and ifupdown's, RHEL's, NetworkManager's dhclient backend's.
pub const DIRS: [&str; 3] = ["/var/lib/dhcp", "/var/lib/dhclient", "/var/lib/NetworkManager"];
const MAX_SIZE: u64 = 4 << 20;

/// The leases of the named interfaces found in the lease files, per interface, in file order
/// (the last is the newest), without expired ones.
pub fn read(ifnames: &BTreeSet<String>, now: i64) -> BTreeMap<String, Vec<Lease>> {
    let mut out: BTreeMap<String, Vec<Lease>> = BTreeMap::new();
    if ifnames.is_empty() {
        return out;
    }
    for dir in DIRS {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<_> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            // dhclient.leases, dhclient.eth0.leases, dhclient-<uuid>-eth0.lease; not dhclient6.
            .filter(|n| is_lease_file(n) && (is_shared(n) || ifnames.iter().any(|i| names_interface(n, i))))
            .collect();
        files.sort();
        for name in files {
            let path = Path::new(dir).join(&name);
            let Some(text) = read_trusted(&path) else { continue };
            let mut warnings = Vec::new();
            for (ifname, lease) in parse(&text, now, &mut warnings) {
                if ifnames.contains(&ifname) {
                    out.entry(ifname).or_default().push(lease);
                }
            }
            for w in warnings {
                log::debug!("{}: {w}", path.display());
            }
        }
    }
    out
}

/// dhclient's IPv4 lease files (`dhclient6…` ones hold only `lease6` blocks).
fn is_lease_file(file: &str) -> bool {
    file.starts_with("dhclient") && !file.starts_with("dhclient6") && (file.ends_with(".lease") || file.ends_with(".leases"))
}

fn is_shared(file: &str) -> bool {
    file == "dhclient.leases" || file == "dhclient.lease"
}

/// `dhclient.eth0.leases`, `dhclient-<uuid>-eth0.lease`, `dhclient--eth0.lease`.
fn names_interface(file: &str, ifname: &str) -> bool {
    let stem = file.trim_end_matches(".leases").trim_end_matches(".lease");
    stem.strip_suffix(ifname).is_some_and(|rest| rest.ends_with('.') || rest.ends_with('-'))
}

/// A root-owned regular file (not a symlink) of sensible size.
fn read_trusted(path: &Path) -> Option<String> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.file_type().is_file() || m.uid() != 0 || m.len() > MAX_SIZE {
        log::debug!("{}: not a root-owned regular file under {MAX_SIZE} bytes; not read", path.display());
        return None;
    }
    std::fs::read_to_string(path).ok()
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    End,
}

/// dhclient's lease-file syntax: words, quoted strings (with backslash escapes), `{`, `}`, `;`,
/// and `#` comments.
fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let flush = |w: &mut String, out: &mut Vec<Token>| {
        if !w.is_empty() {
            out.push(Token::Word(std::mem::take(w)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => word.extend(chars.next()),
                        '"' => break,
                        _ => word.push(q),
                    }
                }
                // An empty string is still a word.
                out.push(Token::Word(std::mem::take(&mut word)));
            }
            '#' => {
                flush(&mut word, &mut out);
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            '{' | '}' | ';' => {
                flush(&mut word, &mut out);
                out.push(match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    _ => Token::End,
                });
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Every `lease { … }` block that is valid and has not expired at `now` (seconds since the epoch):
/// (interface, lease). Other blocks (`lease6`, `default-duid`) and nested ones are skipped.
pub fn parse(text: &str, now: i64, warnings: &mut Vec<String>) -> Vec<(String, Lease)> {
    let mut out = Vec::new();
    let toks = tokens(text);
    let mut i = 0;
    let mut depth = 0usize;
    let mut statement: Vec<String> = Vec::new();
    let mut lease: Option<Vec<Vec<String>>> = None;
    while i < toks.len() {
        match &toks[i] {
            Token::Word(w) => statement.push(w.clone()),
            Token::Open => {
                if depth == 0 && statement == ["lease"] {
                    lease = Some(Vec::new());
                }
                depth += 1;
                statement.clear();
            }
            Token::End => {
                if depth == 1
                    && let Some(l) = lease.as_mut()
                {
                    l.push(std::mem::take(&mut statement));
                }
                statement.clear();
            }
            Token::Close => {
                depth = depth.saturating_sub(1);
                statement.clear();
                if depth == 0
                    && let Some(l) = lease.take()
                {
                    match assemble_block(&l, now, warnings) {
                        Ok(Some(x)) => out.push(x),
                        Ok(None) => {}
                        Err(e) => warnings.push(format!("a lease ignored: {e}")),
                    }
                }
            }
        }
        i += 1;
    }
    out
}

fn assemble_block(statements: &[Vec<String>], now: i64, warnings: &mut Vec<String>) -> Result<Option<(String, Lease)>, Invalid> {
    let find = |key: &[&str]| statements.iter().find(|s| s.len() > key.len() && s.iter().zip(key).all(|(a, b)| a == b));
    let value = |key: &[&str]| find(key).map(|s| s[key.len()..].join(" "));
    let unset = |field: &str| Invalid::Unset { field: field.to_string() };
    let ifname = value(&["interface"]).ok_or_else(|| unset("interface"))?;
    check_ifname(&ifname)?;
    if let Some(expire) = find(&["expire"]) {
        match expiry(&expire[1..]) {
            Some(Some(t)) if t <= now => return Ok(None),
            Some(_) => {}
            None => return Err(Invalid::form(&expire[1..].join(" "), "an expiry dhclient writes")).field("expire"),
        }
    }
    let address = parse_ipv4(&value(&["fixed-address"]).ok_or_else(|| unset("fixed-address"))?).field("fixed-address")?;
    let prefix_len = match value(&["option", "subnet-mask"]) {
        Some(m) => parse_ipv4(&m).and_then(netmask_to_len).field("option subnet-mask")?,
        None => 32,
    };
    check_address("fixed-address", address, prefix_len)?;
    let routers = value(&["option", "routers"]).map(|r| r.replace(',', " "));
    let classless = value(&["option", "rfc3442-classless-static-routes"])
        .map(|v| ("option rfc3442-classless-static-routes", parse_rfc3442_bytes(&v.replace(',', " "))));
    let lease = assemble(address, prefix_len, ("option routers", routers), classless, "dhclient lease file", warnings);
    Ok(Some((ifname, lease)))
}

/// `expire 3 2026/11/25 12:00:00` (UTC), `expire epoch 1790000000`, `expire never`:
/// `Some(Some(seconds))`, `Some(None)` for never, `None` when not understood.
fn expiry(words: &[String]) -> Option<Option<i64>> {
    match words {
        [never] if never == "never" => Some(None),
        [epoch, n] if epoch == "epoch" => Some(Some(n.parse().ok()?)),
        [_weekday, date, time] => {
            let d: Vec<i64> = date.split('/').map(|x| x.parse().ok()).collect::<Option<_>>()?;
            let t: Vec<i64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
            let ([y, m, day], [h, min, s]) = (d[..].try_into().ok()?, t[..].try_into().ok()?);
            if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || s > 60 {
                return None;
            }
            Some(Some(days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + s))
        }
        _ => None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const FILE: &str = r#"
default-duid "\000\001\000\001";
lease {
  interface "eth1";
  fixed-address 198.51.100.11;
  option subnet-mask 255.255.255.0;
  option routers 198.51.100.1,198.51.100.2;
  option domain-name "evil\"; fixed-address 10.9.9.9; option routers 10.9.9.1;";
  renew 3 2026/11/25 12:00:00;
  expire 3 2026/11/25 12:05:00;
}
lease {
  interface "eth1";
  fixed-address 198.51.100.21;
  option subnet-mask 255.255.255.0;
  option rfc3442-classless-static-routes 8,10,198,51,100,254,0,198,51,100,3;
  expire never;
}
lease6 {
  interface "eth1";
  ia-na 1a:2b:3c:4d { iaaddr 2001:db8::5 { max-life 100; } }
}
lease {
  interface "eth2";
  fixed-address 198.51.100.0;
  option subnet-mask 255.255.255.0;
}
"#;

    #[test]
    fn reads_leases_strictly_and_skips_expired_ones() {
        let at = |s: &str| expiry(&s.split(' ').map(str::to_string).collect::<Vec<_>>()).unwrap().unwrap();
        assert_eq!(at("3 2026/11/25 12:05:00"), 1_795_608_300);
        assert_eq!(at("epoch 5"), 5);
        let mut w = Vec::new();
        let before = parse(FILE, at("3 2026/11/25 12:04:59"), &mut w);
        assert_eq!(before.len(), 2, "{before:?}");
        let (ifname, first) = &before[0];
        assert_eq!(ifname, "eth1");
        // The quoted string is one value: its `;` and `fixed-address` are not statements.
        assert_eq!(
            (first.address, first.prefix_len, first.gateway),
            (Ipv4Addr::new(198, 51, 100, 11), 24, Some(Ipv4Addr::new(198, 51, 100, 1)))
        );
        // Option 121 wins over routers, as in a hook.
        assert_eq!(before[1].1.gateway, Some(Ipv4Addr::new(198, 51, 100, 3)));
        assert_eq!(before[1].1.routes.len(), 1);
        // The network address as an interface address: refused, with a word.
        assert!(w.iter().any(|x| x.contains("network or broadcast")), "{w:?}");
        let after = parse(FILE, at("3 2026/11/25 12:05:00"), &mut Vec::new());
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].1.address, Ipv4Addr::new(198, 51, 100, 21));
        // Garbage is no lease, never a panic.
        for junk in ["lease {", "lease { interface \"", "}}}} lease { interface \"eth0\"; }", "lease { expire 1 2026/13/01 00:00:00; }"] {
            let _ = parse(junk, 0, &mut Vec::new());
        }
    }

    #[test]
    fn file_names_by_interface() {
        assert!(names_interface("dhclient.eth0.leases", "eth0"));
        assert!(names_interface("dhclient-5b6e-4c2a-eth0.lease", "eth0"));
        assert!(!names_interface("dhclient.veth0.leases", "eth0"));
        assert!(!names_interface("dhclient.eth0.leases", "eth"));
        assert!(is_lease_file("dhclient.eth6.leases") && names_interface("dhclient.eth6.leases", "eth6"));
        assert!(!is_lease_file("dhclient6.eth0.leases") && !is_lease_file("dhclient.eth0.leases~"));
    }
}
