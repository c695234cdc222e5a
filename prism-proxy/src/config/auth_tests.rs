use std::path::Path;

use crate::config::*;

/// Loads `prism.yaml` with this `auth:` section (indented two spaces) in a
/// directory that has a namespace dir and the named files.
fn load(auth: &str, files: &[&str]) -> (tempfile::TempDir, Result<ProxyConfig, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ns")).unwrap();
    for f in files {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let text = format!("namespaces:\n  dir: ns\nauth:\n{auth}");
    std::fs::write(dir.path().join("prism.yaml"), text).unwrap();
    let cfg = ProxyConfig::load(&dir.path().join("prism.yaml"));
    (dir, cfg)
}

#[test]
fn auth_is_off_by_default() {
    let cfg = ProxyConfig::embedded_default().unwrap();
    assert_eq!(cfg.auth, AuthConfig::default());
    assert!(!cfg.auth.enabled);
}

#[test]
fn a_full_auth_section_is_resolved() {
    let (dir, cfg) = load(
        "  enabled: true\n  jwt:\n    issuer: https://i.test/\n    audience: prism\n    \
         jwks_file: jwks.json\n    leeway_secs: 5\n    groups_claim: roles\n  tls:\n    \
         cert_file: s.pem\n    key_file: s.key\n    client_ca_file: ca.pem\n",
        &["jwks.json", "s.pem", "s.key", "ca.pem"],
    );
    let auth = cfg.unwrap().auth;
    let jwt = auth.jwt.unwrap();
    assert_eq!(
        jwt.jwks,
        Some(JwksLocation::File(dir.path().join("jwks.json")))
    );
    assert_eq!((jwt.leeway_secs, jwt.groups_claim.as_str()), (5, "roles"));
    let tls = auth.tls.unwrap();
    assert!(tls.require_client_cert, "defaults to true with a client CA");
    assert_eq!(tls.key_file, dir.path().join("s.key"));
}

#[test]
fn jwt_defaults() {
    let (_dir, cfg) = load(
        "  enabled: true\n  jwt:\n    issuer: i\n    audience: a\n    jwks_url: https://i.test/jwks\n",
        &[],
    );
    let jwt = cfg.unwrap().auth.jwt.unwrap();
    assert_eq!(jwt.leeway_secs, 60);
    assert_eq!(jwt.groups_claim, "groups");
    assert_eq!(
        jwt.jwks,
        Some(JwksLocation::Url("https://i.test/jwks".into()))
    );
}

#[test]
fn bad_auth_sections_name_the_field() {
    let cases: &[(&str, &[&str], &str, &str)] = &[
        (
            "  enabled: true\n",
            &[],
            "auth.enabled",
            "nothing can authenticate",
        ),
        (
            "  jwt:\n    audience: a\n    jwks_file: j\n",
            &["j"],
            "auth.jwt.issuer",
            "is required",
        ),
        (
            "  jwt:\n    issuer: i\n    jwks_file: j\n",
            &["j"],
            "auth.jwt.audience",
            "is required",
        ),
        (
            "  jwt:\n    issuer: i\n    audience: a\n",
            &[],
            "auth.jwt",
            "needs keys",
        ),
        (
            "  jwt:\n    issuer: i\n    audience: a\n    jwks_file: missing.json\n",
            &[],
            "auth.jwt.jwks_file",
            "missing.json is not a readable file",
        ),
        (
            "  jwt:\n    issuer: i\n    audience: a\n    jwks_file: j\n    jwks_url: http://x/\n",
            &["j"],
            "auth.jwt.jwks_url",
            "not both",
        ),
        (
            "  jwt:\n    issuer: i\n    audience: a\n    jwks_url: ftp://x/\n",
            &[],
            "auth.jwt.jwks_url",
            "http:// or https://",
        ),
        (
            "  jwt:\n    issuer: i\n    audience: a\n    jwks_file: j\n    leeway: 5\n",
            &["j"],
            "auth.jwt",
            "unknown field `leeway`",
        ),
        (
            "  tls:\n    cert_file: c\n    key_file: k\n    require_client_cert: true\n",
            &["c", "k"],
            "auth.tls.require_client_cert",
            "needs auth.tls.client_ca_file",
        ),
        (
            "  tls:\n    cert_file: c\n",
            &["c"],
            "auth.tls",
            "missing field `key_file`",
        ),
        ("  enable: true\n", &[], "auth", "unknown field `enable`"),
    ];
    for (section, files, field, message) in cases {
        let (_dir, cfg) = load(section, files);
        let err = cfg.unwrap_err();
        assert!(err.file.ends_with("prism.yaml"), "{err}");
        assert!(err.field.starts_with(field), "{section}: {err}");
        assert!(err.message.contains(message), "{section}: {err}");
    }
}

#[test]
fn paths_are_relative_to_prism_yaml() {
    let (dir, cfg) = load("  tls:\n    cert_file: c\n    key_file: k\n", &["c", "k"]);
    let tls = cfg.unwrap().auth.tls.unwrap();
    assert_eq!(tls.cert_file, dir.path().join("c"));
    assert!(!tls.require_client_cert);
    assert!(Path::new(&tls.cert_file).is_absolute());
}
