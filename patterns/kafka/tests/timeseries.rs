//! The TimeSeries acceptance suite on SQLite with a Kafka log behind its
//! tails (a namespace's `timeseries.log` of kind kafka): every case runs
//! against the pair, and the tail case reads the log. Needs the
//! Kafka-protocol broker on 127.0.0.1:9092.

use std::sync::Arc;

use async_trait::async_trait;
use pattern_core::timeseries::{LoggedTimeSeries, TimeSeriesBackend};
use pattern_core::{BackendError, Factory};
use pattern_kafka::KafkaLog;
use pattern_sqlite::SqliteTimeSeriesFactory;

/// Opens SQLite TimeSeries backends with a Kafka log on topic
/// `prism.<namespace>.events`, as the proxy does for `timeseries.log`.
struct SqliteWithKafkaLog;

#[async_trait]
impl pattern_core::Factory for SqliteWithKafkaLog {
    type Backend = dyn TimeSeriesBackend;

    fn kind(&self) -> &'static str {
        "sqlite+kafka"
    }

    fn needs_profile(&self) -> pattern_core::needs::NeedsProfile {
        pattern_core::needs::NeedsProfile {
            kind: "sqlite+kafka",
            ..SqliteTimeSeriesFactory.needs_profile()
        }
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        SqliteTimeSeriesFactory.check_options(options)
    }

    async fn open(
        &self,
        ctx: pattern_core::OpenContext,
    ) -> Result<Arc<dyn TimeSeriesBackend>, BackendError> {
        let log = KafkaLog::open(&ctx.namespace, serde_json::json!({}))?;
        let store = SqliteTimeSeriesFactory.open(ctx).await?;
        Ok(Arc::new(LoggedTimeSeries::new(store, Arc::new(log))))
    }
}

mod embedded {
    pattern_core::timeseries_acceptance_suite!(
        mode = "embedded",
        super::SqliteWithKafkaLog,
        serde_json::json!({})
    );
}

/// An event larger than the log takes is refused before the store writes
/// anything (a stored-but-unlogged event would fail every retry).
#[tokio::test]
async fn an_event_too_large_for_the_log_is_refused_and_nothing_is_stored() {
    use pattern_core::timeseries::{Event, ReadQuery};
    let dir = tempfile::tempdir().unwrap();
    let ctx = pattern_core::OpenContext::new(
        format!("too-large-{}", std::process::id()),
        dir.path().to_path_buf(),
        Arc::new(pattern_core::SystemClock),
    )
    .with_settings(pattern_core::timeseries::TimeSeriesSettings {
        bucket: pattern_core::timeseries::DEFAULT_BUCKET,
    });
    let b = SqliteWithKafkaLog
        .open(ctx.with_options(serde_json::json!({})))
        .await
        .unwrap();
    let event = |id: &str, bytes: usize| Event {
        series_id: "s".into(),
        time_us: 1_000,
        event_id: id.into(),
        tags: Default::default(),
        payload: vec![7; bytes],
    };
    let err = b
        .write(vec![event("small", 10), event("huge", 6 << 20)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::InvalidArgument(m) if m.contains("events[1]") && m.contains("nothing was written")),
        "{err}"
    );
    let page = b
        .read(&ReadQuery {
            series_id: "s".into(),
            budget_bytes: 1 << 20,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.events.is_empty(), "{:?}", page.events.len());
}
