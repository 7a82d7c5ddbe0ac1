//! The kernel's connection tracking table over ctnetlink, read only: which connection marks are
//! in use (`check` looks for values in stronghost's field that it did not set).

use super::abi::*;
use super::transport::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkError, Transport, attributes};
use std::collections::BTreeMap;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const CTA_MARK: u16 = 8;

/// How many tracked connections carry each value of `mask`'s bits of their mark, for the values
/// that are not 0. Both families (the dump asks for AF_UNSPEC).
pub fn marks_in(mask: u32) -> Result<BTreeMap<u32, u64>, NetlinkError> {
    let mut t = Transport::open(NETLINK_NETFILTER)?;
    let flags = NLM_F_ACK | NLM_F_DUMP;
    let mut out = BTreeMap::new();
    t.request_each(
        flags,
        |seq| {
            let mut b = Vec::with_capacity(20);
            b.extend_from_slice(&20u32.to_ne_bytes());
            b.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET).to_ne_bytes());
            b.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
            b.extend_from_slice(&seq.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&[0, 0, 0, 0]); // nfgenmsg: AF_UNSPEC, version 0, res_id 0
            b
        },
        |a| {
            let mark = a
                .payload()
                .get(4..)
                .and_then(|p| attributes(p).find(|(t, _)| *t == CTA_MARK))
                .and_then(|(_, v)| Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)));
            if let Some(m) = mark.map(|m| m & mask).filter(|m| *m != 0) {
                *out.entry(m).or_default() += 1;
            }
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// Against the kernel, in a network namespace of the test's own: a connection marked by an
    /// nft rule is found with its mark; its other bits are not the field's.
    #[test]
    fn marked_connections_are_counted_by_the_fields_value() {
        crate::netlink::testns::in_new_netns(|| {
            let run = |args: &[&str]| assert!(std::process::Command::new(args[0]).args(&args[1..]).status().unwrap().success(), "{args:?}");
            run(&["ip", "link", "set", "lo", "up"]);
            run(&[
                "nft",
                "add table inet t; add chain inet t o { type filter hook output priority 0; }; add rule inet t o udp dport 9 ct mark set 0x03000042",
            ]);
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(b"x", "127.0.0.1:9").unwrap();
            let found = super::marks_in(0xff00_0000).unwrap();
            assert_eq!(found.get(&0x0300_0000), Some(&1), "{found:?}");
            assert!(super::marks_in(0x0000_ff00).unwrap().is_empty());
        });
    }
}
