//! memstore: Prism's embedded in-memory KeyValue backend.
//!
//! Fast and dependency-free, for development, tests, caches and data that
//! may be lost on restart. See [`store`] for the engine's design.
//!
//! Options (namespace YAML, `backend.options`):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `snapshot_retention_secs` | 60 | how long a paged read's snapshot stays readable |
//! | `sweep_interval_ms` | 1000 | how often expired and superseded data is removed |

#![forbid(unsafe_code)]

pub mod store;
pub mod timeseries;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pattern_core::background::Periodic;
use pattern_core::needs::{Consistency, Durability, GIB, NeedsProfile, Scope};
use pattern_core::{
    BackendError, Capabilities, Capability, IdempotencyKey, Item, KeyValueBackend, Mutation,
    OpenContext, Page, PageRequest, PutItem, ScanEntry, Selection, WriteOutcome,
};
use serde::Deserialize;

pub use store::{Store, SweepStats};

/// The backend kind name.
pub const KIND: &str = "memstore";

/// memstore options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemstoreOptions {
    /// How long superseded versions are kept so a paged read stays on its
    /// snapshot. A page token older than this is refused with
    /// FAILED_PRECONDITION.
    pub snapshot_retention_secs: u64,
    /// How often the sweeper runs.
    pub sweep_interval_ms: u64,
}

impl MemstoreOptions {
    /// Parses and checks options strictly.
    pub fn parse(options: serde_json::Value) -> Result<Self, BackendError> {
        let options: MemstoreOptions = pattern_core::keyvalue::parse_options(KIND, options)?;
        if options.snapshot_retention_secs == 0 {
            return Err(BackendError::Config(
                "memstore backend option `snapshot_retention_secs` must be at least 1".into(),
            ));
        }
        Ok(options)
    }
}

impl Default for MemstoreOptions {
    fn default() -> Self {
        MemstoreOptions {
            snapshot_retention_secs: 60,
            sweep_interval_ms: 1000,
        }
    }
}

/// The memstore backend for one namespace.
pub struct MemStore {
    store: Arc<Store>,
    sweeper: Periodic,
}

impl MemStore {
    /// A memstore with these options, its sweeper running on the current
    /// tokio runtime when there is one.
    pub fn open(clock: Arc<dyn pattern_core::Clock>, options: &MemstoreOptions) -> Self {
        let store = Arc::new(Store::new(clock, options.snapshot_retention_secs * 1000));
        let every = Duration::from_millis(options.sweep_interval_ms);
        let sweeper = Periodic::spawn(&store, every, |store| async move {
            let stats = store.sweep();
            if stats.removed > 0 {
                tracing::debug!(removed = stats.removed, "memstore sweep");
            }
        });
        MemStore { store, sweeper }
    }

    /// The engine, for direct use and tests.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

#[async_trait]
impl pattern_core::Backend for MemStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        [
            Capability::Ttl,
            Capability::Scan,
            Capability::ConditionalWrite,
            Capability::Transactions,
            Capability::SnapshotReads,
            Capability::Idempotency,
        ]
        .into_iter()
        .collect()
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.sweeper.stop();
        Ok(())
    }

    async fn health(&self) -> Result<(), BackendError> {
        // In-process: nothing to reach.
        Ok(())
    }
}

#[async_trait]
impl KeyValueBackend for MemStore {
    async fn put(
        &self,
        id: &str,
        items: Vec<PutItem>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        self.store.put(id, items, idempotency)
    }

    async fn get(
        &self,
        id: &str,
        selection: &Selection,
        page: PageRequest,
    ) -> Result<Page<Item>, BackendError> {
        self.store.get(id, selection, &page)
    }

    async fn delete(&self, id: &str, selection: &Selection) -> Result<u64, BackendError> {
        Ok(self.store.delete(id, selection))
    }

    async fn scan(&self, page: PageRequest) -> Result<Page<ScanEntry>, BackendError> {
        self.store.scan(&page)
    }

    async fn mutate(
        &self,
        mutations: Vec<Mutation>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        self.store.mutate(mutations, idempotency)
    }
}

/// Opens memstore backends.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemstoreFactory;

#[async_trait]
impl pattern_core::Factory for MemstoreFactory {
    type Backend = dyn KeyValueBackend;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn needs_profile(&self) -> NeedsProfile {
        NeedsProfile {
            kind: KIND,
            preference: 0,
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
        }
    }

    fn default_placement_is_private(&self) -> bool {
        true
    }

    fn placement_options(&self) -> &'static [&'static str] {
        &[]
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        MemstoreOptions::parse(options.clone()).map(|_| ())
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        let options = ctx.options.clone();
        let options = MemstoreOptions::parse(options)?;
        Ok(Arc::new(MemStore::open(ctx.clock, &options)))
    }
}

#[cfg(test)]
mod tests;
