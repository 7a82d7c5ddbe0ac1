//! stronghost as a library: the engine, the parsers and the commands, for the `stronghost`
//! binary, the fuzz targets (tests/fuzz) and the documentation generator (examples/gen_docs).
//!
//! A run (reconcile.rs) gathers (gather/, state/), decides (plan/, pure) and executes
//! (execute/, the only writer) over the shared model (model/, data only) and netlink/: see
//! ARCHITECTURE.md.

pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub mod error;
pub mod execute;
pub mod gather;
pub mod handoff;
pub mod host;
pub mod logging;
pub mod model;
pub mod netlink;
pub mod plan;
pub mod reconcile;
pub mod state;
pub mod sysctl;
pub mod watch;

/// The layout's rules the compiler cannot see in one crate: deciding (plan/) and the model
/// (model/) do no I/O — they import nothing that reads or writes (netlink, state, sysctl, gather,
/// execute, std::process, std::fs) — and only execute/ writes. A file that breaks one fails here,
/// naming the line.
#[cfg(test)]
mod layout {
    use std::path::Path;

    /// Every line of code (comments aside) under src/ that holds one of `needles`, as
    /// `src/<file>:<line>: <needle>`, in the folders `look_in` picks (by their path under src/,
    /// "" for src/ itself); `with_tests`: also in a file's tests (all that follows its first
    /// `#[cfg(test)]`).
    fn found(look_in: &dyn Fn(&str) -> bool, needles: &[&str], with_tests: bool) -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let (mut out, mut dirs) = (Vec::new(), vec![root.clone()]);
        while let Some(dir) = dirs.pop() {
            let rel_dir = dir.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if !look_in(&rel_dir) {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = if with_tests { text.as_str() } else { text.split("#[cfg(test)]").next().unwrap_or("") };
                let rel = path.strip_prefix(&root).unwrap().display().to_string();
                for (n, line) in code.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")) {
                    out.extend(needles.iter().filter(|w| line.contains(*w)).map(|w| format!("src/{rel}:{}: {w}", n + 1)));
                }
            }
        }
        out
    }

    /// The scan sees the code: a call that is there is found (so an empty answer below means
    /// something).
    #[test]
    fn the_scan_finds_what_is_there() {
        assert!(!found(&|d| d == "execute", &[".batch("], false).is_empty());
        assert!(!found(&|d| d == "plan", &["crate::model"], true).is_empty());
    }

    #[test]
    fn deciding_and_the_model_import_nothing_that_does() {
        let io = [
            "crate::netlink",
            "crate::state",
            "crate::sysctl",
            "crate::gather",
            "crate::execute",
            "crate::reconcile",
            "std::process",
            "std::fs",
        ];
        let found = found(&|d| d.starts_with("plan") || d.starts_with("model"), &io, true);
        assert!(found.is_empty(), "deciding or the model doing I/O:\n{}", found.join("\n"));
    }

    /// netlink/ is transport and codecs under the pipeline: it speaks the model's types and
    /// nothing that decides, gathers or writes.
    #[test]
    fn netlink_knows_no_stage_above_it() {
        let stages = ["crate::plan", "crate::gather", "crate::execute", "crate::reconcile", "crate::watch", "crate::commands"];
        let found = found(&|d| d.starts_with("netlink"), &stages, false);
        assert!(found.is_empty(), "netlink/ reaching up into the pipeline:\n{}", found.join("\n"));
    }

    /// Only execute/ writes: no other code (tests aside: they set up their fixtures) calls a
    /// netlink or nftables write.
    #[test]
    fn only_execute_writes() {
        let writes = [
            ".batch(",
            ".add_route(",
            ".del_route(",
            ".add_address(",
            ".del_address(",
            ".set_link_up(",
            ".edit(",
            ".create_table(",
            ".delete_table(",
            "filter::apply(",
        ];
        let found = found(&|d| !d.starts_with("execute") && !d.starts_with("netlink"), &writes, false);
        assert!(found.is_empty(), "a write outside execute/:\n{}", found.join("\n"));
    }
}
