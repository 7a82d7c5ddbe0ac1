//! Writes the man pages (one per command) and the shell completions, generated from the CLI
//! definitions, and iproute2's names for the table range and protocol, from the shipped
//! configuration, into a directory: `cargo run --example gen_docs -- OUT_DIR [CONFIG]` (used by
//! packaging/).

use clap::CommandFactory;
use std::path::Path;
use stronghost::cli;

fn write_man(cmd: &clap::Command, name: &'static str, out: &Path) {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(name)).section("8").render(&mut buf).expect("render man page");
    std::fs::write(out.join(format!("{name}.8")), buf).expect("write man page");
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
