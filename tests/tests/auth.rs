//! Authentication through a real `prism-proxy`: JWT bearer tokens checked
//! against a local OIDC issuer's JWKS, mTLS client certificates, the
//! health service open to probes, and `prismctl login/whoami/logout`.

use std::path::Path;

use prism_proto::admin::v1::WhoAmIRequest;
use prism_proto::admin::v1::admin_service_client::AdminServiceClient;
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_tests::oidc::{self, TestIssuer};
use prism_tests::pki::{CertFiles, TestPki};
use prism_tests::{ProxyProcess, binary};
use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request};

const NS: &str = "secure";

/// Writes `prism.yaml` (namespace `secure` on memstore) with this `auth:`
/// section and starts the proxy with it.
fn start_proxy(dir: &Path, auth: &str) -> ProxyProcess {
    let ns = dir.join("ns");
    std::fs::create_dir_all(&ns).unwrap();
    // Any authenticated caller may use `secure`; only bob may use `bobs`.
    std::fs::write(
        ns.join("secure.yaml"),
        format!(
            "name: {NS}\ndal: keyvalue\nbackend:\n  kind: memstore\n\
             policy:\n  read: [\"*\"]\n  write: [\"*\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        ns.join("bobs.yaml"),
        "name: bobs\ndal: keyvalue\nbackend:\n  kind: memstore\n\
         policy:\n  read: [\"user:bob\"]\n  write: [\"user:bob\"]\n",
    )
    .unwrap();
    let config = dir.join("prism.yaml");
    std::fs::write(&config, format!("namespaces:\n  dir: ns\nauth:\n{auth}")).unwrap();
    ProxyProcess::start_with(
        &dir.join("data"),
        &["--config", &config.display().to_string()],
    )
}

fn jwt_section(issuer: &TestIssuer) -> String {
    format!(
        "  jwt:\n    issuer: {}\n    audience: {}\n    jwks_url: {}\n    leeway_secs: 0\n",
        issuer.url(),
        oidc::AUDIENCE,
        issuer.jwks_url()
    )
}

fn tls_section(pki: &TestPki, require_client_cert: bool) -> String {
    format!(
        "  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n    \
         require_client_cert: {require_client_cert}\n",
        pki.server.cert.display(),
        pki.server.key.display(),
        pki.ca.display()
    )
}

async fn tls_channel(
    proxy: &ProxyProcess,
    pki: &TestPki,
    client: Option<&CertFiles>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .domain_name("localhost");
    if let Some(c) = client {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&c.cert).unwrap(),
            std::fs::read(&c.key).unwrap(),
        ));
    }
    Endpoint::from_shared(format!("https://{}", proxy.grpc))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

fn with_token<T>(message: T, authorization: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    request
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn put(id: &str) -> pb::PutRequest {
    pb::PutRequest {
        namespace: NS.into(),
        id: id.into(),
        items: vec![pb::PutItem {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    }
}

fn get(id: &str) -> pb::GetRequest {
    pb::GetRequest {
        namespace: NS.into(),
        id: id.into(),
        ..Default::default()
    }
}

/// How many items record `id` holds, read with a good token.
async fn items(kv: &mut KeyValueServiceClient<Channel>, good: &str, id: &str) -> usize {
    kv.get(with_token(get(id), Some(good)))
        .await
        .expect("a get with a good token")
        .into_inner()
        .items
        .len()
}

#[tokio::test]
async fn bad_credentials_are_refused_with_the_reason_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::start();
    let pki = TestPki::generate(&dir.path().join("pki"), "svc-orders");
    let proxy = start_proxy(
        dir.path(),
        &format!(
            "  enabled: true\n{}{}",
            jwt_section(&issuer),
            tls_section(&pki, false)
        ),
    );
    let channel = tls_channel(&proxy, &pki, None).await.expect("TLS connect");
    let mut kv = KeyValueServiceClient::new(channel.clone());
    let good = bearer(&issuer.sign(&issuer.claims("alice")));

    // A record written with a good token, which no bad credential may read.
    kv.put(with_token(put("canary"), Some(&good)))
        .await
        .expect("a put with a good token");

    let now = jsonwebtoken::get_current_timestamp();
    let claims = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = issuer.claims("mallory");
        f(&mut c);
        c
    };
    let rows: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "no credentials"),
        (
            "expired",
            Some(bearer(
                &issuer.sign(&claims(&|c| c["exp"] = json!(now - 120))),
            )),
            "token expired at",
        ),
        (
            "wrong audience",
            Some(bearer(
                &issuer.sign(&claims(&|c| c["aud"] = json!("billing"))),
            )),
            "wrong audience",
        ),
        (
            "wrong issuer",
            Some(bearer(&issuer.sign(&claims(&|c| {
                c["iss"] = json!("https://evil.example/")
            })))),
            "wrong issuer: token `iss` is 'https://evil.example/'",
        ),
        (
            "bad signature",
            Some(bearer(
                &issuer.sign_with_stranger(oidc::KID, &issuer.claims("mallory")),
            )),
            "bad token signature",
        ),
        (
            "unknown kid",
            Some(bearer(&issuer.sign_with_stranger(
                "rotated-away",
                &issuer.claims("mallory"),
            ))),
            "unknown key id 'rotated-away'",
        ),
        (
            "not a bearer token",
            Some("Basic bWFsbG9yeTpzZWNyZXQ=".to_string()),
            "not `Bearer <token>`",
        ),
        (
            "garbage token",
            Some(bearer("not.a.jwt")),
            "malformed token",
        ),
    ];
    for (i, (name, authorization, reason)) in rows.iter().enumerate() {
        let id = format!("bad-{i}");
        let err = kv
            .put(with_token(put(&id), authorization.as_deref()))
            .await
            .expect_err(name);
        assert_eq!(err.code(), Code::Unauthenticated, "{name}: {err:?}");
        assert!(err.message().contains(reason), "{name}: {}", err.message());
        let err = kv
            .get(with_token(get("canary"), authorization.as_deref()))
            .await
            .expect_err(name);
        assert_eq!(err.code(), Code::Unauthenticated, "{name}: read refused");
        let mut admin = AdminServiceClient::new(channel.clone());
        let err = admin
            .who_am_i(with_token(WhoAmIRequest {}, authorization.as_deref()))
            .await
            .expect_err(name);
        assert_eq!(err.code(), Code::Unauthenticated, "{name}: admin refused");
        assert_eq!(
            items(&mut kv, &good, &id).await,
            0,
            "{name}: nothing written"
        );
    }

    // A good token, for another namespace: PERMISSION_DENIED naming the
    // permission; nothing written, nothing read.
    let for_bob = |mut r: pb::PutRequest| {
        r.namespace = "bobs".into();
        r
    };
    let bob = bearer(&issuer.sign(&issuer.claims("bob")));
    kv.put(with_token(for_bob(put("bobs-own")), Some(&bob)))
        .await
        .expect("bob writes his namespace");
    let err = kv
        .put(with_token(for_bob(put("intruder")), Some(&good)))
        .await
        .expect_err("alice writing bob's namespace");
    // Alice holds no permission on 'bobs': she is answered exactly as for a
    // namespace that does not exist, so she cannot probe for its name.
    let mut elsewhere = put("intruder");
    elsewhere.namespace = "no-such-namespace".into();
    let missing = kv
        .put(with_token(elsewhere, Some(&good)))
        .await
        .expect_err("a namespace that does not exist");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert_eq!(
        err.message().replace("'bobs'", "'no-such-namespace'"),
        missing.message()
    );
    assert!(!err.message().contains("bobs,"), "{}", err.message());
    let mut bobs_get = get("bobs-own");
    bobs_get.namespace = "bobs".into();
    let err = kv
        .get(with_token(bobs_get.clone(), Some(&good)))
        .await
        .expect_err("alice reading bob's namespace");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let mut intruder = get("intruder");
    intruder.namespace = "bobs".into();
    let seen = kv
        .get(with_token(intruder, Some(&bob)))
        .await
        .expect("bob reads")
        .into_inner()
        .items;
    assert!(seen.is_empty(), "alice's refused write left nothing");

    // A plain-text client cannot talk to the TLS listener at all.
    let plain = format!("http://{}", proxy.grpc);
    match KeyValueServiceClient::connect(plain).await {
        Err(_) => {}
        Ok(mut client) => {
            let err = client
                .put(with_token(put("plain"), Some(&good)))
                .await
                .expect_err("a plain-text call to a TLS listener");
            assert_ne!(err.code(), Code::Ok);
        }
    }
    // A client certificate from an untrusted CA fails the handshake.
    match tls_channel(&proxy, &pki, Some(&pki.stranger)).await {
        Err(_) => {}
        Ok(channel) => {
            let err = KeyValueServiceClient::new(channel)
                .put(Request::new(put("stranger")))
                .await
                .expect_err("an untrusted client certificate");
            assert_ne!(err.code(), Code::Ok);
        }
    }
    assert_eq!(items(&mut kv, &good, "plain").await, 0);
    assert_eq!(items(&mut kv, &good, "stranger").await, 0);
    assert_eq!(items(&mut kv, &good, "canary").await, 1);
    // The refusals are logged with their reason, never with the token.
    let log = proxy.log();
    assert!(log.contains("not authenticated"), "{log}");
    assert!(
        !log.contains(good.trim_start_matches("Bearer ")),
        "token leaked into the log"
    );
}

#[tokio::test]
async fn tokens_and_client_certificates_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::start();
    let pki = TestPki::generate(&dir.path().join("pki"), "svc-orders");
    let proxy = start_proxy(
        dir.path(),
        &format!(
            "  enabled: true\n{}{}",
            jwt_section(&issuer),
            tls_section(&pki, true)
        ),
    );
    let good = bearer(&issuer.sign(&issuer.claims("alice")));

    // mTLS required: no client certificate, no connection.
    let plain = format!("http://{}", proxy.grpc);
    if let Ok(mut client) = KeyValueServiceClient::connect(plain).await {
        let err = client
            .put(with_token(put("plain"), Some(&good)))
            .await
            .expect_err("a plain-text client");
        assert_ne!(err.code(), Code::Ok);
    }
    if let Ok(channel) = tls_channel(&proxy, &pki, None).await {
        let err = KeyValueServiceClient::new(channel)
            .put(with_token(put("no-cert"), Some(&good)))
            .await
            .expect_err("a TLS client without a certificate");
        assert_ne!(err.code(), Code::Ok);
    }

    let channel = tls_channel(&proxy, &pki, Some(&pki.client))
        .await
        .expect("mTLS connect");
    let mut admin = AdminServiceClient::new(channel.clone());
    // The certificate's CN is the principal without a token...
    let me = admin
        .who_am_i(Request::new(WhoAmIRequest {}))
        .await
        .expect("whoami with a client certificate")
        .into_inner();
    assert_eq!(
        (me.subject.as_str(), me.method.as_str()),
        ("svc-orders", "client_cert")
    );
    assert_eq!(me.expires_at_unix_secs, 0);
    // ... and a token wins over the certificate.
    let me = admin
        .who_am_i(with_token(WhoAmIRequest {}, Some(&good)))
        .await
        .expect("whoami with a token")
        .into_inner();
    assert_eq!((me.subject.as_str(), me.method.as_str()), ("alice", "jwt"));
    assert_eq!(me.groups, ["testers"]);
    assert_eq!(me.scopes, ["kv.read", "kv.write"]);
    assert!(me.expires_at_unix_secs > 0);

    let mut kv = KeyValueServiceClient::new(channel);
    kv.put(Request::new(put("by-cert")))
        .await
        .expect("put by certificate");
    assert_eq!(items(&mut kv, &good, "by-cert").await, 1);

    // prismctl speaks mTLS too.
    let out = std::process::Command::new(binary("prismctl"))
        .args([
            "--addr",
            &format!("https://localhost:{}", proxy.grpc.port()),
        ])
        .args(["--ca-file", &pki.ca.display().to_string()])
        .args(["--cert-file", &pki.client.cert.display().to_string()])
        .args(["--key-file", &pki.client.key.display().to_string()])
        .args(["-o", "json", "whoami"])
        .env("PRISM_CONFIG_DIR", dir.path().join("cli"))
        .env_remove("PRISM_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["subject"], "svc-orders");
    assert_eq!(json["method"], "client_cert");
}

#[tokio::test]
async fn health_needs_no_token_but_admin_does() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::start();
    let proxy = start_proxy(
        dir.path(),
        &format!("  enabled: true\n{}", jwt_section(&issuer)),
    );
    let channel = Endpoint::from_shared(proxy.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "prism.keyvalue.v1.KeyValueService".into(),
        })
        .await
        .expect("health without a token")
        .into_inner();
    assert_eq!(status.status, 1, "SERVING");
    let err = AdminServiceClient::new(channel)
        .get_status(Request::new(Default::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let log = proxy.log();
    assert!(log.contains("authentication enabled"), "{log}");
    assert!(
        log.contains("plain text"),
        "warns about tokens in clear: {log}"
    );
}

#[tokio::test]
async fn auth_off_is_anonymous_and_logged_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());
    let channel = Endpoint::from_shared(proxy.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let me = AdminServiceClient::new(channel)
        .who_am_i(Request::new(WhoAmIRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (me.subject.as_str(), me.method.as_str()),
        ("anonymous", "anonymous")
    );
    let log = proxy.log();
    assert!(log.contains("AUTHENTICATION IS DISABLED"), "{log}");
    assert!(log.contains("WARN"), "{log}");
}

fn prismctl_env(proxy: &ProxyProcess, config_dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary("prismctl"))
        .args(["--addr", &proxy.grpc_url()])
        .args(args)
        .env("PRISM_CONFIG_DIR", config_dir)
        .env_remove("PRISM_TOKEN")
        .output()
        .expect("running prismctl")
}

#[test]
fn prismctl_login_whoami_kv_and_logout() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::start();
    let proxy = start_proxy(
        dir.path(),
        &format!("  enabled: true\n{}", jwt_section(&issuer)),
    );
    let cli = dir.path().join("cli-home");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    // Not logged in: refused with the reason and a hint.
    let out = prismctl_env(&proxy, &cli, &["whoami"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("UNAUTHENTICATED"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("prismctl login"),
        "{}",
        text(&out.stderr)
    );

    let out = prismctl_env(
        &proxy,
        &cli,
        &[
            "login",
            "--issuer",
            issuer.url(),
            "--client-id",
            "prismctl",
            "--audience",
            oidc::AUDIENCE,
        ],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("WDJB-MJHT"),
        "prints the user code: {stderr}"
    );
    assert!(
        stderr.contains("/activate"),
        "prints the verification URI: {stderr}"
    );
    assert!(stderr.contains(oidc::DEVICE_SUBJECT), "{stderr}");
    let cached = cli.join("token.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cached).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is private");
    }

    let out = prismctl_env(&proxy, &cli, &["-o", "json", "whoami"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["subject"], oidc::DEVICE_SUBJECT);
    assert_eq!(me["method"], "jwt");
    assert_eq!(me["groups"], json!(["operators"]));
    assert!(me["expires_at"].as_i64().unwrap() > 0);

    let record = ["--namespace", NS, "--id", "cli"];
    let out = prismctl_env(
        &proxy,
        &cli,
        &[&["kv", "put"][..], &record, &["--key", "k", "--value", "v"]].concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = prismctl_env(
        &proxy,
        &cli,
        &[&["-o", "json", "kv", "get"][..], &record].concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"value\": \"v\""),
        "{}",
        text(&out.stdout)
    );

    let out = prismctl_env(&proxy, &cli, &["logout"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!cached.exists());
    let out = prismctl_env(&proxy, &cli, &[&["kv", "get"][..], &record].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no credentials"),
        "{}",
        text(&out.stderr)
    );
}
