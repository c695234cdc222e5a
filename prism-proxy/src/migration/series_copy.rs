//! Copying TimeSeries events to the shadow: the repair of one queued event
//! and the backfill (ADR-016).
//!
//! The backfill scans the source in identity order (series, time, event
//! id) up to the source's last sequence when it began: later events reach
//! the shadow by dual-write, which was on before the backfill started. It
//! writes each page to the shadow as one batch; an event the shadow holds
//! is a duplicate there, so a copy never overwrites anything and no lock
//! is needed. The checkpoint (last identity, `up_to`) is saved after every
//! page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pattern_core::BackendError;
use pattern_core::timeseries::{Event, EventKey, ReadQuery};

use super::queue::Checkpoint;
use super::{MigrationShared, TsRoles, now_ms};

/// A page of the scan holds about this many bytes.
const PAGE_BYTES: usize = 256 << 10;
/// The most events in one page (and one shadow write).
const MAX_PAGE: usize = 256;

/// An event identity as queued for repair.
pub fn queue_id(key: &EventKey) -> String {
    serde_json::to_string(key).unwrap_or_default()
}

fn parse_queue_id(id: &str) -> Result<EventKey, BackendError> {
    serde_json::from_str(id).map_err(|e| {
        BackendError::Internal(format!(
            "a queued TimeSeries repair is not an event key: {e}"
        ))
    })
}

/// Where a scan continues after `key`, as a checkpoint cursor.
fn cursor_of(key: &EventKey) -> pattern_core::Cursor {
    let mut after_key = key.1.to_be_bytes().to_vec();
    after_key.extend_from_slice(key.2.as_bytes());
    pattern_core::Cursor {
        after_id: key.0.clone(),
        after_key,
        snapshot: 0,
    }
}

fn key_of(cursor: &pattern_core::Cursor) -> Result<EventKey, String> {
    let (time, id) = cursor
        .after_key
        .split_at_checked(8)
        .ok_or("the saved backfill cursor is too short")?;
    let time = i64::from_be_bytes(time.try_into().map_err(|_| "bad saved cursor")?);
    let id = String::from_utf8(id.to_vec()).map_err(|e| format!("bad saved cursor: {e}"))?;
    Ok((cursor.after_id.clone(), time, id))
}

/// The event `key` as `backend` holds it, if it does.
async fn find(
    backend: &dyn pattern_core::timeseries::TimeSeriesBackend,
    key: &EventKey,
) -> Result<Option<Event>, BackendError> {
    let (series_id, time_us, event_id) = key;
    let mut query = ReadQuery {
        series_id: series_id.clone(),
        start_us: Some(*time_us),
        end_us: time_us.checked_add(1),
        budget_bytes: 4 << 20,
        ..ReadQuery::default()
    };
    loop {
        let page = backend.read(&query).await?;
        if let Some(found) = page.events.iter().find(|s| s.event.event_id == *event_id) {
            return Ok(Some(found.event.clone()));
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(None),
        }
    }
}

/// How often a queued event held by neither backend is looked for again
/// before it counts as never stored (a write whose primary call failed
/// may become visible a moment later).
const ABSENT_ATTEMPTS: u32 = 3;

/// Makes both backends hold the queued event `id`: it is copied to
/// whichever lacks it. Events are immutable, so the direction does not
/// matter, and a repair queued under other roles (before a promotion or a
/// rollback) still lands. Held by neither after `attempts` looks (never
/// stored, or retention dropped it): nothing to do.
pub async fn repair(roles: &TsRoles, id: &str, attempts: u32) -> Result<(), BackendError> {
    let key = parse_queue_id(id)?;
    let on_primary = find(roles.primary.as_ref(), &key).await?;
    let on_shadow = find(roles.shadow.as_ref(), &key).await?;
    match (on_primary, on_shadow) {
        (Some(event), None) => roles.shadow.write(vec![event]).await.map(|_| ()),
        (None, Some(event)) => roles.primary.write(vec![event]).await.map(|_| ()),
        (None, None) if attempts + 1 < ABSENT_ATTEMPTS => Err(BackendError::Unavailable(
            "neither backend holds the event yet; looking again".into(),
        )),
        _ => Ok(()),
    }
}

/// How many events a page asks for: about [`PAGE_BYTES`] at the sizes
/// seen so far, and no more than the rate allows in a fifth of a second.
fn page_len(cp: &Checkpoint, rate: Option<u32>) -> usize {
    let by_size = match cp.items {
        0 => 16,
        n => PAGE_BYTES / ((cp.bytes / n).max(1) as usize),
    };
    let by_rate = rate.map_or(MAX_PAGE, |r| (r as usize / 5).max(1));
    by_size.min(by_rate).clamp(1, MAX_PAGE)
}

/// Counts the source's events up to `up_to` (for the ETA).
async fn count(roles: &TsRoles, up_to: u64) -> Result<u64, BackendError> {
    let mut n = 0u64;
    let mut after: Option<EventKey> = None;
    loop {
        let page = roles.primary.scan(after.as_ref(), up_to, 1024).await?;
        let Some(last) = page.last() else {
            return Ok(n);
        };
        after = Some(last.event.key());
        n += page.len() as u64;
    }
}

/// Runs (or resumes) the backfill of `shared`'s TimeSeries namespace to its
/// end.
pub async fn backfill(shared: Arc<MigrationShared>, rate: Option<u32>) -> Result<(), String> {
    let ns = shared.namespace.clone();
    let err = |e: BackendError| format!("backfill of '{ns}': {e}");
    // A checkpoint without `up_to` is a KeyValue backfill's (a namespace of
    // that name migrated before): not this one's.
    let Some(mut cp) = super::backfill::resume(&shared, |cp| cp.up_to.is_some()).await? else {
        return Ok(());
    };
    let roles = shared.ts_roles()?;
    let up_to = match cp.up_to {
        Some(up_to) => up_to,
        None => {
            let up_to = roles.primary.last_sequence().await.map_err(err)?;
            cp.up_to = Some(up_to);
            shared.save_progress(&cp).await?;
            up_to
        }
    };
    if cp.total.is_none() {
        cp.total = Some(count(&roles, up_to).await.map_err(err)?);
        shared.save_progress(&cp).await?;
    }
    shared.set_progress(cp.clone());
    let mut after = cp.cursor.as_ref().map(key_of).transpose()?;
    let started = Instant::now();
    let mut copied_here = 0u64;
    loop {
        let roles = shared.ts_roles()?;
        let page = roles
            .primary
            .scan(after.as_ref(), up_to, page_len(&cp, rate))
            .await
            .map_err(err)?;
        let Some(last) = page.last().map(|s| s.event.key()) else {
            cp.finished_ms = Some(now_ms());
            shared.save_progress(&cp).await?;
            tracing::info!(namespace = %ns, items = cp.items, bytes = cp.bytes, "backfill finished");
            return Ok(());
        };
        if let Some(rate) = rate {
            // Events per second, at most: wait until this page is due.
            let due = Duration::from_secs_f64(copied_here as f64 / f64::from(rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let events: Vec<Event> = page.into_iter().map(|s| s.event).collect();
        let n = events.len() as u64;
        let bytes: u64 = events.iter().map(|e| e.size() as u64).sum();
        roles.shadow.write(events).await.map_err(err)?;
        cp.items += n;
        cp.bytes += bytes;
        copied_here += n;
        cp.last_id = Some(last.0.clone());
        cp.cursor = Some(cursor_of(&last));
        after = Some(last);
        shared.save_progress(&cp).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        for key in [
            ("cpu".to_string(), -5i64, "e1".to_string()),
            ("s".to_string(), i64::MAX, String::new()),
            (
                "ü/x".to_string(),
                1_700_000_000_000_000,
                "id with spaces".into(),
            ),
        ] {
            assert_eq!(key_of(&cursor_of(&key)).unwrap(), key);
            assert_eq!(parse_queue_id(&queue_id(&key)).unwrap(), key);
        }
    }
}
