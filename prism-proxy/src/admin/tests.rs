//! The admin listener's routes, called in process: the JSON API's status
//! codes, authentication and JSON shapes, the live audit stream, the UI
//! files and the public endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use pattern_core::SystemClock;
use prism_proto::keyvalue::v1 as kv;
use prism_proto::keyvalue::v1::key_value_service_server::KeyValueService;
use serde_json::{Value, json};

use super::{AdminState, router};
use crate::audit::AuditLog;
use crate::auth::{Authenticator, Principal};
use crate::config::{AuditConfig, AuthConfig, BackendCatalog, JwtConfig};
use crate::kv::KvService;
use crate::manage::{Manager, ManagerSetup};
use crate::registry::Registry;
use crate::resolver::Resolver;
use crate::status::AdminApi;
use crate::store::DirStore;

const SECRET: &str = "a-development-secret-of-at-least-32-bytes";
const ISS: &str = "https://issuer.test/";

struct Fixture {
    _dir: tempfile::TempDir,
    app: axum::Router,
    kv: KvService,
}

/// Two namespaces in a directory store: `orders` administered by group
/// `ops`, `billing` by user `carol` only; group `root` administers all.
async fn fixture(auth_enabled: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hs256.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    for (name, admin) in [("orders", "group:ops"), ("billing", "user:carol")] {
        let yaml = format!(
            "name: {name}\ndal: keyvalue\nbackend:\n  kind: memstore\npolicy:\n  \
             read: [\"{admin}\"]\n  write: [\"{admin}\"]\n  admin: [\"{admin}\"]\n"
        );
        std::fs::write(ns_dir.join(format!("{name}.yaml")), yaml).unwrap();
    }
    let registry = Arc::new(Registry::empty());
    let audit = AuditLog::start(&AuditConfig::default(), dir.path())
        .await
        .unwrap();
    let manager = Manager::new(ManagerSetup {
        store: Arc::new(DirStore::new(&ns_dir)),
        registry: registry.clone(),
        audit: audit.clone(),
        catalog: BackendCatalog::default(),
        resolver: Resolver::builtin(),
        data_dir: dir.path().to_path_buf(),
        schema_base: Some(ns_dir.clone()),
        clock: Arc::new(SystemClock),
        grace: Duration::from_secs(5),
    });
    let report = manager.load_initial().await.unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let auth = Authenticator::new(&AuthConfig {
        enabled: auth_enabled,
        jwt: Some(JwtConfig {
            issuer: ISS.into(),
            audience: "prism".into(),
            jwks: None,
            hs256_secret_file: Some(secret),
            leeway_secs: 0,
            groups_claim: "groups".into(),
        }),
        tls: None,
        admins: vec!["group:root".to_string()],
    })
    .await
    .unwrap();
    let api = Arc::new(
        AdminApi::new(registry.clone(), audit.clone(), manager)
            .with_auth_enabled(auth_enabled)
            .with_admins(vec!["group:root".to_string()]),
    );
    let state = Arc::new(AdminState {
        registry: registry.clone(),
        metrics: crate::metrics::install(),
        ready: true.into(),
        api,
        auth,
    });
    Fixture {
        _dir: dir,
        app: router(state),
        kv: KvService::new(registry, audit).with_auth_enabled(auth_enabled),
    }
}

fn token(sub: &str, groups: &[&str], exp_offset: i64) -> String {
    let exp = get_current_timestamp() as i64 + exp_offset;
    encode(
        &Header::default(),
        &json!({ "iss": ISS, "aud": "prism", "sub": sub, "exp": exp, "groups": groups }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn ops() -> String {
    token("olivia", &["ops"], 600)
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> axum::http::Response<Body> {
    let mut headers = vec![("host", "127.0.0.1:8981")];
    if method != "GET" {
        headers.push(("content-type", "application/json"));
    }
    let bearer = token.map(|t| format!("Bearer {t}"));
    if let Some(b) = &bearer {
        headers.push(("authorization", b));
    }
    send_raw(app, method, uri, &headers, body).await
}

/// A request with exactly these headers.
async fn send_raw(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> axum::http::Response<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Body::from(body.to_string())).unwrap();
    let mut service = app.clone();
    tower_service::Service::call(&mut service, request)
        .await
        .unwrap()
}

async fn call(app: &axum::Router, method: &str, uri: &str, token: Option<&str>) -> Answer {
    call_with(app, method, uri, token, "").await
}

async fn call_with(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> Answer {
    answer(send(app, method, uri, token, body).await).await
}

async fn answer(response: axum::http::Response<Body>) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

#[tokio::test]
async fn without_a_valid_token_the_api_answers_401_in_json() {
    let f = fixture(true).await;
    let a = call(&f.app, "GET", "/api/v1/whoami", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["code"], "UNAUTHENTICATED");
    assert!(
        a.json()["message"].as_str().unwrap().contains("Bearer"),
        "{}",
        a.body
    );
    assert_eq!(
        a.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"prism\""
    );
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/json");

    let expired = token("olivia", &["ops"], -600);
    let a = call(&f.app, "GET", "/api/v1/status", Some(&expired)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.json()["message"].as_str().unwrap().contains("expired"));

    let a = call(&f.app, "GET", "/api/v1/status", Some("not.a.jwt")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn whoami_returns_the_token_principal_in_protobuf_json() {
    let f = fixture(true).await;
    let a = call(&f.app, "GET", "/api/v1/whoami", Some(&ops())).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let json = a.json();
    assert_eq!(json["subject"], "olivia");
    assert_eq!(json["groups"], json!(["ops"]));
    assert_eq!(json["scopes"], json!([]), "defaults are present");
    assert_eq!(json["method"], "jwt");
    let exp: u64 = json["expiresAtUnixSecs"].as_str().unwrap().parse().unwrap();
    assert!(exp > get_current_timestamp());
}

#[tokio::test]
async fn with_authentication_off_every_caller_is_anonymous() {
    let f = fixture(false).await;
    let a = call(&f.app, "GET", "/api/v1/whoami", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["method"], "anonymous");
    assert_eq!(a.json()["subject"], "anonymous");
}

#[tokio::test]
async fn status_and_explain_answer_like_the_grpc_service() {
    let f = fixture(true).await;
    let t = ops();
    let a = call(&f.app, "GET", "/api/v1/status", Some(&t)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let names: Vec<_> = a.json()["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["orders"], "only the namespaces olivia administers");
    assert_eq!(a.json()["namespaces"][0]["backendKind"], "memstore");
    assert_eq!(a.json()["namespaces"][0]["healthy"], true);

    let a = call(&f.app, "GET", "/api/v1/namespaces/orders/explain", Some(&t)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["backendKind"], "memstore");
    assert_eq!(a.json()["explicit"], true);

    // Without admin on every namespace, an unknown one reads as denied.
    let a = call(&f.app, "GET", "/api/v1/namespaces/nope/explain", Some(&t)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(a.json()["code"], "PERMISSION_DENIED");
    let root = token("rita", &["root"], 600);
    let a = call(
        &f.app,
        "GET",
        "/api/v1/namespaces/nope/explain",
        Some(&root),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    assert_eq!(a.json()["code"], "NOT_FOUND");
    assert!(a.json()["message"].as_str().unwrap().contains("'nope'"));
}

#[tokio::test]
async fn bad_requests_are_400_with_a_message_that_says_what_to_send() {
    let f = fixture(true).await;
    let t = ops();
    let a = call_with(
        &f.app,
        "POST",
        "/api/v1/namespaces",
        Some(&t),
        "{\"yml\": 1}",
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.json()["code"], "INVALID_ARGUMENT");
    assert!(a.json()["message"].as_str().unwrap().contains("\"yaml\""));

    let a = call_with(&f.app, "POST", "/api/v1/namespaces", Some(&t), "{}").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("yaml is empty")
    );

    let a = call(&f.app, "GET", "/api/v1/audit?status=NOPE", Some(&t)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.json()["message"].as_str().unwrap().contains("NOT_FOUND"));

    let a = call(&f.app, "GET", "/api/v1/audit?limit=many", Some(&t)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.json()["code"], "INVALID_ARGUMENT");

    let a = call(&f.app, "GET", "/api/v1/no-such-thing", Some(&t)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["code"], "NOT_FOUND");
}

#[tokio::test]
async fn the_audit_of_a_namespace_one_does_not_administer_is_403() {
    let f = fixture(true).await;
    let a = call(
        &f.app,
        "GET",
        "/api/v1/audit?namespace=billing",
        Some(&ops()),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(a.json()["code"], "PERMISSION_DENIED");
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("policy.admin")
    );
}

async fn put(f: &Fixture, namespace: &str, who: &str, groups: &[&str]) {
    let mut request = tonic::Request::new(kv::PutRequest {
        namespace: namespace.into(),
        id: "cart".into(),
        items: vec![kv::PutItem {
            key: b"k1".to_vec(),
            value: b"v1".to_vec(),
            ..Default::default()
        }],
        idempotency_token: String::new(),
    });
    request.extensions_mut().insert(Principal {
        subject: who.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        scopes: Vec::new(),
        method: crate::auth::AuthMethod::Jwt,
        expires_at: None,
    });
    f.kv.put(request).await.unwrap();
}

#[tokio::test]
async fn the_audit_tail_lists_recent_records_then_follows_as_ndjson() {
    let f = fixture(true).await;
    let t = ops();
    put(&f, "orders", "olivia", &["ops"]).await;
    put(&f, "billing", "carol", &[]).await;

    // Recent records: only the namespace olivia administers (its data
    // calls and the record of its loading).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let records = loop {
        let a = call(&f.app, "GET", "/api/v1/audit", Some(&t)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let records = a.json()["records"].as_array().unwrap().clone();
        if records.iter().any(|r| r["dal"] == "keyvalue") || tokio::time::Instant::now() > deadline
        {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        records.iter().all(|r| r["namespace"] == "orders"),
        "{records:?}"
    );
    let puts: Vec<_> = records.iter().filter(|r| r["dal"] == "keyvalue").collect();
    assert_eq!(puts.len(), 1, "{records:?}");
    assert_eq!(puts[0]["principal"], "olivia");
    assert_eq!(puts[0]["method"], "Put");
    assert_eq!(puts[0]["status"], "OK");

    // Follow: only new records, one JSON document per line.
    let response = send(
        &f.app,
        "GET",
        "/api/v1/audit?follow=true&limit=0&namespace=orders",
        Some(&t),
        "",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/x-ndjson"
    );
    let mut body = response.into_body();
    put(&f, "orders", "olivia", &["ops"]).await;
    let mut text = String::new();
    while !text.contains('\n') {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a followed record within 10s")
            .expect("the stream stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["namespace"], "orders");
    assert_eq!(line["method"], "Put");
    assert_eq!(line["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_ui_and_the_public_endpoints_need_no_token() {
    let f = fixture(true).await;
    let a = call(&f.app, "GET", "/", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(a.body.contains("Prism admin"), "{}", a.body);
    let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    for file in ["app.js", "api.js", "charts.js", "editor.js", "app.css"] {
        let a = call(&f.app, "GET", &format!("/ui/{file}"), None).await;
        assert_eq!(a.status, StatusCode::OK, "{file}");
        assert!(!a.body.is_empty());
        assert!(
            !a.body.contains("http://") && !a.body.contains("https://"),
            "{file} must not load anything from the network"
        );
    }
    assert_eq!(
        call(&f.app, "GET", "/ui/nope.js", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(call(&f.app, "GET", "/healthz", None).await.body, "ok\n");
    assert_eq!(
        call(&f.app, "GET", "/readyz", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&f.app, "GET", "/metrics", None).await.status,
        StatusCode::OK
    );
    let about = call(&f.app, "GET", "/about", None).await;
    assert!(about.body.contains("/api/v1"), "{}", about.body);
}

#[tokio::test]
async fn namespaces_are_listed_applied_with_a_dry_run_and_deleted() {
    let f = fixture(true).await;
    let root = token("rita", &["root"], 600);
    let t = ops();

    // Olivia administers orders only; the list shows what one administers.
    let a = call(&f.app, "GET", "/api/v1/namespaces", Some(&t)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let names: Vec<_> = a.json()["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["orders"]);

    let a = call(&f.app, "GET", "/api/v1/namespaces/orders", Some(&t)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.json()["yaml"].as_str().unwrap().contains("name: orders"));
    assert_eq!(a.json()["policy"]["admin"], json!(["group:ops"]));
    assert_eq!(a.json()["status"]["healthy"], true);
    let a = call(&f.app, "GET", "/api/v1/namespaces/billing", Some(&t)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);

    // A dry run with a wrong backend: 200 with the error next to its field.
    let bad = json!({ "yaml": "name: stock\ndal: keyvalue\nbackend:\n  kind: nosuchdb\n" });
    let a = call_with(
        &f.app,
        "POST",
        "/api/v1/namespaces?dry_run=true",
        Some(&root),
        &bad.to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["dryRun"], true);
    let errors = a.json()["errors"].as_array().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|e| e["field"].as_str().unwrap().starts_with("backend")),
        "{errors:?}"
    );
    // The same without dry run is refused.
    let a = call_with(
        &f.app,
        "POST",
        "/api/v1/namespaces",
        Some(&root),
        &bad.to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);

    // Creating needs auth.admins.
    let good = json!({ "yaml": "name: stock\ndal: keyvalue\nbackend:\n  kind: memstore\n" });
    let a = call_with(
        &f.app,
        "POST",
        "/api/v1/namespaces",
        Some(&t),
        &good.to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let a = call_with(
        &f.app,
        "POST",
        "/api/v1/namespaces",
        Some(&root),
        &good.to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["created"], true);
    let version = a.json()["version"].as_str().unwrap().to_string();

    // A stale expected version is 412; the right one deletes.
    let a = call(
        &f.app,
        "DELETE",
        "/api/v1/namespaces/stock?expected_version=999999",
        Some(&root),
    )
    .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED, "{}", a.body);
    assert_eq!(a.json()["code"], "FAILED_PRECONDITION");
    let a = call(
        &f.app,
        "DELETE",
        &format!("/api/v1/namespaces/stock?expected_version={version}"),
        Some(&root),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["name"], "stock");
    let a = call(&f.app, "GET", "/api/v1/namespaces/stock", Some(&root)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);

    let a = call(&f.app, "POST", "/api/v1/reload", Some(&root)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.json()["rejected"].as_array().unwrap().is_empty());
}

const STOCK: &str = "{\"yaml\": \"name: stock\\ndal: keyvalue\\nbackend:\\n  kind: memstore\\n\"}";

#[tokio::test]
async fn changes_that_are_not_json_are_415_and_change_nothing() {
    let f = fixture(false).await;
    let local = ("host", "127.0.0.1:8981");
    for headers in [
        vec![local, ("content-type", "text/plain")],
        vec![local, ("content-type", "application/x-www-form-urlencoded")],
        vec![local],
    ] {
        let a = answer(send_raw(&f.app, "POST", "/api/v1/namespaces", &headers, STOCK).await).await;
        assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", a.body);
        assert_eq!(a.json()["code"], "INVALID_ARGUMENT");
        assert!(
            a.json()["message"]
                .as_str()
                .unwrap()
                .contains("Content-Type: application/json"),
            "{}",
            a.body
        );
    }
    let a =
        answer(send_raw(&f.app, "DELETE", "/api/v1/namespaces/orders", &[local], "").await).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", a.body);
    let a = call(&f.app, "GET", "/api/v1/namespaces/stock", None).await;
    assert_eq!(
        a.status,
        StatusCode::NOT_FOUND,
        "nothing was created: {}",
        a.body
    );
    let a = call(&f.app, "GET", "/api/v1/namespaces/orders", None).await;
    assert_eq!(a.status, StatusCode::OK, "nothing was deleted: {}", a.body);

    let json = [local, ("content-type", "application/json; charset=utf-8")];
    let a = answer(send_raw(&f.app, "POST", "/api/v1/namespaces", &json, STOCK).await).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["created"], true);
}

#[tokio::test]
async fn with_authentication_off_only_a_loopback_host_reaches_the_ui_and_api() {
    let f = fixture(false).await;
    let rebound = [("host", "rebound.example:8981")];
    let a = answer(send_raw(&f.app, "GET", "/api/v1/namespaces", &rebound, "").await).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(a.json()["code"], "PERMISSION_DENIED");
    let message = a.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("'rebound.example:8981'"), "{message}");
    assert!(message.contains("http://127.0.0.1:8981/"), "{message}");
    assert!(!a.body.contains("orders"), "{}", a.body);
    let a = answer(send_raw(&f.app, "GET", "/", &rebound, "").await).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("loopback"), "{}", a.body);
    assert!(!a.body.contains("Prism admin"), "{}", a.body);
    // The public endpoints answer any Host.
    for path in ["/healthz", "/readyz", "/metrics", "/about"] {
        let a = answer(send_raw(&f.app, "GET", path, &rebound, "").await).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
    }
    for host in ["localhost:8981", "[::1]:8981", "127.0.0.1:8981"] {
        let a = answer(send_raw(&f.app, "GET", "/api/v1/namespaces", &[("host", host)], "").await)
            .await;
        assert_eq!(a.status, StatusCode::OK, "{host}: {}", a.body);
    }
}

#[tokio::test]
async fn with_authentication_on_any_host_is_served_but_origins_must_match() {
    let f = fixture(true).await;
    let t = format!("Bearer {}", ops());
    let public = ("host", "prism.internal:8981");
    let auth = ("authorization", t.as_str());
    let a = answer(send_raw(&f.app, "GET", "/api/v1/namespaces", &[public, auth], "").await).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = answer(send_raw(&f.app, "GET", "/", &[public], "").await).await;
    assert_eq!(a.status, StatusCode::OK);
    let own = [public, auth, ("origin", "http://prism.internal:8981")];
    let a = answer(send_raw(&f.app, "GET", "/api/v1/namespaces", &own, "").await).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let other = [public, auth, ("origin", "http://evil.example")];
    let a = answer(send_raw(&f.app, "GET", "/api/v1/namespaces", &other, "").await).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(a.json()["code"], "PERMISSION_DENIED");
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("cross-origin"),
        "{}",
        a.body
    );
}
