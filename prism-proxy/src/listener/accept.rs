//! The accept task: takes connections off the listening socket, gives
//! each a slot or refuses it, and never waits on a client itself.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tonic::transport::server::TcpIncoming;

use super::{Admitted, Handshake, Limits, OPEN, REFUSED, admit, refuse};

/// At most one log line per this period about refusals or accept errors.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Pause after an accept error that means "out of descriptors or memory",
/// so the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A connection's place under the cap, released (and the open gauge
/// lowered) when the connection closes.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    pub(super) fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(OPEN).increment(1.0);
        Slot { _permit: permit }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(OPEN).decrement(1.0);
    }
}

/// Says something at most once per [`LOG_EVERY`], with how many times it
/// happened since it last said it.
struct Throttled {
    last: Option<Instant>,
    since: u64,
}

impl Throttled {
    fn new() -> Self {
        Throttled {
            last: None,
            since: 0,
        }
    }

    /// Counts one occurrence; returns the count to log when it is time.
    fn note(&mut self) -> Option<u64> {
        self.since += 1;
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + LOG_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

/// Accepts until the server drops its end of `admitted`.
pub(super) async fn run<H: Handshake>(
    listener: TcpListener,
    limits: Limits,
    handshake: H,
    admitted: UnboundedSender<Admitted<H::Io>>,
) {
    let mut incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(limits.tcp_keepalive);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = refuse::Refusals::new(limits.max_connections);
    let mut refused_log = Throttled::new();
    let mut error_log = Throttled::new();
    loop {
        let next = tokio::select! {
            () = admitted.closed() => break,
            next = incoming.next() => next,
        };
        match next {
            None => break,
            Some(Ok(tcp)) => match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(admit::run(
                        tcp,
                        handshake.clone(),
                        Slot::new(permit),
                        limits.handshake_timeout,
                        admitted.clone(),
                    ));
                }
                Err(_) => {
                    metrics::counter!(REFUSED).increment(1);
                    if let Some(refused) = refused_log.note() {
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            refused,
                            "grpc connection limit reached; refusing new connections (raise \
                             listeners.max_connections and ulimit -n, or add proxies)"
                        );
                    }
                    refusals.refuse(tcp, H::PLAIN_TEXT);
                }
            },
            Some(Err(e)) => {
                let exhausted = is_exhaustion(&e);
                if exhausted && let Some(errors) = error_log.note() {
                    tracing::warn!(error = %e, errors, "cannot accept grpc connections");
                } else if !exhausted {
                    tracing::debug!(error = %e, "accepting a grpc connection failed");
                }
                if exhausted {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
    tracing::debug!("grpc listener stopped accepting");
}

/// Accept errors that last until descriptors or memory are freed.
fn is_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refusals_are_logged_at_most_once_per_period_with_their_count() {
        let mut log = Throttled::new();
        assert_eq!(log.note(), Some(1));
        assert_eq!(log.note(), None);
        assert_eq!(log.note(), None);
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(log.note(), Some(3));
        assert_eq!(log.note(), None);
    }
}
