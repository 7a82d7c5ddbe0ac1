//! One netlink transport for rtnetlink and nfnetlink: a blocking socket with a receive timeout,
//! sequence numbers, one receive loop that splits datagrams into messages with checked lengths,
//! and the kernel's verdicts (errno and extended-ACK text). The protocol modules (route.rs,
//! nftables.rs) only build requests and read answers; how a conversation ends is decided here.

use netlink_sys::{Socket, SocketAddr};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, setsockopt, sockopt};
use nix::sys::time::TimeVal;
use std::fmt;
use std::io;
use std::time::Duration;

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
/// Set on dump messages when the kernel's state changed during the dump: it is inconsistent.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_DUMP: u16 = 0x300;
/// On an NLMSG_ERROR: the request was not echoed (NETLINK_CAP_ACK) / extended-ACK attributes follow.
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The longest the kernel may stay silent while stronghost waits for an answer. Requests are
/// answered synchronously, so silence means a bug or a wedged kernel: never hold the host-wide
/// lock for ever over it.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a netlink conversation failed.
#[derive(Debug)]
pub enum NetlinkError {
    /// The kernel refused the request: its errno and, when it said more, its extended-ACK text.
    Kernel { errno: Errno, extack: Option<String> },
    /// No answer within RECEIVE_TIMEOUT.
    Timeout,
    /// The socket itself failed (ENOBUFS: the receive buffer overran).
    Io(io::Error),
    /// An answer that does not parse.
    Malformed(String),
}

impl NetlinkError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetlinkError::Kernel { errno, extack: Some(m) } => write!(f, "{} ({errno:?}): {m}", errno.desc()),
            NetlinkError::Kernel { errno, extack: None } => write!(f, "{} ({errno:?})", errno.desc()),
            NetlinkError::Timeout => write!(f, "the kernel did not answer within {} s", RECEIVE_TIMEOUT.as_secs()),
            NetlinkError::Io(e) => write!(f, "{e}"),
            NetlinkError::Malformed(m) => write!(f, "malformed answer from the kernel: {m}"),
        }
    }
}

impl std::error::Error for NetlinkError {}

impl From<io::Error> for NetlinkError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NetlinkError::Timeout,
            _ => NetlinkError::Io(e),
        }
    }
}

/// One message as received: its header fields and the whole message (header included), in
/// the receive buffer (`Answer<&[u8]>`, as `split` gives it) or a copy of its own.
#[derive(Debug, Clone)]
pub struct Answer<B = Vec<u8>> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// The sender's port: for a notification, the socket whose request caused the change (0: the
    /// kernel's own doing).
    pub port: u32,
    pub bytes: B,
}

impl Answer<&[u8]> {
    /// A copy that outlives the receive buffer.
    pub fn detached(&self) -> Answer {
        Answer { kind: self.kind, flags: self.flags, seq: self.seq, port: self.port, bytes: self.bytes.to_vec() }
    }
}

impl<B: AsRef<[u8]>> Answer<B> {
    /// What follows the netlink header.
    pub fn payload(&self) -> &[u8] {
        &self.bytes.as_ref()[NLMSG_HDRLEN..]
    }

    /// For NLMSG_ERROR (and a dump's NLMSG_DONE, which carries an errno too): `Ok` for an ACK,
    /// the kernel's errno and extended-ACK message otherwise.
    pub fn verdict(&self) -> Result<(), NetlinkError> {
        let p = self.payload();
        let Some(code) = p.get(..4).map(|b| i32::from_ne_bytes(b.try_into().unwrap())) else {
            return Err(NetlinkError::Malformed("an error message without an error code".into()));
        };
        if code == 0 {
            return Ok(());
        }
        let mut extack = None;
        if self.kind == NLMSG_ERROR && self.flags & NLM_F_ACK_TLVS != 0 {
            // After the code: the request's header, and its payload unless capped.
            let echoed = p.get(4..8).map(|b| u32::from_ne_bytes(b.try_into().unwrap()) as usize).unwrap_or(0);
            let skip = 4 + if self.flags & NLM_F_CAPPED != 0 { NLMSG_HDRLEN } else { echoed.max(NLMSG_HDRLEN) };
            extack = p
                .get(align(skip)..)
                .and_then(|tlvs| attributes(tlvs).find(|(t, _)| *t == NLMSGERR_ATTR_MSG).map(|(_, v)| super::abi::c_string(v)));
        }
        Err(NetlinkError::Kernel { errno: Errno::from_raw(code.saturating_neg()), extack })
    }
}

/// Netlink's 4-byte alignment.
pub fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The netlink attributes in `buf`, as (type without flag bits, value); the walk stops at the
/// first attribute whose length does not fit.
pub fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let value = &buf[4..len];
        buf = &buf[align(len).min(buf.len())..];
        Some((kind, value))
    })
}

/// Splits one datagram into its messages. A length that does not fit ends the datagram with an
/// error: what follows cannot be found.
pub fn split(datagram: &[u8]) -> impl Iterator<Item = Result<Answer<&[u8]>, NetlinkError>> + '_ {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off >= datagram.len() {
            return None;
        }
        let h = &datagram[off..];
        if h.len() < NLMSG_HDRLEN {
            off = datagram.len();
            return Some(Err(NetlinkError::Malformed(format!("{} trailing bytes", h.len()))));
        }
        let len = u32::from_ne_bytes(h[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || len > h.len() {
            off = datagram.len();
            return Some(Err(NetlinkError::Malformed(format!("message length {len} with {} bytes left", h.len()))));
        }
        off += align(len);
        Some(Ok(Answer {
            kind: u16::from_ne_bytes([h[4], h[5]]),
            flags: u16::from_ne_bytes([h[6], h[7]]),
            seq: u32::from_ne_bytes(h[8..12].try_into().unwrap()),
            port: u32::from_ne_bytes(h[12..16].try_into().unwrap()),
            bytes: &h[..len],
        }))
    })
}

/// What a request expects back, which decides when its conversation is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A dump: messages up to NLMSG_DONE.
    Dump,
    /// An acknowledged request: its ACK or error.
    Ack,
    /// A plain get: exactly one answer (or an error).
    One,
}

impl Expect {
    pub fn of(flags: u16) -> Expect {
        if flags & NLM_F_DUMP == NLM_F_DUMP {
            Expect::Dump
        } else if flags & NLM_F_ACK != 0 {
            Expect::Ack
        } else {
            Expect::One
        }
    }
}

pub struct Transport {
    sock: Socket,
    /// What the send buffer was last set to (the kernel's default is larger than any small request).
    sndbuf: usize,
    seq: u32,
    rx: Vec<u8>,
    /// This socket's netlink port, which the kernel puts in the notifications of its changes.
    port: u32,
}

impl Transport {
    /// A socket of `protocol` (NETLINK_ROUTE, NETLINK_NETFILTER) talking to the kernel.
    pub fn open(protocol: isize) -> io::Result<Transport> {
        let mut sock = Socket::new(protocol)?;
        let port = sock.bind_auto()?.port_number();
        sock.connect(&SocketAddr::new(0, 0))?;
        // Errors say why (extended ACK) and echo only the request's header, not all of it.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        // Lets dumps be filtered by the kernel (addresses of one interface, routes of one table).
        let _ = sock.set_netlink_get_strict_chk(true);
        // Dumps and batch answers of a host with thousands of interfaces are large.
        let _ = set_receive_buffer(&sock, 4 << 20);
        setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(RECEIVE_TIMEOUT.as_secs() as _, 0))?;
        Ok(Transport { sock, sndbuf: 64 * 1024, seq: 0, rx: vec![0; 1 << 16], port })
    }

    pub fn port(&self) -> u32 {
        self.port
    }

    /// The next sequence number (never 0, which the kernel uses for its own notifications).
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    pub fn send(&mut self, buf: &[u8]) -> Result<(), NetlinkError> {
        // A datagram must fit the send buffer whole (an nftables transaction for thousands of
        // interfaces is a few hundred kilobytes): grow it as nft does, beyond rmem_max as root.
        if buf.len() + 4096 > self.sndbuf {
            let want = buf.len() + 4096;
            setsockopt(&self.sock, sockopt::SndBufForce, &want)
                .or_else(|_| setsockopt(&self.sock, sockopt::SndBuf, &want))
                .map_err(|e| NetlinkError::Io(e.into()))?;
            self.sndbuf = want;
        }
        let n = self.sock.send(buf, 0)?;
        if n != buf.len() {
            return Err(NetlinkError::Malformed(format!("sent {n} of {} bytes", buf.len())));
        }
        Ok(())
    }

    /// Receives answers until `take` says the conversation is over (`Ok(true)`) or fails.
    /// Answers outside `first..=last` belong to an earlier conversation that was abandoned (a
    /// timeout, an error part-way through a dump) and are skipped.
    pub fn receive(
        &mut self,
        first: u32,
        last: u32,
        mut take: impl FnMut(Answer<&[u8]>) -> Result<bool, NetlinkError>,
    ) -> Result<(), NetlinkError> {
        loop {
            // MSG_TRUNC: the datagram's real length, so a truncated one is noticed.
            let n = self.sock.recv(&mut &mut self.rx[..], MsgFlags::MSG_TRUNC.bits())?;
            if n > self.rx.len() {
                // Grow for next time; this datagram's tail is lost.
                self.rx.resize(n.next_power_of_two(), 0);
                return Err(NetlinkError::Malformed(format!("a {n}-byte datagram did not fit the receive buffer")));
            }
            for a in split(&self.rx[..n]) {
                let a = a?;
                if a.seq < first || a.seq > last {
                    continue;
                }
                if take(a)? {
                    return Ok(());
                }
            }
        }
    }

    /// Sends one request, built by `build` under the sequence number it is given, and returns
    /// every answer up to the end its flags imply: NLMSG_DONE for a dump, the ACK, or the one
    /// answer to a plain get. A refusal is the kernel's error; a dump the kernel reports as
    /// interrupted (state changed under it) is an EINTR error, for the caller to repeat.
    pub fn request(&mut self, flags: u16, build: impl FnOnce(u32) -> Vec<u8>) -> Result<Vec<Answer>, NetlinkError> {
        let mut out = Vec::new();
        self.request_each(flags, build, |a| out.push(a.detached()))?;
        Ok(out)
    }

    /// `request`, handing each answer to `each` where it was received instead of keeping a
    /// copy: a dump of thousands of links is megabytes, decoded into a fraction of that.
    pub fn request_each(
        &mut self,
        flags: u16,
        build: impl FnOnce(u32) -> Vec<u8>,
        mut each: impl FnMut(&Answer<&[u8]>),
    ) -> Result<(), NetlinkError> {
        let seq = self.next_seq();
        self.send(&build(seq))?;
        let expect = Expect::of(flags);
        let mut interrupted = false;
        self.receive(seq, seq, |a| {
            interrupted |= a.flags & NLM_F_DUMP_INTR != 0;
            match a.kind {
                NLMSG_ERROR => a.verdict().map(|()| true),
                NLMSG_DONE => a.verdict().map(|()| true),
                NLMSG_OVERRUN => Err(NetlinkError::Io(io::Error::from_raw_os_error(Errno::ENOBUFS as i32))),
                _ => {
                    each(&a);
                    Ok(expect == Expect::One)
                }
            }
        })?;
        if interrupted {
            return Err(NetlinkError::Kernel { errno: Errno::EINTR, extack: Some("dump interrupted by a concurrent change".into()) });
        }
        Ok(())
    }

    /// Sends many requests in one datagram, numbered `first..=last` by the caller (who asks an
    /// ACK of the last one only), and hands every error or ACK to `verdict` until the last
    /// request's answer. The kernel handles them in order and answers every failure, so once the
    /// last one is answered every silent one succeeded.
    pub fn batch(
        &mut self,
        buf: &[u8],
        first: u32,
        last: u32,
        mut verdict: impl FnMut(u32, Result<(), NetlinkError>),
    ) -> Result<(), NetlinkError> {
        self.send(buf)?;
        self.receive(first, last, |a| {
            if a.kind != NLMSG_ERROR {
                return Ok(false);
            }
            verdict(a.seq, a.verdict());
            Ok(a.seq == last)
        })
    }
}

impl std::os::fd::AsFd for Transport {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Sets a netlink socket's receive buffer to `bytes` past `net.core.rmem_max` (SO_RCVBUFFORCE,
/// which root may): SO_RCVBUF alone is capped there, 208 KiB on a stock kernel, a fraction of what
/// a burst of notifications from thousands of interfaces needs. Without the privilege, as much
/// as the cap allows.
pub fn set_receive_buffer(sock: &impl std::os::fd::AsFd, bytes: usize) -> io::Result<()> {
    setsockopt(sock, sockopt::RcvBufForce, &bytes).or_else(|_| setsockopt(sock, sockopt::RcvBuf, &bytes)).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root gets the buffer asked for, past `net.core.rmem_max` (the kernel reports it doubled).
    #[test]
    fn receive_buffers_are_not_capped_for_root() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let sock = Socket::new(netlink_sys::protocols::NETLINK_ROUTE).unwrap();
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
        let want = 2 * max + (1 << 20);
        set_receive_buffer(&sock, want).unwrap();
        assert!(nix::sys::socket::getsockopt(&sock, sockopt::RcvBuf).unwrap() >= want);
    }

    fn message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(payload);
        b.resize(align(b.len()), 0);
        b
    }

    /// An NLMSG_ERROR as the kernel writes it with NETLINK_CAP_ACK and NETLINK_EXT_ACK: code,
    /// the request's header, then NLMSGERR_ATTR_MSG.
    fn error(seq: u32, code: i32, msg: Option<&str>) -> Vec<u8> {
        let mut p = code.to_ne_bytes().to_vec();
        p.extend_from_slice(&message(24, 0, seq, &[])[..NLMSG_HDRLEN]);
        let mut flags = NLM_F_CAPPED;
        if let Some(m) = msg {
            flags |= NLM_F_ACK_TLVS;
            let mut v = m.as_bytes().to_vec();
            v.push(0);
            p.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
            p.extend_from_slice(&v);
            p.resize(align(p.len()), 0);
        }
        message(NLMSG_ERROR, flags, seq, &p)
    }

    #[test]
    fn verdicts_name_the_errno_and_carry_the_kernels_message() {
        let a = split(&error(7, -17, Some("File exists here"))).next().unwrap().unwrap().detached();
        let e = a.verdict().unwrap_err();
        assert_eq!(e.errno(), Some(Errno::EEXIST));
        assert_eq!(e.to_string(), "File exists (EEXIST): File exists here");
        let a = split(&error(7, 0, None)).next().unwrap().unwrap().detached();
        assert!(a.verdict().is_ok());
        let a = split(&error(7, -19, None)).next().unwrap().unwrap().detached();
        assert_eq!(a.verdict().unwrap_err().to_string(), "No such device (ENODEV)");
    }

    #[test]
    fn split_refuses_lengths_that_do_not_fit() {
        let mut d = message(16, 0, 1, &[1, 2, 3, 4]);
        d.extend(message(16, 0, 2, &[5; 8]));
        let all: Vec<_> = split(&d).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].as_ref().unwrap().seq, 2);
        // A length past the end: an error, and nothing after it.
        let mut bad = d.clone();
        bad[0] = 0xff;
        let all: Vec<_> = split(&bad).collect();
        assert!(matches!(all.as_slice(), [Err(NetlinkError::Malformed(_))]));
        // Too short for a header.
        assert!(matches!(split(&d[..10]).collect::<Vec<_>>().as_slice(), [Err(_)]));
    }
}
