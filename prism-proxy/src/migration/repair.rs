//! Making the shadow's copy of one id equal to the primary's.

use std::collections::BTreeMap;
use std::time::Duration;

use pattern_core::{BackendError, Item, KeyValueBackend, PageRequest, PutItem, Selection};

/// Page budget of the reads a repair makes.
const READ_BUDGET: usize = 4 << 20;
/// Items per shadow Put.
const PUT_CHUNK: usize = 256;

/// What a repair changed on the shadow.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// Items written (missing or different on the shadow).
    pub written: u64,
    /// Items deleted (on the shadow only).
    pub deleted: u64,
    /// Bytes (keys and values) written.
    pub bytes: u64,
}

/// Every live item of `id` that `selection` picks on `backend`, by key.
pub async fn items_of(
    backend: &dyn KeyValueBackend,
    id: &str,
    selection: &Selection,
) -> Result<BTreeMap<Vec<u8>, Item>, BackendError> {
    let mut items = BTreeMap::new();
    let mut page = PageRequest::first(READ_BUDGET);
    loop {
        let got = backend.get(id, selection, page).await?;
        for item in got.items {
            items.insert(item.key.clone(), item);
        }
        match got.next {
            Some(cursor) => {
                page = PageRequest {
                    budget_bytes: READ_BUDGET,
                    cursor: Some(cursor),
                }
            }
            None => return Ok(items),
        }
    }
}

/// Whether two copies of an item hold the same data (versions are each
/// backend's own; expiry is not compared).
pub fn same_item(a: &Item, b: &Item) -> bool {
    a.key == b.key && a.value == b.value
}

/// How often a repair copies again when the primary changed meanwhile,
/// before it reports the id as still moving (it is then retried).
const ATTEMPTS: usize = 8;

/// Copies `id` from `primary` to `shadow`: writes what the shadow lacks or
/// holds differently, deletes what only the shadow holds, then reads the
/// primary again and copies again if it changed meanwhile. The caller holds
/// the id's lock, which orders this with writes through this proxy; the
/// re-read covers writes through other proxies of a fleet: a write that
/// reached the primary before the re-read is copied again, and one that
/// reaches it after also reaches the shadow after this copy (dual-write
/// writes the primary first). So an older value never stays on the shadow.
pub async fn repair(
    primary: &dyn KeyValueBackend,
    shadow: &dyn KeyValueBackend,
    id: &str,
    now_ms: u64,
) -> Result<Repaired, BackendError> {
    let mut done = Repaired::default();
    let mut want = items_of(primary, id, &Selection::All).await?;
    for _ in 0..ATTEMPTS {
        let have = items_of(shadow, id, &Selection::All).await?;
        copy(shadow, id, &want, &have, now_ms, &mut done).await?;
        let again = items_of(primary, id, &Selection::All).await?;
        if same_items(&again, &want) {
            return Ok(done);
        }
        want = again;
    }
    Err(BackendError::Unavailable(format!(
        "id changed on the primary during each of {ATTEMPTS} copies; it is copied again later"
    )))
}

fn same_items(a: &BTreeMap<Vec<u8>, Item>, b: &BTreeMap<Vec<u8>, Item>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, x)| b.get(k).is_some_and(|y| same_item(x, y)))
}

/// One copy of `want` over `have` on the shadow.
async fn copy(
    shadow: &dyn KeyValueBackend,
    id: &str,
    want: &BTreeMap<Vec<u8>, Item>,
    have: &BTreeMap<Vec<u8>, Item>,
    now_ms: u64,
    done: &mut Repaired,
) -> Result<(), BackendError> {
    let mut puts = Vec::new();
    for (key, item) in want {
        if have.get(key).is_some_and(|h| same_item(h, item)) {
            continue;
        }
        let mut put = PutItem::new(item.key.clone(), item.value.clone());
        if let Some(at) = item.expires_at_ms {
            if at <= now_ms {
                continue; // expired meanwhile; the shadow expires it too
            }
            put = put.with_ttl(Duration::from_millis(at - now_ms));
        }
        done.bytes += item.size() as u64;
        puts.push(put);
    }
    for chunk in puts.chunks(PUT_CHUNK) {
        shadow.put(id, chunk.to_vec(), None).await?;
        done.written += chunk.len() as u64;
    }
    let extra: Vec<Vec<u8>> = have
        .keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    if !extra.is_empty() {
        done.deleted += shadow.delete(id, &Selection::Keys(extra)).await?;
    }
    Ok(())
}
