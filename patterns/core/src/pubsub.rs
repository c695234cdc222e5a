//! The PubSub DAL's backend trait (see
//! `docs-cms/adr/014-timeseries-and-pubsub-plan.md`).
//!
//! Model: a namespace holds *topics*; a message is published to one topic
//! and delivered to every *consumer group* subscribed to it, to one
//! consumer of the group at a time. Delivery is **at-least-once**: a
//! delivered message is delivered again (to any consumer of the group)
//! until it is acknowledged, either after its ack deadline passed or at
//! once after a nack. After `max_attempts` deliveries without an ack, a
//! backend that declares [`crate::Capability::DeadLetter`] publishes it to
//! the topic's dead-letter topic ([`dead_letter_topic`]) and acknowledges
//! it. Consumers must tolerate duplicates: every delivery carries the
//! message id and its attempt number.
//!
//! Subscriptions are pulled: the proxy's Subscribe stream calls
//! [`PubSubBackend::pull`] in a loop and answers Ack/Nack calls, which may
//! arrive on any connection, with [`PubSubBackend::ack`] and
//! [`PubSubBackend::nack`]; an ack id names the backend position of one
//! delivery, so acks need no subscription state where the backend keeps it
//! (NATS, Redis).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::clock::Clock;
use crate::error::BackendError;

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutgoingMessage {
    /// Messages with the same key are delivered in publish order where the
    /// backend declares [`crate::Capability::OrderingKey`]; empty: none.
    pub ordering_key: String,
    pub attributes: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

/// A message as delivered to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The id the backend gave the message at publish (the same on every
    /// redelivery).
    pub message_id: String,
    /// Names this delivery for [`PubSubBackend::ack`] and
    /// [`PubSubBackend::nack`]; opaque to clients.
    pub ack_id: String,
    pub ordering_key: String,
    pub attributes: BTreeMap<String, String>,
    pub payload: Vec<u8>,
    /// When the message was published, in microseconds since the epoch.
    pub publish_time_us: i64,
    /// 1 on the first delivery, 2 on the first redelivery, ...
    pub attempt: u32,
}

/// Where a consumer group that does not exist yet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// Only messages published after the group is created.
    #[default]
    Latest,
    /// Every retained message ([`crate::Capability::Replay`]).
    Earliest,
}

/// One consumer's subscription to a topic in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    /// The consumer group; created on first use.
    pub group: String,
    /// This consumer's name within the group (unique per open stream).
    pub consumer: String,
    /// A delivery not acknowledged within this is delivered again.
    pub ack_deadline: Duration,
    /// Deliveries before a message is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Where a new group starts.
    pub start_at: StartAt,
}

/// The default ack deadline.
pub const DEFAULT_ACK_DEADLINE: Duration = Duration::from_secs(30);
/// The default number of deliveries before dead-lettering.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The dead-letter topic of `topic`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// What a PubSub backend is opened for.
#[derive(Clone)]
pub struct PubSubContext {
    /// The namespace the backend serves.
    pub namespace: String,
    /// The proxy's data directory, for backends that keep files.
    pub data_dir: PathBuf,
    pub clock: Arc<dyn Clock>,
}

/// Opens PubSub backends of one kind.
#[async_trait]
pub trait PubSubFactory: Send + Sync + 'static {
    /// The kind this factory opens, as written in namespace configuration.
    fn kind(&self) -> &'static str;

    /// Checks the namespace's backend `options` without opening anything;
    /// unknown fields are refused with [`BackendError::Config`].
    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError>;

    /// The option names that decide where a namespace's data lives or
    /// which server the backend connects to ([`crate::placement`]): only
    /// an operator may change them. Default: every option.
    fn placement_options(&self) -> &'static [&'static str] {
        &[crate::placement::ALL_OPTIONS]
    }

    /// Whether the placement options' defaults keep a namespace's data
    /// private to this proxy: no server is reached, and any file is the
    /// namespace's own. Only then may a namespace admin choose this kind
    /// with its placement options unset. Default: false.
    fn default_placement_is_private(&self) -> bool {
        false
    }

    /// The files, relative to the data directory, that a backend opened
    /// for `namespace` with `options` keeps; no other namespace may use
    /// them. Default: none.
    fn data_files(&self, namespace: &str, options: &serde_json::Value) -> Vec<std::path::PathBuf> {
        let _ = (namespace, options);
        Vec::new()
    }

    /// Opens a backend for `ctx.namespace`.
    async fn open(
        &self,
        ctx: PubSubContext,
        options: serde_json::Value,
    ) -> Result<Arc<dyn PubSubBackend>, BackendError>;
}

/// A PubSub backend serving one namespace. Every method may be called
/// concurrently.
#[async_trait]
pub trait PubSubBackend: Send + Sync + 'static {
    /// The backend kind, e.g. `nats`.
    fn kind(&self) -> &'static str;

    /// What the backend declares ([`crate::Capability::PUBSUB`] members).
    fn capabilities(&self) -> Capabilities;

    /// Publishes `messages` to `topic` in order; returns their ids, in the
    /// same order. A batch that fails may have been partly published (the
    /// error says how many were); retrying it may then duplicate, which
    /// at-least-once delivery allows.
    async fn publish(
        &self,
        topic: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<String>, BackendError>;

    /// Up to `max` deliveries for `sub`: redeliveries due (deadline passed
    /// or nacked) and new messages; waits up to `wait` when none is ready,
    /// then returns an empty batch. Dead-letters a message due for
    /// delivery number `max_attempts + 1` instead of returning it.
    async fn pull(
        &self,
        sub: &Subscription,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BackendError>;

    /// Acknowledges deliveries of `group` on `topic`: they are not
    /// delivered again. Returns how many were still outstanding (an ack of
    /// a delivery already acked, or redelivered since, counts 0 and is
    /// not an error).
    async fn ack(&self, topic: &str, group: &str, ack_ids: &[String]) -> Result<u32, BackendError>;

    /// Makes deliveries due for redelivery at once.
    async fn nack(&self, topic: &str, group: &str, ack_ids: &[String])
    -> Result<u32, BackendError>;

    /// Releases the backend's resources.
    async fn close(&self) -> Result<(), BackendError> {
        Ok(())
    }
}
