//! The durable repair queue: ids (KeyValue) or event identities
//! (TimeSeries) whose shadow write failed, kept in
//! `<data_dir>/migrations.db` until the shadow has been repaired; and the
//! backfill's checkpoint.

/// The queue's file under the data directory; no namespace may use it.
pub const FILE: &str = "migrations.db";

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

/// The queue of one proxy (all its namespaces).
pub struct RepairQueue {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for RepairQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairQueue")
            .field("path", &self.path)
            .finish()
    }
}

fn sql_err(path: &Path, doing: &str, e: rusqlite::Error) -> String {
    format!("migration queue {}: {doing}: {e}", path.display())
}

impl RepairQueue {
    /// Opens (creating) the queue in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("creating the data directory {}: {e}", data_dir.display()))?;
        let path = data_dir.join(FILE);
        let conn = Connection::open(&path).map_err(|e| sql_err(&path, "opening", e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS repairs (
                 namespace TEXT NOT NULL,
                 id TEXT NOT NULL,
                 queued_at_ms INTEGER NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (namespace, id)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS backfills (
                 namespace TEXT PRIMARY KEY,
                 last_id TEXT,
                 cursor_id TEXT,
                 cursor_key BLOB,
                 cursor_snapshot INTEGER NOT NULL DEFAULT 0,
                 items INTEGER NOT NULL DEFAULT 0,
                 bytes INTEGER NOT NULL DEFAULT 0,
                 total INTEGER,
                 started_ms INTEGER NOT NULL,
                 finished_ms INTEGER,
                 up_to INTEGER
             );",
        )
        .map_err(|e| sql_err(&path, "creating its tables", e))?;
        // A queue written by an earlier version lacks the later columns.
        for (column, sql) in [
            ("up_to", "ALTER TABLE backfills ADD COLUMN up_to INTEGER"),
            (
                "migration_id",
                "ALTER TABLE backfills ADD COLUMN migration_id TEXT",
            ),
        ] {
            let has = conn
                .prepare("SELECT 1 FROM pragma_table_info('backfills') WHERE name = ?1")
                .and_then(|mut s| s.exists([column]))
                .map_err(|e| sql_err(&path, "reading its schema", e))?;
            if !has {
                conn.execute_batch(sql)
                    .map_err(|e| sql_err(&path, "adding a column", e))?;
            }
        }
        Ok(RepairQueue {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn).map_err(|e| sql_err(&path, doing, e))
        })
        .await
        .map_err(|e| format!("migration queue: {e}"))?
    }

    /// Queues `ids` of `namespace` (an id already queued stays once).
    pub async fn push(&self, namespace: &str, ids: Vec<String>) -> Result<(), String> {
        let namespace = namespace.to_string();
        let now = super::now_ms() as i64;
        self.with("queuing a repair", move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO repairs (namespace, id, queued_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace, id) DO NOTHING",
            )?;
            for id in &ids {
                stmt.execute(params![namespace, id, now])?;
            }
            Ok(())
        })
        .await
    }

    /// Up to `limit` queued ids of `namespace`, oldest first, with how
    /// many repair attempts each had.
    pub async fn pending_attempts(
        &self,
        namespace: &str,
        limit: usize,
    ) -> Result<Vec<(String, u32)>, String> {
        let namespace = namespace.to_string();
        self.with("listing repairs", move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, attempts FROM repairs WHERE namespace = ?1
                 ORDER BY queued_at_ms, id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![namespace, limit as i64], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u32))
            })?;
            rows.collect()
        })
        .await
    }

    /// Removes a repaired id.
    pub async fn done(&self, namespace: &str, id: &str) -> Result<(), String> {
        let (namespace, id) = (namespace.to_string(), id.to_string());
        self.with("removing a repair", move |c| {
            c.execute(
                "DELETE FROM repairs WHERE namespace = ?1 AND id = ?2",
                params![namespace, id],
            )
            .map(|_| ())
        })
        .await
    }

    /// Counts a failed repair attempt of an id.
    pub async fn attempted(&self, namespace: &str, id: &str) -> Result<(), String> {
        let (namespace, id) = (namespace.to_string(), id.to_string());
        self.with("counting a repair attempt", move |c| {
            c.execute(
                "UPDATE repairs SET attempts = attempts + 1 WHERE namespace = ?1 AND id = ?2",
                params![namespace, id],
            )
            .map(|_| ())
        })
        .await
    }

    /// How many ids of `namespace` are queued.
    pub async fn len(&self, namespace: &str) -> Result<u64, String> {
        let namespace = namespace.to_string();
        self.with("counting repairs", move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM repairs WHERE namespace = ?1",
                params![namespace],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
        .await
    }

    /// Forgets every queued id and the backfill checkpoint of
    /// `namespace` (the migration ended).
    pub async fn clear(&self, namespace: &str) -> Result<(), String> {
        let namespace = namespace.to_string();
        self.with("clearing the migration's state", move |c| {
            c.execute(
                "DELETE FROM repairs WHERE namespace = ?1",
                params![namespace],
            )?;
            c.execute(
                "DELETE FROM backfills WHERE namespace = ?1",
                params![namespace],
            )
            .map(|_| ())
        })
        .await
    }

    /// Forgets the backfill checkpoint of `namespace` (the backfill runs
    /// again from the start).
    pub async fn clear_checkpoint(&self, namespace: &str) -> Result<(), String> {
        let namespace = namespace.to_string();
        self.with("clearing the backfill checkpoint", move |c| {
            c.execute(
                "DELETE FROM backfills WHERE namespace = ?1",
                params![namespace],
            )
            .map(|_| ())
        })
        .await
    }

    /// The backfill checkpoint of `namespace`, if one was saved.
    pub async fn checkpoint(&self, namespace: &str) -> Result<Option<Checkpoint>, String> {
        let namespace = namespace.to_string();
        self.with("reading the backfill checkpoint", move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT last_id, cursor_id, cursor_key, cursor_snapshot, items, bytes, total,
                        started_ms, finished_ms, up_to, migration_id
                 FROM backfills WHERE namespace = ?1",
            )?;
            let mut rows = stmt.query(params![namespace])?;
            let Some(r) = rows.next()? else {
                return Ok(None);
            };
            let cursor_id: Option<String> = r.get(1)?;
            let cursor_key: Option<Vec<u8>> = r.get(2)?;
            let snapshot: i64 = r.get(3)?;
            Ok(Some(Checkpoint {
                last_id: r.get(0)?,
                cursor: cursor_id.map(|after_id| pattern_core::Cursor {
                    after_id,
                    after_key: cursor_key.unwrap_or_default(),
                    snapshot: snapshot as u64,
                }),
                items: r.get::<_, i64>(4)? as u64,
                bytes: r.get::<_, i64>(5)? as u64,
                total: r.get::<_, Option<i64>>(6)?.map(|t| t as u64),
                started_ms: r.get::<_, i64>(7)? as u64,
                finished_ms: r.get::<_, Option<i64>>(8)?.map(|t| t as u64),
                up_to: r.get::<_, Option<i64>>(9)?.map(|t| t as u64),
                migration: r.get(10)?,
            }))
        })
        .await
    }

    /// Saves the backfill checkpoint of `namespace`.
    pub async fn save_checkpoint(&self, namespace: &str, cp: &Checkpoint) -> Result<(), String> {
        let namespace = namespace.to_string();
        let cp = cp.clone();
        self.with("saving the backfill checkpoint", move |c| {
            c.execute(
                "INSERT INTO backfills (namespace, last_id, cursor_id, cursor_key,
                     cursor_snapshot, items, bytes, total, started_ms, finished_ms, up_to,
                     migration_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (namespace) DO UPDATE SET last_id = excluded.last_id,
                     cursor_id = excluded.cursor_id, cursor_key = excluded.cursor_key,
                     cursor_snapshot = excluded.cursor_snapshot, items = excluded.items,
                     bytes = excluded.bytes, total = excluded.total,
                     started_ms = excluded.started_ms, finished_ms = excluded.finished_ms,
                     up_to = excluded.up_to, migration_id = excluded.migration_id",
                params![
                    namespace,
                    cp.last_id,
                    cp.cursor.as_ref().map(|c| c.after_id.clone()),
                    cp.cursor.as_ref().map(|c| c.after_key.clone()),
                    cp.cursor.as_ref().map_or(0, |c| c.snapshot as i64),
                    cp.items as i64,
                    cp.bytes as i64,
                    cp.total.map(|t| t as i64),
                    cp.started_ms as i64,
                    cp.finished_ms.map(|t| t as i64),
                    cp.up_to.map(|t| t as i64),
                    cp.migration,
                ],
            )
            .map(|_| ())
        })
        .await
    }
}

/// Where a backfill is: saved after every page, read back after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last id copied (ids are copied whole, in scan order).
    pub last_id: Option<String>,
    /// Where the next scan page starts; `None` at the start or the end.
    pub cursor: Option<pattern_core::Cursor>,
    /// Items and bytes copied or checked so far.
    pub items: u64,
    pub bytes: u64,
    /// Items in the primary when the backfill started (for the ETA).
    pub total: Option<u64>,
    pub started_ms: u64,
    /// When it finished; `None` while it runs.
    pub finished_ms: Option<u64>,
    /// TimeSeries: the source's last sequence when the backfill began;
    /// later events reach the shadow by dual-write.
    pub up_to: Option<u64>,
    /// The migration (`migration.id`) the backfill belongs to.
    pub migration: Option<String>,
}

impl Checkpoint {
    /// Items per second since the backfill began (up to `now_ms`, or its
    /// end).
    pub fn items_per_second(&self, now_ms: u64) -> f64 {
        let end = self.finished_ms.unwrap_or(now_ms);
        let secs = (end.saturating_sub(self.started_ms) as f64 / 1000.0).max(0.001);
        self.items as f64 / secs
    }

    /// Seconds left at that rate (0 when finished); `None` while unknown.
    pub fn eta_seconds(&self, now_ms: u64) -> Option<f64> {
        if self.finished_ms.is_some() {
            return Some(0.0);
        }
        let rate = self.items_per_second(now_ms);
        match self.total {
            Some(total) if rate > 0.0 => Some(total.saturating_sub(self.items) as f64 / rate),
            _ => None,
        }
    }
}
