//! The kernel's netlink numbers that more than one module speaks (linux/rtnetlink.h,
//! linux/if_addr.h, linux/if_link.h, linux/netlink.h, linux/netfilter/nf_tables.h), defined once.

pub const AF_INET: u8 = 2;
pub const NLA_F_NESTED: u16 = 1 << 15;
pub const NETLINK_NETFILTER: isize = 12;

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_NEWRULE: u16 = 32;

pub const RTNLGRP_LINK: u32 = 1;
pub const RTNLGRP_IPV4_IFADDR: u32 = 5;
pub const RTNLGRP_IPV4_ROUTE: u32 = 7;
pub const RTNLGRP_IPV4_RULE: u32 = 8;
pub const RTNLGRP_IPV6_RULE: u32 = 19;

pub const IFA_LOCAL: u16 = 2;
/// IFLA_AF_SPEC's AF_INET entry: the interface's IPv4 configuration.
pub const IFLA_INET_CONF: u16 = 1;

pub const NFT_OBJECT_COUNTER: u32 = 1;

/// A NUL-terminated name as the kernel sends it (interface, set, table names): the bytes before
/// the first NUL.
pub fn c_str(v: &[u8]) -> &[u8] {
    v.split(|b| *b == 0).next().unwrap_or(&[])
}

/// The same, as text (lossy: a name that is not UTF-8 reads with U+FFFD, which no name check
/// lets through).
pub fn c_string(v: &[u8]) -> String {
    String::from_utf8_lossy(c_str(v)).into_owned()
}

/// A 32-bit value in host order, as netlink attributes carry them (the first four bytes).
pub fn u32_ne(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}
