//! Dual-write and repair on real backends (memstore as the source, SQLite
//! as the target). A failing shadow is a real SQLite backend behind a
//! switch that refuses writes while it is on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pattern_core::{
    BackendError, Capabilities, Factory, IdempotencyKey, Item, KeyValueBackend, Mutation,
    OpenContext, Page, PageRequest, PutItem, ScanEntry, Selection, SystemClock, WriteOutcome,
};

use super::*;
use crate::config::{MigrationPhase, NamespaceConfig};
use crate::registry::Namespace;
use crate::resolver::Resolver;

/// A real backend whose writes fail while `down` is set (reads still work,
/// so a repair can read what is there).
struct Switchable {
    inner: Arc<dyn KeyValueBackend>,
    down: AtomicBool,
}

impl Switchable {
    fn check(&self) -> Result<(), BackendError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable("switched off by the test".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl pattern_core::Backend for Switchable {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.inner.health().await
    }
}

#[async_trait]
impl KeyValueBackend for Switchable {
    async fn put(
        &self,
        id: &str,
        items: Vec<PutItem>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        self.check()?;
        self.inner.put(id, items, idempotency).await
    }
    async fn get(
        &self,
        id: &str,
        selection: &Selection,
        page: PageRequest,
    ) -> Result<Page<Item>, BackendError> {
        self.inner.get(id, selection, page).await
    }
    async fn delete(&self, id: &str, selection: &Selection) -> Result<u64, BackendError> {
        self.check()?;
        self.inner.delete(id, selection).await
    }
    async fn scan(&self, page: PageRequest) -> Result<Page<ScanEntry>, BackendError> {
        self.inner.scan(page).await
    }
    async fn mutate(
        &self,
        mutations: Vec<Mutation>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        self.check()?;
        self.inner.mutate(mutations, idempotency).await
    }
}

async fn open(kind: &str, namespace: &str, dir: &std::path::Path) -> Arc<dyn KeyValueBackend> {
    let ctx = OpenContext::new(namespace, dir, Arc::new(SystemClock));
    match kind {
        "memstore" => pattern_memstore::MemstoreFactory
            .open(ctx.clone())
            .await
            .unwrap(),
        _ => pattern_sqlite::SqliteFactory
            .open(ctx.clone())
            .await
            .unwrap(),
    }
}

/// Every item of the given ids, by id then key, values only.
async fn contents(
    b: &dyn KeyValueBackend,
    ids: &[&str],
) -> BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = BTreeMap::new();
    for id in ids {
        let items = items_of(b, id, &Selection::All).await.unwrap();
        out.insert(
            id.to_string(),
            items.into_values().map(|i| (i.key, i.value)).collect(),
        );
    }
    out
}

struct Setup {
    _dir: tempfile::TempDir,
    source: Arc<dyn KeyValueBackend>,
    target: Arc<Switchable>,
    shared: Arc<MigrationShared>,
    kv: ShadowedKv,
}

async fn pair(namespace: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let source = open("memstore", namespace, dir.path()).await;
    let target = Arc::new(Switchable {
        inner: open("sqlite", namespace, dir.path()).await,
        down: AtomicBool::new(false),
    });
    let target_dyn: Arc<dyn KeyValueBackend> = target.clone();
    let roles = Pair::for_phase(MigrationPhase::DualWrite, &source, &target_dyn);
    let shared = MigrationShared::start(namespace, dir.path(), roles.clone()).unwrap();
    Setup {
        _dir: dir,
        source,
        target,
        kv: ShadowedKv::new(roles, shared.clone()),
        shared,
    }
}

/// Waits (polling) until `cond` holds, up to 30 s.
pub(super) async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 30 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_write_reaches_both_and_the_answer_is_the_primarys() {
    let p = pair("dual").await;
    let first =
        p.kv.put(
            "u1",
            vec![PutItem::new("a", "1"), PutItem::new("b", "2")],
            None,
        )
        .await
        .unwrap();
    // A condition is the primary's: its version, not the shadow's.
    let v = first.versions()[0];
    p.kv.put("u1", vec![PutItem::new("a", "1b").if_version(v)], None)
        .await
        .unwrap();
    let stale =
        p.kv.put("u1", vec![PutItem::new("a", "stale").if_version(v)], None)
            .await
            .unwrap_err();
    assert!(
        matches!(stale, BackendError::VersionMismatch { .. }),
        "{stale}"
    );
    p.kv.delete("u1", &Selection::Keys(vec![b"b".to_vec()]))
        .await
        .unwrap();
    p.kv.mutate(
        vec![
            Mutation::Put {
                id: "u2".into(),
                item: PutItem::new("x", "9"),
            },
            Mutation::Put {
                id: "u3".into(),
                item: PutItem::new("y", "8"),
            },
        ],
        None,
    )
    .await
    .unwrap();
    let ids = ["u1", "u2", "u3"];
    let want = contents(p.source.as_ref(), &ids).await;
    assert_eq!(want["u1"], vec![(b"a".to_vec(), b"1b".to_vec())]);
    assert_eq!(contents(p.target.as_ref(), &ids).await, want);
    assert_eq!(p.shared.counters.shadow_failures.get(), 0);
    assert_eq!(p.shared.counters.shadow_writes.get(), 4);
}

#[tokio::test]
async fn a_failing_shadow_never_fails_the_call_and_converges_from_the_queue() {
    let p = pair("flaky").await;
    p.kv.put("u1", vec![PutItem::new("a", "1")], None)
        .await
        .unwrap();
    p.target.down.store(true, Ordering::SeqCst);
    // Writes while the shadow is down: all succeed for the client.
    p.kv.put(
        "u1",
        vec![PutItem::new("a", "2"), PutItem::new("c", "3")],
        None,
    )
    .await
    .unwrap();
    p.kv.put("u2", vec![PutItem::new("k", "v")], None)
        .await
        .unwrap();
    p.kv.delete("u1", &Selection::Keys(vec![b"c".to_vec()]))
        .await
        .unwrap();
    assert_eq!(p.shared.counters.shadow_failures.get(), 3);
    assert_eq!(
        p.shared.queued().await.unwrap(),
        2,
        "u1 and u2 are queued once each"
    );
    // The shadow comes back: the repair task makes it equal.
    p.target.down.store(false, Ordering::SeqCst);
    let ids = ["u1", "u2"];
    let want = contents(p.source.as_ref(), &ids).await;
    eventually(
        "the queue drains and the shadow equals the primary",
        || async {
            p.shared.queued().await.unwrap() == 0 && contents(p.target.as_ref(), &ids).await == want
        },
    )
    .await;
    assert!(p.shared.counters.repaired.get() >= 2);
}

#[tokio::test]
async fn the_queue_outlives_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = RepairQueue::open(dir.path()).unwrap();
        q.push("ns", vec!["a".into(), "b".into(), "a".into()])
            .await
            .unwrap();
    }
    let q = RepairQueue::open(dir.path()).unwrap();
    let pending: Vec<String> = q
        .pending_attempts("ns", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(pending, ["a", "b"]);
    q.done("ns", "a").await.unwrap();
    assert_eq!(q.len("ns").await.unwrap(), 1);
    assert_eq!(q.len("other").await.unwrap(), 0);
}

#[tokio::test]
async fn repair_deletes_extra_items_and_copies_ttls() {
    let dir = tempfile::tempdir().unwrap();
    let primary = open("memstore", "r", dir.path()).await;
    let shadow = open("sqlite", "r", dir.path()).await;
    primary
        .put(
            "u",
            vec![
                PutItem::new("keep", "1"),
                PutItem::new("ttl", "2").with_ttl(Duration::from_secs(600)),
            ],
            None,
        )
        .await
        .unwrap();
    shadow
        .put(
            "u",
            vec![PutItem::new("keep", "old"), PutItem::new("extra", "x")],
            None,
        )
        .await
        .unwrap();
    let done = repair(primary.as_ref(), shadow.as_ref(), "u", now_ms())
        .await
        .unwrap();
    assert_eq!((done.written, done.deleted), (2, 1));
    let got = items_of(shadow.as_ref(), "u", &Selection::All)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[b"keep".as_slice()].value, b"1");
    assert!(
        got[b"ttl".as_slice()].expires_at_ms.is_some(),
        "the TTL is copied"
    );
    // A second repair finds nothing to do.
    let again = repair(primary.as_ref(), shadow.as_ref(), "u", now_ms())
        .await
        .unwrap();
    assert_eq!(again, Repaired::default());
}

fn config(yaml: &str) -> Result<NamespaceConfig, String> {
    NamespaceConfig::parse("orders.yaml", yaml).map_err(|e| e.to_string())
}

#[test]
fn the_migration_section_is_checked() {
    let base = "name: orders\ndal: keyvalue\nbackend:\n  kind: memstore\n";
    let ok = config(&format!("{base}migration:\n  to:\n    kind: sqlite\n")).unwrap();
    let m = ok.migration.unwrap();
    assert_eq!(m.phase, MigrationPhase::DualWrite);
    assert_eq!(m.read_sample, crate::config::DEFAULT_READ_SAMPLE);
    for (section, wanted) in [
        ("  to:\n    kind: memstore\n", "same kind"),
        ("  to:\n    kind: sqlite\n  read_sample: 2\n", "from 0 to 1"),
        ("  to:\n    kind: sqlite\n  phase: done\n", "phase"),
        (
            "  to:\n    kind: sqlite\n  backfill_rate: 0\n",
            "at least 1",
        ),
        (
            "  to:\n    kind: sqlite\n    mode: remote\n",
            "field `migration.to.pattern.address`: is required",
        ),
        (
            "  to:\n    kind: sqlite\n    pattern: {binary: /x}\n",
            "field `migration.to.pattern`",
        ),
    ] {
        let e = config(&format!("{base}migration:\n{section}")).unwrap_err();
        assert!(e.contains(wanted), "{section}: {e}");
    }
    // The target may run as a pattern process (KeyValue).
    let process = config(&format!(
        "{base}migration:\n  to:\n    kind: sqlite\n    mode: process\n"
    ))
    .unwrap();
    assert_eq!(process.migration.unwrap().to.mode.name(), "process");
    // So may a TimeSeries target.
    let ts_process = config(
        "name: orders\ndal: timeseries\nbackend:\n  kind: memstore\nmigration:\n  to:\n    kind: sqlite\n    mode: process\n",
    )
    .unwrap();
    assert_eq!(ts_process.migration.unwrap().to.mode.name(), "process");
    let ts = config(
        "name: orders\ndal: timeseries\nbackend:\n  kind: memstore\nmigration:\n  to:\n    kind: sqlite\n",
    )
    .unwrap();
    assert_eq!(ts.migration.unwrap().to.kind, "sqlite");
    let pubsub = config(
        "name: orders\ndal: pubsub\nbackend:\n  kind: memstore\nmigration:\n  to:\n    kind: nats\n",
    )
    .unwrap_err();
    assert!(pubsub.contains("serves PubSub"), "{pubsub}");
}

/// The phases as namespace versions: each version shares the open
/// backends, promotion swaps the roles, finalize keeps the target's open
/// backend (a memstore target keeps its data) and releases the source.
#[tokio::test]
async fn phases_share_backends_and_finalize_keeps_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let resolver = Resolver::builtin();
    let clock: Arc<dyn pattern_core::Clock> = Arc::new(SystemClock);
    let yaml =
        |tail: &str| format!("name: orders\ndal: keyvalue\nbackend:\n  kind: sqlite\n{tail}");
    let open_version = |tail: String, version: u64, prev: Option<Arc<Namespace>>| {
        let resolver = &resolver;
        let clock = clock.clone();
        let dir = dir.path().to_path_buf();
        async move {
            let ns = Namespace::open(
                config(&tail).unwrap(),
                version,
                prev.as_deref(),
                resolver,
                &dir,
                clock,
            )
            .await
            .unwrap();
            // Serving it, as the manager does.
            ns.activate();
            Arc::new(ns)
        }
    };
    let v1 = open_version(yaml(""), 1, None).await;
    v1.kv()
        .unwrap()
        .put("u", vec![PutItem::new("before", "1")], None)
        .await
        .unwrap();
    let v2 = open_version(
        yaml("migration:\n  to:\n    kind: memstore\n"),
        2,
        Some(v1.clone()),
    )
    .await;
    assert!(v2.migration.is_some());
    assert!(v1.released_by(Some(&v2)).is_empty(), "the source is shared");
    v2.kv()
        .unwrap()
        .put("u", vec![PutItem::new("during", "2")], None)
        .await
        .unwrap();
    let v3 = open_version(
        yaml("migration:\n  to:\n    kind: memstore\n  phase: promoted\n"),
        3,
        Some(v2.clone()),
    )
    .await;
    assert!(
        v2.released_by(Some(&v3)).is_empty(),
        "both backends are shared"
    );
    // Promoted: reads come from the target, which has "during" only (no
    // backfill in this test).
    let read = v3
        .kv()
        .unwrap()
        .get("u", &Selection::All, PageRequest::first(1 << 20))
        .await
        .unwrap();
    let keys: Vec<_> = read.items.iter().map(|i| i.key.clone()).collect();
    assert_eq!(keys, [b"during".to_vec()]);
    let v4 = open_version(
        "name: orders\ndal: keyvalue\nbackend:\n  kind: memstore\n".to_string(),
        4,
        Some(v3.clone()),
    )
    .await;
    assert!(v4.migration.is_none());
    let released = v3.released_by(Some(&v4));
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].kind(), "sqlite", "finalize releases the source");
    let kept = items_of(v4.kv().unwrap().as_ref(), "u", &Selection::All)
        .await
        .unwrap();
    assert!(
        kept.contains_key(b"during".as_slice()),
        "the memstore target kept its data"
    );
}

/// Every item of a backend, by (id, key), values only.
async fn everything(b: &dyn KeyValueBackend) -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut page = PageRequest::first(1 << 20);
    loop {
        let got = b.scan(page).await.unwrap();
        for e in got.items {
            out.insert((e.id, e.item.key), e.item.value);
        }
        match got.next {
            Some(c) => {
                page = PageRequest {
                    budget_bytes: 1 << 20,
                    cursor: Some(c),
                }
            }
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_copies_everything_while_writes_race_it() {
    let p = pair("backfill").await;
    for i in 0..400 {
        p.source
            .put(
                &format!("id{i:04}"),
                vec![PutItem::new("a", format!("old{i}")), PutItem::new("b", "x")],
                None,
            )
            .await
            .unwrap();
    }
    p.shared.set_phase(MigrationPhase::Backfill, None);
    // Writers race the copy through the shadowed backend: overwrites,
    // deletes and new ids.
    let kv = Arc::new(p.kv);
    let mut writers = Vec::new();
    for w in 0..4 {
        let kv = kv.clone();
        writers.push(tokio::spawn(async move {
            for i in (w..400).step_by(4) {
                let id = format!("id{i:04}");
                kv.put(&id, vec![PutItem::new("a", format!("new{i}"))], None)
                    .await
                    .unwrap();
                if i % 10 == 0 {
                    kv.delete(&id, &Selection::Keys(vec![b"b".to_vec()]))
                        .await
                        .unwrap();
                }
                kv.put(&format!("fresh{i}"), vec![PutItem::new("k", "v")], None)
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let shared = p.shared.clone();
    eventually("the backfill finishes", || async {
        shared
            .progress()
            .await
            .unwrap()
            .is_some_and(|cp| cp.finished_ms.is_some())
    })
    .await;
    let cp = shared.progress().await.unwrap().unwrap();
    // Counted when the backfill began: the 800 written before, and any of
    // the 400 new items the racing writers had added by then.
    let total = cp.total.expect("the total is counted");
    assert!((800..=1200).contains(&total), "{cp:?}");
    // Scanned as the copy went: the racing writers delete up to 40 items
    // and add up to 400.
    assert!((760..=1200).contains(&cp.items), "{cp:?}");
    let want = everything(p.source.as_ref()).await;
    assert_eq!(want.len(), 400 + 360 + 400);
    assert_eq!(
        everything(p.target.as_ref()).await,
        want,
        "the shadow equals the primary"
    );
    assert_eq!(shared.counters.shadow_failures.get(), 0);
}

#[tokio::test]
async fn backfill_resumes_from_its_checkpoint() {
    let p = pair("resume").await;
    for i in 0..10 {
        p.source
            .put(&format!("id{i}"), vec![PutItem::new("k", "v")], None)
            .await
            .unwrap();
    }
    // A checkpoint as a killed proxy left it: ids up to id4 copied.
    p.shared
        .queue
        .save_checkpoint(
            "resume",
            &Checkpoint {
                last_id: Some("id4".into()),
                cursor: Some(pattern_core::Cursor {
                    after_id: "id4".into(),
                    after_key: b"k".to_vec(),
                    snapshot: 0,
                }),
                items: 5,
                bytes: 15,
                total: Some(10),
                started_ms: 1,
                finished_ms: None,
                up_to: None,
                migration: None,
            },
        )
        .await
        .unwrap();
    p.shared.set_phase(MigrationPhase::Backfill, None);
    let shared = p.shared.clone();
    eventually("the backfill finishes", || async {
        shared
            .progress()
            .await
            .unwrap()
            .is_some_and(|cp| cp.finished_ms.is_some())
    })
    .await;
    let cp = shared.progress().await.unwrap().unwrap();
    assert_eq!((cp.items, cp.total), (10, Some(10)));
    let copied: Vec<String> = everything(p.target.as_ref())
        .await
        .into_keys()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        copied,
        ["id5", "id6", "id7", "id8", "id9"],
        "only what the checkpoint had not done"
    );
}

#[tokio::test]
async fn shadow_read_finds_a_difference_and_records_it_hashed() {
    let p = pair("compare").await;
    let kv = ShadowedKv::new(p.shared.kv_roles().unwrap(), p.shared.clone()).comparing(1.0);
    kv.put(
        "user-42",
        vec![PutItem::new("email", "a@example.com")],
        None,
    )
    .await
    .unwrap();
    kv.get("user-42", &Selection::All, PageRequest::first(1 << 20))
        .await
        .unwrap();
    let shared = p.shared.clone();
    eventually("the equal read is compared", || async {
        shared.counters.compared.get() == 1
    })
    .await;
    assert_eq!(shared.counters.mismatches.get(), 0);
    // A difference written straight into the shadow.
    p.target
        .put(
            "user-42",
            vec![PutItem::new("email", "b@example.com")],
            None,
        )
        .await
        .unwrap();
    kv.get("user-42", &Selection::All, PageRequest::first(1 << 20))
        .await
        .unwrap();
    eventually("the mismatch is counted", || async {
        shared.counters.mismatches.get() == 1
    })
    .await;
    let samples = shared.mismatch_samples();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].kind, "values differ");
    assert!(samples[0].id.starts_with("hmac:") && !samples[0].id.contains("user-42"));
    assert!(!samples[0].key.contains("email"));
}

/// A sampled Scan page has its ids compared: an id only the shadow lacks
/// is found through a Scan, with no Get.
#[tokio::test]
async fn shadow_read_compares_the_ids_of_a_scan_page() {
    let p = pair("compare-scan").await;
    let kv = ShadowedKv::new(p.shared.kv_roles().unwrap(), p.shared.clone()).comparing(1.0);
    kv.put("a", vec![PutItem::new("k", "1")], None)
        .await
        .unwrap();
    // Written to the primary only: missing in the shadow.
    p.source
        .put("b", vec![PutItem::new("k", "2")], None)
        .await
        .unwrap();
    let page = kv.scan(PageRequest::first(1 << 20)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let shared = p.shared.clone();
    eventually("both ids of the page are compared", || async {
        shared.counters.compared.get() == 2
    })
    .await;
    assert_eq!(shared.counters.mismatches.get(), 1);
    assert_eq!(shared.mismatch_samples()[0].kind, "missing in shadow");
}

/// A backend of `kind` for namespace `namespace`, on the test services.
async fn open_any(kind: &str, namespace: &str, dir: &std::path::Path) -> Arc<dyn KeyValueBackend> {
    let options = match kind {
        "postgres" => serde_json::json!({
            "url": std::env::var("PRISM_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            "schema": "prism_migration_pairs",
        }),
        "redis" => serde_json::json!({
            "url": std::env::var("PRISM_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            "key_prefix": "prism-migration-pairs",
        }),
        _ => serde_json::json!({}),
    };
    let ctx = OpenContext::new(namespace, dir, Arc::new(SystemClock));
    Resolver::builtin()
        .open(crate::dal::KEYVALUE, kind, ctx.with_options(options))
        .await
        .unwrap_or_else(|e| panic!("opening {kind}: {e}"))
}

/// Every ordered pair of KeyValue backends: dual-write, backfill, then
/// promoted (writes to the target first), and both hold the same data at
/// every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_keyvalue_backend_pair_migrates() {
    const KINDS: [&str; 4] = ["memstore", "sqlite", "postgres", "redis"];
    let run = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    for from in KINDS {
        for to in KINDS.iter().copied().filter(|k| *k != from) {
            let dir = tempfile::tempdir().unwrap();
            let ns = format!("pair-{from}-{to}-{run}");
            let source = open_any(from, &ns, dir.path()).await;
            let target = open_any(to, &ns, dir.path()).await;
            for i in 0..30 {
                source
                    .put(
                        &format!("old{i:02}"),
                        vec![PutItem::new("k", format!("{i}"))],
                        None,
                    )
                    .await
                    .unwrap();
            }
            let roles = Pair::for_phase(MigrationPhase::DualWrite, &source, &target);
            let shared = MigrationShared::start(&ns, dir.path(), roles.clone()).unwrap();
            let kv = ShadowedKv::new(roles, shared.clone());
            kv.put(
                "live",
                vec![PutItem::new("a", "1"), PutItem::new("b", "2")],
                None,
            )
            .await
            .unwrap();
            kv.delete("old00", &Selection::All).await.unwrap();
            shared.set_phase(MigrationPhase::Backfill, None);
            eventually(
                &format!("{from} -> {to}: the backfill finishes"),
                || async {
                    shared
                        .progress()
                        .await
                        .unwrap()
                        .is_some_and(|cp| cp.finished_ms.is_some())
                },
            )
            .await;
            assert_eq!(
                everything(target.as_ref()).await,
                everything(source.as_ref()).await,
                "{from} -> {to} after the backfill"
            );
            // Promoted: the target answers, the source still follows.
            let promoted = Pair::for_phase(MigrationPhase::Promoted, &source, &target);
            shared.set_roles(promoted.clone());
            shared.set_phase(MigrationPhase::Promoted, None);
            let kv = ShadowedKv::new(promoted, shared.clone());
            kv.put("after", vec![PutItem::new("c", "3")], None)
                .await
                .unwrap();
            kv.delete("live", &Selection::Keys(vec![b"a".to_vec()]))
                .await
                .unwrap();
            let on_target = everything(target.as_ref()).await;
            assert_eq!(on_target.len(), 29 + 2, "{from} -> {to}: {on_target:?}");
            assert_eq!(
                on_target,
                everything(source.as_ref()).await,
                "{from} -> {to} promoted"
            );
            assert_eq!(shared.counters.shadow_failures.get(), 0, "{from} -> {to}");
            source.close().await.unwrap();
            target.close().await.unwrap();
        }
    }
}

/// Writes through another proxy of a fleet do not take this proxy's id
/// locks: they dual-write (primary, then shadow) while this proxy's
/// backfill copies the same ids. The copy re-reads the primary after each
/// copy, so no older value stays on the shadow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_is_safe_against_writes_through_another_proxy() {
    let p = pair("fleet-race").await;
    for i in 0..300 {
        p.source
            .put(&format!("id{i:03}"), vec![PutItem::new("k", "v0")], None)
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let other_proxy = {
        let (source, target, stop) = (p.source.clone(), p.target.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let id = format!("id{:03}", n % 300);
                let item = || vec![PutItem::new("k", format!("v{n}"))];
                if n.is_multiple_of(7) {
                    source.delete(&id, &Selection::All).await.unwrap();
                    target.delete(&id, &Selection::All).await.unwrap();
                } else {
                    source.put(&id, item(), None).await.unwrap();
                    target.put(&id, item(), None).await.unwrap();
                }
            }
        })
    };
    p.shared.set_phase(MigrationPhase::Backfill, None);
    let shared = p.shared.clone();
    eventually("the backfill finishes", || async {
        shared
            .progress()
            .await
            .unwrap()
            .is_some_and(|cp| cp.finished_ms.is_some())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    other_proxy.await.unwrap();
    assert_eq!(
        everything(p.target.as_ref()).await,
        everything(p.source.as_ref()).await
    );
}
