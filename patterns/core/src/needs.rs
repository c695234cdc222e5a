//! What a backend kind promises, for needs-based selection: a namespace
//! that states `needs:` instead of a backend is placed on the first kind,
//! in preference order, whose [`NeedsProfile`] meets every need. Each
//! factory declares its own profile ([`crate::Factory::needs_profile`]).

use serde::Deserialize;

/// Consistency of reads.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Reads may briefly miss recent writes.
    Eventual,
    /// A read sees every write acknowledged before it started.
    Strong,
}

/// Durability of acknowledged writes, weakest first.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Data may be lost whenever the proxy restarts.
    None,
    /// Data survives a restart or crash of the proxy, but may be lost when
    /// the machine or the store's own server goes down.
    Restart,
    /// An acknowledged write survives a crash of the machine (it is on
    /// disk, flushed, before the call returns).
    Durable,
}

/// Who sees the data.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Only this proxy serves the namespace.
    Local,
    /// Several proxies of a fleet serve it and must see the same data.
    Shared,
}

impl Consistency {
    /// The value as written in YAML.
    pub fn name(self) -> &'static str {
        match self {
            Consistency::Eventual => "eventual",
            Consistency::Strong => "strong",
        }
    }
}

impl Durability {
    /// The value as written in YAML.
    pub fn name(self) -> &'static str {
        match self {
            Durability::None => "none",
            Durability::Restart => "restart",
            Durability::Durable => "durable",
        }
    }
}

impl Scope {
    /// The value as written in YAML.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Shared => "shared",
        }
    }
}

/// One GiB, for [`NeedsProfile::max_data_bytes`].
pub const GIB: u64 = 1 << 30;

/// What one backend kind promises. Rates and latencies are per namespace,
/// sustained through the proxy on the 2-vCPU reference VM of
/// `docs-cms/memos/2026-11-23-keyvalue-proxy-cost.md`, rounded down and
/// deliberately conservative: a need above them is refused rather than
/// promised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsProfile {
    /// The backend kind.
    pub kind: &'static str,
    /// Rank among the kinds of one DAL: among the candidates that meet
    /// every need, the lowest wins. In-process before external (no network
    /// hop, no other service to run), and among those the one with the
    /// fewest moving parts first.
    pub preference: u16,
    /// True when the store runs outside the proxy and must be configured
    /// under `backends:` in `prism.yaml` to be a candidate.
    pub external: bool,
    pub consistency: Consistency,
    pub durability: Durability,
    /// Why the backend has that durability.
    pub durability_note: &'static str,
    pub scope: Scope,
    /// Sustained reads per second per namespace.
    pub read_rps: u64,
    /// Sustained writes per second per namespace.
    pub write_rps: u64,
    /// What limits the write rate, when worth saying.
    pub write_note: &'static str,
    /// p99 latency of a call at that load, worst of reads and writes, in
    /// milliseconds.
    pub p99_ms: u64,
    /// Most data per namespace, in bytes.
    pub max_data_bytes: u64,
    /// What bounds the data size.
    pub data_note: &'static str,
    /// Whether data can be kept for days: it outlives restarts of the
    /// proxy and of the store's own server.
    pub keeps_for_days: bool,
}
