//! The gRPC listener's connection policy: how many connections may be open
//! at once, how long a new one may take to show it speaks HTTP/2, and
//! what a client beyond the cap is told.
//!
//! One accept task takes connections off the listening socket and hands
//! each to its own task:
//!
//! * Below `listeners.max_connections` the connection takes a slot and
//!   gets `listeners.handshake_timeout_ms` to finish its handshake: TLS
//!   when configured, then the 24-byte HTTP/2 client preface. Then it
//!   goes to the gRPC server, which keeps it (and the slot) until it
//!   closes; one that is late or not HTTP/2 is closed.
//! * At the cap the connection is refused at once: a plain-text client
//!   gets a gRPC `UNAVAILABLE` status on its first call saying the
//!   connection limit was reached, then GOAWAY and close ([`refuse`]); a
//!   TLS connection is closed without a handshake (the client sees
//!   `UNAVAILABLE` from its transport). Refusals are counted in
//!   `prism_connections_refused_total` and logged at most every 10 s.
//!
//! The cap is lowered at start-up so that `listeners.reserved_fds` file
//! descriptors stay free under the process's open-file limit for the
//! admin listener, backends, the audit log and reloads: a flood of
//! connections cannot starve them.

mod accept;
mod admit;
mod refuse;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

pub use admit::Admitted;

use crate::config::Listeners;

/// Connections open on the gRPC listener (gauge), handshaking or served.
pub const OPEN: &str = "prism_connections_open";
/// Connections refused at the cap (counter).
pub const REFUSED: &str = "prism_connections_refused_total";
/// Connections closed before their handshake finished (counter), by
/// `reason`: `timeout`, `not_http2`, `error`.
pub const HANDSHAKE_FAILED: &str = "prism_connection_handshakes_failed_total";

/// Describes the listener's metrics (called once the recorder is
/// installed).
pub fn describe_metrics() {
    metrics::describe_gauge!(
        OPEN,
        "gRPC connections open, counting those still in their handshake"
    );
    metrics::describe_counter!(
        REFUSED,
        "gRPC connections refused because listeners.max_connections were open"
    );
    metrics::describe_counter!(
        HANDSHAKE_FAILED,
        "gRPC connections closed before their handshake finished, by reason \
         (timeout, not_http2, error)"
    );
}

/// Why the limits cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(
        "the open-file limit ({limit}) leaves no descriptor for gRPC connections after \
         listeners.reserved_fds = {reserved}; raise it (ulimit -n, LimitNOFILE=) or lower \
         listeners.reserved_fds"
    )]
    NoRoom { limit: u64, reserved: usize },
}

/// The connection limits the accept task applies.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections open at once (after lowering to the fd limit).
    pub max_connections: usize,
    /// Time from accept to the end of the HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// TCP keepalive idle time, `None` for off.
    pub tcp_keepalive: Option<Duration>,
}

impl Limits {
    /// The limits of `listeners`, with the connection cap lowered to leave
    /// `reserved_fds` under the process's open-file limit (read from
    /// `/proc/self/limits`; unknown elsewhere, then the cap is kept).
    pub fn new(listeners: &Listeners) -> Result<Self, LimitError> {
        let configured = listeners.max_connections;
        let mut max_connections = configured;
        if let Some(limit) = open_file_limit() {
            let room = limit.saturating_sub(listeners.reserved_fds as u64);
            if room == 0 {
                return Err(LimitError::NoRoom {
                    limit,
                    reserved: listeners.reserved_fds,
                });
            }
            if (configured as u64) > room {
                max_connections = room as usize;
                tracing::warn!(
                    configured,
                    max_connections,
                    open_file_limit = limit,
                    reserved_fds = listeners.reserved_fds,
                    "listeners.max_connections lowered to fit the open-file limit; raise \
                     ulimit -n to allow more"
                );
            }
        }
        Ok(Limits {
            max_connections,
            handshake_timeout: listeners.handshake_timeout(),
            tcp_keepalive: listeners.tcp_keepalive(),
        })
    }
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits`.
fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&text)
}

fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What a connection goes through after accept, before the HTTP/2
/// preface: nothing for plain text, the TLS handshake otherwise.
pub trait Handshake: Clone + Send + Sync + 'static {
    /// The connection after the handshake.
    type Io: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static;
    /// Whether a refused connection can be told why in plain HTTP/2.
    const PLAIN_TEXT: bool;
    /// Runs the handshake on an accepted connection.
    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// Plain-text HTTP/2.
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;
    const PLAIN_TEXT: bool = true;

    async fn handshake(&self, tcp: TcpStream) -> io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// HTTP/2 over TLS; the server certificate, client verification and ALPN
/// come from [`crate::auth::server_tls`]. The connection info the gRPC
/// server attaches to calls holds the client's certificates (mTLS).
#[derive(Clone)]
pub struct Tls(pub tokio_rustls::TlsAcceptor);

impl Tls {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Tls(tokio_rustls::TlsAcceptor::from(config))
    }
}

impl Handshake for Tls {
    type Io = TlsStream<TcpStream>;
    const PLAIN_TEXT: bool = false;

    async fn handshake(&self, tcp: TcpStream) -> io::Result<Self::Io> {
        self.0.accept(tcp).await
    }
}

/// Starts accepting on `listener` under `limits`; the stream yields the
/// connections that finished their handshake, for the gRPC server. Once
/// the stream is dropped (the server stops), the accept task ends and
/// closes the listening socket.
pub fn incoming<H: Handshake>(
    listener: TcpListener,
    limits: Limits,
    handshake: H,
) -> impl tokio_stream::Stream<Item = Result<Admitted<H::Io>, std::convert::Infallible>> {
    use tokio_stream::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tracing::info!(
        max_connections = limits.max_connections,
        handshake_timeout_ms = limits.handshake_timeout.as_millis() as u64,
        tls = !H::PLAIN_TEXT,
        "grpc connection limits"
    );
    tokio::spawn(accept::run(listener, limits, handshake, tx));
    // The channel is unbounded, but every connection in it holds a slot:
    // at most `max_connections` wait there.
    tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_file_limit_is_read() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max cpu time              unlimited            unlimited            seconds\n\
                    Max open files            1024                 524288               files\n";
        assert_eq!(parse_open_file_limit(text), Some(1024));
        assert_eq!(parse_open_file_limit("Max open files  unlimited  x"), None);
    }

    #[test]
    fn the_cap_leaves_the_reserve_free() {
        let Some(limit) = open_file_limit() else {
            return;
        };
        let listeners = Listeners {
            max_connections: usize::MAX,
            reserved_fds: 10,
            ..Listeners::default()
        };
        let limits = Limits::new(&listeners).unwrap();
        assert_eq!(limits.max_connections as u64, limit - 10);
        let listeners = Listeners {
            reserved_fds: usize::MAX,
            ..Listeners::default()
        };
        assert!(matches!(
            Limits::new(&listeners),
            Err(LimitError::NoRoom { .. })
        ));
    }
}
