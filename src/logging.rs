//! Logging for a program that runs mostly inside other programs' hooks. To the journal with
//! structured fields when there is one (native protocol), else to syslog (/dev/log), and to
//! stderr when that is a terminal (or STRONGHOST_LOG_STDERR is set).
//!
//! Every record carries `SYSLOG_IDENTIFIER=stronghost` and `EVENT_SOURCE` (which part acted: the
//! watcher, a client's hook, the command line); records about one interface carry `IFACE`, and
//! `TABLE` where it has one — given at the call site as `log::info!(iface = n, table = t; …)`.
//! So `journalctl -t stronghost IFACE=eth1` shows one interface's history across every source.

use log::kv::{Key, Value, VisitSource};
use log::{Level, LevelFilter, Metadata, Record};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

enum Sink {
    Journal(UnixDatagram),
    Syslog(UnixDatagram),
    Stderr,
}

struct Logger {
    sink: Sink,
}

static SOURCE: OnceLock<String> = OnceLock::new();

/// Names the part of stronghost this process is (`watcher`, `dhclient`, `cli`…): EVENT_SOURCE.
pub fn set_source(source: &str) {
    let _ = SOURCE.set(source.to_string());
}

fn severity(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        _ => 7,
    }
}

/// A journal field name from a key: upper case, letters, digits and `_`, not starting with `_`
/// (those are the journal's own trusted fields) or a digit. None if nothing is left.
pub fn field_name(key: &str) -> Option<String> {
    let n: String = key.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').map(|c| c.to_ascii_uppercase()).collect();
    let n = n.trim_start_matches(|c: char| c == '_' || c.is_ascii_digit()).to_string();
    (!n.is_empty() && n.len() <= 64).then_some(n)
}

/// One field in the journal's native format: `NAME=value\n`, or for a value with a newline the
/// binary-safe form `NAME\n` + 64-bit little-endian length + value + `\n`.
fn put_field(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'\n');
}

struct Fields<'a>(&'a mut Vec<u8>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        if let Some(name) = field_name(key.as_str()) {
            put_field(self.0, &name, &value.to_string());
        }
        Ok(())
    }
}

/// The datagram the journal gets for a record.
pub fn journal_entry(r: &Record) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    put_field(&mut buf, "MESSAGE", &r.args().to_string());
    put_field(&mut buf, "PRIORITY", &severity(r.level()).to_string());
    put_field(&mut buf, "SYSLOG_IDENTIFIER", "stronghost");
    put_field(&mut buf, "SYSLOG_PID", &std::process::id().to_string());
    if let Some(s) = SOURCE.get() {
        put_field(&mut buf, "EVENT_SOURCE", s);
    }
    let _ = r.key_values().visit(&mut Fields(&mut buf));
    buf
}

impl log::Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        // syslog: facility daemon (3). Also the fallback when the journal refused a datagram.
        let line = || format!("<{}>stronghost[{}]: {}", 3 * 8 + severity(r.level()), std::process::id(), r.args());
        let sent = match &self.sink {
            Sink::Journal(s) => {
                s.send(&journal_entry(r)).is_ok() || UnixDatagram::unbound().and_then(|u| u.send_to(line().as_bytes(), "/dev/log")).is_ok()
            }
            Sink::Syslog(s) => s.send(line().as_bytes()).is_ok(),
            Sink::Stderr => false,
        };
        if sent {
            return;
        }
        // One write per line (stderr is unbuffered, and `writeln!` writes each piece): the hooks of
        // many interfaces can share one stderr, and lines written piecewise interleave.
        let text = format!("stronghost: {}: {}\n", r.level().as_str().to_lowercase(), r.args());
        let _ = std::io::stderr().write_all(text.as_bytes());
    }

    fn flush(&self) {}
}

pub fn init(verbose: bool) {
    use std::io::IsTerminal;
    let connect = |path: &str| UnixDatagram::unbound().ok().filter(|s| s.connect(path).is_ok());
    let sink = if std::io::stderr().is_terminal() || std::env::var_os("STRONGHOST_LOG_STDERR").is_some() {
        Sink::Stderr
    } else if let Some(s) = connect(JOURNAL_SOCKET) {
        Sink::Journal(s)
    } else if let Some(s) = connect("/dev/log") {
        Sink::Syslog(s)
    } else {
        Sink::Stderr
    };
    let _ = log::set_boxed_logger(Box::new(Logger { sink }));
    log::set_max_level(if verbose { LevelFilter::Debug } else { LevelFilter::Info });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_what_the_journal_accepts() {
        assert_eq!(field_name("iface").as_deref(), Some("IFACE"));
        assert_eq!(field_name("event_source").as_deref(), Some("EVENT_SOURCE"));
        assert_eq!(field_name("_pid").as_deref(), Some("PID"), "trusted fields cannot be forged");
        assert_eq!(field_name("9lives").as_deref(), Some("LIVES"));
        assert_eq!(field_name("é-"), None);
    }

    #[test]
    fn an_entry_carries_the_fields_and_survives_a_newline() {
        let entry = journal_entry(
            &Record::builder()
                .args(format_args!("eth1: gateway from lease"))
                .level(Level::Warn)
                .key_values(&[("iface", "eth1"), ("table", "4101")])
                .build(),
        );
        let text = String::from_utf8_lossy(&entry);
        for f in ["MESSAGE=eth1: gateway from lease\n", "PRIORITY=4\n", "SYSLOG_IDENTIFIER=stronghost\n", "IFACE=eth1\n", "TABLE=4101\n"] {
            assert!(text.contains(f), "{f} missing from {text}");
        }
        // A value with a newline (an interface name cannot have one; a message could) is framed
        // by length, so it cannot start a field of its own.
        let mut buf = Vec::new();
        put_field(&mut buf, "MESSAGE", "a\nPRIORITY=0");
        assert_eq!(&buf[..8], b"MESSAGE\n");
        assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), 12);
    }
}
