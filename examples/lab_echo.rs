//! Test-lab HTTP echo: answers every request with "<client address> <server address>", so a test
//! can see which source address a request arrived from and which local address answered.
//! Usage: lab_echo LISTEN_ADDR:PORT. Exits by itself after an hour in case a lab leaks it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

fn main() {
    let addr = std::env::args().nth(1).expect("usage: lab_echo ADDR:PORT");
    let listener = TcpListener::bind(&addr).expect("bind");
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(3600));
        std::process::exit(0);
    });
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut s = stream;
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let (peer, local) = (s.peer_addr().map(|a| a.ip().to_string()), s.local_addr().map(|a| a.ip().to_string()));
            let body = format!("{} {}\n", peer.unwrap_or_default(), local.unwrap_or_default());
            let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        });
    }
}
