//! Pattern processes: a backend served over gRPC outside the proxy.
//!
//! * [`host`] turns a backend crate's factories (one per DAL) into a
//!   pattern process binary: it serves the lifecycle protocol
//!   (`prism.pattern.v1`) and the DAL's data service on a Unix socket or
//!   TCP address.
//! * [`remote`] is the other side: a backend of every DAL that forwards
//!   each call to a pattern.
//! * [`process`] starts a pattern binary, initializes it, restarts it with
//!   backoff when it dies and drains it on shutdown.
//! * [`wire`] converts the TimeSeries and PubSub backend protocol.
//!
//! The data planes are plain gRPC (KeyValue: the public API; TimeSeries and
//! PubSub: `proto/prism/pattern/v1/backends.proto`), so a pattern may be
//! written in any language; see `proto/prism/pattern/v1/lifecycle.proto`.

pub mod convert;
pub mod host;
pub mod process;
pub mod remote;
pub mod status;
pub mod wire;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Uri};

/// Largest message exchanged with a pattern: pages are bounded by the
/// proxy's own limits, so this only has to be generous.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Metadata header carrying the caller's clock (milliseconds since the
/// epoch) to a pattern started with `--test-clock`. Only for tests that
/// move time with a [`ManualClock`](crate::ManualClock); a pattern without
/// the flag ignores it.
pub const TEST_CLOCK_HEADER: &str = "x-prism-test-clock-ms";

/// Where a pattern listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix domain socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Endpoint {
    /// Parses `unix:///path`, `unix:path`, an absolute path, or
    /// `host:port` / `tcp://host:port` (an IP address, not a name).
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let s = s.trim();
        if let Some(path) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            if path.is_empty() {
                return Err(
                    "a unix: address needs a socket path, e.g. unix:///run/prism/p.sock".into(),
                );
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        let addr = s.strip_prefix("tcp://").unwrap_or(s);
        addr.parse().map(Endpoint::Tcp).map_err(|_| {
            format!(
                "'{s}' is not a pattern address; use unix:///path/to.sock, an absolute socket \
                 path, or IP:PORT such as 127.0.0.1:7001"
            )
        })
    }

    /// A channel to this endpoint that connects lazily and reconnects
    /// after failures. HTTP/2 keepalive pings find a pattern that went
    /// silent (a half-open TCP connection), so its long-lived streams end
    /// and reopen instead of waiting forever.
    pub fn channel(&self, connect_timeout: Duration) -> Channel {
        let keepalive = |e: tonic::transport::Endpoint| {
            e.connect_timeout(connect_timeout)
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
        };
        match self {
            Endpoint::Tcp(addr) => keepalive(
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .expect("a socket address is a valid URI"),
            )
            .tcp_nodelay(true)
            .connect_lazy(),
            Endpoint::Unix(path) => keepalive(tonic::transport::Endpoint::from_static(
                "http://pattern.local",
            ))
            .connect_with_connector_lazy(UnixConnector(path.clone())),
        }
    }
}

/// How often a channel to a pattern pings an idle connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a ping may go unanswered before the connection is dropped.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// Connects tonic channels to a Unix domain socket.
#[derive(Clone)]
struct UnixConnector(PathBuf);

type ConnectFuture =
    Pin<Box<dyn Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send>>;

impl tower_service::Service<Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("unix:///tmp/a.sock").unwrap(),
            Endpoint::Unix("/tmp/a.sock".into())
        );
        assert_eq!(
            Endpoint::parse("/tmp/a.sock").unwrap(),
            Endpoint::Unix("/tmp/a.sock".into())
        );
        assert_eq!(
            Endpoint::parse("127.0.0.1:7001").unwrap(),
            Endpoint::Tcp("127.0.0.1:7001".parse().unwrap())
        );
        assert_eq!(
            Endpoint::parse("tcp://[::1]:7001").unwrap(),
            Endpoint::Tcp("[::1]:7001".parse().unwrap())
        );
        let err = Endpoint::parse("localhost:7001").unwrap_err();
        assert!(err.contains("IP:PORT"), "{err}");
        assert!(Endpoint::parse("unix://").is_err());
    }
}
