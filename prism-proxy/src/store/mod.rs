//! Where namespace definitions live: the config store.
//!
//! The embedded default is a directory of YAML files ([`DirStore`]). A fleet
//! of proxies shares one store on PostgreSQL or NATS JetStream KV; every
//! proxy watches it and applies what changed (see
//! [`crate::manage::Manager`]).
//!
//! A store holds each namespace's YAML text under its name, with a
//! version. Versions only grow: every put and every delete gets a new one,
//! and in a shared store every proxy sees the same version for the same
//! change. Watching is a stream of hints ("something changed"): the
//! manager then lists the store and applies the differences, so a missed
//! or coalesced hint never loses a change.

mod dir;
mod memory;
mod nats;
mod postgres;
#[cfg(test)]
mod suite;

use std::fmt;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use dir::DirStore;
pub use memory::MemoryStore;
pub use nats::NatsKvStore;
pub use postgres::PostgresStore;

/// One namespace as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNamespace {
    pub name: String,
    /// The namespace YAML.
    pub yaml: String,
    /// The version of the last change to this namespace; greater than 0.
    pub version: u64,
    /// Where it is, for messages: a file path or `<store> key <name>`.
    pub source: String,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or answered with an error; retryable.
    #[error("config store {store} unavailable: {message}")]
    Unavailable { store: String, message: String },
    /// `expected_version` did not match.
    #[error(
        "namespace '{name}' is at version {actual}, not {expected}; someone else changed it: \
         get it again, re-apply your change on top, and retry"
    )]
    VersionMismatch {
        name: String,
        expected: u64,
        /// 0 when the namespace does not exist.
        actual: u64,
    },
    /// Delete of a namespace the store does not hold.
    #[error("namespace {} is not in the config store", pattern_core::quote(.name))]
    NotFound { name: String },
    /// The store holds something it cannot use (e.g. a file that cannot
    /// be read, a name that is not a valid namespace name).
    #[error("{0}")]
    Invalid(String),
}

/// A store of namespace definitions.
#[async_trait]
pub trait ConfigStore: Send + Sync + fmt::Debug {
    /// What and where the store is, for logs and `prismctl`, e.g.
    /// `directory ./namespaces`. Never contains a password.
    fn describe(&self) -> String;

    /// Every namespace in the store, sorted by name.
    async fn list(&self) -> Result<Vec<StoredNamespace>, StoreError>;

    /// Creates or replaces `name`'s YAML; returns the new version. With
    /// `expected_version`, fails with [`StoreError::VersionMismatch`]
    /// unless the stored version equals it (0: must not exist).
    async fn put(
        &self,
        name: &str,
        yaml: &str,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError>;

    /// Removes `name`; returns the version the deletion was recorded as.
    /// [`StoreError::NotFound`] when it is not stored.
    async fn delete(&self, name: &str, expected_version: Option<u64>) -> Result<u64, StoreError>;

    /// Starts watching: the receiver gets a message soon (target: well
    /// under a second) after any change to the store, by this proxy or
    /// another. Messages may be coalesced or spurious; the receiver lists
    /// the store to find out what changed. The watch keeps running (and
    /// reconnecting) until the receiver is dropped.
    async fn watch(&self) -> Result<mpsc::Receiver<()>, StoreError>;
}
