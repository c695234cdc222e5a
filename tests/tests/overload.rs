//! A namespace driven far over its limits through a real `prism-proxy`:
//! the proxy stays up, admitted calls succeed, the others are refused at
//! once with RESOURCE_EXHAUSTED naming the limit and carrying a retry hint,
//! and another namespace on the same proxy keeps serving.

use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_tests::ProxyProcess;
use tonic::Code;

/// A proxy serving `namespaces`, each a name and the rest of its YAML.
fn start(namespaces: &[(&str, String)]) -> ProxyProcess {
    let dir = tempfile::tempdir().unwrap().keep();
    let ns = dir.join("ns");
    std::fs::create_dir_all(&ns).unwrap();
    for (name, rest) in namespaces {
        std::fs::write(
            ns.join(format!("{name}.yaml")),
            format!("name: {name}\ndal: keyvalue\n{rest}"),
        )
        .unwrap();
    }
    std::fs::write(dir.join("prism.yaml"), "namespaces:\n  dir: ns\n").unwrap();
    ProxyProcess::start_with(
        &dir.join("data"),
        &["--config", &dir.join("prism.yaml").display().to_string()],
    )
}

const MEMSTORE: &str = "backend:\n  kind: memstore\n";

/// A PostgreSQL backend in `schema`, then `rest`.
fn on_postgres(schema: &str, mode: &str, rest: &str) -> String {
    format!(
        "backend:\n  kind: postgres\n  mode: {mode}\n  options:\n    url: {}\n    \
         schema: {schema}\n{rest}",
        postgres_url()
    )
}

/// A schema name no other test run uses.
fn unique_schema(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("prism_overload_{what}_{}_{nanos}", std::process::id())
}

/// A connection to the test's PostgreSQL.
async fn postgres() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Polls `condition` until it holds, failing after [`prism_tests::WAIT`].
async fn wait_for<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let since = std::time::Instant::now();
    while !condition().await {
        assert!(since.elapsed() < prism_tests::WAIT, "timed out: {what}");
        tokio::task::yield_now().await;
    }
}

fn put(namespace: &str, id: String) -> pb::PutRequest {
    pb::PutRequest {
        namespace: namespace.into(),
        id,
        items: vec![pb::PutItem {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_over_its_rate_sheds_the_excess_and_others_keep_serving() {
    // 20 calls per second with a burst of 20: a flood of 200 calls at once
    // is 10x the rate.
    let proxy = start(&[
        (
            "limited",
            format!("{MEMSTORE}limits:\n  rate:\n    calls_per_second: 20\n    burst: 20\n"),
        ),
        ("other", MEMSTORE.to_string()),
    ]);
    let kv = KeyValueServiceClient::connect(proxy.grpc_url())
        .await
        .unwrap();
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let mut kv = kv.clone();
            tokio::spawn(async move { kv.put(put("limited", format!("id-{i}"))).await })
        })
        .collect();
    // While the flood runs, the other namespace serves.
    let mut other = kv.clone();
    for i in 0..20 {
        other
            .put(put("other", format!("o-{i}")))
            .await
            .expect("another namespace keeps serving");
    }
    let (mut admitted, mut shed) = (0, 0);
    for call in flood {
        match call.await.unwrap() {
            Ok(_) => admitted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().contains("limits.rate"),
                    "names the limit: {}",
                    status.message()
                );
                let hint = status
                    .metadata()
                    .get("retry-after-ms")
                    .expect("a retry hint")
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
                assert!(hint > 0, "retry-after-ms {hint}");
                shed += 1;
            }
        }
    }
    assert_eq!(admitted + shed, 200);
    // The burst is admitted; far fewer than all are (the rate refills 20
    // per second, and the flood takes well under the seconds it would need).
    assert!(admitted >= 20, "admitted {admitted}");
    assert!(shed >= 100, "shed {shed} of 200");
    // The proxy is still up and the namespace serves again once tokens
    // refill.
    let mut kv2 = kv.clone();
    let mut served = false;
    for _ in 0..100 {
        match kv2.put(put("limited", "after".into())).await {
            Ok(_) => {
                served = true;
                break;
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                let wait = s
                    .metadata()
                    .get("retry-after-ms")
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(50);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    assert!(served, "the namespace serves again after its retry hint");
}

fn postgres_url() -> String {
    std::env::var("PRISM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Lock requests on `schema.kv_versions` (the first table a Put writes)
/// that PostgreSQL has not granted: the proxy's calls stuck behind the
/// test's table lock.
async fn waiting_on(pg: &tokio_postgres::Client, schema: &str) -> i64 {
    pg.query_one(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = to_regclass($1)",
        &[&format!("{schema}.kv_versions")],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_in_flight_limit_are_shed_at_once_and_deadlines_hold() {
    let held_schema = unique_schema("held");
    let slow_schema = unique_schema("slow");
    // At most 4 calls at once on `held`; `slow` gives a call 300 ms when the
    // client sends no deadline.
    let proxy = start(&[
        (
            "held",
            on_postgres(&held_schema, "embedded", "limits:\n  max_in_flight: 4\n"),
        ),
        (
            "slow",
            on_postgres(
                &slow_schema,
                "embedded",
                "limits:\n  deadline:\n    default_ms: 300\n",
            ),
        ),
        ("other", MEMSTORE.to_string()),
    ]);
    let kv = proxy.kv_client().await;

    // Hold both namespaces' tables: every write to them waits in PostgreSQL.
    let mut pg = postgres().await;
    let lock = pg.transaction().await.unwrap();
    lock.batch_execute(&format!(
        "LOCK TABLE {held_schema}.kv_versions, {slow_schema}.kv_versions IN ACCESS EXCLUSIVE MODE"
    ))
    .await
    .unwrap();

    // Four calls fill `held`'s in-flight limit and wait on the lock.
    let admitted: Vec<_> = (0..4)
        .map(|i| {
            let mut kv = kv.clone();
            tokio::spawn(async move { kv.put(put("held", format!("held-{i}"))).await })
        })
        .collect();
    let watcher = postgres().await;
    wait_for("the four admitted calls to reach PostgreSQL", || async {
        waiting_on(&watcher, &held_schema).await == 4
    })
    .await;

    // Every further call is refused at once, while the four still wait:
    // nothing queues behind them.
    let shed: Vec<_> = (0..40)
        .map(|i| {
            let mut kv = kv.clone();
            tokio::spawn(async move { kv.put(put("held", format!("shed-{i}"))).await })
        })
        .collect();
    for call in shed {
        let status = call.await.unwrap().expect_err("past max_in_flight");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("limits.max_in_flight"),
            "names the limit: {}",
            status.message()
        );
        assert!(
            status.metadata().get("retry-after-ms").is_some(),
            "{status:?}"
        );
    }
    assert_eq!(waiting_on(&watcher, &held_schema).await, 4, "still waiting");

    // The namespace's default deadline ends a call stuck in the backend,
    // though the client set none.
    let mut slow = kv.clone();
    let status = slow
        .put(put("slow", "late".into()))
        .await
        .expect_err("past the namespace's deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("limits.deadline.default_ms"),
        "names where the deadline came from: {}",
        status.message()
    );

    // Another namespace on the same proxy serves meanwhile.
    let mut other = kv.clone();
    other
        .put(put("other", "during".into()))
        .await
        .expect("another namespace keeps serving");

    // Released, the admitted calls all succeed, and the namespace takes
    // new calls again.
    lock.commit().await.unwrap();
    for call in admitted {
        call.await.unwrap().expect("an admitted call succeeds");
    }
    let mut held = kv.clone();
    held.put(put("held", "after".into()))
        .await
        .expect("the namespace serves again");

    for schema in [&held_schema, &slow_schema] {
        watcher
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .unwrap();
    }
}

/// Sessions other than `pg`'s own that are busy with `schema`: running a
/// statement or holding a transaction open.
async fn busy_on(pg: &tokio_postgres::Client, schema: &str) -> i64 {
    pg.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
         AND state IS DISTINCT FROM 'idle' AND strpos(query, $1) > 0",
        &[&schema],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_is_abandoned_in_the_pattern_process_too() {
    let schema = unique_schema("process");
    let proxy = start(&[(
        "remote",
        on_postgres(
            &schema,
            "process",
            "limits:\n  deadline:\n    default_ms: 300\n",
        ),
    )]);
    let mut kv = proxy.kv_client().await;
    kv.put(put("remote", "before".into()))
        .await
        .expect("the pattern process serves");

    let mut pg = postgres().await;
    let lock = pg.transaction().await.unwrap();
    lock.batch_execute(&format!(
        "LOCK TABLE {schema}.kv_versions IN ACCESS EXCLUSIVE MODE"
    ))
    .await
    .unwrap();
    let status = kv
        .put(put("remote", "late".into()))
        .await
        .expect_err("past the namespace's deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    lock.commit().await.unwrap();

    // The pattern process gave the call up with the proxy (it is sent the
    // time left as grpc-timeout, and the proxy resets the stream when it
    // stops waiting): once PostgreSQL has let its statement through, its
    // transaction is rolled back, not committed.
    wait_for("the pattern process's session to be idle", || async {
        busy_on(&pg, &schema).await == 0
    })
    .await;
    let written: i64 = pg
        .query_one(
            &format!("SELECT count(*) FROM {schema}.kv_items WHERE id = 'late'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0, "the abandoned Put left nothing behind");
    kv.put(put("remote", "after".into()))
        .await
        .expect("the namespace serves again");
    pg.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
}
