//! The KeyValue service with schemas and policies, called in process with
//! the principal the authentication layer would have attached.

use std::sync::Arc;

use pattern_core::SystemClock;
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_server::KeyValueService;
use prost_reflect::DynamicMessage;
use tonic::{Code, Request};

use super::KvService;
use crate::audit::{AuditLog, TailFilter};
use crate::auth::{AuthMethod, Principal};
use crate::config::AuditConfig;
use crate::config::NamespaceConfig;
use crate::registry::Registry;
use crate::resolver::Resolver;
use crate::schema::tests::{JANE, PROFILE};

struct Fixture {
    _dir: tempfile::TempDir,
    service: KvService,
    audit: Arc<AuditLog>,
    message: prost_reflect::MessageDescriptor,
}

const POLICY: &str = r#"
policy:
  write: ["user:writer", "user:clerk"]
  read: ["user:reader", "group:support", "user:clerk"]
  pii_read: ["group:support"]
"#;

async fn fixture(encoding: &str, policy: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    // The schema asks for postgres; these tests serve it from memstore.
    let proto = PROFILE.replace("option (prism.options.v1.backend) = \"postgres\";", "");
    std::fs::write(dir.path().join("profile.proto"), proto).unwrap();
    let file = dir.path().join("profiles.yaml");
    let yaml = format!(
        "name: profiles\ndal: keyvalue\nbackend:\n  kind: memstore\n\
         schema:\n  proto: profile.proto\n  message: acme.users.v1.UserProfile\n  \
         encoding: {encoding}\n{policy}"
    );
    let config = NamespaceConfig::parse(&file.display().to_string(), &yaml).unwrap();
    let message = config
        .compiled_schema
        .as_ref()
        .unwrap()
        .descriptor()
        .clone();
    let registry = Registry::open(
        &[(config, 1)],
        &Resolver::builtin(),
        dir.path(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let audit = AuditLog::start(&AuditConfig::default(), dir.path())
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        service: KvService::new(Arc::new(registry), audit.clone()).with_auth_enabled(true),
        audit,
        message,
    }
}

fn as_user(subject: &str, groups: &[&str]) -> Principal {
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

impl Fixture {
    fn encode(&self, json: &str) -> Vec<u8> {
        let mut de = serde_json::Deserializer::from_str(json);
        let m = DynamicMessage::deserialize(self.message.clone(), &mut de).unwrap();
        prost::Message::encode_to_vec(&m)
    }

    fn decode(&self, bytes: &[u8]) -> serde_json::Value {
        serde_json::to_value(DynamicMessage::decode(self.message.clone(), bytes).unwrap()).unwrap()
    }

    async fn put(&self, who: &Principal, key: &str, value: Vec<u8>) -> Result<(), tonic::Status> {
        self.service
            .put(request(
                pb::PutRequest {
                    namespace: "profiles".into(),
                    id: "users".into(),
                    items: vec![pb::PutItem {
                        key: key.as_bytes().to_vec(),
                        value,
                        ..Default::default()
                    }],
                    idempotency_token: String::new(),
                },
                who,
            ))
            .await
            .map(|_| ())
    }

    async fn get(&self, who: &Principal) -> Result<Vec<pb::Item>, tonic::Status> {
        Ok(self
            .service
            .get(request(
                pb::GetRequest {
                    namespace: "profiles".into(),
                    id: "users".into(),
                    ..Default::default()
                },
                who,
            ))
            .await?
            .into_inner()
            .items)
    }

    async fn scan(&self, who: &Principal) -> Result<Vec<pb::Item>, tonic::Status> {
        Ok(self
            .service
            .scan(request(
                pb::ScanRequest {
                    namespace: "profiles".into(),
                    ..Default::default()
                },
                who,
            ))
            .await?
            .into_inner()
            .records
            .into_iter()
            .flat_map(|r| r.items)
            .collect())
    }
}

#[tokio::test]
async fn readers_see_pii_masked_unless_they_hold_pii_read() {
    let f = fixture("protobuf", POLICY).await;
    f.put(&as_user("writer", &[]), "u-1", f.encode(JANE))
        .await
        .unwrap();

    for items in [
        f.get(&as_user("reader", &[])).await.unwrap(),
        f.scan(&as_user("reader", &[])).await.unwrap(),
    ] {
        assert_eq!(items.len(), 1);
        let v = f.decode(&items[0].value);
        assert_eq!(v["email"], "j***@example.com");
        assert_eq!(v["ssn"], "***-**-6789");
        assert_eq!(v["fullName"], "J.");
        assert_eq!(v["plan"], "gold", "non-PII fields stay");
    }
    for items in [
        f.get(&as_user("agent", &["support"])).await.unwrap(),
        f.scan(&as_user("agent", &["support"])).await.unwrap(),
    ] {
        let v = f.decode(&items[0].value);
        assert_eq!(v["email"], "jane.doe@example.com");
        assert_eq!(v["ssn"], "123-45-6789");
        assert_eq!(
            items[0].value,
            f.encode(JANE),
            "clear values are the stored bytes"
        );
    }
}

#[tokio::test]
async fn json_namespaces_mask_json() {
    let f = fixture("json", POLICY).await;
    f.put(&as_user("writer", &[]), "u-1", JANE.as_bytes().to_vec())
        .await
        .unwrap();
    let items = f.get(&as_user("reader", &[])).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&items[0].value).unwrap();
    assert_eq!(v["email"], "j***@example.com");
    let err = f
        .put(&as_user("writer", &[]), "u-2", f.encode(JANE))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "protobuf bytes in a json namespace"
    );
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_refused_and_not_stored() {
    let f = fixture("protobuf", POLICY).await;
    let writer = as_user("writer", &[]);
    let err = f
        .put(&writer, "u-1", b"\x0a\x03abc\xa2\x01\x05hello".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("items[0].value"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("nothing was written"),
        "{}",
        err.message()
    );
    assert!(f.get(&as_user("clerk", &[])).await.unwrap().is_empty());

    // A Mutate with one bad value writes none of its good ones.
    let good = f.encode(JANE);
    let err = f
        .service
        .mutate(request(
            pb::MutateRequest {
                namespace: "profiles".into(),
                mutations: vec![
                    pb::Mutation {
                        id: "users".into(),
                        op: Some(pb::mutation::Op::Put(pb::PutItem {
                            key: b"u-2".to_vec(),
                            value: good,
                            ..Default::default()
                        })),
                    },
                    pb::Mutation {
                        id: "users".into(),
                        op: Some(pb::mutation::Op::Put(pb::PutItem {
                            key: b"u-3".to_vec(),
                            value: b"not a profile".to_vec(),
                            ..Default::default()
                        })),
                    },
                ],
                idempotency_token: String::new(),
            },
            &writer,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("mutations[1].put.value"),
        "{}",
        err.message()
    );
    assert!(f.get(&as_user("clerk", &[])).await.unwrap().is_empty());
}

#[tokio::test]
async fn each_permission_is_checked_and_named() {
    let f = fixture("protobuf", POLICY).await;
    let err = f
        .put(&as_user("reader", &[]), "u-1", f.encode(JANE))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message()
            .contains("'reader' lacks the 'write' permission"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("policy.write"), "{}", err.message());
    let err = f.get(&as_user("writer", &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("'read'"), "{}", err.message());
    // A caller with no permission at all is told what a missing namespace
    // would tell it.
    let err = f.scan(&as_user("stranger", &["other"])).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        f.get(&as_user("clerk", &[])).await.unwrap().is_empty(),
        "nothing written"
    );
}

#[tokio::test]
async fn with_auth_enabled_a_namespace_without_policy_denies_everyone() {
    let f = fixture("protobuf", "").await;
    let err = f.get(&as_user("admin", &["platform"])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("has no policy"), "{}", err.message());
    // Without authentication the same namespace serves the anonymous caller,
    // PII included (the local embedded default).
    let open = KvService::new(f.service.pipeline.registry().clone(), f.audit.clone());
    let anonymous = Principal::anonymous();
    let put = pb::PutRequest {
        namespace: "profiles".into(),
        id: "users".into(),
        items: vec![pb::PutItem {
            key: b"u-1".to_vec(),
            value: f.encode(JANE),
            ..Default::default()
        }],
        idempotency_token: String::new(),
    };
    open.put(request(put, &anonymous)).await.unwrap();
    let items = open
        .get(request(
            pb::GetRequest {
                namespace: "profiles".into(),
                id: "users".into(),
                ..Default::default()
            },
            &anonymous,
        ))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(f.decode(&items[0].value)["email"], "jane.doe@example.com");
}

#[tokio::test]
async fn audit_records_name_the_pii_fields_returned_and_whether_masked() {
    let f = fixture("protobuf", POLICY).await;
    f.put(&as_user("writer", &[]), "u-1", f.encode(JANE))
        .await
        .unwrap();
    f.get(&as_user("reader", &[])).await.unwrap();
    f.get(&as_user("agent", &["support"])).await.unwrap();
    let records = |who: &str| {
        let filter = TailFilter {
            principal: who.into(),
            ..Default::default()
        };
        f.audit.tail().snapshot(&filter, 10).0
    };
    let reader = records("reader");
    assert_eq!(reader.len(), 1);
    let fields: Vec<(&str, bool)> = reader[0]
        .pii_fields
        .iter()
        .map(|p| (p.field.as_str(), p.masked))
        .collect();
    assert!(fields.contains(&("email", true)), "{fields:?}");
    assert!(fields.contains(&("home.street", true)), "{fields:?}");
    assert!(fields.iter().all(|(_, masked)| *masked), "{fields:?}");
    let agent = records("agent");
    assert!(
        agent[0]
            .pii_fields
            .iter()
            .any(|p| p.field == "ssn" && !p.masked),
        "{:?}",
        agent[0].pii_fields
    );
    let writer = records("writer");
    assert!(writer[0].pii_fields.is_empty(), "a Put returns no PII");
    let json = serde_json::to_string(&*reader[0]).unwrap();
    assert!(!json.contains("jane"), "{json}");
}
