//! `prism.timeseries.v1.TimeSeriesService`: its RPCs declared for the call
//! pipeline ([`crate::pipeline`]), and the operation of each: validate the
//! request against its namespace, route it to the namespace's TimeSeries
//! backend, map the result. A tail writes one audit record when it opens
//! and one when it ends, not one per event.

mod validate;

pub use validate::timestamp;

use std::collections::BTreeMap;
use std::sync::Arc;

use pattern_core::timeseries::{self as ts, ReadCursor, TailItem, TailQuery, TailStart};
use prism_proto::timeseries::v1 as pb;
use prism_proto::timeseries::v1::time_series_service_server::TimeSeriesService;
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, AuditedRequest, AuditedResponse, Targets};
use crate::error::ProxyError;
use crate::permission::Permission;
use crate::pipeline::stream::{ItemStream, Source};
use crate::pipeline::{Declared, Masked, Pipeline, Reveal, Rpc, StreamEnd, StreamItem};
use crate::registry::{Namespace, Registry};
use validate::TsCheck;

/// The TimeSeries gRPC service.
#[derive(Clone)]
pub struct TsService {
    pipeline: Pipeline,
}

impl TsService {
    pub fn new(registry: Arc<Registry>, audit: Arc<AuditLog>) -> Self {
        TsService {
            pipeline: Pipeline::new(registry, audit),
        }
    }

    /// Sets whether authentication is enabled on the listener.
    pub fn with_auth_enabled(mut self, enabled: bool) -> Self {
        self.pipeline = self.pipeline.with_auth_enabled(enabled);
        self
    }
}

const SERVICE: &str = "prism.timeseries.v1.TimeSeriesService";

pub const WRITE: Rpc<pb::WriteRequest, pb::WriteResponse> = Rpc::unary(
    crate::dal::TIMESERIES,
    SERVICE,
    "Write",
    Permission::Write,
    &["events[].series_id", "events[].event_id"],
    &[],
);
pub const READ: Rpc<pb::ReadRequest, pb::ReadResponse> = Rpc::unary(
    crate::dal::TIMESERIES,
    SERVICE,
    "Read",
    Permission::Read,
    &["series_id"],
    &[],
);
pub const TAIL: Rpc<pb::TailRequest, pb::TailResponse> = Rpc::streaming(
    crate::dal::TIMESERIES,
    SERVICE,
    "Tail",
    Permission::Read,
    &["series_id"],
    &[],
    StreamEnd {
        method: "TailEnd",
        noun: "tail",
    },
);

/// Every TimeSeries RPC.
pub static RPCS: &[&dyn Declared] = &[&WRITE, &READ, &TAIL];

crate::no_values!(pb::WriteResponse);

impl Masked for pb::ReadResponse {
    const VALUES: &'static [&'static str] = &["events[].event.payload"];
    fn mask(&mut self, reveal: &mut Reveal) {
        for e in self.events.iter_mut().filter_map(|e| e.event.as_mut()) {
            reveal.returned(&mut e.payload);
        }
    }
}

impl Masked for pb::TailResponse {
    const VALUES: &'static [&'static str] = &["event.event.payload"];
    fn mask(&mut self, reveal: &mut Reveal) {
        if let Some(pb::tail_response::Item::Event(event)) = &mut self.item
            && let Some(e) = event.event.as_mut()
        {
            reveal.returned(&mut e.payload);
        }
    }
}

impl StreamItem for pb::TailResponse {
    fn delivers(&self) -> bool {
        matches!(self.item, Some(pb::tail_response::Item::Event(_)))
    }
}

/// The fingerprint a Read page token is bound to: the same series, range,
/// tags and order.
fn read_fingerprint(req: &pb::ReadRequest, start: Option<i64>, end: Option<i64>) -> u64 {
    let tags: BTreeMap<_, _> = req.tags.iter().collect();
    let query = format!(
        "{}\u{0}{start:?}\u{0}{end:?}\u{0}{}\u{0}{tags:?}",
        req.series_id, req.order
    );
    ts::read_fingerprint(&req.namespace, &query)
}

fn encode_token((after_time_us, after_event_id): (i64, String), fingerprint: u64) -> String {
    ReadCursor {
        after_time_us,
        after_event_id,
    }
    .encode(fingerprint)
}

fn decode_token(token: &str, fingerprint: u64) -> Result<Option<(i64, String)>, ProxyError> {
    if token.is_empty() {
        return Ok(None);
    }
    let cursor = ReadCursor::decode(token, fingerprint)?;
    Ok(Some((cursor.after_time_us, cursor.after_event_id)))
}

fn stored(event: ts::StoredEvent) -> pb::StoredEvent {
    let e = event.event;
    pb::StoredEvent {
        event: Some(pb::Event {
            series_id: e.series_id,
            event_time: Some(validate::timestamp(e.time_us)),
            event_id: e.event_id,
            tags: e.tags.into_iter().collect(),
            payload: e.payload,
        }),
        sequence: event.sequence,
    }
}

#[tonic::async_trait]
impl TimeSeriesService for TsService {
    async fn write(
        &self,
        r: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.pipeline.unary(&WRITE, r, write).await
    }

    async fn read(
        &self,
        r: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        self.pipeline.unary(&READ, r, read).await
    }

    type TailStream = ItemStream<pb::TailResponse>;

    async fn tail(
        &self,
        r: Request<pb::TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        self.pipeline.stream(&TAIL, r, tail).await
    }
}

async fn write(ns: Arc<Namespace>, req: pb::WriteRequest) -> Result<pb::WriteResponse, ProxyError> {
    let check = TsCheck(&ns);
    check.count("events", req.events.len())?;
    let events = req
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| check.event(&format!("events[{i}]"), e))
        .collect::<Result<Vec<_>, _>>()?;
    crate::kv::validate::no_repeats(
        "event (series, time and event id)",
        events.iter().enumerate().map(|(i, e)| {
            (
                format!("events[{i}]"),
                (e.series_id.as_str(), e.time_us, e.event_id.as_str()),
            )
        }),
    )?;
    let summary = ns.timeseries()?.write(events).await?;
    Ok(pb::WriteResponse {
        written: summary.written,
        duplicates: summary.duplicates,
    })
}

async fn read(ns: Arc<Namespace>, req: pb::ReadRequest) -> Result<pb::ReadResponse, ProxyError> {
    let check = TsCheck(&ns);
    check.series("series_id", &req.series_id)?;
    let start = req
        .start
        .as_ref()
        .map(|t| validate::micros("start", t))
        .transpose()?;
    let end = req
        .end
        .as_ref()
        .map(|t| validate::micros("end", t))
        .transpose()?;
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        return Err(ProxyError::invalid(
            "start must be before end (start is inclusive, end exclusive); swap them, or leave \
             end unset to read up to now",
        ));
    }
    let tags = check.tags("tags", &req.tags)?;
    let order = match pb::Order::try_from(req.order) {
        Ok(pb::Order::NewestFirst) => ts::Order::NewestFirst,
        Ok(_) => ts::Order::OldestFirst,
        Err(_) => {
            return Err(ProxyError::invalid(format!(
                "order {} is not a known Order; use ORDER_OLDEST_FIRST or ORDER_NEWEST_FIRST",
                req.order
            )));
        }
    };
    let budget_bytes = crate::kv::validate::Check(&ns).page_size(req.page_size_bytes)?;
    let fingerprint = read_fingerprint(&req, start, end);
    let after = decode_token(&req.page_token, fingerprint)?;
    let page = ns
        .timeseries()?
        .read(&ts::ReadQuery {
            series_id: req.series_id.clone(),
            start_us: start,
            end_us: end,
            tags,
            order,
            budget_bytes,
            after,
        })
        .await?;
    Ok(pb::ReadResponse {
        events: page.events.into_iter().map(stored).collect(),
        next_page_token: page
            .next
            .map(|n| encode_token(n, fingerprint))
            .unwrap_or_default(),
    })
}

/// Opens a tail: a namespace with a `timeseries.log` tails the log; the
/// others tail the store.
async fn tail(ns: Arc<Namespace>, req: pb::TailRequest) -> Result<Tail, ProxyError> {
    let check = TsCheck(&ns);
    check.series("series_id", &req.series_id)?;
    let tags = check.tags("tags", &req.tags)?;
    let backend = ns.timeseries()?.clone();
    let (from_us, start) = match &req.from {
        Some(t) => (validate::micros("from", t)?, TailStart::From),
        // Only what is written from now on.
        None => (i64::MIN, TailStart::Now),
    };
    let query = TailQuery {
        series_id: req.series_id,
        from_us,
        tags,
    };
    Ok(Tail(ts::open_tail(backend, query, start).await?))
}

/// An open tail, as the pipeline's stream source.
struct Tail(ts::TailReceiver);

impl Source for Tail {
    type Item = pb::TailResponse;

    async fn next(&mut self) -> Option<Result<pb::TailResponse, ProxyError>> {
        let item = match self.0.recv().await? {
            Err(e) => return Some(Err(e.into())),
            Ok(TailItem::CaughtUp(sequence)) => {
                pb::tail_response::Item::CaughtUp(pb::CaughtUp { sequence })
            }
            Ok(TailItem::Event(event)) => pb::tail_response::Item::Event(stored(event)),
        };
        Some(Ok(pb::TailResponse { item: Some(item) }))
    }
}

impl AuditedRequest for pb::WriteRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn targets(&self, t: &mut Targets) {
        for e in &self.events {
            t.id(&e.series_id);
            t.key(e.event_id.as_bytes());
        }
    }
}

impl AuditedRequest for pb::ReadRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn targets(&self, t: &mut Targets) {
        t.id(&self.series_id);
    }
}

impl AuditedRequest for pb::TailRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn targets(&self, t: &mut Targets) {
        t.id(&self.series_id);
    }
}

impl AuditedResponse for pb::WriteResponse {}

impl AuditedResponse for pb::ReadResponse {
    fn targets(&self, t: &mut Targets) {
        for e in self.events.iter().filter_map(|e| e.event.as_ref()) {
            t.key(e.event_id.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
