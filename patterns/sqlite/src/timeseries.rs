//! The sqlite TimeSeries backend (kind `sqlite`): events in one SQLite file,
//! by default `<data_dir>/<namespace>.timeseries.db`.
//!
//! Layout (see `docs-cms/adr/015-timeseries-storage.md`): a `ts_events`
//! table shared by namespaces (a `namespace` column, so several namespaces
//! may share one file through the `path` option), primary key
//! `(namespace, series_id, time_us, event_id)`; a `bucket` column (the
//! start of the event's time bucket) with an index, which retention deletes
//! by; a `sequence` column with a `(namespace, series_id, sequence)` index
//! for tails; tags as JSON text. `ts_sequences` holds each namespace's
//! last sequence. A namespace-wide scan (for a migration's backfill) walks
//! the primary key in identity order.
//!
//! One writer connection does every write in one transaction, assigning
//! sequences from `ts_sequences` inside it, so commit order is sequence
//! order; after each commit (still holding the writer) the backend
//! publishes the new high-water mark on a watch channel. That is why one
//! process must own the file: writes by another process would not wake
//! this one's tails.
//!
//! Options (`backend.options`): `path` (default above; relative to the
//! data directory), `synchronous` (`full` or `normal`, default `full`),
//! `readers` (1 to 16, default 2).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pattern_core::OpenContext;
use pattern_core::needs::{Consistency, Durability, GIB, NeedsProfile, Scope};
use pattern_core::timeseries::{
    Event, EventKey, EventPage, Order, ReadQuery, StoredEvent, TailQuery, TimeSeriesBackend,
    WriteSummary, bucket_start,
};
use pattern_core::{BackendError, Capabilities, Capability};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use tokio::sync::watch;

use crate::ops::sql_err;
use crate::{KIND, SqliteOptions, Synchronous};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ts_events (
    namespace TEXT    NOT NULL,
    series_id TEXT    NOT NULL,
    time_us   INTEGER NOT NULL,
    event_id  TEXT    NOT NULL,
    bucket    INTEGER NOT NULL,
    sequence  INTEGER NOT NULL,
    tags      TEXT    NOT NULL,
    payload   BLOB    NOT NULL,
    PRIMARY KEY (namespace, series_id, time_us, event_id)
);
CREATE INDEX IF NOT EXISTS ts_events_bucket ON ts_events (namespace, bucket);
CREATE INDEX IF NOT EXISTS ts_events_sequence ON ts_events (namespace, series_id, sequence);
CREATE TABLE IF NOT EXISTS ts_sequences (
    namespace TEXT    PRIMARY KEY,
    value     INTEGER NOT NULL
);";

/// sqlite TimeSeries options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteTimeSeriesOptions {
    /// The database file; default `<data_dir>/<namespace>.timeseries.db`.
    /// A relative path is relative to the data directory.
    pub path: Option<PathBuf>,
    pub synchronous: Synchronous,
    /// Reader connections (1 to 16).
    pub readers: usize,
}

impl Default for SqliteTimeSeriesOptions {
    fn default() -> Self {
        SqliteTimeSeriesOptions {
            path: None,
            synchronous: Synchronous::Full,
            readers: 2,
        }
    }
}

impl SqliteTimeSeriesOptions {
    /// Parses and checks options strictly.
    pub fn parse(options: serde_json::Value) -> Result<Self, BackendError> {
        let options: Self = pattern_core::keyvalue::parse_options(KIND, options)?;
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

struct Inner {
    namespace: String,
    bucket_us: i64,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    high_water: watch::Sender<u64>,
}

impl Inner {
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        for conn in &self.readers {
            if let Ok(conn) = conn.try_lock() {
                return f(&conn);
            }
        }
        let conn = self.readers[0].lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

/// The sqlite TimeSeries backend for one namespace.
pub struct SqliteTimeSeries {
    inner: Arc<Inner>,
    path: PathBuf,
}

fn json_err(e: serde_json::Error) -> BackendError {
    BackendError::Internal(format!("sqlite timeseries: stored tags are not JSON: {e}"))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteTimeSeries {
    /// Opens (creating if needed) the database at `path` for `namespace`,
    /// with buckets `bucket_us` wide.
    pub fn open(
        path: PathBuf,
        namespace: String,
        bucket_us: i64,
        options: &SqliteTimeSeriesOptions,
    ) -> Result<Self, BackendError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                BackendError::Config(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let conn_options = SqliteOptions {
            path: None,
            synchronous: options.synchronous,
            readers: options.readers,
            sweep_interval_ms: 0,
        };
        let writer = crate::open_connection(&path, &conn_options)?;
        writer.execute_batch(SCHEMA).map_err(|e| {
            BackendError::Config(format!("sqlite database {}: {e}", path.display()))
        })?;
        writer
            .execute(
                "INSERT OR IGNORE INTO ts_sequences (namespace, value) VALUES (?1, 0)",
                [&namespace],
            )
            .map_err(sql_err)?;
        let high: i64 = writer
            .query_row(
                "SELECT value FROM ts_sequences WHERE namespace = ?1",
                [&namespace],
                |r| r.get(0),
            )
            .map_err(sql_err)?;
        let readers = (0..options.readers)
            .map(|_| crate::open_connection(&path, &conn_options).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SqliteTimeSeries {
            inner: Arc::new(Inner {
                namespace,
                bucket_us: bucket_us.max(1),
                writer: Mutex::new(writer),
                readers,
                high_water: watch::channel(to_u64(high)).0,
            }),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| BackendError::Internal(format!("sqlite task failed: {e}")))?
    }
}

fn write_events(inner: &Inner, events: Vec<Event>) -> Result<WriteSummary, BackendError> {
    let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
    let tx = conn.transaction().map_err(sql_err)?;
    let mut sequence: i64 = tx
        .query_row(
            "SELECT value FROM ts_sequences WHERE namespace = ?1",
            [&inner.namespace],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    let mut summary = WriteSummary::default();
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO ts_events
                 (namespace, series_id, time_us, event_id, bucket, sequence, tags, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(sql_err)?;
        for event in &events {
            let tags = serde_json::to_string(&event.tags).map_err(json_err)?;
            let inserted = insert
                .execute(params![
                    inner.namespace,
                    event.series_id,
                    event.time_us,
                    event.event_id,
                    bucket_start(event.time_us, inner.bucket_us),
                    sequence + 1,
                    tags,
                    event.payload,
                ])
                .map_err(sql_err)?;
            if inserted == 1 {
                sequence += 1;
                summary.written += 1;
            } else {
                summary.duplicates += 1;
            }
        }
    }
    if summary.written > 0 {
        tx.execute(
            "UPDATE ts_sequences SET value = ?2 WHERE namespace = ?1",
            params![inner.namespace, sequence],
        )
        .map_err(sql_err)?;
    }
    tx.commit().map_err(sql_err)?;
    if summary.written > 0 {
        // Still holding the writer: published marks only increase.
        inner.high_water.send_replace(to_u64(sequence));
    }
    Ok(summary)
}

type Row = (i64, String, i64, String, Vec<u8>);

fn stored(series_id: &str, row: Row) -> Result<StoredEvent, BackendError> {
    let (time_us, event_id, sequence, tags, payload) = row;
    let tags: BTreeMap<String, String> = serde_json::from_str(&tags).map_err(json_err)?;
    Ok(StoredEvent {
        event: Event {
            series_id: series_id.to_string(),
            time_us,
            event_id,
            tags,
            payload,
        },
        sequence: to_u64(sequence),
    })
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn read_events(inner: &Inner, conn: &Connection, q: &ReadQuery) -> Result<EventPage, BackendError> {
    let (cmp, dir) = match q.order {
        Order::OldestFirst => (">", "ASC"),
        Order::NewestFirst => ("<", "DESC"),
    };
    let cursor = if q.after.is_some() {
        format!("AND (time_us, event_id) {cmp} (?5, ?6)")
    } else {
        "AND ?5 IS NULL AND ?6 IS NULL".to_string()
    };
    let sql = format!(
        "SELECT time_us, event_id, sequence, tags, payload FROM ts_events
         WHERE namespace = ?1 AND series_id = ?2 AND time_us >= ?3 AND time_us <= ?4 {cursor}
         ORDER BY time_us {dir}, event_id {dir}"
    );
    let start = q.start_us.unwrap_or(i64::MIN);
    let last = match q.end_us {
        Some(end) if end == i64::MIN => return Ok(EventPage::default()),
        Some(end) => end - 1,
        None => i64::MAX,
    };
    let (after_time, after_id) = match &q.after {
        Some((t, id)) => (Some(*t), Some(id.as_str())),
        None => (None, None),
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
    let mut rows = stmt
        .query(params![
            inner.namespace,
            q.series_id,
            start,
            last,
            after_time,
            after_id
        ])
        .map_err(sql_err)?;
    let mut page = EventPage::default();
    let mut used = 0usize;
    while let Some(row) = rows.next().map_err(sql_err)? {
        let event = stored(&q.series_id, read_row(row).map_err(sql_err)?)?;
        if !event.event.matches(&q.tags) {
            continue;
        }
        let size = event.event.size();
        if !page.events.is_empty() && used + size > q.budget_bytes {
            page.next = page
                .events
                .last()
                .map(|e| (e.event.time_us, e.event.event_id.clone()));
            break;
        }
        used += size;
        page.events.push(event);
    }
    Ok(page)
}

fn read_since(
    inner: &Inner,
    conn: &Connection,
    q: &TailQuery,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, BackendError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT time_us, event_id, sequence, tags, payload FROM ts_events
             WHERE namespace = ?1 AND series_id = ?2 AND sequence > ?3 AND time_us >= ?4
             ORDER BY sequence",
        )
        .map_err(sql_err)?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut rows = stmt
        .query(params![inner.namespace, q.series_id, after, q.from_us])
        .map_err(sql_err)?;
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(row) = rows.next().map_err(sql_err)? else {
            break;
        };
        let event = stored(&q.series_id, read_row(row).map_err(sql_err)?)?;
        if event.event.matches(&q.tags) {
            out.push(event);
        }
    }
    Ok(out)
}

/// Up to `limit` events of every series after `after` in identity order,
/// with a sequence at or below `up_to`: keyset pagination on the primary
/// key.
fn scan(
    inner: &Inner,
    conn: &Connection,
    after: Option<&EventKey>,
    up_to: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, BackendError> {
    // `read_row` reads the first five columns; the series id comes last.
    const SELECT: &str = "SELECT time_us, event_id, sequence, tags, payload, series_id
                          FROM ts_events WHERE namespace = ?1 AND sequence <= ?2";
    const ORDER: &str = "ORDER BY series_id, time_us, event_id LIMIT ?3";
    let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt;
    let mut rows = match after {
        None => {
            stmt = conn
                .prepare_cached(&format!("{SELECT} {ORDER}"))
                .map_err(sql_err)?;
            stmt.query(params![inner.namespace, up_to, limit])
        }
        Some((series_id, time_us, event_id)) => {
            stmt = conn
                .prepare_cached(&format!(
                    "{SELECT} AND (series_id, time_us, event_id) > (?4, ?5, ?6) {ORDER}"
                ))
                .map_err(sql_err)?;
            stmt.query(params![
                inner.namespace,
                up_to,
                limit,
                series_id,
                time_us,
                event_id
            ])
        }
    }
    .map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql_err)? {
        let series_id: String = row.get(5).map_err(sql_err)?;
        out.push(stored(&series_id, read_row(row).map_err(sql_err)?)?);
    }
    Ok(out)
}

/// The namespace's last assigned sequence, as committed in `ts_sequences`
/// (also by another process writing the same file).
fn last_sequence(inner: &Inner, conn: &Connection) -> Result<u64, BackendError> {
    let value: Option<i64> = conn
        .query_row(
            "SELECT value FROM ts_sequences WHERE namespace = ?1",
            [&inner.namespace],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_err)?;
    Ok(value.map_or(0, to_u64))
}

fn drop_before(inner: &Inner, cutoff_us: i64) -> Result<u64, BackendError> {
    let keep_from = bucket_start(cutoff_us, inner.bucket_us);
    let conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
    // `bucket` picks the rows through its index; `time_us` keeps rows
    // written under a wider bucket from going before their time.
    let removed = conn
        .execute(
            "DELETE FROM ts_events WHERE namespace = ?1 AND bucket < ?2 AND time_us < ?2",
            params![inner.namespace, keep_from],
        )
        .map_err(sql_err)?;
    Ok(removed as u64)
}

#[async_trait]
impl pattern_core::Backend for SqliteTimeSeries {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        [Capability::Retention, Capability::Durable, Capability::Scan]
            .into_iter()
            .collect()
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.blocking(|inner| {
            let conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .optional()
                .map(|_| ())
                .map_err(sql_err)
        })
        .await
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.blocking(|inner| {
            inner.with_reader(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(sql_err))
        })
        .await
    }
}

#[async_trait]
impl TimeSeriesBackend for SqliteTimeSeries {
    async fn write(&self, events: Vec<Event>) -> Result<WriteSummary, BackendError> {
        if events.is_empty() {
            return Ok(WriteSummary::default());
        }
        self.blocking(move |inner| write_events(inner, events))
            .await
    }

    async fn read(&self, query: &ReadQuery) -> Result<EventPage, BackendError> {
        let query = query.clone();
        self.blocking(move |inner| inner.with_reader(|c| read_events(inner, c, &query)))
            .await
    }

    async fn read_since(
        &self,
        query: &TailQuery,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        let query = query.clone();
        self.blocking(move |inner| {
            inner.with_reader(|c| read_since(inner, c, &query, after_sequence, limit))
        })
        .await
    }

    fn watch_sequence(&self) -> watch::Receiver<u64> {
        self.inner.high_water.subscribe()
    }

    async fn drop_before(&self, cutoff_us: i64) -> Result<u64, BackendError> {
        self.blocking(move |inner| drop_before(inner, cutoff_us))
            .await
    }

    async fn scan(
        &self,
        after: Option<&EventKey>,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        let after = after.cloned();
        self.blocking(move |inner| {
            inner.with_reader(|c| scan(inner, c, after.as_ref(), up_to, limit))
        })
        .await
    }

    async fn last_sequence(&self) -> Result<u64, BackendError> {
        self.blocking(|inner| inner.with_reader(|c| last_sequence(inner, c)))
            .await
    }
}

/// Opens [`SqliteTimeSeries`] backends (kind `sqlite`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SqliteTimeSeriesFactory;

#[async_trait]
impl pattern_core::Factory for SqliteTimeSeriesFactory {
    type Backend = dyn TimeSeriesBackend;

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
            durability_note: "writes a file on the proxy's disk and flushes every commit",
            scope: Scope::Local,
            read_rps: 5_000,
            write_rps: 2_000,
            write_note: " (one writer, an fsync per commit)",
            p99_ms: 25,
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
        vec![configured.map_or_else(
            || PathBuf::from(format!("{namespace}.timeseries.db")),
            PathBuf::from,
        )]
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        SqliteTimeSeriesOptions::parse(options.clone()).map(|_| ())
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        let options = ctx.options.clone();
        let options = SqliteTimeSeriesOptions::parse(options)?;
        let path = match &options.path {
            Some(path) => ctx.data_dir.join(path),
            None => ctx
                .data_dir
                .join(format!("{}.timeseries.db", ctx.namespace)),
        };
        let bucket_us = ctx.bucket_us();
        let backend = tokio::task::spawn_blocking(move || {
            SqliteTimeSeries::open(path, ctx.namespace, bucket_us, &options)
        })
        .await
        .map_err(|e| BackendError::Internal(format!("opening sqlite: {e}")))??;
        Ok(Arc::new(backend))
    }
}
