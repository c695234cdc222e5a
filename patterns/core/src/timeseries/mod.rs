//! The TimeSeries DAL's backend trait (see
//! `docs-cms/adr/014-timeseries-and-pubsub-plan.md`).
//!
//! An event's identity is `(series_id, time_us, event_id)`; writing an
//! identity that is stored writes nothing and counts a duplicate. Every
//! stored event gets a namespace-wide `sequence` in commit order: an event
//! with a higher sequence becomes visible no earlier than one with a lower
//! sequence. [`tail`] builds a gap-free, duplicate-free tail on that rule
//! from two backend methods: [`TimeSeriesBackend::read_since`] and
//! [`TimeSeriesBackend::watch_sequence`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use crate::capabilities::Capabilities;
use crate::error::BackendError;

mod cursor;

pub use cursor::{ReadCursor, read_fingerprint};

/// The TimeSeries DAL's name in namespaces and the pattern protocol.
pub const DAL: &str = "timeseries";

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub series_id: String,
    /// Microseconds since the Unix epoch (UTC).
    pub time_us: i64,
    pub event_id: String,
    pub tags: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl Event {
    /// What the event counts against a page's byte budget.
    pub fn size(&self) -> usize {
        self.payload.len()
            + self.event_id.len()
            + self
                .tags
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// Whether the event carries every tag of `filter` with its value.
    pub fn matches(&self, filter: &BTreeMap<String, String>) -> bool {
        filter.iter().all(|(k, v)| self.tags.get(k) == Some(v))
    }
}

/// An event as stored, with its commit-order sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event: Event,
    pub sequence: u64,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteSummary {
    pub written: u32,
    pub duplicates: u32,
}

/// Read order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    OldestFirst,
    NewestFirst,
}

/// A ranged read of one series.
#[derive(Debug, Clone, Default)]
pub struct ReadQuery {
    pub series_id: String,
    /// Inclusive; `None`: the beginning.
    pub start_us: Option<i64>,
    /// Exclusive; `None`: no end.
    pub end_us: Option<i64>,
    pub tags: BTreeMap<String, String>,
    pub order: Order,
    /// Byte budget; at least one event is returned when any remain.
    pub budget_bytes: usize,
    /// Continue after this `(time_us, event_id)` (in `order`).
    pub after: Option<(i64, String)>,
}

/// An event's identity `(series_id, time_us, event_id)`: where a
/// [`TimeSeriesBackend::scan`] continues.
pub type EventKey = (String, i64, String);

impl Event {
    /// The event's identity.
    pub fn key(&self) -> EventKey {
        (self.series_id.clone(), self.time_us, self.event_id.clone())
    }
}

/// A page of events; `next` continues after the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next: Option<(i64, String)>,
}

/// A tail's selection: one series, events at or after a time, tags.
#[derive(Debug, Clone, Default)]
pub struct TailQuery {
    pub series_id: String,
    /// Only events with `time_us >= from_us`.
    pub from_us: i64,
    pub tags: BTreeMap<String, String>,
}

/// The default time bucket: one hour.
pub const DEFAULT_BUCKET: Duration = Duration::from_secs(3600);

/// The TimeSeries settings of a namespace a backend is opened with
/// ([`crate::OpenContext::with_settings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSeriesSettings {
    /// The width of a time bucket: the unit in which a backend that
    /// declares [`crate::Capability::Retention`] stores and drops events
    /// (PostgreSQL: one partition per bucket).
    pub bucket: Duration,
}

impl Default for TimeSeriesSettings {
    fn default() -> Self {
        TimeSeriesSettings {
            bucket: DEFAULT_BUCKET,
        }
    }
}

impl crate::OpenContext {
    /// The namespace's time bucket width ([`DEFAULT_BUCKET`] when the
    /// proxy gave no [`TimeSeriesSettings`]).
    pub fn bucket(&self) -> Duration {
        self.settings::<TimeSeriesSettings>()
            .copied()
            .unwrap_or_default()
            .bucket
    }

    /// The bucket width in microseconds (at least 1).
    pub fn bucket_us(&self) -> i64 {
        i64::try_from(self.bucket().as_micros())
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

/// The start (in microseconds) of the bucket holding `time_us`, for
/// buckets `bucket_us` wide aligned on the Unix epoch.
pub fn bucket_start(time_us: i64, bucket_us: i64) -> i64 {
    time_us.div_euclid(bucket_us) * bucket_us
}

/// A [`crate::Factory`] of TimeSeries backends; every factory whose `Backend`
/// is `dyn TimeSeriesBackend` is one.
pub trait TimeSeriesFactory: crate::Factory<Backend = dyn TimeSeriesBackend> {}

impl<F: crate::Factory<Backend = dyn TimeSeriesBackend>> TimeSeriesFactory for F {}

/// A TimeSeries backend.
#[async_trait]
pub trait TimeSeriesBackend: crate::Backend {
    /// Stores `events`, all or nothing; an event whose identity is stored
    /// (or repeated within the batch) is counted as a duplicate.
    async fn write(&self, events: Vec<Event>) -> Result<WriteSummary, BackendError>;

    /// The events of a series in a time range, in `query.order`.
    async fn read(&self, query: &ReadQuery) -> Result<EventPage, BackendError>;

    /// Up to `limit` events matching `query` with a sequence above
    /// `after_sequence`, in sequence order.
    async fn read_since(
        &self,
        query: &TailQuery,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError>;

    /// The highest sequence visible to [`TimeSeriesBackend::read_since`],
    /// updated after every write.
    fn watch_sequence(&self) -> watch::Receiver<u64>;

    /// Removes every event of every series in the buckets that end at or
    /// before `cutoff_us` (whole buckets only: an event in the bucket
    /// holding `cutoff_us` stays until its bucket has passed). Returns how
    /// many events were removed, when the backend knows. Called
    /// periodically by the proxy with `now - retention`; a backend without
    /// [`crate::Capability::Retention`] returns
    /// [`BackendError::Unsupported`].
    async fn drop_before(&self, cutoff_us: i64) -> Result<u64, BackendError>;

    /// Up to `limit` events of every series of the namespace, in identity
    /// order (series id, then time, then event id), after `after`
    /// (exclusive; `None`: from the first), leaving out events with a
    /// sequence above `up_to`. A backend declaring
    /// [`crate::Capability::Scan`] implements it; a migration's backfill
    /// reads its source with it. Identity order makes the scan resumable
    /// from its last event and finite while writes go on: an event written
    /// after the scan began has a sequence above `up_to`.
    async fn scan(
        &self,
        _after: Option<&EventKey>,
        _up_to: u64,
        _limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        Err(BackendError::unsupported(
            self.kind(),
            crate::Capability::Scan,
        ))
    }

    /// The highest sequence assigned so far (every event with a sequence
    /// at or below it is committed), read from the store itself rather
    /// than from [`TimeSeriesBackend::watch_sequence`]. A backend declaring
    /// [`crate::Capability::Scan`] implements it.
    async fn last_sequence(&self) -> Result<u64, BackendError> {
        Err(BackendError::unsupported(
            self.kind(),
            crate::Capability::Scan,
        ))
    }

    /// A tail served by the backend's [`EventLog`] rather than built by
    /// [`tail`] on the store; `None` (the default) when there is no log.
    async fn log_tail(
        &self,
        _query: &TailQuery,
        _start: TailStart,
    ) -> Result<Option<TailReceiver>, BackendError> {
        Ok(None)
    }
}

/// The items of a running tail; the tail stops when this is dropped.
pub type TailReceiver = mpsc::Receiver<Result<TailItem, BackendError>>;

/// Where a log tail starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailStart {
    /// With the log's first events at or after [`TailQuery::from_us`].
    From,
    /// With what is appended from now on.
    Now,
}

/// A durable log that a namespace's written events are also appended to,
/// and that serves the namespace's tails in place of the store
/// (ADR-014, "Kafka behind tail"). The store stays the source of truth for
/// reads, idempotence and retention.
///
/// Contract of [`EventLog::tail`], as for [`tail`]: events of the query's
/// series, at or after its time, carrying its tags, in the order the log
/// holds them (append order), each at most once per tail, then one
/// [`TailItem::CaughtUp`] when the events the log held at the start have
/// been sent. A [`StoredEvent::sequence`] is the event's position in the
/// log (it grows within a series).
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The log kind, e.g. `kafka`.
    fn kind(&self) -> &'static str;

    /// The largest event ([`Event::size`]) the log takes.
    fn max_event_bytes(&self) -> usize;

    /// Appends `events`; returns once the log holds them all. Appending is
    /// at least once: a retried write appends its events again, and tails
    /// drop such repeats.
    async fn append(&self, events: &[Event]) -> Result<(), BackendError>;

    /// Follows the log for `query` from `start`.
    async fn tail(&self, query: &TailQuery, start: TailStart)
    -> Result<TailReceiver, BackendError>;
}

/// A TimeSeries store with a log behind its tails: a write is stored, then
/// appended to the log; tails are served by the log.
pub struct LoggedTimeSeries {
    store: Arc<dyn TimeSeriesBackend>,
    log: Arc<dyn EventLog>,
}

impl LoggedTimeSeries {
    pub fn new(store: Arc<dyn TimeSeriesBackend>, log: Arc<dyn EventLog>) -> Self {
        LoggedTimeSeries { store, log }
    }
}

#[async_trait]
impl crate::Backend for LoggedTimeSeries {
    fn kind(&self) -> &'static str {
        self.store.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.store.close().await
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.store.health().await
    }
}

#[async_trait]
impl TimeSeriesBackend for LoggedTimeSeries {
    /// Stores, then appends every event of the batch (also those the store
    /// counted as duplicates: a retry after a failed append must reach the
    /// log).
    async fn write(&self, events: Vec<Event>) -> Result<WriteSummary, BackendError> {
        // Refused before anything is stored: a write the log cannot take
        // would fail again on every retry.
        let max = self.log.max_event_bytes();
        if let Some((i, e)) = events.iter().enumerate().find(|(_, e)| e.size() > max) {
            return Err(BackendError::InvalidArgument(format!(
                "events[{i}] is {} bytes, but this namespace's {} log takes events up to {max} \
                 bytes; nothing was written; make the payload smaller",
                e.size(),
                self.log.kind()
            )));
        }
        let summary = self.store.write(events.clone()).await?;
        self.log.append(&events).await.map_err(|e| {
            BackendError::Unavailable(format!(
                "the events are stored, but appending them to the {} log failed ({e}); retry \
                 the write: the store ignores the repeat and tails drop it",
                self.log.kind()
            ))
        })?;
        Ok(summary)
    }

    async fn read(&self, query: &ReadQuery) -> Result<EventPage, BackendError> {
        self.store.read(query).await
    }

    async fn read_since(
        &self,
        query: &TailQuery,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        self.store.read_since(query, after_sequence, limit).await
    }

    fn watch_sequence(&self) -> watch::Receiver<u64> {
        self.store.watch_sequence()
    }

    async fn drop_before(&self, cutoff_us: i64) -> Result<u64, BackendError> {
        self.store.drop_before(cutoff_us).await
    }

    async fn scan(
        &self,
        after: Option<&EventKey>,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        self.store.scan(after, up_to, limit).await
    }

    async fn last_sequence(&self) -> Result<u64, BackendError> {
        self.store.last_sequence().await
    }

    async fn log_tail(
        &self,
        query: &TailQuery,
        start: TailStart,
    ) -> Result<Option<TailReceiver>, BackendError> {
        self.log.tail(query, start).await.map(Some)
    }
}

/// Opens a tail of `backend` from `start`: served by the backend's
/// [`EventLog`] when it has one, otherwise built on the store by [`tail`].
pub async fn open_tail(
    backend: Arc<dyn TimeSeriesBackend>,
    query: TailQuery,
    start: TailStart,
) -> Result<TailReceiver, BackendError> {
    if let Some(rx) = backend.log_tail(&query, start).await? {
        return Ok(rx);
    }
    let after = match start {
        TailStart::From => 0,
        TailStart::Now => *backend.watch_sequence().borrow(),
    };
    Ok(tail(backend, query, after))
}

/// One item of a tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailItem {
    Event(StoredEvent),
    /// Every event stored when the tail started has been sent; what
    /// follows is live. Carries the highest sequence sent so far.
    CaughtUp(u64),
}

/// How many events a tail reads per backend call.
const TAIL_BATCH: usize = 256;

/// Tails `query` on `backend` into a channel, starting after sequence
/// `after` (0: every stored event; the current high-water mark: only new
/// ones): stored events first, then
/// [`TailItem::CaughtUp`], then new events as they are written, each
/// exactly once, in sequence order. Ends when the receiver is dropped, or
/// after sending an error.
pub fn tail(backend: Arc<dyn TimeSeriesBackend>, query: TailQuery, after: u64) -> TailReceiver {
    let (tx, rx) = mpsc::channel(TAIL_BATCH);
    tokio::spawn(async move {
        // Subscribe before the first read: a write landing between the
        // read and the wait still wakes the loop.
        let mut high_water = backend.watch_sequence();
        let mut last = after;
        let mut caught_up = false;
        loop {
            high_water.borrow_and_update();
            // Drain everything visible above `last`.
            loop {
                let batch = match backend.read_since(&query, last, TAIL_BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let full = batch.len() == TAIL_BATCH;
                for event in batch {
                    last = event.sequence;
                    if tx.send(Ok(TailItem::Event(event))).await.is_err() {
                        return;
                    }
                }
                if !full {
                    break;
                }
            }
            if !caught_up {
                caught_up = true;
                if tx.send(Ok(TailItem::CaughtUp(last))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                changed = high_water.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
        }
    });
    rx
}
