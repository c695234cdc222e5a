//! The memstore engine: a multi-version ordered map.
//!
//! * Items live in a lock-free skip list ordered by (id, key). Each entry
//!   holds a short chain of versions (newest last); a deletion appends a
//!   tombstone.
//! * Writers serialize on one mutex, take versions from one counter, append
//!   to chains, and then *publish* by raising `visible`. Readers never take
//!   that mutex: they read `visible` once (their snapshot) and ignore every
//!   version above it, so a multi-item write becomes visible all at once
//!   and a multi-page read sees one consistent snapshot.
//! * Expired items are filtered by time on every read. A TTL index ordered
//!   by expiry feeds the sweeper, which removes superseded versions,
//!   tombstones and expired items once no retained snapshot can see them.

use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crossbeam_skiplist::{SkipMap, SkipSet};
use pattern_core::idempotency::IDEMPOTENCY_WINDOW;
use pattern_core::keyvalue::{KeySet, fill_page};
use pattern_core::{
    BackendError, Clock, Cursor, IdempotencyKey, Item, Mutation, MutationOutcome, Page,
    PageRequest, PutItem, ScanEntry, Selection, WriteOutcome,
};

type RecordKey = (String, Vec<u8>);

#[derive(Debug, Clone)]
struct Version {
    version: u64,
    /// `None` is a tombstone.
    value: Option<Vec<u8>>,
    expires_at: Option<u64>,
}

impl Version {
    fn live(&self, now: u64) -> bool {
        self.value.is_some() && self.expires_at.is_none_or(|e| e > now)
    }
}

#[derive(Debug, Default)]
struct Chain {
    /// Ascending by version.
    versions: RwLock<Vec<Version>>,
    /// Whether the record is in the sweeper's queue; keeps each record in
    /// the queue at most once however often it is overwritten.
    queued: AtomicBool,
}

impl Chain {
    /// The item as of `snapshot`, if live at `now`.
    fn read(&self, key: &[u8], snapshot: u64, now: u64) -> Option<Item> {
        let versions = self.versions.read().expect("chain lock");
        let v = versions.iter().rev().find(|v| v.version <= snapshot)?;
        if !v.live(now) {
            return None;
        }
        Some(Item {
            key: key.to_vec(),
            value: v.value.clone().unwrap_or_default(),
            version: v.version,
            expires_at_ms: v.expires_at,
        })
    }

    /// The newest version if live at `now`, else 0. Writers only.
    fn current_version(&self, now: u64) -> u64 {
        let versions = self.versions.read().expect("chain lock");
        versions
            .last()
            .filter(|v| v.live(now))
            .map_or(0, |v| v.version)
    }

    /// Drops versions no snapshot at or above `watermark` can see. Returns
    /// true when the whole chain is dead to every such snapshot.
    fn prune(&self, watermark: u64, now: u64) -> bool {
        let mut versions = self.versions.write().expect("chain lock");
        if let Some(keep_from) = versions.iter().rposition(|v| v.version <= watermark) {
            versions.drain(..keep_from);
        }
        versions.len() == 1 && versions[0].version <= watermark && !versions[0].live(now)
    }
}

struct IdempotencyRecord {
    fingerprint: u64,
    outcomes: Vec<MutationOutcome>,
    expires_at: u64,
}

#[derive(Default)]
pub(crate) struct WriterState {
    last_version: u64,
    /// (time, visible version) samples taken by the sweeper, oldest first.
    history: VecDeque<(u64, u64)>,
    /// Records that hold superseded versions, tombstones or expired items.
    pending_gc: Vec<RecordKey>,
    idempotency: HashMap<String, IdempotencyRecord>,
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepStats {
    /// Records removed entirely (deleted or expired).
    pub removed: usize,
    /// The snapshot watermark after the sweep.
    pub watermark: u64,
}

/// The engine. Cheap to share behind an `Arc`.
pub struct Store {
    records: SkipMap<RecordKey, Arc<Chain>>,
    ttl_index: SkipSet<(u64, String, Vec<u8>)>,
    writer: Mutex<WriterState>,
    visible: AtomicU64,
    watermark: AtomicU64,
    clock: Arc<dyn Clock>,
    retention_ms: u64,
}

impl Store {
    /// An empty store. Superseded versions are kept for `retention_ms` so
    /// that paged reads started within that time stay consistent.
    pub fn new(clock: Arc<dyn Clock>, retention_ms: u64) -> Self {
        Store {
            records: SkipMap::new(),
            ttl_index: SkipSet::new(),
            writer: Mutex::new(WriterState::default()),
            visible: AtomicU64::new(0),
            watermark: AtomicU64::new(0),
            clock,
            retention_ms,
        }
    }

    fn lock(&self) -> MutexGuard<'_, WriterState> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest published version.
    pub fn visible_version(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    fn snapshot_for(&self, cursor: Option<&Cursor>) -> Result<u64, BackendError> {
        match cursor {
            None => Ok(self.visible_version()),
            Some(c) if c.snapshot < self.watermark.load(Ordering::Acquire) => {
                Err(BackendError::PageTokenExpired(format!(
                    "its snapshot is older than the {} s this memstore retains",
                    self.retention_ms / 1000
                )))
            }
            Some(c) => Ok(c.snapshot),
        }
    }

    // ---- writes (all under the writer lock) ----

    fn replay(
        st: &WriterState,
        key: Option<&IdempotencyKey>,
        now: u64,
    ) -> Result<Option<WriteOutcome>, BackendError> {
        let Some(key) = key else { return Ok(None) };
        match st.idempotency.get(&key.token) {
            Some(rec) if rec.expires_at > now => {
                if rec.fingerprint != key.fingerprint {
                    return Err(BackendError::IdempotencyConflict(key.token.clone()));
                }
                Ok(Some(WriteOutcome {
                    outcomes: rec.outcomes.clone(),
                    replayed: true,
                }))
            }
            _ => Ok(None),
        }
    }

    fn check(&self, id: &str, item: &PutItem, now: u64) -> Result<(), BackendError> {
        item.check_condition(|| {
            Ok(self
                .records
                .get(&(id.to_string(), item.key.clone()))
                .map_or(0, |e| e.value().current_version(now)))
        })
    }

    fn append(
        &self,
        st: &mut WriterState,
        id: &str,
        key: &[u8],
        value: Option<Vec<u8>>,
        expires_at: Option<u64>,
    ) -> u64 {
        st.last_version += 1;
        let version = st.last_version;
        let record_key = (id.to_string(), key.to_vec());
        let entry = self
            .records
            .get_or_insert_with(record_key.clone(), || Arc::new(Chain::default()));
        let chain = entry.value();
        let mut versions = chain.versions.write().expect("chain lock");
        let superseded = !versions.is_empty();
        let tombstone = value.is_none();
        versions.push(Version {
            version,
            value,
            expires_at,
        });
        drop(versions);
        if let Some(at) = expires_at {
            self.ttl_index
                .insert((at, record_key.0.clone(), record_key.1.clone()));
        }
        if (superseded || tombstone) && !chain.queued.swap(true, Ordering::Relaxed) {
            st.pending_gc.push(record_key);
        }
        version
    }

    fn delete_locked(
        &self,
        st: &mut WriterState,
        id: &str,
        selection: &Selection,
        now: u64,
    ) -> u64 {
        let live: Vec<Vec<u8>> = self
            .select(id, &selection.key_set(), None)
            .filter(|(_, chain)| chain.current_version(now) != 0)
            .map(|(key, _)| key)
            .collect();
        for key in &live {
            self.append(st, id, key, None, None);
        }
        live.len() as u64
    }

    fn finish_write(
        &self,
        st: &mut WriterState,
        key: Option<IdempotencyKey>,
        outcomes: Vec<MutationOutcome>,
        now: u64,
    ) -> WriteOutcome {
        self.visible.store(st.last_version, Ordering::Release);
        if let Some(key) = key {
            st.idempotency.insert(
                key.token,
                IdempotencyRecord {
                    fingerprint: key.fingerprint,
                    outcomes: outcomes.clone(),
                    expires_at: now + IDEMPOTENCY_WINDOW.as_millis() as u64,
                },
            );
        }
        WriteOutcome {
            outcomes,
            replayed: false,
        }
    }

    /// Writes `items` under `id`, all or nothing.
    pub fn put(
        &self,
        id: &str,
        items: Vec<PutItem>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        let mutations = items
            .into_iter()
            .map(|item| Mutation::Put {
                id: id.to_string(),
                item,
            })
            .collect();
        self.mutate(mutations, idempotency)
    }

    /// Deletes the live items `selection` picks; returns how many.
    pub fn delete(&self, id: &str, selection: &Selection) -> u64 {
        let mut st = self.lock();
        let now = self.clock.now_ms();
        let n = self.delete_locked(&mut st, id, selection, now);
        self.finish_write(&mut st, None, Vec::new(), now);
        n
    }

    /// Applies `mutations` atomically: every put's condition is checked
    /// against the state before the call, then all are applied and
    /// published together.
    pub fn mutate(
        &self,
        mutations: Vec<Mutation>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        let mut st = self.lock();
        let now = self.clock.now_ms();
        if let Some(replayed) = Self::replay(&st, idempotency.as_ref(), now)? {
            return Ok(replayed);
        }
        for m in &mutations {
            if let Mutation::Put { id, item } = m {
                self.check(id, item, now)?;
            }
        }
        let outcomes = mutations
            .into_iter()
            .map(|m| match m {
                Mutation::Put { id, item } => {
                    let expires = item.expires_at(now);
                    let version = self.append(&mut st, &id, &item.key, Some(item.value), expires);
                    MutationOutcome::Version(version)
                }
                Mutation::Delete { id, selection } => {
                    MutationOutcome::Deleted(self.delete_locked(&mut st, &id, &selection, now))
                }
            })
            .collect();
        Ok(self.finish_write(&mut st, idempotency, outcomes, now))
    }

    // ---- reads (lock-free with respect to writers) ----

    /// The records of `id` in `keys`, in key order, strictly after `after`.
    fn select<'a>(
        &'a self,
        id: &'a str,
        keys: &'a KeySet,
        after: Option<&'a [u8]>,
    ) -> Box<dyn Iterator<Item = (Vec<u8>, Arc<Chain>)> + 'a> {
        match keys {
            KeySet::Keys(list) => Box::new(
                list.iter()
                    .filter(move |k| after.is_none_or(|a| k.as_slice() > a))
                    .filter_map(move |k| {
                        let entry = self.records.get(&(id.to_string(), k.clone()))?;
                        Some((k.clone(), entry.value().clone()))
                    }),
            ),
            KeySet::Range { start, end } => {
                let lower = match after {
                    Some(a) if a >= start.as_slice() => {
                        Bound::Excluded((id.to_string(), a.to_vec()))
                    }
                    _ => Bound::Included((id.to_string(), start.clone())),
                };
                Box::new(
                    self.records
                        .range((lower, Bound::Unbounded))
                        .take_while(move |e| {
                            e.key().0 == id && end.as_ref().is_none_or(|end| e.key().1 < *end)
                        })
                        .map(|e| (e.key().1.clone(), e.value().clone())),
                )
            }
        }
    }

    /// One page of the live items of `id` that `selection` picks.
    pub fn get(
        &self,
        id: &str,
        selection: &Selection,
        page: &PageRequest,
    ) -> Result<Page<Item>, BackendError> {
        let snapshot = self.snapshot_for(page.cursor.as_ref())?;
        let now = self.clock.now_ms();
        let keys = selection.key_set();
        let after = page.cursor.as_ref().map(|c| c.after_key.as_slice());
        let items = self
            .select(id, &keys, after)
            .filter_map(|(key, chain)| chain.read(&key, snapshot, now))
            .map(Ok);
        fill_page(items, page.budget_bytes, Item::size, |last| Cursor {
            after_id: String::new(),
            after_key: last.key.clone(),
            snapshot,
        })
    }

    /// One page of every live item, in (id, key) order.
    pub fn scan(&self, page: &PageRequest) -> Result<Page<ScanEntry>, BackendError> {
        let snapshot = self.snapshot_for(page.cursor.as_ref())?;
        let now = self.clock.now_ms();
        let lower = match &page.cursor {
            Some(c) => Bound::Excluded((c.after_id.clone(), c.after_key.clone())),
            None => Bound::Unbounded,
        };
        let entries = self
            .records
            .range((lower, Bound::Unbounded))
            .filter_map(|entry| {
                let (id, key) = entry.key();
                let item = entry.value().read(key, snapshot, now)?;
                Some(Ok(ScanEntry {
                    id: id.clone(),
                    item,
                }))
            });
        fill_page(
            entries,
            page.budget_bytes,
            |e| e.item.size(),
            |last| Cursor {
                after_id: last.id.clone(),
                after_key: last.item.key.clone(),
                snapshot,
            },
        )
    }

    // ---- cleanup ----

    /// Advances the snapshot watermark and removes what no retained
    /// snapshot can see: superseded versions, tombstones, expired items and
    /// expired idempotency records. Called periodically by the sweeper.
    ///
    /// Work is done in batches, releasing the writer lock between them, so
    /// a large backlog never stalls writers for long. Readers never wait.
    pub fn sweep(&self) -> SweepStats {
        const BATCH: usize = 512;
        let (pending, watermark, now) = {
            let mut st = self.lock();
            let now = self.clock.now_ms();
            let visible = self.visible_version();
            st.history.push_back((now, visible));
            let horizon = now.saturating_sub(self.retention_ms);
            while st.history.len() >= 2 && st.history[1].0 <= horizon {
                st.history.pop_front();
            }
            if let Some(&(at, version)) = st.history.front()
                && at <= horizon
            {
                self.watermark.fetch_max(version, Ordering::AcqRel);
            }
            // Expired items become garbage candidates.
            while let Some(entry) = self.ttl_index.front() {
                if entry.value().0 > now {
                    break;
                }
                let (_, id, key) = entry.value().clone();
                entry.remove();
                let record_key = (id, key);
                if let Some(record) = self.records.get(&record_key)
                    && !record.value().queued.swap(true, Ordering::Relaxed)
                {
                    st.pending_gc.push(record_key);
                }
            }
            st.idempotency.retain(|_, rec| rec.expires_at > now);
            let pending = std::mem::take(&mut st.pending_gc);
            (pending, self.watermark.load(Ordering::Acquire), now)
        };

        let mut removed = 0;
        let mut keep = Vec::new();
        for batch in pending.chunks(BATCH) {
            let _writer = self.lock();
            for record_key in batch {
                let Some(entry) = self.records.get(record_key) else {
                    continue;
                };
                let chain = entry.value();
                if chain.prune(watermark, now) {
                    entry.remove();
                    removed += 1;
                } else if chain.versions.read().expect("chain lock").len() > 1
                    || chain.current_version(now) == 0
                {
                    keep.push(record_key.clone());
                } else {
                    chain.queued.store(false, Ordering::Relaxed);
                }
            }
        }
        self.lock().pending_gc.extend(keep);
        SweepStats { removed, watermark }
    }

    /// How many records (live or awaiting cleanup) the store holds.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
impl Store {
    /// Holds the writer lock, to show readers do not need it.
    pub(crate) fn hold_writer_lock_for_test(&self) -> MutexGuard<'_, WriterState> {
        self.lock()
    }
}
