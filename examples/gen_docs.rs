//! Writes the man pages (one per command) and the shell completions, generated from the CLI
//! definitions, and iproute2's names for the table range and protocol, from the shipped
//! configuration, into a directory: `cargo run --example gen_docs -- OUT_DIR [CONFIG]` (used by
//! packaging/).

use clap::CommandFactory;
use std::path::Path;
use stronghost::cli;

/// Roff text: backslashes, and a leading dot or quote, escaped.
fn roff(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') { format!("\\&{l}") } else { l }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A section of paragraphs; a paragraph "TERM\tTEXT" is a tagged one (.TP).
fn section(title: &str, paragraphs: &[&str]) -> String {
    let mut s = format!(".SH {title}\n");
    for p in paragraphs {
        match p.split_once('\t') {
            Some((term, text)) => s += &format!(".TP\n\\fB{}\\fR\n{}\n", roff(term), roff(text)),
            None => s += &format!(".PP\n{}\n", roff(p)),
        }
    }
    s
}

const FILES: &[&str] = &[
    "/etc/stronghost/stronghost.conf\tThe configuration (stronghost.conf(5)); the defaults apply when it is absent.",
    "/run/stronghost/lock\tThe host-wide lock every run takes, hooks, the CLI and the watcher alike.",
    "/run/stronghost/iface/\tOne record per managed interface: its last lease and what stronghost changed on it.",
    "/run/stronghost/queue/\tHook events waiting for the lock; applied by the next run that holds it.",
    "/run/stronghost/watch.sock\tWhere hooks hand their events to the running watcher.",
    "/var/lib/stronghost/tables.json\tThe routing table of each interface, kept across reboots.",
    "/var/lib/stronghost/originals.json\tThe sysctl values and link groups to restore on release.",
    "/etc/iproute2/rt_tables.d/stronghost.conf, /etc/iproute2/rt_protos.d/stronghost.conf\tNames for stronghost's tables and protocol, for ip(8).",
];

const EXIT: &[&str] = &[
    "0\tSuccess; for check, the host is a strong host (warnings may follow).",
    "1\tA run failed, or check found a violation.",
    "2\tThe configuration is invalid or missing, the user is not root, or the command refused to write (in a chroot).",
    "Hooks\tstronghost hook always exits 0: a DHCP client declines its lease, and ifup aborts, on anything else.",
];

/// Per page: examples, and the other pages to see.
fn extra(name: &str) -> (Vec<&'static str>, &'static str) {
    let see =
        "stronghost(8), stronghost.conf(5), ip\\-rule(8), ip\\-route(8), nft(8), systemd\\-networkd(8), NetworkManager(8), dhclient(8)";
    let ex: Vec<&str> = match name {
        "stronghost" => vec![
            "stronghost check\tVerify that the host behaves as a strong host; exits 1 with one line per violation.",
            "stronghost status\tEach interface's table, addresses, gateway, rules, sysctls and drop counters.",
            "stronghost sync\tBring every managed interface in line now (the watcher does it at start).",
            "stronghost plan eth1\tShow what apply would change, as ip, sysctl and nft commands; changes nothing.",
        ],
        "stronghost-apply" => vec![
            "stronghost apply eth1\tApply eth1's policy now.",
            "stronghost apply --json eth1\tThe same, reporting the writes as JSON.",
            "stronghost apply -- -x\tAn interface whose name starts with a dash.",
        ],
        "stronghost-release" => vec![
            "stronghost release eth1\tRemove eth1's policy and restore its sysctls and link group.",
            "stronghost release --all\tThe host as before stronghost: what package removal runs.",
        ],
        "stronghost-sync" => vec!["stronghost sync --json\tApply every managed interface; a converged host reports 0 writes."],
        "stronghost-status" => vec![
            "stronghost status --json | jq '.interfaces[] | {interface, table, drops}'\tThe drop counters per interface.",
            "stronghost status --prometheus > /var/lib/prometheus/node-exporter/stronghost.prom\tMetrics for node_exporter's textfile collector.",
        ],
        "stronghost-check" => {
            vec!["stronghost check || journalctl -t stronghost -p warning\tWhat is wrong, and what stronghost logged about it."]
        }
        "stronghost-plan" => vec!["stronghost plan\tWhat a sync would change.", "stronghost plan eth1\tWhat apply eth1 would change."],
        "stronghost-watch" => vec!["systemctl status stronghost-watch\tThe watcher as the package runs it."],
        _ => vec![],
    };
    (ex, see)
}

fn write_man(cmd: &clap::Command, name: &'static str, out: &Path) {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(name)).section("8").render(&mut buf).expect("render man page");
    let (examples, see) = extra(name);
    let mut text = String::from_utf8(buf).unwrap();
    if name == "stronghost" {
        text += &section(
            "CONFIGURATION",
            &[
                "/etc/stronghost/stronghost.conf: which interfaces, the table range, rule priorities, the mark field, the receive filter and ARP and IPv6 settings, and gateways for addresses no lease describes. See stronghost.conf(5).",
            ],
        );
    }
    text += &section("FILES", FILES);
    text += &section("EXIT STATUS", EXIT);
    if !examples.is_empty() {
        text += &section("EXAMPLES", &examples);
    }
    text += &format!(".SH \"SEE ALSO\"\n{see}\n");
    std::fs::write(out.join(format!("{name}.8")), text).expect("write man page");
}

/// stronghost.conf(5), from the shipped file: every key with the comment above it.
fn write_conf_page(config: &str, out: &Path) {
    let text = std::fs::read_to_string(config).expect("read the shipped configuration");
    let mut keys = Vec::new();
    let mut comment: Vec<String> = Vec::new();
    for line in text.lines() {
        let body = line.strip_prefix('#').map(str::trim_start);
        match body {
            Some(b) if b.contains(" = ") && !line.starts_with("# ") => {
                keys.push(format!("{b}\t{}", comment.join(" ")));
                comment.clear();
            }
            Some(b) => comment.push(b.to_string()),
            None => comment.clear(),
        }
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut page = String::from(".TH stronghost.conf 5 \"\" \"stronghost\"\n");
    page += &section("NAME", &["stronghost.conf - configuration of stronghost(8)"]);
    page += &section(
        "DESCRIPTION",
        &[
            "Lines are key = value; # starts a comment. An unknown key or a bad value is an error that names the line; a hook with a bad configuration logs it and leaves the lease alone. A running watcher keeps the configuration it started with: restart stronghost-watch after an edit. Each key below is shown with its default.",
        ],
    );
    page += &section("KEYS", &refs);
    page += &section("FILES", &["/etc/stronghost/stronghost.conf\tThe file; --config names another, which must exist."]);
    page += ".SH \"SEE ALSO\"\nstronghost(8)\n";
    std::fs::write(out.join("stronghost.conf.5"), page).expect("write stronghost.conf(5)");
}

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: gen_docs OUT_DIR"));
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man).unwrap();
    std::fs::create_dir_all(&completions).unwrap();
    let mut cmd = cli::Cli::command();
    cmd.build();
    write_man(&cmd, "stronghost", &man);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        // Leaked: a handful of short names for a program that exits right after.
        let name: &'static str = Box::leak(format!("stronghost-{}", sub.get_name()).into_boxed_str());
        write_man(sub, name, &man);
    }
    // `ip rule` and `ip route` then say whose tables and routes these are, for the range and
    // protocol the package ships, whatever they are.
    let config = std::env::args().nth(2).unwrap_or_else(|| "dist/stronghost.conf".into());
    write_conf_page(&config, &man);
    let cfg = stronghost::config::Config::load(Path::new(&config)).unwrap_or_else(|e| panic!("{e}"));
    let iproute2 = out.join("iproute2");
    std::fs::create_dir_all(&iproute2).unwrap();
    let mut tables = format!("# stronghost: one routing table per managed interface (see {})\n", stronghost::config::DEFAULT_PATH);
    for t in cfg.table_min..=cfg.table_max {
        tables.push_str(&format!("{t}\tstronghost-{t}\n"));
    }
    std::fs::write(iproute2.join("rt_tables.conf"), tables).unwrap();
    std::fs::write(
        iproute2.join("rt_protos.conf"),
        format!("# stronghost: rules and routes written by stronghost\n{}\tstronghost\n", cfg.protocol),
    )
    .unwrap();
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        clap_complete::generate_to(shell, &mut cli::Cli::command(), "stronghost", &completions).unwrap();
    }
}
