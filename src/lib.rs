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
    #[test]
    fn deciding_and_the_model_import_nothing_that_does() {
        let forbidden = [
            "crate::netlink",
            "crate::state",
            "crate::sysctl",
            "crate::gather",
            "crate::execute",
            "crate::reconcile",
            "std::process",
            "std::fs",
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        for dir in ["plan", "model"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                // The code, not the comments that say where things are done.
                for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")) {
                    found.extend(forbidden.iter().filter(|f| line.contains(*f)).map(|f| format!("{}:{}: {f}", path.display(), n + 1)));
                }
            }
        }
        assert!(found.is_empty(), "deciding or the model doing I/O:\n{}", found.join("\n"));
    }

    /// Only execute/ writes: no other code (tests aside) calls a netlink or nftables write.
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
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    if rel != "execute" && rel != "netlink" {
                        dirs.push(path);
                    }
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                // Tests set up their fixtures as they need.
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                for (n, line) in code.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")) {
                    found.extend(writes.iter().filter(|w| line.contains(*w)).map(|w| format!("src/{rel}:{}: {w}", n + 1)));
                }
            }
        }
        assert!(found.is_empty(), "a write outside execute/:\n{}", found.join("\n"));
    }
}
