//! TimeSeries acceptance cases (the tail has its own module). Each takes a
//! [`TimeSeriesHarness`] and panics with a message saying what the backend
//! got wrong.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::{TimeSeriesHarness, all_since, event, keys, read_all, read_pages, whole};
use crate::capabilities::Capability;
use crate::error::BackendError;
use crate::timeseries::{
    Event, EventKey, Order, ReadQuery, StoredEvent, TimeSeriesBackend, WriteSummary,
};

async fn write(b: &Arc<dyn TimeSeriesBackend>, events: Vec<Event>) -> WriteSummary {
    b.write(events)
        .await
        .unwrap_or_else(|e| panic!("write: {e}"))
}

fn summary(written: u32, duplicates: u32) -> WriteSummary {
    WriteSummary {
        written,
        duplicates,
    }
}

/// Events come back as written: tags, empty and 1 MiB payloads, unicode
/// series and event ids; each gets a distinct sequence above 0.
pub async fn write_read_roundtrip(h: &TimeSeriesHarness) {
    let b = h.open("roundtrip").await.backend;
    let series = "températures/α-🚀";
    let mut big = vec![0u8; 1 << 20];
    for (i, byte) in big.iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    let events = vec![
        Event {
            series_id: series.into(),
            time_us: 1_000,
            event_id: "ид-1 ☃".into(),
            tags: BTreeMap::from([
                ("host".into(), "h1".into()),
                ("région".into(), "eu-west/1".into()),
            ]),
            payload: vec![0, 255, 1, 254],
        },
        Event {
            series_id: series.into(),
            time_us: 2_000,
            event_id: "empty".into(),
            tags: BTreeMap::new(),
            payload: Vec::new(),
        },
        Event {
            series_id: series.into(),
            time_us: 3_000,
            event_id: "big".into(),
            tags: BTreeMap::from([("size".into(), "1MiB".into())]),
            payload: big,
        },
    ];
    assert_eq!(write(&b, events.clone()).await, summary(3, 0));
    let page = b.read(&whole(series)).await.expect("read");
    assert_eq!(page.next, None, "everything fits one 64 MiB page");
    let got: Vec<Event> = page.events.iter().map(|s| s.event.clone()).collect();
    assert_eq!(got.len(), 3, "read returned {} events, wrote 3", got.len());
    for (got, want) in got.iter().zip(&events) {
        assert_eq!(got.event_id, want.event_id, "event ids in time order");
        assert_eq!(got.series_id, want.series_id);
        assert_eq!(got.time_us, want.time_us);
        assert_eq!(got.tags, want.tags, "tags of {:?}", want.event_id);
        assert!(
            got.payload == want.payload,
            "payload of {:?} differs ({} bytes read, {} written)",
            want.event_id,
            got.payload.len(),
            want.payload.len()
        );
    }
    let sequences: HashSet<u64> = page.events.iter().map(|s| s.sequence).collect();
    assert_eq!(sequences.len(), 3, "sequences are distinct: {sequences:?}");
    assert!(!sequences.contains(&0), "sequences start above 0");
    assert!(
        *b.watch_sequence().borrow() >= *sequences.iter().max().unwrap(),
        "watch_sequence reaches the highest written sequence"
    );
    assert!(
        b.read(&whole("other"))
            .await
            .expect("read")
            .events
            .is_empty(),
        "another series is empty"
    );
}

/// A batch written twice is stored once; the retry counts duplicates. The
/// same event id at another time or in another series is a new event.
pub async fn retried_write_counts_duplicates(h: &TimeSeriesHarness) {
    let b = h.open("dup").await.backend;
    let batch: Vec<Event> = (0..5)
        .map(|i| event("cpu", 100 + i, &format!("e{i}"), "h1"))
        .collect();
    assert_eq!(write(&b, batch.clone()).await, summary(5, 0));
    let high = *b.watch_sequence().borrow();
    assert_eq!(
        write(&b, batch.clone()).await,
        summary(0, 5),
        "a retried batch writes nothing and counts 5 duplicates"
    );
    assert_eq!(keys(&b, "cpu", None, None).await.len(), 5);
    let mut changed = batch[0].clone();
    changed.payload = b"changed".to_vec();
    assert_eq!(write(&b, vec![changed]).await, summary(0, 1));
    let first = read_all(&b, &whole("cpu")).await;
    assert_eq!(
        first[0].payload, batch[0].payload,
        "a duplicate does not overwrite the stored event"
    );
    let others = vec![event("cpu", 999, "e0", "h1"), event("mem", 100, "e0", "h1")];
    assert_eq!(
        write(&b, others).await,
        summary(2, 0),
        "same id at another time / in another series is new"
    );
    let seqs: Vec<u64> = all_since(&b, "cpu")
        .await
        .iter()
        .map(|s| s.sequence)
        .collect();
    assert_eq!(seqs.len(), 6);
    assert!(
        seqs[5] > high,
        "an event written after the retry gets a higher sequence"
    );
}

/// A batch repeating an identity stores it once (the first occurrence)
/// and counts the repeat, alongside the batch's new and stored events.
pub async fn batch_duplicates_count_once(h: &TimeSeriesHarness) {
    let b = h.open("batchdup").await.backend;
    assert_eq!(
        write(&b, vec![event("s", 5, "old", "h")]).await,
        summary(1, 0)
    );
    let mut repeat = event("s", 10, "a", "h");
    repeat.payload = b"second".to_vec();
    let batch = vec![
        event("s", 10, "a", "h"),
        event("s", 5, "old", "h"),
        event("s", 11, "b", "h"),
        repeat,
    ];
    assert_eq!(
        write(&b, batch).await,
        summary(2, 2),
        "one stored duplicate and one in-batch repeat"
    );
    let got = read_all(&b, &whole("s")).await;
    let ids: Vec<&str> = got.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["old", "a", "b"]);
    assert_eq!(got[1].payload, b"s/10/a", "the first occurrence is kept");
    assert_eq!(write(&b, Vec::new()).await, summary(0, 0), "an empty batch");
}

/// Start is inclusive, end exclusive, either may be open; events with the
/// same time sort by event id.
pub async fn range_bounds(h: &TimeSeriesHarness) {
    let b = h.open("range").await.backend;
    let mut events: Vec<Event> = (0..10).map(|i| event("s", i * 10, "x", "h")).collect();
    events.push(event("s", 20, "w", "h"));
    events.push(event("s", -5, "neg", "h"));
    events.push(event("t", 20, "other-series", "h"));
    write(&b, events).await;
    let times = |v: Vec<(i64, String)>| v.into_iter().map(|k| k.0).collect::<Vec<_>>();
    assert_eq!(
        keys(&b, "s", Some(20), Some(50)).await,
        [
            (20, "w".to_string()),
            (20, "x".to_string()),
            (30, "x".to_string()),
            (40, "x".to_string())
        ],
        "[20, 50): start inclusive, end exclusive, ties by event id"
    );
    assert_eq!(times(keys(&b, "s", None, Some(10)).await), [-5, 0]);
    assert_eq!(times(keys(&b, "s", Some(80), None).await), [80, 90]);
    assert_eq!(
        times(keys(&b, "s", Some(30), Some(30)).await),
        Vec::<i64>::new()
    );
    assert_eq!(
        times(keys(&b, "s", Some(31), Some(39)).await),
        Vec::<i64>::new()
    );
    assert_eq!(keys(&b, "s", None, None).await.len(), 12);
}

/// Every tag of the filter must match; extra tags on an event are fine.
pub async fn tag_filters(h: &TimeSeriesHarness) {
    let b = h.open("tags").await.backend;
    let mk = |t: i64, tags: &[(&str, &str)]| Event {
        series_id: "s".into(),
        time_us: t,
        event_id: format!("e{t}"),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        payload: Vec::new(),
    };
    write(
        &b,
        vec![
            mk(1, &[("host", "a"), ("dc", "x")]),
            mk(2, &[("host", "b"), ("dc", "x")]),
            mk(3, &[("host", "a")]),
            mk(4, &[]),
            mk(5, &[("host", "a"), ("dc", "y"), ("rack", "7")]),
        ],
    )
    .await;
    let filter = |tags: &[(&str, &str)]| {
        let q = ReadQuery {
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..whole("s")
        };
        let b = b.clone();
        async move {
            read_all(&b, &q)
                .await
                .into_iter()
                .map(|e| e.time_us)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(filter(&[]).await, [1, 2, 3, 4, 5], "no filter: all");
    assert_eq!(filter(&[("host", "a")]).await, [1, 3, 5]);
    assert_eq!(filter(&[("host", "a"), ("dc", "x")]).await, [1]);
    assert_eq!(filter(&[("dc", "y"), ("rack", "7")]).await, [5]);
    assert_eq!(filter(&[("host", "c")]).await, Vec::<i64>::new());
    assert_eq!(filter(&[("nope", "a")]).await, Vec::<i64>::new());
    assert_eq!(filter(&[("host", "")]).await, Vec::<i64>::new());
}

/// Pages respect the byte budget (a tiny one returns one event per page)
/// and the `after` cursor walks every event exactly once, in both orders.
pub async fn newest_and_oldest_first_with_byte_pages(h: &TimeSeriesHarness) {
    let b = h.open("pages").await.backend;
    // Pairs of events share a time, so the cursor must break ties by id.
    let events: Vec<Event> = (0..30)
        .map(|i| {
            let mut e = event("s", 1_000 + (i / 2) * 7, &format!("id-{:02}", 29 - i), "h");
            e.payload = vec![b'p'; 100];
            e
        })
        .collect();
    write(&b, events).await;
    let all = keys(&b, "s", None, None).await;
    assert_eq!(all.len(), 30);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "oldest first is (time, event id) order");
    for order in [Order::OldestFirst, Order::NewestFirst] {
        let want: Vec<_> = match order {
            Order::OldestFirst => all.clone(),
            Order::NewestFirst => all.iter().rev().cloned().collect(),
        };
        for budget in [1usize, 350, 1 << 20] {
            let q = ReadQuery {
                order,
                budget_bytes: budget,
                start_us: Some(1_000),
                end_us: Some(1_000 + 15 * 7),
                ..whole("s")
            };
            let pages = read_pages(&b, &q).await;
            let got: Vec<_> = pages
                .iter()
                .flatten()
                .map(|s| (s.event.time_us, s.event.event_id.clone()))
                .collect();
            assert_eq!(got, want, "{order:?} with budget {budget}");
            for page in &pages {
                let bytes: usize = page.iter().map(|s| s.event.size()).sum();
                assert!(
                    page.len() == 1 || bytes <= budget,
                    "{order:?}: a page of {} events holds {bytes} bytes over budget {budget}",
                    page.len()
                );
            }
            if budget == 1 {
                assert_eq!(pages.len(), 30, "{order:?}: one event per page");
            }
            if budget == 350 {
                assert!(
                    pages.iter().any(|p| p.len() > 1),
                    "{order:?}: a 350-byte budget fits several 100-byte events"
                );
            }
        }
    }
}

/// Concurrent writers each get distinct sequences, increasing with the
/// order of each writer's own writes; read_since lists them all in order.
pub async fn concurrent_writers_get_unique_increasing_sequences(h: &TimeSeriesHarness) {
    let b = h.open("concurrent").await.backend;
    const WRITERS: i64 = 8;
    const WRITES: i64 = 20;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..WRITES {
                let batch = vec![
                    event("s", w * 1_000 + i * 2, &format!("w{w}"), &format!("{w}")),
                    event(
                        "s",
                        w * 1_000 + i * 2 + 1,
                        &format!("w{w}"),
                        &format!("{w}"),
                    ),
                ];
                let s = b.write(batch).await.expect("concurrent write");
                assert_eq!(s, summary(2, 0), "writer {w} write {i}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    let stored = all_since(&b, "s").await;
    assert_eq!(stored.len() as i64, WRITERS * WRITES * 2);
    let seqs: Vec<u64> = stored.iter().map(|s| s.sequence).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "read_since returns strictly increasing sequences"
    );
    for w in 0..WRITERS {
        let times: Vec<i64> = stored
            .iter()
            .filter(|s| s.event.tags["host"] == w.to_string())
            .map(|s| s.event.time_us)
            .collect();
        assert!(
            times.windows(2).all(|t| t[0] < t[1]),
            "writer {w}'s later writes got higher sequences: times in sequence order {times:?}"
        );
    }
    assert!(*b.watch_sequence().borrow() >= *seqs.last().unwrap());
}

/// With Retention, drop_before removes whole buckets ending at or before
/// the cutoff and keeps the bucket holding it; without, it is refused.
pub async fn retention_drops_whole_buckets(h: &TimeSeriesHarness) {
    const B: i64 = 1_000_000; // one-second buckets, in microseconds
    let opened = h
        .open_with_bucket("retention", Duration::from_secs(1))
        .await;
    let b = opened.backend;
    let base = 1_700_000_000 * B; // a bucket boundary
    let mut events = Vec::new();
    for k in 0..5 {
        for (j, offset) in [0, B / 2, B - 1].into_iter().enumerate() {
            events.push(event("a", base + k * B + offset, &format!("a{k}-{j}"), "h"));
        }
        events.push(event("b", base + k * B + 3, &format!("b{k}"), "h"));
    }
    write(&b, events).await;
    if !b.capabilities().has(Capability::Retention) {
        match b.drop_before(base + 3 * B).await {
            Err(BackendError::Unsupported { capability, .. }) => {
                assert_eq!(capability, Capability::Retention)
            }
            other => panic!("drop_before without Retention must be Unsupported: {other:?}"),
        }
        assert_eq!(keys(&b, "a", None, None).await.len(), 15, "nothing dropped");
        return;
    }
    let check_count = |n: u64, want: u64, what: &str| {
        assert!(
            n == want || n == 0,
            "{what}: drop_before reported {n} removed events; {want} were removed"
        );
    };
    // A cutoff on a boundary: bucket 0 ends at base + B <= cutoff.
    let n = b.drop_before(base + B).await.expect("drop_before");
    check_count(n, 4, "cutoff on a boundary");
    let a_times =
        |v: Vec<(i64, String)>| v.into_iter().map(|k| (k.0 - base) / B).collect::<Vec<_>>();
    assert_eq!(
        a_times(keys(&b, "a", None, None).await),
        [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4],
        "bucket 0 dropped, bucket 1 (holding the cutoff) kept"
    );
    // A cutoff inside bucket 3 drops buckets 1 and 2, keeps 3 whole.
    let n = b
        .drop_before(base + 3 * B + B / 2)
        .await
        .expect("drop_before");
    check_count(n, 8, "cutoff inside a bucket");
    assert_eq!(a_times(keys(&b, "a", None, None).await), [3, 3, 3, 4, 4, 4]);
    assert_eq!(a_times(keys(&b, "b", None, None).await), [3, 4]);
    let since: Vec<String> = all_since(&b, "a")
        .await
        .into_iter()
        .map(|s| s.event.event_id)
        .collect();
    assert_eq!(since, ["a3-0", "a3-1", "a3-2", "a4-0", "a4-1", "a4-2"]);
    let n = b
        .drop_before(base + 3 * B + B / 2)
        .await
        .expect("drop again");
    assert_eq!(n, 0, "dropping again removes nothing");
    // Writing into the kept buckets and far later still works.
    assert_eq!(
        write(
            &b,
            vec![
                event("a", base + 3 * B + 7, "late", "h"),
                event("a", base + 90 * B, "new", "h")
            ]
        )
        .await,
        summary(2, 0)
    );
    assert_eq!(keys(&b, "a", None, None).await.len(), 8);
}

/// With Durable, a closed and reopened backend has every event and hands
/// out higher sequences; without, reopening still works.
pub async fn sequences_survive_reopen(h: &TimeSeriesHarness) {
    let opened = h.open("reopen").await;
    let b = opened.backend;
    let events: Vec<Event> = (0..10)
        .map(|i| event("s", i, &format!("e{i}"), "h"))
        .collect();
    write(&b, events.clone()).await;
    let before = all_since(&b, "s").await;
    let high = before.last().expect("written events").sequence;
    let durable = b.capabilities().has(Capability::Durable);
    b.close().await.expect("close");
    drop(b);
    let b = h.reopen(&opened.namespace, opened.bucket).await;
    if !durable {
        assert_eq!(
            write(&b, vec![event("s", 1, "x", "h")]).await,
            summary(1, 0),
            "a reopened backend accepts writes"
        );
        return;
    }
    let after = all_since(&b, "s").await;
    assert_eq!(after, before, "events and sequences survive reopening");
    assert!(
        *b.watch_sequence().borrow() >= high,
        "watch_sequence starts at the stored high-water mark"
    );
    assert_eq!(
        write(&b, events).await,
        summary(0, 10),
        "duplicates are still recognised after reopening"
    );
    write(&b, vec![event("s", 100, "new", "h")]).await;
    let newest = all_since(&b, "s").await.pop().expect("new event");
    assert_eq!(newest.event.event_id, "new");
    assert!(
        newest.sequence > high,
        "a new sequence {} is above the old high-water {high}",
        newest.sequence
    );
    b.close().await.expect("close");
}

/// Scans every page of the namespace with `limit`-event pages from the
/// start, continuing after each page's last event, up to sequence `up_to`.
async fn scan_pages(b: &Arc<dyn TimeSeriesBackend>, up_to: u64, limit: usize) -> Vec<StoredEvent> {
    let mut out: Vec<StoredEvent> = Vec::new();
    let mut after: Option<EventKey> = None;
    for _ in 0..10_000 {
        let page = b
            .scan(after.as_ref(), up_to, limit)
            .await
            .unwrap_or_else(|e| panic!("scan after {after:?} up to sequence {up_to}: {e}"));
        assert!(
            page.len() <= limit,
            "scan after {after:?} returned {} events; the limit was {limit}",
            page.len()
        );
        let Some(last) = page.last() else {
            return out;
        };
        after = Some(last.event.key());
        out.extend(page);
    }
    panic!("scanning with {limit}-event pages does not terminate");
}

/// With Scan, `scan` lists every event of every series in identity order
/// (series id, time, event id; ids in byte order), page by page from the
/// last event returned, leaving out events with a sequence above its
/// bound: a scan up to `last_sequence` read before later writes sees
/// exactly the earlier events. Without Scan, both calls are refused.
pub async fn scan_lists_every_event_in_identity_order(h: &TimeSeriesHarness) {
    let b = h.open("scan").await.backend;
    if !b.capabilities().has(Capability::Scan) {
        write(&b, vec![event("s", 1, "e", "h")]).await;
        match b.scan(None, u64::MAX, 3).await {
            Err(BackendError::Unsupported { capability, .. }) => {
                assert_eq!(capability, Capability::Scan)
            }
            other => panic!("scan without Scan must be Unsupported: {other:?}"),
        }
        match b.last_sequence().await {
            Err(BackendError::Unsupported { capability, .. }) => {
                assert_eq!(capability, Capability::Scan)
            }
            other => panic!("last_sequence without Scan must be Unsupported: {other:?}"),
        }
        return;
    }
    let mk = |series: &str, time_us: i64, id: &str, tags: &[(&str, &str)], payload: &[u8]| Event {
        series_id: series.into(),
        time_us,
        event_id: id.into(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        payload: payload.to_vec(),
    };
    // Series written in an order unlike their byte order ("Zulu" < "alpha"
    // < "mid" < "zeta" < "ära"), batches interleaving them so sequence
    // order is not identity order, ties on time broken by event id.
    let before = vec![
        vec![
            mk("zeta", 50, "b", &[("host", "h1")], b"zeta-50-b"),
            mk(
                "alpha",
                20,
                "y",
                &[("host", "h2"), ("dc", "x")],
                b"alpha-20-y",
            ),
            mk("zeta", 50, "a", &[], b""),
        ],
        vec![
            mk("mid", -5, "neg", &[("sign", "-")], &[0, 255, 7]),
            mk("alpha", 20, "x", &[("host", "h1")], b"alpha-20-x"),
            mk("ära", 1, "é", &[("région", "eu")], "ära".as_bytes()),
        ],
        vec![
            mk("Zulu", 3_000, "z", &[("host", "h3")], b"Zulu"),
            mk("alpha", 10, "z", &[("host", "h1")], b"alpha-10-z"),
            mk("mid", 7, "B", &[("k", "v")], b"mid-7-B"),
            mk("mid", 7, "A", &[("k", "v")], b"mid-7-A"),
            mk("zeta", 49, "c", &[("host", "h1")], b"zeta-49-c"),
        ],
    ];
    let mut written = Vec::new();
    for batch in before {
        let n = batch.len() as u32;
        assert_eq!(write(&b, batch.clone()).await, summary(n, 0));
        written.extend(batch);
    }
    let mark = b.last_sequence().await.expect("last_sequence");
    let series = ["Zulu", "alpha", "mid", "zeta", "ära"];
    let mut stored = Vec::new();
    for s in series {
        stored.extend(all_since(&b, s).await);
    }
    assert_eq!(stored.len(), written.len(), "read_since sees every event");
    let highest = stored.iter().map(|s| s.sequence).max().unwrap_or(0);
    assert!(
        mark >= highest,
        "last_sequence {mark} is below the highest sequence written, {highest}"
    );
    // Later writes: into the middle of series, a new first series, and a
    // duplicate of an earlier event (which changes nothing).
    let later = vec![
        mk("alpha", 15, "later-1", &[("host", "h9")], b"later-1"),
        mk("mid", 7, "AA", &[], b"later-2"),
        mk("Aaa", 1, "later-3", &[], b"later-3"),
        mk("zeta", 51, "later-4", &[("host", "h9")], b"later-4"),
        mk("zeta", 50, "a", &[], b"a duplicate"),
    ];
    assert_eq!(write(&b, later.clone()).await, summary(4, 1));
    let later_ids: HashSet<&str> = later[..4].iter().map(|e| e.event_id.as_str()).collect();

    let mut want_events = written.clone();
    want_events.sort_by_key(Event::key);
    let mut want_stored = stored.clone();
    want_stored.sort_by_key(|s| s.event.key());
    for limit in [3, 1, 100] {
        let got = scan_pages(&b, mark, limit).await;
        assert!(
            got.iter()
                .all(|s| !later_ids.contains(s.event.event_id.as_str())),
            "a scan up to sequence {mark} (limit {limit}) returned events written after \
             last_sequence was read: {:?}",
            got.iter()
                .filter(|s| later_ids.contains(s.event.event_id.as_str()))
                .map(|s| s.event.key())
                .collect::<Vec<_>>()
        );
        let got_events: Vec<Event> = got.iter().map(|s| s.event.clone()).collect();
        assert_eq!(
            got_events.iter().map(Event::key).collect::<Vec<_>>(),
            want_events.iter().map(Event::key).collect::<Vec<_>>(),
            "a scan up to sequence {mark} with limit {limit}: identities in identity order"
        );
        assert_eq!(
            got_events, want_events,
            "limit {limit}: every event with its tags and payload"
        );
        assert_eq!(
            got, want_stored,
            "limit {limit}: each event with the sequence read_since gives it"
        );
    }

    // Without a bound, the later events are there too, in their places.
    let mut everything = written.clone();
    everything.extend(later[..4].iter().cloned());
    everything.sort_by_key(Event::key);
    let got: Vec<Event> = scan_pages(&b, u64::MAX, 3)
        .await
        .into_iter()
        .map(|s| s.event)
        .collect();
    assert_eq!(
        got, everything,
        "a scan up to u64::MAX lists the later events too"
    );
    assert_eq!(got[0].series_id, "Aaa", "the new series sorts first");

    // `after` need not be a stored event: the scan continues after it.
    for after in [
        ("alpha".to_string(), i64::MAX, String::new()),
        ("b".to_string(), i64::MIN, String::new()),
        ("mid".to_string(), 7, "A".to_string()),
    ] {
        let got: Vec<EventKey> = b
            .scan(Some(&after), u64::MAX, 100)
            .await
            .unwrap_or_else(|e| panic!("scan after {after:?}: {e}"))
            .iter()
            .map(|s| s.event.key())
            .collect();
        let want: Vec<EventKey> = everything
            .iter()
            .map(Event::key)
            .filter(|k| *k > after)
            .collect();
        assert_eq!(got, want, "a scan after {after:?} (exclusive)");
    }
    assert_eq!(
        b.scan(None, 0, 100).await.expect("scan up to 0"),
        Vec::new(),
        "no event has sequence 0"
    );
    assert_eq!(
        b.scan(None, u64::MAX, 0).await.expect("scan with limit 0"),
        Vec::new(),
        "a limit of 0 returns nothing"
    );
    let now = b.last_sequence().await.expect("last_sequence");
    assert!(
        now > mark,
        "last_sequence {now} did not grow past {mark} after 4 more events were written"
    );
    let newest = all_since(&b, "Aaa").await;
    assert!(
        newest
            .iter()
            .all(|s| s.sequence > mark && s.sequence <= now),
        "the later event's sequence {:?} lies in ({mark}, {now}]",
        newest.iter().map(|s| s.sequence).collect::<Vec<_>>()
    );
}
