//! KafkaLog (the durable log behind TimeSeries tails) against the
//! Kafka-protocol broker on 127.0.0.1:9092.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pattern_core::timeseries::Event;
use pattern_kafka::{KafkaLog, KafkaOptions, LogTail};

fn unique_topic() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("prism-log-test-{}-{n}-{t}", std::process::id())
}

fn event(series: &str, time_us: i64, id: &str) -> Event {
    Event {
        series_id: series.into(),
        time_us,
        event_id: id.into(),
        tags: BTreeMap::from([("host".to_string(), "a".to_string())]),
        payload: id.as_bytes().to_vec(),
    }
}

async fn next(tail: &mut LogTail) -> Event {
    tokio::time::timeout(Duration::from_secs(30), tail.next())
        .await
        .expect("an event within 30 s")
        .expect("the tail is running")
        .expect("no read error")
}

#[tokio::test]
async fn tail_starts_at_a_time_then_follows_live_appends() {
    let log = KafkaLog::new(KafkaOptions::default(), &unique_topic()).unwrap();
    let base = 1_700_000_000_000_000i64;
    log.append(&[
        event("s1", base, "old"),
        event("s1", base + 10_000_000, "new1"),
        event("s1", base + 20_000_000, "new2"),
    ])
    .await
    .unwrap();
    let mut tail = log.tail(base + 5_000_000).await.unwrap();
    let first = next(&mut tail).await;
    assert_eq!(first.event_id, "new1");
    assert_eq!(first, event("s1", base + 10_000_000, "new1"));
    assert_eq!(next(&mut tail).await.event_id, "new2");
    // A late event (older than the start) is skipped; a live one arrives.
    log.append(&[
        event("s1", base, "late"),
        event("s1", base + 30_000_000, "live"),
    ])
    .await
    .unwrap();
    assert_eq!(next(&mut tail).await.event_id, "live");
}
