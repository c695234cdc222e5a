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
use std::time::Duration;

use async_trait::async_trait;

use crate::error::BackendError;

/// The PubSub DAL's name in namespaces and the pattern protocol.
pub const DAL: &str = "pubsub";

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

/// A [`crate::Factory`] of PubSub backends; every factory whose `Backend`
/// is `dyn PubSubBackend` is one.
pub trait PubSubFactory: crate::Factory<Backend = dyn PubSubBackend> {}

impl<F: crate::Factory<Backend = dyn PubSubBackend>> PubSubFactory for F {}

/// A PubSub backend serving one namespace. Every method may be called
/// concurrently.
#[async_trait]
pub trait PubSubBackend: crate::Backend {
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
}
