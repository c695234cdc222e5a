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

use crate::progress::Spinner;
use crate::{config, token_cache};

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
    /// What to check or change.
    pub hint: String,
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
        bail!("the address is empty; expected host:port, http://host:port or https://host:port");
    }
    match addr.split_once("://") {
        None => Ok(format!("http://{addr}")),
        Some(("http" | "https", _)) => Ok(addr.to_owned()),
        Some((scheme, _)) => {
            bail!(
                "address '{addr}': unsupported scheme '{scheme}'; expected http://host:port or \
                 https://host:port"
            )
        }
    }
}

/// Where the proxy is and how to talk to it: global flags of every
/// command that calls the proxy. Each falls back to its environment
/// variable, then to the config file, then to the built-in default.
#[derive(Debug, Clone, Default, Args)]
pub struct Target {
    /// The proxy's gRPC address; `host:port` means `http://host:port`, use
    /// `https://host:port` for a TLS listener [default: http://127.0.0.1:8980]
    #[arg(long, global = true, env = "PRISM_ADDR")]
    pub addr: Option<String>,

    /// A bearer token to send; default: `token` in the config file, else
    /// the token cached by `prismctl login`.
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

    /// The name the proxy's TLS certificate must be issued for; default:
    /// the host of the address.
    #[arg(
        long,
        global = true,
        env = "PRISM_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    pub server_name: Option<String>,
}

/// Where the address in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `--addr` or `PRISM_ADDR`.
    Flag,
    /// `address:` in this config file.
    ConfigFile(PathBuf),
    /// Neither: [`DEFAULT_ADDR`].
    Default,
}

/// The connection settings after applying flag > environment > config
/// file > default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub addr: String,
    pub addr_origin: Origin,
    /// The token from a flag, the environment or the config file; `None`:
    /// use the cached login, if any.
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    /// The config file that was read, for messages.
    pub config_path: Option<PathBuf>,
}

impl Target {
    /// Fills what the flags and environment leave unset from `config`,
    /// then from the defaults.
    pub fn settings(&self, config: &config::Loaded) -> Settings {
        let file = &config.file;
        // An empty PRISM_ADDR counts as unset.
        let flag = self.addr.as_ref().filter(|a| !a.trim().is_empty());
        let (addr, addr_origin) = match (flag, &file.address) {
            (Some(addr), _) => (addr.clone(), Origin::Flag),
            (None, Some(addr)) => (
                addr.clone(),
                Origin::ConfigFile(config.path.clone().unwrap_or_default()),
            ),
            (None, None) => (DEFAULT_ADDR.to_owned(), Origin::Default),
        };
        // A client certificate and its key come from the same place.
        let (cert_file, key_file) = if self.cert_file.is_some() {
            (self.cert_file.clone(), self.key_file.clone())
        } else {
            (file.tls.cert_file.clone(), file.tls.key_file.clone())
        };
        Settings {
            addr,
            addr_origin,
            token: self.token.clone().or_else(|| file.token.clone()),
            ca_file: self.ca_file.clone().or_else(|| file.tls.ca_file.clone()),
            cert_file,
            key_file,
            server_name: self
                .server_name
                .clone()
                .or_else(|| file.tls.server_name.clone()),
            config_path: config.path.clone(),
        }
    }
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

impl Settings {
    /// The token to send: the configured one, else the cached login.
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
                bail!(
                    "a CA file or client certificate (--ca-file, --cert-file or tls: in the \
                     config file) needs an https:// address; '{uri}' is plain text"
                );
            }
            return Ok(None);
        }
        let read = |what: &str, path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
        };
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca_file {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read("CA file", ca)?)),
            None => tls.with_webpki_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            tls = tls.identity(Identity::from_pem(
                read("client certificate", cert)?,
                read("client key", key)?,
            ));
        }
        if let Some(name) = &self.server_name {
            tls = tls.domain_name(name.clone());
        }
        Ok(Some(tls))
    }

    /// What to do when the proxy cannot be reached at this address.
    pub fn unreachable_hint(&self) -> String {
        let config = self
            .config_path
            .clone()
            .or_else(|| config::path().ok())
            .map_or_else(
                || "~/.prism/config.yaml".to_owned(),
                |p| p.display().to_string(),
            );
        let addr = normalize_addr(&self.addr).unwrap_or_else(|_| self.addr.clone());
        match &self.addr_origin {
            Origin::Flag => format!(
                "is prism-proxy running at {}? the address came from --addr or PRISM_ADDR; fix \
                 it there",
                addr
            ),
            Origin::ConfigFile(path) => format!(
                "is prism-proxy running at {}? the address came from `address:` in {}; fix it \
                 there or override it with --addr",
                addr,
                path.display()
            ),
            Origin::Default => format!(
                "is prism-proxy running at {} (the default)? start it with `prism-proxy`, or \
                 set --addr (or PRISM_ADDR) or `address:` in {config}",
                addr
            ),
        }
    }
}

/// Opens a channel to the proxy, waiting at most 5 seconds. Reads the
/// config file for what the flags leave unset.
pub async fn connect(target: &Target) -> anyhow::Result<Conn> {
    let settings = target.settings(&config::load()?);
    connect_with(&settings).await
}

/// Opens a channel with resolved settings.
pub async fn connect_with(settings: &Settings) -> anyhow::Result<Conn> {
    let addr = &settings.addr;
    let uri = normalize_addr(addr)?;
    let bearer = settings.bearer()?;
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .with_context(|| {
            format!("invalid address '{addr}'; expected host:port or http(s)://host:port")
        })?
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(tls) = settings.tls(&uri)? {
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("setting up TLS for {uri}"))?;
    }
    let unreachable = |cause: String| ProxyUnreachable {
        addr: uri.clone(),
        cause,
        hint: settings.unreachable_hint(),
    };
    let spinner = Spinner::start(format!("connecting to {uri}"));
    let result = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await;
    spinner.finish();
    match result {
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
            addr: Some(format!("127.0.0.1:{port}")),
            token: Some("t".into()),
            ..Target::default()
        };
        let err = connect_with(&target.settings(&config::Loaded::default()))
            .await
            .unwrap_err();
        let unreachable = err
            .downcast_ref::<ProxyUnreachable>()
            .expect("ProxyUnreachable");
        assert_eq!(unreachable.addr, format!("http://127.0.0.1:{port}"));
        assert!(
            unreachable.hint.contains("is prism-proxy running at"),
            "{}",
            unreachable.hint
        );
    }

    fn loaded(text: &str) -> config::Loaded {
        let path = PathBuf::from("/cfg/config.yaml");
        config::Loaded {
            file: config::parse(&path, text).unwrap(),
            path: Some(path),
        }
    }

    #[test]
    fn flags_and_environment_beat_the_config_file_which_beats_defaults() {
        let file = loaded(
            "address: cfg:1\ntoken: cfg-token\ntls:\n  ca_file: ca.pem\n  cert_file: c.pem\n  \
             key_file: c.key\n  server_name: cfg-name\n",
        );
        // Nothing set: everything from the file.
        let s = Target::default().settings(&file);
        assert_eq!(s.addr, "cfg:1");
        assert_eq!(s.addr_origin, Origin::ConfigFile("/cfg/config.yaml".into()));
        assert_eq!(s.token.as_deref(), Some("cfg-token"));
        assert_eq!(s.ca_file, Some(PathBuf::from("/cfg/ca.pem")));
        assert_eq!(s.cert_file, Some(PathBuf::from("/cfg/c.pem")));
        assert_eq!(s.key_file, Some(PathBuf::from("/cfg/c.key")));
        assert_eq!(s.server_name.as_deref(), Some("cfg-name"));
        // Flags (clap has already put environment variables in them) win.
        let flags = Target {
            addr: Some("flag:2".into()),
            token: Some("flag-token".into()),
            ca_file: Some("/f/ca.pem".into()),
            cert_file: Some("/f/c.pem".into()),
            key_file: Some("/f/c.key".into()),
            server_name: Some("flag-name".into()),
        };
        let s = flags.settings(&file);
        assert_eq!(s.addr, "flag:2");
        assert_eq!(s.addr_origin, Origin::Flag);
        assert_eq!(s.token.as_deref(), Some("flag-token"));
        assert_eq!(s.ca_file, Some(PathBuf::from("/f/ca.pem")));
        assert_eq!(s.key_file, Some(PathBuf::from("/f/c.key")));
        assert_eq!(s.server_name.as_deref(), Some("flag-name"));
        // Neither: the defaults.
        let s = Target::default().settings(&config::Loaded::default());
        assert_eq!(s.addr, DEFAULT_ADDR);
        assert_eq!(s.addr_origin, Origin::Default);
        assert_eq!(s.token, None);
        assert_eq!(s.ca_file, None);
        assert!(s.unreachable_hint().contains("the default"));
    }

    #[test]
    fn the_hint_names_where_the_address_came_from() {
        let s = Target::default().settings(&loaded("address: h:1\n"));
        let hint = s.unreachable_hint();
        assert!(
            hint.contains("h:1") && hint.contains("/cfg/config.yaml"),
            "{hint}"
        );
        let s = Target {
            addr: Some("h:2".into()),
            ..Target::default()
        }
        .settings(&loaded("address: h:1\n"));
        assert!(s.unreachable_hint().contains("--addr"));
    }

    #[test]
    fn a_ca_file_with_a_plain_text_address_is_refused() {
        let s = Target::default().settings(&loaded("tls:\n  ca_file: ca.pem\n"));
        let err = s.tls("http://127.0.0.1:1").unwrap_err().to_string();
        assert!(err.contains("https://"), "{err}");
    }
}
