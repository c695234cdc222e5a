//! One consumer group on one topic, as seen by one backend: an rdkafka
//! consumer that is this backend's member of the Kafka consumer group, a
//! task that fetches from the partitions the group assigned to it into a
//! [`Tracker`], and the wake-ups that pulls wait on.
//!
//! Every Prism consumer (Subscribe stream) of the group inside this proxy
//! pulls from the same tracker, so a message delivered to a stream that
//! dies is redelivered to another stream of the group after its deadline.
//! Several proxies share a group's partitions through Kafka's group
//! protocol.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pattern_core::BackendError;
use pattern_core::pubsub::StartAt;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::tracker::{StoredMessage, Tracker};
use crate::{KafkaOptions, kafka_err};

/// Messages a group holds in memory (waiting or unacknowledged) before the
/// fetch task stops fetching until some are acknowledged.
pub(crate) const MAX_BUFFERED: usize = 10_000;

/// How long blocking metadata and offset calls may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the consumer's callbacks and the backend share.
pub(crate) struct Shared {
    /// The Kafka topic.
    pub topic: String,
    pub tracker: Mutex<Tracker>,
    /// Woken when messages become ready (fetched, nacked).
    pub ready: Notify,
    /// Woken when buffered messages were released (acked, revoked).
    pub space: Notify,
}

impl Shared {
    pub fn tracker(&self) -> MutexGuard<'_, Tracker> {
        // A panic while holding the lock leaves consistent-enough state:
        // the worst case is a redelivery.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The consumer's callbacks: keep the tracker's partitions in step with
/// the group's assignment.
pub(crate) struct GroupContext {
    shared: Arc<Shared>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                warn!(topic = %self.shared.topic, facility = fac, "librdkafka: {message}")
            }
            L::Warning | L::Notice => {
                tracing::info!(topic = %self.shared.topic, facility = fac, "librdkafka: {message}")
            }
            L::Info | L::Debug => {
                debug!(topic = %self.shared.topic, facility = fac, "librdkafka: {message}")
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let ids: Vec<i32> = tpl
                .elements_for_topic(&self.shared.topic)
                .iter()
                .map(|e| e.partition())
                .collect();
            // Commit what was acknowledged before handing the partitions over.
            let positions = self.shared.tracker().commit_positions(Some(&ids));
            if !positions.is_empty() {
                let tpl = positions_tpl(&self.shared.topic, &positions);
                if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                    warn!(topic = %self.shared.topic, error = %e, "kafka commit before revoke failed");
                }
            }
            let mut tracker = self.shared.tracker();
            for id in &ids {
                tracker.revoke(*id);
            }
            drop(tracker);
            debug!(topic = %self.shared.topic, partitions = ?ids, "kafka partitions revoked");
            self.shared.space.notify_one();
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut tracker = self.shared.tracker();
            let mut ids = Vec::new();
            for e in tpl.elements_for_topic(&self.shared.topic) {
                tracker.assign(e.partition());
                ids.push(e.partition());
            }
            debug!(topic = %self.shared.topic, partitions = ?ids, "kafka partitions assigned");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            warn!(topic = %self.shared.topic, error = %e, "kafka offset commit failed; \
                  unacknowledged and some acknowledged messages may be redelivered");
        }
    }
}

/// A list of `topic` partitions at the given offsets.
pub(crate) fn positions_tpl(topic: &str, positions: &[(i32, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(positions.len());
    for &(partition, offset) in positions {
        // Offsets come from Kafka and are never negative.
        let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset));
    }
    tpl
}

/// A group member: the consumer, the fetch task and the shared state.
pub(crate) struct Group {
    pub shared: Arc<Shared>,
    consumer: Arc<StreamConsumer<GroupContext>>,
    fetcher: JoinHandle<()>,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.fetcher.abort();
    }
}

impl Group {
    /// Joins `group_id` on `topic` (which must exist). A group that has no
    /// committed offsets starts at the end of every partition for
    /// [`StartAt::Latest`] (committed before joining, so nothing published
    /// after this returns is skipped) or at the beginning for
    /// [`StartAt::Earliest`].
    pub async fn join(
        options: &KafkaOptions,
        topic: &str,
        group_id: &str,
        start_at: StartAt,
    ) -> Result<Group, BackendError> {
        let shared = Arc::new(Shared {
            topic: topic.to_string(),
            tracker: Mutex::new(Tracker::default()),
            ready: Notify::new(),
            space: Notify::new(),
        });
        let consumer: StreamConsumer<GroupContext> = ClientConfig::new()
            .set("bootstrap.servers", &options.brokers)
            .set("group.id", group_id)
            .set("client.id", "prism-kafka")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Latest is arranged by committing the end offsets up front, so
            // a partition without a committed offset starts at its beginning.
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create_with_context(GroupContext {
                shared: shared.clone(),
            })
            .map_err(|e| kafka_err(&options.brokers, "creating a consumer", e))?;
        let consumer = Arc::new(consumer);
        if start_at == StartAt::Latest {
            let c = consumer.clone();
            let topic = topic.to_string();
            let brokers = options.brokers.clone();
            tokio::task::spawn_blocking(move || start_at_end(&c, &topic))
                .await
                .map_err(|e| BackendError::Internal(format!("joining a kafka group: {e}")))?
                .map_err(|e| kafka_err(&brokers, "setting a new group's start offsets", e))?;
        }
        consumer
            .subscribe(&[topic])
            .map_err(|e| kafka_err(&options.brokers, "subscribing", e))?;
        let fetcher = tokio::spawn(fetch(consumer.clone(), shared.clone()));
        Ok(Group {
            shared,
            consumer,
            fetcher,
        })
    }

    /// Leaves the group: stops fetching, commits every partition's
    /// acknowledged prefix and unsubscribes (the group rebalances at once
    /// instead of after the session timeout).
    pub async fn leave(&self) {
        self.fetcher.abort();
        let positions = self.shared.tracker().all_positions();
        let consumer = self.consumer.clone();
        let topic = self.shared.topic.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if !positions.is_empty()
                && let Err(e) =
                    consumer.commit(&positions_tpl(&topic, &positions), CommitMode::Sync)
            {
                warn!(topic = %topic, error = %e, "kafka commit on leaving the group failed");
            }
            consumer.unsubscribe();
        })
        .await;
    }

    /// Commits the partitions' acknowledged prefixes that moved.
    pub fn commit(&self, partitions: &[i32]) {
        let positions = self.shared.tracker().commit_positions(Some(partitions));
        if positions.is_empty() {
            return;
        }
        let tpl = positions_tpl(&self.shared.topic, &positions);
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            warn!(topic = %self.shared.topic, error = %e, "kafka offset commit failed");
        }
    }
}

/// For a group with no committed offsets, commits every partition's end
/// offset, so the group starts with messages published from now on.
fn start_at_end(consumer: &StreamConsumer<GroupContext>, topic: &str) -> KafkaResult<()> {
    let metadata = consumer.fetch_metadata(Some(topic), ADMIN_TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(tpl, ADMIN_TIMEOUT)?;
    if committed
        .elements()
        .iter()
        .any(|e| matches!(e.offset(), Offset::Offset(_)))
    {
        return Ok(()); // an existing group resumes where it was
    }
    let mut ends = Vec::new();
    for e in committed.elements() {
        let (_low, high) = consumer.fetch_watermarks(topic, e.partition(), ADMIN_TIMEOUT)?;
        ends.push((e.partition(), high));
    }
    consumer.commit(&positions_tpl(topic, &ends), CommitMode::Sync)
}

/// Fetches messages into the tracker while it has room.
async fn fetch(consumer: Arc<StreamConsumer<GroupContext>>, shared: Arc<Shared>) {
    let mut failures = 0u32;
    loop {
        loop {
            let space = shared.space.notified();
            if shared.tracker().buffered() < MAX_BUFFERED {
                break;
            }
            space.await;
        }
        match consumer.recv().await {
            Ok(m) => {
                failures = 0;
                if m.topic() != shared.topic {
                    continue;
                }
                let message = StoredMessage {
                    ordering_key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    attributes: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    let value = h.value.unwrap_or_default();
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(value).into_owned(),
                                    )
                                })
                                .collect::<BTreeMap<_, _>>()
                        })
                        .unwrap_or_default(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                };
                let inserted = shared.tracker().insert(m.partition(), m.offset(), message);
                if inserted {
                    shared.ready.notify_waiters();
                }
            }
            Err(e) => {
                failures += 1;
                warn!(topic = %shared.topic, error = %e, "kafka fetch failed; retrying");
                let backoff = Duration::from_millis(100 * u64::from(failures.min(20)));
                tokio::time::sleep(backoff).await;
            }
        }
    }
}
