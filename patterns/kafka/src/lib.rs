//! kafka: Prism's PubSub backend on Kafka (rdkafka with its bundled
//! librdkafka). See `docs-cms/kafka-backend.md` for the operator's view.
//!
//! * A Prism topic `t` of namespace `ns` is the Kafka topic
//!   `<topic_prefix>t` (default prefix `prism.ns.`), created on first use
//!   with `partitions` partitions; its dead-letter topic is
//!   `<topic_prefix>t.dlq`.
//! * A message is one Kafka record: key = ordering key (none when empty),
//!   headers = attributes, value = payload, timestamp = publish time. Its
//!   message id is `<partition>-<offset>`. Keyed messages are partitioned
//!   with murmur2 (as Java clients do), so a key keeps its order; unkeyed
//!   messages published through one backend all go to one partition of the
//!   topic (chosen per backend instance), so they keep their order too.
//! * A consumer group `g` on topic `t` is the Kafka group
//!   `<kafka topic>/g`. Each backend joins it once with one rdkafka
//!   consumer; the Subscribe streams of `g` inside the proxy share that
//!   member's deliveries ([`group`]). Kafka assigns partitions among
//!   proxies.
//! * Delivery state (in flight, deadlines, attempt counts) lives in the
//!   backend ([`tracker`]); only the contiguous acknowledged prefix of
//!   each partition is committed, so a crash redelivers every unacked
//!   message. Attempt counts start again at 1 after a rebalance or a
//!   restart: dead-lettering counts deliveries within one group member's
//!   ownership of a partition.
//! * Ack ids name the backend instance, partition, offset and delivery
//!   ([`ackid`]); an ack that reaches another proxy (or this one after a
//!   restart) fails with FAILED_PRECONDITION and the message is delivered
//!   again after its deadline.
//!
//! Options (namespace YAML, `backend.options`):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `brokers` | `127.0.0.1:9092` | bootstrap servers, `host:port[,host:port...]` |
//! | `topic_prefix` | `prism.<namespace>.` | prepended to every topic name |
//! | `partitions` | 3 | partitions of topics the backend creates |

#![forbid(unsafe_code)]

mod ackid;
mod group;
mod log;
mod publish;
mod tracker;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pattern_core::OpenContext;
use pattern_core::needs::{Consistency, Durability, GIB, NeedsProfile, Scope};
use pattern_core::pubsub::{
    Delivery, OutgoingMessage, PubSubBackend, Subscription, dead_letter_topic,
};
use pattern_core::{BackendError, Capabilities, Capability, Clock};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::Deserialize;
use tokio::sync::OnceCell;
use tracing::warn;

use ackid::AckId;
use group::Group;
use publish::Publisher;

pub use log::{DEDUP_WINDOW, KafkaLog, LogOptions};

/// The backend kind name.
pub const KIND: &str = "kafka";

/// The longest Kafka topic name.
const MAX_KAFKA_TOPIC: usize = 249;

/// kafka options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaOptions {
    /// Bootstrap servers, `host:port[,host:port...]` (default
    /// `127.0.0.1:9092`).
    pub brokers: String,
    /// Prepended to every topic name (default `prism.<namespace>.`); Kafka
    /// topic characters only (`a-z A-Z 0-9 . _ -`).
    pub topic_prefix: Option<String>,
    /// Partitions of the topics the backend creates (default 3, 1 to
    /// 10000). Topics that exist keep their partition count.
    pub partitions: i32,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            brokers: "127.0.0.1:9092".to_string(),
            topic_prefix: None,
            partitions: 3,
        }
    }
}

/// Whether `s` uses only Kafka's topic name characters.
fn kafka_name_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl KafkaOptions {
    /// Parses and checks options strictly.
    pub fn parse(options: serde_json::Value) -> Result<Self, BackendError> {
        let options: KafkaOptions = pattern_core::keyvalue::parse_options(KIND, options)?;
        if options.brokers.trim().is_empty() {
            return Err(BackendError::Config(
                "kafka backend option `brokers` is empty; give host:port[,host:port...], \
                 e.g. 127.0.0.1:9092"
                    .into(),
            ));
        }
        if !(1..=10_000).contains(&options.partitions) {
            return Err(BackendError::Config(format!(
                "kafka backend option `partitions` is {}; use 1 to 10000",
                options.partitions
            )));
        }
        if let Some(prefix) = &options.topic_prefix
            && (prefix.len() > 100 || !kafka_name_chars(prefix))
        {
            return Err(BackendError::Config(format!(
                "kafka backend option `topic_prefix` is {prefix:?}; use at most 100 of the \
                 characters a-z A-Z 0-9 . _ -"
            )));
        }
        Ok(options)
    }

    /// The topic prefix for `namespace`.
    fn prefix_for(&self, namespace: &str) -> Result<String, BackendError> {
        match &self.topic_prefix {
            Some(p) => Ok(p.clone()),
            None => {
                let prefix = format!("prism.{namespace}.");
                if prefix.len() > 100 || !kafka_name_chars(&prefix) {
                    return Err(BackendError::Config(format!(
                        "namespace {namespace:?} cannot be part of a Kafka topic name; set the \
                         kafka backend option `topic_prefix` (characters a-z A-Z 0-9 . _ -)"
                    )));
                }
                Ok(prefix)
            }
        }
    }
}

/// Maps an rdkafka error: broker and network trouble is UNAVAILABLE (the
/// call may be retried), anything else INTERNAL. `doing` says what failed.
pub(crate) fn kafka_err(brokers: &str, doing: &str, e: KafkaError) -> BackendError {
    use RDKafkaErrorCode as C;
    let unavailable = matches!(
        e.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::MessageTimedOut
                | C::OperationTimedOut
                | C::RequestTimedOut
                | C::QueueFull
                | C::NetworkException
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::CoordinatorLoadInProgress
                | C::UnknownTopicOrPartition
                | C::Resolve
        )
    );
    if unavailable {
        BackendError::Unavailable(format!(
            "kafka at {brokers}: {doing}: {e}; retry once the brokers are reachable \
             (a publish may have been partly applied)"
        ))
    } else {
        BackendError::Internal(format!("kafka at {brokers}: {doing}: {e}"))
    }
}

/// Opens kafka backends.
pub struct KafkaFactory;

#[async_trait]
impl pattern_core::Factory for KafkaFactory {
    type Backend = dyn PubSubBackend;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn needs_profile(&self) -> NeedsProfile {
        NeedsProfile {
            kind: KIND,
            preference: 2,
            external: true,
            consistency: Consistency::Strong,
            durability: Durability::Restart,
            durability_note: "keeps messages in Kafka topics acknowledged by every in-sync \
                              replica, which flush to disk in the background",
            scope: Scope::Shared,
            read_rps: 2_000,
            write_rps: 2_000,
            write_note: "",
            p99_ms: 50,
            max_data_bytes: 100 * GIB,
            data_note: "one Kafka topic per PubSub topic",
            keeps_for_days: true,
        }
    }

    fn placement_options(&self) -> &'static [&'static str] {
        &["brokers", "topic_prefix"]
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        KafkaOptions::parse(options.clone()).map(|_| ())
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        let options = ctx.options.clone();
        let options = KafkaOptions::parse(options)?;
        Ok(Arc::new(
            KafkaBackend::open(&ctx.namespace, ctx.clock, options).await?,
        ))
    }
}

type GroupKey = (String, String);

/// The group member an ack or nack applied to, and the partitions touched.
type Settled = (Arc<Group>, Vec<i32>);

/// The kafka backend for one namespace.
pub struct KafkaBackend {
    options: KafkaOptions,
    prefix: String,
    clock: Arc<dyn Clock>,
    /// Names this instance in ack ids.
    session: u64,
    next_delivery: AtomicU64,
    publisher: Publisher,
    groups: Mutex<HashMap<GroupKey, Arc<OnceCell<Arc<Group>>>>>,
}

impl KafkaBackend {
    /// Creates the Kafka clients (connections are made lazily: a broker
    /// that is down fails the first call with UNAVAILABLE, not the open).
    pub async fn open(
        namespace: &str,
        clock: Arc<dyn Clock>,
        options: KafkaOptions,
    ) -> Result<Self, BackendError> {
        let prefix = options.prefix_for(namespace)?;
        let session = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let publisher = Publisher::new(&options, session)?;
        Ok(KafkaBackend {
            options,
            prefix,
            clock,
            session,
            next_delivery: AtomicU64::new(1),
            publisher,
            groups: Mutex::new(HashMap::new()),
        })
    }

    /// The Kafka topic of Prism topic `topic`, checked.
    pub fn kafka_topic(&self, topic: &str) -> Result<String, BackendError> {
        let max = MAX_KAFKA_TOPIC - self.prefix.len() - ".dlq".len();
        if topic.is_empty() || topic.len() > max || !kafka_name_chars(topic) {
            return Err(BackendError::InvalidArgument(format!(
                "topic {:?} cannot be a Kafka topic name; use 1 to {max} of the characters \
                 a-z A-Z 0-9 . _ -",
                topic.chars().take(64).collect::<String>()
            )));
        }
        Ok(format!("{}{topic}", self.prefix))
    }

    /// Checks a consumer group name.
    fn check_group(group: &str) -> Result<(), BackendError> {
        if group.is_empty() || group.len() > 200 || !kafka_name_chars(group) {
            return Err(BackendError::InvalidArgument(format!(
                "group {:?} is not a valid consumer group name; use 1 to 200 of the \
                 characters a-z A-Z 0-9 . _ -",
                group.chars().take(64).collect::<String>()
            )));
        }
        Ok(())
    }

    /// The group member for `sub`, joining the group on first use.
    async fn group(&self, sub: &Subscription) -> Result<Arc<Group>, BackendError> {
        Self::check_group(&sub.group)?;
        let kafka_topic = self.kafka_topic(&sub.topic)?;
        let cell = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((sub.topic.clone(), sub.group.clone()))
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            self.publisher.ensure_topic(&kafka_topic).await?;
            let group_id = format!("{kafka_topic}/{}", sub.group);
            Group::join(&self.options, &kafka_topic, &group_id, sub.start_at)
                .await
                .map(Arc::new)
        })
        .await
        .cloned()
    }

    /// The group member of `topic`/`group` if this backend has joined it.
    fn joined(&self, topic: &str, group: &str) -> Option<Arc<Group>> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_string(), group.to_string()))
            .and_then(|cell| cell.get().cloned())
    }

    /// Parses ack ids and checks that this backend instance issued them.
    fn parse_ack_ids(&self, ack_ids: &[String]) -> Result<Vec<AckId>, BackendError> {
        let ids = ack_ids
            .iter()
            .map(|s| AckId::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        if ids.iter().any(|id| id.session != self.session) {
            return Err(BackendError::Status {
                code: tonic::Code::FailedPrecondition,
                message: "an ack_id was issued by another Prism proxy, or by this one before \
                          it restarted: kafka deliveries can only be acknowledged on the proxy \
                          that delivered them; nothing was acknowledged, and the messages will \
                          be delivered again after their ack deadline"
                    .into(),
            });
        }
        Ok(ids)
    }

    /// Applies `op` to each delivery named by `ack_ids`; returns how many
    /// were outstanding and the partitions touched.
    fn settle(
        &self,
        topic: &str,
        group: &str,
        ack_ids: &[String],
        op: impl Fn(&mut tracker::Tracker, &AckId) -> bool,
    ) -> Result<(u32, Option<Settled>), BackendError> {
        self.kafka_topic(topic)?;
        Self::check_group(group)?;
        let ids = self.parse_ack_ids(ack_ids)?;
        let Some(member) = self.joined(topic, group) else {
            return Ok((0, None));
        };
        let mut count = 0;
        let mut partitions = Vec::new();
        {
            let mut tracker = member.shared.tracker();
            for id in &ids {
                if op(&mut tracker, id) {
                    count += 1;
                    if !partitions.contains(&id.partition) {
                        partitions.push(id.partition);
                    }
                }
            }
        }
        Ok((count, Some((member, partitions))))
    }

    /// Publishes dead letters and marks them done (or due again when the
    /// publish failed).
    async fn dead_letter(&self, sub: &Subscription, member: &Group, dead: Vec<tracker::Taken>) {
        let dlq = dead_letter_topic(&sub.topic);
        let mut partitions = Vec::new();
        for d in dead {
            let result = match self.kafka_topic(&dlq) {
                Ok(topic) => {
                    self.publisher
                        .publish_dead_letter(&topic, &d, self.clock.now_ms())
                        .await
                }
                Err(e) => Err(e),
            };
            let mut tracker = member.shared.tracker();
            match result {
                Ok(()) => {
                    tracker.finish_dead_letter(d.partition, d.offset, d.delivery);
                    if !partitions.contains(&d.partition) {
                        partitions.push(d.partition);
                    }
                }
                Err(e) => {
                    tracker.abort_dead_letter(d.partition, d.offset, d.delivery);
                    warn!(topic = %sub.topic, group = %sub.group, error = %e,
                          "publishing a dead letter failed; will retry");
                }
            }
        }
        if !partitions.is_empty() {
            member.commit(&partitions);
            member.shared.space.notify_one();
        }
    }
}

#[async_trait]
impl pattern_core::Backend for KafkaBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Capability::OrderingKey)
            .with(Capability::Replay)
            .with(Capability::ConsumerGroups)
            .with(Capability::DeadLetter)
            .with(Capability::Durable)
    }

    async fn close(&self) -> Result<(), BackendError> {
        let groups: Vec<_> = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .filter_map(|(_, cell)| cell.get().cloned())
            .collect();
        for group in groups {
            group.leave().await;
        }
        self.publisher.flush().await;
        Ok(())
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.publisher.health().await
    }
}

#[async_trait]
impl PubSubBackend for KafkaBackend {
    async fn publish(
        &self,
        topic: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<String>, BackendError> {
        let kafka_topic = self.kafka_topic(topic)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.publisher
            .publish(&kafka_topic, &messages, self.clock.now_ms())
            .await
    }

    async fn pull(
        &self,
        sub: &Subscription,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BackendError> {
        if sub.max_attempts == 0 {
            return Err(BackendError::InvalidArgument(
                "max_attempts is 0; use at least 1".into(),
            ));
        }
        let member = self.group(sub).await?;
        let max = max.max(1);
        let deadline = tokio::time::Instant::now() + wait;
        let deadline_ms = u64::try_from(sub.ack_deadline.as_millis()).unwrap_or(u64::MAX);
        loop {
            let ready = member.shared.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let now_ms = self.clock.now_ms();
            let (taken, next_due) = {
                let mut tracker = member.shared.tracker();
                let taken = tracker.take(now_ms, max, deadline_ms, sub.max_attempts, || {
                    self.next_delivery.fetch_add(1, Ordering::Relaxed)
                });
                (taken, tracker.next_due_ms())
            };
            let had_dead = !taken.dead_letters.is_empty();
            if had_dead {
                self.dead_letter(sub, &member, taken.dead_letters).await;
            }
            if !taken.deliveries.is_empty() {
                return Ok(taken
                    .deliveries
                    .into_iter()
                    .map(|t| publish::delivery(self.session, t))
                    .collect());
            }
            if had_dead {
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut until = deadline;
            if let Some(due) = next_due {
                until = until.min(now + Duration::from_millis(due.saturating_sub(now_ms)));
            }
            tokio::select! {
                _ = &mut ready => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, topic: &str, group: &str, ack_ids: &[String]) -> Result<u32, BackendError> {
        let (count, touched) = self.settle(topic, group, ack_ids, |t, id| {
            t.ack(id.partition, id.offset, id.delivery)
        })?;
        if let Some((member, partitions)) = touched
            && !partitions.is_empty()
        {
            member.commit(&partitions);
            member.shared.space.notify_one();
        }
        Ok(count)
    }

    async fn nack(
        &self,
        topic: &str,
        group: &str,
        ack_ids: &[String],
    ) -> Result<u32, BackendError> {
        let (count, touched) = self.settle(topic, group, ack_ids, |t, id| {
            t.nack(id.partition, id.offset, id.delivery)
        })?;
        if let Some((member, _)) = touched
            && count > 0
        {
            member.shared.ready.notify_waiters();
        }
        Ok(count)
    }
}
