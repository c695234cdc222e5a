//! The SQL behind each KeyValue operation. Synchronous; the backend runs
//! these on tokio's blocking pool. Writes run inside one IMMEDIATE
//! transaction per call, so each call is atomic and durable on commit.

use pattern_core::idempotency::IDEMPOTENCY_WINDOW;
use pattern_core::keyvalue::{self, KeySet, decode_outcomes, encode_outcomes};
use pattern_core::{
    BackendError, Cursor, IdempotencyKey, Item, Mutation, MutationOutcome, Page, PageRequest,
    PutItem, ScanEntry, Selection, WriteOutcome,
};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

/// Maps a SQLite error to a backend error: a busy or locked database is
/// UNAVAILABLE (retryable), anything else INTERNAL.
pub fn sql_err(e: rusqlite::Error) -> BackendError {
    use rusqlite::ffi::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            BackendError::Unavailable(format!("sqlite database is busy: {e}; retry the call"))
        }
        Some(ErrorCode::DiskFull) => BackendError::Unavailable(format!("sqlite: {e}")),
        _ => BackendError::Internal(format!("sqlite: {e}")),
    }
}

const LIVE: &str = "(expires_at IS NULL OR expires_at > :now)";

fn item_from_row(row: &Row<'_>, offset: usize) -> rusqlite::Result<Item> {
    Ok(Item {
        key: row.get(offset)?,
        value: row.get(offset + 1)?,
        version: row.get::<_, i64>(offset + 2)? as u64,
        expires_at_ms: row.get::<_, Option<i64>>(offset + 3)?.map(|v| v as u64),
    })
}

// ---- writes ----

/// Runs `f` in an IMMEDIATE transaction, with idempotency handling: a known
/// token replays its outcome, a new one records the outcome on commit.
pub fn write_tx(
    conn: &mut Connection,
    now: u64,
    idempotency: Option<IdempotencyKey>,
    f: impl FnOnce(&Transaction<'_>) -> Result<Vec<MutationOutcome>, BackendError>,
) -> Result<WriteOutcome, BackendError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_err)?;
    if let Some(key) = &idempotency {
        let seen: Option<(i64, String)> = tx
            .query_row(
                "SELECT fingerprint, outcomes FROM kv_idempotency
                 WHERE token = ?1 AND expires_at > ?2",
                params![key.token, now as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql_err)?;
        if let Some((fingerprint, outcomes)) = seen {
            if fingerprint as u64 != key.fingerprint {
                return Err(BackendError::IdempotencyConflict(key.token.clone()));
            }
            let outcomes = decode_outcomes(&outcomes)
                .ok_or_else(|| BackendError::Internal("corrupt idempotency record".to_string()))?;
            return Ok(WriteOutcome {
                outcomes,
                replayed: true,
            });
        }
    }
    let outcomes = f(&tx)?;
    if let Some(key) = idempotency {
        tx.execute(
            "INSERT OR REPLACE INTO kv_idempotency (token, fingerprint, outcomes, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                key.token,
                key.fingerprint as i64,
                encode_outcomes(&outcomes),
                (now + IDEMPOTENCY_WINDOW.as_millis() as u64) as i64
            ],
        )
        .map_err(sql_err)?;
    }
    tx.commit().map_err(sql_err)?;
    Ok(WriteOutcome {
        outcomes,
        replayed: false,
    })
}

/// Fails with VersionMismatch unless `item`'s condition holds.
pub fn check(tx: &Transaction<'_>, id: &str, item: &PutItem, now: u64) -> Result<(), BackendError> {
    item.check_condition(|| {
        Ok(tx
            .prepare_cached(&format!(
                "SELECT version FROM kv_items WHERE id = :id AND key = :key AND {LIVE}"
            ))
            .and_then(|mut st| {
                st.query_row(
                    rusqlite::named_params! {":id": id, ":key": item.key, ":now": now as i64},
                    |r| r.get::<_, i64>(0),
                )
                .optional()
            })
            .map_err(sql_err)?
            .map_or(0, |v| v as u64))
    })
}

/// Writes one item with a fresh version; returns the version.
pub fn upsert(
    tx: &Transaction<'_>,
    id: &str,
    item: &PutItem,
    now: u64,
) -> Result<u64, BackendError> {
    let version: i64 = tx
        .prepare_cached(
            "UPDATE kv_counter SET value = value + 1 WHERE name = 'version' RETURNING value",
        )
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .map_err(sql_err)?;
    tx.prepare_cached(
        "INSERT INTO kv_items (id, key, value, version, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id, key) DO UPDATE SET
            value = excluded.value, version = excluded.version, expires_at = excluded.expires_at",
    )
    .and_then(|mut st| {
        st.execute(params![
            id,
            item.key,
            item.value,
            version,
            item.expires_at(now).map(|e| e.min(i64::MAX as u64) as i64)
        ])
    })
    .map_err(sql_err)?;
    Ok(version as u64)
}

/// Deletes the live items `selection` picks; returns how many.
pub fn delete(
    tx: &Transaction<'_>,
    id: &str,
    selection: &Selection,
    now: u64,
) -> Result<u64, BackendError> {
    let now = now as i64;
    let n = match selection.key_set() {
        KeySet::Keys(keys) => {
            let mut st = tx
                .prepare_cached(&format!(
                    "DELETE FROM kv_items WHERE id = :id AND key = :key AND {LIVE}"
                ))
                .map_err(sql_err)?;
            let mut n = 0;
            for key in keys {
                n += st
                    .execute(rusqlite::named_params! {":id": id, ":key": key, ":now": now})
                    .map_err(sql_err)?;
            }
            n
        }
        KeySet::Range { start, end } => tx
            .prepare_cached(&format!(
                "DELETE FROM kv_items WHERE id = :id AND key >= :start
                 AND (:end IS NULL OR key < :end) AND {LIVE}"
            ))
            .and_then(|mut st| {
                st.execute(rusqlite::named_params! {
                    ":id": id, ":start": start, ":end": end, ":now": now
                })
            })
            .map_err(sql_err)?,
    };
    Ok(n as u64)
}

/// A Put: check every condition, then write every item.
pub fn put(
    tx: &Transaction<'_>,
    id: &str,
    items: &[PutItem],
    now: u64,
) -> Result<Vec<MutationOutcome>, BackendError> {
    for item in items {
        check(tx, id, item, now)?;
    }
    items
        .iter()
        .map(|item| upsert(tx, id, item, now).map(MutationOutcome::Version))
        .collect()
}

/// A Mutate: check every put's condition against the state before the call,
/// then apply the mutations in order.
pub fn mutate(
    tx: &Transaction<'_>,
    mutations: &[Mutation],
    now: u64,
) -> Result<Vec<MutationOutcome>, BackendError> {
    for m in mutations {
        if let Mutation::Put { id, item } = m {
            check(tx, id, item, now)?;
        }
    }
    mutations
        .iter()
        .map(|m| match m {
            Mutation::Put { id, item } => upsert(tx, id, item, now).map(MutationOutcome::Version),
            Mutation::Delete { id, selection } => {
                delete(tx, id, selection, now).map(MutationOutcome::Deleted)
            }
        })
        .collect()
}

/// Removes expired items and idempotency records; returns items removed.
pub fn sweep(conn: &Connection, now: u64) -> Result<usize, BackendError> {
    let n = conn
        .execute(
            "DELETE FROM kv_items WHERE expires_at IS NOT NULL AND expires_at <= ?1",
            [now as i64],
        )
        .map_err(sql_err)?;
    conn.execute(
        "DELETE FROM kv_idempotency WHERE expires_at <= ?1",
        [now as i64],
    )
    .map_err(sql_err)?;
    Ok(n)
}

// ---- reads ----

/// Fills a page from SQLite rows.
fn fill_page<T>(
    rows: impl Iterator<Item = rusqlite::Result<T>>,
    budget: usize,
    size: impl Fn(&T) -> usize,
    cursor_of: impl Fn(&T) -> Cursor,
) -> Result<Page<T>, BackendError> {
    keyvalue::fill_page(rows.map(|r| r.map_err(sql_err)), budget, size, cursor_of)
}

fn get_cursor(item: &Item) -> Cursor {
    Cursor {
        after_id: String::new(),
        after_key: item.key.clone(),
        snapshot: 0,
    }
}

/// One page of the live items of `id` that `selection` picks.
pub fn get(
    conn: &Connection,
    id: &str,
    selection: &Selection,
    page: &PageRequest,
    now: u64,
) -> Result<Page<Item>, BackendError> {
    let now = now as i64;
    let after = page.cursor.as_ref().map(|c| c.after_key.clone());
    match selection.key_set() {
        KeySet::Keys(keys) => {
            // One read transaction, so every key of the page is read from
            // the same state.
            let tx = conn.unchecked_transaction().map_err(sql_err)?;
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT key, value, version, expires_at FROM kv_items
                     WHERE id = :id AND key = :key AND {LIVE}"
                ))
                .map_err(sql_err)?;
            let rows = keys
                .into_iter()
                .filter(|k| after.as_ref().is_none_or(|a| k > a))
                .filter_map(|key| {
                    st.query_row(
                        rusqlite::named_params! {":id": id, ":key": key, ":now": now},
                        |r| item_from_row(r, 0),
                    )
                    .optional()
                    .transpose()
                });
            fill_page(rows, page.budget_bytes, Item::size, get_cursor)
        }
        KeySet::Range { start, end } => {
            // The lower bound is the later of the range start and the cursor.
            let (lower_op, lower) = match after {
                Some(a) if a >= start => (">", a),
                _ => (">=", start),
            };
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT key, value, version, expires_at FROM kv_items
                     WHERE id = :id AND key {lower_op} :lower
                       AND (:end IS NULL OR key < :end) AND {LIVE}
                     ORDER BY key"
                ))
                .map_err(sql_err)?;
            let rows = st
                .query_map(
                    rusqlite::named_params! {":id": id, ":lower": lower, ":end": end, ":now": now},
                    |r| item_from_row(r, 0),
                )
                .map_err(sql_err)?;
            fill_page(rows, page.budget_bytes, Item::size, get_cursor)
        }
    }
}

/// One page of every live item in (id, key) order.
pub fn scan(
    conn: &Connection,
    page: &PageRequest,
    now: u64,
) -> Result<Page<ScanEntry>, BackendError> {
    let (after_id, after_key, filter) = match &page.cursor {
        Some(c) => (
            c.after_id.clone(),
            c.after_key.clone(),
            "(id, key) > (:after_id, :after_key)",
        ),
        None => (
            String::new(),
            Vec::new(),
            ":after_id IS NOT NULL AND :after_key IS NOT NULL",
        ),
    };
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT id, key, value, version, expires_at FROM kv_items
             WHERE {filter} AND {LIVE} ORDER BY id, key"
        ))
        .map_err(sql_err)?;
    let rows = st
        .query_map(
            rusqlite::named_params! {":after_id": after_id, ":after_key": after_key, ":now": now as i64},
            |r| {
                Ok(ScanEntry {
                    id: r.get(0)?,
                    item: item_from_row(r, 1)?,
                })
            },
        )
        .map_err(sql_err)?;
    fill_page(
        rows,
        page.budget_bytes,
        |e| e.item.size(),
        |e| Cursor {
            after_id: e.id.clone(),
            after_key: e.item.key.clone(),
            snapshot: 0,
        },
    )
}
