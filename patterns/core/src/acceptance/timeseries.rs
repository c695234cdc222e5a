//! The TimeSeries acceptance suite: the cases every TimeSeries backend runs
//! against its real engine, with one macro call in its tests:
//!
//! ```ignore
//! pattern_core::timeseries_acceptance_suite!(mode = "embedded", MyFactory, serde_json::json!({}));
//! ```
//!
//! Each case opens a fresh backend through the factory for a namespace of
//! its own (unique name, own temporary data directory) with the bucket
//! width the case needs, so cases and backends run in parallel. A case
//! testing a capability the backend does not declare checks that the
//! backend refuses cleanly instead, and is reported `not_applicable`.

mod cases;
mod tail;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use cases::{
    batch_duplicates_count_once, concurrent_writers_get_unique_increasing_sequences,
    newest_and_oldest_first_with_byte_pages, range_bounds, retention_drops_whole_buckets,
    retried_write_counts_duplicates, scan_lists_every_event_in_identity_order,
    sequences_survive_reopen, tag_filters, write_read_roundtrip,
};
pub use tail::tail_catches_up_then_follows;

use super::{CaseSubject, Harness};
use crate::capabilities::{Capabilities, Capability};
use crate::clock::SystemClock;
use crate::timeseries::{
    DEFAULT_BUCKET, Event, Order, ReadQuery, StoredEvent, TailQuery, TimeSeriesBackend,
    TimeSeriesFactory, TimeSeriesSettings,
};

/// The capability a case tests, or `None` for the core behaviour every
/// TimeSeries backend must have.
pub fn case_capability(case: &str) -> Option<Capability> {
    match case {
        "retention_drops_whole_buckets" => Some(Capability::Retention),
        "sequences_survive_reopen" => Some(Capability::Durable),
        "scan_lists_every_event_in_identity_order" => Some(Capability::Scan),
        _ => None,
    }
}

/// Opens TimeSeries backends for acceptance cases.
pub struct TimeSeriesHarness {
    factory: Arc<dyn TimeSeriesFactory>,
    options: serde_json::Value,
    dir: tempfile::TempDir,
    mode: &'static str,
    claimed: Mutex<Option<Capabilities>>,
}

/// A backend opened for one case, with what reopening it needs.
pub struct Opened {
    pub backend: Arc<dyn TimeSeriesBackend>,
    pub namespace: String,
    pub bucket: Duration,
}

impl TimeSeriesHarness {
    /// A harness opening backends with `factory` and `options`.
    pub fn new(factory: Arc<dyn TimeSeriesFactory>, options: serde_json::Value) -> Self {
        TimeSeriesHarness {
            factory,
            options,
            dir: tempfile::tempdir().expect("creating a temporary data directory"),
            mode: "embedded",
            claimed: Mutex::new(None),
        }
    }

    /// This harness, reporting its runs under `mode`.
    pub fn with_mode(mut self, mode: &'static str) -> Self {
        self.mode = mode;
        self
    }

    /// Opens a backend for a fresh namespace with the default bucket.
    pub async fn open(&self, test: &str) -> Opened {
        self.open_with_bucket(test, DEFAULT_BUCKET).await
    }

    /// Opens a backend for a fresh namespace with `bucket`-wide buckets.
    pub async fn open_with_bucket(&self, test: &str, bucket: Duration) -> Opened {
        let namespace = Harness::unique_namespace(&format!("ts-{test}"));
        let backend = self.reopen(&namespace, bucket).await;
        Opened {
            backend,
            namespace,
            bucket,
        }
    }

    /// Opens (again) the backend of `namespace`, in the same data
    /// directory and with the same options.
    pub async fn reopen(&self, namespace: &str, bucket: Duration) -> Arc<dyn TimeSeriesBackend> {
        let ctx = crate::OpenContext::new(namespace, self.dir.path(), Arc::new(SystemClock))
            .with_options(self.options.clone())
            .with_settings(TimeSeriesSettings { bucket });
        let backend = self
            .factory
            .open(ctx)
            .await
            .unwrap_or_else(|e| panic!("opening the TimeSeries backend: {e}"));
        *self.claimed.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend.capabilities());
        backend
    }
}

impl CaseSubject for TimeSeriesHarness {
    fn backend_kind(&self) -> &'static str {
        self.factory.kind()
    }
    fn mode(&self) -> &'static str {
        self.mode
    }
    fn claimed(&self) -> Option<Capabilities> {
        *self.claimed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An event with one `host` tag and a payload naming it.
pub(crate) fn event(series: &str, time_us: i64, id: &str, host: &str) -> Event {
    Event {
        series_id: series.into(),
        time_us,
        event_id: id.into(),
        tags: BTreeMap::from([("host".to_string(), host.to_string())]),
        payload: format!("{series}/{time_us}/{id}").into_bytes(),
    }
}

/// A read of a whole series, oldest first, in one page.
pub(crate) fn whole(series: &str) -> ReadQuery {
    ReadQuery {
        series_id: series.into(),
        budget_bytes: 64 << 20,
        ..ReadQuery::default()
    }
}

/// Every event `query` selects, following pages; also returns the pages.
pub(crate) async fn read_pages(
    b: &Arc<dyn TimeSeriesBackend>,
    query: &ReadQuery,
) -> Vec<Vec<StoredEvent>> {
    let mut query = query.clone();
    let mut pages = Vec::new();
    loop {
        let page = b
            .read(&query)
            .await
            .unwrap_or_else(|e| panic!("read of series {:?}: {e}", query.series_id));
        pages.push(page.events);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 100_000, "paging does not terminate");
    }
}

/// Every event `query` selects.
pub(crate) async fn read_all(b: &Arc<dyn TimeSeriesBackend>, query: &ReadQuery) -> Vec<Event> {
    read_pages(b, query)
        .await
        .concat()
        .into_iter()
        .map(|s| s.event)
        .collect()
}

/// The `(time, id)` keys of a series' events in `order`.
pub(crate) async fn keys(
    b: &Arc<dyn TimeSeriesBackend>,
    series: &str,
    start: Option<i64>,
    end: Option<i64>,
) -> Vec<(i64, String)> {
    let query = ReadQuery {
        start_us: start,
        end_us: end,
        order: Order::OldestFirst,
        ..whole(series)
    };
    read_all(b, &query)
        .await
        .into_iter()
        .map(|e| (e.time_us, e.event_id))
        .collect()
}

/// Every event of a series with a sequence above 0, in sequence order.
pub(crate) async fn all_since(b: &Arc<dyn TimeSeriesBackend>, series: &str) -> Vec<StoredEvent> {
    let query = TailQuery {
        series_id: series.into(),
        from_us: i64::MIN,
        tags: BTreeMap::new(),
    };
    let mut out: Vec<StoredEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.sequence);
        let batch = b
            .read_since(&query, after, 100)
            .await
            .unwrap_or_else(|e| panic!("read_since on {series:?}: {e}"));
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

/// Runs the whole TimeSeries acceptance suite: one `#[tokio::test]` per
/// case. `$factory` is a value implementing
/// [`crate::timeseries::TimeSeriesFactory`], `$options` the backend options
/// as a `serde_json::Value`; `mode` labels the run in reports, and any
/// attributes given first apply to every case. The calling crate needs
/// `tokio` (with `macros` and `rt-multi-thread`) as a dependency. With
/// `PRISM_ACCEPTANCE_REPORT` set, each case appends a report line with
/// `"suite":"timeseries"` (see [`crate::acceptance::CaseReport`]).
#[macro_export]
macro_rules! timeseries_acceptance_suite {
    ($(#[$attr:meta])* mode = $mode:literal, $factory:expr, $options:expr) => {
        $crate::timeseries_acceptance_suite!(@cases [$(#[$attr])*] $mode, $factory, $options;
            write_read_roundtrip,
            retried_write_counts_duplicates,
            batch_duplicates_count_once,
            range_bounds,
            tag_filters,
            newest_and_oldest_first_with_byte_pages,
            tail_catches_up_then_follows,
            concurrent_writers_get_unique_increasing_sequences,
            retention_drops_whole_buckets,
            sequences_survive_reopen,
            scan_lists_every_event_in_identity_order
        );
    };
    ($(#[$attr:meta])* $factory:expr, $options:expr) => {
        $crate::timeseries_acceptance_suite!($(#[$attr])* mode = "embedded", $factory, $options);
    };
    (@cases $attrs:tt $mode:literal, $factory:expr, $options:expr; $($case:ident),* $(,)?) => {
        $(
            $crate::timeseries_acceptance_suite!(@case $attrs $mode, $factory, $options, $case);
        )*
    };
    (@case [$($attr:tt)*] $mode:literal, $factory:expr, $options:expr, $case:ident) => {
        $($attr)*
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let harness = $crate::acceptance::TimeSeriesHarness::new(
                ::std::sync::Arc::new($factory),
                $options,
            )
            .with_mode($mode);
            let report = $crate::acceptance::CaseReport::start(
                &harness,
                "timeseries",
                stringify!($case),
                $crate::acceptance::timeseries::case_capability(stringify!($case)),
            );
            $crate::acceptance::timeseries::$case(&harness).await;
            report.passed();
        }
    };
}
