//! Moving a TimeSeries namespace from SQLite to PostgreSQL while a load
//! generator writes and reads through the real proxy and a tail follows a
//! series (ADR-016): every phase through prismctl, zero failed calls, every
//! acknowledged event read back from PostgreSQL after finalize, zero
//! mismatches; the tail opened on SQLite ends with UNAVAILABLE at finalize
//! and, reopened from its last event, misses nothing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prism_proto::timeseries::v1 as pb;
use prism_proto::timeseries::v1::time_series_service_client::TimeSeriesServiceClient;
use prism_tests::{ConfigDir, ProxyProcess};
use tonic::transport::Channel;

fn postgres_url() -> String {
    std::env::var("PRISM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

const SCHEMA: &str = "prism_migration_ts_e2e";
/// Event times start here (microseconds).
const BASE_US: i64 = 1_700_000_000_000_000;

fn time(us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
    }
}

fn micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1000
}

fn event(series: &str, us: i64, id: &str) -> pb::Event {
    pb::Event {
        series_id: series.into(),
        event_time: Some(time(us)),
        event_id: id.into(),
        tags: [("host".to_string(), format!("h{}", us % 3))].into(),
        payload: format!("{series}/{id}").into_bytes(),
    }
}

async fn client(proxy: &ProxyProcess) -> TimeSeriesServiceClient<Channel> {
    TimeSeriesServiceClient::connect(proxy.grpc_url())
        .await
        .expect("connecting to the proxy")
}

/// Every event id of `series` read through the proxy, all pages.
async fn read_ids(
    ts: &mut TimeSeriesServiceClient<Channel>,
    name: &str,
    series: &str,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = ts
            .read(pb::ReadRequest {
                namespace: name.into(),
                series_id: series.into(),
                page_size_bytes: 64 << 10,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("reading")
            .into_inner();
        ids.extend(
            page.events
                .into_iter()
                .filter_map(|e| e.event.map(|e| e.event_id)),
        );
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

/// What a tail received: event ids and times, and how it ended.
#[derive(Default)]
struct Tailed {
    ids: Vec<String>,
    last_us: Option<i64>,
    ended: Option<tonic::Status>,
}

/// Follows `series` from `from_us` until the stream ends or `stop` is set.
async fn follow(
    mut ts: TimeSeriesServiceClient<Channel>,
    name: String,
    series: &'static str,
    from_us: i64,
    seen: Arc<Mutex<BTreeSet<String>>>,
) -> Tailed {
    let mut stream = ts
        .tail(pb::TailRequest {
            namespace: name,
            series_id: series.into(),
            from: Some(time(from_us)),
            ..Default::default()
        })
        .await
        .expect("opening the tail")
        .into_inner();
    let mut out = Tailed::default();
    loop {
        match stream.message().await {
            Ok(Some(pb::TailResponse {
                item: Some(pb::tail_response::Item::Event(e)),
            })) => {
                let e = e.event.unwrap();
                out.last_us = e.event_time.as_ref().map(micros);
                seen.lock().unwrap().insert(e.event_id.clone());
                out.ids.push(e.event_id);
            }
            Ok(Some(_)) => {}
            Ok(None) => return out,
            Err(status) => {
                out.ended = Some(status);
                return out;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeseries_sqlite_to_postgres_under_load() {
    let setup = ConfigDir::with_namespace("tsmig", "dal: timeseries\nbackend:\n  kind: sqlite\n");
    let (name, file) = (setup.name.clone(), setup.file.clone());
    let proxy = setup.start();
    let mut ts = client(&proxy).await;

    // 6 series of 50 events written before the migration.
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    for s in 0..6 {
        let series = format!("pre-{s}");
        let events: Vec<_> = (0..50)
            .map(|i| event(&series, BASE_US + i, &format!("p{i}")))
            .collect();
        for e in &events {
            expected.insert((series.clone(), e.event_id.clone()));
        }
        ts.write(pb::WriteRequest {
            namespace: name.clone(),
            events,
        })
        .await
        .expect("populating");
    }

    // A tail on the series the load writes, opened before the migration.
    let tailed = Arc::new(Mutex::new(BTreeSet::new()));
    let tail = tokio::spawn(follow(
        client(&proxy).await,
        name.clone(),
        "load",
        BASE_US,
        tailed.clone(),
    ));

    // The load: one event written and one series read per round.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, rounds, name) = (stop.clone(), rounds.clone(), name.clone());
        let mut ts = client(&proxy).await;
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut failures = Vec::new();
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("l{i}");
                let written = ts
                    .write(pb::WriteRequest {
                        namespace: name.clone(),
                        events: vec![event("load", BASE_US + 1_000 + i, &id)],
                    })
                    .await;
                match written {
                    Ok(_) => acknowledged.push(id),
                    Err(e) => failures.push(format!("write {id}: {e}")),
                }
                let read = ts
                    .read(pb::ReadRequest {
                        namespace: name.clone(),
                        series_id: format!("pre-{}", i % 6),
                        ..Default::default()
                    })
                    .await;
                if let Err(e) = read {
                    failures.push(format!("read: {e}"));
                }
                i += 1;
                rounds.store(i as u64, Ordering::Relaxed);
            }
            (acknowledged, failures)
        })
    };
    let progress = |n: u64| {
        let rounds = rounds.clone();
        async move {
            let from = rounds.load(Ordering::Relaxed);
            let deadline = Instant::now() + Duration::from_secs(60);
            while rounds.load(Ordering::Relaxed) < from + n {
                assert!(Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    progress(50).await;

    let to = format!(
        "{{kind: postgres, options: {{url: '{}', schema: {SCHEMA}}}}}",
        postgres_url()
    );
    let started = proxy.migrate(&[
        "start",
        &name,
        "--to",
        &to,
        "--read-sample",
        "1",
        "-o",
        "json",
    ]);
    assert!(started.contains("dual-write"), "{started}");
    progress(50).await;
    proxy.migrate(&["advance", &name]);
    let waited: serde_json::Value =
        serde_json::from_str(&proxy.migrate(&["wait", &name, "-o", "json"])).unwrap();
    assert_eq!(waited["phase"], "backfill");
    assert_eq!(waited["backfill"]["finished"], true, "{waited}");
    let total = waited["backfill"]["total_items"].as_u64().unwrap();
    assert!(total >= 300, "the events before the backfill: {waited}");
    proxy.migrate(&["advance", &name]);
    progress(60).await;
    // Every read of the rounds above was compared (read_sample 1).
    let deadline = Instant::now() + Duration::from_secs(60);
    let compared = loop {
        let s = proxy.migration_status(&name);
        if s["reads_compared"].as_u64().unwrap_or(0) >= 60 {
            break s;
        }
        assert!(Instant::now() < deadline, "reads not compared: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(compared["mismatches"], 0, "{compared}");
    assert_eq!(compared["shadow_failures"], 0, "{compared}");
    proxy.migrate(&["advance", &name]);
    assert_eq!(proxy.migration_status(&name)["phase"], "promoted");
    progress(50).await;
    proxy.migrate(&["finalize", &name]);
    progress(50).await;
    stop.store(true, Ordering::Relaxed);
    let (acknowledged, failures) = load.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} calls failed, e.g. {:?}",
        failures.len(),
        acknowledged.len() * 2,
        &failures[..failures.len().min(5)]
    );
    eprintln!(
        "{name}: {} rounds (a write and a read each) through the migration, 0 failed",
        acknowledged.len() + failures.len()
    );
    assert!(
        proxy.migration_status(&name)["phase"] == "",
        "the migration ended"
    );
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(stored.contains("kind: postgres"), "{stored}");

    // The tail opened on SQLite ended when SQLite was released, with a
    // retryable status that says what to do.
    let first = tail.await.unwrap();
    let ended = first.ended.expect("the tail ended with a status");
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    assert!(ended.message().contains("open the tail again"), "{ended:?}");
    assert!(
        !first.ids.is_empty(),
        "the tail received events before finalize"
    );
    // Reopened from its last event's time on PostgreSQL, it misses nothing.
    let resumed = tokio::spawn(follow(
        client(&proxy).await,
        name.clone(),
        "load",
        first.last_us.unwrap(),
        tailed.clone(),
    ));
    let want: BTreeSet<String> = acknowledged.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing = want.difference(&tailed.lock().unwrap()).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two tails together miss {missing} acknowledged events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    resumed.abort();

    // Every acknowledged and pre-written event is in the new primary.
    for s in 0..6 {
        let series = format!("pre-{s}");
        let got: BTreeSet<(String, String)> = read_ids(&mut ts, &name, &series)
            .await
            .into_iter()
            .map(|id| (series.clone(), id))
            .collect();
        let want: BTreeSet<_> = expected
            .iter()
            .filter(|(s, _)| *s == series)
            .cloned()
            .collect();
        assert_eq!(got, want, "{series} after finalize");
    }
    let got: BTreeSet<String> = read_ids(&mut ts, &name, "load").await.into_iter().collect();
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing: {missing:?}"
    );
    drop(proxy);
}
