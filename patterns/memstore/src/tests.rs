use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use pattern_core::{BackendError, ManualClock, PageRequest, PutItem, Selection};

use super::*;

fn store(retention_secs: u64) -> (Arc<Store>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    (
        Arc::new(Store::new(clock.clone(), retention_secs * 1000)),
        clock,
    )
}

/// Many OS threads write at once: every version is unique, each thread
/// sees its own versions strictly increase, and the last write of a key by
/// version order is the value that remains.
#[test]
fn threads_get_unique_increasing_versions() {
    let (s, _) = store(60);
    let threads = 16;
    let writes = 500;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::with_capacity(writes);
                for i in 0..writes {
                    let out = s
                        .put("shared", vec![PutItem::new("k", format!("{t}:{i}"))], None)
                        .unwrap();
                    mine.push((out.versions()[0], format!("{t}:{i}")));
                }
                mine
            })
        })
        .collect();
    let mut all = HashSet::new();
    let mut newest = (0, String::new());
    for h in handles {
        let mine = h.join().unwrap();
        assert!(mine.windows(2).all(|w| w[0].0 < w[1].0), "per-thread order");
        for (v, value) in mine {
            assert!(all.insert(v), "duplicate version {v}");
            if v > newest.0 {
                newest = (v, value);
            }
        }
    }
    assert_eq!(all.len(), threads * writes);
    assert_eq!(
        *all.iter().max().unwrap(),
        (threads * writes) as u64,
        "no gaps"
    );
    let page = s
        .get("shared", &Selection::All, &PageRequest::first(1 << 20))
        .unwrap();
    assert_eq!(page.items[0].version, newest.0);
    assert_eq!(page.items[0].value, newest.1.into_bytes());
}

/// Readers running while writers hammer the store see published versions
/// only ever grow, and never wait for the writer lock.
#[test]
fn readers_do_not_wait_for_the_writer_lock() {
    let (s, _) = store(60);
    s.put("id", vec![PutItem::new("k", "v")], None).unwrap();
    let guard = s.hold_writer_lock_for_test();
    let (tx, rx) = mpsc::channel();
    let reader = s.clone();
    std::thread::spawn(move || {
        let page = reader.get("id", &Selection::All, &PageRequest::first(1024));
        let scan = reader.scan(&PageRequest::first(1024));
        tx.send((page.map(|p| p.items.len()), scan.map(|p| p.items.len())))
            .unwrap();
    });
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a read completed while the writer lock was held");
    drop(guard);
    assert_eq!(got, (Ok(1), Ok(1)));
}

#[test]
fn concurrent_readers_see_monotonic_snapshots() {
    let (s, _) = store(60);
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for i in 0..2000u32 {
                s.put("id", vec![PutItem::new(i.to_be_bytes(), "v")], None)
                    .unwrap();
            }
        })
    };
    let mut last = 0;
    let mut last_count = 0;
    while !writer.is_finished() {
        let v = s.visible_version();
        assert!(v >= last);
        last = v;
        let n = s
            .get("id", &Selection::All, &PageRequest::first(usize::MAX))
            .unwrap()
            .items
            .len();
        assert!(n >= last_count, "a later read saw fewer items");
        last_count = n;
    }
    writer.join().unwrap();
}

/// Expired items vanish from reads at once and from memory after a sweep
/// once the snapshot retention has passed.
#[test]
fn sweeper_removes_expired_and_deleted_records() {
    let (s, clock) = store(5);
    s.put(
        "id",
        vec![
            PutItem::new("ttl", "x").with_ttl(Duration::from_secs(1)),
            PutItem::new("gone", "y"),
            PutItem::new("stay", "z"),
        ],
        None,
    )
    .unwrap();
    s.delete("id", &Selection::Keys(vec![b"gone".to_vec()]));
    clock.advance(Duration::from_secs(2));
    s.sweep();
    assert_eq!(
        s.record_count(),
        3,
        "retention keeps history for old snapshots"
    );
    clock.advance(Duration::from_secs(10));
    let stats = s.sweep();
    assert_eq!(stats.removed, 2);
    assert_eq!(s.record_count(), 1);
    let page = s
        .get("id", &Selection::All, &PageRequest::first(1024))
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

/// A page token older than the retention is refused, not silently wrong.
#[test]
fn expired_snapshot_token_is_refused() {
    let (s, clock) = store(5);
    for i in 0..3u8 {
        s.put(&format!("id{i}"), vec![PutItem::new([i], "v")], None)
            .unwrap();
    }
    let first = s.scan(&PageRequest::first(1)).unwrap();
    let cursor = first.next.clone().expect("more pages");
    s.put("id0", vec![PutItem::new([0], "w")], None).unwrap();
    s.sweep();
    clock.advance(Duration::from_secs(6));
    s.sweep();
    s.put("id1", vec![PutItem::new([1], "w")], None).unwrap();
    clock.advance(Duration::from_secs(6));
    s.sweep();
    let err = s
        .scan(&PageRequest {
            budget_bytes: 1,
            cursor: Some(cursor),
        })
        .unwrap_err();
    assert!(matches!(err, BackendError::PageTokenExpired(_)), "{err:?}");
}

#[test]
fn unknown_option_is_refused() {
    let err = pattern_core::keyvalue::parse_options::<MemstoreOptions>(
        KIND,
        serde_json::json!({"retention": 5}),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unknown field `retention`"), "{msg}");
    assert!(msg.contains("snapshot_retention_secs"), "{msg}");
}
