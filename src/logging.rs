//! Logging for a program that runs mostly inside other programs' hooks: to syslog (/dev/log, so
//! journald too) when there is one and stderr is not a terminal, otherwise to stderr.

use log::{Level, LevelFilter, Metadata, Record};
use std::io::Write;
use std::os::unix::net::UnixDatagram;

struct Logger {
    syslog: Option<UnixDatagram>,
}

impl log::Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if let Some(s) = &self.syslog {
            // facility daemon (3); severities err 3, warning 4, info 6, debug 7.
            let sev = match r.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                _ => 7,
            };
            let line = format!("<{}>stronghost[{}]: {}", 3 * 8 + sev, std::process::id(), r.args());
            if s.send(line.as_bytes()).is_ok() {
                return;
            }
        }
        let _ = writeln!(std::io::stderr(), "stronghost: {}: {}", r.level().as_str().to_lowercase(), r.args());
    }

    fn flush(&self) {}
}

pub fn init(verbose: bool) {
    use std::io::IsTerminal;
    let syslog = if std::io::stderr().is_terminal() || std::env::var_os("STRONGHOST_LOG_STDERR").is_some() {
        None
    } else {
        UnixDatagram::unbound().ok().filter(|s| s.connect("/dev/log").is_ok())
    };
    let _ = log::set_boxed_logger(Box::new(Logger { syslog }));
    log::set_max_level(if verbose { LevelFilter::Debug } else { LevelFilter::Info });
}
