//! The audit log against the real proxy binary: one record per call,
//! acknowledged calls of a `block` namespace survive `kill -9`, records
//! carry no values, and `prismctl audit tail` shows and follows them.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_proxy::audit::{AuditRecord, KeyHasher};
use prism_tests::{ProxyProcess, WAIT, binary, prismctl};
use tonic::transport::Channel;

/// Writes a prism.yaml with namespaces `audited` (memstore, `block`) and
/// `lossy` (memstore, `drop`); returns its path.
fn write_config(dir: &Path) -> PathBuf {
    let ns = dir.join("namespaces");
    std::fs::create_dir_all(&ns).unwrap();
    std::fs::write(
        ns.join("audited.yaml"),
        "name: audited\ndal: keyvalue\nbackend:\n  kind: memstore\naudit:\n  policy: block\n",
    )
    .unwrap();
    std::fs::write(
        ns.join("lossy.yaml"),
        "name: lossy\ndal: keyvalue\nbackend:\n  kind: memstore\naudit:\n  policy: drop\n",
    )
    .unwrap();
    let config = dir.join("prism.yaml");
    std::fs::write(
        &config,
        "namespaces:\n  dir: namespaces\naudit:\n  file:\n    fsync_interval_ms: 1000\n",
    )
    .unwrap();
    config
}

fn start(dir: &Path) -> ProxyProcess {
    let config = write_config(dir);
    ProxyProcess::start_with(
        &dir.join("data"),
        &["--config", &config.display().to_string()],
    )
}

fn audit_dir(proxy_data: &Path) -> PathBuf {
    proxy_data.join("audit")
}

/// Every complete record in the active audit file.
fn read_records(data: &Path) -> Vec<AuditRecord> {
    let text = std::fs::read_to_string(audit_dir(data).join("audit.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn put(namespace: &str, id: &str, value: &str) -> tonic::Request<pb::PutRequest> {
    tonic::Request::new(pb::PutRequest {
        namespace: namespace.into(),
        id: id.into(),
        items: vec![pb::PutItem {
            key: b"secret-key".to_vec(),
            value: value.as_bytes().to_vec(),
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    })
}

fn with_request_id<T>(mut request: tonic::Request<T>, id: &str) -> tonic::Request<T> {
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

#[tokio::test]
async fn acknowledged_block_calls_are_in_the_audit_file_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path());
    let data = proxy.data_dir.clone();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    // Four concurrent writers, so batches group several records; they keep
    // writing while the proxy is killed.
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut kv: KeyValueServiceClient<Channel> = proxy.kv_client().await;
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("user-{w}-{i}");
                match kv.put(put("audited", &id, "alice@example.com")).await {
                    Ok(_) => acknowledged.lock().unwrap().push(id),
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + WAIT;
    while acknowledged.lock().unwrap().len() < 400 {
        assert!(Instant::now() < deadline, "writers made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let hasher = KeyHasher::load_or_create(&audit_dir(&data).join("hash.key")).unwrap();
    let records = read_records(&data);
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for r in &records {
        assert_eq!(r.namespace, "audited");
        assert_eq!(r.method, "Put");
        for id in &r.ids {
            *per_id.entry(id.as_str()).or_default() += 1;
        }
    }
    let mut missing = Vec::new();
    for id in &acknowledged {
        match per_id.get(hasher.hash(id.as_bytes()).as_str()) {
            Some(1) => {}
            Some(n) => panic!("{id}: {n} records, expected one"),
            None => missing.push(id),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged calls have no audit record, e.g. {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(5)]
    );
    let text = std::fs::read_to_string(audit_dir(&data).join("audit.jsonl")).unwrap();
    assert!(
        !text.contains("alice@example.com"),
        "a value reached the log"
    );
    assert!(!text.contains("user-0-"), "an id reached the log in clear");
    assert!(
        !text.contains("secret-key"),
        "a key reached the log in clear"
    );
}

#[tokio::test]
async fn every_call_gets_exactly_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path());
    let data = proxy.data_dir.clone();
    let mut kv = proxy.kv_client().await;
    // (request id, namespace in the record, method, status)
    let mut expected: Vec<(String, &str, &str, &str)> = Vec::new();
    for (i, namespace) in ["audited", "lossy"].into_iter().enumerate() {
        let rid = format!("put-{i}");
        kv.put(with_request_id(put(namespace, "o-1", "v"), &rid))
            .await
            .unwrap();
        expected.push((rid, namespace, "Put", "OK"));
        let rid = format!("get-{i}");
        let get = pb::GetRequest {
            namespace: namespace.into(),
            id: "o-1".into(),
            ..Default::default()
        };
        kv.get(with_request_id(tonic::Request::new(get), &rid))
            .await
            .unwrap();
        expected.push((rid, namespace, "Get", "OK"));
        let rid = format!("scan-{i}");
        let scan = pb::ScanRequest {
            namespace: namespace.into(),
            ..Default::default()
        };
        kv.scan(with_request_id(tonic::Request::new(scan), &rid))
            .await
            .unwrap();
        expected.push((rid, namespace, "Scan", "OK"));
        let rid = format!("mutate-{i}");
        let mutate = pb::MutateRequest {
            namespace: namespace.into(),
            mutations: vec![pb::Mutation {
                id: "o-2".into(),
                op: Some(pb::mutation::Op::Put(pb::PutItem {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    ttl: None,
                    expected_version: None,
                })),
            }],
            idempotency_token: String::new(),
        };
        kv.mutate(with_request_id(tonic::Request::new(mutate), &rid))
            .await
            .unwrap();
        expected.push((rid, namespace, "Mutate", "OK"));
        let rid = format!("delete-{i}");
        let delete = pb::DeleteRequest {
            namespace: namespace.into(),
            id: "o-1".into(),
            selection: None,
        };
        kv.delete(with_request_id(tonic::Request::new(delete), &rid))
            .await
            .unwrap();
        expected.push((rid, namespace, "Delete", "OK"));
    }
    // Failed calls are recorded too.
    let err = kv
        .put(with_request_id(put("audited", "", "v"), "bad-id"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    expected.push(("bad-id".into(), "audited", "Put", "INVALID_ARGUMENT"));
    let err = kv
        .put(with_request_id(put("no-such-ns", "o-1", "v"), "unknown-ns"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    expected.push(("unknown-ns".into(), "no-such-ns", "Put", "NOT_FOUND"));
    drop(kv);
    // A graceful stop writes whatever the `drop` namespace still queued.
    let status = proxy.terminate();
    assert!(status.success(), "{status}");

    let records = read_records(&data);
    assert_eq!(
        records.len(),
        expected.len(),
        "one record per call: {records:#?}"
    );
    for (rid, namespace, method, status) in &expected {
        let matching: Vec<_> = records.iter().filter(|r| &r.trace_id == rid).collect();
        assert_eq!(matching.len(), 1, "call {rid}: {matching:?}");
        let r = matching[0];
        assert_eq!(
            (r.namespace.as_str(), r.method.as_str(), r.status.as_str()),
            (*namespace, *method, *status),
            "call {rid}"
        );
        assert_eq!(r.principal, "anonymous");
        assert_eq!(r.dal, "keyvalue");
        assert!(r.time.ends_with('Z') && r.time.len() == 24, "{}", r.time);
    }
    let scan = records.iter().find(|r| r.trace_id == "scan-0").unwrap();
    assert_eq!(scan.ids.len(), 1, "a scan records the ids it returned");
}

/// Reads `child`'s stdout lines on a thread.
fn line_reader(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test]
async fn prismctl_audit_tail_filters_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path());
    let mut kv = proxy.kv_client().await;
    for i in 0..3 {
        kv.put(with_request_id(
            put("audited", &format!("a-{i}"), "v"),
            &format!("a-{i}"),
        ))
        .await
        .unwrap();
        kv.put(with_request_id(
            put("lossy", &format!("l-{i}"), "v"),
            &format!("l-{i}"),
        ))
        .await
        .unwrap();
    }
    // `lossy` records are written asynchronously; wait for them to be in.
    let deadline = Instant::now() + WAIT;
    while read_records(&proxy.data_dir).len() < 6 {
        assert!(Instant::now() < deadline, "records not written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let out = prismctl(
        proxy.grpc,
        &["-o", "json", "audit", "tail", "--namespace", "audited"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let traces: Vec<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["namespace"], "audited", "{l}");
            v["trace_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(traces, ["a-0", "a-1", "a-2"]);

    let out = prismctl(proxy.grpc, &["audit", "tail", "-n", "1"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one record: {stdout}");
    assert!(lines[0].starts_with("TIME"), "{stdout}");
    assert!(
        lines[1].contains("Put") && lines[1].contains("OK"),
        "{stdout}"
    );

    let out = prismctl(proxy.grpc, &["audit", "tail", "--status", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a gRPC status name"), "{stderr}");

    // --follow prints a record made after it started. Without backlog (-n
    // 0) the first line is a record made after the subscription; keep
    // writing until one arrives.
    let mut child = Command::new(binary("prismctl"))
        .args(["--addr", &proxy.grpc_url()])
        .args(["-o", "json", "audit", "tail", "--namespace", "audited"])
        .args(["--follow", "-n", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_reader(child.stdout.take().unwrap());
    let deadline = Instant::now() + WAIT;
    let mut sent = Vec::new();
    let first = loop {
        assert!(Instant::now() < deadline, "--follow printed nothing");
        let rid = format!("follow-{}", sent.len());
        kv.put(with_request_id(put("lossy", "x", "v"), "not-this-one"))
            .await
            .unwrap();
        kv.put(with_request_id(put("audited", "x", "v"), &rid))
            .await
            .unwrap();
        sent.push(rid);
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            break line;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["namespace"], "audited");
    assert!(
        sent.iter().any(|s| v["trace_id"] == s.as_str()),
        "{first} is one of the calls made while following"
    );
    assert!(child.try_wait().unwrap().is_none(), "still following");
    child.kill().unwrap();
    child.wait().unwrap();
}
