//! The hooks' queue: an event that cannot be applied now (the lock is held, the disk is full)
//! waits in /run/stronghost/queue, one file per event, and whichever run holds the lock next
//! applies the newest per interface.

use super::*;

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

impl State {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{lease, state};

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
