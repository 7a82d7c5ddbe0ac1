//! /etc/stronghost/stronghost.conf: `key = value` lines, `#` comments. Unknown keys and bad values
//! are errors that name the file, the line and what is accepted.

use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = crate::cli::DEFAULT_CONFIG;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Interfaces to manage (shell-style patterns, `*` and `?`).
    pub interfaces: Vec<String>,
    /// Interfaces never to manage, even if they match `interfaces`.
    pub exclude: Vec<String>,
    /// Routing tables stronghost may allocate, one per interface.
    pub table_min: u32,
    pub table_max: u32,
    /// First rule priority of stronghost's band (plan/policy.rs: `priority` … `oif_priority`).
    pub priority: u32,
    /// Link group given to managed interfaces so that main-table routes through them are suppressed
    /// for managed sources (see plan/policy.rs).
    pub link_group: u32,
    /// Route and rule protocol number marking stronghost's own objects.
    pub protocol: u8,
    /// stronghost's field of the packet and connection marks: contiguous bits, never written
    /// outside (plan/policy.rs `mark_of`). Enough of them for every table of the range, plus one value.
    pub mark_mask: u32,
    pub receive_filter: bool,
    /// stronghost's reverse-path check in the receive filter, and the kernel's off on managed
    /// interfaces (only together with `receive_filter`).
    pub arp_sysctls: bool,
    pub rp_filter: bool,
    /// Rules and tables for IPv6 addresses too.
    pub ipv6: bool,
    /// Gateways the admin names per interface (`gateway.eth3 = 198.51.100.1`): for addresses no
    /// DHCP lease describes. They take precedence over every learned gateway.
    pub gateways: std::collections::BTreeMap<String, std::net::Ipv4Addr>,
    /// The file this came from, for messages that tell the admin what to edit.
    pub path: PathBuf,
    /// `interfaces` and `exclude` split into plain names and patterns, made on first use: a
    /// configuration naming thousands of interfaces is asked about every link of a run.
    pub names: NameIndex,
}

type Split = (std::collections::HashSet<String>, Vec<String>);
/// Address and length of the `interfaces` and `exclude` lists a split was made from.
type MadeFrom = [(usize, usize); 2];

/// Plain names (a set) and patterns (a list) of `interfaces` and of `exclude`, with the lists
/// they were made from (address and length): a configuration built from another with new lists
/// is not answered from the other's cache.
#[derive(Debug, Default)]
pub struct NameIndex(std::sync::OnceLock<(MadeFrom, [Split; 2])>, std::sync::atomic::AtomicU32);

/// Questions answered by reading the lists before the index is made: a hook asks about one
/// interface a few times, and reading 4,096 names costs it a fraction of making their set.
const ASKED_BEFORE_INDEX: u32 = 8;

/// A copy makes its own (its lists are elsewhere).
impl Clone for NameIndex {
    fn clone(&self) -> Self {
        NameIndex::default()
    }
}

/// A cache: two configurations are equal whatever it holds.
impl PartialEq for NameIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for NameIndex {}

impl Default for Config {
    fn default() -> Self {
        Config {
            interfaces: vec!["*".into()],
            exclude: [
                "lo",
                "docker*",
                "br-*",
                "veth*",
                "virbr*",
                "vnet*",
                "tun*",
                "tap*",
                "wg*",
                "tailscale*",
                "cni*",
                "flannel*",
                "cali*",
                "lxc*",
                "vxlan*",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            // 253: what the default mark field holds (`mark_slots`).
            table_min: 4101,
            table_max: 4353,
            priority: 4100,
            link_group: 4100,
            protocol: 83,
            mark_mask: DEFAULT_MARK_MASK,
            receive_filter: true,
            arp_sysctls: true,
            rp_filter: true,
            ipv6: true,
            gateways: Default::default(),
            path: PathBuf::from(DEFAULT_PATH),
            names: NameIndex::default(),
        }
    }
}

/// The top byte: clear of every mark field the tools we know of use by default — kube-proxy
/// (0x4000, 0x8000), Cilium (0x0f00), mwan3 (0x3f00), shorewall (0xff), Tailscale (0xff0000),
/// wg-quick (51820 on its own socket) — but Calico's default mask (0xffff0000), which Calico
/// lets one change (docs/design.md).
pub const DEFAULT_MARK_MASK: u32 = 0xff00_0000;

/// Why the configuration is refused: the file (once known), the line, and what is wrong there.
#[derive(Debug)]
pub enum ConfigError {
    /// A line that does not say what it should.
    Line {
        line: usize,
        message: String,
    },
    /// Settings that do not fit together.
    Settings(String),
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    In {
        path: PathBuf,
        reason: Box<ConfigError>,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Line { line, message } => write!(f, "line {line}: {message}"),
            ConfigError::Settings(message) => f.write_str(message),
            ConfigError::Unreadable { path, source } => write!(f, "{}: cannot read: {source}", path.display()),
            ConfigError::In { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads the file; a missing file means the documented defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text)
                .map(|c| Config { path: path.to_path_buf(), ..c })
                .map_err(|e| ConfigError::In { path: path.to_path_buf(), reason: Box::new(e) }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config { path: path.to_path_buf(), ..Config::default() }),
            Err(source) => Err(ConfigError::Unreadable { path: path.to_path_buf(), source }),
        }
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |message: String| ConfigError::Line { line: n + 1, message };
            let (key, value) = line
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| at(format!("expected `key = value`, found {line:?}")))?;
            match key {
                "interfaces" => c.interfaces = words(value),
                "exclude" => c.exclude = words(value),
                "tables" => {
                    let (a, b) = value
                        .split_once('-')
                        .and_then(|(a, b)| Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?)))
                        .ok_or_else(|| at(format!("tables: expected FIRST-LAST, e.g. 4101-4353, found {value:?}")))?;
                    if a < 256 || a > b || b >= 0xffff_fff0 {
                        return Err(at(format!("tables: {a}-{b} must be ascending and above 255 (0-255 are the kernel's and iproute2's)")));
                    }
                    (c.table_min, c.table_max) = (a, b);
                }
                "priority" => {
                    c.priority = number(value).filter(|p| (1..32700).contains(p)).ok_or_else(|| {
                        at(format!("priority: expected a number between 1 and 32699 (below the main table's 32766), found {value:?}"))
                    })?
                }
                "link_group" => {
                    c.link_group = number(value)
                        .filter(|g| *g != 0)
                        .ok_or_else(|| at(format!("link_group: expected a non-zero number, found {value:?}")))?
                }
                "protocol" => {
                    c.protocol = number(value)
                        .filter(|p| (5..=255).contains(p))
                        .map(|p| p as u8)
                        .ok_or_else(|| at(format!("protocol: expected a number from 5 to 255 (0-4 are the kernel's), found {value:?}")))?
                }
                "mark_mask" => {
                    c.mark_mask = hex_or_decimal(value).filter(|m| contiguous(*m) && m.count_ones() >= 2).ok_or_else(|| {
                        at(format!("mark_mask: expected contiguous bits, at least two, e.g. 0xff000000 (the top byte), found {value:?}"))
                    })?
                }
                "receive_filter" => c.receive_filter = boolean(value).ok_or_else(|| at(bool_err(key, value)))?,
                "arp_sysctls" => c.arp_sysctls = boolean(value).ok_or_else(|| at(bool_err(key, value)))?,
                "rp_filter" => c.rp_filter = boolean(value).ok_or_else(|| at(bool_err(key, value)))?,
                "ipv6" => c.ipv6 = boolean(value).ok_or_else(|| at(bool_err(key, value)))?,
                _ if key.starts_with("gateway.") => {
                    let ifname = &key["gateway.".len()..];
                    crate::model::net::check_ifname(ifname).map_err(|e| at(format!("{key}: {e}")))?;
                    let gw = crate::model::net::parse_ipv4(value)
                        .and_then(|g| crate::model::net::check_unicast("gateway", g).map(|()| g))
                        .map_err(|e| at(format!("{key}: expected the IPv4 address of {ifname}'s gateway: {e}")))?;
                    c.gateways.insert(ifname.to_string(), gw);
                }
                _ => {
                    return Err(at(format!(
                        "unknown key {key:?} (known: interfaces, exclude, tables, priority, link_group, protocol, mark_mask, receive_filter, arp_sysctls, rp_filter, ipv6, gateway.<interface>)"
                    )));
                }
            }
        }
        let tables = c.table_max - c.table_min + 1;
        if u64::from(tables) > c.mark_slots() {
            return Err(ConfigError::Settings(format!(
                "tables {}-{} are {tables} interfaces, and mark_mask {:#x} marks {} of them: widen mark_mask (bits no other tool on \
                 this host uses; /usr/share/doc/stronghost/design.md lists who uses which) or narrow tables",
                c.table_min,
                c.table_max,
                c.mark_mask,
                c.mark_slots()
            )));
        }
        Ok(c)
    }

    /// How many interfaces the mark field can tell apart: every value of its bits but 0 (no
    /// mark), all ones (arrived on an unmanaged interface) and the one below (a frame bridged
    /// through the host, model/routing.rs `bridged_mark`).
    pub fn mark_slots(&self) -> u64 {
        (1u64 << self.mark_mask.count_ones()) - 3
    }

    /// Whether stronghost manages this interface name.
    pub fn manages(&self, ifname: &str) -> bool {
        let linear = || self.interfaces.iter().any(|p| glob(p, ifname)) && !self.exclude.iter().any(|p| glob(p, ifname));
        if self.names.0.get().is_none() && self.names.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < ASKED_BEFORE_INDEX {
            return linear();
        }
        let lists = [&self.interfaces, &self.exclude];
        let made_from = lists.map(|l| (l.as_ptr() as usize, l.len()));
        let (from, [inc, exc]) = self.names.0.get_or_init(|| {
            let split = lists.map(|list| {
                let (plain, patterns): (Vec<&String>, Vec<&String>) = list.iter().partition(|p| !p.contains(['*', '?']));
                (plain.into_iter().cloned().collect(), patterns.into_iter().cloned().collect())
            });
            (made_from, split)
        });
        if *from != made_from {
            return linear();
        }
        let matches = |(plain, patterns): &Split| plain.contains(ifname) || patterns.iter().any(|p| glob(p, ifname));
        matches(inc) && !matches(exc)
    }

    pub fn in_table_range(&self, t: u32) -> bool {
        (self.table_min..=self.table_max).contains(&t)
    }
}

fn words(v: &str) -> Vec<String> {
    v.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).map(str::to_string).collect()
}

fn number(v: &str) -> Option<u32> {
    v.parse().ok()
}

fn hex_or_decimal(v: &str) -> Option<u32> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// One run of ones (and not none).
fn contiguous(m: u32) -> bool {
    let s = m.checked_shr(m.trailing_zeros()).unwrap_or(0);
    m != 0 && s & s.wrapping_add(1) == 0
}

fn boolean(v: &str) -> Option<bool> {
    match v {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn bool_err(key: &str, v: &str) -> String {
    format!("{key}: expected yes or no, found {v:?}")
}

/// Shell-style match with `*` and `?`, enough for interface names.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_manage_ethernet_not_bridges() {
        let c = Config::default();
        assert!(c.manages("eth0") && c.manages("enp3s0"));
        assert!(!c.manages("lo") && !c.manages("docker0") && !c.manages("veth1234") && !c.manages("wg0"));
    }

    #[test]
    fn parses_every_key() {
        let c = Config::parse("# c\ninterfaces = eth* ens*\nexclude = eth9\ntables = 5000-5010\npriority=200\nlink_group = 7\nprotocol = 99\nreceive_filter = no\narp_sysctls = off\nrp_filter = false\nipv6 = no\ngateway.eth3 = 198.51.100.1\n").unwrap();
        assert_eq!(c.gateways.get("eth3"), Some(&std::net::Ipv4Addr::new(198, 51, 100, 1)));
        assert!(c.manages("eth1") && !c.manages("eth9") && !c.manages("wlan0"));
        assert_eq!((c.table_min, c.table_max, c.priority, c.link_group, c.protocol), (5000, 5010, 200, 7, 99));
        assert!(!c.receive_filter && !c.arp_sysctls && !c.rp_filter && !c.ipv6);
        let wide = Config::parse("tables = 4101-8300\nmark_mask = 0x1fff0000\n").unwrap();
        assert_eq!((wide.mark_mask, wide.mark_slots()), (0x1fff_0000, 8189));
        assert_eq!(Config::parse("mark_mask = 4278190080").unwrap().mark_mask, 0xff00_0000);
    }

    #[test]
    fn errors_name_line_and_fix() {
        for (text, needle) in [
            ("\ntables = 10-20", "line 2: tables"),
            ("priority = 40000", "below the main table"),
            ("receive_filter = maybe", "expected yes or no"),
            ("colour = blue", "unknown key"),
            ("just words", "key = value"),
            ("gateway.eth3 = 0.0.0.0", "gateway.eth3: expected the IPv4 address"),
            ("gateway.eth3 = example.net", "gateway.eth3: expected the IPv4 address"),
            ("gateway.a/b = 192.0.2.1", "line 1: gateway.a/b"),
            ("mark_mask = 0xff00ff00", "mark_mask: expected contiguous bits"),
            ("mark_mask = 0x80000000", "at least two"),
            ("mark_mask = 0", "mark_mask"),
            ("tables = 4101-4356", "mark_mask 0xff000000 marks 253 of them"),
            ("mark_mask = 0xf0000000\ntables = 5000-5020", "widen mark_mask"),
        ] {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn plain_names_and_patterns_both_decide() {
        let c = Config::parse("interfaces = eth1 ens* wlan?\nexclude = ens9 eth1?\n").unwrap();
        // Read from the lists for the first questions, from the index after: the same answers.
        for round in 0..3 {
            let m: Vec<bool> = ["eth1", "eth10", "ens3", "ens9", "wlan0", "wlan10", "eth2"].iter().map(|n| c.manages(n)).collect();
            assert_eq!(m, [true, false, true, false, true, false, false], "round {round}");
        }
        assert!(c.names.0.get().is_some(), "no index after 21 questions");
        assert_eq!(c.clone(), c, "the cache does not make two equal configurations differ");
        let mut d = c.clone();
        (0..=ASKED_BEFORE_INDEX).for_each(|_| assert!(d.manages("eth1")));
        d.interfaces = vec!["eth2".into()];
        assert!(d.manages("eth2") && !d.manages("eth1"), "not answered from the index of the lists it was made from");
    }

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob("eth*", "eth10") && glob("e?h0", "eth0") && glob("*", "x") && glob("a*b*c", "aXbYc"));
        assert!(!glob("eth*", "ens3") && !glob("eth?", "eth10"));
    }
}

#[cfg(test)]
mod shipped_file {
    use super::*;

    /// The shipped file documents exactly the defaults: uncommenting every line changes nothing.
    #[test]
    fn dist_config_matches_defaults() {
        let text = include_str!("../dist/stronghost.conf");
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.contains(" = ") && !l.starts_with(' '))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(uncommented.lines().count(), 11, "{uncommented}");
        assert_eq!(Config::parse(&uncommented).unwrap(), Config::default());
    }
}
