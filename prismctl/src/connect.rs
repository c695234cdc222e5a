//! Connecting to the proxy named by `--addr`: plain text (`http://`) or TLS
//! (`https://`, optionally with a client certificate), sending a bearer
//! token with every call when there is one.

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::token_cache;

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

/// Adds `http://` to an address without a scheme; rejects schemes other
/// than `http` and `https`.
pub fn normalize_addr(addr: &str) -> anyhow::Result<String> {
    let addr = addr.trim();
    if addr.is_empty() {
        bail!("--addr is empty; expected host:port, http://host:port or https://host:port");
    }
    match addr.split_once("://") {
        None => Ok(format!("http://{addr}")),
        Some(("http" | "https", _)) => Ok(addr.to_owned()),
        Some((scheme, _)) => {
            bail!(
                "--addr '{addr}': unsupported scheme '{scheme}'; expected http://host:port or \
                 https://host:port"
            )
        }
    }
}

/// Where the proxy is and how to talk to it: global flags of every
/// command that calls the proxy.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The proxy's gRPC address; `host:port` means `http://host:port`, use
    /// `https://host:port` for a TLS listener.
    #[arg(long, global = true, env = "PRISM_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,

    /// A bearer token to send; default: the token cached by `prismctl login`.
    #[arg(long, global = true, env = "PRISM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// CA certificate (PEM) that the proxy's TLS certificate must chain to;
    /// default: the Mozilla root certificates.
    #[arg(long, global = true, env = "PRISM_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for an mTLS listener; needs --key-file.
    #[arg(
        long,
        global = true,
        env = "PRISM_CERT_FILE",
        value_name = "PEM",
        requires = "key_file"
    )]
    pub cert_file: Option<PathBuf>,

    /// The client certificate's private key (PEM); needs --cert-file.
    #[arg(
        long,
        global = true,
        env = "PRISM_KEY_FILE",
        value_name = "PEM",
        requires = "cert_file"
    )]
    pub key_file: Option<PathBuf>,
}

/// Adds `authorization: Bearer <token>` to every call when there is a
/// token.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection to the proxy that sends the bearer token.
pub type Conn = InterceptedService<Channel, BearerToken>;

impl Target {
    /// The token to send: --token / PRISM_TOKEN, else the cached one.
    fn bearer(&self) -> anyhow::Result<BearerToken> {
        let token = match &self.token {
            Some(t) => Some(t.trim().to_string()).filter(|t| !t.is_empty()),
            None => token_cache::load()?.map(|cached| cached.access_token),
        };
        let value = token
            .map(|t| {
                MetadataValue::try_from(format!("Bearer {t}"))
                    .context("the token holds characters not allowed in gRPC metadata")
            })
            .transpose()?;
        Ok(BearerToken(value))
    }

    fn tls(&self, uri: &str) -> anyhow::Result<Option<ClientTlsConfig>> {
        if !uri.starts_with("https://") {
            if self.ca_file.is_some() || self.cert_file.is_some() {
                bail!("--ca-file and --cert-file need an https:// --addr; '{uri}' is plain text");
            }
            return Ok(None);
        }
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
        };
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca_file {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read("--ca-file", ca)?)),
            None => tls.with_webpki_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            tls = tls.identity(Identity::from_pem(
                read("--cert-file", cert)?,
                read("--key-file", key)?,
            ));
        }
        Ok(Some(tls))
    }
}

/// Opens a channel to the proxy, waiting at most 5 seconds.
pub async fn connect(target: &Target) -> anyhow::Result<Conn> {
    let addr = &target.addr;
    let uri = normalize_addr(addr)?;
    let bearer = target.bearer()?;
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .with_context(|| {
            format!("invalid --addr '{addr}'; expected host:port or http(s)://host:port")
        })?
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(tls) = target.tls(&uri)? {
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("setting up TLS for {uri}"))?;
    }
    let unreachable = |cause: String| ProxyUnreachable {
        addr: uri.clone(),
        cause,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(InterceptedService::new(channel, bearer)),
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
        assert_eq!(normalize_addr("https://h:1").unwrap(), "https://h:1");
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
        let target = Target {
            addr: format!("127.0.0.1:{port}"),
            token: Some("t".into()),
            ca_file: None,
            cert_file: None,
            key_file: None,
        };
        let err = connect(&target).await.unwrap_err();
        let unreachable = err
            .downcast_ref::<ProxyUnreachable>()
            .expect("ProxyUnreachable");
        assert_eq!(unreachable.addr, format!("http://127.0.0.1:{port}"));
    }
}
