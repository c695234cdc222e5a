//! Watching a NATS KV store: a `watch_all` consumer for prompt hints and,
//! as a fallback, the bucket stream's last sequence compared every
//! second. When the consumer falls behind that sequence for a few seconds
//! (deleted on the server, lost), it is replaced.

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use super::{BACKOFF_MAX, BACKOFF_MIN, ConfigStore, NatsKvStore, StoreError, TIMEOUT, kv};

/// How often the stream's last sequence is compared.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// Polls in a row the consumer may be behind before it is replaced.
const STALE_POLLS: u32 = 3;

impl NatsKvStore {
    /// The bucket stream's last sequence: grows with every put, delete
    /// and purge.
    pub(super) async fn last_sequence(&self) -> Result<u64, StoreError> {
        let info = tokio::time::timeout(TIMEOUT, self.kv.stream.get_info())
            .await
            .map_err(|_| self.unavailable("reading the bucket's state", "timed out"))?
            .map_err(|e| self.unavailable("reading the bucket's state", e))?;
        Ok(info.state.last_sequence)
    }

    /// Follows the bucket until the receiver is dropped. `last` is the
    /// stream's last sequence when the watch started.
    pub(super) async fn run_watch(self, watch: kv::Watch, last: u64, tx: mpsc::Sender<()>) {
        let mut watch = Some(watch);
        // Highest sequence the consumer delivered (or that was current
        // when it was made), and highest a hint was sent for.
        let mut delivered = last;
        let mut hinted = last;
        let mut stale = 0;
        let mut backoff = BACKOFF_MIN;
        let mut retry_at = Instant::now();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let connected = watch.is_some();
            let next = async {
                match watch.as_mut() {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            };
            let resubscribe = async {
                if connected {
                    std::future::pending().await
                } else {
                    tokio::time::sleep_until(retry_at).await
                }
            };
            tokio::select! {
                () = tx.closed() => return,
                item = next => match item {
                    Some(Ok(entry)) => {
                        delivered = delivered.max(entry.revision);
                        hinted = hinted.max(entry.revision);
                        if !hint(&tx) { return }
                    }
                    end => {
                        let error = match end {
                            Some(Err(e)) => e.to_string(),
                            _ => "stream ended".to_string(),
                        };
                        tracing::warn!(store = %self.describe(), %error, "config store watch lost; re-subscribing");
                        watch = None;
                        retry_at = Instant::now() + backoff;
                    }
                },
                () = resubscribe => {
                    let made = match self.last_sequence().await {
                        Ok(now) => tokio::time::timeout(TIMEOUT, self.kv.watch_all())
                            .await
                            .map_err(|_| "timed out".to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()))
                            .map(|w| (w, now)),
                        Err(e) => Err(e.to_string()),
                    };
                    match made {
                        Ok((w, now)) => {
                            watch = Some(w);
                            delivered = delivered.max(now);
                            backoff = BACKOFF_MIN;
                            // Changes made meanwhile were not delivered.
                            hinted = hinted.max(now);
                            if !hint(&tx) { return }
                        }
                        Err(error) => {
                            tracing::warn!(store = %self.describe(), %error, "config store watch re-subscribe failed");
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                            retry_at = Instant::now() + backoff;
                        }
                    }
                },
                _ = tick.tick() => match self.last_sequence().await {
                    Ok(now) if now > delivered => {
                        if now > hinted {
                            hinted = now;
                            if !hint(&tx) { return }
                        }
                        stale += 1;
                        if stale >= STALE_POLLS && watch.is_some() {
                            tracing::warn!(store = %self.describe(), "config store watch is behind; re-subscribing");
                            watch = None;
                            stale = 0;
                            retry_at = Instant::now();
                        }
                    }
                    Ok(_) => stale = 0,
                    Err(e) => tracing::debug!(error = %e, "config store poll failed"),
                },
            }
        }
    }
}

/// Sends a hint; false when the receiver is gone.
fn hint(tx: &mpsc::Sender<()>) -> bool {
    !matches!(tx.try_send(()), Err(mpsc::error::TrySendError::Closed(())))
}
