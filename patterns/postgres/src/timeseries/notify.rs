//! Waking tails: a writer's transaction sends `pg_notify(channel,
//! sequence)`, delivered at commit to every process listening; a listener
//! task per backend raises the high-water mark on each notification. A
//! notification can be lost (the listening connection drops, or the server
//! restarts), so a poller also reads the committed counter every
//! `poll_interval`: a lost notification delays a tail by at most that.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use super::Shared;

/// Raises `high_water` to `seq` if it is higher (marks only increase).
pub fn raise(high_water: &watch::Sender<u64>, seq: u64) {
    high_water.send_if_modified(|current| {
        if seq > *current {
            *current = seq;
            true
        } else {
            false
        }
    });
}

/// The listener and poller of one backend; both stop when this is dropped.
pub struct Notifier {
    tasks: Vec<JoinHandle<()>>,
}

impl Notifier {
    /// Stops listening and polling.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Notifier {
    /// Starts listening on `shared`'s channel and polling its counter.
    pub fn spawn(shared: &Arc<Shared>, url: String, poll_interval: Duration) -> Self {
        let listener = tokio::spawn(listen(Arc::downgrade(shared), url));
        let poller = {
            let shared = Arc::downgrade(shared);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(poll_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    match shared.committed_sequence().await {
                        Ok(seq) => raise(&shared.high_water, seq),
                        Err(e) => tracing::debug!(error = %e, "timeseries sequence poll failed"),
                    }
                }
            })
        };
        Notifier {
            tasks: vec![listener, poller],
        }
    }
}

/// Listens until the backend is gone, reconnecting after a lost connection.
async fn listen(shared: std::sync::Weak<Shared>, url: String) {
    loop {
        let Some(channel) = shared.upgrade().map(|s| s.layout.channel.clone()) else {
            return;
        };
        match tokio_postgres::connect(&url, NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
                // Polling the connection drives it and yields notifications.
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if let Ok(seq) = n.payload().parse::<u64>()
                                    && tx.send(seq).is_err()
                                {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => return,
                        }
                    }
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN \"{channel}\"")).await {
                    tracing::warn!(error = %e, "timeseries listen failed; polling only");
                }
                while let Some(seq) = rx.recv().await {
                    let Some(shared) = shared.upgrade() else {
                        driver.abort();
                        return;
                    };
                    raise(&shared.high_water, seq);
                }
                driver.abort();
                tracing::warn!("timeseries notification connection lost; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, "timeseries notification connection failed; retrying");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
