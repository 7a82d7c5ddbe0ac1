//! The host-wide lock (/run/stronghost/lock), which also counts its holders: a process that keeps
//! copies of the records (the watcher) knows from the count whether anyone else held it since.

use super::*;

/// The count of lock holders in the lock file (empty: none yet).
fn count_in(f: &File) -> io::Result<u64> {
    let mut count = [0u8; 20];
    let n = f.read_at(&mut count, 0)?;
    Ok(std::str::from_utf8(&count[..n]).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0))
}

impl State {
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
    pub(super) fn copies_current(&self) -> bool {
        let Some(c) = &self.copies else { return false };
        let f = OpenOptions::new().read(true).custom_flags(libc_o_nofollow()).open(self.run.join("lock"));
        f.and_then(|f| count_in(&f)).is_ok_and(|n| n == c.borrow().epoch)
    }

    pub(super) fn lock_file(&self, wait: Duration) -> io::Result<Flock<File>> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::state;

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
}
