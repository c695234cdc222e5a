//! Fetching a JWKS over `http://` or `https://` (rustls with ring and the
//! Mozilla root certificates).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one fetch may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest JWKS accepted.
const MAX_BYTES: usize = 1 << 20;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A small HTTP client for JWKS documents.
#[derive(Clone)]
pub struct Fetcher {
    client: HttpsClient,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fetcher")
    }
}

impl Fetcher {
    pub fn new() -> Result<Self, String> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| format!("setting up TLS: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Fetcher {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// GETs `url` and returns the body of a 200 response.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
        let fetch = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|e| format!("request failed: {}", chain(&e)))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("HTTP status {status}"));
            }
            Ok(body.to_vec())
        };
        tokio::time::timeout(TIMEOUT, fetch)
            .await
            .map_err(|_| format!("timed out after {TIMEOUT:?}"))?
    }
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}
