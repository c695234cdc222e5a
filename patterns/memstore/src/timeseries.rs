//! The memstore TimeSeries backend: events in memory, per series a map
//! ordered by `(time, event id)` and an index by sequence. Sequences are
//! assigned under the store's lock, so commit order is sequence order.
//! Nothing is kept across restarts. Retention removes whole buckets: the
//! events of a series are ordered by time, so dropping the buckets before a
//! cutoff is one split of each series' map. Series are kept ordered by id,
//! so a namespace-wide scan walks them in identity order.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pattern_core::OpenContext;
use pattern_core::needs::{Consistency, Durability, GIB, NeedsProfile, Scope};
use pattern_core::timeseries::{
    DEFAULT_BUCKET, Event, EventKey, EventPage, Order, ReadQuery, StoredEvent, TailQuery,
    TimeSeriesBackend, WriteSummary, bucket_start,
};
use pattern_core::{BackendError, Capabilities, Capability};
use tokio::sync::watch;

type Key = (i64, String);

#[derive(Default)]
struct Series {
    by_time: BTreeMap<Key, StoredEvent>,
    by_sequence: BTreeMap<u64, Key>,
}

/// The in-memory TimeSeries backend.
pub struct MemTimeSeries {
    inner: Mutex<Inner>,
    high_water: watch::Sender<u64>,
    bucket_us: i64,
}

#[derive(Default)]
struct Inner {
    /// The last sequence assigned (every event up to it is stored, as
    /// writes assign under the lock).
    sequence: u64,
    /// By series id, in identity order for [`TimeSeriesBackend::scan`].
    series: BTreeMap<String, Series>,
}

impl Default for MemTimeSeries {
    fn default() -> Self {
        Self::with_bucket_us(DEFAULT_BUCKET.as_micros() as i64)
    }
}

impl MemTimeSeries {
    /// A backend with the default one-hour buckets.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend whose retention drops buckets `bucket_us` wide.
    pub fn with_bucket_us(bucket_us: i64) -> Self {
        MemTimeSeries {
            inner: Mutex::new(Inner::default()),
            high_water: watch::channel(0).0,
            bucket_us: bucket_us.max(1),
        }
    }
}

/// Opens [`MemTimeSeries`] backends (kind `memstore`, no options).
pub struct MemTimeSeriesFactory;

#[async_trait]
impl pattern_core::Factory for MemTimeSeriesFactory {
    type Backend = dyn TimeSeriesBackend;

    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn needs_profile(&self) -> NeedsProfile {
        NeedsProfile {
            kind: crate::KIND,
            preference: 0,
            external: false,
            consistency: Consistency::Strong,
            durability: Durability::None,
            durability_note: "keeps events in the proxy's memory only; a restart of the proxy \
                              loses them",
            scope: Scope::Local,
            read_rps: 10_000,
            write_rps: 10_000,
            write_note: "",
            p99_ms: 5,
            max_data_bytes: GIB,
            data_note: "it lives in the proxy's memory",
            keeps_for_days: false,
        }
    }

    fn default_placement_is_private(&self) -> bool {
        true
    }

    fn placement_options(&self) -> &'static [&'static str] {
        &[]
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        match options {
            serde_json::Value::Null => Ok(()),
            serde_json::Value::Object(map) if map.is_empty() => Ok(()),
            _ => Err(BackendError::Config(
                "the memstore TimeSeries backend takes no options; remove `backend.options`".into(),
            )),
        }
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        let options = ctx.options.clone();
        self.check_options(&options)?;
        Ok(Arc::new(MemTimeSeries::with_bucket_us(ctx.bucket_us())))
    }
}

#[async_trait]
impl pattern_core::Backend for MemTimeSeries {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Capability::Retention)
            .with(Capability::Scan)
    }

    async fn health(&self) -> Result<(), BackendError> {
        // In-process: nothing to reach.
        Ok(())
    }
}

#[async_trait]
impl TimeSeriesBackend for MemTimeSeries {
    async fn write(&self, events: Vec<Event>) -> Result<WriteSummary, BackendError> {
        let mut summary = WriteSummary::default();
        let last = {
            let mut inner = self.inner.lock().expect("timeseries lock");
            for event in events {
                let key = (event.time_us, event.event_id.clone());
                let exists = inner
                    .series
                    .get(&event.series_id)
                    .is_some_and(|s| s.by_time.contains_key(&key));
                if exists {
                    summary.duplicates += 1;
                    continue;
                }
                inner.sequence += 1;
                let sequence = inner.sequence;
                let series = inner.series.entry(event.series_id.clone()).or_default();
                series.by_sequence.insert(sequence, key.clone());
                series.by_time.insert(key, StoredEvent { event, sequence });
                summary.written += 1;
            }
            inner.sequence
        };
        if summary.written > 0 {
            self.high_water.send_replace(last);
        }
        Ok(summary)
    }

    async fn read(&self, query: &ReadQuery) -> Result<EventPage, BackendError> {
        let inner = self.inner.lock().expect("timeseries lock");
        let Some(series) = inner.series.get(&query.series_id) else {
            return Ok(EventPage::default());
        };
        let lower = match (&query.after, query.order) {
            (Some(after), Order::OldestFirst) => Bound::Excluded(after.clone()),
            _ => query
                .start_us
                .map_or(Bound::Unbounded, |s| Bound::Included((s, String::new()))),
        };
        let upper = match (&query.after, query.order) {
            (Some(after), Order::NewestFirst) => Bound::Excluded(after.clone()),
            _ => query
                .end_us
                .map_or(Bound::Unbounded, |e| Bound::Excluded((e, String::new()))),
        };
        // A cursor never widens the range.
        let in_range = |k: &Key| {
            query.start_us.is_none_or(|s| k.0 >= s) && query.end_us.is_none_or(|e| k.0 < e)
        };
        let range = series.by_time.range((lower, upper));
        let iter: Box<dyn Iterator<Item = (&Key, &StoredEvent)>> = match query.order {
            Order::OldestFirst => Box::new(range),
            Order::NewestFirst => Box::new(range.rev()),
        };
        let mut page = EventPage::default();
        let mut used = 0usize;
        for (_, stored) in iter.filter(|(k, s)| in_range(k) && s.event.matches(&query.tags)) {
            let size = stored.event.size();
            if !page.events.is_empty() && used + size > query.budget_bytes {
                page.next = page
                    .events
                    .last()
                    .map(|e| (e.event.time_us, e.event.event_id.clone()));
                break;
            }
            used += size;
            page.events.push(stored.clone());
        }
        Ok(page)
    }

    async fn read_since(
        &self,
        query: &TailQuery,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        let inner = self.inner.lock().expect("timeseries lock");
        let Some(series) = inner.series.get(&query.series_id) else {
            return Ok(Vec::new());
        };
        Ok(series
            .by_sequence
            .range((Bound::Excluded(after_sequence), Bound::Unbounded))
            .filter_map(|(_, key)| series.by_time.get(key))
            .filter(|s| s.event.time_us >= query.from_us && s.event.matches(&query.tags))
            .take(limit)
            .cloned()
            .collect())
    }

    fn watch_sequence(&self) -> watch::Receiver<u64> {
        self.high_water.subscribe()
    }

    async fn drop_before(&self, cutoff_us: i64) -> Result<u64, BackendError> {
        let keep_from = bucket_start(cutoff_us, self.bucket_us);
        let mut inner = self.inner.lock().expect("timeseries lock");
        let mut dropped = 0u64;
        inner.series.retain(|_, series| {
            let kept = series.by_time.split_off(&(keep_from, String::new()));
            let gone = std::mem::replace(&mut series.by_time, kept);
            for stored in gone.values() {
                series.by_sequence.remove(&stored.sequence);
            }
            dropped += gone.len() as u64;
            !series.by_time.is_empty()
        });
        Ok(dropped)
    }

    async fn scan(
        &self,
        after: Option<&EventKey>,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        let inner = self.inner.lock().expect("timeseries lock");
        let mut out = Vec::new();
        // The series of `after` (if still there) continues after its
        // event; every later series is read from its start.
        let first = after.map_or(Bound::Unbounded, |(series, _, _)| {
            Bound::Included(series.clone())
        });
        for (series_id, series) in inner.series.range::<String, _>((first, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let lower = match after {
                Some((s, time_us, event_id)) if s == series_id => {
                    Bound::Excluded((*time_us, event_id.clone()))
                }
                _ => Bound::Unbounded,
            };
            out.extend(
                series
                    .by_time
                    .range((lower, Bound::Unbounded))
                    .map(|(_, stored)| stored)
                    .filter(|stored| stored.sequence <= up_to)
                    .take(limit - out.len())
                    .cloned(),
            );
        }
        Ok(out)
    }

    async fn last_sequence(&self) -> Result<u64, BackendError> {
        Ok(self.inner.lock().expect("timeseries lock").sequence)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use pattern_core::timeseries::{TailItem, tail};

    use super::*;

    fn event(series: &str, time_us: i64, id: &str, host: &str) -> Event {
        Event {
            series_id: series.into(),
            time_us,
            event_id: id.into(),
            tags: BTreeMap::from([("host".to_string(), host.to_string())]),
            payload: format!("{series}/{time_us}/{id}").into_bytes(),
        }
    }

    #[tokio::test]
    async fn a_retried_write_never_duplicates() {
        let ts = MemTimeSeries::new();
        let batch = vec![event("cpu", 10, "a", "h1"), event("cpu", 10, "b", "h1")];
        let first = ts.write(batch.clone()).await.unwrap();
        assert_eq!((first.written, first.duplicates), (2, 0));
        let again = ts.write(batch).await.unwrap();
        assert_eq!((again.written, again.duplicates), (0, 2));
        // Same id at another time, or in another series, is a new event.
        let other = ts
            .write(vec![
                event("cpu", 11, "a", "h1"),
                event("mem", 10, "a", "h1"),
            ])
            .await
            .unwrap();
        assert_eq!(other.written, 2);
    }

    #[tokio::test]
    async fn reads_honour_range_tags_order_and_pages() {
        let ts = MemTimeSeries::new();
        let events: Vec<_> = (0..10)
            .map(|i| {
                event(
                    "cpu",
                    i * 10,
                    &format!("e{i}"),
                    if i % 2 == 0 { "h1" } else { "h2" },
                )
            })
            .collect();
        ts.write(events).await.unwrap();
        let mut query = ReadQuery {
            series_id: "cpu".into(),
            start_us: Some(20),
            end_us: Some(80),
            tags: BTreeMap::from([("host".to_string(), "h1".to_string())]),
            order: Order::NewestFirst,
            budget_bytes: 1,
            after: None,
        };
        let mut times = Vec::new();
        loop {
            let page = ts.read(&query).await.unwrap();
            assert_eq!(page.events.len(), 1, "a tiny budget still returns one");
            times.extend(page.events.iter().map(|e| e.event.time_us));
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        assert_eq!(times, [60, 40, 20]);
        query.order = Order::OldestFirst;
        query.after = None;
        query.budget_bytes = 1 << 20;
        let page = ts.read(&query).await.unwrap();
        let times: Vec<_> = page.events.iter().map(|e| e.event.time_us).collect();
        assert_eq!(times, [20, 40, 60]);
        assert!(page.next.is_none());
    }

    #[tokio::test]
    async fn a_tail_from_the_past_catches_up_then_follows_without_gap_or_duplicate() {
        let ts: Arc<MemTimeSeries> = Arc::new(MemTimeSeries::new());
        // 600 stored events (more than one tail batch), some before `from`.
        let stored: Vec<_> = (0..600)
            .map(|i| event("cpu", i, &format!("s{i}"), "h1"))
            .collect();
        ts.write(stored).await.unwrap();
        let query = TailQuery {
            series_id: "cpu".into(),
            from_us: 100,
            tags: BTreeMap::new(),
        };
        let mut rx = tail(ts.clone(), query, 0);
        // Writers race the catch-up: live events, including a late one
        // (time in the past) and one for another series.
        let writer = {
            let ts = ts.clone();
            tokio::spawn(async move {
                for i in 0..300 {
                    ts.write(vec![event("cpu", 1000 + i, &format!("l{i}"), "h1")])
                        .await
                        .unwrap();
                    if i == 150 {
                        ts.write(vec![
                            event("cpu", 150, "late", "h1"),
                            event("mem", 5, "x", "h1"),
                        ])
                        .await
                        .unwrap();
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut ids = Vec::new();
        let mut sequences = Vec::new();
        let mut caught_up = 0;
        let want = 500 + 300 + 1;
        tokio::time::timeout(Duration::from_secs(10), async {
            while ids.len() < want {
                match rx.recv().await.unwrap().unwrap() {
                    TailItem::Event(e) => {
                        sequences.push(e.sequence);
                        ids.push(e.event.event_id);
                    }
                    TailItem::CaughtUp(_) => caught_up += 1,
                }
            }
        })
        .await
        .expect("the tail delivered everything within 10 s");
        writer.await.unwrap();
        assert_eq!(caught_up, 1);
        assert!(
            sequences.windows(2).all(|w| w[0] < w[1]),
            "in sequence order"
        );
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "no duplicate");
        assert!(
            ids.contains(&"late".to_string()),
            "the late event is delivered"
        );
        assert!(
            !ids.iter().any(|i| i == "s99" || i == "x"),
            "before `from` or other series"
        );
        assert_eq!(
            ids.iter()
                .filter(|i| i.starts_with('l') && *i != "late")
                .count(),
            300,
            "no gap"
        );
        // Nothing more arrives.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), rx.recv())
                .await
                .is_err()
        );
    }
}
