//! KeyValue acceptance cases. Each takes a [`Harness`] and panics with a
//! message saying what the backend got wrong.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::Harness;
use crate::capabilities::Capability;
use crate::clock::Clock;
use crate::error::BackendError;
use crate::idempotency::IdempotencyKey;
use crate::keyvalue::{
    Item, KeyValueBackend, Mutation, MutationOutcome, PageRequest, PutItem, ScanEntry, Selection,
};

const BIG_PAGE: usize = 64 << 20;

/// The capability a case tests, or `None` for the core behaviour every
/// backend must have. The acceptance runner's matrix groups cases by it.
pub fn case_capability(case: &str) -> Option<Capability> {
    match case {
        "scan_pages" => Some(Capability::Scan),
        "ttl_expiry" => Some(Capability::Ttl),
        "conditional_writes" => Some(Capability::ConditionalWrite),
        "idempotency_tokens" => Some(Capability::Idempotency),
        "mutate_atomicity" => Some(Capability::Transactions),
        "snapshot_scan" => Some(Capability::SnapshotReads),
        _ => None,
    }
}

type RecordKey = (String, Vec<u8>);

async fn put(b: &Arc<dyn KeyValueBackend>, id: &str, items: Vec<PutItem>) -> Vec<u64> {
    b.put(id, items, None)
        .await
        .unwrap_or_else(|e| panic!("put to {id}: {e}"))
        .versions()
}

async fn put_one(b: &Arc<dyn KeyValueBackend>, id: &str, key: &[u8], value: &[u8]) -> u64 {
    put(b, id, vec![PutItem::new(key, value)]).await[0]
}

/// Every item of a selection, following pages; also returns the pages.
async fn get_pages(
    b: &Arc<dyn KeyValueBackend>,
    id: &str,
    selection: &Selection,
    budget: usize,
) -> Vec<Vec<Item>> {
    let mut pages = Vec::new();
    let mut request = PageRequest::first(budget);
    loop {
        let page = b
            .get(id, selection, request.clone())
            .await
            .unwrap_or_else(|e| panic!("get {id}: {e}"));
        pages.push(page.items);
        match page.next {
            Some(cursor) => request.cursor = Some(cursor),
            None => return pages,
        }
        assert!(pages.len() < 100_000, "paging does not terminate");
    }
}

async fn get_all(b: &Arc<dyn KeyValueBackend>, id: &str, selection: &Selection) -> Vec<Item> {
    get_pages(b, id, selection, BIG_PAGE).await.concat()
}

async fn keys_of(b: &Arc<dyn KeyValueBackend>, id: &str, selection: &Selection) -> Vec<Vec<u8>> {
    get_all(b, id, selection)
        .await
        .into_iter()
        .map(|i| i.key)
        .collect()
}

async fn collect_scan(b: &Arc<dyn KeyValueBackend>, budget: usize) -> Vec<Vec<ScanEntry>> {
    let mut pages = Vec::new();
    let mut request = PageRequest::first(budget);
    loop {
        let page = b
            .scan(request.clone())
            .await
            .unwrap_or_else(|e| panic!("scan: {e}"));
        pages.push(page.items);
        match page.next {
            Some(cursor) => request.cursor = Some(cursor),
            None => return pages,
        }
        assert!(pages.len() < 100_000, "scan paging does not terminate");
    }
}

fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A Put is read back with its value, version and no expiry.
pub async fn put_get_roundtrip(h: &Harness) {
    let b = h.open("roundtrip").await;
    let versions = put(
        &b,
        "user-1",
        vec![PutItem::new("name", "ada"), PutItem::new("city", "london")],
    )
    .await;
    assert_eq!(versions.len(), 2);
    assert!(versions[0] > 0 && versions[1] > versions[0], "{versions:?}");
    let items = get_all(&b, "user-1", &Selection::All).await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].key, k("city"), "items come in key order");
    assert_eq!(items[0].value, k("london"));
    assert_eq!(items[0].version, versions[1]);
    assert_eq!(items[1].value, k("ada"));
    assert_eq!(items[1].expires_at_ms, None);
    // Overwrite bumps the version.
    let v3 = put_one(&b, "user-1", b"name", b"grace").await;
    assert!(v3 > versions[1]);
    let items = get_all(&b, "user-1", &Selection::Keys(vec![k("name")])).await;
    assert_eq!((items[0].value.clone(), items[0].version), (k("grace"), v3));
    // Other ids are separate.
    assert!(get_all(&b, "user-2", &Selection::All).await.is_empty());
}

/// Key lists, ranges and prefixes select the right keys, in order.
pub async fn selections(h: &Harness) {
    let b = h.open("selections").await;
    let keys = ["a", "ab", "abc", "b", "ba", "c"];
    put(
        &b,
        "id",
        keys.iter().map(|key| PutItem::new(*key, "v")).collect(),
    )
    .await;
    let sel = Selection::Keys(vec![k("c"), k("a"), k("missing"), k("a")]);
    assert_eq!(keys_of(&b, "id", &sel).await, vec![k("a"), k("c")]);
    let sel = Selection::Range {
        start: k("ab"),
        end: Some(k("ba")),
    };
    assert_eq!(
        keys_of(&b, "id", &sel).await,
        vec![k("ab"), k("abc"), k("b")]
    );
    let sel = Selection::Range {
        start: k("b"),
        end: None,
    };
    assert_eq!(keys_of(&b, "id", &sel).await, vec![k("b"), k("ba"), k("c")]);
    let sel = Selection::Prefix(k("ab"));
    assert_eq!(keys_of(&b, "id", &sel).await, vec![k("ab"), k("abc")]);
    assert_eq!(keys_of(&b, "id", &Selection::All).await.len(), keys.len());
}

/// Deletes remove what the selection picks and count it.
pub async fn delete_selections(h: &Harness) {
    let b = h.open("delete").await;
    put(
        &b,
        "id",
        ["a", "b", "c", "d", "e"]
            .iter()
            .map(|x| PutItem::new(*x, "v"))
            .collect(),
    )
    .await;
    let n = b
        .delete("id", &Selection::Keys(vec![k("a"), k("zz")]))
        .await
        .unwrap();
    assert_eq!(n, 1, "one of the two keys existed");
    let n = b
        .delete(
            "id",
            &Selection::Range {
                start: k("b"),
                end: Some(k("d")),
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        keys_of(&b, "id", &Selection::All).await,
        vec![k("d"), k("e")]
    );
    assert_eq!(b.delete("id", &Selection::All).await.unwrap(), 2);
    assert_eq!(b.delete("id", &Selection::All).await.unwrap(), 0);
    assert!(get_all(&b, "id", &Selection::All).await.is_empty());
}

/// Pages respect the byte budget and together hold every item once.
pub async fn paging_by_bytes(h: &Harness) {
    let b = h.open("paging").await;
    let items: Vec<PutItem> = (0..50)
        .map(|i| PutItem::new(format!("key-{i:03}"), vec![b'x'; 10 + i]))
        .collect();
    put(&b, "id", items.clone()).await;
    for budget in [1, 40, 100, 333, 10_000] {
        let pages = get_pages(&b, "id", &Selection::All, budget).await;
        for page in &pages {
            assert!(!page.is_empty(), "budget {budget}: empty page");
            let size: usize = page.iter().map(Item::size).sum();
            assert!(
                page.len() == 1 || size <= budget,
                "budget {budget}: page of {size} bytes with {} items",
                page.len()
            );
        }
        let keys: Vec<Vec<u8>> = pages.concat().into_iter().map(|i| i.key).collect();
        let want: Vec<Vec<u8>> = items.iter().map(|i| i.key.clone()).collect();
        assert_eq!(keys, want, "budget {budget}: pages miss or repeat items");
    }
    // Paging works for key lists and prefixes as well.
    let sel = Selection::Keys(
        (0..50)
            .step_by(3)
            .map(|i| k(&format!("key-{i:03}")))
            .collect(),
    );
    let pages = get_pages(&b, "id", &sel, 50).await;
    assert!(pages.len() > 1);
    assert_eq!(pages.concat().len(), 17);
    let pages = get_pages(&b, "id", &Selection::Prefix(k("key-01")), 30).await;
    assert_eq!(pages.concat().len(), 10);
}

/// An item larger than the budget comes alone on its page.
pub async fn oversized_item_pages_alone(h: &Harness) {
    let b = h.open("oversized").await;
    put(
        &b,
        "id",
        vec![
            PutItem::new("a", vec![1; 10]),
            PutItem::new("b", vec![2; 1000]),
            PutItem::new("c", vec![3; 10]),
        ],
    )
    .await;
    let pages = get_pages(&b, "id", &Selection::All, 100).await;
    let shape: Vec<Vec<Vec<u8>>> = pages
        .iter()
        .map(|p| p.iter().map(|i| i.key.clone()).collect())
        .collect();
    assert_eq!(shape, vec![vec![k("a")], vec![k("b")], vec![k("c")]]);
}

/// Scan returns every id with its items in order, across pages.
pub async fn scan_pages(h: &Harness) {
    let b = h.open("scan").await;
    let mut want = BTreeMap::new();
    for id in 0..12 {
        let id = format!("id-{id:02}");
        let items: Vec<PutItem> = (0..(1 + id.len() % 4))
            .map(|i| PutItem::new(format!("k{i}"), format!("value of {id}/{i}")))
            .collect();
        for item in &items {
            want.insert((id.clone(), item.key.clone()), item.value.clone());
        }
        put(&b, &id, items).await;
    }
    for budget in [1, 64, 500, BIG_PAGE] {
        let pages = collect_scan(&b, budget).await;
        let got: Vec<(RecordKey, Vec<u8>)> = pages
            .concat()
            .into_iter()
            .map(|e| ((e.id, e.item.key), e.item.value))
            .collect();
        let expected: Vec<_> = want.clone().into_iter().collect();
        assert_eq!(got, expected, "budget {budget}");
    }
}

/// Expired items are never returned, even before any cleanup runs.
pub async fn ttl_expiry(h: &Harness) {
    let (b, clock) = h.open_manual("ttl").await;
    if !b.capabilities().has(Capability::Ttl) {
        return;
    }
    put(
        &b,
        "id",
        vec![
            PutItem::new("short", "s").with_ttl(Duration::from_secs(10)),
            PutItem::new("long", "l").with_ttl(Duration::from_secs(100)),
            PutItem::new("forever", "f"),
        ],
    )
    .await;
    let items = get_all(&b, "id", &Selection::All).await;
    let short = items.iter().find(|i| i.key == k("short")).expect("short");
    let expires = short.expires_at_ms.expect("a TTL item reports its expiry");
    let now = clock.now_ms();
    assert!(
        expires > now && expires <= now + 10_000,
        "expiry {expires} vs now {now}"
    );
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        keys_of(&b, "id", &Selection::All).await,
        vec![k("forever"), k("long")]
    );
    let scanned: Vec<Vec<u8>> = collect_scan(&b, BIG_PAGE)
        .await
        .concat()
        .into_iter()
        .map(|e| e.item.key)
        .collect();
    assert_eq!(scanned, vec![k("forever"), k("long")]);
    // An expired key counts as absent for deletes and conditional writes.
    assert_eq!(
        b.delete("id", &Selection::Keys(vec![k("short")]))
            .await
            .unwrap(),
        0
    );
    if b.capabilities().has(Capability::ConditionalWrite) {
        put(&b, "id", vec![PutItem::new("short", "again").if_version(0)]).await;
    }
    clock.advance(Duration::from_secs(100));
    assert_eq!(
        keys_of(&b, "id", &Selection::All).await,
        vec![k("forever"), k("short")]
    );
}

/// Conditional writes check the current version; a failure writes nothing.
pub async fn conditional_writes(h: &Harness) {
    let b = h.open("conditional").await;
    if !b.capabilities().has(Capability::ConditionalWrite) {
        return;
    }
    let v1 = put(&b, "id", vec![PutItem::new("k", "1").if_version(0)]).await[0];
    let err = b
        .put("id", vec![PutItem::new("k", "x").if_version(0)], None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::VersionMismatch { current, expected: 0, .. } if current == v1),
        "create-if-absent on an existing key: {err:?}"
    );
    let v2 = put(&b, "id", vec![PutItem::new("k", "2").if_version(v1)]).await[0];
    assert!(v2 > v1);
    // A stale version fails, and the other item of the same Put is not written.
    let err = b
        .put(
            "id",
            vec![
                PutItem::new("other", "o"),
                PutItem::new("k", "3").if_version(v1),
            ],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::VersionMismatch { current, expected, .. } if current == v2 && expected == v1),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("version {v2}")), "{err}");
    assert_eq!(keys_of(&b, "id", &Selection::All).await, vec![k("k")]);
    let items = get_all(&b, "id", &Selection::All).await;
    assert_eq!((items[0].value.clone(), items[0].version), (k("2"), v2));
    // Expecting a version of a key that does not exist fails with current 0.
    let err = b
        .put("id", vec![PutItem::new("nope", "n").if_version(5)], None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::VersionMismatch { current: 0, .. }),
        "{err:?}"
    );
}

/// A retried write with the same token is applied once.
pub async fn idempotency_tokens(h: &Harness) {
    let b = h.open("idempotency").await;
    if !b.capabilities().has(Capability::Idempotency) {
        return;
    }
    let items = vec![PutItem::new("k", "v1")];
    let key = IdempotencyKey::for_put("tok-1".into(), "id", &items);
    let first = b.put("id", items.clone(), Some(key.clone())).await.unwrap();
    assert!(!first.replayed);
    // Someone else writes in between; the retry must not clobber it.
    let v_other = put_one(&b, "id", b"k", b"other").await;
    let retry = b.put("id", items.clone(), Some(key.clone())).await.unwrap();
    assert!(retry.replayed, "the retry is reported as replayed");
    assert_eq!(
        retry.outcomes, first.outcomes,
        "the retry returns the same versions"
    );
    let now = get_all(&b, "id", &Selection::All).await;
    assert_eq!(
        (now[0].value.clone(), now[0].version),
        (k("other"), v_other)
    );
    // The same token on a different request is refused.
    let different = vec![PutItem::new("k", "v2")];
    let key2 = IdempotencyKey::for_put("tok-1".into(), "id", &different);
    let err = b.put("id", different, Some(key2)).await.unwrap_err();
    assert!(
        matches!(err, BackendError::IdempotencyConflict(_)),
        "{err:?}"
    );
    // Mutate honours tokens too.
    if b.capabilities().has(Capability::Transactions) {
        let muts = vec![Mutation::Put {
            id: "m".into(),
            item: PutItem::new("a", "1"),
        }];
        let key = IdempotencyKey::for_mutate("tok-2".into(), &muts);
        let first = b.mutate(muts.clone(), Some(key.clone())).await.unwrap();
        let again = b.mutate(muts, Some(key)).await.unwrap();
        assert!(again.replayed);
        assert_eq!(first.outcomes, again.outcomes);
        assert_eq!(get_all(&b, "m", &Selection::All).await.len(), 1);
    }
}

/// Mutate applies everything or nothing; backends without transactions
/// refuse it naming the capability.
pub async fn mutate_atomicity(h: &Harness) {
    let b = h.open("mutate").await;
    let muts = |v: &str| {
        vec![
            Mutation::Put {
                id: "a".into(),
                item: PutItem::new("k", v),
            },
            Mutation::Put {
                id: "b".into(),
                item: PutItem::new("k", v),
            },
        ]
    };
    if !b.capabilities().has(Capability::Transactions) {
        let err = b.mutate(muts("1"), None).await.unwrap_err();
        assert!(err.to_string().contains("transactions"), "{err}");
        return;
    }
    put_one(&b, "c", b"old", b"x").await;
    let out = b
        .mutate(
            [
                muts("1"),
                vec![Mutation::Delete {
                    id: "c".into(),
                    selection: Selection::All,
                }],
            ]
            .concat(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.outcomes.len(), 3);
    assert!(
        matches!(out.outcomes[2], MutationOutcome::Deleted(1)),
        "{out:?}"
    );
    let va = get_all(&b, "a", &Selection::All).await[0].version;
    // A failing condition in the last mutation leaves the first unapplied.
    let mut failing = muts("2");
    failing.push(Mutation::Put {
        id: "c".into(),
        item: PutItem::new("new", "n").if_version(999_999),
    });
    let err = b.mutate(failing, None).await.unwrap_err();
    assert!(
        matches!(err, BackendError::VersionMismatch { .. }),
        "{err:?}"
    );
    let a = get_all(&b, "a", &Selection::All).await;
    assert_eq!(
        (a[0].value.clone(), a[0].version),
        (k("1"), va),
        "nothing was applied"
    );
    assert!(get_all(&b, "c", &Selection::All).await.is_empty());
}

/// Many writers at once: every version is unique, each writer's versions
/// increase in its write order, and every write is readable.
pub async fn concurrent_writers(h: &Harness) {
    let b = h.open("concurrency").await;
    let writers = 8;
    let per_writer = 40;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..per_writer {
                let v = b
                    .put(
                        &format!("w{}", w % 3),
                        vec![PutItem::new(format!("{w}-{i:03}"), format!("{i}"))],
                        None,
                    )
                    .await
                    .expect("concurrent put");
                versions.push(v.versions()[0]);
            }
            versions
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        let versions = task.await.expect("writer task");
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "one writer's versions must increase: {versions:?}"
        );
        for v in versions {
            assert!(all.insert(v), "version {v} was assigned twice");
        }
    }
    assert_eq!(all.len(), writers * per_writer);
    let total: usize = collect_scan(&b, BIG_PAGE).await.concat().len();
    assert_eq!(total, writers * per_writer);
}

/// Unicode ids and keys, and arbitrary binary keys, round-trip and sort
/// bytewise.
pub async fn unicode_and_binary_keys(h: &Harness) {
    let b = h.open("unicode").await;
    let id = "пользователь-🔑";
    let keys: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x01, 0xff, 0x00],
        k("Zürich"),
        k("ключ"),
        k("🔑"),
        vec![0xff, 0xfe],
    ];
    put(
        &b,
        id,
        keys.iter()
            .map(|key| PutItem::new(key.clone(), key.clone()))
            .collect(),
    )
    .await;
    let items = get_all(&b, id, &Selection::All).await;
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        items.iter().map(|i| i.key.clone()).collect::<Vec<_>>(),
        sorted
    );
    assert!(items.iter().all(|i| i.key == i.value));
    let scanned = collect_scan(&b, 3).await.concat();
    assert!(scanned.iter().all(|e| e.id == id));
    assert_eq!(scanned.len(), keys.len());
    let prefixed = keys_of(&b, id, &Selection::Prefix(vec![0x00])).await;
    assert_eq!(prefixed, vec![vec![0x00], vec![0x00, 0x00]]);
}

/// Empty values and large values round-trip byte for byte.
pub async fn empty_and_large_values(h: &Harness) {
    let b = h.open("values").await;
    let large: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i % 251) as u8).collect();
    put(
        &b,
        "id",
        vec![
            PutItem::new("empty", Vec::new()),
            PutItem::new("large", large.clone()),
        ],
    )
    .await;
    let items = get_all(&b, "id", &Selection::All).await;
    assert_eq!(items[0].value, Vec::<u8>::new());
    assert_eq!(items[1].value.len(), large.len());
    assert!(items[1].value == large, "large value corrupted");
}

/// With snapshot reads, all pages of a scan see the data as of the first
/// page; without, later pages at least never repeat or reorder items.
pub async fn snapshot_scan(h: &Harness) {
    let b = h.open("snapshot").await;
    for id in ["a", "b", "c", "d"] {
        put(&b, id, vec![PutItem::new("k", format!("{id}-old"))]).await;
    }
    let first = b.scan(PageRequest::first(1)).await.unwrap();
    assert_eq!(first.items.len(), 1);
    // Writes after the first page: an overwrite, a new id, a delete.
    put_one(&b, "c", b"k", b"c-new").await;
    put_one(&b, "bb", b"k", b"bb-new").await;
    b.delete("d", &Selection::All).await.unwrap();
    let mut rest = Vec::new();
    let mut request = PageRequest {
        budget_bytes: 1,
        cursor: first.next.clone(),
    };
    while request.cursor.is_some() {
        let page = b.scan(request.clone()).await.unwrap();
        rest.extend(page.items);
        request.cursor = page.next;
    }
    let seen: Vec<(String, Vec<u8>)> = first
        .items
        .into_iter()
        .chain(rest)
        .map(|e| (e.id, e.item.value))
        .collect();
    let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "pages repeat or reorder ids");
    if b.capabilities().has(Capability::SnapshotReads) {
        let want = vec![
            ("a".to_string(), k("a-old")),
            ("b".to_string(), k("b-old")),
            ("c".to_string(), k("c-old")),
            ("d".to_string(), k("d-old")),
        ];
        assert_eq!(
            seen, want,
            "a multi-page scan must see its first page's snapshot"
        );
    }
}

/// Versions keep growing across deletes and re-creates of a key.
pub async fn versions_survive_deletes(h: &Harness) {
    let b = h.open("versions").await;
    let v1 = put_one(&b, "id", b"k", b"1").await;
    b.delete("id", &Selection::All).await.unwrap();
    let v2 = put_one(&b, "id", b"k", b"2").await;
    assert!(
        v2 > v1,
        "a re-created key gets a larger version: {v1} then {v2}"
    );
    let v3 = put_one(&b, "other", b"k", b"3").await;
    assert!(v3 > v2, "versions are global to the namespace");
}
