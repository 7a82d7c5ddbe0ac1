//! A hook's event, applied by the running watcher instead of by the hook itself.
//!
//! The watcher follows the kernel's rules from notifications (gather/rule_cache.rs); a hook, a
//! process of its own, must dump them, and the kernel cannot filter that dump: its cost grows with
//! every interface of the host. So a hook queues its event as always
//! (state/queue.rs) and then asks the watcher, over a Unix socket in /run/stronghost, to apply the
//! queue; the watcher answers once it has, and the hook returns: the policy is in force when the
//! hook returns, as when it runs itself.
//!
//! The connection is the request; nothing is read from it. The answer is one line: `ok <changes>`,
//! `queued <why>` (the watcher could not take the lock in time; a stronghost run holding it
//! applies the queue before it lets go, and the watcher tries again every second) or
//! `error <what>`. No watcher (a chroot, the service stopped, a socket left by a crashed one, a
//! confined client that may not connect) or no answer in time: the hook runs itself.

use crate::state::RUN_DIR;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a hook waits for the watcher's answer: longer than the watcher waits for the lock,
/// so that a watcher kept waiting answers `queued` in time and the hook does not wait for the
/// lock a second time itself.
pub const HOOK_WAIT: Duration = Duration::from_secs(crate::reconcile::LOCK_WAIT.as_secs() + 2);

fn path() -> PathBuf {
    PathBuf::from(RUN_DIR).join("watch.sock")
}

/// What the watcher answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Applied; the number of changes the run made.
    Applied(usize),
    /// Not applied yet: something has held the lock for longer than a hook waits. Its event
    /// stays queued for the next run to take the lock (the watcher tries every second).
    Queued(String),
    /// The run failed; the watcher's error.
    Failed(String),
}

/// Asks a running watcher to apply the queue; None when there is none to ask, or it did not
/// answer within `wait` (the caller then applies the queue itself).
pub fn ask_watcher(wait: Duration) -> Option<Answer> {
    let deadline = Instant::now() + wait;
    answer_of(connect(&path(), deadline).ok()?, deadline)
}

/// Connects, waiting until `deadline` at most while the watcher's backlog is full: a watcher that
/// stopped accepting must not hold a DHCP client (a blocking connect would wait for it forever).
fn connect(path: &Path, deadline: Instant) -> io::Result<UnixStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let addr = UnixAddr::new(path)?;
    loop {
        let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)?;
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                let s = UnixStream::from(fd);
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.into()),
        }
    }
}

fn answer_of(s: UnixStream, deadline: Instant) -> Option<Answer> {
    // The connect's wait counts: the hook's whole wait is bounded, not each step of it.
    let left = deadline.saturating_duration_since(Instant::now());
    s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).ok()?;
    let mut line = String::new();
    // An answer is one short line: read no more than that.
    BufReader::new(io::Read::take(s, 4096)).read_line(&mut line).ok()?;
    parse(&line)
}

/// What `check` finds at the watcher's socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Watcher {
    /// No socket (no watcher, by choice or not yet started) or none we may use.
    Absent,
    /// A socket nobody listens on: a watcher that died without removing it.
    Stale,
    /// Listening, but no answer in time: busy for that long, or stuck.
    Silent,
    Answers,
}

/// Asks the watcher to apply the queue (harmless: it usually holds nothing) to see whether it
/// answers. Call without holding the lock: the watcher answers only once it has held it.
pub fn probe(wait: Duration) -> Watcher {
    let deadline = Instant::now() + wait;
    match connect(&path(), deadline) {
        Ok(s) => match answer_of(s, deadline) {
            Some(_) => Watcher::Answers,
            None => Watcher::Silent,
        },
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Watcher::Stale,
        Err(_) => Watcher::Absent,
    }
}

fn parse(line: &str) -> Option<Answer> {
    let line = line.strip_suffix('\n')?;
    match line.split_once(' ') {
        Some(("ok", n)) => n.parse().ok().map(Answer::Applied),
        Some(("queued", why)) => Some(Answer::Queued(why.to_string())),
        Some(("error", what)) => Some(Answer::Failed(what.to_string())),
        _ => None,
    }
}

/// The watcher's end: hooks connect to it.
pub struct Listener {
    l: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Listens, unless another watcher already answers there (Ok(None): the hooks go to that one).
    /// A socket nobody answers on is a crashed watcher's: replaced.
    pub fn bind() -> io::Result<Option<Listener>> {
        let path = path();
        let l = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if UnixStream::connect(&path).is_ok() {
                    return Ok(None);
                }
                std::fs::remove_file(&path)?;
                UnixListener::bind(&path)?
            }
            Err(e) => return Err(e),
        };
        // /run/stronghost is root's alone already; the socket is too.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        l.set_nonblocking(true)?;
        Ok(Some(Listener { l, path }))
    }

    /// Every hook waiting to be answered.
    pub fn accept_all(&self) -> Vec<UnixStream> {
        std::iter::from_fn(|| self.l.accept().ok().map(|(s, _)| s)).collect()
    }
}

impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.l.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Tells each waiting hook what became of the queue. A hook that gave up waiting is gone: no
/// matter (and no SIGPIPE: Rust ignores it).
pub fn answer(hooks: Vec<UnixStream>, result: &Answer) {
    // One line: the hook logs it as it is.
    let line = match result {
        Answer::Applied(n) => format!("ok {n}\n"),
        Answer::Queued(why) => format!("queued {}\n", why.replace('\n', "; ")),
        Answer::Failed(e) => format!("error {}\n", e.replace('\n', "; ")),
    };
    for mut h in hooks {
        let _ = h.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = h.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_and_anything_else_is_no_answer() {
        assert_eq!(parse("ok 3\n"), Some(Answer::Applied(3)));
        assert_eq!(parse("error eth1: no such interface\n"), Some(Answer::Failed("eth1: no such interface".into())));
        assert_eq!(parse("queued held for 10s\n"), Some(Answer::Queued("held for 10s".into())));
        // Cut short (the watcher died mid-answer) or garbled: the hook runs itself.
        for bad in ["ok 3", "ok\n", "ok x\n", "", "\n", "hello 1\n"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    /// A watcher that stops accepting (stuck in a run) fills its backlog: a hook's connect then
    /// gives up after its wait instead of blocking the DHCP client for good.
    #[test]
    fn a_full_backlog_is_waited_for_a_bounded_time() {
        let dir = std::env::temp_dir().join(format!("stronghost-handoff-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("watch.sock");
        let _listener = UnixListener::bind(&path).unwrap(); // never accepts
        let mut held = Vec::new();
        let full = loop {
            match connect(&path, Instant::now()) {
                Ok(s) => held.push(s),
                Err(e) => break e,
            }
            assert!(held.len() < 100_000, "the backlog never filled");
        };
        assert_eq!(full.raw_os_error(), Some(nix::libc::EAGAIN), "{full}");
        let t = Instant::now();
        assert!(connect(&path, t + Duration::from_millis(200)).is_err());
        assert!((Duration::from_millis(200)..Duration::from_secs(2)).contains(&t.elapsed()), "{:?}", t.elapsed());
        // Nobody listening at all: refused at once, which the hook and `check` tell apart.
        drop(_listener);
        drop(held);
        let e = connect(&path, Instant::now() + Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
