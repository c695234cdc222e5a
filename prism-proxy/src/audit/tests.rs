use std::time::Duration;

use prism_proto::keyvalue::v1 as pb;

use super::*;
use crate::config::{AuditFile, FileSinkFile, NatsSinkConfig, SinkKind};

/// A log whose writer is not running: the test plays the writer.
fn unstarted(capacity: usize, block_timeout: Duration) -> (AuditLog, mpsc::Receiver<Msg>) {
    let (tx, rx) = mpsc::channel(capacity);
    let log = AuditLog {
        tx,
        hasher: KeyHasher::from_secret(&[7; 32]),
        trace_ids: TraceIds::new(),
        tail: Arc::new(Tail::new(10)),
        sink: "test",
        block_timeout,
        writer: Mutex::new(None),
    };
    (log, rx)
}

fn put_request(id: &str, key: &str, value: &str) -> Request<pb::PutRequest> {
    Request::new(pb::PutRequest {
        namespace: "orders".into(),
        id: id.into(),
        items: vec![pb::PutItem {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    })
}

fn some_record(log: &AuditLog, id: &str) -> AuditRecord {
    let call = log.call("Put", &put_request(id, "k", "v"));
    log.record(
        call,
        "keyvalue",
        Some(&NamespaceAudit::default()),
        tonic::Code::Ok,
        None,
    )
}

#[test]
fn a_record_holds_hashed_ids_and_keys_and_no_value() {
    let (log, _rx) = unstarted(4, Duration::from_secs(1));
    let call = log.call("Put", &put_request("user-42", "email", "alice@example.com"));
    let record = log.record(
        call,
        "keyvalue",
        Some(&NamespaceAudit::default()),
        tonic::Code::Ok,
        Some(&pb::PutResponse::default()),
    );
    let json = serde_json::to_value(&record).unwrap();
    let fields: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        // serde_json sorts object keys.
        [
            "dal",
            "ids",
            "keys",
            "latency_us",
            "method",
            "namespace",
            "pii_fields",
            "principal",
            "status",
            "time",
            "trace_id"
        ]
    );
    let text = json.to_string();
    for secret in ["alice@example.com", "user-42", "email"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert_eq!(json["ids"][0], log.hasher().hash(b"user-42"));
    assert_eq!(json["keys"][0], log.hasher().hash(b"email"));
    assert_eq!(json["status"], "OK");
    assert_eq!(json["principal"], "anonymous");
    assert_eq!(json["namespace"], "orders");
    assert!(json["time"].as_str().unwrap().ends_with('Z'));

    let clear = NamespaceAudit {
        clear_keys: true,
        ..Default::default()
    };
    let call = log.call("Put", &put_request("user-42", "email", "alice@example.com"));
    let record = log.record(call, "keyvalue", Some(&clear), tonic::Code::Ok, None);
    assert_eq!(record.ids, ["user-42"]);
    assert_eq!(record.keys, ["email"]);
    let text = serde_json::to_string(&record).unwrap();
    assert!(!text.contains("alice@example.com"), "values never: {text}");
}

#[test]
fn unknown_and_invalid_namespaces_are_hashed_and_bounded() {
    let (log, _rx) = unstarted(4, Duration::from_secs(1));
    let mut request = put_request("user-42", "k", "v");
    request.get_mut().namespace = "No Such/Namespace".into();
    let record = log.record(
        log.call("Put", &request),
        "keyvalue",
        None,
        tonic::Code::NotFound,
        None,
    );
    assert_eq!(record.namespace, INVALID_NAMESPACE);
    assert_eq!(record.status, "NOT_FOUND");
    assert!(record.ids[0].starts_with(HASH_PREFIX));
}

#[test]
fn response_ids_and_keys_are_recorded() {
    let (log, _rx) = unstarted(4, Duration::from_secs(1));
    let scan = Request::new(pb::ScanRequest {
        namespace: "orders".into(),
        ..Default::default()
    });
    let response = pb::ScanResponse {
        records: vec![pb::Record {
            id: "o-1".into(),
            items: vec![pb::Item {
                key: b"total".to_vec(),
                value: b"12".to_vec(),
                ..Default::default()
            }],
        }],
        next_page_token: String::new(),
    };
    let clear = NamespaceAudit {
        clear_keys: true,
        ..Default::default()
    };
    let record = log.record(
        log.call("Scan", &scan),
        "keyvalue",
        Some(&clear),
        tonic::Code::Ok,
        Some(&response),
    );
    assert_eq!(record.ids, ["o-1"]);
    assert_eq!(record.keys, ["total"]);
}

#[test]
fn drop_never_waits_and_counts_what_it_drops() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let (log, mut rx) = unstarted(2, Duration::from_secs(1));
    metrics::with_local_recorder(&recorder, || {
        for i in 0..5 {
            log.enqueue_or_drop(Entry {
                record: some_record(&log, &format!("id-{i}")),
                label: "orders".into(),
                done: None,
            });
        }
    });
    let rendered = handle.render();
    assert!(
        rendered
            .contains("prism_audit_dropped_total{namespace=\"orders\",reason=\"queue_full\"} 3"),
        "{rendered}"
    );
    assert_eq!(log.queue_depth(), 2);
    let mut queued = 0;
    while rx.try_recv().is_ok() {
        queued += 1;
    }
    assert_eq!(queued, 2, "the first two were queued");
}

#[tokio::test(start_paused = true)]
async fn block_waits_for_room_and_for_the_write() {
    let (log, mut rx) = unstarted(1, Duration::from_secs(5));
    let log = Arc::new(log);
    // Fill the queue.
    log.submit(
        some_record(&log, "first"),
        "orders".into(),
        AuditPolicy::Drop,
    )
    .await
    .unwrap();
    let blocked = tokio::spawn({
        let log = log.clone();
        async move {
            let record = some_record(&log, "second");
            log.submit(record, "orders".into(), AuditPolicy::Block)
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!blocked.is_finished(), "waits while the queue is full");
    let Some(Msg::Record(first)) = rx.recv().await else {
        panic!("the first record")
    };
    assert!(first.done.is_none());
    let Some(Msg::Record(second)) = rx.recv().await else {
        panic!("the blocked record, once there was room")
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !blocked.is_finished(),
        "waits until the sink has the record"
    );
    second.done.unwrap().send(Ok(())).unwrap();
    assert_eq!(blocked.await.unwrap(), Ok(()));

    // A sink error and a sink that never answers both fail the call.
    let failing = tokio::spawn({
        let log = log.clone();
        async move {
            let record = some_record(&log, "third");
            log.submit(record, "orders".into(), AuditPolicy::Block)
                .await
        }
    });
    let Some(Msg::Record(third)) = rx.recv().await else {
        panic!("third")
    };
    third.done.unwrap().send(Err("disk full".into())).unwrap();
    assert_eq!(
        failing.await.unwrap(),
        Err(SubmitError::Sink("disk full".into()))
    );
    let started = Instant::now();
    let result = log
        .submit(
            some_record(&log, "fourth"),
            "orders".into(),
            AuditPolicy::Block,
        )
        .await;
    assert_eq!(result, Err(SubmitError::Timeout(Duration::from_secs(5))));
    assert!(started.elapsed() >= Duration::from_secs(5));
    let status = tonic::Status::from(result.unwrap_err());
    assert_eq!(status.code(), tonic::Code::Unavailable);
}

fn file_config(dir: &Path) -> AuditConfig {
    AuditFile {
        file: Some(FileSinkFile {
            path: Some(dir.join("audit.jsonl")),
            ..Default::default()
        }),
        hash_key_file: Some(dir.join("hash.key")),
        ..Default::default()
    }
    .validate("test", |p| p.to_path_buf())
    .unwrap()
}

#[tokio::test]
async fn the_file_sink_writes_one_line_per_record_before_block_returns() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::start(&file_config(dir.path()), dir.path())
        .await
        .unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (log, path) = (log.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("id-{i}");
            let record = some_record(&log, &id);
            log.submit(record, "orders".into(), AuditPolicy::Block)
                .await
                .unwrap();
            // Acknowledged: the line is in the file now.
            let text = std::fs::read_to_string(&path).unwrap();
            let hashed = log.hasher().hash(id.as_bytes());
            assert!(text.contains(&hashed), "{id} acknowledged but not written");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let records: Vec<AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 50);
    for i in 0..50 {
        let hashed = log.hasher().hash(format!("id-{i}").as_bytes());
        assert_eq!(
            records.iter().filter(|r| r.ids == [hashed.clone()]).count(),
            1,
            "one record for id-{i}"
        );
    }
    let (recent, _) = log.tail().snapshot(&TailFilter::default(), 100);
    assert_eq!(recent.len(), 50, "written records reach the tail");
    log.close().await;
    let after = log
        .submit(
            some_record(&log, "late"),
            "orders".into(),
            AuditPolicy::Block,
        )
        .await;
    assert_eq!(after, Err(SubmitError::Closed));
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{}x{nanos}", std::process::id())
}

#[tokio::test]
async fn the_nats_sink_publishes_per_namespace_and_waits_for_jetstream() {
    use tokio_stream::StreamExt as _;
    let url = std::env::var("PRISM_TEST_NATS_URL").unwrap_or("nats://127.0.0.1:4222".into());
    let url = url.as_str();
    let prefix = format!("prism.audit.test.{}", unique("t"));
    let dir = tempfile::tempdir().unwrap();
    let config = AuditFile {
        sink: SinkKind::Nats,
        nats: Some(NatsSinkConfig {
            url: url.into(),
            subject_prefix: prefix.clone(),
            timeout_ms: 5000,
        }),
        hash_key_file: Some(dir.path().join("hash.key")),
        ..Default::default()
    }
    .validate("test", |p| p.to_path_buf())
    .unwrap();
    let log = AuditLog::start(&config, dir.path()).await.unwrap();
    let client = async_nats::connect(url).await.unwrap();
    let mut sub = client.subscribe(format!("{prefix}.>")).await.unwrap();
    client.flush().await.unwrap();

    // No stream captures the subject: published, received by the server.
    let record = some_record(&log, "plain");
    log.submit(record.clone(), "orders".into(), AuditPolicy::Block)
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a message in time")
        .unwrap();
    assert_eq!(message.subject.as_str(), format!("{prefix}.orders"));
    let got: AuditRecord = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(got, record);

    // A stream captures the subject: the call returns once it is stored.
    let js = async_nats::jetstream::new(client.clone());
    let name = unique("PRISM_AUDIT_TEST_").replace('.', "_");
    let mut stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..3 {
        let record = some_record(&log, &format!("stored-{i}"));
        log.submit(record, "billing".into(), AuditPolicy::Block)
            .await
            .unwrap();
    }
    let stored = stream.info().await.unwrap().state.messages;
    js.delete_stream(&name).await.unwrap();
    assert_eq!(stored, 3, "every acknowledged record is in the stream");
    log.close().await;
}

#[tokio::test]
async fn a_nats_sink_that_cannot_connect_fails_start_up_clearly() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = AuditFile {
        sink: SinkKind::Nats,
        nats: Some(NatsSinkConfig {
            url: format!("nats://127.0.0.1:{port}"),
            timeout_ms: 2000,
            ..Default::default()
        }),
        hash_key_file: Some(dir.path().join("hash.key")),
        ..Default::default()
    }
    .validate("test", |p| p.to_path_buf())
    .unwrap();
    let err = match AuditLog::start(&config, dir.path()).await {
        Ok(_) => panic!("nothing listens there"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("connecting"), "{err}");
    assert!(err.contains(&port.to_string()), "{err}");
}
