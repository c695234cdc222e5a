//! `listeners` in `prism.yaml`: the addresses of the gRPC and admin
//! listeners, and how much the gRPC listener lets one client hold
//! (connections, time to finish a handshake, streams per connection,
//! keepalive).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `listeners` in `prism.yaml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// The gRPC data API listener. Default `127.0.0.1:8980`.
    pub grpc: SocketAddr,
    /// The admin HTTP listener (`/healthz`, `/readyz`, `/metrics`).
    /// Default `127.0.0.1:8981`.
    pub admin: SocketAddr,
    /// Largest gRPC message accepted or sent, in bytes. Default 16 MiB.
    pub max_message_bytes: usize,
    /// Most gRPC connections open at once, counting those still in their
    /// handshake. A connection beyond it is answered `UNAVAILABLE` and
    /// closed. Default 4096; lowered at start-up so that
    /// [`Listeners::reserved_fds`] stay free under the open-file limit.
    pub max_connections: usize,
    /// File descriptors kept free for everything but gRPC connections:
    /// the admin listener and its clients, backends, the audit log,
    /// configuration reloads, refusals. Default 256.
    pub reserved_fds: usize,
    /// How long a new gRPC connection may take to finish its handshake
    /// (TLS, when configured, and the HTTP/2 client preface), in
    /// milliseconds; then it is closed. Default 10 000.
    pub handshake_timeout_ms: u64,
    /// Most calls open at once on one gRPC connection, advertised as
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`. Default 128.
    pub max_concurrent_streams: u32,
    /// How often the proxy pings a gRPC connection (HTTP/2 PING), in
    /// milliseconds; 0 turns pings off. Default 60 000.
    pub http2_keepalive_interval_ms: u64,
    /// How long the proxy waits for a ping's answer before it closes the
    /// connection, in milliseconds. Default 20 000.
    pub http2_keepalive_timeout_ms: u64,
    /// Idle time before the kernel probes a gRPC connection (TCP
    /// keepalive), in milliseconds; 0 turns probes off. Default 60 000.
    pub tcp_keepalive_ms: u64,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            grpc: SocketAddr::from(([127, 0, 0, 1], 8980)),
            admin: SocketAddr::from(([127, 0, 0, 1], 8981)),
            max_message_bytes: 16 << 20,
            max_connections: 4096,
            reserved_fds: 256,
            handshake_timeout_ms: 10_000,
            max_concurrent_streams: 128,
            http2_keepalive_interval_ms: 60_000,
            http2_keepalive_timeout_ms: 20_000,
            tcp_keepalive_ms: 60_000,
        }
    }
}

impl Listeners {
    /// Checks the values that have no meaning at zero; `file` names
    /// `prism.yaml` in errors.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        if self.grpc == self.admin {
            return Err(ConfigError::new(
                file,
                "listeners.admin",
                "must differ from listeners.grpc",
            ));
        }
        let positive = [
            ("max_connections", self.max_connections as u64),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            (
                "max_concurrent_streams",
                u64::from(self.max_concurrent_streams),
            ),
            (
                "http2_keepalive_timeout_ms",
                self.http2_keepalive_timeout_ms,
            ),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(
                    file,
                    &format!("listeners.{field}"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }

    /// [`Listeners::handshake_timeout_ms`].
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// [`Listeners::http2_keepalive_interval_ms`]; `None` when off.
    pub fn http2_keepalive_interval(&self) -> Option<Duration> {
        (self.http2_keepalive_interval_ms > 0)
            .then(|| Duration::from_millis(self.http2_keepalive_interval_ms))
    }

    /// [`Listeners::http2_keepalive_timeout_ms`].
    pub fn http2_keepalive_timeout(&self) -> Duration {
        Duration::from_millis(self.http2_keepalive_timeout_ms)
    }

    /// [`Listeners::tcp_keepalive_ms`]; `None` when off.
    pub fn tcp_keepalive(&self) -> Option<Duration> {
        (self.tcp_keepalive_ms > 0).then(|| Duration::from_millis(self.tcp_keepalive_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    #[test]
    fn defaults_apply_to_fields_left_out() {
        let l: Listeners = parse_yaml("prism.yaml", "max_connections: 10\n").unwrap();
        assert_eq!(l.max_connections, 10);
        assert_eq!(l.reserved_fds, 256);
        assert_eq!(l.handshake_timeout(), Duration::from_secs(10));
        assert_eq!(l.max_concurrent_streams, 128);
        assert_eq!(l.http2_keepalive_interval(), Some(Duration::from_secs(60)));
        assert_eq!(l.http2_keepalive_timeout(), Duration::from_secs(20));
        assert_eq!(l.tcp_keepalive(), Some(Duration::from_secs(60)));
        l.validate("prism.yaml").unwrap();
    }

    #[test]
    fn zero_turns_keepalive_off_but_is_refused_where_meaningless() {
        let l: Listeners = parse_yaml(
            "prism.yaml",
            "http2_keepalive_interval_ms: 0\ntcp_keepalive_ms: 0\n",
        )
        .unwrap();
        assert_eq!(l.http2_keepalive_interval(), None);
        assert_eq!(l.tcp_keepalive(), None);
        for field in [
            "max_connections",
            "handshake_timeout_ms",
            "max_concurrent_streams",
            "http2_keepalive_timeout_ms",
        ] {
            let l: Listeners = parse_yaml("prism.yaml", &format!("{field}: 0\n")).unwrap();
            let e = l.validate("prism.yaml").unwrap_err();
            assert_eq!(e.field, format!("listeners.{field}"));
            assert!(e.message.contains("at least 1"), "{e}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = parse_yaml::<Listeners>("prism.yaml", "max_conections: 1\n").unwrap_err();
        assert!(e.message.contains("max_connections"), "{e}");
    }
}
