//! `prism.timeseries.v1.TimeSeriesService`: validates each request against
//! its namespace, routes it to the namespace's TimeSeries backend, masks
//! PII in returned payloads, and records the call ([`Gate::observe`]).
//! A tail writes one audit record when it opens and one when it ends, not
//! one per event.

mod validate;

pub use validate::timestamp;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use pattern_core::Selection;
use pattern_core::paging::{Cursor, request_fingerprint};
use pattern_core::timeseries::{self as ts, TailItem, TailQuery, TailStart};
use prism_proto::timeseries::v1 as pb;
use prism_proto::timeseries::v1::time_series_service_server::TimeSeriesService;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::audit::{self, AuditLog, AuditedRequest, AuditedResponse, Targets};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::gate::{Gate, caller};
use crate::policy::Permission;
use crate::registry::{Namespace, Registry};
use validate::TsCheck;

/// The DAL in audit records and metrics.
const DAL: &str = "timeseries";

/// The TimeSeries gRPC service.
#[derive(Clone)]
pub struct TsService {
    gate: Gate,
}

impl TsService {
    pub fn new(registry: Arc<Registry>, audit: Arc<AuditLog>) -> Self {
        TsService {
            gate: Gate::new(registry, audit),
        }
    }

    /// Sets whether authentication is enabled on the listener.
    pub fn with_auth_enabled(mut self, enabled: bool) -> Self {
        self.gate = self.gate.with_auth_enabled(enabled);
        self
    }

    fn authorized(
        &self,
        name: &str,
        principal: &Principal,
        permission: Permission,
    ) -> Result<Arc<Namespace>, ProxyError> {
        let ns = self.gate.authorized(name, principal, permission)?;
        ns.timeseries()?;
        Ok(ns)
    }
}

/// The fingerprint a Read page token is bound to: the same series, range,
/// tags and order.
fn read_fingerprint(req: &pb::ReadRequest, start: Option<i64>, end: Option<i64>) -> u64 {
    let tags: BTreeMap<_, _> = req.tags.iter().collect();
    let what = format!(
        "{}\u{0}{start:?}\u{0}{end:?}\u{0}{}\u{0}{tags:?}",
        req.series_id, req.order
    );
    request_fingerprint(&req.namespace, "timeseries.Read", &what, &Selection::All)
}

fn encode_token(after: (i64, String), fingerprint: u64) -> String {
    Cursor {
        after_id: after.1,
        after_key: after.0.to_be_bytes().to_vec(),
        snapshot: 0,
    }
    .encode(fingerprint)
}

fn decode_token(token: &str, fingerprint: u64) -> Result<Option<(i64, String)>, ProxyError> {
    if token.is_empty() {
        return Ok(None);
    }
    let cursor = Cursor::decode(token, fingerprint)?;
    let time: [u8; 8] = cursor.after_key.as_slice().try_into().map_err(|_| {
        ProxyError::invalid(
            "invalid page_token: it was not issued by a TimeSeries Read; pass the \
             next_page_token of the previous page unchanged",
        )
    })?;
    Ok(Some((i64::from_be_bytes(time), cursor.after_id)))
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

/// Masks the payload of returned events.
fn reveal_events(reveal: &mut crate::gate::Reveal, events: &mut [pb::StoredEvent]) {
    for e in events.iter_mut().filter_map(|e| e.event.as_mut()) {
        reveal.returned(&mut e.payload);
    }
}

type TailStream = ReceiverStream<Result<pb::TailResponse, Status>>;

/// The open tail, for the audit record of its opening.
pub struct OpenTail(TailStream);

impl AuditedResponse for OpenTail {}

#[tonic::async_trait]
impl TimeSeriesService for TsService {
    async fn write(
        &self,
        request: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let principal = caller(&request);
        let call = self.gate.audit().call("Write", &request);
        let req = request.into_inner();
        self.gate
            .observe(DAL, call, async move {
                let ns = self.authorized(&req.namespace, &principal, Permission::Write)?;
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
            })
            .await
    }

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let principal = caller(&request);
        let call = self.gate.audit().call("Read", &request);
        let pii = call.pii.clone();
        let req = request.into_inner();
        self.gate
            .observe(DAL, call, async move {
                let ns = self.authorized(&req.namespace, &principal, Permission::Read)?;
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
                        "start must be before end (start is inclusive, end exclusive); swap \
                         them, or leave end unset to read up to now",
                    ));
                }
                let tags = check.tags("tags", &req.tags)?;
                let order = match pb::Order::try_from(req.order) {
                    Ok(pb::Order::NewestFirst) => ts::Order::NewestFirst,
                    Ok(_) => ts::Order::OldestFirst,
                    Err(_) => {
                        return Err(ProxyError::invalid(format!(
                            "order {} is not a known Order; use ORDER_OLDEST_FIRST or \
                             ORDER_NEWEST_FIRST",
                            req.order
                        )));
                    }
                };
                let budget_bytes =
                    crate::kv::validate::Check(&ns).page_size(req.page_size_bytes)?;
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
                let mut events: Vec<_> = page.events.into_iter().map(stored).collect();
                let mut reveal = self.gate.reveal(&ns, &principal);
                reveal_events(&mut reveal, &mut events);
                reveal.report(&pii);
                Ok(pb::ReadResponse {
                    events,
                    next_page_token: page
                        .next
                        .map(|n| encode_token(n, fingerprint))
                        .unwrap_or_default(),
                })
            })
            .await
    }

    type TailStream = TailStream;

    async fn tail(
        &self,
        request: Request<pb::TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        let principal = caller(&request);
        let call = self.gate.audit().call("Tail", &request);
        // The record written when the tail ends (with its duration).
        let end_call = self.gate.audit().call("TailEnd", &request);
        let req = request.into_inner();
        let gate = self.gate.clone();
        let opened = self
            .gate
            .observe(DAL, call, async {
                let ns = self.authorized(&req.namespace, &principal, Permission::Read)?;
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
                    series_id: req.series_id.clone(),
                    from_us,
                    tags,
                };
                // A namespace with a `timeseries.log` tails the log; the
                // others tail the store.
                let rx = ts::open_tail(backend, query, start).await?;
                Ok(OpenTail(tail_stream(gate, ns, principal, rx, end_call)))
            })
            .await?;
        Ok(Response::new(opened.into_inner().0))
    }
}

/// Turns the backend tail into the response stream: masks payloads, counts
/// events, and writes the closing audit record when the stream ends (the
/// client cancelled, or the backend failed).
fn tail_stream(
    gate: Gate,
    ns: Arc<Namespace>,
    principal: Principal,
    mut rx: ts::TailReceiver,
    end_call: audit::Call,
) -> TailStream {
    let (tx, out) = tokio::sync::mpsc::channel(64);
    let started = Instant::now();
    tokio::spawn(async move {
        let pii = end_call.pii.clone();
        let mut reveal = gate.reveal(&ns, &principal);
        let mut sent = 0u64;
        let mut code = tonic::Code::Ok;
        let released = ns.released();
        tokio::pin!(released);
        loop {
            let item = tokio::select! {
                item = rx.recv() => item,
                () = tx.closed() => break,
                () = &mut released => {
                    let status = ns.moved("tail");
                    code = status.code();
                    let _ = tx.send(Err(status)).await;
                    break;
                }
            };
            let response = match item {
                None => break,
                Some(Err(e)) => {
                    let status = Status::from(ProxyError::from(e));
                    code = status.code();
                    let _ = tx.send(Err(status)).await;
                    break;
                }
                Some(Ok(TailItem::CaughtUp(sequence))) => pb::TailResponse {
                    item: Some(pb::tail_response::Item::CaughtUp(pb::CaughtUp { sequence })),
                },
                Some(Ok(TailItem::Event(event))) => {
                    let mut event = stored(event);
                    if let Some(e) = event.event.as_mut() {
                        reveal.returned(&mut e.payload);
                    }
                    sent += 1;
                    pb::TailResponse {
                        item: Some(pb::tail_response::Item::Event(event)),
                    }
                }
            };
            if tx.send(Ok(response)).await.is_err() {
                break;
            }
        }
        crate::metrics::record_stream_items(&ns.config.name, DAL, "Tail", sent);
        tracing::debug!(
            namespace = %ns.config.name,
            events = sent,
            seconds = started.elapsed().as_secs_f64(),
            "tail ended"
        );
        reveal.report(&pii);
        gate.record_stream_end(DAL, end_call, &ns, code).await;
    });
    ReceiverStream::new(out)
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
