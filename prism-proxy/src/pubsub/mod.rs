//! `prism.pubsub.v1.PubSubService`: validates each request against its
//! namespace, routes it to the namespace's PubSub backend, masks PII in
//! delivered payloads, and records the call ([`Gate::observe`]). A
//! subscription writes one audit record when it opens and one when it
//! ends, not one per message.

mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pattern_core::Capability;
use pattern_core::pubsub::{self as ps, Delivery, StartAt, Subscription};
use prism_proto::pubsub::v1 as pb;
use prism_proto::pubsub::v1::pub_sub_service_server::PubSubService;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, AuditedRequest, AuditedResponse, Targets};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::gate::{Gate, caller};
use crate::policy::Permission;
use crate::registry::{Namespace, Registry};
use validate::PsCheck;

/// The DAL in audit records and metrics.
const DAL: &str = "pubsub";
/// Deliveries pulled from the backend at a time by one subscription.
const PULL_BATCH: usize = 64;
/// How long one pull waits for messages before the stream checks that its
/// client is still there.
const PULL_WAIT: Duration = Duration::from_secs(1);

/// The PubSub gRPC service.
#[derive(Clone)]
pub struct PsService {
    gate: Gate,
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
            gate: Gate::new(registry, audit),
            consumer_prefix: format!("prism-{}-{started}", std::process::id()).into(),
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
        ns.pubsub()?;
        Ok(ns)
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

type SubscribeStream = ReceiverStream<Result<pb::SubscribeResponse, Status>>;

/// The open subscription, for the audit record of its opening.
pub struct OpenSubscription(SubscribeStream);

impl AuditedResponse for OpenSubscription {}

#[tonic::async_trait]
impl PubSubService for PsService {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let principal = caller(&request);
        let call = self.gate.audit().call("Publish", &request);
        let req = request.into_inner();
        self.gate
            .observe(DAL, call, async move {
                let ns = self.authorized(&req.namespace, &principal, Permission::Write)?;
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
            })
            .await
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let principal = caller(&request);
        let call = self.gate.audit().call("Subscribe", &request);
        let end_call = self.gate.audit().call("SubscribeEnd", &request);
        let req = request.into_inner();
        let opened = self
            .gate
            .observe(DAL, call, async {
                let ns = self.authorized(&req.namespace, &principal, Permission::Read)?;
                let sub = self.subscription(&ns, &req)?;
                let backend = ns.pubsub()?.clone();
                // The first pull creates the group, so that what is
                // published after the Subscribed marker is delivered.
                let first = backend.pull(&sub, PULL_BATCH, Duration::ZERO).await?;
                let stream = Subscriber {
                    gate: self.gate.clone(),
                    ns,
                    principal,
                    backend,
                    sub,
                }
                .run(first, end_call);
                Ok(OpenSubscription(stream))
            })
            .await?;
        Ok(Response::new(opened.into_inner().0))
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let principal = caller(&request);
        let call = self.gate.audit().call("Ack", &request);
        let req = request.into_inner();
        self.gate
            .observe(DAL, call, async move {
                let ns = self.authorized(&req.namespace, &principal, Permission::Read)?;
                PsCheck(&ns).acks(&req.topic, &req.group, &req.ack_ids)?;
                let acknowledged = ns
                    .pubsub()?
                    .ack(&req.topic, &req.group, &req.ack_ids)
                    .await?;
                Ok(pb::AckResponse { acknowledged })
            })
            .await
    }

    async fn nack(
        &self,
        request: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
        let principal = caller(&request);
        let call = self.gate.audit().call("Nack", &request);
        let req = request.into_inner();
        self.gate
            .observe(DAL, call, async move {
                let ns = self.authorized(&req.namespace, &principal, Permission::Read)?;
                PsCheck(&ns).acks(&req.topic, &req.group, &req.ack_ids)?;
                let redelivering = ns
                    .pubsub()?
                    .nack(&req.topic, &req.group, &req.ack_ids)
                    .await?;
                Ok(pb::NackResponse { redelivering })
            })
            .await
    }
}

/// One open subscription stream.
struct Subscriber {
    gate: Gate,
    ns: Arc<Namespace>,
    principal: Principal,
    backend: Arc<dyn ps::PubSubBackend>,
    sub: Subscription,
}

impl Subscriber {
    /// Sends the Subscribed marker and `first`, then pulls until the client
    /// goes away or the backend fails; writes the closing audit record.
    /// Deliveries pulled but not sent are delivered again after their ack
    /// deadline (at-least-once).
    fn run(self, first: Vec<Delivery>, end_call: crate::audit::Call) -> SubscribeStream {
        let (tx, out) = tokio::sync::mpsc::channel(PULL_BATCH);
        tokio::spawn(async move {
            let started = Instant::now();
            let pii = end_call.pii.clone();
            let mut reveal = self.gate.reveal(&self.ns, &self.principal);
            let marker = pb::SubscribeResponse {
                item: Some(pb::subscribe_response::Item::Subscribed(pb::Subscribed {
                    consumer: self.sub.consumer.clone(),
                    ack_deadline_seconds: self.sub.ack_deadline.as_secs() as u32,
                    max_attempts: self.sub.max_attempts,
                })),
            };
            let mut sent = 0u64;
            let mut code = tonic::Code::Ok;
            let mut batch = first;
            let released = self.ns.released();
            tokio::pin!(released);
            if tx.send(Ok(marker)).await.is_ok() {
                'stream: loop {
                    for delivery in batch.drain(..) {
                        let mut m = message(delivery);
                        reveal.returned(&mut m.payload);
                        let item = pb::SubscribeResponse {
                            item: Some(pb::subscribe_response::Item::Message(m)),
                        };
                        if tx.send(Ok(item)).await.is_err() {
                            break 'stream;
                        }
                        sent += 1;
                    }
                    let pulled = tokio::select! {
                        pulled = self.backend.pull(&self.sub, PULL_BATCH, PULL_WAIT) => pulled,
                        () = tx.closed() => break,
                        () = &mut released => {
                            let status = self.ns.moved("subscription");
                            code = status.code();
                            let _ = tx.send(Err(status)).await;
                            break;
                        }
                    };
                    match pulled {
                        Ok(next) => batch = next,
                        Err(e) => {
                            let status = Status::from(ProxyError::from(e));
                            code = status.code();
                            tracing::warn!(namespace = %self.ns.config.name, topic = %self.sub.topic, error = %status.message(), "subscription ended by a backend error");
                            let _ = tx.send(Err(status)).await;
                            break;
                        }
                    }
                }
            }
            crate::metrics::record_stream_items(&self.ns.config.name, DAL, "Subscribe", sent);
            tracing::debug!(
                namespace = %self.ns.config.name,
                messages = sent,
                seconds = started.elapsed().as_secs_f64(),
                "subscription ended"
            );
            reveal.report(&pii);
            self.gate
                .record_stream_end(DAL, end_call, &self.ns, code)
                .await;
        });
        ReceiverStream::new(out)
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
