//! stronghost's own records, all root-only and written atomically:
//! - /run/stronghost/iface/<name>.json: the last lease, what stronghost changed on the interface
//!   (sysctl and link-group values before it), per boot like the kernel state it describes;
//! - /var/lib/stronghost/tables.json: interface → routing table, kept across reboots;
//! - /var/lib/stronghost/originals.json: per interface, the sysctl values and link group found
//!   before stronghost changed them, kept across reboots: a VM or container whose interfaces keep
//!   their state over a warm reboot still gets them back on removal. One file, one line per
//!   interface: a run that takes on a thousand interfaces writes one file, not a thousand. 0.2 kept one file each under originals/; they are
//!   read still and folded into originals.json by the next write;
//! - /run/stronghost/lock: the host-wide lock serialising hooks, the CLI and the watcher;
//! - /run/stronghost/queue/<time>-<pid>-<interface>.event: a hook's event waiting for the lock (the newest per
//!   interface), applied by whichever run holds the lock next: N leases arriving together cost a
//!   few runs, not N.
//!
//! Paths are opened with O_NOFOLLOW and directories checked, so a symlink planted by someone else
//! is refused rather than followed. A corrupt record is reported and rebuilt from the kernel.

use crate::model::lease::Lease;
use crate::model::record::{Names, Record, Tables};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const RUN_DIR: &str = "/run/stronghost";

pub const LIB_DIR: &str = "/var/lib/stronghost";

/// The suffix of a queued event's file.
const QUEUED: &str = ".event";

/// A queue entry still being written (`write_atomic`'s `<name>.tmp<pid>`).
fn being_written(name: &str) -> bool {
    name.rsplit_once(".tmp").is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
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
    /// The watcher's copies of `recorded()` and `tables()` (`keep_copies`), valid while the lock's
    /// epochs say no other process has written: an event then does not list every record or parse
    /// the table map.
    copies: Option<RefCell<Copies>>,
    /// originals.json as last read or written by this process, with the stamps it had then.
    originals: RefCell<Option<(OriginalsMap, [Stamp; 2])>>,
    /// Opened by a command that only reads (`plan`, `status`, `check`): it creates no directory
    /// and removes no file.
    read_only: bool,
    /// When each interface's event last taken from the queue was first queued (`requeue`).
    taken_at: RefCell<BTreeMap<String, u128>>,
}

/// The values to restore, by interface name, each kept as the file has it and decoded only when
/// wanted: most runs need the names alone.
type OriginalsMap = std::rc::Rc<BTreeMap<String, Box<RawValue>>>;

fn decode(name: &str, raw: &RawValue) -> Option<Originals> {
    serde_json::from_str(raw.get()).map_err(|e| log::warn!("{LIB_DIR}/originals.json: {name}: corrupt ({e}); ignored")).ok()
}

/// Copies of what is on disk, good while no other process has taken the lock since they were
/// made (every holder of the lock counts itself in the lock file, `lock`) and the files and
/// directories they come from are unchanged (an edit by hand takes no lock). This process's own
/// writes update them.
#[derive(Default)]
struct Copies {
    /// The count this process left in the lock file when it last took the lock.
    epoch: u64,
    names: Option<(Names, [Stamp; 3])>,
    tables: Option<(Tables, Stamp)>,
}

/// The count of lock holders in the lock file (empty: none yet).
fn count_in(f: &File) -> io::Result<u64> {
    let mut count = [0u8; 20];
    let n = f.read_at(&mut count, 0)?;
    Ok(std::str::from_utf8(&count[..n]).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0))
}

/// What tells that a file or directory changed: any write gives it another (device, inode,
/// modification time, size).
type Stamp = Option<(u64, u64, i64, i64, u64)>;

fn stamp(p: &Path) -> Stamp {
    fs::symlink_metadata(p).ok().map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// What a record keeps across reboots: the values to restore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Originals {
    #[serde(default)]
    saved_sysctls: BTreeMap<String, u32>,
    #[serde(default)]
    saved_group: Option<u32>,
}

/// A state directory as stronghost needs it: a directory of its user's (root's), that nobody else
/// may write to — whoever can create the lock file there can hold it and stop every run, and
/// whoever can write a record decides what is restored.
fn ensure_dir(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0 => Ok(()),
        Ok(m) if m.file_type().is_dir() && m.uid() == nix::unistd::geteuid().as_raw() => Err(io::Error::other(format!(
            "{} is writable by others (mode {:04o}): anyone could hold stronghost's lock or change its records; \
             `chmod 0700 {}` (and fix the tmpfiles.d or unit that made it so)",
            p.display(),
            m.mode() & 0o7777,
            p.display()
        ))),
        Ok(_) => Err(io::Error::other(format!("{} is not a directory owned by this user; remove it", p.display()))),
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

/// Writes to a temporary file beside `p` and renames it over `p`: readers see the old content or
/// the new, never part of either. `durable`: flushed to disk before the rename, for /var/lib;
/// /run is tmpfs, which a power cut empties anyway, so flushing there would only cost time.
fn write_atomic(p: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    // `<name>.tmp<pid>` (`being_written`). A dead writer's file of the same name is truncated:
    // the directories are root's alone (0700), and O_NOFOLLOW keeps the open on the file itself.
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).custom_flags(libc_o_nofollow()).open(&tmp)?;
    f.write_all(data)?;
    if durable {
        f.sync_all()?;
    }
    drop(f);
    fs::rename(&tmp, p)
}

impl State {
    fn at(run: PathBuf, lib: PathBuf) -> State {
        State { run, lib, copies: None, originals: RefCell::new(None), read_only: false, taken_at: RefCell::default() }
    }

    /// For a command that only reads: the directories are checked where they exist and created
    /// nowhere (a host stronghost never ran on has none, and nothing to read in them).
    pub fn open_read_only() -> io::Result<State> {
        let s = State { read_only: true, ..State::at(PathBuf::from(RUN_DIR), PathBuf::from(LIB_DIR)) };
        for d in [&s.run, &s.run.join("iface"), &s.lib] {
            if fs::symlink_metadata(d).is_ok() {
                ensure_dir(d)?;
            }
        }
        Ok(s)
    }

    pub fn open() -> io::Result<State> {
        let s = State::at(PathBuf::from(RUN_DIR), PathBuf::from(LIB_DIR));
        ensure_dir(&s.run)?;
        ensure_dir(&s.run.join("iface"))?;
        ensure_dir(&s.lib)?;
        Ok(s)
    }

    /// Keeps copies of `recorded()` and `tables()` between runs (the watcher).
    pub fn keep_copies(&mut self) {
        self.copies = Some(RefCell::new(Copies::default()));
    }

    /// Takes the host-wide lock, waiting at most `wait`, and counts this holder in the lock file:
    /// a process keeping copies of the records (`keep_copies`) finds its own count there next
    /// time only if nobody else has held the lock, and changed them, since.
    /// `None` for a reader when /run/stronghost does not exist: no run has left anything to be
    /// consistent with.
    pub fn lock(&self, wait: Duration) -> io::Result<Option<Flock<File>>> {
        if self.read_only && fs::symlink_metadata(&self.run).is_err() {
            return Ok(None);
        }
        let held = self.lock_file(wait)?;
        let epoch = count_in(&held)?;
        let next = epoch.wrapping_add(1);
        let text = format!("{next:<19}\n");
        held.write_at(text.as_bytes(), 0)?;
        match &self.copies {
            Some(c) => {
                let mut c = c.borrow_mut();
                if c.epoch != epoch {
                    *c = Copies::default();
                    self.originals.take();
                }
                c.epoch = next;
            }
            // Not counting: whatever was read before the lock is read again.
            None => drop(self.originals.take()),
        }
        Ok(Some(held))
    }

    /// Whether the copies may still be good: nobody else has taken the lock since this process
    /// last did (read without taking it: a holder counts itself as soon as it has it).
    fn copies_current(&self) -> bool {
        let Some(c) = &self.copies else { return false };
        let f = OpenOptions::new().read(true).custom_flags(libc_o_nofollow()).open(self.run.join("lock"));
        f.and_then(|f| count_in(&f)).is_ok_and(|n| n == c.borrow().epoch)
    }

    fn lock_file(&self, wait: Duration) -> io::Result<Flock<File>> {
        let p = self.run.join("lock");
        let f =
            OpenOptions::new().create(true).truncate(false).read(true).write(true).mode(0o600).custom_flags(libc_o_nofollow()).open(&p)?;
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
        if self.read_only {
            return;
        }
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

    fn forget_names(&self) {
        if let Some(c) = &self.copies {
            c.borrow_mut().names = None;
        }
    }

    /// What `names()` lists: the records, originals.json and 0.2's originals directory.
    fn names_stamp(&self) -> [Stamp; 3] {
        let [file, dir] = self.originals_stamp();
        [stamp(&self.run.join("iface")), file, dir]
    }

    fn originals_stamp(&self) -> [Stamp; 2] {
        [stamp(&self.lib.join("originals.json")), stamp(&self.lib.join("originals"))]
    }

    fn record_path(&self, ifname: &str) -> PathBuf {
        self.run.join("iface").join(format!("{ifname}.json"))
    }

    /// The interface's record; a corrupt one is reported and treated as absent. The values to
    /// restore come from /var/lib when /run has none (after a reboot): the two are written
    /// together, /var/lib first.
    pub fn record(&self, ifname: &str) -> Record {
        let p = self.record_path(ifname);
        let text = read_nofollow(&p).unwrap_or_else(|e| {
            log::warn!("{e}; rebuilding the record from the kernel");
            None
        });
        let mut r: Record = text
            .and_then(|s| {
                serde_json::from_str(&s).map_err(|e| log::warn!("{}: corrupt ({e}); rebuilding it from the kernel", p.display())).ok()
            })
            .unwrap_or_default();
        if r.saved_sysctls.is_empty()
            && r.saved_group.is_none()
            && let Some(o) = self.originals().get(ifname).and_then(|raw| decode(ifname, raw))
        {
            r.saved_sysctls = o.saved_sysctls.clone();
            r.saved_group = o.saved_group;
        }
        r
    }

    /// Every interface's values to restore (shared with this process's copy while the files are
    /// unchanged and, for the watcher, nobody else has taken the lock).
    fn originals(&self) -> OriginalsMap {
        let st = self.originals_stamp();
        if let Some((o, was)) = &*self.originals.borrow()
            && *was == st
            && (self.copies.is_none() || self.copies_current())
        {
            return o.clone();
        }
        let o = OriginalsMap::new(self.read_originals());
        *self.originals.borrow_mut() = Some((o.clone(), st));
        o
    }

    /// originals.json, and what 0.2 left in originals/ for interfaces it does not name.
    fn read_originals(&self) -> BTreeMap<String, Box<RawValue>> {
        fn parse<T: serde::de::DeserializeOwned>(p: &Path) -> Option<T> {
            let text = read_nofollow(p).unwrap_or_else(|e| {
                log::warn!("{e}");
                None
            })?;
            serde_json::from_str(&text).map_err(|e| log::warn!("{}: corrupt ({e}); ignored", p.display())).ok()
        }
        let mut map: BTreeMap<String, Box<RawValue>> = parse(&self.lib.join("originals.json")).unwrap_or_default();
        for e in fs::read_dir(self.lib.join("originals")).into_iter().flatten().flatten() {
            let Some(name) = e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string) else { continue };
            if crate::model::net::check_ifname(&name).is_ok()
                && !map.contains_key(&name)
                && let Some(o) = parse::<Originals>(&e.path())
                && let Ok(raw) = serde_json::value::to_raw_value(&o)
            {
                map.insert(name, raw);
            }
        }
        map
    }

    /// Writes every interface's values to restore, durably (file, then directory), before the
    /// writes they are for; then removes 0.2's directory, folded in. None left: no file.
    fn write_originals(&self, map: BTreeMap<String, Box<RawValue>>) -> io::Result<()> {
        let p = self.lib.join("originals.json");
        if map.is_empty() {
            match fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            // One line per interface: readable, and a fraction of the pretty form's size.
            let mut text = String::from("{\n");
            for (i, (name, o)) in map.iter().enumerate() {
                let sep = if i + 1 < map.len() { "," } else { "" };
                text += &format!("  {}: {}{sep}\n", serde_json::to_string(name)?, o.get());
            }
            text += "}\n";
            write_atomic(&p, text.as_bytes(), true)?;
        }
        File::open(&self.lib)?.sync_all()?;
        let legacy = self.lib.join("originals");
        if fs::symlink_metadata(&legacy).is_ok_and(|m| m.is_dir()) {
            for e in fs::read_dir(&legacy).into_iter().flatten().flatten() {
                let _ = fs::remove_file(e.path());
            }
            let _ = fs::remove_dir(&legacy);
        }
        *self.originals.borrow_mut() = Some((OriginalsMap::new(map), self.originals_stamp()));
        Ok(())
    }

    /// Saves the records a run changed (`before`: what was on disk). The values to restore go to
    /// /var/lib only where they changed — once in an interface's life — in one durable write
    /// made before the record; the records themselves are in /run (tmpfs).
    pub fn save_records(&self, batch: &[(&str, &Record, Option<&Record>)]) -> io::Result<()> {
        let of = |r: &Record| Originals { saved_sysctls: r.saved_sysctls.clone(), saved_group: r.saved_group };
        let originals = self.originals();
        let mut changed = BTreeMap::new();
        for (name, r, _) in batch {
            let o = of(r);
            if o != Originals::default() && originals.get(*name).and_then(|raw| decode(name, raw)).as_ref() != Some(&o) {
                changed.insert(name.to_string(), serde_json::value::to_raw_value(&o)?);
            }
        }
        // 0.2's directory is folded in by the first run that writes a record.
        if !changed.is_empty() || (!batch.is_empty() && self.originals_stamp()[1].is_some()) {
            let mut map = (*originals).clone();
            map.extend(changed);
            self.write_originals(map)?;
        }
        for (name, r, _) in batch {
            if let Err(e) = write_atomic(&self.record_path(name), serde_json::to_string_pretty(r)?.as_bytes(), false) {
                self.forget_names();
                return Err(e);
            }
        }
        if let Some(c) = &self.copies {
            let mut c = c.borrow_mut();
            if let Some((names, st)) = c.names.as_mut() {
                if batch.iter().any(|(n, _, _)| !names.contains(*n)) {
                    std::rc::Rc::make_mut(names).extend(batch.iter().map(|(n, _, _)| n.to_string()));
                }
                *st = self.names_stamp();
            }
        }
        Ok(())
    }

    /// Forgets interfaces: their records and values to restore (one write for all of them).
    pub fn remove_records(&self, names: &[&str]) -> io::Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        self.forget_names();
        for n in names {
            match fs::remove_file(self.record_path(n)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let originals = self.originals();
        if names.iter().any(|n| originals.contains_key(*n)) || self.originals_stamp()[1].is_some() {
            let mut map = (*originals).clone();
            for n in names {
                map.remove(*n);
            }
            self.write_originals(map)?;
        }
        Ok(())
    }

    /// Queues a hook's event, under a name that sorts by time of arrival. Written atomically:
    /// the lock is not needed.
    pub fn enqueue(&self, q: &Queued) -> io::Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        self.enqueue_at(q, now)
    }

    /// Puts back an event taken from the queue whose run failed, under the time it was first
    /// queued: `check` tells an event nobody could apply by its age.
    pub fn requeue(&self, q: &Queued) -> io::Result<()> {
        let at = self.taken_at.borrow().get(&q.ifname).copied();
        match at {
            Some(at) => self.enqueue_at(q, at),
            None => self.enqueue(q),
        }
    }

    fn enqueue_at(&self, q: &Queued, nanos: u128) -> io::Result<()> {
        crate::model::net::check_ifname(&q.ifname).map_err(io::Error::other)?;
        let dir = self.run.join("queue");
        ensure_dir(&dir)?;
        // The suffix keeps a final name from ever looking like a temporary one (`being_written`):
        // an interface may well be called `e.tmp1`.
        let name = format!("{nanos:020}-{}-{}{QUEUED}", std::process::id(), q.ifname);
        write_atomic(&dir.join(name), serde_json::to_string(q)?.as_bytes(), false)
    }

    /// Interfaces with an event queued before `cutoff` (taken by a run that died included): an
    /// event no run has applied for that long. Reads the names only.
    pub fn queued_before(&self, cutoff: std::time::SystemTime) -> Vec<String> {
        let cutoff = cutoff.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let Ok(entries) = fs::read_dir(self.run.join("queue")) else { return vec![] };
        let mut out: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|name| {
                // `<nanoseconds>-<pid>-<ifname>.event` (0.2: without the suffix).
                let mut parts = name.trim_start_matches(".taken-").splitn(3, '-');
                let (at, _pid, ifname) = (parts.next()?.parse::<u128>().ok()?, parts.next()?, parts.next()?);
                let ifname = ifname.strip_suffix(QUEUED).unwrap_or(ifname);
                (at < cutoff && !being_written(&name)).then(|| ifname.to_string())
            })
            .collect();
        out.sort();
        out.dedup();
        out
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
            if being_written(&name) {
                continue;
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
            let at = name.trim_start_matches(".taken-").split('-').next().and_then(|t| t.parse::<u128>().ok());
            match text.as_deref().map(serde_json::from_str::<Queued>) {
                Some(Ok(q)) if crate::model::net::check_ifname(&q.ifname).is_ok() => {
                    if let Some(at) = at {
                        self.taken_at.borrow_mut().entry(q.ifname.clone()).and_modify(|t| *t = (*t).min(at)).or_insert(at);
                    }
                    match out.iter_mut().find(|o| o.ifname == q.ifname) {
                        Some(o) => {
                            if q.gone || q.lease.is_some() {
                                *o = q;
                            }
                        }
                        None => out.push(q),
                    }
                }
                _ => log::warn!("{}: not a queued event; ignored", taken.display()),
            }
        }
        out
    }

    /// Names of every interface that has a record, or values to restore from before a reboot
    /// (shared with the watcher's copy).
    pub fn names(&self) -> Names {
        let st = self.copies.as_ref().map(|_| self.names_stamp());
        if let Some(c) = &self.copies
            && let Some((v, was)) = &c.borrow().names
            && Some(was) == st.as_ref()
            && self.copies_current()
        {
            return v.clone();
        }
        let v: Names = Names::new(self.list_names().into_iter().collect());
        if let (Some(c), Some(st)) = (&self.copies, st) {
            c.borrow_mut().names = Some((v.clone(), st));
        }
        v
    }

    fn list_names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.run.join("iface"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
            .collect();
        v.extend(self.originals().keys().cloned());
        v.sort();
        v.dedup();
        v
    }

    pub fn tables(&self) -> Tables {
        let p = self.lib.join("tables.json");
        let st = self.copies.as_ref().map(|_| stamp(&p));
        if let Some(c) = &self.copies
            && let Some((t, was)) = &c.borrow().tables
            && Some(was) == st.as_ref()
            && self.copies_current()
        {
            return t.clone();
        }
        let t = Tables::new(self.read_tables());
        if let (Some(c), Some(st)) = (&self.copies, st) {
            c.borrow_mut().tables = Some((t.clone(), st));
        }
        t
    }

    fn read_tables(&self) -> BTreeMap<String, u32> {
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
        let p = self.lib.join("tables.json");
        let written = write_atomic(&p, serde_json::to_string_pretty(t)?.as_bytes(), true);
        if let Some(c) = &self.copies {
            c.borrow_mut().tables = written.is_ok().then(|| (Tables::new(t.clone()), stamp(&p)));
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (State, PathBuf) {
        let d = std::env::temp_dir().join(format!("stronghost-state-test-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let s = State::at(d.join("run"), d.join("lib"));
        ensure_dir(&s.run).unwrap();
        (s, d)
    }

    /// `check` finds an event nobody applied; a fresh one, one being written or a stray file is
    /// not reported.
    #[test]
    fn events_left_in_the_queue_are_found_by_age() {
        let (s, d) = state();
        let q = Queued { ifname: "eth0.100".into(), gone: false, lease: Some(lease(7)) };
        s.enqueue(&q).unwrap();
        let dir = s.run.join("queue");
        fs::write(dir.join("00000000001600000000-9-eth1.tmp9"), "{").unwrap();
        fs::write(dir.join("junk"), "").unwrap();
        let now = std::time::SystemTime::now();
        assert!(s.queued_before(now - std::time::Duration::from_secs(30)).is_empty());
        assert_eq!(s.queued_before(now + std::time::Duration::from_secs(1)), ["eth0.100"]);
        // Taken by a run that died: still not applied.
        let name = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .find(|n| n.ends_with("eth0.100.event"))
            .unwrap();
        fs::rename(dir.join(&name), dir.join(format!(".taken-{name}"))).unwrap();
        assert_eq!(s.queued_before(now + std::time::Duration::from_secs(1)), ["eth0.100"]);
        assert_eq!(s.take_queue(), [q]);
        assert!(s.queued_before(now + std::time::Duration::from_secs(1)).is_empty());
        // An interface whose name looks like a temporary file's: its event is an event.
        let odd = Queued { ifname: "e.tmp1".into(), gone: false, lease: None };
        s.enqueue(&odd).unwrap();
        assert_eq!(s.queued_before(std::time::SystemTime::now() + std::time::Duration::from_secs(1)), ["e.tmp1"]);
        assert_eq!(s.take_queue(), [odd]);
        let _ = fs::remove_dir_all(&d);
    }

    fn lease(last: u8) -> Lease {
        Lease { address: Ipv4Addr::new(198, 51, 100, last), prefix_len: 24, gateway: None, routes: vec![], source: "dhclient".into() }
    }

    use std::net::Ipv4Addr;

    /// The watcher's copies of the names and tables follow every change: its own, another
    /// process's under the lock (counted in the lock file), and an edit by hand (no lock).
    #[test]
    fn copies_follow_every_writer() {
        let recorded = |s: &State| s.names().iter().cloned().collect::<Vec<_>>();
        let (mut watcher, d) = state();
        watcher.keep_copies();
        ensure_dir(&watcher.run.join("iface")).unwrap();
        ensure_dir(&watcher.lib).unwrap();
        let other = State::at(watcher.run.clone(), watcher.lib.clone());
        let rec = |n: u8| Record { lease: Some(lease(n)), ..Default::default() };
        let tables = |v: &[(&str, u32)]| v.iter().map(|(n, t)| (n.to_string(), *t)).collect::<BTreeMap<_, _>>();
        {
            let _l = watcher.lock(Duration::from_secs(1)).unwrap();
            watcher.save_records(&[("eth0", &rec(10), None)]).unwrap();
            watcher.save_tables(&tables(&[("eth0", 4101)])).unwrap();
            assert_eq!((recorded(&watcher), (*watcher.tables()).clone()), (vec!["eth0".to_string()], tables(&[("eth0", 4101)])));
        }
        {
            // Its own writes, under a lock nobody else took in between: the copies answer.
            let _l = watcher.lock(Duration::from_secs(1)).unwrap();
            watcher.save_records(&[("eth1", &rec(11), None)]).unwrap();
            assert_eq!(recorded(&watcher), ["eth0", "eth1"]);
            let epoch = watcher.copies.as_ref().unwrap().borrow().epoch;
            assert!(watcher.copies_current() && epoch > 0);
        }
        {
            // Another process: the same size of file, within the same clock tick, maybe.
            let _l = other.lock(Duration::from_secs(1)).unwrap();
            other.save_tables(&tables(&[("eth0", 4102)])).unwrap();
            other.remove_records(&["eth1"]).unwrap();
        }
        // Counted: the copies are not trusted, whatever the files' stamps say.
        assert!(!watcher.copies_current());
        {
            let _l = watcher.lock(Duration::from_secs(1)).unwrap();
            assert_eq!((recorded(&watcher), (*watcher.tables()).clone()), (vec!["eth0".to_string()], tables(&[("eth0", 4102)])));
        }
        // An edit by hand takes no lock: the file's stamp tells.
        fs::write(watcher.lib.join("tables.json"), r#"{"eth0": 4103}"#).unwrap();
        let _l = watcher.lock(Duration::from_secs(1)).unwrap();
        assert_eq!(*watcher.tables(), tables(&[("eth0", 4103)]));
        let _ = fs::remove_dir_all(d);
    }

    /// The values to restore outlive /run (a warm reboot) in one file, a line per interface;
    /// 0.2's file per interface is read and folded in; forgetting the last removes the file.
    #[test]
    fn originals_outlive_a_reboot_in_one_file() {
        let (s, d) = state();
        ensure_dir(&s.run.join("iface")).unwrap();
        ensure_dir(&s.lib).unwrap();
        let rec = |v: u32| Record {
            saved_sysctls: [("arp_ignore".to_string(), v), ("arp_filter".to_string(), 0)].into(),
            saved_group: Some(v),
            applied: true,
            ..Default::default()
        };
        // 0.2 left eth7's in a file of its own (pretty, as it wrote them); and a stray file.
        fs::create_dir(s.lib.join("originals")).unwrap();
        fs::write(s.lib.join("originals/eth7.json"), "{\n  \"saved_sysctls\": {\"arp_ignore\": 2},\n  \"saved_group\": 7\n}").unwrap();
        fs::write(s.lib.join("originals/not an interface.json"), "{}").unwrap();
        {
            let _l = s.lock(Duration::from_secs(1)).unwrap();
            assert_eq!(s.names().iter().cloned().collect::<Vec<_>>(), ["eth7"]);
            assert_eq!((s.record("eth7").saved_sysctls["arp_ignore"], s.record("eth7").saved_group), (2, Some(7)));
            s.save_records(&[("eth0", &rec(1), None), ("eth1", &rec(2), None)]).unwrap();
        }
        let text = fs::read_to_string(s.lib.join("originals.json")).unwrap();
        assert_eq!(text.lines().count(), 5, "one line per interface:\n{text}");
        assert!(!s.lib.join("originals").exists(), "0.2's directory folded in");
        // A converged run writes nothing: the file keeps its stamp.
        let before = stamp(&s.lib.join("originals.json"));
        s.save_records(&[("eth0", &Record { lease: Some(lease(9)), ..rec(1) }, Some(&rec(1)))]).unwrap();
        assert_eq!(stamp(&s.lib.join("originals.json")), before);
        // Warm reboot: /run is empty, another process reads.
        fs::remove_dir_all(s.run.join("iface")).unwrap();
        ensure_dir(&s.run.join("iface")).unwrap();
        let after = State::at(s.run.clone(), s.lib.clone());
        assert_eq!(after.names().iter().cloned().collect::<Vec<_>>(), ["eth0", "eth1", "eth7"]);
        let r = after.record("eth1");
        assert_eq!((r.saved_sysctls, r.saved_group, r.applied), (rec(2).saved_sysctls, Some(2), false));
        // What /run says wins over the file (they are written together; /run is the newer).
        after.save_records(&[("eth1", &rec(3), None)]).unwrap();
        assert_eq!(after.record("eth1").saved_group, Some(3));
        after.remove_records(&["eth0", "eth7"]).unwrap();
        assert_eq!(after.names().iter().cloned().collect::<Vec<_>>(), ["eth1"]);
        after.remove_records(&["eth1"]).unwrap();
        assert!(after.names().is_empty() && !s.lib.join("originals.json").exists(), "nothing left behind");
        // An entry that is not values to restore is reported and ignored; so is a corrupt file.
        fs::write(s.lib.join("originals.json"), r#"{"eth5": 7}"#).unwrap();
        let r = State::at(s.run.clone(), s.lib.clone()).record("eth5");
        assert!(r.saved_sysctls.is_empty() && r.saved_group.is_none());
        fs::write(s.lib.join("originals.json"), "{garbage").unwrap();
        assert!(State::at(s.run.clone(), s.lib.clone()).names().is_empty());
        let _ = fs::remove_dir_all(d);
    }

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
            let (run, lib) = (s.run.clone(), s.lib.clone());
            move || State::at(run, lib).lock(Duration::from_secs(5)).map(|_| ())
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
