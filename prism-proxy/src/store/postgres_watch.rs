//! Watching a PostgreSQL store: LISTEN on a dedicated connection, a
//! fingerprint poll as fallback, reconnection with backoff.

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{BACKOFF_MAX, BACKOFF_MIN, ConfigStore, POLL, PostgresStore, StoreError};

impl PostgresStore {
    /// Opens the LISTEN connection.
    pub(super) async fn listen(&self) -> Result<Listener, StoreError> {
        let connect = self.inner.pg.connect(NoTls);
        let (client, mut connection) = connect
            .await
            .map_err(|e| self.pg_err("connecting to listen for changes", e))?;
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        if notes_tx.send(()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "config store listen connection failed");
                        return;
                    }
                }
            }
        });
        let listener = Listener {
            _client: client,
            notes,
            driver,
        };
        listener
            ._client
            .batch_execute(&format!("LISTEN \"{}\"", self.inner.channel))
            .await
            .map_err(|e| self.pg_err("listening for changes", e))?;
        Ok(listener)
    }

    /// The watch loop: hints on notifications, on fingerprint changes and
    /// after each reconnection; ends when the receiver is dropped.
    pub(super) async fn run_watch(self, mut listener: Option<Listener>, mut last: String, tx: Tx) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut backoff = BACKOFF_MIN;
        let mut retry_at = Instant::now();
        loop {
            let connected = listener.is_some();
            let notes = async {
                match listener.as_mut() {
                    Some(l) => l.notes.recv().await,
                    None => std::future::pending().await,
                }
            };
            let reconnect = async {
                if connected {
                    std::future::pending().await
                } else {
                    tokio::time::sleep_until(retry_at).await
                }
            };
            tokio::select! {
                () = tx.closed() => return,
                note = notes => match note {
                    Some(()) => if !hint(&tx) { return },
                    None => {
                        tracing::warn!(store = %self.describe(), "config store listen connection lost; reconnecting");
                        listener = None;
                        retry_at = Instant::now() + backoff;
                    }
                },
                () = reconnect => match self.bounded(self.listen()).await {
                    Ok(l) => {
                        listener = Some(l);
                        backoff = BACKOFF_MIN;
                        // Changes made while it was down were not notified.
                        if !hint(&tx) { return }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "config store listen reconnect failed");
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        retry_at = Instant::now() + backoff;
                    }
                },
                _ = tick.tick() => match self.bounded(self.fingerprint()).await {
                    Ok(now) if now != last => {
                        last = now;
                        if !hint(&tx) { return }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "config store poll failed"),
                },
            }
        }
    }
}

pub(super) type Tx = mpsc::Sender<()>;

/// Sends a hint; false when the receiver is gone.
fn hint(tx: &Tx) -> bool {
    !matches!(tx.try_send(()), Err(mpsc::error::TrySendError::Closed(())))
}

/// A LISTEN connection: its client (kept open) and its notifications.
pub(super) struct Listener {
    _client: tokio_postgres::Client,
    notes: mpsc::UnboundedReceiver<()>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
