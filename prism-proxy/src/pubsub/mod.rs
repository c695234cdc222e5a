//! `prism.pubsub.v1.PubSubService`: its RPCs declared for the call pipeline
//! ([`crate::pipeline`]), and the operation of each: validate the request
//! against its namespace, route it to the namespace's PubSub backend, map
//! the result. A subscription writes one audit record when it opens and
//! one when it ends, not one per message.

mod validate;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pattern_core::Capability;
use pattern_core::pubsub::{self as ps, Delivery, StartAt, Subscription};
use prism_proto::pubsub::v1 as pb;
use prism_proto::pubsub::v1::pub_sub_service_server::PubSubService;
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, AuditedRequest, AuditedResponse, Targets};
use crate::error::ProxyError;
use crate::permission::Permission;
use crate::pipeline::stream::{ItemStream, Source};
use crate::pipeline::{Declared, Masked, Pipeline, Reveal, Rpc, StreamEnd, StreamItem};
use crate::registry::{Namespace, Registry};
use validate::PsCheck;

/// Deliveries pulled from the backend at a time by one subscription.
const PULL_BATCH: usize = 64;
/// How long one pull waits for messages (the stream ends at once when its
/// client goes away, whatever the wait).
const PULL_WAIT: Duration = Duration::from_secs(1);

/// The PubSub gRPC service.
#[derive(Clone)]
pub struct PsService {
    pipeline: Pipeline,
    /// Names this proxy's consumers uniquely within their groups.
    consumer_prefix: Arc<str>,
}

static NEXT_CONSUMER: AtomicU64 = AtomicU64::new(1);

impl PsService {
    pub fn new(registry: Arc<Registry>, audit: Arc<AuditLog>) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        PsService {
            pipeline: Pipeline::new(registry, audit),
            consumer_prefix: format!("prism-{}-{started}", std::process::id()).into(),
        }
    }

    /// Sets whether authentication is enabled on the listener.
    pub fn with_auth_enabled(mut self, enabled: bool) -> Self {
        self.pipeline = self.pipeline.with_auth_enabled(enabled);
        self
    }

    /// The subscription a Subscribe request asks for, with the namespace's
    /// defaults filled in.
    fn subscription(
        &self,
        ns: &Namespace,
        req: &pb::SubscribeRequest,
    ) -> Result<Subscription, ProxyError> {
        let check = PsCheck(ns);
        check.topic("topic", &req.topic)?;
        check.group("group", &req.group)?;
        let defaults = ns.config.pubsub_settings();
        let ack_deadline = match req.ack_deadline_seconds {
            0 => defaults.ack_deadline,
            s if s > validate::MAX_ACK_DEADLINE_SECS => {
                return Err(ProxyError::invalid(format!(
                    "ack_deadline_seconds is {s}; at most {} (10 minutes) is allowed — ack \
                     sooner, or nack and retry later",
                    validate::MAX_ACK_DEADLINE_SECS
                )));
            }
            s => Duration::from_secs(u64::from(s)),
        };
        let max_attempts = match req.max_attempts {
            0 => defaults.max_attempts,
            n if n > validate::MAX_ATTEMPTS => {
                return Err(ProxyError::invalid(format!(
                    "max_attempts is {n}; at most {} is allowed",
                    validate::MAX_ATTEMPTS
                )));
            }
            n => n,
        };
        let start_at = match pb::StartAt::try_from(req.start_at) {
            Ok(pb::StartAt::Earliest) => {
                crate::kv::validate::Check(ns)
                    .capability(Capability::Replay, "start_at EARLIEST")?;
                StartAt::Earliest
            }
            Ok(_) => StartAt::Latest,
            Err(_) => {
                return Err(ProxyError::invalid(format!(
                    "start_at {} is not a known StartAt; use START_AT_LATEST or \
                     START_AT_EARLIEST",
                    req.start_at
                )));
            }
        };
        let n = NEXT_CONSUMER.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription {
            topic: req.topic.clone(),
            group: req.group.clone(),
            consumer: format!("{}-{n}", self.consumer_prefix),
            ack_deadline,
            max_attempts,
            start_at,
        })
    }
}

fn message(d: Delivery) -> pb::Message {
    pb::Message {
        message_id: d.message_id,
        ack_id: d.ack_id,
        ordering_key: d.ordering_key,
        attributes: d.attributes.into_iter().collect(),
        payload: d.payload,
        publish_time: Some(crate::timeseries::timestamp(d.publish_time_us)),
        attempt: d.attempt,
    }
}

const SERVICE: &str = "prism.pubsub.v1.PubSubService";

pub const PUBLISH: Rpc<pb::PublishRequest, pb::PublishResponse> = Rpc::unary(
    crate::dal::PUBSUB,
    SERVICE,
    "Publish",
    Permission::Write,
    &["topic"],
    &[],
);
pub const SUBSCRIBE: Rpc<pb::SubscribeRequest, pb::SubscribeResponse> = Rpc::streaming(
    crate::dal::PUBSUB,
    SERVICE,
    "Subscribe",
    Permission::Read,
    &["topic", "group"],
    &[],
    StreamEnd {
        method: "SubscribeEnd",
        noun: "subscription",
    },
);
pub const ACK: Rpc<pb::AckRequest, pb::AckResponse> = Rpc::unary(
    crate::dal::PUBSUB,
    SERVICE,
    "Ack",
    Permission::Read,
    &["topic", "group"],
    &[],
);
pub const NACK: Rpc<pb::NackRequest, pb::NackResponse> = Rpc::unary(
    crate::dal::PUBSUB,
    SERVICE,
    "Nack",
    Permission::Read,
    &["topic", "group"],
    &[],
);

/// Every PubSub RPC.
pub static RPCS: &[&dyn Declared] = &[&PUBLISH, &SUBSCRIBE, &ACK, &NACK];

crate::no_values!(pb::PublishResponse, pb::AckResponse, pb::NackResponse);

impl Masked for pb::SubscribeResponse {
    const VALUES: &'static [&'static str] = &["message.payload"];
    fn mask(&mut self, reveal: &mut Reveal) {
        if let Some(pb::subscribe_response::Item::Message(m)) = &mut self.item {
            reveal.returned(&mut m.payload);
        }
    }
}

impl StreamItem for pb::SubscribeResponse {
    fn delivers(&self) -> bool {
        matches!(self.item, Some(pb::subscribe_response::Item::Message(_)))
    }
}

#[tonic::async_trait]
impl PubSubService for PsService {
    async fn publish(
        &self,
        r: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        self.pipeline.unary(&PUBLISH, r, publish).await
    }

    type SubscribeStream = ItemStream<pb::SubscribeResponse>;

    async fn subscribe(
        &self,
        r: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.pipeline
            .stream(&SUBSCRIBE, r, |ns, req| self.open_subscription(ns, req))
            .await
    }

    async fn ack(&self, r: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        self.pipeline.unary(&ACK, r, ack).await
    }

    async fn nack(
        &self,
        r: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
        self.pipeline.unary(&NACK, r, nack).await
    }
}

async fn publish(
    ns: Arc<Namespace>,
    req: pb::PublishRequest,
) -> Result<pb::PublishResponse, ProxyError> {
    let check = PsCheck(&ns);
    check.topic("topic", &req.topic)?;
    check.count("messages", req.messages.len())?;
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| check.message(&format!("messages[{i}]"), m))
        .collect::<Result<Vec<_>, _>>()?;
    let message_ids = ns.pubsub()?.publish(&req.topic, messages).await?;
    Ok(pb::PublishResponse { message_ids })
}

async fn ack(ns: Arc<Namespace>, req: pb::AckRequest) -> Result<pb::AckResponse, ProxyError> {
    PsCheck(&ns).acks(&req.topic, &req.group, &req.ack_ids)?;
    let acknowledged = ns
        .pubsub()?
        .ack(&req.topic, &req.group, &req.ack_ids)
        .await?;
    Ok(pb::AckResponse { acknowledged })
}

async fn nack(ns: Arc<Namespace>, req: pb::NackRequest) -> Result<pb::NackResponse, ProxyError> {
    PsCheck(&ns).acks(&req.topic, &req.group, &req.ack_ids)?;
    let redelivering = ns
        .pubsub()?
        .nack(&req.topic, &req.group, &req.ack_ids)
        .await?;
    Ok(pb::NackResponse { redelivering })
}

impl PsService {
    /// Opens a subscription: its first pull creates the group, so that what
    /// is published after the Subscribed marker is delivered.
    async fn open_subscription(
        &self,
        ns: Arc<Namespace>,
        req: pb::SubscribeRequest,
    ) -> Result<Subscriber, ProxyError> {
        let sub = self.subscription(&ns, &req)?;
        let backend = ns.pubsub()?.clone();
        let first = backend.pull(&sub, PULL_BATCH, Duration::ZERO).await?;
        let marker = pb::SubscribeResponse {
            item: Some(pb::subscribe_response::Item::Subscribed(pb::Subscribed {
                consumer: sub.consumer.clone(),
                ack_deadline_seconds: sub.ack_deadline.as_secs() as u32,
                max_attempts: sub.max_attempts,
            })),
        };
        Ok(Subscriber {
            backend,
            sub,
            marker: Some(marker),
            pending: first.into(),
        })
    }
}

/// One open subscription, as the pipeline's stream source: the Subscribed
/// marker, then deliveries pulled a batch at a time. Deliveries pulled but
/// not sent (the client went away) are delivered again after their ack
/// deadline (at-least-once).
struct Subscriber {
    backend: Arc<dyn ps::PubSubBackend>,
    sub: Subscription,
    marker: Option<pb::SubscribeResponse>,
    pending: VecDeque<Delivery>,
}

impl Source for Subscriber {
    type Item = pb::SubscribeResponse;

    async fn next(&mut self) -> Option<Result<pb::SubscribeResponse, ProxyError>> {
        if let Some(marker) = self.marker.take() {
            return Some(Ok(marker));
        }
        loop {
            if let Some(delivery) = self.pending.pop_front() {
                return Some(Ok(pb::SubscribeResponse {
                    item: Some(pb::subscribe_response::Item::Message(message(delivery))),
                }));
            }
            // Cancel-safe: a pull dropped half-way leaves nothing pending.
            match self.backend.pull(&self.sub, PULL_BATCH, PULL_WAIT).await {
                Ok(batch) => self.pending.extend(batch),
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

impl AuditedRequest for pb::PublishRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn targets(&self, t: &mut Targets) {
        t.id(&self.topic);
    }
}

impl AuditedRequest for pb::SubscribeRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn targets(&self, t: &mut Targets) {
        t.id(&self.topic);
        t.key(self.group.as_bytes());
    }
}

impl AuditedRequest for pb::AckRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn targets(&self, t: &mut Targets) {
        t.id(&self.topic);
        t.key(self.group.as_bytes());
    }
}

impl AuditedRequest for pb::NackRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn targets(&self, t: &mut Targets) {
        t.id(&self.topic);
        t.key(self.group.as_bytes());
    }
}

impl AuditedResponse for pb::PublishResponse {
    fn targets(&self, t: &mut Targets) {
        for id in &self.message_ids {
            t.key(id.as_bytes());
        }
    }
}
impl AuditedResponse for pb::AckResponse {}
impl AuditedResponse for pb::NackResponse {}
