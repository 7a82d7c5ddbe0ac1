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
//! The lock is lock.rs, the queue queue.rs.
//!
//! Paths are opened with O_NOFOLLOW and directories checked, so a symlink planted by someone else
//! is refused rather than followed. A corrupt record is reported and rebuilt from the kernel.

mod lock;
mod queue;

pub use queue::Queued;

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

    pub(super) fn state() -> (State, PathBuf) {
        let d = std::env::temp_dir().join(format!("stronghost-state-test-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let s = State::at(d.join("run"), d.join("lib"));
        ensure_dir(&s.run).unwrap();
        (s, d)
    }

    pub(super) fn lease(last: u8) -> Lease {
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
}
