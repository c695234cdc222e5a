//! Server streams (TimeSeries Tail, PubSub Subscribe): one forwarding task
//! per stream, one way for a stream to end.
//!
//! The DAL's operation opens a [`Source`]; [`forward`] pulls its items,
//! masks each, and sends them to the client until one of:
//!
//! * the client goes away (the response stream is dropped);
//! * the source ends, or fails (the client gets its error's status);
//! * the namespace's backend is released — a later version serves on
//!   another backend, or the namespace was removed — and the client gets
//!   UNAVAILABLE telling it to open the stream again.
//!
//! Then, in one place: the items delivered go to
//! `prism_stream_items_total`, the PII fields returned to the audit
//! record, and the stream's closing record (the RPC's [`StreamEnd`]
//! method) is written with the code it ended with.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{Masked, Pipeline, Reveal, Rpc, StreamEnd, StreamItem};
use crate::audit::{self, AuditedResponse};
use crate::error::ProxyError;
use crate::registry::Namespace;

/// Items waiting between the forwarding task and the client.
const BUFFER: usize = 64;

/// The response stream of a streaming RPC.
pub type ItemStream<Item> = ReceiverStream<Result<Item, Status>>;

/// What a streaming operation produces, item by item.
pub trait Source: Send + Sync + 'static {
    /// The stream's item.
    type Item: StreamItem;

    /// The next item, `None` once the source has ended. Must be
    /// cancel-safe: the forwarding task drops the future when the client
    /// goes away or the backend is released.
    fn next(&mut self) -> impl Future<Output = Option<Result<Self::Item, ProxyError>>> + Send;
}

/// An opened stream, for the audit record of its opening.
pub struct Opened<S> {
    pub(super) ns: Arc<Namespace>,
    pub(super) source: S,
}

impl<S: Source> AuditedResponse for Opened<S> {}

/// Starts the task that forwards `opened`'s items to the client.
pub(super) fn forward<Req, S: Source>(
    pipeline: Pipeline,
    rpc: &'static Rpc<Req, S::Item>,
    opened: Opened<S>,
    mut reveal: Reveal,
    end_call: audit::Call,
) -> ItemStream<S::Item> {
    let StreamEnd { noun, .. } = rpc.stream.expect("a streaming RPC declares its end");
    let (dal, method) = (rpc.dal.name(), rpc.method);
    let (tx, out) = tokio::sync::mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let Opened { ns, mut source } = opened;
        let started = Instant::now();
        let pii = end_call.pii.clone();
        let mut delivered = 0u64;
        let mut code = tonic::Code::Ok;
        let released = ns.released();
        tokio::pin!(released);
        loop {
            let next = tokio::select! {
                next = source.next() => next,
                () = tx.closed() => break,
                () = &mut released => {
                    let status = ns.moved(noun);
                    code = status.code();
                    let _ = tx.send(Err(status)).await;
                    break;
                }
            };
            let mut item = match next {
                None => break,
                Some(Err(e)) => {
                    let status = Status::from(e);
                    code = status.code();
                    if matches!(code, tonic::Code::Internal | tonic::Code::Unavailable) {
                        tracing::warn!(namespace = %ns.config.name, method, error = %status.message(), "stream ended by a backend error");
                    }
                    let _ = tx.send(Err(status)).await;
                    break;
                }
                Some(Ok(item)) => item,
            };
            item.mask(&mut reveal);
            let delivers = item.delivers();
            if tx.send(Ok(item)).await.is_err() {
                break;
            }
            delivered += u64::from(delivers);
        }
        crate::metrics::record_stream_items(&ns.config.name, dal, method, delivered);
        tracing::debug!(
            namespace = %ns.config.name,
            method,
            items = delivered,
            seconds = started.elapsed().as_secs_f64(),
            "stream ended"
        );
        reveal.report(&pii);
        pipeline.record_stream_end(dal, end_call, &ns, code).await;
    });
    ReceiverStream::new(out)
}
