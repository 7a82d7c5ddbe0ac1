//! Writes the man pages (one per command) and the shell completions, generated from the CLI
//! definitions, into a directory: `cargo run --example gen_docs -- OUT_DIR` (used by packaging/).

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
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        clap_complete::generate_to(shell, &mut cli::Cli::command(), "stronghost", &completions).unwrap();
    }
}
