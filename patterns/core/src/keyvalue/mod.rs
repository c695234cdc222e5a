//! The KeyValue DAL's backend trait.
//!
//! Data model: a namespace holds records named by an `id`; a record holds
//! items sorted bytewise by `key`. One backend instance serves one
//! namespace; the proxy opens it through a [`KeyValueFactory`] registered
//! under the backend's kind.
//!
//! Every write assigns each written item a version from a counter that only
//! grows for the lifetime of the namespace's data, so versions are unique
//! and later writes have larger versions.

use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{Backend, Factory};
use crate::error::BackendError;
use crate::idempotency::IdempotencyKey;

mod cursor;
mod fingerprints;

pub use cursor::{Cursor, fill_page, request_fingerprint};
pub use fingerprints::{decode_outcomes, encode_outcomes};

/// The KeyValue DAL's name in namespaces and the pattern protocol.
pub const DAL: &str = "keyvalue";

/// An item to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutItem {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Time to live; `None` never expires.
    pub ttl: Option<Duration>,
    /// `None`: unconditional. `Some(0)`: the key must not exist.
    /// `Some(n)`: the key's current version must be `n`.
    pub expected_version: Option<u64>,
}

impl PutItem {
    /// An unconditional item without TTL.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        PutItem {
            key: key.into(),
            value: value.into(),
            ttl: None,
            expected_version: None,
        }
    }

    /// This item with a time to live.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// This item, written only if the key's current version is `version`
    /// (0: only if the key does not exist).
    pub fn if_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Checks this item's write condition. `current` reads the key's
    /// current version (0 when absent or expired); it is only called when
    /// the item has a condition.
    pub fn check_condition(
        &self,
        current: impl FnOnce() -> Result<u64, BackendError>,
    ) -> Result<(), BackendError> {
        let Some(expected) = self.expected_version else {
            return Ok(());
        };
        let current = current()?;
        if current != expected {
            return Err(BackendError::VersionMismatch {
                key: crate::error::display_key(&self.key),
                expected,
                current,
            });
        }
        Ok(())
    }

    /// When the item expires if written at `now_ms`.
    pub fn expires_at(&self, now_ms: u64) -> Option<u64> {
        self.ttl
            .map(|ttl| now_ms.saturating_add(ttl.as_millis().max(1) as u64))
    }
}

/// An item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub version: u64,
    /// Expiry in milliseconds since the Unix epoch; `None` never expires.
    pub expires_at_ms: Option<u64>,
}

impl Item {
    /// The item's size for page budgets: key plus value bytes.
    pub fn size(&self) -> usize {
        self.key.len() + self.value.len()
    }
}

/// An item found by a Scan, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    pub id: String,
    pub item: Item,
}

/// Which keys of an id a read or delete applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every key.
    #[default]
    All,
    /// These keys; missing ones are skipped.
    Keys(Vec<Vec<u8>>),
    /// Keys in `[start, end)`; `end: None` is unbounded.
    Range {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
    /// Keys starting with these bytes.
    Prefix(Vec<u8>),
}

/// A selection reduced to the two shapes a backend has to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySet {
    /// Sorted, de-duplicated keys.
    Keys(Vec<Vec<u8>>),
    /// `[start, end)`, `end: None` unbounded.
    Range {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

impl Selection {
    /// Reduces the selection to sorted keys or a range.
    pub fn key_set(&self) -> KeySet {
        match self {
            Selection::All => KeySet::Range {
                start: Vec::new(),
                end: None,
            },
            Selection::Keys(keys) => {
                let mut keys = keys.clone();
                keys.sort();
                keys.dedup();
                KeySet::Keys(keys)
            }
            Selection::Range { start, end } => KeySet::Range {
                start: start.clone(),
                end: end.clone(),
            },
            Selection::Prefix(prefix) => KeySet::Range {
                start: prefix.clone(),
                end: prefix_end(prefix),
            },
        }
    }
}

impl KeySet {
    /// Whether `key` is selected.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeySet::Keys(keys) => keys.binary_search_by(|k| k.as_slice().cmp(key)).is_ok(),
            KeySet::Range { start, end } => {
                key >= start.as_slice() && end.as_ref().is_none_or(|e| key < e.as_slice())
            }
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, or
/// `None` if there is none (empty prefix or all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One operation of a Mutate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put { id: String, item: PutItem },
    Delete { id: String, selection: Selection },
}

/// The result of one write operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutationOutcome {
    /// A put stored the item at this version.
    Version(u64),
    /// A delete removed this many items.
    Deleted(u64),
}

/// The result of a Put or Mutate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// One outcome per item or mutation, in request order.
    pub outcomes: Vec<MutationOutcome>,
    /// True when replayed from an earlier call with the same idempotency
    /// token; nothing was written this time.
    pub replayed: bool,
}

impl WriteOutcome {
    /// The versions of a Put's outcomes.
    pub fn versions(&self) -> Vec<u64> {
        self.outcomes
            .iter()
            .map(|o| match o {
                MutationOutcome::Version(v) => *v,
                MutationOutcome::Deleted(_) => 0,
            })
            .collect()
    }
}

/// Where a page starts and how large it may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Byte budget (keys plus values). At least one item is always returned
    /// when any remain.
    pub budget_bytes: usize,
    /// `None` for the first page.
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    /// The first page with this budget.
    pub fn first(budget_bytes: usize) -> Self {
        PageRequest {
            budget_bytes,
            cursor: None,
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// A KeyValue storage engine serving one namespace.
///
/// Every method may be called concurrently from many tasks. Errors are
/// [`BackendError`]s; the proxy maps them to gRPC status codes.
#[async_trait]
pub trait KeyValueBackend: Backend {
    /// Writes `items` under `id`, all or nothing, assigning each a new
    /// version. Returns one [`MutationOutcome::Version`] per item, in order.
    ///
    /// If any item's `expected_version` does not match, returns
    /// [`BackendError::VersionMismatch`] and writes nothing. With an
    /// `idempotency` key already seen, returns the recorded outcome with
    /// `replayed` set (or [`BackendError::IdempotencyConflict`] if the
    /// fingerprint differs) and writes nothing.
    async fn put(
        &self,
        id: &str,
        items: Vec<PutItem>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError>;

    /// Reads the live (not expired, not deleted) items of `id` that
    /// `selection` picks, in key order, one page at a time. The returned
    /// cursor, if any, continues after the last item returned; backends with
    /// the `snapshot_reads` capability serve every page from the snapshot
    /// of the first.
    async fn get(
        &self,
        id: &str,
        selection: &Selection,
        page: PageRequest,
    ) -> Result<Page<Item>, BackendError>;

    /// Deletes the live items of `id` that `selection` picks. Returns how
    /// many were removed.
    async fn delete(&self, id: &str, selection: &Selection) -> Result<u64, BackendError>;

    /// Reads every live item of the namespace in (id, key) order, one page
    /// at a time, like [`KeyValueBackend::get`].
    async fn scan(&self, page: PageRequest) -> Result<Page<ScanEntry>, BackendError>;

    /// Applies `mutations` atomically: all or none, and no reader sees some
    /// without the others. Conditions are checked against the state before
    /// the call. Backends without the `transactions` capability keep the
    /// default, which refuses with [`BackendError::Unsupported`].
    async fn mutate(
        &self,
        mutations: Vec<Mutation>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        let _ = (mutations, idempotency);
        Err(BackendError::unsupported(
            self.kind(),
            crate::capabilities::Capability::Transactions,
        ))
    }
}

/// A [`Factory`] of KeyValue backends; every factory whose `Backend` is
/// `dyn KeyValueBackend` is one.
pub trait KeyValueFactory: Factory<Backend = dyn KeyValueBackend> {}

impl<F: Factory<Backend = dyn KeyValueBackend>> KeyValueFactory for F {}

/// Parses backend options strictly into `T` (which should use
/// `#[serde(deny_unknown_fields)]`); `null` means all defaults.
pub fn parse_options<T: serde::de::DeserializeOwned + Default>(
    kind: &str,
    options: serde_json::Value,
) -> Result<T, BackendError> {
    if options.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(options).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            BackendError::Config(format!("{kind} backend options: {inner}"))
        } else {
            BackendError::Config(format!("{kind} backend option `{path}`: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn key_set_contains() {
        let set = Selection::Prefix(b"ab".to_vec()).key_set();
        assert!(set.contains(b"ab"));
        assert!(set.contains(b"abz"));
        assert!(!set.contains(b"ac"));
        let set = Selection::Keys(vec![b"b".to_vec(), b"a".to_vec(), b"b".to_vec()]).key_set();
        assert_eq!(set, KeySet::Keys(vec![b"a".to_vec(), b"b".to_vec()]));
        assert!(set.contains(b"a"));
        assert!(!set.contains(b"c"));
    }
}
