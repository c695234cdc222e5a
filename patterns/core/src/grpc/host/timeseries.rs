//! The TimeSeries backend protocol of a pattern
//! (`prism.pattern.v1.TimeSeriesBackend`): each RPC is one trait call. The
//! proxy has validated the request; the host only checks what would break
//! the backend.

use std::pin::Pin;
use std::sync::Arc;

use prism_proto::pattern::v1 as wire;
use prism_proto::pattern::v1::time_series_backend_server::TimeSeriesBackend as Service;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::Host;
use crate::error::BackendError;
use crate::grpc::wire as conv;
use crate::timeseries::{DAL, TimeSeriesBackend};

pub(super) struct HostTimeSeries(pub(super) Arc<Host>);

type SequenceStream = Pin<Box<dyn Stream<Item = Result<wire::TsSequence, Status>> + Send>>;

/// Requests hold at most this many events per call: the proxy's own
/// limits are far lower.
const MAX_LIMIT: usize = 100_000;

#[tonic::async_trait]
impl Service for HostTimeSeries {
    async fn write(
        &self,
        request: Request<wire::TsWriteRequest>,
    ) -> Result<Response<wire::TsWriteResponse>, Status> {
        let (backend, _guard) = self.0.enter_as::<dyn TimeSeriesBackend, _>(
            &request,
            &request.get_ref().namespace,
            DAL,
        )?;
        let req = request.into_inner();
        self.0
            .run(async move {
                let events = req.events.into_iter().map(conv::event).collect();
                let summary = backend.write(events).await?;
                let high = *backend.watch_sequence().borrow();
                Ok(conv::summary_to_wire(summary, high))
            })
            .await
    }

    async fn read(
        &self,
        request: Request<wire::TsReadRequest>,
    ) -> Result<Response<wire::TsReadResponse>, Status> {
        let (backend, _guard) = self.0.enter_as::<dyn TimeSeriesBackend, _>(
            &request,
            &request.get_ref().namespace,
            DAL,
        )?;
        let query = conv::read(request.into_inner());
        self.0
            .run(async move { Ok(conv::page_to_wire(backend.read(&query).await?)) })
            .await
    }

    async fn read_since(
        &self,
        request: Request<wire::TsReadSinceRequest>,
    ) -> Result<Response<wire::TsEvents>, Status> {
        let (backend, _guard) = self.0.enter_as::<dyn TimeSeriesBackend, _>(
            &request,
            &request.get_ref().namespace,
            DAL,
        )?;
        let req = request.into_inner();
        self.0
            .run(async move {
                let query = conv::since(&req);
                let limit = (req.limit as usize).min(MAX_LIMIT);
                let events = backend
                    .read_since(&query, req.after_sequence, limit)
                    .await?;
                Ok(wire::TsEvents {
                    events: events.into_iter().map(conv::stored_to_wire).collect(),
                })
            })
            .await
    }

    type WatchSequenceStream = SequenceStream;

    async fn watch_sequence(
        &self,
        request: Request<wire::TsWatchSequenceRequest>,
    ) -> Result<Response<SequenceStream>, Status> {
        // Not counted as a call in flight: a watch lasts as long as the
        // proxy, and a drain ends it instead of waiting for it.
        let (backend, guard) = self.0.enter_as::<dyn TimeSeriesBackend, _>(
            &request,
            &request.get_ref().namespace,
            DAL,
        )?;
        drop(guard);
        let mut sequence = backend.watch_sequence();
        let mut draining = self.0.draining_signal();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let current = *sequence.borrow_and_update();
                if tx
                    .send(Ok(wire::TsSequence { sequence: current }))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::select! {
                    changed = sequence.changed() => if changed.is_err() { return },
                    _ = draining.wait_for(|d| *d) => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn drop_before(
        &self,
        request: Request<wire::TsDropBeforeRequest>,
    ) -> Result<Response<wire::TsDropBeforeResponse>, Status> {
        let (backend, _guard) = self.0.enter_as::<dyn TimeSeriesBackend, _>(
            &request,
            &request.get_ref().namespace,
            DAL,
        )?;
        let cutoff_us = request.get_ref().cutoff_us;
        self.0
            .run(async move {
                let removed = backend.drop_before(cutoff_us).await?;
                Ok(wire::TsDropBeforeResponse { removed })
            })
            .await
    }

    async fn scan(
        &self,
        request: Request<wire::TsScanRequest>,
    ) -> Result<Response<wire::TsEvents>, Status> {
        let (backend, _guard) = self.0.enter_as::<dyn TimeSeriesBackend, _>(
            &request,
            &request.get_ref().namespace,
            DAL,
        )?;
        let req = request.into_inner();
        self.0
            .run(async move {
                let after = req.after.map(conv::key);
                let limit = (req.limit as usize).min(MAX_LIMIT);
                let events = backend.scan(after.as_ref(), req.up_to, limit).await?;
                Ok(wire::TsEvents {
                    events: events.into_iter().map(conv::stored_to_wire).collect(),
                })
            })
            .await
    }

    async fn last_sequence(
        &self,
        request: Request<wire::TsLastSequenceRequest>,
    ) -> Result<Response<wire::TsSequence>, Status> {
        let (backend, _guard) = self.0.enter_as::<dyn TimeSeriesBackend, _>(
            &request,
            &request.get_ref().namespace,
            DAL,
        )?;
        self.0
            .run(async move {
                let sequence = backend.last_sequence().await?;
                Ok::<_, BackendError>(wire::TsSequence { sequence })
            })
            .await
    }
}
