//! A DHCP server that sends what dnsmasq will not: raw option bytes chosen by the test (a router
//! of 0.0.0.0, option 121 split over several instances as RFC 3396 allows, newlines and binary
//! junk in text options, any lease time). It runs on a thread inside the router namespace and
//! offers `yiaddr` to whoever asks.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct Rogue {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `options`: (code, value) pairs appended after the basics (message type, server id, mask
/// unless given). A value longer than 255 bytes is split over several instances.
pub fn start(netns: &str, yiaddr: Ipv4Addr, options: Vec<(u8, Vec<u8>)>) -> Rogue {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let ns = netns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let sock = UdpSocket::bind(("0.0.0.0", 67)).unwrap();
        sock.set_broadcast(true).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 1500];
        while !s2.load(Ordering::SeqCst) {
            let Ok((n, _)) = sock.recv_from(&mut buf) else { continue };
            let req = &buf[..n];
            if n < 240 || req[0] != 1 {
                continue;
            }
            let mut kind = 0;
            let mut i = 240;
            while i + 1 < n && req[i] != 255 {
                if req[i] == 0 {
                    i += 1;
                    continue;
                }
                let len = req[i + 1] as usize;
                if req[i] == 53 && len == 1 && i + 2 < n {
                    kind = req[i + 2];
                }
                i += 2 + len;
            }
            let reply_kind = match kind {
                1 => 2, // DISCOVER → OFFER
                3 => 5, // REQUEST → ACK
                _ => continue,
            };
            let mut out = vec![0u8; 240];
            out[0] = 2;
            out[1] = 1;
            out[2] = 6;
            out[4..8].copy_from_slice(&req[4..8]); // xid
            out[10..12].copy_from_slice(&req[10..12]); // flags
            out[16..20].copy_from_slice(&yiaddr.octets());
            out[20..24].copy_from_slice(&[198, 51, 100, 1]);
            out[28..44].copy_from_slice(&req[28..44]); // chaddr
            out[236..240].copy_from_slice(&[99, 130, 83, 99]);
            let mut put = |code: u8, value: &[u8]| {
                for chunk in value.chunks(255) {
                    out.push(code);
                    out.push(chunk.len() as u8);
                    out.extend_from_slice(chunk);
                }
                if value.is_empty() {
                    out.extend_from_slice(&[code, 0]);
                }
            };
            put(53, &[reply_kind]);
            put(54, &[198, 51, 100, 1]);
            if !options.iter().any(|(c, _)| *c == 1) {
                put(1, &[255, 255, 255, 0]);
            }
            if !options.iter().any(|(c, _)| *c == 51) {
                put(51, &3600u32.to_be_bytes());
            }
            for (c, v) in &options {
                put(*c, v);
            }
            out.push(255);
            let _ = sock.send_to(&out, ("255.255.255.255", 68));
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("rogue DHCP server did not start");
    Rogue { stop, thread: Some(thread) }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
