//! The tail case: catching up over stored events while live writes race.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{TimeSeriesHarness, event};
use crate::timeseries::{Event, TailItem, TailQuery, TailStart, open_tail};

/// A tail from the past delivers every stored event, one `CaughtUp`, then
/// the live ones racing it (including one whose event time is in the
/// past), each exactly once in sequence order, and nothing from other
/// series, before `from`, or failing the tag filter.
pub async fn tail_catches_up_then_follows(h: &TimeSeriesHarness) {
    let b = h.open("tail").await.backend;
    const FROM: i64 = 10_000;
    let matching = |t: i64, id: String| event("s", t, &id, "a");
    // More stored events than one read_since batch (256), plus noise.
    let mut stored: Vec<Event> = (0..300)
        .map(|i| matching(FROM + i, format!("old{i}")))
        .collect();
    let noise = vec![
        event("other", FROM + 1, "noise-series", "a"),
        event("s", FROM - 1, "noise-early", "a"),
        event("s", FROM + 2, "noise-tag", "b"),
    ];
    for chunk in stored.chunks(100) {
        b.write(chunk.to_vec()).await.expect("write stored");
    }
    b.write(noise).await.expect("write noise");
    let query = TailQuery {
        series_id: "s".into(),
        from_us: FROM,
        tags: BTreeMap::from([("host".to_string(), "a".to_string())]),
    };
    // The backend's log tail when it has one (`timeseries.log`), else the
    // tail built on the store.
    let mut rx = open_tail(b.clone(), query, TailStart::From)
        .await
        .expect("opening the tail");

    // Live writers race the catch-up.
    let mut live: Vec<Event> = Vec::new();
    let mut writers = Vec::new();
    for w in 0..4i64 {
        let batch: Vec<Vec<Event>> = (0..25)
            .map(|i| {
                let mut v = vec![matching(
                    FROM + 1_000_000 + w * 1_000 + i,
                    format!("live{w}-{i}"),
                )];
                v.push(event("s", FROM + 5 + i, &format!("skip{w}-{i}"), "b"));
                if i == 12 {
                    // Late: event time in the past, written now.
                    v.push(matching(FROM + 3, format!("late{w}")));
                    v.push(event("s", FROM - 100, &format!("too-early{w}"), "a"));
                }
                v
            })
            .collect();
        live.extend(
            batch
                .iter()
                .flatten()
                .filter(|e| e.event_id.starts_with("l"))
                .cloned(),
        );
        let b = b.clone();
        writers.push(tokio::spawn(async move {
            for events in batch {
                b.write(events).await.expect("live write");
                tokio::task::yield_now().await;
            }
        }));
    }
    let want: BTreeSet<String> = stored.drain(..).chain(live).map(|e| e.event_id).collect();
    let stored_ids: BTreeSet<String> = want
        .iter()
        .filter(|id| id.starts_with("old"))
        .cloned()
        .collect();
    assert_eq!(want.len(), 300 + 100 + 4);

    let mut seen = BTreeSet::new();
    let mut last_sequence = 0u64;
    let mut caught_up = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < want.len() {
        let item = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "tail delivered {} of {} events in 60 s; missing e.g. {:?}",
                    seen.len(),
                    want.len(),
                    want.difference(&seen).take(5).collect::<Vec<_>>()
                )
            })
            .expect("the tail ended early")
            .unwrap_or_else(|e| panic!("tail error: {e}"));
        match item {
            TailItem::Event(s) => {
                let id = s.event.event_id.clone();
                assert!(
                    want.contains(&id),
                    "tail delivered an event it should not: {id}"
                );
                assert!(seen.insert(id.clone()), "tail delivered {id} twice");
                assert!(
                    s.sequence > last_sequence,
                    "sequence {} of {id} after {last_sequence}: not in sequence order",
                    s.sequence
                );
                last_sequence = s.sequence;
                if caught_up == 0 {
                    continue;
                }
                assert!(
                    !stored_ids.contains(&id),
                    "{id} was stored before the tail began but came after CaughtUp"
                );
            }
            TailItem::CaughtUp(seq) => {
                caught_up += 1;
                assert_eq!(caught_up, 1, "CaughtUp sent twice");
                assert_eq!(
                    seq, last_sequence,
                    "CaughtUp carries the last sequence sent"
                );
                assert!(
                    stored_ids.is_subset(&seen),
                    "CaughtUp before every stored event was sent"
                );
            }
        }
    }
    for w in writers {
        w.await.expect("writer task");
    }
    // Everything was written: whatever else the tail sends is wrong.
    b.write(vec![matching(FROM + 9_999_999, "marker".into())])
        .await
        .expect("write marker");
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the tail delivers the marker")
            .expect("the tail is open")
            .expect("no tail error");
        match item {
            TailItem::Event(s) if s.event.event_id == "marker" => break,
            TailItem::CaughtUp(_) if caught_up == 0 => caught_up += 1,
            other => panic!("unexpected tail item after all events: {other:?}"),
        }
    }
    assert_eq!(caught_up, 1, "exactly one CaughtUp");
}
