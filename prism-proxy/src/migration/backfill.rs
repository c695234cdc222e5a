//! The backfill: copies the primary to the shadow, id by id in scan order,
//! each under the id's lock (a write racing the copy is never overwritten
//! by older data: the copy re-reads the primary under the lock),
//! rate-limited, with a checkpoint saved after every page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pattern_core::{BackendError, Capability, Cursor, KeyValueBackend, PageRequest};

use super::queue::Checkpoint;
use super::{MigrationShared, now_ms, repair};

/// Scan page budget.
const PAGE_BYTES: usize = 256 << 10;
/// The checkpoint is saved after every page, and within a page after
/// this many items.
const SAVE_EVERY: u64 = 200;

/// Counts the primary's items (for the ETA).
async fn count(primary: &dyn KeyValueBackend) -> Result<u64, BackendError> {
    let mut n = 0;
    let mut page = PageRequest::first(PAGE_BYTES);
    loop {
        let got = primary.scan(page).await?;
        n += got.items.len() as u64;
        match got.next {
            Some(c) => {
                page = PageRequest {
                    budget_bytes: PAGE_BYTES,
                    cursor: Some(c),
                }
            }
            None => return Ok(n),
        }
    }
}

/// Where a backfill starts: the saved checkpoint when it is this
/// migration's and `is_ours` (a resumed backfill), else a new one; `None` when the saved one is
/// finished (its progress is shown, nothing runs).
pub(super) async fn resume(
    shared: &MigrationShared,
    is_ours: impl Fn(&Checkpoint) -> bool,
) -> Result<Option<Checkpoint>, String> {
    let ns = &shared.namespace;
    let saved = shared.queue.checkpoint(ns).await?;
    match saved.filter(|cp| cp.migration == shared.id && is_ours(cp)) {
        Some(cp) if cp.finished_ms.is_some() => {
            shared.set_progress(cp);
            Ok(None)
        }
        Some(cp) => {
            tracing::info!(namespace = %ns, items = cp.items, "backfill resumes from its checkpoint");
            Ok(Some(cp))
        }
        None => Ok(Some(Checkpoint {
            started_ms: now_ms(),
            migration: shared.id.clone(),
            ..Checkpoint::default()
        })),
    }
}

/// Runs (or resumes) the backfill of `shared`'s namespace to its end.
pub async fn run(shared: Arc<MigrationShared>, rate: Option<u32>) -> Result<(), String> {
    let ns = shared.namespace.clone();
    let err = |e: BackendError| format!("backfill of '{ns}': {e}");
    // A checkpoint with `up_to` is a TimeSeries backfill's (a namespace of
    // that name migrated before): not this one's.
    let Some(mut cp) = resume(&shared, |cp| cp.up_to.is_none()).await? else {
        return Ok(());
    };
    // A snapshot-reading backend's saved cursor names a snapshot of the
    // previous run: scan again from the start, skipping the ids done.
    if shared
        .kv_roles()?
        .primary
        .capabilities()
        .has(Capability::SnapshotReads)
    {
        cp.cursor = None;
    }
    if cp.total.is_none() {
        let primary = shared.kv_roles()?.primary;
        cp.total = Some(count(primary.as_ref()).await.map_err(err)?);
        shared.save_progress(&cp).await?;
    }
    shared.set_progress(cp.clone());
    let started = Instant::now();
    let mut copied_here = 0u64;
    // The id being copied (its items span pages).
    let mut current: Option<String> = None;
    let mut saved = cp.items;
    loop {
        let roles = shared.kv_roles()?;
        let page = PageRequest {
            budget_bytes: PAGE_BYTES,
            cursor: cp.cursor.clone(),
        };
        let got = match roles.primary.scan(page).await {
            Ok(got) => got,
            // A memstore snapshot expired between pages: start the scan
            // again and skip the ids done (scan order is id order).
            Err(BackendError::PageTokenExpired(_)) if cp.cursor.is_some() => {
                cp.cursor = None;
                continue;
            }
            Err(e) => return Err(err(e)),
        };
        for entry in &got.items {
            let new_id = cp.last_id.as_ref().is_none_or(|last| entry.id > *last);
            if !new_id && current.as_deref() != Some(entry.id.as_str()) {
                continue; // copied before a restart of the scan
            }
            if new_id {
                if let Some(rate) = rate {
                    // Items per second, at most: wait until this one is due.
                    let due = Duration::from_secs_f64(copied_here as f64 / f64::from(rate));
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                {
                    let _lock = shared.locks.lock(&entry.id).await;
                    repair(
                        roles.primary.as_ref(),
                        roles.shadow.as_ref(),
                        &entry.id,
                        now_ms(),
                    )
                    .await
                    .map_err(err)?;
                }
                current = Some(entry.id.clone());
                cp.last_id = Some(entry.id.clone());
            }
            cp.items += 1;
            cp.bytes += entry.item.size() as u64;
            copied_here += 1;
            if new_id && cp.items >= saved + SAVE_EVERY {
                // Resuming here skips the rest of this id: it is copied.
                cp.cursor = Some(Cursor {
                    after_id: entry.id.clone(),
                    after_key: entry.item.key.clone(),
                    snapshot: got.next.as_ref().map_or(0, |c| c.snapshot),
                });
                shared.save_progress(&cp).await?;
                saved = cp.items;
            }
        }
        cp.cursor = got.next.clone();
        saved = cp.items;
        if cp.cursor.is_none() {
            cp.finished_ms = Some(now_ms());
        }
        shared.save_progress(&cp).await?;
        if cp.finished_ms.is_some() {
            tracing::info!(namespace = %ns, items = cp.items, bytes = cp.bytes, "backfill finished");
            return Ok(());
        }
    }
}
