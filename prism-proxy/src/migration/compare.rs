//! Shadow-read: a sampled read is read again from both backends under the
//! id's lock, off the request path, and compared by keys and values.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pattern_core::{Item, Selection};
use serde::Serialize;

use super::{MigrationShared, items_of, locked, now_ms, same_item};

/// How many mismatch samples a proxy keeps per migration.
const SAMPLES: usize = 20;
/// A difference is checked again after this, to let a write from another
/// proxy reach both backends.
pub(super) const RECHECK: Duration = Duration::from_millis(200);

/// One difference found, with the id and key hashed (TimeSeries: the
/// series, and the event's time and id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MismatchSample {
    pub id: String,
    pub key: String,
    /// `missing in shadow`, `only in shadow` or `values differ`.
    pub kind: &'static str,
    pub at_ms: u64,
}

/// Whether this read is one of the `share` sampled (0 to 1).
pub fn sampled(share: f64) -> bool {
    if share <= 0.0 {
        return false;
    }
    if share >= 1.0 {
        return true;
    }
    // xorshift on a process-wide state: cheap, good enough to sample.
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut x = STATE.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64 <= share
}

/// The differences between two copies of one id: (key, kind).
pub fn differences(
    primary: &BTreeMap<Vec<u8>, Item>,
    shadow: &BTreeMap<Vec<u8>, Item>,
) -> Vec<(Vec<u8>, &'static str)> {
    let mut out = Vec::new();
    for (key, item) in primary {
        match shadow.get(key) {
            None => out.push((key.clone(), "missing in shadow")),
            Some(s) if !same_item(item, s) => out.push((key.clone(), "values differ")),
            Some(_) => {}
        }
    }
    for key in shadow.keys().filter(|k| !primary.contains_key(*k)) {
        out.push((key.clone(), "only in shadow"));
    }
    out
}

/// Compares `id` (the keys `selection` picks) on both backends; counts and
/// records a difference that is still there after [`RECHECK`].
pub async fn compare(shared: Arc<MigrationShared>, id: String, selection: Selection) {
    for attempt in 0..2 {
        let Ok(roles) = shared.kv_roles() else { return };
        let found = {
            let _lock = shared.locks.lock(&id).await;
            let primary = items_of(roles.primary.as_ref(), &id, &selection).await;
            let shadow = items_of(roles.shadow.as_ref(), &id, &selection).await;
            match (primary, shadow) {
                (Ok(p), Ok(s)) => differences(&p, &s),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(namespace = %shared.namespace, error = %e, "shadow-read compare skipped");
                    return;
                }
            }
        };
        if found.is_empty() {
            shared.counters.compared.inc();
            return;
        }
        if attempt == 0 {
            tokio::time::sleep(RECHECK).await;
            continue;
        }
        shared.counters.compared.inc();
        shared.counters.mismatches.inc();
        let hashed_id = shared.hashed(&id);
        let mut samples = locked(&shared.samples);
        for (key, kind) in found.into_iter().take(3) {
            let key = shared.hashed_key(&key);
            tracing::warn!(
                namespace = %shared.namespace,
                id = %hashed_id,
                key = %key,
                kind,
                "shadow-read mismatch"
            );
            keep(
                &mut samples,
                MismatchSample {
                    id: hashed_id.clone(),
                    key,
                    kind,
                    at_ms: now_ms(),
                },
            );
        }
    }
}

/// Keeps `sample`, dropping the oldest beyond [`SAMPLES`].
pub(super) fn keep(samples: &mut VecDeque<MismatchSample>, sample: MismatchSample) {
    samples.push_back(sample);
    if samples.len() > SAMPLES {
        samples.pop_front();
    }
}
