//! stronghost's own records, as data: per interface, the lease in force and what to put back on
//! release (state/ keeps them on disk), and the table each interface was given.

use crate::model::lease::Lease;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The names on record and the table map, shared: the watcher hands its copies to each run
/// rather than copies of thousands of entries.
pub type Names = std::rc::Rc<std::collections::BTreeSet<String>>;
pub type Tables = std::rc::Rc<BTreeMap<String, u32>>;
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub lease: Option<Lease>,
    /// Sysctl values found before stronghost first changed them, to restore on release.
    #[serde(default)]
    pub saved_sysctls: BTreeMap<String, u32>,
    /// Link group found before stronghost set its own.
    #[serde(default)]
    pub saved_group: Option<u32>,
    /// Whether the policy is in force (the interface had an address at the last apply).
    #[serde(default)]
    pub applied: bool,
    /// Where the IPv4 gateway in force came from (`None`: no gateway known), for status and to
    /// say once when that changes.
    #[serde(default)]
    pub gateway_from: Option<String>,
    /// The interface's index when last applied: a record follows its interface through a rename.
    #[serde(default)]
    pub ifindex: Option<u32>,
}
