//! A small OpenID Connect issuer for tests, on a free port: discovery,
//! JWKS, the device authorization grant (approved automatically on the
//! second poll, so clients see `authorization_pending` once) and a token
//! endpoint. Its ES256 keys are generated when it starts. It also mints
//! arbitrary tokens, good or bad, for tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The audience tokens are minted for unless asked otherwise.
pub const AUDIENCE: &str = "prism";
/// The subject of tokens from the device flow.
pub const DEVICE_SUBJECT: &str = "device-user";
/// The key id of the issuer's signing key.
pub const KID: &str = "test-key-1";

/// An ES256 signing key and its public JWK.
struct SigningKey {
    encoding: EncodingKey,
    jwk: Value,
}

fn signing_key(kid: &str) -> SigningKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .expect("generating a P-256 key");
    let point = pair.public_key_raw();
    SigningKey {
        encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
    }
}

struct Shared {
    url: String,
    key: SigningKey,
    stranger: SigningKey,
    /// device_code → (polls so far, requested audience).
    devices: Mutex<HashMap<String, (u32, String)>>,
}

/// A running test issuer; stops when dropped.
pub struct TestIssuer {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn sign(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("signing a token")
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Decodes `application/x-www-form-urlencoded`.
fn form(body: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "issuer": s.url,
            "jwks_uri": format!("{}/jwks", s.url),
            "device_authorization_endpoint": format!("{}/device", s.url),
            "token_endpoint": format!("{}/token", s.url),
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code"],
        }),
    )
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, json!({ "keys": [s.key.jwk] }))
}

async fn device(State(s): State<Arc<Shared>>, body: String) -> Response {
    let f = form(&body);
    if f.get("client_id").is_none_or(|c| c.is_empty()) {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_client", "error_description": "client_id is required"}),
        );
    }
    let mut devices = s.devices.lock().unwrap();
    let code = format!("device-{}", devices.len() + 1);
    let audience = f
        .get("audience")
        .cloned()
        .unwrap_or_else(|| AUDIENCE.to_string());
    devices.insert(code.clone(), (0, audience));
    json_response(
        StatusCode::OK,
        json!({
            "device_code": code,
            "user_code": "WDJB-MJHT",
            "verification_uri": format!("{}/activate", s.url),
            "verification_uri_complete": format!("{}/activate?user_code=WDJB-MJHT", s.url),
            "expires_in": 120,
            "interval": 1,
        }),
    )
}

async fn token(State(s): State<Arc<Shared>>, body: String) -> Response {
    let f = form(&body);
    if f.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:device_code")
    {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type"}),
        );
    }
    let code = f.get("device_code").cloned().unwrap_or_default();
    let mut devices = s.devices.lock().unwrap();
    let Some((polls, audience)) = devices.get_mut(&code) else {
        return json_response(StatusCode::BAD_REQUEST, json!({"error": "expired_token"}));
    };
    *polls += 1;
    if *polls == 1 {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "authorization_pending"}),
        );
    }
    let claims = json!({
        "iss": s.url, "aud": audience, "sub": DEVICE_SUBJECT,
        "iat": now(), "exp": now() + 600,
        "groups": ["operators"], "scope": "openid kv.read kv.write",
    });
    let token = sign(&s.key, KID, &claims);
    devices.remove(&code);
    json_response(
        StatusCode::OK,
        json!({"access_token": token, "token_type": "Bearer", "expires_in": 600}),
    )
}

impl TestIssuer {
    /// Starts the issuer on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the issuer");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr: SocketAddr = listener.local_addr().expect("issuer address");
        let shared = Arc::new(Shared {
            url: format!("http://{addr}"),
            key: signing_key(KID),
            stranger: signing_key(KID),
            devices: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/device", post(device))
            .route("/token", post(token))
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("issuer runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        stopped.await.ok();
                    })
                    .await
                    .expect("serving the issuer");
            });
        });
        TestIssuer {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The issuer URL (`iss` of its tokens), `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.shared.url)
    }

    /// Claims of a good token for `sub`: this issuer, [`AUDIENCE`],
    /// expiring in 10 minutes, with groups and scopes.
    pub fn claims(&self, sub: &str) -> Value {
        json!({
            "iss": self.shared.url, "aud": AUDIENCE, "sub": sub,
            "iat": now(), "exp": now() + 600,
            "groups": ["testers"], "scope": "kv.read kv.write",
        })
    }

    /// The `auth:` section of a `prism.yaml` that trusts this issuer's
    /// tokens (authentication on, [`AUDIENCE`]), with `admins` as
    /// `auth.admins`.
    pub fn auth_section(&self, admins: &[&str]) -> String {
        let admins: Vec<String> = admins.iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "auth:\n  enabled: true\n  admins: [{}]\n  jwt:\n    issuer: {}\n    audience: \
             {AUDIENCE}\n    jwks_url: {}\n",
            admins.join(", "),
            self.url(),
            self.jwks_url()
        )
    }

    /// Signs `claims` with the issuer's key (kid [`KID`]).
    pub fn sign(&self, claims: &Value) -> String {
        sign(&self.shared.key, KID, claims)
    }

    /// Signs `claims` with a key that is not in the JWKS, under `kid`:
    /// with [`KID`] the signature does not verify; with another kid the
    /// key is unknown.
    pub fn sign_with_stranger(&self, kid: &str, claims: &Value) -> String {
        sign(&self.shared.stranger, kid, claims)
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::form;

    #[test]
    fn forms_are_decoded() {
        let f = form("grant_type=urn%3Aietf%3Aa&client_id=prism+ctl&x=%7e");
        assert_eq!(f["grant_type"], "urn:ietf:a");
        assert_eq!(f["client_id"], "prism ctl");
        assert_eq!(f["x"], "~");
    }
}
