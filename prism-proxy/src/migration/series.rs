//! [`ShadowedTs`]: a TimeSeries backend over a primary and a shadow (ADR-016).
//! Reads and tails are the primary's; every write runs on the primary and
//! then, under the locks of its series, on the shadow. Events are
//! immutable and identified by `(series, time, event id)`, so a copy never
//! overwrites newer data: writing an event the shadow holds writes nothing.
//! A shadow failure never fails the call: the events' identities are
//! queued for repair. In `shadow-read`, a sample of first-page Reads is read
//! again from both, under the series lock, and compared.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use pattern_core::timeseries::{
    Event, EventKey, EventPage, ReadQuery, StoredEvent, TailQuery, TimeSeriesBackend, WriteSummary,
};
use pattern_core::{BackendError, Capabilities};
use tokio::sync::watch;

use super::compare::{MismatchSample, sampled};
use super::{MigrationShared, TsRoles, locked, now_ms, series_copy};

/// One served version of a migrating TimeSeries namespace.
pub struct ShadowedTs {
    primary: Arc<dyn TimeSeriesBackend>,
    shadow: Arc<dyn TimeSeriesBackend>,
    shared: Arc<MigrationShared>,
    /// The share of first-page reads compared with the shadow (0 before
    /// `shadow-read`).
    read_sample: f64,
}

impl ShadowedTs {
    /// The version served with `roles`.
    pub fn new(roles: TsRoles, shared: Arc<MigrationShared>) -> Self {
        ShadowedTs {
            primary: roles.primary,
            shadow: roles.shadow,
            shared,
            read_sample: 0.0,
        }
    }

    /// Compares `share` of the reads (from `shadow-read` on).
    pub fn comparing(mut self, share: f64) -> Self {
        self.read_sample = share;
        self
    }
}

#[async_trait]
impl pattern_core::Backend for ShadowedTs {
    fn kind(&self) -> &'static str {
        self.primary.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.primary.capabilities()
    }

    /// The registry closes the two backends themselves.
    async fn close(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.primary.health().await
    }
}

#[async_trait]
impl TimeSeriesBackend for ShadowedTs {
    /// The primary's summary; the shadow stores the same events (those it
    /// holds already count as its duplicates). When the primary counted
    /// duplicates, the events it held may differ from the ones sent, so
    /// the batch is queued: the repair copies what the primary holds. When
    /// the primary failed, the batch is queued too: the write may have
    /// committed all the same (a repair of an event neither holds does
    /// nothing).
    async fn write(&self, events: Vec<Event>) -> Result<WriteSummary, BackendError> {
        let (primary, shadow, shared) = (
            self.primary.clone(),
            self.shadow.clone(),
            self.shared.clone(),
        );
        // Whole, in a task: a client that goes away mid-call does not stop
        // it between the primary and the shadow.
        super::whole(async move {
            let mut series: Vec<&str> = events.iter().map(|e| e.series_id.as_str()).collect();
            series.sort_unstable();
            series.dedup();
            let _locks = shared.locks.lock_all(series.into_iter()).await;
            let keys: Vec<String> = events
                .iter()
                .map(|e| series_copy::queue_id(&e.key()))
                .collect();
            let summary = match primary.write(events.clone()).await {
                Ok(summary) => summary,
                Err(e) => {
                    if !matches!(e, BackendError::InvalidArgument(_)) {
                        shared.queue_repairs(keys).await;
                    }
                    return Err(e);
                }
            };
            if summary.duplicates > 0 {
                shared.queue_repairs(keys).await;
                return Ok(summary);
            }
            match shadow.write(events).await {
                Ok(_) => shared.counters.shadow_writes.inc(),
                Err(e) => shared.shadow_failed(keys, &e).await,
            }
            Ok(summary)
        })
        .await
    }

    async fn read(&self, query: &ReadQuery) -> Result<EventPage, BackendError> {
        let page = self.primary.read(query).await?;
        if query.after.is_none() && sampled(self.read_sample) {
            tokio::spawn(compare(self.shared.clone(), query.clone()));
        }
        Ok(page)
    }

    async fn read_since(
        &self,
        query: &TailQuery,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        self.primary.read_since(query, after_sequence, limit).await
    }

    fn watch_sequence(&self) -> watch::Receiver<u64> {
        self.primary.watch_sequence()
    }

    /// Drops on both; the answer is the primary's. The shadow's failure is
    /// logged: the next retention pass drops its buckets again.
    async fn drop_before(&self, cutoff_us: i64) -> Result<u64, BackendError> {
        let removed = self.primary.drop_before(cutoff_us).await?;
        if let Err(e) = self.shadow.drop_before(cutoff_us).await {
            tracing::warn!(namespace = %self.shared.namespace, error = %e, "retention on the shadow failed");
        }
        Ok(removed)
    }

    async fn scan(
        &self,
        after: Option<&EventKey>,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        self.primary.scan(after, up_to, limit).await
    }

    async fn last_sequence(&self) -> Result<u64, BackendError> {
        self.primary.last_sequence().await
    }
}

/// The events of a page by `(time, event id)`.
fn by_identity(page: EventPage) -> BTreeMap<(i64, String), Event> {
    page.events
        .into_iter()
        .map(|s| ((s.event.time_us, s.event.event_id.clone()), s.event))
        .collect()
}

/// The differences between the primary's and the shadow's answer to one
/// read: (identity, kind). Sequences are each backend's own.
fn differences(
    primary: &BTreeMap<(i64, String), Event>,
    shadow: &BTreeMap<(i64, String), Event>,
) -> Vec<((i64, String), &'static str)> {
    let mut out = Vec::new();
    for (key, event) in primary {
        match shadow.get(key) {
            None => out.push((key.clone(), "missing in shadow")),
            Some(s) if s != event => out.push((key.clone(), "values differ")),
            Some(_) => {}
        }
    }
    for key in shadow.keys().filter(|k| !primary.contains_key(*k)) {
        out.push((key.clone(), "only in shadow"));
    }
    out
}

/// Reads `query` from both backends under the series lock and compares;
/// counts and records a difference still there after a re-check.
async fn compare(shared: Arc<MigrationShared>, query: ReadQuery) {
    for attempt in 0..2 {
        let Ok(roles) = shared.ts_roles() else { return };
        let found = {
            let _lock = shared.locks.lock(&query.series_id).await;
            let primary = roles.primary.read(&query).await;
            let shadow = roles.shadow.read(&query).await;
            match (primary, shadow) {
                (Ok(p), Ok(s)) => differences(&by_identity(p), &by_identity(s)),
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
            tokio::time::sleep(super::compare::RECHECK).await;
            continue;
        }
        shared.counters.compared.inc();
        shared.counters.mismatches.inc();
        let series = shared.hashed(&query.series_id);
        let samples = found
            .into_iter()
            .take(3)
            .map(|((time_us, event_id), kind)| {
                let key = shared.hashed_key(format!("{time_us}/{event_id}").as_bytes());
                tracing::warn!(
                    namespace = %shared.namespace,
                    series = %series,
                    event = %key,
                    kind,
                    "shadow-read mismatch"
                );
                MismatchSample {
                    id: series.clone(),
                    key,
                    kind,
                    at_ms: now_ms(),
                }
            });
        let samples: Vec<_> = samples.collect();
        let mut kept = locked(&shared.samples);
        for s in samples {
            super::compare::keep(&mut kept, s);
        }
    }
}
