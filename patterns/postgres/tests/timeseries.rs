//! The TimeSeries acceptance suite on PostgreSQL (127.0.0.1:5432, database
//! `test`; override with PRISM_TEST_POSTGRES_URL), and checks that the
//! stored layout is what ADR-015 says: plain rows readable with SQL, and
//! real partitions that retention drops.
//!
//! Every case runs twice: `embedded::` (the backend linked into the test)
//! and `process::` (each backend its own `prism-pattern-postgres` process,
//! reached over the pattern protocol).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pattern_core::timeseries::{Event, TimeSeriesBackend, TimeSeriesSettings};
use pattern_core::{Clock, Factory, SystemClock};
use pattern_postgres::{PostgresTimeSeriesFactory, timeseries::Layout};

const SCHEMA: &str = "prism_ts_acceptance";

fn url() -> String {
    std::env::var("PRISM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn options() -> serde_json::Value {
    serde_json::json!({ "url": url(), "schema": SCHEMA })
}

mod embedded {
    #[allow(unused_imports)]
    use super::*;
    pattern_core::timeseries_acceptance_suite!(
        mode = "embedded",
        pattern_postgres::PostgresTimeSeriesFactory,
        options()
    );
}

mod process {
    #[allow(unused_imports)]
    use super::*;
    pattern_core::timeseries_acceptance_suite!(
        mode = "process",
        pattern_core::acceptance::ProcessFactory::timeseries(
            pattern_postgres::PostgresTimeSeriesFactory,
            env!("CARGO_BIN_EXE_prism-pattern-postgres"),
        ),
        options()
    );
}

async fn sql() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to PostgreSQL");
    tokio::spawn(connection);
    client
}

async fn partitions(client: &tokio_postgres::Client, layout: &Layout) -> Vec<String> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             JOIN pg_namespace n ON n.oid = p.relnamespace
             WHERE n.nspname = $1 AND p.relname = $2 ORDER BY 1",
            &[&layout.schema, &layout.table],
        )
        .await
        .expect("listing partitions");
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_plain_sql_and_partitions_are_real() {
    const B: i64 = 1_000_000;
    let namespace = format!("layout-{}-{}", std::process::id(), SystemClock.now_ms());
    let dir = tempfile::tempdir().unwrap();
    let ctx = pattern_core::OpenContext::new(
        namespace.clone(),
        dir.path().to_path_buf(),
        Arc::new(SystemClock),
    )
    .with_settings(TimeSeriesSettings {
        bucket: Duration::from_secs(1),
    });
    let backend = PostgresTimeSeriesFactory
        .open(ctx.with_options(options()))
        .await
        .expect("opening");
    let base = 1_700_000_000 * B;
    let events: Vec<Event> = (0..3)
        .map(|k| Event {
            series_id: "cpu".into(),
            time_us: base + k * B + 5,
            event_id: format!("e{k}"),
            tags: BTreeMap::from([("host".to_string(), format!("h{k}"))]),
            payload: vec![k as u8; 3],
        })
        .collect();
    backend.write(events).await.expect("write");

    let layout = Layout::new(SCHEMA, &namespace);
    let client = sql().await;
    let rows = client
        .query(
            &format!(
                "SELECT series_id, time_us, event_id, tags->>'host', payload, sequence
                 FROM {} ORDER BY time_us",
                layout.parent()
            ),
            &[],
        )
        .await
        .expect("plain SELECT of the events");
    assert_eq!(rows.len(), 3);
    for (k, row) in rows.iter().enumerate() {
        assert_eq!(row.get::<_, String>(0), "cpu");
        assert_eq!(row.get::<_, i64>(1), base + k as i64 * B + 5);
        assert_eq!(row.get::<_, String>(2), format!("e{k}"));
        assert_eq!(row.get::<_, String>(3), format!("h{k}"), "tags are jsonb");
        assert_eq!(row.get::<_, Vec<u8>>(4), vec![k as u8; 3]);
        assert!(row.get::<_, i64>(5) > 0);
    }
    let parts = partitions(&client, &layout).await;
    assert_eq!(
        parts,
        (0..3)
            .map(|k| layout.partition_name(base + k * B))
            .collect::<Vec<_>>(),
        "one partition per bucket"
    );
    // Each partition holds its bucket's row.
    for (k, part) in parts.iter().enumerate() {
        let n: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM \"{SCHEMA}\".\"{part}\""),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "partition {k} holds one event");
    }
    // A cutoff inside bucket 2 drops the partitions of buckets 0 and 1.
    backend
        .drop_before(base + 2 * B + B / 2)
        .await
        .expect("drop_before");
    assert_eq!(
        partitions(&client, &layout).await,
        [layout.partition_name(base + 2 * B)],
        "retention dropped whole partitions"
    );
    let left: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", layout.parent()), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
    backend.close().await.unwrap();
}

async fn open(namespace: &str, poll_interval_ms: u64) -> Arc<dyn TimeSeriesBackend> {
    let ctx = pattern_core::OpenContext::new(
        namespace.to_string(),
        std::env::temp_dir(),
        Arc::new(SystemClock),
    )
    .with_settings(TimeSeriesSettings {
        bucket: Duration::from_secs(3600),
    });
    let options = serde_json::json!({
        "url": url(), "schema": SCHEMA, "poll_interval_ms": poll_interval_ms
    });
    PostgresTimeSeriesFactory
        .open(ctx.with_options(options))
        .await
        .expect("opening")
}

fn unique(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{test}-{}-{}-{}",
        std::process::id(),
        SystemClock.now_ms(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits until `backend`'s high-water mark reaches `at_least`.
async fn wait_for_mark(backend: &Arc<dyn TimeSeriesBackend>, at_least: u64, within: Duration) {
    let mut mark = backend.watch_sequence();
    tokio::time::timeout(within, mark.wait_for(|v| *v >= at_least))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "high-water mark stayed at {} below {at_least} for {within:?}",
                *backend.watch_sequence().borrow()
            )
        })
        .expect("the backend is open");
}

/// A write through another backend (another proxy) wakes this one's
/// watchers by NOTIFY: polling is set too slow to be what wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_write_is_notified() {
    let namespace = unique("notify");
    let watcher = open(&namespace, 60_000).await;
    let writer = open(&namespace, 60_000).await;
    // The listener connects in the background; write until one is seen.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    loop {
        let event = Event {
            series_id: "s".into(),
            time_us: i,
            event_id: format!("e{i}"),
            tags: BTreeMap::new(),
            payload: Vec::new(),
        };
        writer.write(vec![event]).await.expect("write");
        i += 1;
        let high = *writer.watch_sequence().borrow();
        let mut mark = watcher.watch_sequence();
        if tokio::time::timeout(Duration::from_millis(500), mark.wait_for(|v| *v >= high))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no notification reached the other backend in 20 s"
        );
    }
    writer.close().await.unwrap();
    watcher.close().await.unwrap();
}

/// A write whose notification is lost (here: one made with plain SQL,
/// which sends none) still reaches watchers through the poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_only_delays() {
    let namespace = unique("poll");
    let watcher = open(&namespace, 100).await;
    let layout = Layout::new(SCHEMA, &namespace);
    let before = *watcher.watch_sequence().borrow();
    sql()
        .await
        .execute(
            &format!(
                "UPDATE {} SET sequence = sequence + 5 WHERE namespace = $1",
                layout.counters()
            ),
            &[&namespace],
        )
        .await
        .expect("advancing the counter with plain SQL");
    wait_for_mark(&watcher, before + 5, Duration::from_secs(10)).await;
    watcher.close().await.unwrap();
}
