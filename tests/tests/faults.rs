//! Faults of the services themselves: PostgreSQL and Redis are restarted
//! under a steady load through the proxy, with the same commands that start
//! them on this machine (see docs-cms/operations.md, "Restarting the test
//! services"). Every call either succeeds or fails with UNAVAILABLE, the
//! proxy recovers without a restart, and (PostgreSQL being durable) no
//! acknowledged write is lost.
//!
//! These tests stop shared services, so they are `#[ignore]`d in the normal
//! run; `tooling/test` runs them last, one at a time, when nothing else uses
//! the services: `cargo test -p prism-tests --test faults -- --ignored
//! --test-threads=1`.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use prism_proto::keyvalue::v1 as pb;
use prism_tests::{ProxyProcess, free_addr};

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

fn postgres_version() -> String {
    std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster under /etc/postgresql")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .next()
        .expect("a PostgreSQL version directory")
}

fn stop_postgres() {
    run(
        "pg_ctlcluster",
        &[
            "--skip-systemctl-redirect",
            &postgres_version(),
            "main",
            "stop",
            "-m",
            "fast",
        ],
    );
}

fn start_postgres() {
    run(
        "pg_ctlcluster",
        &[
            "--skip-systemctl-redirect",
            &postgres_version(),
            "main",
            "start",
        ],
    );
}

fn stop_redis() {
    // Exits non-zero because the connection closes; the server is gone
    // when it returns.
    let _ = Command::new("redis-cli")
        .args(["-p", "6379", "shutdown", "nosave"])
        .status();
}

fn start_redis() {
    run(
        "redis-server",
        &[
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
    );
}

fn proxy_with(dir: &std::path::Path, namespace: &str, backend_yaml: &str) -> ProxyProcess {
    let ns_dir = dir.join("namespaces");
    std::fs::create_dir_all(&ns_dir).unwrap();
    std::fs::write(
        dir.join("prism.yaml"),
        format!(
            "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n",
            free_addr(),
            free_addr()
        ),
    )
    .unwrap();
    std::fs::write(
        ns_dir.join(format!("{namespace}.yaml")),
        format!("name: {namespace}\ndal: keyvalue\nbackend:\n{backend_yaml}"),
    )
    .unwrap();
    let config = dir.join("prism.yaml").display().to_string();
    ProxyProcess::start_with(&dir.join("data"), &["--config", &config])
}

fn unique(prefix: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{prefix}-{}-{ms}", std::process::id())
}

/// What a load run saw.
struct Load {
    acknowledged: Vec<String>,
    unavailable: usize,
}

/// Puts distinct keys until `restart` has run and 50 more Puts succeeded.
/// Every failure must be UNAVAILABLE (a 10 s deadline turns a hang into
/// DEADLINE_EXCEEDED, which fails).
async fn load_through_restart(
    proxy: &ProxyProcess,
    namespace: &str,
    stop: fn(),
    start: fn(),
) -> Load {
    let mut kv = proxy.kv_client().await;
    let mut load = Load {
        acknowledged: Vec::new(),
        unavailable: 0,
    };
    let mut restarted = false;
    let mut after = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0.. {
        assert!(
            Instant::now() < deadline,
            "the proxy did not recover within 120 s"
        );
        if i == 100 {
            stop();
            // A few calls while the service is down.
            for _ in 0..5 {
                let err = kv.put(put(namespace, "down")).await.unwrap_err();
                assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
                load.unavailable += 1;
            }
            start();
            restarted = true;
        }
        let key = format!("k{i:06}");
        let mut request = tonic::Request::new(put(namespace, &key));
        request.set_timeout(Duration::from_secs(10));
        match kv.put(request).await {
            Ok(_) => {
                load.acknowledged.push(key);
                if restarted {
                    after += 1;
                    if after == 50 {
                        return load;
                    }
                }
            }
            Err(err) => {
                assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
                assert!(!err.message().is_empty());
                load.unavailable += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    unreachable!()
}

fn put(namespace: &str, key: &str) -> pb::PutRequest {
    pb::PutRequest {
        namespace: namespace.into(),
        id: "load".into(),
        items: vec![pb::PutItem {
            key: key.as_bytes().to_vec(),
            value: format!("value of {key}").into_bytes(),
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    }
}

async fn stored_keys(proxy: &ProxyProcess, namespace: &str) -> HashSet<Vec<u8>> {
    let mut kv = proxy.kv_client().await;
    kv.get(pb::GetRequest {
        namespace: namespace.into(),
        id: "load".into(),
        page_size_bytes: 4 << 20,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .items
    .into_iter()
    .map(|i| i.key)
    .collect()
}

#[tokio::test]
#[ignore = "restarts the machine's PostgreSQL; run by tooling/test in its fault phase"]
async fn postgres_restart_under_load_loses_no_acknowledged_write() {
    let url = std::env::var("PRISM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    for mode in ["embedded", "process"] {
        let dir = tempfile::tempdir().unwrap();
        let namespace = unique(&format!("fault-pg-{mode}"));
        let proxy = proxy_with(
            dir.path(),
            &namespace,
            &format!(
                "  kind: postgres\n  mode: {mode}\n  options:\n    url: {url}\n    schema: prism_faults\n"
            ),
        );
        let load = load_through_restart(&proxy, &namespace, stop_postgres, start_postgres).await;
        assert!(load.unavailable > 0, "{mode}: the outage was seen");
        let stored = stored_keys(&proxy, &namespace).await;
        for key in &load.acknowledged {
            assert!(
                stored.contains(key.as_bytes()),
                "{mode}: acknowledged {key} is missing"
            );
        }
    }
}

#[tokio::test]
#[ignore = "restarts the machine's Redis; run by tooling/test in its fault phase"]
async fn redis_restart_under_load_recovers_by_itself() {
    let url = std::env::var("PRISM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    for mode in ["embedded", "process"] {
        let dir = tempfile::tempdir().unwrap();
        let namespace = unique(&format!("fault-redis-{mode}"));
        let proxy = proxy_with(
            dir.path(),
            &namespace,
            &format!("  kind: redis\n  mode: {mode}\n  options:\n    url: {url}\n"),
        );
        let load = load_through_restart(&proxy, &namespace, stop_redis, start_redis).await;
        assert!(load.unavailable > 0, "{mode}: the outage was seen");
        // This Redis keeps nothing on disk, so writes acknowledged before
        // the restart are gone with it (the backend does not claim
        // `durable`); every write acknowledged after recovery is there.
        let stored = stored_keys(&proxy, &namespace).await;
        let after: Vec<_> = load.acknowledged.iter().rev().take(50).collect();
        for key in after {
            assert!(
                stored.contains(key.as_bytes()),
                "{mode}: acknowledged {key} is missing"
            );
        }
    }
}
