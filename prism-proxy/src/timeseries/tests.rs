//! The TimeSeries service on memstore, with a schema and a policy, called in
//! process with the principal the authentication layer would have attached.

use std::sync::Arc;
use std::time::Duration;

use pattern_core::SystemClock;
use prism_proto::timeseries::v1 as pb;
use prism_proto::timeseries::v1::time_series_service_server::TimeSeriesService;
use tokio_stream::StreamExt;
use tonic::{Code, Request};

use super::{TsService, timestamp};
use crate::audit::{AuditLog, TailFilter};
use crate::auth::{AuthMethod, Principal};
use crate::config::{AuditConfig, NamespaceConfig};
use crate::registry::Registry;
use crate::resolver::Resolver;
use crate::schema::tests::{JANE, PROFILE};

const POLICY: &str = r#"
policy:
  write: ["user:writer"]
  read: ["user:reader", "group:support"]
  pii_read: ["group:support"]
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    service: TsService,
    audit: Arc<AuditLog>,
    registry: Arc<Registry>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let proto = PROFILE.replace("option (prism.options.v1.backend) = \"postgres\";", "");
    std::fs::write(dir.path().join("profile.proto"), proto).unwrap();
    let file = dir.path().join("logins.yaml");
    let yaml = format!(
        "name: logins\ndal: timeseries\nbackend:\n  kind: memstore\n\
         timeseries:\n  retention: 7d\n  bucket: 1h\n\
         schema:\n  proto: profile.proto\n  message: acme.users.v1.UserProfile\n  \
         encoding: json\n{POLICY}"
    );
    let config = NamespaceConfig::parse(&file.display().to_string(), &yaml).unwrap();
    let registry = Arc::new(
        Registry::open(
            &[(config, 1)],
            &Resolver::builtin(),
            dir.path(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap(),
    );
    let audit = AuditLog::start(&AuditConfig::default(), dir.path())
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        service: TsService::new(registry.clone(), audit.clone()).with_auth_enabled(true),
        audit,
        registry,
    }
}

fn user(subject: &str, groups: &[&str]) -> Principal {
    Principal {
        subject: subject.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        scopes: Vec::new(),
        method: AuthMethod::Jwt,
        expires_at: None,
    }
}

fn request<T>(message: T, principal: &Principal) -> Request<T> {
    let mut r = Request::new(message);
    r.extensions_mut().insert(principal.clone());
    r
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn event(series: &str, time_us: i64, id: &str, payload: &str) -> pb::Event {
    pb::Event {
        series_id: series.into(),
        event_time: Some(timestamp(time_us)),
        event_id: id.into(),
        tags: [("region".to_string(), "eu".to_string())].into(),
        payload: payload.as_bytes().to_vec(),
    }
}

impl Fixture {
    async fn write(
        &self,
        who: &Principal,
        events: Vec<pb::Event>,
    ) -> Result<pb::WriteResponse, tonic::Status> {
        self.service
            .write(request(
                pb::WriteRequest {
                    namespace: "logins".into(),
                    events,
                },
                who,
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn read(
        &self,
        who: &Principal,
        series: &str,
    ) -> Result<Vec<pb::StoredEvent>, tonic::Status> {
        self.service
            .read(request(
                pb::ReadRequest {
                    namespace: "logins".into(),
                    series_id: series.into(),
                    ..Default::default()
                },
                who,
            ))
            .await
            .map(|r| r.into_inner().events)
    }
}

fn payload(e: &pb::StoredEvent) -> serde_json::Value {
    serde_json::from_slice(&e.event.as_ref().unwrap().payload).unwrap()
}

#[tokio::test]
async fn writes_are_idempotent_and_reads_mask_pii_by_permission() {
    let f = fixture().await;
    let t = now_us();
    let batch = vec![
        event("user-1", t, "e1", JANE),
        event("user-1", t + 1, "e2", JANE),
    ];
    let first = f.write(&user("writer", &[]), batch.clone()).await.unwrap();
    assert_eq!((first.written, first.duplicates), (2, 0));
    let retry = f.write(&user("writer", &[]), batch).await.unwrap();
    assert_eq!((retry.written, retry.duplicates), (0, 2));

    let masked = f.read(&user("reader", &[]), "user-1").await.unwrap();
    assert_eq!(masked.len(), 2);
    assert_ne!(payload(&masked[0])["email"], "jane.doe@example.com");
    let clear = f
        .read(&user("agent", &["support"]), "user-1")
        .await
        .unwrap();
    assert_eq!(payload(&clear[0])["email"], "jane.doe@example.com");

    // Permission, validation and the wrong DAL are refused with what to do.
    let denied = f
        .write(&user("reader", &[]), vec![event("user-1", t, "e3", "{}")])
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let bad = f
        .write(
            &user("writer", &[]),
            vec![event("user-1", t, "e4", "not json")],
        )
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("events[0].payload"),
        "{}",
        bad.message()
    );
    for (series, id, tag) in [
        ("user\0-1", "e6", "eu"),
        ("user-1", "e\0", "eu"),
        ("user-1", "e7", "e\0u"),
    ] {
        let mut e = event(series, t, id, "{}");
        e.tags.insert("region".into(), tag.into());
        let bad = f.write(&user("writer", &[]), vec![e]).await.unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(bad.message().contains("NUL"), "{}", bad.message());
    }
    let mut no_time = event("user-1", t, "e5", "{}");
    no_time.event_time = None;
    let bad = f
        .write(&user("writer", &[]), vec![no_time])
        .await
        .unwrap_err();
    assert!(
        bad.message().contains("events[0].event_time is required"),
        "{}",
        bad.message()
    );
    let mut nanos = event("user-1", t, "e6", "{}");
    nanos.event_time.as_mut().unwrap().nanos = 1;
    let bad = f
        .write(&user("writer", &[]), vec![nanos])
        .await
        .unwrap_err();
    assert!(
        bad.message().contains("sub-microsecond"),
        "{}",
        bad.message()
    );
    // Nothing of the refused batches was written.
    assert_eq!(
        f.read(&user("agent", &["support"]), "user-1")
            .await
            .unwrap()
            .len(),
        2
    );

    let kv = crate::kv::KvService::new(f.registry.clone(), f.audit.clone()).with_auth_enabled(true);
    let wrong = prism_proto::keyvalue::v1::key_value_service_server::KeyValueService::get(
        &kv,
        request(
            prism_proto::keyvalue::v1::GetRequest {
                namespace: "logins".into(),
                id: "x".into(),
                ..Default::default()
            },
            &user("reader", &[]),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(wrong.code(), Code::FailedPrecondition);
    assert!(
        wrong.message().contains("serves the timeseries DAL"),
        "{}",
        wrong.message()
    );
}

#[tokio::test]
async fn a_tail_catches_up_masks_and_is_audited_at_open_and_end() {
    let f = fixture().await;
    let t = now_us();
    f.write(
        &user("writer", &[]),
        (0..5)
            .map(|i| event("user-2", t + i, &format!("old{i}"), JANE))
            .collect(),
    )
    .await
    .unwrap();
    let mut stream = f
        .service
        .tail(request(
            pb::TailRequest {
                namespace: "logins".into(),
                series_id: "user-2".into(),
                from: Some(timestamp(t)),
                tags: Default::default(),
            },
            &user("reader", &[]),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    let mut caught_up = false;
    tokio::time::timeout(Duration::from_secs(10), async {
        while events.len() < 7 {
            match stream.next().await.unwrap().unwrap().item.unwrap() {
                pb::tail_response::Item::Event(e) => events.push(e),
                pb::tail_response::Item::CaughtUp(c) => {
                    assert_eq!(events.len(), 5, "caught up after the stored events");
                    assert_eq!(c.sequence, events.last().unwrap().sequence);
                    caught_up = true;
                    // Live events, one late (an event time in the past).
                    f.write(
                        &user("writer", &[]),
                        vec![event("user-2", t + 100, "live", JANE)],
                    )
                    .await
                    .unwrap();
                    f.write(
                        &user("writer", &[]),
                        vec![event("user-2", t + 2, "late", JANE)],
                    )
                    .await
                    .unwrap();
                }
            }
        }
    })
    .await
    .expect("the tail delivered 7 events");
    assert!(caught_up);
    let ids: Vec<_> = events
        .iter()
        .map(|e| e.event.as_ref().unwrap().event_id.clone())
        .collect();
    assert_eq!(
        ids,
        ["old0", "old1", "old2", "old3", "old4", "live", "late"]
    );
    assert!(
        events
            .iter()
            .all(|e| payload(e)["email"] != "jane.doe@example.com"),
        "masked"
    );
    drop(stream);

    let records = |method: &str| {
        let filter = TailFilter {
            principal: "reader".into(),
            ..Default::default()
        };
        f.audit
            .tail()
            .snapshot(&filter, 50)
            .0
            .into_iter()
            .filter(|r| r.method == method)
            .collect::<Vec<_>>()
    };
    assert_eq!(records("Tail").len(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while records("TailEnd").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no TailEnd record after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end = &records("TailEnd")[0];
    assert_eq!(end.dal, "timeseries");
    assert!(
        end.pii_fields
            .iter()
            .any(|p| p.field == "email" && p.masked),
        "{:?}",
        end.pii_fields
    );
    let json = serde_json::to_string(&**end).unwrap();
    assert!(
        !json.contains("jane") && !json.contains("user-2"),
        "ids hashed, no payload: {json}"
    );
}

#[test]
fn a_log_section_is_checked_when_the_file_is_read() {
    let parse = |log: &str| {
        NamespaceConfig::parse(
            "metrics.yaml",
            &format!(
                "name: metrics\ndal: timeseries\nbackend:\n  kind: memstore\ntimeseries:\n  log:\n{log}"
            ),
        )
    };
    let kind = parse("    kind: kinesis\n").unwrap_err().to_string();
    assert!(
        kind.contains("timeseries.log") && kind.contains("use one of: kafka"),
        "{kind}"
    );
    let topic = parse("    kind: kafka\n    options:\n      topic: 'a b'\n")
        .unwrap_err()
        .to_string();
    assert!(topic.contains("not a Kafka topic name"), "{topic}");
    let unknown = parse("    kind: kafka\n    options:\n      broker: x\n")
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("broker"), "{unknown}");
    let config = parse("    kind: kafka\n").unwrap();
    assert_eq!(config.timeseries_settings().log.unwrap().kind, "kafka");
}
