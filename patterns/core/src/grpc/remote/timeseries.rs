//! TimeSeries over a pattern: one RPC of `prism.pattern.v1.TimeSeriesBackend`
//! per trait operation. The highest visible sequence comes from a
//! `WatchSequence` stream that a task keeps open (and reopens after the
//! pattern restarts) for as long as the backend lives.

use std::time::Duration;

use async_trait::async_trait;
use prism_proto::pattern::v1 as wire;
use prism_proto::pattern::v1::time_series_backend_client::TimeSeriesBackendClient;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::{Link, PatternBackend, Route};
use crate::error::BackendError;
use crate::grpc::status::is_not_started;
use crate::grpc::{MAX_MESSAGE_BYTES, wire as conv};
use crate::timeseries::{
    EventKey, EventPage, ReadQuery, StoredEvent, TailQuery, TimeSeriesBackend, WriteSummary,
};

fn client(link: &Link) -> TimeSeriesBackendClient<Channel> {
    TimeSeriesBackendClient::new(link.channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The longest wait before reopening a sequence watch that failed.
const MAX_REWATCH: Duration = Duration::from_secs(2);

impl PatternBackend {
    /// Starts following the pattern's sequence and waits, up to `timeout`,
    /// for its current value, so a tail that starts "now" starts at the
    /// pattern's real high-water mark. Called once when a TimeSeries
    /// pattern is opened.
    pub(crate) async fn follow_sequence(&self, timeout: Duration) -> Result<(), BackendError> {
        let tx = self.sequence_sender();
        let link = self.link()?;
        let first = tokio::time::timeout(timeout, async {
            let request = wire::TsWatchSequenceRequest {
                namespace: link.namespace.clone(),
            };
            let mut stream = client(&link)
                .watch_sequence(link.request(request))
                .await
                .map_err(|s| link.error(s))?
                .into_inner();
            match stream.message().await {
                Ok(Some(seq)) => Ok(seq.sequence),
                Ok(None) => Err(link.broken("ended its sequence watch without an answer")),
                Err(s) => Err(link.error(s)),
            }
        })
        .await
        .map_err(|_| {
            BackendError::Unavailable(format!(
                "pattern at {} did not report its event sequence within {timeout:?}",
                link.endpoint
            ))
        })??;
        raise(tx, first);
        Ok(())
    }

    fn sequence_sender(&self) -> &watch::Sender<u64> {
        self.sequence.get_or_init(|| {
            let (tx, _) = watch::channel(0);
            let task = tokio::spawn(follow(self.route.clone(), tx.clone()));
            *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
            tx
        })
    }
}

/// Keeps `tx` at the pattern's highest visible sequence (never lowering
/// it) until aborted.
async fn follow(route: Route, tx: watch::Sender<u64>) {
    let mut wait = Duration::from_millis(50);
    loop {
        if let Ok(link) = route.link() {
            let request = wire::TsWatchSequenceRequest {
                namespace: link.namespace.clone(),
            };
            match client(&link)
                .watch_sequence(tonic::Request::new(request))
                .await
            {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    while let Ok(Some(seq)) = stream.message().await {
                        wait = Duration::from_millis(50);
                        raise(&tx, seq.sequence);
                    }
                }
                Err(status) if is_not_started(&status) => {
                    if let Some(reattach) = &link.reattach {
                        let _ = reattach.initialize().await;
                    }
                }
                Err(status) => {
                    tracing::debug!(endpoint = %link.endpoint, code = ?status.code(), "sequence watch failed; reopening");
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_REWATCH);
    }
}

/// Raises `tx` to `sequence`; never lowers it.
fn raise(tx: &watch::Sender<u64>, sequence: u64) {
    tx.send_if_modified(|v| {
        let raised = sequence > *v;
        *v = (*v).max(sequence);
        raised
    });
}

#[async_trait]
impl TimeSeriesBackend for PatternBackend {
    async fn write(
        &self,
        events: Vec<crate::timeseries::Event>,
    ) -> Result<WriteSummary, BackendError> {
        let link = self.link()?;
        let request = wire::TsWriteRequest {
            namespace: link.namespace.clone(),
            events: events.iter().map(conv::event_to_wire).collect(),
        };
        let reply = link
            .call(client(&link), request, |mut c, r| async move {
                c.write(r).await
            })
            .await?;
        // Raised before returning, as an embedded backend does: a tail
        // opened "now" after this write starts above it.
        raise(self.sequence_sender(), reply.high_sequence);
        Ok(WriteSummary {
            written: reply.written,
            duplicates: reply.duplicates,
        })
    }

    async fn read(&self, query: &ReadQuery) -> Result<EventPage, BackendError> {
        let link = self.link()?;
        let request = conv::read_to_wire(&link.namespace, query);
        let reply = link
            .call(
                client(&link),
                request,
                |mut c, r| async move { c.read(r).await },
            )
            .await?;
        conv::page(reply).map_err(|e| link.broken(e))
    }

    async fn read_since(
        &self,
        query: &TailQuery,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        let link = self.link()?;
        let request = conv::since_to_wire(&link.namespace, query, after_sequence, limit);
        let reply = link
            .call(client(&link), request, |mut c, r| async move {
                c.read_since(r).await
            })
            .await?;
        let events = conv::stored(reply.events).map_err(|e| link.broken(e))?;
        conv::check_since(&events, after_sequence, limit).map_err(|e| link.broken(e))?;
        Ok(events)
    }

    fn watch_sequence(&self) -> watch::Receiver<u64> {
        self.sequence_sender().subscribe()
    }

    async fn drop_before(&self, cutoff_us: i64) -> Result<u64, BackendError> {
        let link = self.link()?;
        let request = wire::TsDropBeforeRequest {
            namespace: link.namespace.clone(),
            cutoff_us,
        };
        let reply = link
            .call(client(&link), request, |mut c, r| async move {
                c.drop_before(r).await
            })
            .await?;
        Ok(reply.removed)
    }

    async fn scan(
        &self,
        after: Option<&EventKey>,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        let link = self.link()?;
        let request = wire::TsScanRequest {
            namespace: link.namespace.clone(),
            after: after.map(conv::key_to_wire),
            up_to,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        let reply = link
            .call(
                client(&link),
                request,
                |mut c, r| async move { c.scan(r).await },
            )
            .await?;
        let events = conv::stored(reply.events).map_err(|e| link.broken(e))?;
        conv::check_scan(&events, after, up_to, limit).map_err(|e| link.broken(e))?;
        Ok(events)
    }

    async fn last_sequence(&self) -> Result<u64, BackendError> {
        let link = self.link()?;
        let request = wire::TsLastSequenceRequest {
            namespace: link.namespace.clone(),
        };
        let reply = link
            .call(client(&link), request, |mut c, r| async move {
                c.last_sequence(r).await
            })
            .await?;
        Ok(reply.sequence)
    }
}
