//! Producing records (publishes and dead letters), creating topics, and
//! turning tracked messages into deliveries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pattern_core::BackendError;
use pattern_core::pubsub::{Delivery, OutgoingMessage};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::Delivery as Produced;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::ackid::AckId;
use crate::tracker::Taken;
use crate::{KafkaOptions, kafka_err};

/// How long a record may wait for the broker before its publish fails.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long topic creation and metadata calls may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest record the backend produces, and the `max.message.bytes` of
/// the topics it creates (5 MiB: a payload as large as a namespace's
/// default `limits.max_value_bytes` fits with room to spare). Topics that
/// exist keep their own limit.
pub const MAX_RECORD_BYTES: usize = 5 << 20;

/// Attributes added to a dead letter.
pub const DLQ_REASON: &str = "prism-dlq-reason";
pub const DLQ_ORIGINAL_ID: &str = "prism-original-message-id";
pub const DLQ_ATTEMPTS: &str = "prism-attempts";

/// The producer, the admin client and the topics known to exist.
pub(crate) struct Publisher {
    brokers: String,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    partitions: i32,
    /// Kafka topic → partition count, for topics known to exist.
    topics: Mutex<HashMap<String, i32>>,
    /// Picks the partition for unkeyed messages.
    session: u64,
}

impl Publisher {
    pub fn new(options: &KafkaOptions, session: u64) -> Result<Self, BackendError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &options.brokers)
            .set("client.id", "prism-kafka")
            // Java clients' partitioner: the same key lands on the same
            // partition whichever client produced it.
            .set("partitioner", "murmur2_random")
            .set("acks", "all")
            .set("message.max.bytes", MAX_RECORD_BYTES.to_string())
            .set(
                "message.timeout.ms",
                MESSAGE_TIMEOUT.as_millis().to_string(),
            );
        let producer: FutureProducer = config
            .create()
            .map_err(|e| kafka_err(&options.brokers, "creating a producer", e))?;
        let admin: AdminClient<DefaultClientContext> = config
            .create()
            .map_err(|e| kafka_err(&options.brokers, "creating an admin client", e))?;
        Ok(Publisher {
            brokers: options.brokers.clone(),
            producer,
            admin,
            partitions: options.partitions,
            topics: Mutex::new(HashMap::new()),
            session,
        })
    }

    /// Creates `topic` unless it is known to exist; returns its partition
    /// count.
    pub async fn ensure_topic(&self, topic: &str) -> Result<i32, BackendError> {
        if let Some(n) = self.known(topic) {
            return Ok(n);
        }
        let max = MAX_RECORD_BYTES.to_string();
        let new = NewTopic::new(topic, self.partitions, TopicReplication::Fixed(-1))
            .set("max.message.bytes", &max);
        let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = self
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(|e| kafka_err(&self.brokers, "creating a topic", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(kafka_err(
                        &self.brokers,
                        "creating a topic",
                        KafkaError::AdminOp(code),
                    ));
                }
            }
        }
        let count = self.partition_count(topic).await?;
        self.topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_string(), count);
        Ok(count)
    }

    fn known(&self, topic: &str) -> Option<i32> {
        self.topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .copied()
    }

    /// The partition count of `topic` from the cluster's metadata.
    async fn partition_count(&self, topic: &str) -> Result<i32, BackendError> {
        let producer = self.producer.clone();
        let name = topic.to_string();
        let metadata = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(Some(&name), ADMIN_TIMEOUT)
        })
        .await
        .map_err(|e| BackendError::Internal(format!("reading kafka metadata: {e}")))?
        .map_err(|e| kafka_err(&self.brokers, "reading topic metadata", e))?;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if count == 0 {
            return Err(BackendError::Unavailable(format!(
                "kafka at {}: topic {topic} has no partitions in the cluster's metadata yet; \
                 retry",
                self.brokers
            )));
        }
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }

    /// Publishes `messages` to `topic` in order; returns their ids.
    pub async fn publish(
        &self,
        topic: &str,
        messages: &[OutgoingMessage],
        now_ms: u64,
    ) -> Result<Vec<String>, BackendError> {
        let partitions = self.ensure_topic(topic).await?;
        // Unkeyed messages of this backend all go to one partition, so they
        // keep their publish order.
        let unkeyed = i32::try_from(self.session % partitions as u64).unwrap_or(0);
        let mut pending: Vec<Result<DeliveryFuture, KafkaError>> = Vec::new();
        for m in messages {
            let headers = headers(m.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let mut record = FutureRecord::<str, [u8]>::to(topic)
                .payload(&m.payload)
                .headers(headers)
                .timestamp(i64::try_from(now_ms).unwrap_or(i64::MAX));
            if m.ordering_key.is_empty() {
                record = record.partition(unkeyed);
            } else {
                record = record.key(m.ordering_key.as_str());
            }
            pending.push(self.enqueue(record).await);
        }
        let mut ids = Vec::with_capacity(messages.len());
        let mut failure = None;
        for p in pending {
            match settle(p).await {
                Ok(d) => ids.push(format!("{}-{}", d.partition, d.offset)),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            None => Ok(ids),
            Some(e) => Err(match kafka_err(&self.brokers, "publishing", e) {
                BackendError::Unavailable(m) => BackendError::Unavailable(format!(
                    "{m}; {} of {} messages were published",
                    ids.len(),
                    messages.len()
                )),
                BackendError::Internal(m) => BackendError::Internal(format!(
                    "{m}; {} of {} messages were published",
                    ids.len(),
                    messages.len()
                )),
                other => other,
            }),
        }
    }

    /// Queues a record, waiting while the local queue is full.
    pub(crate) async fn enqueue(
        &self,
        record: FutureRecord<'_, str, [u8]>,
    ) -> Result<DeliveryFuture, KafkaError> {
        let mut record = record;
        let mut waited = Duration::ZERO;
        loop {
            match self.producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if waited < MESSAGE_TIMEOUT =>
                {
                    record = r;
                    let step = Duration::from_millis(10);
                    tokio::time::sleep(step).await;
                    waited += step;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Publishes a message that ran out of attempts to the dead-letter
    /// topic `dlq` (a Kafka topic name), with its key, attributes and
    /// payload and the dead-letter attributes.
    pub async fn publish_dead_letter(
        &self,
        dlq: &str,
        dead: &Taken,
        now_ms: u64,
    ) -> Result<(), BackendError> {
        self.ensure_topic(dlq).await?;
        let m = &dead.message;
        let original = message_id(dead.partition, dead.offset);
        let attempts = dead.attempts.to_string();
        let added = [
            (DLQ_REASON, "max_attempts"),
            (DLQ_ORIGINAL_ID, original.as_str()),
            (DLQ_ATTEMPTS, attempts.as_str()),
        ];
        let attrs = m
            .attributes
            .iter()
            .filter(|(k, _)| !added.iter().any(|(a, _)| a == k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(added.iter().copied());
        let mut record = FutureRecord::<str, [u8]>::to(dlq)
            .payload(&m.payload)
            .headers(headers(attrs))
            .timestamp(i64::try_from(now_ms).unwrap_or(i64::MAX));
        if !m.ordering_key.is_empty() {
            record = record.key(m.ordering_key.as_str());
        }
        let queued = self.enqueue(record).await;
        settle(queued)
            .await
            .map(|_| ())
            .map_err(|e| kafka_err(&self.brokers, "publishing a dead letter", e))
    }

    /// Asks a broker for the cluster's metadata: a round trip that fails
    /// when no broker answers within the admin timeout.
    pub async fn health(&self) -> Result<(), BackendError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            rdkafka::producer::Producer::client(&producer)
                .fetch_metadata(None, std::time::Duration::from_secs(2))
                .map(|_| ())
        })
        .await
        .map_err(|e| BackendError::Internal(format!("kafka health task failed: {e}")))?
        .map_err(|e| kafka_err(&self.brokers, "fetching metadata", e))
    }

    /// Waits for queued records to be sent.
    pub async fn flush(&self) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(MESSAGE_TIMEOUT)).await;
    }
}

/// The outcome of a queued record.
pub(crate) async fn settle(
    queued: Result<DeliveryFuture, KafkaError>,
) -> Result<Produced, KafkaError> {
    match queued?.await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// Record headers for attributes.
fn headers<'a>(attrs: impl Iterator<Item = (&'a str, &'a str)>) -> OwnedHeaders {
    attrs.fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(value.as_bytes()),
        })
    })
}

/// A message's id: its partition and offset.
pub(crate) fn message_id(partition: i32, offset: i64) -> String {
    format!("{partition}-{offset}")
}

/// The delivery of a taken message.
pub(crate) fn delivery(session: u64, t: Taken) -> Delivery {
    let ack_id = AckId {
        session,
        partition: t.partition,
        offset: t.offset,
        delivery: t.delivery,
    }
    .encode();
    Delivery {
        message_id: message_id(t.partition, t.offset),
        ack_id,
        ordering_key: t.message.ordering_key.clone(),
        attributes: t.message.attributes.clone(),
        payload: t.message.payload.clone(),
        publish_time_us: t.message.timestamp_ms.saturating_mul(1000),
        attempt: t.attempts,
    }
}
