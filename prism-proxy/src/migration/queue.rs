//! The durable repair queue: ids whose shadow write failed, kept in
//! `<data_dir>/migrations.db` until the shadow has been repaired.

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
        let path = data_dir.join("migrations.db");
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
             ) WITHOUT ROWID;",
        )
        .map_err(|e| sql_err(&path, "creating its tables", e))?;
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
        let now = now_ms();
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

    /// Up to `limit` queued ids of `namespace`, oldest first.
    pub async fn pending(&self, namespace: &str, limit: usize) -> Result<Vec<String>, String> {
        let namespace = namespace.to_string();
        self.with("listing repairs", move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id FROM repairs WHERE namespace = ?1 ORDER BY queued_at_ms, id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![namespace, limit as i64], |r| r.get(0))?;
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

    /// Forgets every queued id of `namespace` (the migration ended).
    pub async fn clear(&self, namespace: &str) -> Result<(), String> {
        let namespace = namespace.to_string();
        self.with("clearing repairs", move |c| {
            c.execute(
                "DELETE FROM repairs WHERE namespace = ?1",
                params![namespace],
            )
            .map(|_| ())
        })
        .await
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
