//! stronghost's own records, all root-only and written atomically:
//! - /run/stronghost/iface/<name>.json: the last lease, what stronghost changed on the interface
//!   (sysctl and link-group values before it), per boot like the kernel state it describes;
//! - /var/lib/stronghost/tables.json: interface → routing table, kept across reboots;
//! - /var/lib/stronghost/originals/<name>.json: the sysctl values and link group found before
//!   stronghost changed them, kept across reboots: a VM or container whose interfaces keep their
//!   state over a warm reboot still gets them back on removal;
//! - /run/stronghost/lock: the host-wide lock serialising hooks, the CLI and the watcher;
//! - /run/stronghost/queue/<name>: a hook's event waiting for the lock (the newest per
//!   interface), applied by whichever run holds the lock next: N leases arriving together cost a
//!   few runs, not N.
//!
//! Paths are opened with O_NOFOLLOW and directories checked, so a symlink planted by someone else
//! is refused rather than followed. A corrupt record is reported and rebuilt from the kernel.

use crate::lease::Lease;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const RUN_DIR: &str = "/run/stronghost";
pub const LIB_DIR: &str = "/var/lib/stronghost";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub lease: Option<Lease>,
    /// Sysctl values found before stronghost first changed them, to restore on release.
    #[serde(default)]
    pub saved_sysctls: BTreeMap<String, u32>,
    /// Link group found before stronghost set its own.
    #[serde(default)]
    pub saved_group: Option<u32>,
    /// Whether the policy is in force (the interface had an address at the last apply).
    #[serde(default)]
    pub applied: bool,
    /// Where the IPv4 gateway in force came from (`None`: no gateway known), for status and to
    /// say once when that changes.
    #[serde(default)]
    pub gateway_from: Option<String>,
    /// The interface's index when last applied: a record follows its interface through a rename.
    #[serde(default)]
    pub ifindex: Option<u32>,
}

/// A DHCP client's event for one interface, queued until some run holds the lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub ifname: String,
    /// The lease ended (EXPIRE, RELEASE, STOP…): the interface keeps what it has without a lease.
    pub gone: bool,
    /// The new lease (BOUND, RENEW…); None for an event that only says "look again".
    pub lease: Option<Lease>,
}

pub struct State {
    run: PathBuf,
    lib: PathBuf,
}

/// What a record keeps across reboots: the values to restore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Originals {
    #[serde(default)]
    saved_sysctls: BTreeMap<String, u32>,
    #[serde(default)]
    saved_group: Option<u32>,
}

fn ensure_dir(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_dir() && m.uid() == nix::unistd::geteuid().as_raw() => Ok(()),
        Ok(_) => Err(io::Error::other(format!("{} is not a directory owned by us; remove it", p.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new().recursive(false).mode(0o700).create(p).or_else(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(io::Error::new(
                    e.kind(),
                    format!("cannot create {}: {e}; stronghost keeps its lock and records there, so nothing was changed", p.display()),
                ))
            }
        }),
        Err(e) => Err(e),
    }
}

fn read_nofollow(p: &Path) -> io::Result<Option<String>> {
    match OpenOptions::new().read(true).custom_flags(libc_o_nofollow()).open(p) {
        Ok(mut f) => {
            let mut s = String::new();
            f.read_to_string(&mut s)?;
            Ok(Some(s))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
    }
}

fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// Write to a fresh temporary file beside the target, fsync, rename: readers see old or new.
fn write_atomic(p: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = write_new(p, data, true)?;
    fs::rename(&tmp, p)
}

/// Writes `data` to a fresh temporary file beside `p` (flushed if `sync`); returns its path.
fn write_new(p: &Path, data: &[u8], sync: bool) -> io::Result<PathBuf> {
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc_o_nofollow()).open(&tmp)?;
    f.write_all(data)?;
    if sync {
        f.sync_all()?;
    }
    Ok(tmp)
}

impl State {
    pub fn open() -> io::Result<State> {
        let s = State { run: PathBuf::from(RUN_DIR), lib: PathBuf::from(LIB_DIR) };
        ensure_dir(&s.run)?;
        ensure_dir(&s.run.join("iface"))?;
        ensure_dir(&s.lib)?;
        Ok(s)
    }

    /// Takes the host-wide lock, waiting at most `wait`.
    pub fn lock(&self, wait: Duration) -> io::Result<Flock<File>> {
        let p = self.run.join("lock");
        let f = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).custom_flags(libc_o_nofollow()).open(&p)?;
        let f = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((f, _)) => f,
        };
        // Held: wait in the kernel's queue, woken when it is let go, from a thread so that the
        // wait can end. (Polling instead, a thousand hooks waiting in a boot storm took the CPU
        // from the one holding the lock.) A thread left waiting after the time is up takes the
        // lock and, nobody listening, lets it go at once.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e)));
        });
        match rx.recv_timeout(wait) {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("another stronghost has held {} for {}s; is one stuck? (see `ps -C stronghost`)", p.display(), wait.as_secs()),
            )),
        }
    }

    /// Removes half-written files left by a stronghost that died mid-write, and the originals
    /// directory if one that died mid-release left it empty. Only called with the lock held: every
    /// writer holds it, so any temporary file found then is an orphan.
    pub fn clean_temporaries(&self) {
        for dir in [self.run.join("iface"), self.lib.clone(), self.lib.join("originals")] {
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.rsplit_once(".tmp").is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let _ = fs::remove_dir(self.lib.join("originals"));
    }

    fn record_path(&self, ifname: &str) -> PathBuf {
        self.run.join("iface").join(format!("{ifname}.json"))
    }

    fn originals_path(&self, ifname: &str) -> PathBuf {
        self.lib.join("originals").join(format!("{ifname}.json"))
    }

    /// The interface's record; a corrupt one is reported and treated as absent. The values to
    /// restore come from /var/lib when /run has none (after a reboot).
    pub fn record(&self, ifname: &str) -> Record {
        let read = |p: &Path| -> Option<String> {
            read_nofollow(p).unwrap_or_else(|e| {
                log::warn!("{e}; rebuilding the record from the kernel");
                None
            })
        };
        fn parse<T: serde::de::DeserializeOwned>(p: &Path, s: String) -> Option<T> {
            serde_json::from_str(&s).map_err(|e| log::warn!("{}: corrupt ({e}); rebuilding it from the kernel", p.display())).ok()
        }
        let mut r: Record = read(&self.record_path(ifname)).and_then(|s| parse(&self.record_path(ifname), s)).unwrap_or_default();
        let o: Option<Originals> = read(&self.originals_path(ifname)).and_then(|s| parse(&self.originals_path(ifname), s));
        if let Some(o) = o {
            for (k, v) in o.saved_sysctls {
                r.saved_sysctls.entry(k).or_insert(v);
            }
            r.saved_group = r.saved_group.or(o.saved_group);
        }
        r
    }

    /// Saves the records a run changed (`before`: what was on disk). The originals under
    /// /var/lib are written only where they changed — once in an interface's life — and made
    /// durable together: every new file written, one syncfs, then each renamed over the old one
    /// (a crash leaves old or new, never an empty file), then the directory flushed. The records
    /// themselves are in /run (tmpfs).
    pub fn save_records(&self, batch: &[(&str, &Record, Option<&Record>)]) -> io::Result<()> {
        let of = |r: &Record| Originals { saved_sysctls: r.saved_sysctls.clone(), saved_group: r.saved_group };
        let mut originals = Vec::new();
        for (name, r, before) in batch {
            let o = of(r);
            let p = self.originals_path(name);
            if o != Originals::default() && (before.map(&of) != Some(o.clone()) || !p.exists()) {
                originals.push((p, serde_json::to_string_pretty(&o)?));
            }
        }
        if !originals.is_empty() {
            let dir = self.lib.join("originals");
            ensure_dir(&dir)?;
            let mut staged = Vec::with_capacity(originals.len());
            for (p, text) in &originals {
                staged.push((write_new(p, text.as_bytes(), false)?, p));
            }
            nix::unistd::syncfs(File::open(&dir)?).map_err(io::Error::from)?;
            for (tmp, p) in staged {
                fs::rename(tmp, p)?;
            }
            File::open(&dir)?.sync_all()?;
        }
        for (name, r, _) in batch {
            write_atomic(&self.record_path(name), serde_json::to_string_pretty(r)?.as_bytes())?;
        }
        Ok(())
    }

    pub fn remove_record(&self, ifname: &str) -> io::Result<()> {
        for p in [self.record_path(ifname), self.originals_path(ifname)] {
            match fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        // The last one gone: leave /var/lib/stronghost as it was before (fails while not empty).
        let _ = fs::remove_dir(self.lib.join("originals"));
        Ok(())
    }

    /// Names of every interface that has a record, or values to restore from before a reboot.
    /// Queues a hook's event, under a name that sorts by time of arrival. Written atomically:
    /// the lock is not needed.
    pub fn enqueue(&self, q: &Queued) -> io::Result<()> {
        crate::net::check_ifname(&q.ifname).map_err(io::Error::other)?;
        let dir = self.run.join("queue");
        ensure_dir(&dir)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let name = format!("{:020}-{}-{}", now.as_nanos(), std::process::id(), q.ifname);
        write_atomic(&dir.join(name), serde_json::to_string(q)?.as_bytes())
    }

    /// Takes every queued event (call with the lock held), merged per interface in order of
    /// arrival: the last word on a lease wins, and an event that carries no lease keeps the one
    /// before it. Each entry is renamed away before it is read; entries a crashed holder had taken
    /// are taken again.
    pub fn take_queue(&self) -> Vec<Queued> {
        let dir = self.run.join("queue");
        let Ok(entries) = fs::read_dir(&dir) else { return vec![] };
        let mut names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        // Arrival order; an entry taken by a crashed holder sorts as what it was.
        names.sort_by(|a, b| a.trim_start_matches(".taken-").cmp(b.trim_start_matches(".taken-")));
        let mut out: Vec<Queued> = Vec::new();
        for name in names {
            if name.rsplit_once(".tmp").is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())) {
                continue; // being written
            }
            let taken = if name.starts_with(".taken-") {
                dir.join(&name)
            } else {
                let t = dir.join(format!(".taken-{name}"));
                if fs::rename(dir.join(&name), &t).is_err() {
                    continue;
                }
                t
            };
            let text = read_nofollow(&taken).ok().flatten();
            let _ = fs::remove_file(&taken);
            match text.as_deref().map(serde_json::from_str::<Queued>) {
                Some(Ok(q)) if crate::net::check_ifname(&q.ifname).is_ok() => match out.iter_mut().find(|o| o.ifname == q.ifname) {
                    Some(o) => {
                        if q.gone || q.lease.is_some() {
                            *o = q;
                        }
                    }
                    None => out.push(q),
                },
                _ => log::warn!("{}: not a queued event; ignored", taken.display()),
            }
        }
        out
    }

    pub fn recorded(&self) -> Vec<String> {
        let mut v: Vec<String> = [self.run.join("iface"), self.lib.join("originals")]
            .iter()
            .flat_map(|d| fs::read_dir(d).into_iter().flatten().flatten())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn tables(&self) -> BTreeMap<String, u32> {
        let p = self.lib.join("tables.json");
        match read_nofollow(&p) {
            Ok(Some(s)) => serde_json::from_str(&s).unwrap_or_else(|e| {
                log::warn!("{}: corrupt ({e}); table numbers will be allocated anew", p.display());
                BTreeMap::new()
            }),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                log::warn!("{e}");
                BTreeMap::new()
            }
        }
    }

    pub fn save_tables(&self, t: &BTreeMap<String, u32>) -> io::Result<()> {
        write_atomic(&self.lib.join("tables.json"), serde_json::to_string_pretty(t)?.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (State, PathBuf) {
        let d = std::env::temp_dir().join(format!("stronghost-state-test-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let s = State { run: d.join("run"), lib: d.join("lib") };
        ensure_dir(&s.run).unwrap();
        (s, d)
    }

    fn lease(last: u8) -> Lease {
        Lease { address: Ipv4Addr::new(198, 51, 100, last), prefix_len: 24, gateway: None, routes: vec![], source: "dhclient".into() }
    }

    use std::net::Ipv4Addr;

    #[test]
    fn the_lock_is_waited_for_and_the_wait_ends() {
        let (s, d) = state();
        let held = s.lock(Duration::from_millis(10)).unwrap();
        let t = std::time::Instant::now();
        let e = s.lock(Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(t.elapsed() >= Duration::from_millis(200) && e.to_string().contains("held"), "{e}");
        // Let go while another waits: that one has it at once.
        let waiter = std::thread::spawn({
            let s = State { run: s.run.clone(), lib: s.lib.clone() };
            move || s.lock(Duration::from_secs(5)).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        waiter.join().unwrap().unwrap();
        // The thread left waiting by the first attempt let it go too (it would hold it forever).
        assert!(s.lock(Duration::from_secs(2)).is_ok());
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn queued_events_merge_per_interface_in_order_of_arrival() {
        let (s, d) = state();
        let q = |n: &str, gone: bool, l: Option<Lease>| Queued { ifname: n.into(), gone, lease: l };
        s.enqueue(&q("eth1", false, Some(lease(11)))).unwrap();
        s.enqueue(&q("eth2", false, Some(lease(12)))).unwrap();
        // "Look again" keeps the lease before it; a newer lease or its end replaces it.
        s.enqueue(&q("eth1", false, None)).unwrap();
        s.enqueue(&q("eth2", true, None)).unwrap();
        s.enqueue(&q("eth3", true, None)).unwrap();
        s.enqueue(&q("eth3", false, Some(lease(13)))).unwrap();
        let mut got = s.take_queue();
        got.sort_by(|a, b| a.ifname.cmp(&b.ifname));
        assert_eq!(got, vec![q("eth1", false, Some(lease(11))), q("eth2", true, None), q("eth3", false, Some(lease(13)))]);
        assert!(s.take_queue().is_empty(), "taken once");
        // An entry a crashed holder had renamed away is taken again; garbage is skipped.
        s.enqueue(&q("eth4", false, Some(lease(14)))).unwrap();
        let dir = s.run.join("queue");
        let name = fs::read_dir(&dir).unwrap().flatten().next().unwrap().file_name().into_string().unwrap();
        fs::rename(dir.join(&name), dir.join(format!(".taken-{name}"))).unwrap();
        fs::write(dir.join("00000000000000000001-1-bad"), "{not json").unwrap();
        assert_eq!(s.take_queue(), vec![q("eth4", false, Some(lease(14)))]);
        assert!(s.enqueue(&q("../etc", false, None)).is_err(), "a name that is not an interface's is refused");
        let _ = fs::remove_dir_all(d);
    }
}
