//! A namespace served by a pattern process (`backend.mode: process`):
//! the proxy starts `prism-pattern-sqlite`, routes over its Unix socket,
//! and when the pattern is killed with SIGKILL under load, restarts it;
//! calls in the gap fail with UNAVAILABLE (not a hang, not another error),
//! and every acknowledged write is there afterwards.

use std::time::Duration;

use prism_proto::keyvalue::v1 as pb;
use prism_tests::{ProxyProcess, free_addr, wait_until};

/// The pattern processes the proxy started (its direct children).
fn children(pid: u32) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .expect("running pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn put(key: &str) -> pb::PutRequest {
    pb::PutRequest {
        namespace: "orders".into(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_pattern_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    std::fs::write(
        dir.path().join("prism.yaml"),
        format!(
            "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n",
            free_addr(),
            free_addr()
        ),
    )
    .unwrap();
    std::fs::write(
        ns_dir.join("orders.yaml"),
        "name: orders\ndal: keyvalue\nbackend:\n  kind: sqlite\n  mode: process\n  \
         options:\n    path: orders.db\n",
    )
    .unwrap();
    let config = dir.path().join("prism.yaml").display().to_string();
    let proxy = ProxyProcess::start_with(&dir.path().join("data"), &["--config", &config]);
    let first = children(proxy.child.id());
    assert_eq!(first.len(), 1, "one pattern process: {first:?}");

    let mut kv = proxy.kv_client().await;
    let mut acknowledged = Vec::new();
    let mut unavailable = 0;
    let mut killed = false;
    let mut after_restart = 0;
    for i in 0..20_000 {
        if i == 200 {
            // SIGKILL the pattern in the middle of the load.
            let status = std::process::Command::new("kill")
                .args(["-KILL", &first[0].to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            killed = true;
        }
        let key = format!("k{i:06}");
        let mut request = tonic::Request::new(put(&key));
        // A call that hung instead of failing fast would end with
        // DEADLINE_EXCEEDED and fail the assertion below.
        request.set_timeout(Duration::from_secs(10));
        match kv.put(request).await {
            Ok(_) => {
                acknowledged.push(key);
                if killed && unavailable > 0 {
                    after_restart += 1;
                    if after_restart == 100 {
                        break;
                    }
                }
            }
            Err(status) => {
                assert_eq!(
                    status.code(),
                    tonic::Code::Unavailable,
                    "a call in the gap fails with UNAVAILABLE: {status:?}"
                );
                assert!(killed, "no failure before the kill: {status:?}");
                unavailable += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    assert!(unavailable > 0, "the kill was noticed by some call");
    assert_eq!(
        after_restart, 100,
        "the proxy restarted the pattern by itself"
    );
    let now = children(proxy.child.id());
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, first, "a new pattern process serves");

    // The restart is counted in /metrics.
    let (code, metrics) = prism_tests::http_get(proxy.admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("prism_pattern_state{namespace=\"orders\",state=\"serving\"} 1"),
        "{metrics}"
    );
    let restarts: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("prism_pattern_restarts_total{namespace=\"orders\"} "))
        .expect("a restart counter for orders")
        .trim()
        .parse()
        .unwrap();
    assert!(restarts >= 1, "{metrics}");

    // prismctl health shows the pattern serving again, with its restarts.
    let out = prism_tests::prismctl(proxy.grpc, &["health"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("orders"))
        .unwrap_or_else(|| panic!("no row for orders:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["sqlite", "process", "serving"], "{table}");
    assert_eq!(cells[4].parse::<u64>().unwrap(), restarts, "{table}");

    // Every acknowledged write is there.
    let items = kv
        .get(pb::GetRequest {
            namespace: "orders".into(),
            id: "load".into(),
            page_size_bytes: 4 << 20,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    let stored: std::collections::HashSet<Vec<u8>> = items.into_iter().map(|i| i.key).collect();
    for key in &acknowledged {
        assert!(
            stored.contains(key.as_bytes()),
            "acknowledged {key} is missing"
        );
    }

    // The restart shows in the log; shutdown drains the pattern and it exits.
    assert!(proxy.log().contains("restarting"), "{}", proxy.log());
    let pid = proxy.child.id();
    let log_path = proxy.data_dir.clone();
    let status = proxy.terminate();
    assert!(status.success(), "{status:?}");
    // The pattern stopped by itself when asked; it was not killed.
    let mut logs = String::new();
    for entry in std::fs::read_dir(&log_path).unwrap().flatten() {
        if entry.path().extension().is_some_and(|x| x == "log") {
            logs.push_str(&std::fs::read_to_string(entry.path()).unwrap());
        }
    }
    assert!(logs.contains("pattern process stopped"), "{logs}");
    assert!(!logs.contains("was killed"), "{logs}");
    wait_until("the pattern process exits with the proxy", || {
        children(pid).is_empty() && !std::path::Path::new(&format!("/proc/{}", now[0])).exists()
    });
}
