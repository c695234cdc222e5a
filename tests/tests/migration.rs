//! Moving a KeyValue namespace to another backend while a load generator
//! writes and reads through the real proxy (ADR-016): SQLite to
//! PostgreSQL and memstore to Redis through every phase with zero failed
//! calls; a mismatch injected into the shadow blocks promotion; a proxy
//! killed with SIGKILL during the backfill resumes from its checkpoint.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prism_proto::keyvalue::v1 as pb;
use prism_tests::{ConfigDir, ProxyProcess, http_get, prismctl, succeeded};

fn postgres_url() -> String {
    std::env::var("PRISM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn redis_url() -> String {
    std::env::var("PRISM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A unique name for this test run.
fn unique(prefix: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{prefix}-{}-{now}", std::process::id())
}

/// A proxy's configuration holding one KeyValue namespace on `backend`
/// (a YAML `backend:` body).
fn setup(prefix: &str, backend: &str) -> ConfigDir {
    ConfigDir::with_namespace(prefix, &format!("dal: keyvalue\nbackend:\n{backend}"))
}

/// `prismctl migrate ARGS... NAME`; must succeed.
/// Polls the migration status until `cond` holds (up to 120 s).
fn wait_status(
    proxy: &ProxyProcess,
    name: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = proxy.migration_status(name);
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "not within 120 s: {what}; last status {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn put_request(name: &str, id: &str, key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        namespace: name.to_string(),
        id: id.to_string(),
        items: vec![pb::PutItem {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    }
}

fn get_request(name: &str, id: &str) -> pb::GetRequest {
    pb::GetRequest {
        namespace: name.to_string(),
        id: id.to_string(),
        ..Default::default()
    }
}

/// Writes `ids` ids of two keys each (`pre-<i>`), through the proxy.
async fn populate(
    proxy: &ProxyProcess,
    name: &str,
    ids: usize,
) -> BTreeMap<(String, String), String> {
    let mut kv = proxy.kv_client().await;
    let mut written = BTreeMap::new();
    for i in 0..ids {
        let id = format!("pre-{i:05}");
        let mut request = put_request(name, &id, "a", &format!("a{i}"));
        request.items.push(pb::PutItem {
            key: b"b".to_vec(),
            value: format!("b{i}").into_bytes(),
            ttl: None,
            expected_version: None,
        });
        kv.put(request).await.expect("populating");
        written.insert((id.clone(), "a".to_string()), format!("a{i}"));
        written.insert((id, "b".to_string()), format!("b{i}"));
    }
    written
}

/// A writer and reader running through the proxy until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<LoadResult>,
}

struct LoadResult {
    /// The last acknowledged value of each (id, key).
    acknowledged: BTreeMap<(String, String), String>,
    failures: Vec<String>,
    ops: u64,
}

impl Load {
    async fn start(proxy: &ProxyProcess, name: &str) -> Self {
        let mut kv = proxy.kv_client().await;
        let name = name.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let (stop2, ops2) = (stop.clone(), ops.clone());
        let task = tokio::spawn(async move {
            let mut acknowledged = BTreeMap::new();
            let mut failures = Vec::new();
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let id = format!("load-{:03}", i % 64);
                let value = format!("v{i}");
                match kv.put(put_request(&name, &id, "k", &value)).await {
                    Ok(_) => {
                        acknowledged.insert((id.clone(), "k".to_string()), value);
                    }
                    Err(e) => failures.push(format!("put {id}: {e}")),
                }
                let read = format!("pre-{:05}", i % 200);
                if let Err(e) = kv.get(get_request(&name, &read)).await {
                    failures.push(format!("get {read}: {e}"));
                }
                i += 1;
                ops2.store(i * 2, Ordering::Relaxed);
            }
            LoadResult {
                acknowledged,
                failures,
                ops: i * 2,
            }
        });
        Load { stop, ops, task }
    }

    /// Waits until `n` more operations completed (the load is moving).
    async fn progress(&self, n: u64) {
        let from = self.ops.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ops.load(Ordering::Relaxed) < from + n {
            assert!(Instant::now() < deadline, "the load stalled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Every (id, key) -> value of `expected` read back through the proxy.
async fn assert_all_present(
    proxy: &ProxyProcess,
    name: &str,
    expected: &BTreeMap<(String, String), String>,
) {
    let mut kv = proxy.kv_client().await;
    let mut by_id: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for ((id, key), value) in expected {
        by_id.entry(id).or_default().insert(key, value);
    }
    for (id, keys) in by_id {
        let items = kv
            .get(get_request(name, id))
            .await
            .unwrap()
            .into_inner()
            .items;
        let got: BTreeMap<String, String> = items
            .into_iter()
            .map(|i| {
                (
                    String::from_utf8(i.key).unwrap(),
                    String::from_utf8(i.value).unwrap(),
                )
            })
            .collect();
        for (key, value) in keys {
            assert_eq!(
                got.get(key).map(String::as_str),
                Some(value),
                "acknowledged write {id}/{key} missing or stale in the new primary"
            );
        }
    }
}

/// Reads every `pre-` id through the proxy (shadow-read compares them).
async fn read_all(proxy: &ProxyProcess, name: &str, ids: usize) {
    let mut kv = proxy.kv_client().await;
    for i in 0..ids {
        kv.get(get_request(name, &format!("pre-{i:05}")))
            .await
            .unwrap();
    }
}

/// The whole procedure under load, from the namespace's backend to `to`
/// (`start_flags`: extra flags of `migrate start`).
async fn migrate_under_load(setup: &ConfigDir, to: &str, start_flags: &[&str]) -> ProxyProcess {
    let proxy = setup.start();
    let name = setup.name.clone();
    let pre = populate(&proxy, &name, 200).await;
    let load = Load::start(&proxy, &name).await;
    load.progress(100).await;

    let mut start = vec![
        "start",
        &name,
        "--to",
        to,
        "--read-sample",
        "1",
        "-o",
        "json",
    ];
    start.extend_from_slice(start_flags);
    let started = proxy.migrate(&start);
    assert!(started.contains("dual-write"), "{started}");
    load.progress(200).await;
    proxy.migrate(&["advance", &name]);
    let waited = proxy.migrate(&["wait", &name, "-o", "json"]);
    let waited: serde_json::Value = serde_json::from_str(&waited).unwrap();
    assert_eq!(waited["phase"], "backfill");
    assert_eq!(waited["backfill"]["finished"], true, "{waited}");
    proxy.migrate(&["advance", &name]);
    read_all(&proxy, &name, 200).await;
    load.progress(200).await;
    let compared = wait_status(&proxy, &name, "the shadow reads are compared", |s| {
        s["reads_compared"].as_u64().unwrap_or(0) >= 200
    });
    assert_eq!(compared["mismatches"], 0, "{compared}");
    assert_eq!(compared["shadow_failures"], 0, "{compared}");
    proxy.migrate(&["advance", &name]);
    assert_eq!(proxy.migration_status(&name)["phase"], "promoted");
    load.progress(200).await;
    proxy.migrate(&["finalize", &name]);
    load.progress(200).await;
    let result = load.stop().await;
    assert!(
        result.failures.is_empty(),
        "{} of {} calls failed, e.g. {:?}",
        result.failures.len(),
        result.ops,
        &result.failures[..result.failures.len().min(5)]
    );
    eprintln!(
        "{name}: {} calls through the migration, {} failed",
        result.ops,
        result.failures.len()
    );
    let after = proxy.migration_status(&name);
    assert_eq!(after["phase"], "", "the migration ended: {after}");
    // The namespace file now names the target.
    let stored = std::fs::read_to_string(&setup.file).unwrap();
    assert!(!stored.contains("migration"), "{stored}");
    assert_all_present(&proxy, &name, &pre).await;
    assert_all_present(&proxy, &name, &result.acknowledged).await;
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_under_load() {
    let setup = setup("mig-pg", "  kind: sqlite\n");
    let schema = format!("mig_{}", std::process::id());
    let to = format!(
        "{{kind: postgres, options: {{url: \"{}\", schema: {schema}}}}}",
        postgres_url()
    );
    migrate_under_load(&setup, &to, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memstore_to_redis_under_load() {
    let setup = setup("mig-redis", "  kind: memstore\n");
    let to = format!(
        "{{kind: redis, options: {{url: \"{}\", key_prefix: prism-mig-test}}}}",
        redis_url()
    );
    // Redis reads no snapshots across pages, which memstore does: the
    // pre-flight check refuses that loss unless forced.
    migrate_under_load(&setup, &to, &["--force"]).await;
}

/// The target may run as a pattern process: after finalize the namespace
/// is served by that process, which `prismctl health` reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memstore_to_sqlite_in_a_pattern_process_under_load() {
    let setup = setup("mig-proc", "  kind: memstore\n");
    let proxy = migrate_under_load(&setup, "{kind: sqlite, mode: process}", &["--force"]).await;
    let stored = std::fs::read_to_string(&setup.file).unwrap();
    assert!(stored.contains("mode: process"), "{stored}");
    let table = succeeded(prismctl(proxy.grpc, &["health"]));
    let row = table
        .lines()
        .find(|l| l.starts_with(&setup.name))
        .unwrap_or_else(|| panic!("no row for {}:\n{table}", setup.name));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["sqlite", "process", "serving"], "{table}");
}

fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args([&postgres_url(), "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatch_injected_into_the_shadow_blocks_promotion() {
    let setup = setup("mig-bad", "  kind: memstore\n");
    let proxy = setup.start();
    let name = setup.name.clone();
    populate(&proxy, &name, 20).await;
    let schema = format!("mig_bad_{}", std::process::id());
    let to = format!(
        "{{kind: postgres, options: {{url: \"{}\", schema: {schema}}}}}",
        postgres_url()
    );
    let refused = prismctl(proxy.grpc, &["migrate", "start", &name, "--to", &to]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("snapshot_reads"),
        "memstore to postgres loses snapshot reads: {stderr}"
    );
    let forced = prismctl(
        proxy.grpc,
        &[
            "migrate",
            "start",
            &name,
            "--to",
            &to,
            "--read-sample",
            "1",
            "--force",
        ],
    );
    assert!(
        String::from_utf8_lossy(&forced.stderr).contains("forced past"),
        "{forced:?}"
    );
    proxy.migrate(&["advance", &name]);
    proxy.migrate(&["wait", &name]);
    proxy.migrate(&["advance", &name]);
    // Behind Prism's back: the shadow's copy of pre-00005 changes.
    psql(&format!(
        "UPDATE {schema}.kv_items SET value = 'tampered'::bytea WHERE namespace = '{name}' AND \
         id = 'pre-00005' AND key = 'a'::bytea"
    ));
    read_all(&proxy, &name, 20).await;
    let s = wait_status(&proxy, &name, "the mismatch is found", |s| {
        s["mismatches"].as_u64().unwrap_or(0) >= 1
    });
    let sample = &s["mismatch_samples"][0];
    assert_eq!(sample["kind"], "values differ", "{s}");
    let id = sample["id"].as_str().unwrap();
    assert!(
        id.starts_with("hmac:") && !id.contains("pre-00005"),
        "hashed: {id}"
    );
    assert!(
        s["blockers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b.as_str().unwrap().contains("differed")),
        "{s}"
    );
    let refused = prismctl(proxy.grpc, &["migrate", "advance", &name]);
    assert!(!refused.status.success(), "promotion must be refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("differed") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(proxy.migration_status(&name)["phase"], "shadow-read");
    proxy.migrate(&["abort", &name]);
    assert_eq!(proxy.migration_status(&name)["phase"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_proxy_resumes_the_backfill_from_its_checkpoint() {
    const IDS: usize = 1500;
    let setup = setup("mig-kill", "  kind: sqlite\n");
    let proxy = setup.start();
    let name = setup.name.clone();
    let pre = populate(&proxy, &name, IDS).await;
    let schema = format!("mig_kill_{}", std::process::id());
    let to = format!(
        "{{kind: postgres, options: {{url: \"{}\", schema: {schema}}}}}",
        postgres_url()
    );
    // 1500 ids at 500 a second: about three seconds of backfill.
    proxy.migrate(&[
        "start",
        &name,
        "--to",
        &to,
        "--read-sample",
        "1",
        "--backfill-rate",
        "500",
    ]);
    proxy.migrate(&["advance", &name]);
    let before = wait_status(&proxy, &name, "the backfill has saved progress", |s| {
        s["backfill"]["items"].as_u64().unwrap_or(0) >= 600
    });
    assert_eq!(before["backfill"]["finished"], false, "{before}");
    // The progress on /metrics too: items, rate and ETA.
    let (code, metrics) = http_get(proxy.admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    for gauge in [
        "prism_migration_backfill_items",
        "prism_migration_backfill_total_items",
        "prism_migration_backfill_items_per_second",
        "prism_migration_backfill_eta_seconds",
    ] {
        assert!(
            metrics.contains(&format!("{gauge}{{namespace=\"{name}\"}}")),
            "{gauge} missing from /metrics"
        );
    }
    proxy.kill9();

    let proxy = setup.start();
    let resumed = proxy.migration_status(&name);
    assert_eq!(
        resumed["phase"], "backfill",
        "the phase survived: {resumed}"
    );
    let items = resumed["backfill"]["items"].as_u64().unwrap_or(0);
    assert!(
        items >= 400,
        "the backfill resumed from its checkpoint, not from the start: {resumed}"
    );
    let done =
        serde_json::from_str::<serde_json::Value>(&proxy.migrate(&["wait", &name, "-o", "json"]))
            .unwrap();
    assert_eq!(done["backfill"]["finished"], true, "{done}");
    assert_eq!(done["backfill"]["total_items"], (IDS * 2) as u64);
    // The final comparison: every item on both, compared through the
    // proxy, and counted in PostgreSQL.
    proxy.migrate(&["advance", &name]);
    read_all(&proxy, &name, IDS).await;
    let s = wait_status(&proxy, &name, "every id is compared", |s| {
        s["reads_compared"].as_u64().unwrap_or(0) >= IDS as u64
    });
    assert_eq!(s["mismatches"], 0, "{s}");
    let rows = psql(&format!(
        "SELECT count(*) FROM {schema}.kv_items WHERE namespace = '{name}'"
    ));
    assert_eq!(rows.trim(), (IDS * 2).to_string());
    proxy.migrate(&["advance", &name]);
    proxy.migrate(&["finalize", &name]);
    assert_all_present(&proxy, &name, &pre).await;
}

/// Two proxies on one shared config store (PostgreSQL): the phase a step
/// sets through one proxy is followed by the other, whose writes reach the
/// shadow too, and after finalize both serve the new backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_follows_the_phase_through_the_shared_store() {
    let dir = tempfile::tempdir().unwrap();
    let run = unique("fleet").replace('-', "_");
    let store = format!(
        "namespaces:\n  store:\n    postgres:\n      url: \"{}\"\n      table: {run}.namespaces\n",
        postgres_url()
    );
    let start = |who: &str| {
        let config = dir.path().join(format!("{who}.yaml"));
        std::fs::write(&config, &store).unwrap();
        ProxyProcess::start_with(
            &dir.path().join(format!("data-{who}")),
            &["--config", &config.display().to_string()],
        )
    };
    let (a, b) = (start("a"), start("b"));
    let name = format!("fleet-{}", std::process::id());
    let yaml = format!(
        "name: {name}\ndal: keyvalue\nbackend:\n  kind: postgres\n  options:\n    url: \"{}\"\n    schema: {run}\n",
        postgres_url()
    );
    let file = dir.path().join("ns.yaml");
    std::fs::write(&file, yaml).unwrap();
    succeeded(prismctl(
        a.grpc,
        &["namespace", "apply", "-f", &file.display().to_string()],
    ));
    let to = format!(
        "{{kind: redis, options: {{url: \"{}\", key_prefix: prism-fleet-{run}}}}}",
        redis_url()
    );
    a.migrate(&["start", &name, "--to", &to, "--read-sample", "1", "--force"]);
    wait_status(&b, &name, "proxy b follows into dual-write", |s| {
        s["phase"] == "dual-write"
    });
    let mut kv_b = b.kv_client().await;
    kv_b.put(put_request(&name, "via-b", "k", "written through b"))
        .await
        .unwrap();
    assert!(b.migration_status(&name)["shadow_writes"].as_u64().unwrap() >= 1);
    for phase in ["backfill", "shadow-read", "promoted"] {
        if phase == "shadow-read" {
            a.migrate(&["wait", &name]);
        }
        a.migrate(&["advance", &name]);
        wait_status(&b, &name, &format!("proxy b follows into {phase}"), |s| {
            s["phase"] == phase
        });
    }
    a.migrate(&["finalize", &name]);
    wait_status(&b, &name, "proxy b ends the migration", |s| {
        s["phase"] == "" && s["source"] == "redis"
    });
    // Served by Redis now, through either proxy.
    for proxy in [&a, &b] {
        let items = proxy
            .kv_client()
            .await
            .get(get_request(&name, "via-b"))
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].value, b"written through b");
    }
    psql(&format!("DROP SCHEMA IF EXISTS {run} CASCADE"));
}
