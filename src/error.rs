//! What can go wrong, by kind, each with what the operator can do about it. Errors cross module
//! boundaries as `Error`; `--json` prints them as `{"kind": …, "message": …}`.

use crate::netlink::NetlinkError;
use nix::errno::Errno;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug)]
pub enum Error {
    /// Reading or writing the kernel's state over netlink failed; `doing` says what for.
    Netlink { doing: String, source: NetlinkError },
    /// No interface of that name (now).
    NoSuchInterface { ifname: String },
    /// The configuration does not manage the interface (or its name cannot be managed).
    NotManaged { ifname: String, config: PathBuf },
    /// Another tool put the interface in a link group stronghost would have to take over.
    ForeignLinkGroup { ifname: String, group: u32, want: u32, config: PathBuf },
    /// The interface's table holds something stronghost did not write.
    ForeignInTable { ifname: String, table: u32, what: String },
    /// Every table of the configured range is taken.
    NoFreeTable { min: u32, max: u32, config: PathBuf },
    /// Another stronghost held the host-wide lock for too long.
    Busy { detail: String },
    /// stronghost's own records could not be read or written.
    State { doing: String, source: std::io::Error },
    /// The receive filter (nftables) could not be read or changed; `unapplied`: a change was not
    /// even tried, since the table could not be read.
    Filter { source: FilterError, unapplied: bool },
    /// A sysctl could not be written.
    Sysctl { doing: String, source: std::io::Error },
    /// Several independent failures of one run.
    Several(Vec<Error>),
}

impl Error {
    /// A dump the kernel kept interrupting (its state changing under it, as in a boot storm):
    /// nothing is wrong, and the same run a moment later reads a consistent state.
    pub fn interrupted(&self) -> bool {
        match self {
            Error::Netlink { source, .. } => source.errno() == Some(nix::errno::Errno::EINTR),
            Error::Several(all) => all.iter().any(Error::interrupted),
            _ => false,
        }
    }

    /// A failure of this host's own storage (a full or read-only /var/lib or /run): the same run
    /// succeeds once it has room, so an event it was applying is kept, not dropped.
    pub fn local(&self) -> bool {
        match self {
            Error::State { .. } => true,
            Error::Several(all) => all.iter().any(Error::local),
            _ => false,
        }
    }

    /// A stable name for the kind, for `--json` and for scripts.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Netlink { .. } => "netlink",
            Error::NoSuchInterface { .. } => "no-such-interface",
            Error::NotManaged { .. } => "not-managed",
            Error::ForeignLinkGroup { .. } => "foreign-link-group",
            Error::ForeignInTable { .. } => "foreign-table-content",
            Error::NoFreeTable { .. } => "no-free-table",
            Error::Busy { .. } => "busy",
            Error::State { .. } => "state",
            Error::Filter { .. } => "filter",
            Error::Sysctl { .. } => "sysctl",
            Error::Several(_) => "several",
        }
    }

    pub fn netlink(doing: impl Into<String>) -> impl FnOnce(NetlinkError) -> Error {
        let doing = doing.into();
        move |source| Error::Netlink { doing, source }
    }

    /// The context for a failure of stronghost's own records: `.map_err(Error::state("saving …"))`.
    pub fn state(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let doing = doing.into();
        move |source| Error::State { doing, source }
    }

    /// True when the error only says the interface is gone (it vanished between an event and
    /// its handling): the caller forgets the interface instead of reporting a failure.
    pub fn is_vanished_interface(&self) -> bool {
        match self {
            Error::NoSuchInterface { .. } => true,
            Error::Netlink { source, .. } => source.errno() == Some(Errno::ENODEV),
            Error::Several(v) => !v.is_empty() && v.iter().all(Error::is_vanished_interface),
            _ => false,
        }
    }

    /// Joins failures; `None` when there were none.
    pub fn collect(mut errors: Vec<Error>) -> Option<Error> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Several(errors)),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Error::Several(v) => serde_json::json!({
                "kind": self.kind(), "message": self.to_string(),
                "errors": v.iter().map(Error::to_json).collect::<Vec<_>>(),
            }),
            _ => serde_json::json!({"kind": self.kind(), "message": self.to_string()}),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Netlink { doing, source } => {
                write!(f, "{doing}: {source}")?;
                match source.errno() {
                    Some(Errno::EPERM) | Some(Errno::EACCES) => f.write_str("; stronghost must run as root (CAP_NET_ADMIN)"),
                    None if matches!(source, NetlinkError::Timeout) => {
                        f.write_str("; nothing was left half-done that the next run does not converge: run `stronghost sync` again")
                    }
                    _ => Ok(()),
                }
            }
            Error::NoSuchInterface { ifname } => write!(f, "{ifname}: no such interface (`ip link` lists them)"),
            Error::NotManaged { ifname, config } => {
                write!(f, "{ifname} is not managed: check `interfaces` and `exclude` in {}", config.display())
            }
            Error::ForeignLinkGroup { ifname, group, want, config } => write!(
                f,
                "{ifname} is in link group {group} (set by another tool); stronghost needs group {want} on managed interfaces. \
                 Exclude {ifname} or set link_group in {}",
                config.display()
            ),
            Error::ForeignInTable { ifname, table, what } => write!(
                f,
                "table {table} (allocated to {ifname}) holds a {what} that stronghost did not write; remove it, or drop {ifname} \
                 from {}/tables.json to let stronghost allocate another",
                crate::state::LIB_DIR
            ),
            Error::NoFreeTable { min, max, config } => {
                write!(f, "no free routing table in {min}-{max}; widen `tables` in {}", config.display())
            }
            Error::Busy { detail } => write!(f, "{detail}"),
            Error::State { doing, source } => write!(f, "{doing}: {source}"),
            Error::Filter { source, unapplied: false } => write!(f, "{source}"),
            Error::Filter { source, unapplied: true } => write!(f, "receive filter not applied: {source}"),
            Error::Sysctl { doing, source } => write!(f, "{doing}: {source}"),
            Error::Several(v) => {
                let parts: Vec<String> = v.iter().map(Error::to_string).collect();
                f.write_str(&parts.join("; "))
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a dump the kernel kept interrupting is worth the same run again a moment later.
    #[test]
    fn an_interrupted_dump_is_told_from_other_failures() {
        let netlink = |errno| Error::Netlink { doing: "reading".into(), source: NetlinkError::Kernel { errno, extack: None } };
        assert!(netlink(nix::errno::Errno::EINTR).interrupted());
        assert!(Error::Several(vec![Error::Busy { detail: "x".into() }, netlink(nix::errno::Errno::EINTR)]).interrupted());
        assert!(!netlink(nix::errno::Errno::EEXIST).interrupted());
        assert!(!Error::Busy { detail: "x".into() }.interrupted());
    }

    #[test]
    fn json_errors_are_objects_with_a_kind() {
        let e = Error::Several(vec![
            Error::NoSuchInterface { ifname: "eth9".into() },
            Error::Netlink { doing: "ip route add".into(), source: NetlinkError::Kernel { errno: Errno::EEXIST, extack: None } },
        ]);
        let j = e.to_json();
        assert_eq!(j["kind"], "several");
        assert_eq!(j["errors"][0]["kind"], "no-such-interface");
        assert_eq!(j["errors"][1]["message"], "ip route add: File exists (EEXIST)");
        assert!(!e.is_vanished_interface());
        assert!(Error::Several(vec![Error::NoSuchInterface { ifname: "x".into() }]).is_vanished_interface());
    }
}

/// Why the table could not be read or changed. Clone: a gather's result is shared by planning,
/// `status` and `check`.
#[derive(Debug, Clone)]
pub enum FilterError {
    Read(Arc<NetlinkError>),
    /// Creating the table over nfnetlink (the common path: no nft process).
    Create(Arc<NetlinkError>),
    /// Changing members, or removing the table, over nfnetlink.
    Write(Arc<NetlinkError>),
    /// nft could not be started.
    NoNft(Arc<std::io::Error>),
    /// Talking to the nft process failed.
    Nft(Arc<std::io::Error>),
    /// nft refused the script (its message).
    Refused(String),
    TimedOut(std::time::Duration),
    /// A member's name cannot be written in an nft string: the table is written over nfnetlink.
    NotText,
    /// A repair that failed, and the recreation that followed.
    Both(Box<FilterError>, Box<FilterError>),
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::Read(e) => write!(f, "reading nft table inet stronghost: {e}"),
            FilterError::Create(e) => write!(f, "creating nft table inet stronghost over nfnetlink failed: {e}"),
            FilterError::Write(e) => write!(f, "changing nft table inet stronghost over nfnetlink failed: {e}"),
            FilterError::NoNft(e) => write!(f, "cannot run nft ({e}); install the nftables package or set receive_filter = no"),
            FilterError::Nft(e) => write!(f, "nft: {e}"),
            FilterError::Refused(stderr) => write!(f, "nft -f refused the receive filter: {stderr}"),
            FilterError::TimedOut(d) => {
                write!(f, "nft -f did not finish within {} s and was killed; run `stronghost sync` again", d.as_secs())
            }
            FilterError::NotText => write!(f, "a member's name cannot be written as nft text"),
            FilterError::Both(first, then) => write!(f, "{first}; recreating nft table inet stronghost over nfnetlink failed too: {then}"),
        }
    }
}

impl std::error::Error for FilterError {}
