//! Connecting to the proxy named by `--addr`.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};
use tonic::transport::{Channel, Endpoint};

/// The proxy's default gRPC listener.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8980";

/// How long to wait for the TCP connection to the proxy.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The proxy could not be reached at all (as opposed to an RPC failing).
#[derive(Debug)]
pub struct ProxyUnreachable {
    /// The normalized address that was tried.
    pub addr: String,
    /// The transport error and its causes, joined by `: `.
    pub cause: String,
}

impl fmt::Display for ProxyUnreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot reach the Prism proxy at {}: {}",
            self.addr, self.cause
        )
    }
}

impl StdError for ProxyUnreachable {}

/// Adds `http://` to an address without a scheme; rejects other schemes.
pub fn normalize_addr(addr: &str) -> anyhow::Result<String> {
    let addr = addr.trim();
    if addr.is_empty() {
        bail!("--addr is empty; expected host:port or http://host:port");
    }
    match addr.split_once("://") {
        None => Ok(format!("http://{addr}")),
        Some(("http", _)) => Ok(addr.to_owned()),
        Some(("https", _)) => bail!(
            "--addr '{addr}': https is not supported by prismctl (built without TLS); use http://"
        ),
        Some((scheme, _)) => {
            bail!("--addr '{addr}': unsupported scheme '{scheme}'; expected http://host:port")
        }
    }
}

/// Opens a channel to the proxy at `addr`, waiting at most 5 seconds.
pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    let uri = normalize_addr(addr)?;
    let endpoint = Endpoint::from_shared(uri.clone())
        .with_context(|| {
            format!("invalid --addr '{addr}'; expected host:port or http://host:port")
        })?
        .connect_timeout(CONNECT_TIMEOUT);
    let unreachable = |cause: String| ProxyUnreachable {
        addr: uri.clone(),
        cause,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(err)) => Err(unreachable(error_chain(&err)).into()),
        Err(_) => Err(unreachable(format!("timed out after {CONNECT_TIMEOUT:?}")).into()),
    }
}

/// An error and its sources, joined by `: `, without repeated messages.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_http_to_bare_addresses() {
        assert_eq!(
            normalize_addr("127.0.0.1:8980").unwrap(),
            "http://127.0.0.1:8980"
        );
        assert_eq!(
            normalize_addr(" localhost:1 ").unwrap(),
            "http://localhost:1"
        );
        assert_eq!(normalize_addr(DEFAULT_ADDR).unwrap(), DEFAULT_ADDR);
    }

    #[test]
    fn rejects_other_schemes_and_empty_addresses() {
        assert!(normalize_addr("").is_err());
        let err = normalize_addr("https://h:1").unwrap_err().to_string();
        assert!(err.contains("TLS"), "{err}");
        let err = normalize_addr("ftp://h:1").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme 'ftp'"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_proxy_is_reported_as_such() {
        // Bind then drop a listener so the port is very likely closed.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let err = connect(&format!("127.0.0.1:{port}")).await.unwrap_err();
        let unreachable = err
            .downcast_ref::<ProxyUnreachable>()
            .expect("ProxyUnreachable");
        assert_eq!(unreachable.addr, format!("http://127.0.0.1:{port}"));
    }
}
