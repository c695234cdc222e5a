//! sqlite: Prism's durable embedded KeyValue backend, on one SQLite file per
//! namespace (rusqlite with SQLite bundled).
//!
//! * Durable: WAL journal with `synchronous = FULL` by default, so a Put
//!   that was acknowledged survives a crash of the proxy (and, with FULL,
//!   of the machine).
//! * One writer connection (SQLite allows one writer at a time) and a few
//!   reader connections, which WAL lets read while the writer writes.
//! * TTL: an `expires_at` column filtered on every read, plus an index that
//!   a background sweeper uses to delete expired rows.
//! * No cross-page snapshots: each page is consistent, and pages continue
//!   strictly after the last key returned.
//!
//! Options (namespace YAML, `backend.options`):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `path` | `<data_dir>/<namespace>.db` | the database file (relative: to the data directory) |
//! | `synchronous` | `full` | `full` or `normal` (faster; may lose the last commits on power loss, not on a process crash) |
//! | `readers` | 2 | reader connections |
//! | `sweep_interval_ms` | 1000 | how often expired items are deleted |

#![forbid(unsafe_code)]

mod ops;
mod schema;
pub mod timeseries;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pattern_core::background::Periodic;
use pattern_core::needs::{Consistency, Durability, GIB, NeedsProfile, Scope};
use pattern_core::{
    BackendError, Capabilities, Capability, Clock, IdempotencyKey, Item, KeyValueBackend, Mutation,
    OpenContext, Page, PageRequest, PutItem, ScanEntry, Selection, WriteOutcome,
};
use rusqlite::Connection;
use serde::Deserialize;

pub use schema::SCHEMA_VERSION;
pub use timeseries::{SqliteTimeSeries, SqliteTimeSeriesFactory, SqliteTimeSeriesOptions};

/// The backend kind name.
pub const KIND: &str = "sqlite";

/// How hard SQLite works to make a commit durable.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints: survives a process crash, may lose the last
    /// commits on power loss.
    Normal,
}

/// sqlite options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteOptions {
    /// The database file; default `<data_dir>/<namespace>.db`. A relative
    /// path is relative to the data directory.
    pub path: Option<PathBuf>,
    pub synchronous: Synchronous,
    /// Reader connections (1 to 16).
    pub readers: usize,
    pub sweep_interval_ms: u64,
}

impl SqliteOptions {
    /// Parses and checks options strictly.
    pub fn parse(options: serde_json::Value) -> Result<Self, BackendError> {
        let options: SqliteOptions = pattern_core::keyvalue::parse_options(KIND, options)?;
        if let Some(path) = &options.path {
            pattern_core::placement::check_data_path(KIND, "path", path)?;
        }
        if !(1..=16).contains(&options.readers) {
            return Err(BackendError::Config(format!(
                "sqlite backend option `readers` is {}; allowed: 1 to 16",
                options.readers
            )));
        }
        Ok(options)
    }
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            path: None,
            synchronous: Synchronous::Full,
            readers: 2,
            sweep_interval_ms: 1000,
        }
    }
}

struct Inner {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    clock: Arc<dyn Clock>,
}

impl Inner {
    fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        // Take a free reader if there is one, else wait on the next in turn.
        for conn in &self.readers {
            if let Ok(conn) = conn.try_lock() {
                return f(&conn);
            }
        }
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = self.readers[i].lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

/// The sqlite backend for one namespace.
pub struct SqliteBackend {
    inner: Arc<Inner>,
    path: PathBuf,
    sweeper: Periodic,
}

pub(crate) fn open_connection(
    path: &PathBuf,
    options: &SqliteOptions,
) -> Result<Connection, BackendError> {
    let conn = Connection::open(path).map_err(|e| {
        BackendError::Config(format!(
            "cannot open sqlite database {}: {e}",
            path.display()
        ))
    })?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(ops::sql_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(ops::sql_err)?;
    let sync = match options.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(ops::sql_err)?;
    Ok(conn)
}

impl SqliteBackend {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(
        path: PathBuf,
        clock: Arc<dyn Clock>,
        options: &SqliteOptions,
    ) -> Result<Self, BackendError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                BackendError::Config(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let mut writer = open_connection(&path, options)?;
        schema::migrate(&mut writer).map_err(|e| {
            BackendError::Config(format!("sqlite database {}: {e}", path.display()))
        })?;
        let readers = (0..options.readers)
            .map(|_| open_connection(&path, options).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let inner = Arc::new(Inner {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            clock,
        });
        let every = Duration::from_millis(options.sweep_interval_ms);
        let sweeper = Periodic::spawn(&inner, every, |inner| async move {
            let swept = tokio::task::spawn_blocking(move || {
                let now = inner.clock.now_ms();
                inner.with_writer(|c| ops::sweep(c, now))
            })
            .await;
            if let Ok(Err(e)) = swept {
                tracing::warn!(error = %e, "sqlite sweep failed");
            }
        });
        Ok(SqliteBackend {
            inner,
            path,
            sweeper,
        })
    }

    /// The database file.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, u64) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let now = inner.clock.now_ms();
            f(&inner, now)
        })
        .await
        .map_err(|e| BackendError::Internal(format!("sqlite task failed: {e}")))?
    }
}

#[async_trait]
impl pattern_core::Backend for SqliteBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        [
            Capability::Ttl,
            Capability::Scan,
            Capability::ConditionalWrite,
            Capability::Transactions,
            Capability::Idempotency,
            Capability::Durable,
        ]
        .into_iter()
        .collect()
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.blocking(|inner, _| {
            inner.with_reader(|c| {
                c.query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(ops::sql_err)
            })
        })
        .await
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.sweeper.stop();
        self.blocking(|inner, _| {
            inner.with_writer(|c| {
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .map_err(ops::sql_err)
            })
        })
        .await
    }
}

#[async_trait]
impl KeyValueBackend for SqliteBackend {
    async fn put(
        &self,
        id: &str,
        items: Vec<PutItem>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        let id = id.to_string();
        self.blocking(move |inner, now| {
            inner.with_writer(|c| {
                ops::write_tx(c, now, idempotency, |tx| ops::put(tx, &id, &items, now))
            })
        })
        .await
    }

    async fn get(
        &self,
        id: &str,
        selection: &Selection,
        page: PageRequest,
    ) -> Result<Page<Item>, BackendError> {
        let (id, selection) = (id.to_string(), selection.clone());
        self.blocking(move |inner, now| {
            inner.with_reader(|c| ops::get(c, &id, &selection, &page, now))
        })
        .await
    }

    async fn delete(&self, id: &str, selection: &Selection) -> Result<u64, BackendError> {
        let (id, selection) = (id.to_string(), selection.clone());
        self.blocking(move |inner, now| {
            inner.with_writer(|c| {
                ops::write_tx(c, now, None, |tx| {
                    ops::delete(tx, &id, &selection, now)
                        .map(|n| vec![pattern_core::MutationOutcome::Deleted(n)])
                })
            })
        })
        .await
        .map(|out| match out.outcomes.first() {
            Some(pattern_core::MutationOutcome::Deleted(n)) => *n,
            _ => 0,
        })
    }

    async fn scan(&self, page: PageRequest) -> Result<Page<ScanEntry>, BackendError> {
        self.blocking(move |inner, now| inner.with_reader(|c| ops::scan(c, &page, now)))
            .await
    }

    async fn mutate(
        &self,
        mutations: Vec<Mutation>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        self.blocking(move |inner, now| {
            inner.with_writer(|c| {
                ops::write_tx(c, now, idempotency, |tx| ops::mutate(tx, &mutations, now))
            })
        })
        .await
    }
}

/// Opens sqlite backends.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqliteFactory;

#[async_trait]
impl pattern_core::Factory for SqliteFactory {
    type Backend = dyn KeyValueBackend;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn needs_profile(&self) -> NeedsProfile {
        NeedsProfile {
            kind: KIND,
            preference: 1,
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
        }
    }

    fn default_placement_is_private(&self) -> bool {
        true
    }

    fn placement_options(&self) -> &'static [&'static str] {
        &["path"]
    }

    fn data_files(&self, namespace: &str, options: &serde_json::Value) -> Vec<PathBuf> {
        let configured = options.get("path").and_then(serde_json::Value::as_str);
        vec![configured.map_or_else(|| PathBuf::from(format!("{namespace}.db")), PathBuf::from)]
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        SqliteOptions::parse(options.clone()).map(|_| ())
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        let options = ctx.options.clone();
        let options = SqliteOptions::parse(options)?;
        // A relative path is relative to the data directory.
        let path = match &options.path {
            Some(path) => ctx.data_dir.join(path),
            None => ctx.data_dir.join(format!("{}.db", ctx.namespace)),
        };
        let clock = ctx.clock.clone();
        let backend =
            tokio::task::spawn_blocking(move || SqliteBackend::open(path, clock, &options))
                .await
                .map_err(|e| BackendError::Internal(format!("opening sqlite: {e}")))??;
        Ok(Arc::new(backend))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pattern_core::Backend;

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reopen.db");
        let clock: Arc<dyn Clock> = Arc::new(pattern_core::SystemClock);
        let opts = SqliteOptions::default();
        let b = SqliteBackend::open(path.clone(), clock.clone(), &opts).unwrap();
        let v = b
            .put("id", vec![PutItem::new("k", "v")], None)
            .await
            .unwrap()
            .versions()[0];
        b.close().await.unwrap();
        drop(b);
        let b = SqliteBackend::open(path, clock, &opts).unwrap();
        let page = b
            .get("id", &Selection::All, PageRequest::first(1024))
            .await
            .unwrap();
        assert_eq!(page.items[0].value, b"v");
        let v2 = b
            .put("id", vec![PutItem::new("k", "w")], None)
            .await
            .unwrap()
            .versions()[0];
        assert!(v2 > v, "the version counter persists");
    }

    #[test]
    fn bad_options_are_refused() {
        let err = pattern_core::keyvalue::parse_options::<SqliteOptions>(
            KIND,
            serde_json::json!({"synchronous": "sometimes"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
    }
}
