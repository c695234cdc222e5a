//! Start-up and shutdown: strict configuration errors stop start-up with a
//! message naming the file and field; SIGTERM drains and closes backends.

use std::process::Command;

use prism_proto::keyvalue::v1 as pb;
use prism_tests::{ProxyProcess, binary, free_addr};

#[test]
fn a_misspelled_field_stops_start_up_naming_file_and_field() {
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
        "name: orders\ndal: keyvalue\nbackend:\n  kind: sqlite\n  options:\n    synchronus: full\n",
    )
    .unwrap();
    let output = Command::new(binary("prism-proxy"))
        .arg("--config")
        .arg(dir.path().join("prism.yaml"))
        .output()
        .unwrap();
    assert!(!output.status.success(), "start-up must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("orders.yaml"), "names the file: {stderr}");
    assert!(
        stderr.contains("backend.options"),
        "names the field: {stderr}"
    );
    assert!(stderr.contains("unknown field `synchronus`"), "{stderr}");
    assert!(
        stderr.contains("synchronous"),
        "says what is allowed: {stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "one message: {stderr}"
    );

    std::fs::write(
        ns_dir.join("orders.yaml"),
        "name: orders\ndal: keyvalue\nbackend:\n  kind: casandra\n",
    )
    .unwrap();
    let output = Command::new(binary("prism-proxy"))
        .arg("--config")
        .arg(dir.path().join("prism.yaml"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("backend.kind") && stderr.contains("memstore, postgres, redis, sqlite"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigterm_drains_and_closes_backends() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());
    let mut kv = proxy.kv_client().await;
    kv.put(pb::PutRequest {
        namespace: "demo-sqlite".into(),
        id: "drain".into(),
        items: vec![pb::PutItem {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    })
    .await
    .unwrap();
    drop(kv);
    let log_dir = proxy.data_dir.clone();
    let wal = log_dir.join("demo-sqlite.db-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the write is in the WAL"
    );
    let logged = {
        let status = proxy.terminate();
        assert!(status.success(), "clean exit after SIGTERM: {status}");
        std::fs::read_dir(&log_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect::<String>()
    };
    assert!(logged.contains("draining"), "{logged}");
    assert!(logged.contains("backend closed"), "{logged}");
    // Closing checkpoints the WAL into the database file.
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "the WAL was checkpointed on close");
}

/// Writers keep calling while the proxy gets SIGTERM: every call that was
/// acknowledged is durable after a restart, and the proxy exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());
    let url = proxy.grpc_url();
    let mut writers = Vec::new();
    for w in 0..4 {
        let url = url.clone();
        writers.push(tokio::spawn(async move {
            let mut kv = prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient::connect(url)
                .await
                .unwrap();
            let mut acked = Vec::new();
            for i in 0.. {
                let key = format!("w{w}-{i:05}");
                let result = kv
                    .put(pb::PutRequest {
                        namespace: "demo-sqlite".into(),
                        id: "load".into(),
                        items: vec![pb::PutItem {
                            key: key.clone().into_bytes(),
                            value: b"v".to_vec(),
                            ttl: None,
                            expected_version: None,
                        }],
                        idempotency_token: String::new(),
                    })
                    .await;
                match result {
                    Ok(_) => acked.push(key),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    // Let the writers get going, then stop the proxy under load.
    prism_tests::wait_until("some writes", || {
        prism_tests::http_get(proxy.admin, "/metrics")
            .map(|(_, body)| body.contains(r#"method="Put""#))
            .unwrap_or(false)
    });
    let status = tokio::task::spawn_blocking(move || proxy.terminate())
        .await
        .unwrap();
    assert!(status.success(), "clean exit: {status}");
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(!acked.is_empty());

    let proxy = ProxyProcess::start(dir.path());
    let mut kv = proxy.kv_client().await;
    let mut stored = std::collections::HashSet::new();
    let mut token = String::new();
    loop {
        let page = kv
            .get(pb::GetRequest {
                namespace: "demo-sqlite".into(),
                id: "load".into(),
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        stored.extend(
            page.items
                .into_iter()
                .map(|i| String::from_utf8(i.key).unwrap()),
        );
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let missing: Vec<_> = acked.iter().filter(|k| !stored.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost: {missing:?}",
        missing.len()
    );
}
