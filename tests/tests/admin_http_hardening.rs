//! The admin HTTP listener of a real `prism-proxy` against what a browser
//! sends on behalf of another site: a cross-site `text/plain` POST changes
//! nothing, a page whose domain was rebound to 127.0.0.1 reads nothing
//! while authentication is off, an `Origin` must be the listener itself,
//! and the public endpoints keep answering any `Host`.

use prism_tests::oidc::{self, TestIssuer};
use prism_tests::{ConfigDir, ProxyProcess, free_addr, http_request};
use serde_json::{Value, json};

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn message(body: &str) -> String {
    json_of(body)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn with_authentication_off_cross_site_and_rebound_requests_are_refused() {
    let cfg = ConfigDir::with_namespace("hardening", "dal: keyvalue\nbackend:\n  kind: memstore\n");
    let proxy = cfg.start();
    let admin = proxy.admin;
    let own = format!("127.0.0.1:{}", admin.port());
    let own_origin = format!("http://{own}");
    let created = format!("{}-csrf", cfg.name);
    let body =
        json!({ "yaml": format!("name: {created}\ndal: keyvalue\nbackend:\n  kind: memstore\n") })
            .to_string();
    let get =
        |host: &str, path: &str| http_request(admin, "GET", path, &[("Host", host)], "").unwrap();

    // What a form on another site posts: text/plain, the other site's Origin.
    let (status, answer) = http_request(
        admin,
        "POST",
        "/api/v1/namespaces",
        &[
            ("Host", &own),
            ("Origin", "http://evil.example"),
            ("Content-Type", "text/plain"),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(status, 403, "{answer}");
    assert_eq!(json_of(&answer)["code"], "PERMISSION_DENIED");
    assert!(message(&answer).contains("cross-origin"), "{answer}");
    // Without an Origin (or from this listener's own page), text/plain is
    // still not JSON.
    for origin in [None, Some(own_origin.as_str())] {
        let mut headers = vec![("Host", own.as_str()), ("Content-Type", "text/plain")];
        headers.extend(origin.map(|o| ("Origin", o)));
        let (status, answer) =
            http_request(admin, "POST", "/api/v1/namespaces", &headers, &body).unwrap();
        assert_eq!(status, 415, "{answer}");
        assert_eq!(json_of(&answer)["code"], "INVALID_ARGUMENT");
        assert!(
            message(&answer).contains("Content-Type: application/json"),
            "{answer}"
        );
    }
    let (status, answer) = get(&own, &format!("/api/v1/namespaces/{created}"));
    assert_eq!(status, 404, "nothing was created: {answer}");

    // DNS rebinding: the page's own domain as Host.
    let rebound = format!("rebound.example:{}", admin.port());
    let (status, answer) = get(&rebound, "/api/v1/namespaces");
    assert_eq!(status, 403, "{answer}");
    assert!(
        !answer.contains(&cfg.name),
        "no namespace is listed: {answer}"
    );
    let text = message(&answer);
    assert!(text.contains("loopback"), "{text}");
    assert!(text.contains(&format!("'{rebound}'")), "{text}");
    assert!(
        text.contains(&format!("http://127.0.0.1:{}/", admin.port())),
        "{text}"
    );
    let (status, page) = get(&rebound, "/");
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("auth.enabled"), "{page}");
    // An HTTP/1.0 request without a Host is refused too.
    let (status, answer) = http_request(admin, "GET", "/api/v1/namespaces", &[], "").unwrap();
    assert_eq!(status, 403, "{answer}");
    // The public endpoints answer any Host (probes, Prometheus elsewhere).
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, answer) = get(&rebound, path);
        assert_eq!(status, 200, "{path}: {answer}");
    }

    // A header value is quoted only up to 64 characters.
    let long = format!("http://{}.example", "x".repeat(20_000));
    let (status, answer) = http_request(
        admin,
        "GET",
        "/api/v1/namespaces",
        &[("Host", &own), ("Origin", &long)],
        "",
    )
    .unwrap();
    assert_eq!(status, 403);
    assert!(answer.len() < 1_000, "{} bytes: {answer}", answer.len());
    assert!(
        message(&answer).contains(&format!("({} bytes)", long.len())),
        "{answer}"
    );

    // What the UI and curl send is served: loopback names, JSON, no Origin
    // or this listener's.
    for host in [own.clone(), format!("localhost:{}", admin.port())] {
        let (status, answer) = get(&host, "/api/v1/namespaces");
        assert_eq!(status, 200, "{host}: {answer}");
        assert!(answer.contains(&cfg.name), "{answer}");
    }
    let json_from_ui = [
        ("Host", own.as_str()),
        ("Origin", own_origin.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, answer) =
        http_request(admin, "POST", "/api/v1/namespaces", &json_from_ui, &body).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json_of(&answer)["created"], true);
    // A DELETE has no body, but needs the JSON content type all the same.
    let path = format!("/api/v1/namespaces/{created}");
    let (status, answer) = http_request(admin, "DELETE", &path, &[("Host", &own)], "").unwrap();
    assert_eq!(status, 415, "{answer}");
    let (status, answer) = http_request(
        admin,
        "DELETE",
        &path,
        &[
            ("Host", &own),
            ("Origin", "http://127.0.0.1:1"),
            ("Content-Type", "application/json"),
        ],
        "",
    )
    .unwrap();
    assert_eq!(status, 403, "another port is another origin: {answer}");
    let (status, answer) = http_request(admin, "DELETE", &path, &json_from_ui, "").unwrap();
    assert_eq!(status, 200, "{answer}");
    let (status, _) = get(&own, &path);
    assert_eq!(status, 404);
}

#[test]
fn with_authentication_on_any_host_is_served_but_not_other_origins() {
    let issuer = TestIssuer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("namespaces")).unwrap();
    std::fs::write(
        dir.path().join("prism.yaml"),
        format!(
            "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n\
             auth:\n  enabled: true\n  admins: [\"group:root\"]\n  jwt:\n    issuer: {}\n    \
             audience: {}\n    jwks_url: {}\n",
            free_addr(),
            free_addr(),
            issuer.url(),
            oidc::AUDIENCE,
            issuer.jwks_url()
        ),
    )
    .unwrap();
    let config = dir.path().join("prism.yaml").display().to_string();
    let proxy = ProxyProcess::start_with(&dir.path().join("data"), &["--config", &config]);
    let admin = proxy.admin;
    let mut claims = issuer.claims("rita");
    claims["groups"] = json!(["root"]);
    let bearer = format!("Bearer {}", issuer.sign(&claims));
    let public = format!("prism.internal:{}", admin.port());
    let auth = ("Authorization", bearer.as_str());

    // The token is the defence: a name that is not loopback is served...
    let (status, answer) = http_request(
        admin,
        "GET",
        "/api/v1/whoami",
        &[("Host", &public), auth],
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json_of(&answer)["subject"], "rita");
    // ... without a token it is 401 as before.
    let (status, _) =
        http_request(admin, "GET", "/api/v1/whoami", &[("Host", &public)], "").unwrap();
    assert_eq!(status, 401);
    // Another site's page may not call it even with a token it obtained.
    let (status, answer) = http_request(
        admin,
        "GET",
        "/api/v1/whoami",
        &[("Host", &public), auth, ("Origin", "https://evil.example")],
        "",
    )
    .unwrap();
    assert_eq!(status, 403, "{answer}");
    // A change still needs JSON.
    let (status, answer) = http_request(
        admin,
        "POST",
        "/api/v1/reload",
        &[("Host", &public), auth, ("Content-Type", "text/plain")],
        "",
    )
    .unwrap();
    assert_eq!(status, 415, "{answer}");
    let (status, answer) = http_request(
        admin,
        "POST",
        "/api/v1/reload",
        &[
            ("Host", &public),
            auth,
            ("Origin", &format!("http://{public}")),
            ("Content-Type", "application/json"),
        ],
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
}
