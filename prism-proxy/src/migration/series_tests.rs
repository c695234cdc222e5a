//! TimeSeries migrations on real backends: every pair of memstore, SQLite
//! and PostgreSQL through dual-write, backfill and promotion; a failing
//! shadow converging from the queue; a resumed backfill; shadow-read
//! finding a difference; the phases as namespace versions with a log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use pattern_core::timeseries::{
    Event, EventKey, EventPage, ReadQuery, StoredEvent, TailQuery, TimeSeriesBackend, WriteSummary,
};
use pattern_core::{BackendError, Capabilities, SystemClock};
use tokio::sync::watch;

use super::tests::eventually;
use super::*;
use crate::config::{MigrationPhase, NamespaceConfig};
use crate::registry::Namespace;
use crate::resolver::Resolver;

fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        now_ms(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TimeSeries backend of `kind` for `namespace`, on the test services.
async fn open_ts(kind: &str, namespace: &str, dir: &std::path::Path) -> Arc<dyn TimeSeriesBackend> {
    let options = match kind {
        "postgres" => serde_json::json!({
            "url": std::env::var("PRISM_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            "schema": "prism_migration_ts",
        }),
        _ => serde_json::json!({}),
    };
    let ctx =
        pattern_core::OpenContext::new(namespace, dir, Arc::new(SystemClock)).with_options(options);
    Resolver::builtin()
        .open(crate::dal::TIMESERIES, kind, ctx)
        .await
        .unwrap_or_else(|e| panic!("opening {kind}: {e}"))
}

fn event(series: &str, time_us: i64, id: &str) -> Event {
    Event {
        series_id: series.into(),
        time_us,
        event_id: id.into(),
        tags: BTreeMap::from([("host".to_string(), format!("h{}", time_us % 3))]),
        payload: format!("{series}/{time_us}/{id}").into_bytes(),
    }
}

/// Every event of a backend, by identity (sequences are each backend's).
async fn all_events(b: &dyn TimeSeriesBackend) -> BTreeMap<EventKey, Event> {
    let mut out = BTreeMap::new();
    let mut after: Option<EventKey> = None;
    loop {
        let page = b.scan(after.as_ref(), u64::MAX, 100).await.unwrap();
        let Some(last) = page.last() else { return out };
        after = Some(last.event.key());
        for s in page {
            out.insert(s.event.key(), s.event);
        }
    }
}

async fn backfill_finished(shared: &MigrationShared) -> bool {
    shared
        .progress()
        .await
        .unwrap()
        .is_some_and(|cp| cp.finished_ms.is_some())
}

/// Every ordered pair of TimeSeries backends: events written before the
/// migration reach the target by backfill, events written during it by
/// dual-write; after promotion the target answers and the source follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_timeseries_backend_pair_migrates() {
    const KINDS: [&str; 3] = ["memstore", "sqlite", "postgres"];
    for from in KINDS {
        for to in KINDS.iter().copied().filter(|k| *k != from) {
            let dir = tempfile::tempdir().unwrap();
            let ns = unique(&format!("ts{}{}", &from[..2], &to[..2]));
            let source = open_ts(from, &ns, dir.path()).await;
            let target = open_ts(to, &ns, dir.path()).await;
            // 3 series, 40 events each, some sharing a time.
            for s in ["cpu", "mem", "disk"] {
                let events = (0..40).map(|i| event(s, 1_000 + i / 2, &format!("e{i}")));
                source.write(events.collect()).await.unwrap();
            }
            let roles = Pair::for_phase(MigrationPhase::DualWrite, &source, &target);
            let shared = MigrationShared::start(&ns, dir.path(), roles.clone()).unwrap();
            let ts = ShadowedTs::new(roles, shared.clone());
            let live = ts
                .write(vec![event("cpu", 5_000, "live"), event("net", 1, "n1")])
                .await
                .unwrap();
            assert_eq!(live.written, 2, "{from} -> {to}: the primary's summary");
            assert_eq!(
                all_events(target.as_ref()).await.len(),
                2,
                "{from} -> {to}: dual-write reached the target before any backfill"
            );
            shared.set_phase(MigrationPhase::Backfill, Some(10_000));
            eventually(&format!("{from} -> {to}: the backfill finishes"), || {
                backfill_finished(&shared)
            })
            .await;
            let cp = shared.progress().await.unwrap().unwrap();
            assert_eq!(
                cp.total,
                Some(122),
                "{from} -> {to}: counted up to its start"
            );
            assert_eq!(cp.items, 122, "{from} -> {to}");
            assert!(cp.bytes > 0);
            let want = all_events(source.as_ref()).await;
            assert_eq!(want.len(), 122);
            assert_eq!(
                all_events(target.as_ref()).await,
                want,
                "{from} -> {to} after the backfill"
            );
            // Promoted: the target answers, the source still follows.
            let promoted = Pair::for_phase(MigrationPhase::Promoted, &source, &target);
            shared.set_roles(promoted.clone());
            shared.set_phase(MigrationPhase::Promoted, None);
            let ts = ShadowedTs::new(promoted, shared.clone());
            ts.write(vec![event("cpu", 6_000, "after")]).await.unwrap();
            let read = ts
                .read(&ReadQuery {
                    series_id: "cpu".into(),
                    start_us: Some(5_000),
                    budget_bytes: 1 << 20,
                    ..ReadQuery::default()
                })
                .await
                .unwrap();
            let ids: Vec<_> = read
                .events
                .iter()
                .map(|e| e.event.event_id.as_str())
                .collect();
            assert_eq!(ids, ["live", "after"], "{from} -> {to}");
            assert_eq!(
                all_events(target.as_ref()).await,
                all_events(source.as_ref()).await,
                "{from} -> {to} promoted"
            );
            assert_eq!(shared.counters.shadow_failures.get(), 0, "{from} -> {to}");
            shared.stop();
            source.close().await.unwrap();
            target.close().await.unwrap();
        }
    }
}

/// A real backend whose writes fail while `down` is set.
struct Switchable {
    inner: Arc<dyn TimeSeriesBackend>,
    down: AtomicBool,
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
impl TimeSeriesBackend for Switchable {
    async fn write(&self, events: Vec<Event>) -> Result<WriteSummary, BackendError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable("switched off by the test".into()));
        }
        self.inner.write(events).await
    }
    async fn read(&self, query: &ReadQuery) -> Result<EventPage, BackendError> {
        self.inner.read(query).await
    }
    async fn read_since(
        &self,
        query: &TailQuery,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        self.inner.read_since(query, after, limit).await
    }
    fn watch_sequence(&self) -> watch::Receiver<u64> {
        self.inner.watch_sequence()
    }
    async fn drop_before(&self, cutoff_us: i64) -> Result<u64, BackendError> {
        self.inner.drop_before(cutoff_us).await
    }
    async fn scan(
        &self,
        after: Option<&EventKey>,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        self.inner.scan(after, up_to, limit).await
    }
}

#[tokio::test]
async fn a_failing_shadow_never_fails_the_write_and_converges_from_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let ns = unique("ts-failing");
    let source = open_ts("memstore", &ns, dir.path()).await;
    let target = Arc::new(Switchable {
        inner: open_ts("sqlite", &ns, dir.path()).await,
        down: AtomicBool::new(true),
    });
    let target_dyn: Arc<dyn TimeSeriesBackend> = target.clone();
    let roles = Pair::for_phase(MigrationPhase::DualWrite, &source, &target_dyn);
    let shared = MigrationShared::start(&ns, dir.path(), roles.clone()).unwrap();
    let ts = ShadowedTs::new(roles, shared.clone());
    let summary = ts
        .write(vec![
            event("cpu", 1, "a"),
            event("cpu", 2, "b"),
            event("mem", 1, "c"),
        ])
        .await
        .unwrap();
    assert_eq!(summary.written, 3, "the call succeeds on the primary");
    // A retry is the primary's duplicate: queued (once) for the repair to
    // copy, not a shadow failure.
    let again = ts.write(vec![event("cpu", 1, "a")]).await.unwrap();
    assert_eq!(again.duplicates, 1);
    assert_eq!(shared.counters.shadow_failures.get(), 1);
    assert_eq!(shared.queued().await.unwrap(), 3, "one entry per event");
    assert!(all_events(target.as_ref()).await.is_empty());
    target.down.store(false, Ordering::SeqCst);
    eventually("the queue drains", || async {
        shared.queued().await.unwrap() == 0
    })
    .await;
    assert_eq!(
        all_events(target.as_ref()).await,
        all_events(source.as_ref()).await
    );
    assert_eq!(shared.counters.repaired.get(), 3);
    shared.stop();
}

/// An event the primary holds, written again with another payload: the
/// shadow gets the primary's copy, not the one sent (the backfill would
/// not mend it later: the shadow would count it a duplicate).
#[tokio::test]
async fn a_rewritten_event_reaches_the_shadow_as_the_primary_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let ns = unique("ts-rewrite");
    let source = open_ts("memstore", &ns, dir.path()).await;
    let target = open_ts("sqlite", &ns, dir.path()).await;
    let stored = event("cpu", 1, "a");
    source.write(vec![stored.clone()]).await.unwrap();
    let roles = Pair::for_phase(MigrationPhase::DualWrite, &source, &target);
    let shared = MigrationShared::start(&ns, dir.path(), roles.clone()).unwrap();
    let ts = ShadowedTs::new(roles, shared.clone());
    let mut rewritten = stored.clone();
    rewritten.payload = b"another payload".to_vec();
    let summary = ts
        .write(vec![rewritten, event("cpu", 2, "b")])
        .await
        .unwrap();
    assert_eq!((summary.written, summary.duplicates), (1, 1));
    eventually("the queue drains", || async {
        shared.queued().await.unwrap() == 0
    })
    .await;
    let on_target = all_events(target.as_ref()).await;
    assert_eq!(on_target.get(&stored.key()), Some(&stored));
    assert_eq!(on_target, all_events(source.as_ref()).await);
    shared.stop();
}

#[tokio::test]
async fn the_backfill_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ns = unique("ts-resume");
    let source = open_ts("sqlite", &ns, dir.path()).await;
    let target = open_ts("memstore", &ns, dir.path()).await;
    for s in 0..10 {
        let events = (0..60).map(|i| event(&format!("s{s}"), i, &format!("e{i}")));
        source.write(events.collect()).await.unwrap();
    }
    let roles = Pair::for_phase(MigrationPhase::DualWrite, &source, &target);
    let first = MigrationShared::start(&ns, dir.path(), roles.clone()).unwrap();
    first.set_phase(MigrationPhase::Backfill, Some(400));
    eventually("part of the backfill is saved", || async {
        first
            .queue
            .checkpoint(&ns)
            .await
            .unwrap()
            .is_some_and(|cp| cp.items >= 100)
    })
    .await;
    // The proxy goes away mid-backfill.
    first.stop();
    drop(first);
    let saved = super::queue_for(dir.path())
        .unwrap()
        .checkpoint(&ns)
        .await
        .unwrap()
        .unwrap();
    assert!(
        saved.finished_ms.is_none() && saved.items < 600,
        "{saved:?}"
    );
    assert_eq!(saved.total, Some(600));
    // Written after the backfill began: above `up_to`, dual-written only.
    let second = MigrationShared::start(&ns, dir.path(), roles.clone()).unwrap();
    ShadowedTs::new(roles, second.clone())
        .write(vec![event("late", 1, "x")])
        .await
        .unwrap();
    second.set_phase(MigrationPhase::Backfill, None);
    eventually("the resumed backfill finishes", || {
        backfill_finished(&second)
    })
    .await;
    let cp = second.progress().await.unwrap().unwrap();
    assert_eq!(cp.up_to, saved.up_to, "the resumed scan keeps its bound");
    assert_eq!(cp.items, 600, "each event counted once across the restart");
    assert_eq!(
        all_events(target.as_ref()).await,
        all_events(source.as_ref()).await
    );
    second.stop();
}

#[tokio::test]
async fn shadow_read_finds_a_difference_and_records_it_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let ns = unique("ts-compare");
    let source = open_ts("memstore", &ns, dir.path()).await;
    let target = open_ts("sqlite", &ns, dir.path()).await;
    let roles = Pair::for_phase(MigrationPhase::ShadowRead, &source, &target);
    let shared = MigrationShared::start(&ns, dir.path(), roles.clone()).unwrap();
    let ts = ShadowedTs::new(roles, shared.clone()).comparing(1.0);
    ts.write(vec![event("cpu", 1, "a"), event("cpu", 2, "b")])
        .await
        .unwrap();
    let query = ReadQuery {
        series_id: "cpu".into(),
        budget_bytes: 1 << 20,
        ..ReadQuery::default()
    };
    ts.read(&query).await.unwrap();
    eventually("an equal read is compared", || async {
        shared.counters.compared.get() == 1
    })
    .await;
    assert_eq!(shared.counters.mismatches.get(), 0);
    // An event only the shadow holds, and one whose payload differs.
    let mut changed = event("cpu", 3, "c");
    target.write(vec![changed.clone()]).await.unwrap();
    changed.payload = b"other".to_vec();
    source.write(vec![changed]).await.unwrap();
    target.write(vec![event("cpu", 4, "d")]).await.unwrap();
    ts.read(&query).await.unwrap();
    eventually("the difference is counted", || async {
        shared.counters.mismatches.get() == 1
    })
    .await;
    let samples = shared.mismatch_samples();
    let kinds: Vec<_> = samples.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["values differ", "only in shadow"]);
    for s in &samples {
        assert!(
            s.id.starts_with("hmac:") && s.key.starts_with("hmac:"),
            "{s:?}"
        );
        assert!(!s.id.contains("cpu"));
    }
    shared.stop();
}

fn config(yaml: &str) -> NamespaceConfig {
    NamespaceConfig::parse("metrics.yaml", yaml).unwrap()
}

/// The phases as namespace versions of a TimeSeries namespace: the
/// backends are shared across phases, promotion makes the target answer,
/// finalize keeps the target and releases the source.
#[tokio::test]
async fn timeseries_phases_share_backends_and_finalize_keeps_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let resolver = Resolver::builtin();
    let clock: Arc<dyn pattern_core::Clock> = Arc::new(SystemClock);
    let name = unique("ts-phases");
    let yaml = |kind: &str, tail: &str| {
        format!("name: {name}\ndal: timeseries\nbackend:\n  kind: {kind}\n{tail}")
    };
    let open_version = |yaml: String, version: u64, prev: Option<Arc<Namespace>>| {
        let resolver = &resolver;
        let clock = clock.clone();
        let dir = dir.path().to_path_buf();
        async move {
            let ns = Namespace::open(
                config(&yaml),
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
    let cpu = |start| ReadQuery {
        series_id: "cpu".into(),
        start_us: Some(start),
        budget_bytes: 1 << 20,
        ..ReadQuery::default()
    };
    let ids = |page: EventPage| -> Vec<String> {
        page.events.into_iter().map(|e| e.event.event_id).collect()
    };
    let v1 = open_version(yaml("sqlite", ""), 1, None).await;
    v1.timeseries()
        .unwrap()
        .write(vec![event("cpu", 1, "before")])
        .await
        .unwrap();
    let migrating = "migration:\n  to:\n    kind: memstore\n";
    let v2 = open_version(yaml("sqlite", migrating), 2, Some(v1.clone())).await;
    assert!(v2.migration.is_some());
    assert!(v1.released_by(Some(&v2)).is_empty(), "the source is shared");
    v2.timeseries()
        .unwrap()
        .write(vec![event("cpu", 2, "during")])
        .await
        .unwrap();
    let v3 = open_version(
        yaml("sqlite", &format!("{migrating}  phase: backfill\n")),
        3,
        Some(v2.clone()),
    )
    .await;
    let shared = v3.migration.as_ref().unwrap().shared.clone();
    eventually("the backfill finishes", || backfill_finished(&shared)).await;
    let v4 = open_version(
        yaml("sqlite", &format!("{migrating}  phase: promoted\n")),
        4,
        Some(v3.clone()),
    )
    .await;
    assert!(v3.released_by(Some(&v4)).is_empty(), "both are shared");
    let read = v4.timeseries().unwrap().read(&cpu(0)).await.unwrap();
    assert_eq!(ids(read), ["before", "during"], "the target answers");
    let v5 = open_version(yaml("memstore", ""), 5, Some(v4.clone())).await;
    assert!(v5.migration.is_none());
    let released = v4.released_by(Some(&v5));
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].kind(), "sqlite", "finalize releases the source");
    // Streams of the versions reading the source end; those reading the
    // target go on.
    v4.release(&released);
    let wait = |v: Arc<Namespace>, ms| async move {
        tokio::time::timeout(std::time::Duration::from_millis(ms), v.released())
            .await
            .is_ok()
    };
    assert!(wait(v1.clone(), 5_000).await, "v1 read the source");
    assert!(
        wait(v3.clone(), 5_000).await,
        "v3 (backfill) read the source"
    );
    assert!(
        !wait(v4.clone(), 100).await,
        "v4 (promoted) reads the target"
    );
    assert!(!wait(v5.clone(), 100).await, "v5 reads the target");
    let read = v5.timeseries().unwrap().read(&cpu(0)).await.unwrap();
    assert_eq!(
        ids(read),
        ["before", "during"],
        "the memstore target kept its data"
    );
    shared.stop();
}

/// A later migration of the namespace (another `migration.id`) does not
/// take the finished checkpoint of an earlier one: it copies everything.
#[tokio::test]
async fn a_new_migration_does_not_resume_an_earlier_ones_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ns = unique("ts-again");
    let source = open_ts("memstore", &ns, dir.path()).await;
    source
        .write((0..5).map(|i| event("cpu", i, &format!("e{i}"))).collect())
        .await
        .unwrap();
    let first_target = open_ts("sqlite", &ns, dir.path()).await;
    let roles = Pair::for_phase(MigrationPhase::DualWrite, &source, &first_target);
    let first = MigrationShared::start_for(&ns, Some("one".into()), dir.path(), roles).unwrap();
    first.set_phase(MigrationPhase::Backfill, None);
    eventually("the first backfill finishes", || backfill_finished(&first)).await;
    first.stop();
    drop(first);
    // Aborted; a new migration to another target, while this proxy kept
    // the first one's checkpoint.
    let second_dir = tempfile::tempdir().unwrap();
    let second_target = open_ts("sqlite", &ns, second_dir.path()).await;
    let roles = Pair::for_phase(MigrationPhase::DualWrite, &source, &second_target);
    let second = MigrationShared::start_for(&ns, Some("two".into()), dir.path(), roles).unwrap();
    second.set_phase(MigrationPhase::Backfill, None);
    eventually("the second backfill finishes", || {
        backfill_finished(&second)
    })
    .await;
    let cp = second.progress().await.unwrap().unwrap();
    assert_eq!(cp.migration.as_deref(), Some("two"));
    assert_eq!(cp.items, 5, "copied anew");
    assert_eq!(all_events(second_target.as_ref()).await.len(), 5);
    second.stop();
}
