//! For tests against the real kernel: a closure run in a network namespace of its own, on a thread
//! of its own (a namespace belongs to the thread that unshares it, and so do the sockets and the
//! processes it creates), so the machine's own network is never touched. Needs root.

pub fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): tests need root");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
