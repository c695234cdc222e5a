//! Bearer tokens (`authorization: Bearer <jwt>`) on the gRPC and admin
//! listeners, through `Authenticator::authenticate`: the header's scheme,
//! the token's header (`alg`, `kid`) and the claims, before and after the
//! signature check. The authenticator has an HS256 secret and a JWKS with
//! an ES256 key, both generated when the target starts.
//!
//! The bytes are tried two ways:
//!
//! 1. As the `authorization` header value (and as the token after
//!    `Bearer `). Nothing the fuzzer writes knows the keys, so no such
//!    token may ever authenticate: a success is a forgery.
//! 2. When they hold a newline, as `<header JSON>\n<claims JSON>`, signed
//!    with the HS256 secret: the claims checks run on a valid signature. A
//!    token accepted this way must have the expected `alg`, issuer and
//!    audience, a subject, and an `exp` (and `nbf`) that hold now.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use prism_fuzz::{JWT_AUDIENCE, JWT_ISSUER, JWT_LEEWAY_SECS, auth};
use serde_json::Value;

fn forged(value: &[u8]) {
    if let Some(Ok(principal)) = auth().authenticate(value) {
        panic!("a token made without the keys authenticated as {principal:?}");
    }
}

fn signed(header: &[u8], claims: &[u8]) {
    let auth = auth();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let Ok(signature) = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &auth.hs256,
        jsonwebtoken::Algorithm::HS256,
    ) else {
        return;
    };
    let token = format!("Bearer {message}.{signature}");
    let Some(Ok(principal)) = auth.authenticate(token.as_bytes()) else {
        return;
    };
    let header: Value = serde_json::from_slice(header).expect("an accepted header is JSON");
    assert_eq!(header["alg"], "HS256", "accepted with another algorithm");
    let claims: Value = serde_json::from_slice(claims).expect("accepted claims are JSON");
    assert_eq!(claims["iss"], JWT_ISSUER, "accepted from another issuer");
    let audience_ok = match &claims["aud"] {
        Value::String(aud) => aud == JWT_AUDIENCE,
        Value::Array(auds) => auds.iter().any(|a| a == JWT_AUDIENCE),
        _ => false,
    };
    assert!(
        audience_ok,
        "accepted for another audience: {}",
        claims["aud"]
    );
    assert_eq!(
        claims["sub"].as_str(),
        Some(principal.subject.as_str()),
        "the principal is the subject"
    );
    assert!(!principal.subject.is_empty());
    let now = jsonwebtoken::get_current_timestamp();
    let exp = claims["exp"]
        .as_f64()
        .expect("an accepted token has a numeric exp");
    assert!(
        exp + JWT_LEEWAY_SECS as f64 >= now as f64,
        "accepted after exp"
    );
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64) {
        assert!(nbf <= (now + JWT_LEEWAY_SECS) as f64, "accepted before nbf");
    }
}

fuzz_target!(|data: &[u8]| {
    forged(data);
    let mut bearer = b"Bearer ".to_vec();
    bearer.extend_from_slice(data);
    forged(&bearer);
    if let Some(newline) = data.iter().position(|&b| b == b'\n') {
        signed(&data[..newline], &data[newline + 1..]);
    }
});
