//! nats: Prism's PubSub backend on NATS JetStream (async-nats).
//!
//! * One stream per namespace, `<stream_prefix>_<ns>` (file storage, limits
//!   retention, `max_age`), holding the subjects `<subject_prefix>.<ns>.>`;
//!   a topic is the subject `<subject_prefix>.<ns>.<topic>`; a message id is
//!   its stream sequence. Names are encoded as described in [`names`];
//!   attributes and the ordering key travel as headers ([`codec`]), so a
//!   plain NATS client reads messages as they are.
//! * A consumer group on a topic is a durable pull consumer filtered on the
//!   topic's subject, with explicit acks, `AckWait` = the subscription's ack
//!   deadline and unlimited `MaxDeliver`: the server redelivers after the
//!   deadline or a nack (`-NAK`), and this backend dead-letters a message
//!   when the server's delivery count passes `max_attempts` (publish to
//!   `<topic>.dlq`, then acknowledge the original).
//! * An ack id is the delivery's JetStream reply subject, checked against
//!   this namespace's stream and the (topic, group) consumer before use, so
//!   acks need no state and an ack id of another namespace is refused.
//!
//! Capabilities: `consumer_groups` (consumers of a durable share it),
//! `replay` (a new group may start at the first retained message),
//! `dead_letter`, `durable` (file storage; the server acknowledges a
//! publish once stored), and `ordering_key` in this sense: a group's first
//! deliveries follow publish order for every key (a topic is one ordered
//! subject); a redelivery may come after later messages, and messages of a
//! key are spread over the group's consumers, so per-key order holds for a
//! group with one consumer that acks before its deadline.
//!
//! Options (namespace YAML, `backend.options`):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `url` | `nats://127.0.0.1:4222` | the NATS server |
//! | `stream_prefix` | `PRISM` | stream name prefix (`[A-Za-z0-9-]`) |
//! | `subject_prefix` | `prism` | first subject token (`[A-Za-z0-9-]`) |
//! | `max_age_secs` | 604800 (7 days) | how long messages are kept; 0: forever |

#![forbid(unsafe_code)]

pub mod codec;
pub mod names;
mod pull;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use pattern_core::OpenContext;
use pattern_core::needs::{Consistency, Durability, GIB, NeedsProfile, Scope};
use pattern_core::pubsub::{OutgoingMessage, PubSubBackend, StartAt, Subscription};
use pattern_core::{BackendError, Capabilities, Capability};
use serde::Deserialize;

/// The backend kind name.
pub const KIND: &str = "nats";

/// How long a request to the server (publish acknowledgement, ack, stream
/// and consumer management) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Most unacknowledged deliveries of one group; beyond it pulls return
/// nothing until acks or deadlines free room.
pub const MAX_ACK_PENDING: i64 = 10_000;

/// nats options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsOptions {
    /// The server URL (default `nats://127.0.0.1:4222`).
    pub url: String,
    /// Stream name prefix (default `PRISM`).
    pub stream_prefix: String,
    /// First subject token (default `prism`).
    pub subject_prefix: String,
    /// Message retention in seconds (default 7 days); 0 keeps messages
    /// until the stream is deleted.
    pub max_age_secs: u64,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            url: "nats://127.0.0.1:4222".into(),
            stream_prefix: "PRISM".into(),
            subject_prefix: "prism".into(),
            max_age_secs: 7 * 24 * 3600,
        }
    }
}

impl NatsOptions {
    /// Parses and checks options strictly.
    pub fn parse(options: serde_json::Value) -> Result<Self, BackendError> {
        let options: NatsOptions = pattern_core::keyvalue::parse_options(KIND, options)?;
        for (field, value) in [
            ("stream_prefix", &options.stream_prefix),
            ("subject_prefix", &options.subject_prefix),
        ] {
            let ok = !value.is_empty()
                && value.len() <= 32
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(BackendError::Config(format!(
                    "nats backend option `{field}` is {value:?}; use 1 to 32 ASCII letters, \
                     digits or '-'"
                )));
            }
        }
        if !options.url.starts_with("nats://") && !options.url.starts_with("tls://") {
            return Err(BackendError::Config(format!(
                "nats backend option `url` is {:?}; expected nats://host:port",
                options.url
            )));
        }
        Ok(options)
    }
}

/// Opens [`NatsBackend`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct NatsFactory;

#[async_trait]
impl pattern_core::Factory for NatsFactory {
    type Backend = dyn PubSubBackend;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn needs_profile(&self) -> NeedsProfile {
        NeedsProfile {
            kind: KIND,
            preference: 0,
            external: true,
            consistency: Consistency::Strong,
            durability: Durability::Restart,
            durability_note: "keeps messages in a JetStream stream, which the server flushes \
                              to disk in the background: they survive restarts of the proxy",
            scope: Scope::Shared,
            read_rps: 3_000,
            write_rps: 3_000,
            write_note: "",
            p99_ms: 20,
            max_data_bytes: 8 * GIB,
            data_note: "one JetStream stream per namespace",
            keeps_for_days: true,
        }
    }

    fn placement_options(&self) -> &'static [&'static str] {
        &["url", "stream_prefix", "subject_prefix"]
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        NatsOptions::parse(options.clone()).map(|_| ())
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        let options = ctx.options.clone();
        let options = NatsOptions::parse(options)?;
        Ok(Arc::new(NatsBackend::open(&ctx.namespace, options).await?))
    }
}

/// A durable pull consumer and the ack wait it was last configured with.
#[derive(Clone)]
struct Group {
    consumer: consumer::PullConsumer,
    ack_wait: Duration,
}

/// The PubSub backend of one namespace on one JetStream stream.
pub struct NatsBackend {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    stream_name: String,
    /// `<subject_prefix>.<ns>`.
    subject_root: String,
    /// Consumers by (topic, group).
    groups: Mutex<HashMap<(String, String), Group>>,
    /// Deliveries this backend made and not yet saw acked, by (consumer,
    /// stream sequence); see [`pull::Attempts`].
    pub(crate) attempts: pull::Attempts,
}

pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("nats: {what} failed: {e}; check the NATS server"))
}

impl NatsBackend {
    /// Connects and creates (or finds) the namespace's stream.
    pub async fn open(namespace: &str, options: NatsOptions) -> Result<Self, BackendError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(options.url.as_str())
            .await
            .map_err(|e| {
                BackendError::Unavailable(format!(
                    "nats: cannot connect to {}: {e}; check that the server runs with JetStream",
                    options.url
                ))
            })?;
        let js = jetstream::new(client.clone());
        let ns = names::encode_token(namespace);
        let stream_name = format!("{}_{ns}", options.stream_prefix);
        let subject_root = format!("{}.{ns}", options.subject_prefix);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: stream_name.clone(),
                subjects: vec![format!("{subject_root}.>")],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                max_age: Duration::from_secs(options.max_age_secs),
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("creating the namespace's stream", e))?;
        Ok(NatsBackend {
            client,
            js,
            stream,
            stream_name,
            subject_root,
            groups: Mutex::new(HashMap::new()),
            attempts: pull::Attempts::default(),
        })
    }

    /// The subject of `topic` (checked).
    fn subject(&self, topic: &str) -> Result<String, BackendError> {
        names::check_topic(topic)?;
        Ok(format!("{}.{topic}", self.subject_root))
    }

    /// The durable consumer of `sub`'s (topic, group), created on first
    /// use and updated when the ack deadline changed.
    async fn consumer(&self, sub: &Subscription) -> Result<consumer::PullConsumer, BackendError> {
        let key = (sub.topic.clone(), sub.group.clone());
        let cached = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(g) = &cached
            && g.ack_wait == sub.ack_deadline
        {
            return Ok(g.consumer.clone());
        }
        let name = names::consumer_name(&sub.topic, &sub.group);
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: self.subject(&sub.topic)?,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: sub.ack_deadline,
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            deliver_policy: match sub.start_at {
                StartAt::Latest => consumer::DeliverPolicy::New,
                StartAt::Earliest => consumer::DeliverPolicy::All,
            },
            ..Default::default()
        };
        let mut consumer: consumer::PullConsumer = self
            .stream
            .get_or_create_consumer(&name, config.clone())
            .await
            .map_err(|e| unavailable("creating the group's consumer", e))?;
        if consumer.cached_info().config.ack_wait != sub.ack_deadline {
            let mut config = config;
            config.deliver_policy = consumer.cached_info().config.deliver_policy;
            consumer = self
                .stream
                .create_consumer(config)
                .await
                .map_err(|e| unavailable("updating the group's ack deadline", e))?;
        }
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key,
                Group {
                    consumer: consumer.clone(),
                    ack_wait: sub.ack_deadline,
                },
            );
        Ok(consumer)
    }

    /// Sends `body` to each checked ack id and counts the server's
    /// confirmations.
    async fn answer(
        &self,
        topic: &str,
        group: &str,
        ack_ids: &[String],
        body: &'static [u8],
    ) -> Result<u32, BackendError> {
        names::check_topic(topic)?;
        names::check_name("group", group)?;
        let consumer = names::consumer_name(topic, group);
        let infos = ack_ids
            .iter()
            .map(|id| names::parse_ack_id(id, &self.stream_name, &consumer))
            .collect::<Result<Vec<_>, _>>()?;
        let mut confirmed = 0;
        for info in infos {
            if body == b"+ACK" {
                self.attempts.forget(&consumer, info.stream_sequence);
            }
            self.client
                .request(info.subject, body.into())
                .await
                .map_err(|e| unavailable("acknowledging", e))?;
            confirmed += 1;
        }
        Ok(confirmed)
    }
}

#[async_trait]
impl pattern_core::Backend for NatsBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        [
            Capability::OrderingKey,
            Capability::Replay,
            Capability::ConsumerGroups,
            Capability::DeadLetter,
            Capability::Durable,
        ]
        .into_iter()
        .collect()
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.client
            .flush()
            .await
            .map_err(|e| unavailable("flushing", e))
    }

    async fn health(&self) -> Result<(), BackendError> {
        // A round trip to the server: PING, answered by PONG.
        self.client.flush().await.map_err(|e| {
            BackendError::Unavailable(format!(
                "nats server did not answer a ping ({e}); check that it runs and is reachable"
            ))
        })
    }
}

#[async_trait]
impl PubSubBackend for NatsBackend {
    async fn publish(
        &self,
        topic: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<String>, BackendError> {
        let subject = self.subject(topic)?;
        // Send the batch, then await the acknowledgements: publishes are
        // pipelined, and JetStream stores one subject's messages in order.
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            let headers = codec::to_headers(&m.ordering_key, &m.attributes)?;
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers, m.payload.into())
                .await
                .map_err(|e| partial(pending.len(), e))?;
            pending.push(ack);
        }
        let mut ids = Vec::with_capacity(pending.len());
        for ack in pending {
            let ack = ack.await.map_err(|e| partial(ids.len(), e))?;
            ids.push(ack.sequence.to_string());
        }
        Ok(ids)
    }

    async fn pull(
        &self,
        sub: &Subscription,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<pattern_core::pubsub::Delivery>, BackendError> {
        pull::pull(self, sub, max, wait).await
    }

    async fn ack(&self, topic: &str, group: &str, ack_ids: &[String]) -> Result<u32, BackendError> {
        self.answer(topic, group, ack_ids, b"+ACK").await
    }

    async fn nack(
        &self,
        topic: &str,
        group: &str,
        ack_ids: &[String],
    ) -> Result<u32, BackendError> {
        self.answer(topic, group, ack_ids, b"-NAK").await
    }
}

fn partial(done: usize, e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!(
        "nats: publish failed after {done} messages of the batch were stored: {e}; \
         retrying the batch may duplicate those"
    ))
}
