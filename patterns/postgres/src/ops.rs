//! The SQL behind each KeyValue operation.

use pattern_core::idempotency::IDEMPOTENCY_WINDOW;
use pattern_core::keyvalue::{KeySet, decode_outcomes, encode_outcomes};
use pattern_core::paging::PageFill;
use pattern_core::{
    BackendError, Cursor, IdempotencyKey, Item, Mutation, MutationOutcome, Page, PageRequest,
    ScanEntry, Selection, WriteOutcome,
};
use tokio_postgres::Row;

use crate::{Shared, pg_err};

/// Rows fetched per round trip while filling a page.
const CHUNK: i64 = 256;

const LIVE: &str = "(expires_at IS NULL OR expires_at > $2)";

fn item(row: &Row, offset: usize) -> Item {
    Item {
        key: row.get(offset),
        value: row.get(offset + 1),
        version: row.get::<_, i64>(offset + 2) as u64,
        expires_at_ms: row.get::<_, Option<i64>>(offset + 3).map(|v| v as u64),
    }
}

/// Applies `mutations` in one transaction, serialized with every other
/// write of the namespace, with idempotency handling.
pub async fn write(
    shared: &Shared,
    mutations: Vec<Mutation>,
    idempotency: Option<IdempotencyKey>,
) -> Result<WriteOutcome, BackendError> {
    let s = &shared.schema;
    let ns = &shared.namespace;
    let mut client = shared.client().await?;
    let tx = client.transaction().await.map_err(pg_err)?;
    let now = shared.now();
    // Taking the namespace's counter row first serializes its writers; one
    // statement takes the lock and reserves a version for every Put. A
    // replay or a failed condition below rolls the reservation back.
    let puts = mutations
        .iter()
        .filter(|m| matches!(m, Mutation::Put { .. }))
        .count() as i64;
    let reserve = tx
        .prepare_cached(&format!(
            "UPDATE {s}.kv_versions SET value = value + $2 WHERE namespace = $1 RETURNING value"
        ))
        .await
        .map_err(pg_err)?;
    let mut counter: i64 = tx
        .query_one(&reserve, &[ns, &puts])
        .await
        .map_err(pg_err)?
        .get::<_, i64>(0)
        - puts;
    if let Some(key) = &idempotency {
        let seen = tx
            .query_opt(
                &format!(
                    "SELECT fingerprint, outcomes FROM {s}.kv_idempotency
                     WHERE namespace = $1 AND token = $3 AND expires_at > $2"
                ),
                &[ns, &now, &key.token],
            )
            .await
            .map_err(pg_err)?;
        if let Some(row) = seen {
            if row.get::<_, i64>(0) as u64 != key.fingerprint {
                return Err(BackendError::IdempotencyConflict(key.token.clone()));
            }
            let outcomes = decode_outcomes(row.get(1))
                .ok_or_else(|| BackendError::Internal("corrupt idempotency record".into()))?;
            return Ok(WriteOutcome {
                outcomes,
                replayed: true,
            });
        }
    }
    for m in &mutations {
        if let Mutation::Put { id, item } = m
            && item.expected_version.is_some()
        {
            let current_version = tx
                .prepare_cached(&format!(
                    "SELECT version FROM {s}.kv_items
                     WHERE namespace = $1 AND id = $3 AND key = $4 AND {LIVE}"
                ))
                .await
                .map_err(pg_err)?;
            let row = tx
                .query_opt(&current_version, &[ns, &now, id, &item.key])
                .await
                .map_err(pg_err)?;
            let current = row.map_or(0, |r| r.get::<_, i64>(0) as u64);
            item.check_condition(|| Ok(current))?;
        }
    }
    let mut outcomes = Vec::with_capacity(mutations.len());
    for m in &mutations {
        match m {
            Mutation::Put { id, item } => {
                counter += 1;
                let expires = item
                    .expires_at(now as u64)
                    .map(|e| e.min(i64::MAX as u64) as i64);
                let upsert = tx
                    .prepare_cached(&format!(
                        "INSERT INTO {s}.kv_items (namespace, id, key, value, version, expires_at)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (namespace, id, key) DO UPDATE SET
                            value = excluded.value, version = excluded.version,
                            expires_at = excluded.expires_at"
                    ))
                    .await
                    .map_err(pg_err)?;
                tx.execute(
                    &upsert,
                    &[ns, id, &item.key, &item.value, &counter, &expires],
                )
                .await
                .map_err(pg_err)?;
                outcomes.push(MutationOutcome::Version(counter as u64));
            }
            Mutation::Delete { id, selection } => {
                let n = delete(&tx, shared, id, selection, now).await?;
                outcomes.push(MutationOutcome::Deleted(n));
            }
        }
    }
    if let Some(key) = idempotency {
        let expires = now + IDEMPOTENCY_WINDOW.as_millis() as i64;
        tx.execute(
            &format!(
                "INSERT INTO {s}.kv_idempotency (namespace, token, fingerprint, outcomes, expires_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (namespace, token) DO UPDATE SET
                    fingerprint = excluded.fingerprint, outcomes = excluded.outcomes,
                    expires_at = excluded.expires_at"
            ),
            &[
                ns,
                &key.token,
                &(key.fingerprint as i64),
                &encode_outcomes(&outcomes),
                &expires,
            ],
        )
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(WriteOutcome {
        outcomes,
        replayed: false,
    })
}

async fn delete(
    tx: &deadpool_postgres::Transaction<'_>,
    shared: &Shared,
    id: &str,
    selection: &Selection,
    now: i64,
) -> Result<u64, BackendError> {
    let s = &shared.schema;
    let ns = &shared.namespace;
    let n = match selection.key_set() {
        KeySet::Keys(keys) => {
            tx.execute(
                &format!(
                    "DELETE FROM {s}.kv_items
                     WHERE namespace = $1 AND id = $3 AND key = ANY($4) AND {LIVE}"
                ),
                &[ns, &now, &id, &keys],
            )
            .await
        }
        KeySet::Range { start, end } => {
            tx.execute(
                &format!(
                    "DELETE FROM {s}.kv_items
                     WHERE namespace = $1 AND id = $3 AND key >= $4
                       AND ($5::bytea IS NULL OR key < $5) AND {LIVE}"
                ),
                &[ns, &now, &id, &start, &end],
            )
            .await
        }
    };
    n.map_err(pg_err)
}

/// One page of the live items of `id` that `selection` picks.
pub async fn get(
    shared: &Shared,
    id: &str,
    selection: &Selection,
    page: &PageRequest,
) -> Result<Page<Item>, BackendError> {
    let s = &shared.schema;
    let ns = &shared.namespace;
    let client = shared.client().await?;
    let now = shared.now();
    let mut after = page.cursor.as_ref().map(|c| c.after_key.clone());
    let mut fill = PageFill::new(page.budget_bytes);
    let mut items: Vec<Item> = Vec::new();
    let cursor = |items: &Vec<Item>| Cursor {
        after_id: String::new(),
        after_key: items.last().map(|i| i.key.clone()).unwrap_or_default(),
        snapshot: 0,
    };
    let (keys, start, end) = match selection.key_set() {
        KeySet::Keys(keys) => (Some(keys), Vec::new(), None),
        KeySet::Range { start, end } => (None, start, end),
    };
    loop {
        // Strictly after the cursor, or from the range start.
        let (op, lower) = match &after {
            Some(a) if *a >= start => (">", a.clone()),
            _ => (">=", start.clone()),
        };
        let query = |filter: &str| {
            format!(
                "SELECT key, value, version, expires_at FROM {s}.kv_items
                 WHERE namespace = $1 AND id = $3 AND key {op} $4 AND {filter} AND {LIVE}
                 ORDER BY key LIMIT $6"
            )
        };
        let rows = match &keys {
            Some(list) => {
                let statement = client
                    .prepare_cached(&query("key = ANY($5)"))
                    .await
                    .map_err(pg_err)?;
                client
                    .query(&statement, &[ns, &now, &id, &lower, list, &CHUNK])
                    .await
            }
            None => {
                let statement = client
                    .prepare_cached(&query("($5::bytea IS NULL OR key < $5)"))
                    .await
                    .map_err(pg_err)?;
                client
                    .query(&statement, &[ns, &now, &id, &lower, &end, &CHUNK])
                    .await
            }
        }
        .map_err(pg_err)?;
        let fetched = rows.len() as i64;
        for row in &rows {
            let it = item(row, 0);
            if !fill.admit(it.size()) {
                let next = cursor(&items);
                return Ok(Page {
                    items,
                    next: Some(next),
                });
            }
            items.push(it);
        }
        if fetched < CHUNK {
            return Ok(Page { items, next: None });
        }
        after = items.last().map(|i| i.key.clone());
    }
}

/// One page of every live item of the namespace in (id, key) order.
pub async fn scan(shared: &Shared, page: &PageRequest) -> Result<Page<ScanEntry>, BackendError> {
    let s = &shared.schema;
    let ns = &shared.namespace;
    let client = shared.client().await?;
    let now = shared.now();
    let mut after = page
        .cursor
        .as_ref()
        .map(|c| (c.after_id.clone(), c.after_key.clone()));
    let mut fill = PageFill::new(page.budget_bytes);
    let mut items: Vec<ScanEntry> = Vec::new();
    loop {
        let rows = match &after {
            Some((id, key)) => {
                client
                    .query(
                        &format!(
                            "SELECT id, key, value, version, expires_at FROM {s}.kv_items
                             WHERE namespace = $1 AND (id, key) > ($3, $4) AND {LIVE}
                             ORDER BY id, key LIMIT $5"
                        ),
                        &[ns, &now, id, key, &CHUNK],
                    )
                    .await
            }
            None => {
                client
                    .query(
                        &format!(
                            "SELECT id, key, value, version, expires_at FROM {s}.kv_items
                             WHERE namespace = $1 AND {LIVE}
                             ORDER BY id, key LIMIT $3"
                        ),
                        &[ns, &now, &CHUNK],
                    )
                    .await
            }
        }
        .map_err(pg_err)?;
        let fetched = rows.len() as i64;
        for row in &rows {
            let entry = ScanEntry {
                id: row.get(0),
                item: item(row, 1),
            };
            if !fill.admit(entry.item.size()) {
                let last = items.last().expect("a full page has an item");
                let next = Cursor {
                    after_id: last.id.clone(),
                    after_key: last.item.key.clone(),
                    snapshot: 0,
                };
                return Ok(Page {
                    items,
                    next: Some(next),
                });
            }
            items.push(entry);
        }
        if fetched < CHUNK {
            return Ok(Page { items, next: None });
        }
        after = items.last().map(|e| (e.id.clone(), e.item.key.clone()));
    }
}

/// Deletes expired items and idempotency records of the namespace.
pub async fn sweep(shared: &Shared) -> Result<u64, BackendError> {
    let s = &shared.schema;
    let client = shared.client().await?;
    let now = shared.now();
    let n = client
        .execute(
            &format!(
                "DELETE FROM {s}.kv_items
                 WHERE namespace = $1 AND expires_at IS NOT NULL AND expires_at <= $2"
            ),
            &[&shared.namespace, &now],
        )
        .await
        .map_err(pg_err)?;
    client
        .execute(
            &format!("DELETE FROM {s}.kv_idempotency WHERE namespace = $1 AND expires_at <= $2"),
            &[&shared.namespace, &now],
        )
        .await
        .map_err(pg_err)?;
    Ok(n)
}
