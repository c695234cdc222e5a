//! `prismctl login`: the OAuth 2.0 device authorization grant (RFC 8628)
//! against an OpenID Connect issuer, caching the access token; and
//! `prismctl logout`.
//!
//! Discovery (`<issuer>/.well-known/openid-configuration`) names the
//! device authorization and token endpoints. prismctl asks for a device
//! code, prints where to approve it, and polls the token endpoint every
//! `interval` seconds (slower after `slow_down`) until the login is
//! approved, denied, or the code expires.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;

use crate::token_cache::{self, CachedToken};

/// How long one HTTP request to the issuer may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// The OpenID Connect issuer URL, e.g. https://login.example.com/.
    #[arg(long, env = "PRISM_ISSUER")]
    pub issuer: String,
    /// The OAuth client id registered for prismctl at the issuer.
    #[arg(long, env = "PRISM_CLIENT_ID")]
    pub client_id: String,
    /// The audience to ask for (the proxy's auth.jwt.audience), for
    /// issuers that take an `audience` parameter.
    #[arg(long, env = "PRISM_AUDIENCE")]
    pub audience: Option<String>,
    /// Scopes to ask for, space-separated.
    #[arg(long, default_value = "openid")]
    pub scope: String,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    device_authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

/// What one poll of the token endpoint means.
#[derive(Debug, PartialEq, Eq)]
enum Poll {
    /// Not approved yet: poll again after the interval.
    Pending,
    /// Poll less often: add 5 seconds to the interval.
    SlowDown,
    /// Approved: the access token and its lifetime in seconds.
    Token(String, Option<u64>),
}

/// Reads a token endpoint answer (status, JSON body).
fn poll_result(status: u16, body: &Value) -> Result<Poll> {
    if (200..300).contains(&status) {
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| anyhow!("the issuer's token response has no access_token"))?;
        return Ok(Poll::Token(token.to_string(), body["expires_in"].as_u64()));
    }
    let error = body["error"].as_str().unwrap_or("");
    let description = body["error_description"].as_str().unwrap_or("");
    match error {
        "authorization_pending" => Ok(Poll::Pending),
        "slow_down" => Ok(Poll::SlowDown),
        "expired_token" => {
            bail!("the code expired before the login was approved; run prismctl login again")
        }
        "access_denied" => bail!("the login was denied at the issuer"),
        "" => bail!("the issuer's token endpoint answered HTTP {status} without an error code"),
        other => bail!("the issuer refused the login: {other} {description}"),
    }
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn http_client() -> Result<HttpClient> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .context("setting up TLS")?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Sends a request; returns (status, JSON body).
async fn send(client: &HttpClient, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Value)> {
    let uri = request.uri().to_string();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .with_context(|| format!("cannot reach {uri}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer from {uri}"))?
            .to_bytes();
        let json = serde_json::from_slice(&body).with_context(|| {
            format!("{uri} answered HTTP {status} with something that is not JSON")
        })?;
        Ok((status, json))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("{uri} did not answer within {REQUEST_TIMEOUT:?}"))?
}

fn get(uri: &str) -> Result<hyper::Request<Full<Bytes>>> {
    hyper::Request::get(uri)
        .header("accept", "application/json")
        .body(Full::default())
        .with_context(|| format!("bad URL {uri}"))
}

fn post_form(uri: &str, fields: &[(&str, &str)]) -> Result<hyper::Request<Full<Bytes>>> {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    hyper::Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(body)))
        .with_context(|| format!("bad URL {uri}"))
}

/// Percent-encodes everything but unreserved characters.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A claim of a JWT, read without verifying it (for display only).
fn unverified_claim(token: &str, claim: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get(claim).cloned()
}

/// A one-line progress indicator on stderr while waiting for approval.
struct Progress {
    tty: bool,
    frame: usize,
}

impl Progress {
    fn tick(&mut self, waited: Duration) {
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(
                err,
                "\r{} waiting for approval ({}s)",
                FRAMES[self.frame % FRAMES.len()],
                waited.as_secs()
            );
        } else {
            let _ = write!(err, ".");
        }
        let _ = err.flush();
        self.frame += 1;
    }

    fn done(&self) {
        eprintln!();
    }
}

/// Runs the device flow and caches the token.
pub async fn login(args: LoginArgs) -> Result<()> {
    let client = http_client()?;
    let issuer = args.issuer.trim_end_matches('/');
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        bail!(
            "--issuer '{}' must be an http:// or https:// URL",
            args.issuer
        );
    }
    let discovery_uri = format!("{issuer}/.well-known/openid-configuration");
    let (status, body) = send(&client, get(&discovery_uri)?).await?;
    if status != 200 {
        bail!("OpenID discovery at {discovery_uri} answered HTTP {status}; is --issuer right?");
    }
    let discovery: Discovery = serde_json::from_value(body)
        .with_context(|| format!("reading the discovery document at {discovery_uri}"))?;
    let device_endpoint = discovery.device_authorization_endpoint.ok_or_else(|| {
        anyhow!(
            "the issuer {issuer} does not offer the device authorization grant (no \
             device_authorization_endpoint in {discovery_uri})"
        )
    })?;
    let token_endpoint = discovery
        .token_endpoint
        .ok_or_else(|| anyhow!("no token_endpoint in {discovery_uri}"))?;

    let mut fields = vec![
        ("client_id", args.client_id.as_str()),
        ("scope", args.scope.as_str()),
    ];
    if let Some(audience) = &args.audience {
        fields.push(("audience", audience.as_str()));
    }
    let (status, body) = send(&client, post_form(&device_endpoint, &fields)?).await?;
    if status != 200 {
        bail!(
            "the issuer refused the device authorization request (HTTP {status}): {} {}",
            body["error"].as_str().unwrap_or(""),
            body["error_description"].as_str().unwrap_or("")
        );
    }
    let device: DeviceAuthorization = serde_json::from_value(body)
        .with_context(|| format!("reading the answer from {device_endpoint}"))?;
    eprintln!(
        "To log in, open {} and enter the code: {}",
        device.verification_uri, device.user_code
    );
    if let Some(complete) = &device.verification_uri_complete {
        eprintln!("(or open {complete})");
    }

    let mut interval = Duration::from_secs(device.interval.unwrap_or(5));
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(device.expires_in);
    let mut progress = Progress {
        tty: std::io::stderr().is_terminal(),
        frame: 0,
    };
    let poll_fields = [
        ("grant_type", DEVICE_GRANT),
        ("device_code", device.device_code.as_str()),
        ("client_id", args.client_id.as_str()),
    ];
    let (access_token, expires_in) = loop {
        progress.tick(started.elapsed());
        tokio::time::sleep(interval).await;
        if tokio::time::Instant::now() >= deadline {
            progress.done();
            bail!("the code expired before the login was approved; run prismctl login again");
        }
        let (status, body) = send(&client, post_form(&token_endpoint, &poll_fields)?).await?;
        match poll_result(status, &body) {
            Ok(Poll::Pending) => {}
            Ok(Poll::SlowDown) => interval += Duration::from_secs(5),
            Ok(Poll::Token(token, expires_in)) => break (token, expires_in),
            Err(e) => {
                progress.done();
                return Err(e);
            }
        }
    };
    progress.done();
    let expires_at = expires_in
        .map(|s| now_secs() + s)
        .or_else(|| unverified_claim(&access_token, "exp").and_then(|v| v.as_u64()));
    let subject = unverified_claim(&access_token, "sub")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "(unknown subject)".to_string());
    let path = token_cache::store(&CachedToken {
        issuer: issuer.to_string(),
        client_id: args.client_id,
        access_token,
        expires_at,
    })?;
    eprintln!("logged in as {subject}; token cached in {}", path.display());
    Ok(())
}

/// Removes the cached token.
pub fn logout() -> Result<()> {
    if token_cache::remove()? {
        eprintln!("logged out: removed {}", token_cache::path()?.display());
    } else {
        eprintln!(
            "not logged in: no token at {}",
            token_cache::path()?.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_endpoint_answers_are_read_per_rfc_8628() {
        let pending = json!({"error": "authorization_pending"});
        assert_eq!(poll_result(400, &pending).unwrap(), Poll::Pending);
        let slow = json!({"error": "slow_down"});
        assert_eq!(poll_result(400, &slow).unwrap(), Poll::SlowDown);
        let ok = json!({"access_token": "abc", "expires_in": 60, "token_type": "Bearer"});
        assert_eq!(
            poll_result(200, &ok).unwrap(),
            Poll::Token("abc".into(), Some(60))
        );
        let expired = poll_result(400, &json!({"error": "expired_token"})).unwrap_err();
        assert!(expired.to_string().contains("expired"), "{expired}");
        let denied = poll_result(400, &json!({"error": "access_denied"})).unwrap_err();
        assert!(denied.to_string().contains("denied"), "{denied}");
        let other = poll_result(
            400,
            &json!({"error": "invalid_client", "error_description": "who?"}),
        )
        .unwrap_err();
        assert!(other.to_string().contains("invalid_client who?"), "{other}");
        assert!(poll_result(200, &json!({})).is_err());
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(
            urlencode(DEVICE_GRANT),
            "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
        );
        assert_eq!(urlencode("a b&c=d~"), "a%20b%26c%3Dd~");
    }

    #[test]
    fn claims_are_read_for_display() {
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","exp":42}"#);
        let token = format!("h.{payload}.s");
        assert_eq!(unverified_claim(&token, "sub"), Some(json!("alice")));
        assert_eq!(unverified_claim(&token, "exp"), Some(json!(42)));
        assert_eq!(unverified_claim("garbage", "sub"), None);
    }
}
