//! What each built-in KeyValue backend can do, and how a need is checked
//! against it.
//!
//! Rates and latencies are per namespace, sustained through the proxy, on
//! the 2-vCPU reference VM of `docs-cms/memos/2026-11-23-keyvalue-proxy-cost.md`
//! (16 concurrent callers), rounded down. They are deliberately
//! conservative: a need above them is refused rather than promised.

use super::{Consistency, Durability, Need, Scope, format_size};

/// One backend's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// The backend kind.
    pub kind: &'static str,
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
    /// Whether items can be kept for days: the data outlives restarts of
    /// the proxy and of the store's own server.
    pub keeps_for_days: bool,
    /// Every backend expires items by TTL.
    pub ttl: bool,
}

const GIB: u64 = 1 << 30;

/// The built-in backends in preference order: among the candidates that
/// meet every need, the first wins. In-process before external (no network
/// hop, no other service to run), and among those the one with the fewest
/// moving parts first.
pub const CAPABILITIES: [Capability; 4] = [
    Capability {
        kind: "memstore",
        external: false,
        consistency: Consistency::Strong,
        durability: Durability::None,
        durability_note: "keeps data in the proxy's memory only; a restart of the proxy loses it",
        scope: Scope::Local,
        read_rps: 20_000,
        write_rps: 18_000,
        write_note: "",
        p99_ms: 2,
        max_data_bytes: GIB,
        data_note: "it lives in the proxy's memory",
        keeps_for_days: false,
        ttl: true,
    },
    Capability {
        kind: "sqlite",
        external: false,
        consistency: Consistency::Strong,
        durability: Durability::Durable,
        durability_note: "writes a file on the proxy's disk and flushes every commit \
                          (WAL, synchronous=full)",
        scope: Scope::Local,
        read_rps: 12_000,
        write_rps: 3_500,
        write_note: " (one writer, an fsync per commit)",
        p99_ms: 20,
        max_data_bytes: 100 * GIB,
        data_note: "one file on the proxy's disk",
        keeps_for_days: true,
        ttl: true,
    },
    Capability {
        kind: "redis",
        external: true,
        consistency: Consistency::Strong,
        durability: Durability::Restart,
        durability_note: "keeps data in Redis's memory without persistence: it survives \
                          restarts of the proxy, not of Redis",
        scope: Scope::Shared,
        read_rps: 5_000,
        write_rps: 4_000,
        write_note: "",
        p99_ms: 5,
        max_data_bytes: 8 * GIB,
        data_note: "it lives in Redis's memory",
        keeps_for_days: false,
        ttl: true,
    },
    Capability {
        kind: "postgres",
        external: true,
        consistency: Consistency::Strong,
        durability: Durability::Durable,
        durability_note: "commits to PostgreSQL, which flushes its WAL before acknowledging",
        scope: Scope::Shared,
        read_rps: 3_000,
        write_rps: 500,
        write_note: " (writes of one namespace serialize on its version row)",
        p99_ms: 80,
        max_data_bytes: 1024 * GIB,
        data_note: "tables in the configured database",
        keeps_for_days: true,
        ttl: true,
    },
];

impl Capability {
    /// Whether this backend meets `need`; either way a sentence saying
    /// why, starting with the backend's name.
    pub fn check(&self, need: &Need) -> Result<String, String> {
        let kind = self.kind;
        let verdict = |ok: bool, text: String| if ok { Ok(text) } else { Err(text) };
        match *need {
            Need::Consistency(want) => {
                let text = match self.consistency {
                    Consistency::Strong => {
                        format!(
                            "{kind} is strongly consistent: a read sees every acknowledged write"
                        )
                    }
                    Consistency::Eventual => {
                        format!("{kind} is eventually consistent: a read may miss recent writes")
                    }
                };
                verdict(self.consistency >= want, text)
            }
            Need::Durability(want) => verdict(
                self.durability >= want,
                format!(
                    "{kind} {} (durability {})",
                    self.durability_note,
                    self.durability.name()
                ),
            ),
            Need::Scope(Scope::Shared) => match self.scope {
                Scope::Shared => Ok(format!(
                    "{kind} is a shared store every proxy of the fleet reaches"
                )),
                Scope::Local => Err(format!(
                    "{kind} is local to one proxy; other proxies of the fleet would not see its data"
                )),
            },
            Need::Scope(Scope::Local) => Ok(match self.scope {
                Scope::Local => format!("{kind} is local to this proxy, which is all it needs"),
                Scope::Shared => format!("{kind} is shared, which also serves a single proxy"),
            }),
            Need::ReadRps(want) => verdict(
                self.read_rps >= want,
                format!(
                    "{kind} sustains about {} reads/s per namespace",
                    self.read_rps
                ),
            ),
            Need::WriteRps(want) => verdict(
                self.write_rps >= want,
                format!(
                    "{kind} sustains about {} writes/s per namespace{}",
                    self.write_rps, self.write_note
                ),
            ),
            Need::P99LatencyMs(want) => verdict(
                self.p99_ms <= want,
                format!("{kind} answers with a p99 of about {} ms", self.p99_ms),
            ),
            Need::RetentionDays(0) => Ok(format!("{kind}: no retention is required")),
            Need::RetentionDays(_) => {
                if self.keeps_for_days {
                    Ok(format!(
                        "{kind} keeps items on disk until they are deleted or expire"
                    ))
                } else {
                    Err(format!(
                        "{kind} cannot promise to keep items for days: {}",
                        self.durability_note
                    ))
                }
            }
            Need::DataSize(size) => verdict(
                self.max_data_bytes >= size.0,
                format!(
                    "{kind} holds up to {} per namespace ({})",
                    format_size(self.max_data_bytes),
                    self.data_note
                ),
            ),
        }
    }
}
