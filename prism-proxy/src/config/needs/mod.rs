//! Needs instead of a backend: a namespace may state what it needs
//! (`needs:` in its YAML) and Prism picks the backend.
//!
//! * [`Needs`] is the `needs:` section as written; every field is optional
//!   and [`Needs::effective`] fills in the documented defaults.
//! * [`BackendCatalog`] is `backends:` in `prism.yaml`: the external stores
//!   this proxy may use and how to reach them. In-process kinds are always
//!   candidates; external ones only when configured there.
//! * [`NeedsProfile`]s say what each backend kind can do; each kind's
//!   factory declares its own, and the resolver lists them per DAL in
//!   preference order.
//! * [`select()`] keeps the candidates that meet every need, takes the first
//!   in preference order, and says why, for the chosen backend and for each
//!   rejected one. When none fits, the error names the need that nothing
//!   meets, or the pair of needs that conflict.
//!
//! The choice is made when the namespace loads; the rest of the proxy sees
//! an ordinary [`BackendSpec`](super::BackendSpec). ADR-008 records the
//! design.

mod capabilities;
mod select;
mod size;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use capabilities::Verdict;
pub use select::{NeedsError, select};
pub use size::{DataSize, format_size};

pub use pattern_core::needs::{Consistency, Durability, NeedsProfile, Scope};

/// `needs` of a namespace, as written. Every field is optional; the
/// defaults are those of [`Needs::effective`].
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Needs {
    /// `eventual` or `strong`. Default `strong`.
    pub consistency: Option<Consistency>,
    /// `none`, `restart` or `durable`. Default `durable`.
    pub durability: Option<Durability>,
    /// `local` or `shared`. Default `local`.
    pub scope: Option<Scope>,
    /// Sustained reads per second the namespace must serve. Default: no
    /// requirement.
    pub read_rps: Option<u64>,
    /// Sustained writes per second. Default: no requirement.
    pub write_rps: Option<u64>,
    /// The highest acceptable p99 latency of a call, in milliseconds.
    /// Default: no requirement.
    pub p99_latency_ms: Option<u64>,
    /// How many days an item must stay readable after it was written.
    /// Default: no requirement. Prism does not delete items when the
    /// period ends; clients set TTLs for that.
    pub retention_days: Option<u64>,
    /// How much data the namespace holds at most, e.g. `20GiB`. Default:
    /// no requirement.
    pub data_size: Option<DataSize>,
}

/// One need with its value, as used by the selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Consistency(Consistency),
    Durability(Durability),
    Scope(Scope),
    ReadRps(u64),
    WriteRps(u64),
    P99LatencyMs(u64),
    RetentionDays(u64),
    DataSize(DataSize),
}

impl Need {
    /// The field name under `needs`.
    pub fn field(&self) -> &'static str {
        match self {
            Need::Consistency(_) => "consistency",
            Need::Durability(_) => "durability",
            Need::Scope(_) => "scope",
            Need::ReadRps(_) => "read_rps",
            Need::WriteRps(_) => "write_rps",
            Need::P99LatencyMs(_) => "p99_latency_ms",
            Need::RetentionDays(_) => "retention_days",
            Need::DataSize(_) => "data_size",
        }
    }

    /// The value as written in YAML.
    pub fn value(&self) -> String {
        match self {
            Need::Consistency(c) => c.name().to_string(),
            Need::Durability(d) => d.name().to_string(),
            Need::Scope(s) => s.name().to_string(),
            Need::ReadRps(n)
            | Need::WriteRps(n)
            | Need::P99LatencyMs(n)
            | Need::RetentionDays(n) => n.to_string(),
            Need::DataSize(s) => s.to_string(),
        }
    }
}

/// A need in effect: stated in the file, or a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveNeed {
    pub need: Need,
    /// True when the file did not state it and the default applies.
    pub defaulted: bool,
}

impl fmt::Display for EffectiveNeed {
    /// `` `durability: durable` `` or `` `durability: durable` (default) ``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}: {}`", self.need.field(), self.need.value())?;
        if self.defaulted {
            write!(f, " (default)")?;
        }
        Ok(())
    }
}

impl Needs {
    /// Default `needs.consistency`.
    pub const DEFAULT_CONSISTENCY: Consistency = Consistency::Strong;
    /// Default `needs.durability`: data is never lost unless the file
    /// says it may be.
    pub const DEFAULT_DURABILITY: Durability = Durability::Durable;
    /// Default `needs.scope`: one proxy, as the embedded default runs.
    pub const DEFAULT_SCOPE: Scope = Scope::Local;

    /// Every need in effect, in a fixed order: consistency, durability and
    /// scope (stated or default), then the stated numeric needs.
    pub fn effective(&self) -> Vec<EffectiveNeed> {
        let mut out = vec![
            EffectiveNeed {
                need: Need::Consistency(self.consistency.unwrap_or(Self::DEFAULT_CONSISTENCY)),
                defaulted: self.consistency.is_none(),
            },
            EffectiveNeed {
                need: Need::Durability(self.durability.unwrap_or(Self::DEFAULT_DURABILITY)),
                defaulted: self.durability.is_none(),
            },
            EffectiveNeed {
                need: Need::Scope(self.scope.unwrap_or(Self::DEFAULT_SCOPE)),
                defaulted: self.scope.is_none(),
            },
        ];
        let stated = [
            self.read_rps.map(Need::ReadRps),
            self.write_rps.map(Need::WriteRps),
            self.p99_latency_ms.map(Need::P99LatencyMs),
            self.retention_days.map(Need::RetentionDays),
            self.data_size.map(Need::DataSize),
        ];
        out.extend(stated.into_iter().flatten().map(|need| EffectiveNeed {
            need,
            defaulted: false,
        }));
        out
    }
}

/// `backends.postgres` in `prism.yaml`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PostgresStore {
    /// Connection string, e.g. `postgres://prism@db.internal:5432/prism`.
    pub url: String,
    /// Schema holding the tables. Default: the backend's (`prism`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Connections per namespace pool. Default: the backend's (8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
}

/// `backends.redis` in `prism.yaml`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisStore {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// First segment of every key name. Default: the backend's (`prism`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
}

/// `backends` in `prism.yaml`: the external stores namespaces with
/// `needs:` may be placed on. A store not listed here is never chosen.
///
/// Each field is named after a backend kind and holds that kind's options
/// (PostgreSQL and Redis typed here; NATS and Kafka as the backend's
/// options, checked by the backend when a namespace is placed on it).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct BackendCatalog {
    pub postgres: Option<PostgresStore>,
    pub redis: Option<RedisStore>,
    /// `backends.nats`: the NATS backend's options (`url`, ...).
    pub nats: Option<serde_json::Map<String, serde_json::Value>>,
    /// `backends.kafka`: the Kafka backend's options (`brokers`, ...).
    pub kafka: Option<serde_json::Map<String, serde_json::Value>>,
    /// The file the catalog was read from, for reasons and errors.
    #[serde(skip)]
    pub source: String,
}

impl BackendCatalog {
    /// The options `backends.<kind>` sets, as the backend takes them (the
    /// catalog's field names are the backend's option names); `None` when
    /// the catalog does not configure `kind`.
    pub fn options_of(&self, kind: &str) -> Option<serde_json::Value> {
        let all = serde_json::to_value(self).ok()?;
        all.get(kind).filter(|v| !v.is_null()).cloned()
    }

    /// Whether an external `kind` is configured.
    pub fn has(&self, kind: &str) -> bool {
        self.options_of(kind).is_some()
    }

    /// The backend options for `kind` filled from the catalog (empty when
    /// it does not configure `kind`).
    pub fn options(&self, kind: &str) -> serde_json::Value {
        self.options_of(kind)
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()))
    }

    /// How to name the catalog's file in messages.
    pub fn file(&self) -> &str {
        if self.source.is_empty() {
            "prism.yaml"
        } else {
            &self.source
        }
    }
}

/// A candidate that was not chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub kind: &'static str,
    pub reasons: Vec<String>,
}

/// How a namespace's backend was chosen from its needs; kept on the
/// namespace so `prismctl namespace explain` can show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Every need in effect, stated or default.
    pub needs: Vec<EffectiveNeed>,
    /// The chosen backend kind.
    pub kind: &'static str,
    /// Why it was chosen: one line per need it meets, then the preference.
    pub reasons: Vec<String>,
    /// Every other candidate, in preference order.
    pub rejected: Vec<Rejected>,
    /// The `prism.yaml` whose `backends:` supplied the connection
    /// settings, for an external store; `None` for memstore and SQLite.
    pub settings_from: Option<String>,
}

#[cfg(test)]
mod tests;
