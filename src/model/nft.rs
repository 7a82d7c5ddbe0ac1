//! nftables expressions as the kernel holds a rule (what the netlink codec encodes and decodes,
//! netlink/nftables.rs), and the kernel's numbers they are written in. Data only.

pub const NFT_REG_VERDICT: u32 = 0;
pub const NFT_REG_1: u32 = 1;
/// The second 32-bit register of the 128-bit register 1 (NFT_REG32_01): where nft puts the
/// second field of a concatenation of 32-bit values.
pub const NFT_REG32_01: u32 = 9;
/// The 128-bit register after register 1: where nft puts what follows a 16-byte value (an IPv6
/// address) in a concatenation.
pub const NFT_REG_2: u32 = 2;
pub const NFT_META_NFPROTO: u32 = 15;
pub const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
pub const NFT_META_MARK: u32 = 3;
pub const NFT_META_IIF: u32 = 4;
pub const NFT_META_IIFNAME: u32 = 6;
pub const NFT_META_OIFNAME: u32 = 7;
pub const NFT_CT_STATE: u32 = 0;
pub const NFT_CT_DIRECTION: u32 = 1;
pub const NFT_CT_MARK: u32 = 3;
pub const NFT_FIB_RESULT_OIF: u32 = 1;
pub const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
pub const NFTA_FIB_F_SADDR: u32 = 1;
pub const NFTA_FIB_F_DADDR: u32 = 2;
pub const NFTA_FIB_F_MARK: u32 = 4;
pub const NFTA_FIB_F_IIF: u32 = 8;
pub const NFTA_FIB_F_OIF: u32 = 16;
pub const NFT_CMP_EQ: u32 = 0;
pub const NFT_CMP_NEQ: u32 = 1;
pub const RTN_LOCAL: u32 = 2;
pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;
/// `return` (NFT_RETURN): back to the rule after the `jump` that led here.
pub const NFT_RETURN: u32 = (-5i32) as u32;
const NFT_JUMP: u32 = (-3i32) as u32;
const NFT_GOTO: u32 = (-4i32) as u32;
pub const NFT_META_PKTTYPE: u32 = 19;
/// A map's data type when it maps to verdicts (a vmap).
pub const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

/// A verdict that goes on in another chain of the table: after a `jump`, the chain's end returns
/// to the rule after the jump; after a `goto`, to where the chain that went there was entered from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Branch {
    Jump(String),
    Goto(String),
}

impl Branch {
    /// The kernel's verdict code (NFT_JUMP, NFT_GOTO).
    pub fn code(&self) -> u32 {
        match self {
            Branch::Jump(_) => NFT_JUMP,
            Branch::Goto(_) => NFT_GOTO,
        }
    }

    pub fn chain(&self) -> &str {
        match self {
            Branch::Jump(c) | Branch::Goto(c) => c,
        }
    }

    /// The branch a verdict code and chain make, if the code is one.
    pub fn of(code: u32, chain: String) -> Option<Branch> {
        match code {
            NFT_JUMP => Some(Branch::Jump(chain)),
            NFT_GOTO => Some(Branch::Goto(chain)),
            _ => None,
        }
    }

    /// The chain, if this is a `jump` to it.
    pub fn jump(self) -> Option<String> {
        if let Branch::Jump(c) = self { Some(c) } else { None }
    }

    /// The chain, if this is a `goto` to it.
    pub fn goto(self) -> Option<String> {
        if let Branch::Goto(c) = self { Some(c) } else { None }
    }
}

/// One expression of a rule, as the kernel dumps it (set names, not ids; registers in the
/// kernel's numbering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: u32,
        dreg: u32,
    },
    /// `len` bytes at `offset` of header `base` (1: network).
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    MetaSet {
        key: u32,
        sreg: u32,
    },
    Ct {
        key: u32,
        dreg: u32,
    },
    CtSet {
        key: u32,
        sreg: u32,
    },
    /// Set membership of the register (`invert`: not a member); with `dreg`, a map lookup.
    Lookup {
        set: String,
        sreg: u32,
        dreg: Option<u32>,
        invert: bool,
    },
    Fib {
        flags: u32,
        result: u32,
        dreg: u32,
    },
    Cmp {
        sreg: u32,
        op: u32,
        data: Vec<u8>,
    },
    /// `reg = (reg & mask) ^ xor`.
    Bitwise {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// The object (a counter) the map gives for the register's key.
    ObjrefMap {
        set: String,
        sreg: u32,
    },
    /// The named counter.
    Counter {
        name: String,
    },
    Verdict {
        code: u32,
    },
    /// `jump CHAIN` or `goto CHAIN`.
    Branch(Branch),
}
