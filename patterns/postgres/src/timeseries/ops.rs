//! The SQL behind each TimeSeries operation.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use pattern_core::BackendError;
use pattern_core::timeseries::{
    Event, EventKey, EventPage, Order, ReadQuery, StoredEvent, TailQuery, WriteSummary,
    bucket_start,
};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::Shared;
use super::notify::raise;
use crate::pg_err;

/// Rows fetched per round trip while filling a page.
const CHUNK: i64 = 64;

const COLUMNS: &str = "time_us, event_id, sequence, tags::text, payload";

fn stored(series_id: &str, row: &Row) -> Result<StoredEvent, BackendError> {
    let tags: String = row.get(3);
    let tags: BTreeMap<String, String> = serde_json::from_str(&tags).map_err(|e| {
        BackendError::Internal(format!(
            "postgres timeseries: stored tags are not a string map: {e}"
        ))
    })?;
    Ok(StoredEvent {
        event: Event {
            series_id: series_id.to_string(),
            time_us: row.get(0),
            event_id: row.get(1),
            tags,
            payload: row.get(4),
        },
        sequence: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
    })
}

fn tags_json(tags: &BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".to_string())
}

/// Creates the partitions of `buckets` this backend has not seen yet.
async fn ensure_partitions(shared: &Shared, buckets: &BTreeSet<i64>) -> Result<(), BackendError> {
    let missing: Vec<i64> = {
        let known = shared.partitions.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .iter()
            .filter(|b| !known.contains(b))
            .copied()
            .collect()
    };
    if missing.is_empty() {
        return Ok(());
    }
    let mut client = shared.client().await?;
    for start in missing {
        let end = start.saturating_add(shared.bucket_us);
        shared
            .layout
            .create_partition(&mut client, start, end)
            .await
            .map_err(pg_err)?;
        shared
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(start);
    }
    Ok(())
}

/// Whether `e` says a row had no partition (one was dropped meanwhile).
fn missing_partition(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::CHECK_VIOLATION)
        && e.as_db_error()
            .is_some_and(|db| db.message().contains("no partition"))
}

/// Stores `events` in one transaction; see the module docs of
/// [`super`] for how sequences are reserved.
pub async fn write(shared: &Shared, events: Vec<Event>) -> Result<WriteSummary, BackendError> {
    // Repeats within the batch: the first occurrence is the one written.
    let mut seen = HashSet::new();
    let mut repeats = 0u32;
    let mut unique = Vec::with_capacity(events.len());
    for event in events {
        if seen.insert((
            event.series_id.clone(),
            event.time_us,
            event.event_id.clone(),
        )) {
            unique.push(event);
        } else {
            repeats += 1;
        }
    }
    if unique.is_empty() {
        return Ok(WriteSummary {
            written: 0,
            duplicates: repeats,
        });
    }
    let buckets: BTreeSet<i64> = unique
        .iter()
        .map(|e| bucket_start(e.time_us, shared.bucket_us))
        .collect();
    let mut attempt = 0;
    loop {
        ensure_partitions(shared, &buckets).await?;
        match try_write(shared, &unique).await {
            Ok(written) => {
                return Ok(WriteSummary {
                    written,
                    duplicates: unique.len() as u32 - written + repeats,
                });
            }
            Err(WriteError::Pg(e)) if missing_partition(&e) && attempt < 3 => {
                // Retention dropped a partition this backend had cached.
                attempt += 1;
                shared
                    .partitions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
            Err(WriteError::Pg(e)) => return Err(pg_err(e)),
            Err(WriteError::Backend(e)) => return Err(e),
        }
    }
}

enum WriteError {
    Pg(tokio_postgres::Error),
    Backend(BackendError),
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(e: tokio_postgres::Error) -> Self {
        WriteError::Pg(e)
    }
}

async fn try_write(shared: &Shared, events: &[Event]) -> Result<u32, WriteError> {
    let layout = &shared.layout;
    let mut client = shared.client().await.map_err(WriteError::Backend)?;
    let tx = client.transaction().await?;
    let n = events.len() as i64;
    // The namespace's counter row: its lock serializes writers until
    // commit, so sequences follow commit order.
    let reserve = tx
        .prepare_cached(&format!(
            "UPDATE {} SET sequence = sequence + $2 WHERE namespace = $1 RETURNING sequence",
            layout.counters()
        ))
        .await?;
    let end: i64 = tx
        .query_one(&reserve, &[&layout.namespace, &n])
        .await?
        .get(0);
    let base = end - n;
    let series: Vec<&str> = events.iter().map(|e| e.series_id.as_str()).collect();
    let times: Vec<i64> = events.iter().map(|e| e.time_us).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let sequences: Vec<i64> = (1..=n).map(|i| base + i).collect();
    let tags: Vec<String> = events.iter().map(|e| tags_json(&e.tags)).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO {} (series_id, time_us, event_id, sequence, tags, payload)
             SELECT s, t, e, q, g::jsonb, p
             FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::text[], $6::bytea[])
                  AS u(s, t, e, q, g, p)
             ON CONFLICT DO NOTHING",
            layout.parent()
        ))
        .await?;
    let written = tx
        .execute(
            &insert,
            &[&series, &times, &ids, &sequences, &tags, &payloads],
        )
        .await? as u32;
    if written == 0 {
        // All duplicates: roll back, so the reservation leaves no gap.
        drop(tx);
        return Ok(0);
    }
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&layout.channel, &end.to_string()],
    )
    .await?;
    tx.commit().await?;
    raise(&shared.high_water, u64::try_from(end).unwrap_or(0));
    Ok(written)
}

/// One page of a ranged read, filled in chunks of [`CHUNK`] rows.
pub async fn read(shared: &Shared, q: &ReadQuery) -> Result<EventPage, BackendError> {
    let (cmp, dir) = match q.order {
        Order::OldestFirst => (">", "ASC"),
        Order::NewestFirst => ("<", "DESC"),
    };
    let start = q.start_us.unwrap_or(i64::MIN);
    let last = match q.end_us {
        Some(i64::MIN) => return Ok(EventPage::default()),
        Some(end) => end - 1,
        None => i64::MAX,
    };
    let tags = tags_json(&q.tags);
    let base = format!(
        "SELECT {COLUMNS} FROM {} WHERE series_id = $1 AND time_us >= $2 AND time_us <= $3
         AND tags @> $4::text::jsonb",
        shared.layout.parent()
    );
    let first_sql = format!("{base} ORDER BY time_us {dir}, event_id {dir} LIMIT $5");
    let next_sql = format!(
        "{base} AND (time_us, event_id) {cmp} ($6, $7::text COLLATE \"C\")
         ORDER BY time_us {dir}, event_id {dir} LIMIT $5"
    );
    let client = shared.client().await?;
    let mut cursor = q.after.clone();
    let mut page = EventPage::default();
    let mut used = 0usize;
    loop {
        let rows = match &cursor {
            None => {
                let params: [&(dyn ToSql + Sync); 5] = [&q.series_id, &start, &last, &tags, &CHUNK];
                client.query(&first_sql, &params).await
            }
            Some((t, id)) => {
                let params: [&(dyn ToSql + Sync); 7] =
                    [&q.series_id, &start, &last, &tags, &CHUNK, t, id];
                client.query(&next_sql, &params).await
            }
        }
        .map_err(pg_err)?;
        let full = rows.len() as i64 == CHUNK;
        for row in &rows {
            let event = stored(&q.series_id, row)?;
            let size = event.event.size();
            if !page.events.is_empty() && used + size > q.budget_bytes {
                page.next = page
                    .events
                    .last()
                    .map(|e| (e.event.time_us, e.event.event_id.clone()));
                return Ok(page);
            }
            used += size;
            cursor = Some((event.event.time_us, event.event.event_id.clone()));
            page.events.push(event);
        }
        if !full {
            return Ok(page);
        }
    }
}

/// Up to `limit` matching events with a sequence above `after`.
pub async fn read_since(
    shared: &Shared,
    q: &TailQuery,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, BackendError> {
    let client = shared.client().await?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM {} WHERE series_id = $1 AND sequence > $2 AND time_us >= $3
             AND tags @> $4::text::jsonb ORDER BY sequence LIMIT $5",
            shared.layout.parent()
        ))
        .await
        .map_err(pg_err)?;
    let rows = client
        .query(
            &stmt,
            &[
                &q.series_id,
                &after,
                &q.from_us,
                &tags_json(&q.tags),
                &limit,
            ],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| stored(&q.series_id, r)).collect()
}

/// Up to `limit` events of every series after `after` in identity order,
/// with a sequence at or below `up_to`: keyset pagination on the primary
/// key (a merge of the partitions' key indexes).
pub async fn scan(
    shared: &Shared,
    after: Option<&EventKey>,
    up_to: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, BackendError> {
    let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // The series id comes last, after the columns `stored` reads.
    let base = format!(
        "SELECT {COLUMNS}, series_id FROM {} WHERE sequence <= $1",
        shared.layout.parent()
    );
    let order = "ORDER BY series_id, time_us, event_id LIMIT $2";
    let client = shared.client().await?;
    let rows = match after {
        None => {
            let stmt = client
                .prepare_cached(&format!("{base} {order}"))
                .await
                .map_err(pg_err)?;
            client.query(&stmt, &[&up_to, &limit]).await
        }
        Some((series_id, time_us, event_id)) => {
            let stmt = client
                .prepare_cached(&format!(
                    "{base} AND (series_id, time_us, event_id)
                     > ($3::text COLLATE \"C\", $4, $5::text COLLATE \"C\") {order}"
                ))
                .await
                .map_err(pg_err)?;
            client
                .query(&stmt, &[&up_to, &limit, series_id, time_us, event_id])
                .await
        }
    }
    .map_err(pg_err)?;
    rows.iter()
        .map(|r| stored(r.get::<_, &str>(5), r))
        .collect()
}

/// Drops every partition whose upper bound is at or before `cutoff_us`,
/// in one transaction that first locks the parent table (so it never
/// deadlocks with writers, which lock the parent before a partition).
/// Returns 0: counting the rows would read the partitions being dropped.
pub async fn drop_before(shared: &Shared, cutoff_us: i64) -> Result<u64, BackendError> {
    let layout = &shared.layout;
    let mut client = shared.client().await?;
    let expired: Vec<String> = layout
        .partitions(&client)
        .await
        .map_err(pg_err)?
        .into_iter()
        .filter(|(_, end)| *end <= cutoff_us)
        .map(|(name, _)| name)
        .collect();
    if expired.is_empty() {
        return Ok(0);
    }
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        layout.parent()
    ))
    .await
    .map_err(pg_err)?;
    for name in &expired {
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS \"{}\".\"{name}\"",
            layout.schema
        ))
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    shared
        .partitions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    tracing::debug!(
        partitions = expired.len(),
        "timeseries retention dropped partitions"
    );
    Ok(0)
}
