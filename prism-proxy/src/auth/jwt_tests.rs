use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::json;

use super::*;
use crate::config::JwksLocation;

const ISS: &str = "https://issuer.test/";
const AUD: &str = "prism";

/// A P-256 key: its signing key and its public JWK.
struct Key {
    signing: EncodingKey,
    jwk: Value,
}

fn key(kid: &str) -> Key {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    Key {
        signing: EncodingKey::from_ec_der(&pair.serialize_der()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
    }
}

fn write_jwks(path: &Path, keys: &[&Key]) {
    let set = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
    std::fs::write(path, set.to_string()).unwrap();
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice",
        "exp": get_current_timestamp() + 600,
        "groups": ["orders-writers", "readers"],
        "scope": "kv.read kv.write",
        "scp": ["kv.write", "admin"],
    })
}

fn sign(key: &Key, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    encode(&header, claims, &key.signing).unwrap()
}

fn config(jwks: &Path, hs256: Option<&Path>) -> JwtConfig {
    JwtConfig {
        issuer: ISS.into(),
        audience: AUD.into(),
        jwks: Some(JwksLocation::File(jwks.to_path_buf())),
        hs256_secret_file: hs256.map(Path::to_path_buf),
        leeway_secs: 5,
        groups_claim: "groups".into(),
    }
}

async fn setup() -> (tempfile::TempDir, Key, JwtVerifier) {
    let dir = tempfile::tempdir().unwrap();
    let k = key("k1");
    write_jwks(&dir.path().join("jwks.json"), &[&k]);
    let verifier = JwtVerifier::new(&config(&dir.path().join("jwks.json"), None))
        .await
        .unwrap();
    (dir, k, verifier)
}

#[tokio::test]
async fn a_good_token_maps_sub_groups_and_scopes() {
    let (_dir, k, verifier) = setup().await;
    let c = claims();
    let p = verifier.verify(&sign(&k, "k1", &c)).await.unwrap();
    assert_eq!(p.subject, "alice");
    assert_eq!(p.groups, ["orders-writers", "readers"]);
    assert_eq!(p.scopes, ["kv.read", "kv.write", "admin"]);
    assert_eq!(p.method, AuthMethod::Jwt);
    assert_eq!(p.expires_at, c["exp"].as_u64());
}

#[tokio::test]
async fn each_bad_token_is_refused_with_its_reason() {
    let (_dir, k, verifier) = setup().await;
    let stranger = key("k1");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        c
    };
    let now = get_current_timestamp();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            sign(&k, "k1", &with(&|c| c["exp"] = json!(now - 3600))),
            "token expired at",
        ),
        (
            "wrong audience",
            sign(&k, "k1", &with(&|c| c["aud"] = json!("billing"))),
            "wrong audience: token `aud` is \"billing\", the proxy requires 'prism'",
        ),
        (
            "wrong issuer",
            sign(&k, "k1", &with(&|c| c["iss"] = json!("https://evil.test/"))),
            "wrong issuer: token `iss` is 'https://evil.test/'",
        ),
        (
            "bad signature",
            sign(&stranger, "k1", &claims()),
            "bad token signature",
        ),
        (
            "unknown kid",
            sign(&stranger, "k9", &claims()),
            "unknown key id 'k9'",
        ),
        (
            "no subject",
            sign(
                &k,
                "k1",
                &with(&|c| drop(c.as_object_mut().unwrap().remove("sub"))),
            ),
            "missing the required `sub` claim",
        ),
        (
            "not yet valid",
            sign(&k, "k1", &with(&|c| c["nbf"] = json!(now + 3600))),
            "token not valid before",
        ),
        ("garbage", "not-a-jwt".to_string(), "malformed token"),
        (
            "hs256 without a secret",
            encode(
                &Header::new(Algorithm::HS256),
                &claims(),
                &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            )
            .unwrap(),
            "token algorithm HS256 is not accepted",
        ),
        (
            "groups of the wrong shape",
            sign(&k, "k1", &with(&|c| c["groups"] = json!(7))),
            "claim `groups` has the wrong type",
        ),
    ];
    for (name, token, reason) in cases {
        let err = verifier.verify(&token).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{name}");
        assert!(err.to_string().contains(reason), "{name}: {err}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_unknown_kid_reloads_the_jwks_at_most_every_ten_seconds() {
    let (dir, k, verifier) = setup().await;
    let rotated = key("k2");
    let token = sign(&rotated, "k2", &claims());
    // The issuer rotates its keys; the proxy loaded the set just now.
    write_jwks(&dir.path().join("jwks.json"), &[&k, &rotated]);
    let err = verifier.verify(&token).await.unwrap_err();
    assert!(err.to_string().contains("unknown key id 'k2'"), "{err}");
    assert!(err.to_string().contains("known: k1"), "{err}");
    tokio::time::advance(super::super::jwks::REFRESH_INTERVAL).await;
    let p = verifier.verify(&token).await.unwrap();
    assert_eq!(p.subject, "alice");
    // The old key still works after the reload.
    assert!(verifier.verify(&sign(&k, "k1", &claims())).await.is_ok());
}

#[tokio::test]
async fn hs256_works_with_a_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    let mut cfg = config(&dir.path().join("none.json"), Some(&secret));
    cfg.jwks = None;
    let verifier = JwtVerifier::new(&cfg).await.unwrap();
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
    )
    .unwrap();
    assert_eq!(verifier.verify(&token).await.unwrap().subject, "alice");
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
    )
    .unwrap();
    let err = verifier.verify(&forged).await.unwrap_err();
    assert!(err.to_string().contains("bad token signature"), "{err}");
    // A short secret is refused at start-up.
    std::fs::write(&secret, "short").unwrap();
    let err = JwtVerifier::new(&cfg).await.unwrap_err();
    assert!(err.to_string().contains("at least 32"), "{err}");
}
