//! KafkaLog (the durable log behind TimeSeries tails) against the
//! Kafka-protocol broker on 127.0.0.1:9092.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pattern_core::BackendError;
use pattern_core::timeseries::{Event, EventLog, TailItem, TailQuery, TailReceiver, TailStart};
use pattern_kafka::{KafkaLog, KafkaOptions};

fn unique_topic() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("prism-log-test-{}-{n}-{t}", std::process::id())
}

fn event(series: &str, time_us: i64, id: &str, host: &str) -> Event {
    Event {
        series_id: series.into(),
        time_us,
        event_id: id.into(),
        tags: BTreeMap::from([("host".to_string(), host.to_string())]),
        payload: id.as_bytes().to_vec(),
    }
}

async fn next(tail: &mut TailReceiver) -> TailItem {
    tokio::time::timeout(Duration::from_secs(30), tail.recv())
        .await
        .expect("an item within 30 s")
        .expect("the tail is running")
        .expect("no read error")
}

/// The next event's id and sequence.
async fn next_event(tail: &mut TailReceiver) -> (String, u64) {
    match next(tail).await {
        TailItem::Event(e) => (e.event.event_id, e.sequence),
        other => panic!("expected an event, got {other:?}"),
    }
}

fn query(series: &str, from_us: i64) -> TailQuery {
    TailQuery {
        series_id: series.into(),
        from_us,
        tags: BTreeMap::from([("host".to_string(), "a".to_string())]),
    }
}

#[tokio::test]
async fn tail_catches_up_from_a_time_then_follows_without_repeats() {
    let log = KafkaLog::new(KafkaOptions::default(), &unique_topic()).unwrap();
    let base = 1_700_000_000_000_000i64;
    log.append(&[
        event("s1", base, "old", "a"),
        event("s1", base + 10_000_000, "new1", "a"),
        event("s2", base + 11_000_000, "other-series", "a"),
        event("s1", base + 12_000_000, "other-host", "b"),
        event("s1", base + 20_000_000, "new2", "a"),
    ])
    .await
    .unwrap();
    let mut tail = log
        .tail(&query("s1", base + 5_000_000), TailStart::From)
        .await
        .unwrap();
    let (first, seq1) = next_event(&mut tail).await;
    assert_eq!(first, "new1");
    let (second, seq2) = next_event(&mut tail).await;
    assert_eq!(second, "new2");
    assert!(seq2 > seq1, "sequences grow: {seq1} then {seq2}");
    assert_eq!(next(&mut tail).await, TailItem::CaughtUp(seq2));
    // Live: a repeat of a delivered event (a retried write) is dropped; a
    // late event before the start is skipped; a late one after it arrives.
    log.append(&[
        event("s1", base + 10_000_000, "new1", "a"),
        event("s1", base, "too-late", "a"),
        event("s1", base + 6_000_000, "late", "a"),
        event("s1", base + 30_000_000, "live", "a"),
    ])
    .await
    .unwrap();
    let (late, seq3) = next_event(&mut tail).await;
    assert_eq!(late, "late");
    assert!(seq3 > seq2);
    assert_eq!(next_event(&mut tail).await.0, "live");
}

#[tokio::test]
async fn tail_from_now_skips_what_was_stored() {
    let log = KafkaLog::new(KafkaOptions::default(), &unique_topic()).unwrap();
    let now = 1_700_000_000_000_000i64;
    log.append(&[event("s1", now, "before", "a")])
        .await
        .unwrap();
    let mut tail = log
        .tail(&query("s1", i64::MIN), TailStart::Now)
        .await
        .unwrap();
    assert_eq!(next(&mut tail).await, TailItem::CaughtUp(0));
    log.append(&[event("s1", now - 1, "after", "a")])
        .await
        .unwrap();
    assert_eq!(next_event(&mut tail).await.0, "after");
}

#[test]
fn options_are_checked_with_a_reason() {
    let (options, topic) = KafkaLog::check_options("metrics", serde_json::Value::Null).unwrap();
    assert_eq!(topic, "prism.metrics.events");
    assert_eq!(options.brokers, "127.0.0.1:9092");
    let unknown = KafkaLog::check_options("m", serde_json::json!({"topics": "x"})).unwrap_err();
    assert!(
        matches!(&unknown, BackendError::Config(m) if m.contains("topics") && m.contains("brokers, topic and partitions")),
        "{unknown}"
    );
    let bad = KafkaLog::check_options("m", serde_json::json!({"topic": "a b"})).unwrap_err();
    assert!(bad.to_string().contains("not a Kafka topic name"), "{bad}");
    let partitions =
        KafkaLog::check_options("m", serde_json::json!({"partitions": 0})).unwrap_err();
    assert!(
        partitions.to_string().contains("partitions"),
        "{partitions}"
    );
}
