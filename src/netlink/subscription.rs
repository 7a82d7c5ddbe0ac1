//! A socket subscribed to netlink notifications, read without blocking: what the caches of a
//! long-running process (rule_cache.rs, default_cache.rs) and the watcher's nftables monitor
//! (nftables.rs `Monitor`) follow the kernel by.

use super::transport::{Answer, split};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::os::fd::{AsFd, BorrowedFd};

pub struct Subscription {
    sock: Socket,
    buf: Vec<u8>,
}

impl Subscription {
    /// Joins `groups` (linux/rtnetlink.h, enum rtnetlink_groups) with a receive buffer of
    /// `buffer` bytes: what may queue between two reads.
    pub fn open(groups: &[u32], buffer: usize) -> std::io::Result<Subscription> {
        Self::open_protocol(NETLINK_ROUTE, groups, buffer)
    }

    /// The same for another netlink protocol (NETLINK_NETFILTER and its groups).
    pub fn open_protocol(protocol: isize, groups: &[u32], buffer: usize) -> std::io::Result<Subscription> {
        let mut sock = Socket::new(protocol)?;
        sock.bind(&SocketAddr::new(0, 0))?;
        for &g in groups {
            sock.add_membership(g)?;
        }
        super::transport::set_receive_buffer(&sock, buffer)?;
        sock.set_non_blocking(true)?;
        Ok(Subscription { sock, buf: Vec::with_capacity(1 << 16) })
    }

    /// Hands every notification queued now to `each`, in order. False when some were lost (the
    /// buffer overran) or could not be read: what the caller kept may then be wrong.
    pub fn drain(&mut self, mut each: impl FnMut(&Answer<&[u8]>)) -> bool {
        let mut complete = true;
        let read = self.drain_datagrams(|d| {
            for m in split(d) {
                match m {
                    Ok(m) => each(&m),
                    Err(_) => complete = false,
                }
            }
        });
        read.is_ok() && complete
    }

    /// Hands every datagram queued now to `each` whole, for a reader that decodes them itself.
    /// An error when notifications were lost (ENOBUFS: the buffer overran) or the socket failed;
    /// no second try here: an error that repeats must not spin.
    pub fn drain_datagrams(&mut self, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(0) => return Ok(()),
                Ok(_) => each(&self.buf),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsFd for Subscription {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
