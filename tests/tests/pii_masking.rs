//! A namespace typed by an annotated `UserProfile`, behind real
//! authentication (tokens from a local OIDC issuer): a writer stores
//! profiles; a reader without `pii:read` gets the PII fields masked, a
//! support agent with it gets them in clear; a value of the wrong type is
//! refused and nothing is stored; and each call's audit record names the
//! PII fields returned and whether they were masked. A JSON value with a
//! key twice, or with a key the schema does not declare, is refused with
//! an error that quotes neither the keys nor the values sent.

use prism_proto::admin::v1::TailAuditRequest;
use prism_proto::admin::v1::admin_service_client::AdminServiceClient;
use prism_proto::keyvalue::v1 as pb;
use prism_tests::oidc::{self, TestIssuer};
use prism_tests::{ConfigDir, ProxyProcess, free_addr, repo_root};
use serde_json::json;
use tonic::{Code, Request};

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn readers_see_masked_pii_unless_they_hold_pii_read() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::start();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    // The example schema from the docs, with a policy naming three callers.
    std::fs::copy(
        repo_root().join("examples/profiles/user_profile.proto"),
        ns_dir.join("user_profile.proto"),
    )
    .unwrap();
    std::fs::write(
        ns_dir.join("profiles.yaml"),
        "name: profiles\ndal: keyvalue\nbackend:\n  kind: memstore\nschema:\n  \
         proto: user_profile.proto\n  message: acme.users.v1.UserProfile\n  encoding: json\n\
         policy:\n  write: [\"user:profile-service\"]\n  read: [\"user:dashboard\", \
         \"group:support\"]\n  pii_read: [\"group:support\"]\n  admin: [\"group:auditors\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("prism.yaml"),
        format!(
            "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n\
             auth:\n  enabled: true\n  jwt:\n    issuer: {}\n    audience: {}\n    \
             jwks_url: {}\n",
            free_addr(),
            free_addr(),
            issuer.url(),
            oidc::AUDIENCE,
            issuer.jwks_url()
        ),
    )
    .unwrap();
    let config = dir.path().join("prism.yaml").display().to_string();
    let data = dir.path().join("data");
    let proxy = ProxyProcess::start_with(&data, &["--config", &config]);
    let mut kv = proxy.kv_client().await;
    let token = |sub: &str, groups: &[&str]| {
        let mut claims = issuer.claims(sub);
        claims["groups"] = json!(groups);
        issuer.sign(&claims)
    };
    let writer = token("profile-service", &[]);
    let dashboard = token("dashboard", &[]);
    let agent = token("agent-7", &["support"]);

    let profile = json!({
        "userId": "u-1",
        "email": "jane.doe@example.com",
        "fullName": "Jane Doe",
        "phones": ["+1 415 555 0142"],
        "ssn": "123-45-6789",
        "home": {"street": "1 Main St", "city": "Springfield", "country": "US"},
        "plan": "gold"
    })
    .to_string();
    let put = |value: Vec<u8>, key: &str| pb::PutRequest {
        namespace: "profiles".into(),
        id: "users".into(),
        items: vec![pb::PutItem {
            key: key.as_bytes().to_vec(),
            value,
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    };
    kv.put(with_token(
        put(profile.clone().into_bytes(), "u-1"),
        &writer,
    ))
    .await
    .expect("the writer stores a profile");

    // A value of another type: refused, nothing stored.
    let err = kv
        .put(with_token(
            put(br#"{"orderId": "o-1", "cents": 1250}"#.to_vec(), "o-1"),
            &writer,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("acme.users.v1.UserProfile"),
        "{}",
        err.message()
    );
    // A reader may not write.
    let err = kv
        .put(with_token(
            put(profile.clone().into_bytes(), "u-2"),
            &dashboard,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    let get = || pb::GetRequest {
        namespace: "profiles".into(),
        id: "users".into(),
        ..Default::default()
    };
    let read = |items: Vec<pb::Item>| -> Vec<serde_json::Value> {
        items
            .iter()
            .map(|i| serde_json::from_slice(&i.value).unwrap())
            .collect()
    };
    let masked = read(
        kv.get(with_token(get(), &dashboard))
            .await
            .unwrap()
            .into_inner()
            .items,
    );
    assert_eq!(masked.len(), 1, "only the valid profile was stored");
    assert_eq!(masked[0]["email"], "j***@example.com");
    assert_eq!(masked[0]["fullName"], "J.");
    assert_eq!(masked[0]["phones"], json!(["+* *** *** **42"]));
    assert_eq!(masked[0]["ssn"], "***-**-6789");
    assert_eq!(masked[0]["home"]["street"], "***");
    assert_eq!(masked[0]["home"]["city"], "Springfield");
    assert_eq!(masked[0]["plan"], "gold");

    let clear = read(
        kv.get(with_token(get(), &agent))
            .await
            .unwrap()
            .into_inner()
            .items,
    );
    assert_eq!(clear[0]["email"], "jane.doe@example.com");
    assert_eq!(clear[0]["ssn"], "123-45-6789");

    // Reading the audit log of a namespace takes `admin` on it.
    let mut admin = AdminServiceClient::connect(proxy.grpc_url()).await.unwrap();
    let tail = |namespace: &str| TailAuditRequest {
        namespace: namespace.into(),
        ..Default::default()
    };
    let err = admin
        .tail_audit(with_token(tail("profiles"), &dashboard))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("'admin'"), "{}", err.message());
    let auditor = token("auditor-1", &["auditors"]);
    let mut stream = admin
        .tail_audit(with_token(tail(""), &auditor))
        .await
        .unwrap()
        .into_inner();
    let mut tailed = 0;
    while let Some(record) = stream.message().await.unwrap() {
        assert_eq!(record.namespace, "profiles");
        tailed += 1;
    }
    assert_eq!(tailed, 5, "the auditor sees every call on the namespace");

    // One audit record per call, naming the PII returned and whether masked.
    let status = proxy.terminate();
    assert!(status.success(), "{status}");
    let audit = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5, "{audit}");
    let get_by = |principal: &str| {
        records
            .iter()
            .find(|r| r["principal"] == principal && r["method"] == "Get")
            .unwrap_or_else(|| panic!("no Get record for {principal}: {audit}"))
    };
    let pii = |r: &serde_json::Value| -> Vec<(String, bool)> {
        r["pii_fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["field"].as_str().unwrap().to_string(),
                    f["masked"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert!(pii(get_by("dashboard")).contains(&("email".to_string(), true)));
    assert!(pii(get_by("agent-7")).contains(&("email".to_string(), false)));
    for secret in ["jane.doe", "Jane Doe", "123-45-6789", "1 Main St", "0142"] {
        assert!(!audit.contains(secret), "{secret} in the audit log");
        assert!(
            !proxy_log_contains(&data, secret),
            "{secret} in the proxy log"
        );
    }
}

#[tokio::test]
async fn json_values_with_a_key_twice_or_an_undeclared_key_are_refused_without_quoting_them() {
    let cfg = ConfigDir::with_namespace(
        "profiles",
        "dal: keyvalue\nbackend:\n  kind: memstore\nschema:\n  proto: user_profile.proto\n  \
         message: acme.users.v1.UserProfile\n  encoding: json\n",
    );
    std::fs::copy(
        repo_root().join("examples/profiles/user_profile.proto"),
        cfg.dir.path().join("namespaces/user_profile.proto"),
    )
    .unwrap();
    let proxy = cfg.start();
    let mut kv = proxy.kv_client().await;
    let put = |value: &str| pb::PutRequest {
        namespace: cfg.name.clone(),
        id: "users".into(),
        items: vec![pb::PutItem {
            key: b"u-1".to_vec(),
            value: value.as_bytes().to_vec(),
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    };
    let refused = [
        (
            r#"{"userId": "u-1", "email": "jane.doe@example.com", "email": "real.owner@example.org"}"#,
            "an object has a duplicate key (at field `email`)",
        ),
        (
            r#"{"fullName": "Jane Doe", "full_name": "John Roe"}"#,
            "an object has a duplicate key (at field `full_name`)",
        ),
        (
            r#"{"home": {"street": "1 Main St", "city": "Springfield", "street": "9 Elm St"}}"#,
            "an object has a duplicate key (at field `home.street`)",
        ),
        (
            r#"{"userId": "u-1", "jane.doe@example.com": "123-45-6789"}"#,
            "an object has a field the schema does not define (in the top-level object)",
        ),
        (
            r#"{"home": {"Jane Doe": "1 Main St"}}"#,
            "an object has a field the schema does not define (inside field `home`)",
        ),
    ];
    let secrets = [
        "jane.doe",
        "real.owner",
        "Jane Doe",
        "John Roe",
        "Main St",
        "Elm St",
        "123-45-6789",
    ];
    for (value, expected) in refused {
        let err = kv.put(put(value)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{value}: {err:?}");
        assert!(
            err.message().contains("acme.users.v1.UserProfile"),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains(expected),
            "{value}: {}",
            err.message()
        );
        for secret in secrets {
            assert!(
                !err.message().contains(secret),
                "{secret}: {}",
                err.message()
            );
        }
    }
    let stored = kv
        .get(pb::GetRequest {
            namespace: cfg.name.clone(),
            id: "users".into(),
            ..Default::default()
        })
        .await;
    match stored {
        Ok(r) => assert!(r.into_inner().items.is_empty(), "nothing was stored"),
        Err(e) => assert_eq!(e.code(), Code::NotFound, "{e:?}"),
    }
    // The same value with each key once is stored.
    kv.put(put(r#"{"userId": "u-1", "email": "jane.doe@example.com"}"#))
        .await
        .expect("a value with each key once");

    let status = proxy.terminate();
    assert!(status.success(), "{status}");
    let data = cfg.dir.path().join("data");
    let audit = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap_or_default();
    for secret in secrets {
        assert!(!audit.contains(secret), "{secret} in the audit log");
        assert!(
            !proxy_log_contains(&data, secret),
            "{secret} in the proxy log"
        );
    }
}

fn proxy_log_contains(data: &std::path::Path, needle: &str) -> bool {
    std::fs::read_dir(data)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .any(|e| std::fs::read_to_string(e.path()).unwrap().contains(needle))
}
