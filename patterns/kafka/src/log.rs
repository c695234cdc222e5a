//! [`KafkaLog`]: Kafka as the durable log behind a TimeSeries tail
//! (ADR-014, "Kafka behind tail").
//!
//! Every written event is produced to one topic, keyed by its series id
//! (so a series keeps its order within a partition), with the event time
//! as the record timestamp. A tail from time `T` asks Kafka for each
//! partition's first offset whose timestamp is at least `T`
//! (`offsets_for_times`), reads from there without a consumer group, and
//! delivers the events whose time is at least `T` (late events written
//! after that offset may be older; they are skipped).
//!
//! Record layout: key = series id, value = payload, headers
//! `prism-event-id`, `prism-event-time-us`, and one `tag.<name>` per tag.
//! Idempotence stays with the TimeSeries backend that stores the events:
//! the log may hold an event twice when a write is retried.

use std::collections::BTreeMap;
use std::time::Duration;

use pattern_core::BackendError;
use pattern_core::timeseries::Event;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::publish::Publisher;
use crate::{KafkaOptions, kafka_err};

const EVENT_ID: &str = "prism-event-id";
const EVENT_TIME: &str = "prism-event-time-us";
const TAG_PREFIX: &str = "tag.";
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A Kafka topic that holds a namespace's written events.
pub struct KafkaLog {
    options: KafkaOptions,
    topic: String,
    publisher: Publisher,
}

impl KafkaLog {
    /// A log on Kafka topic `topic` (created on first append or tail with
    /// `options.partitions` partitions; `options.topic_prefix` is not
    /// used).
    pub fn new(options: KafkaOptions, topic: &str) -> Result<Self, BackendError> {
        if topic.is_empty() || topic.len() > 249 || !crate::kafka_name_chars(topic) {
            return Err(BackendError::Config(format!(
                "log topic {topic:?} is not a Kafka topic name; use 1 to 249 of the \
                 characters a-z A-Z 0-9 . _ -"
            )));
        }
        let publisher = Publisher::new(&options, 0)?;
        Ok(KafkaLog {
            options,
            topic: topic.to_string(),
            publisher,
        })
    }

    /// Produces `events` to the log; returns once Kafka has them all.
    pub async fn append(&self, events: &[Event]) -> Result<(), BackendError> {
        self.publisher.ensure_topic(&self.topic).await?;
        let mut pending = Vec::with_capacity(events.len());
        for e in events {
            let time = e.time_us.to_string();
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: EVENT_ID,
                    value: Some(e.event_id.as_bytes()),
                })
                .insert(Header {
                    key: EVENT_TIME,
                    value: Some(time.as_bytes()),
                });
            for (k, v) in &e.tags {
                headers = headers.insert(Header {
                    key: &format!("{TAG_PREFIX}{k}"),
                    value: Some(v.as_bytes()),
                });
            }
            let record = FutureRecord::<str, [u8]>::to(&self.topic)
                .key(e.series_id.as_str())
                .payload(&e.payload)
                .headers(headers)
                .timestamp(e.time_us.div_euclid(1000));
            pending.push(self.publisher.enqueue(record).await);
        }
        let mut failure = None;
        for p in pending {
            if let Err(e) = crate::publish::settle(p).await {
                failure.get_or_insert(e);
            }
        }
        match failure {
            None => Ok(()),
            Some(e) => Err(kafka_err(&self.options.brokers, "appending to the log", e)),
        }
    }

    /// Follows the log from `start_us`: every event with a time at least
    /// `start_us`, from the first offsets at or after it, then live ones.
    pub async fn tail(&self, start_us: i64) -> Result<LogTail, BackendError> {
        self.publisher.ensure_topic(&self.topic).await?;
        let brokers = self.options.brokers.clone();
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "prism-log-tail")
            .set("enable.auto.commit", "false")
            .set("client.id", "prism-kafka-log")
            .create()
            .map_err(|e| kafka_err(&brokers, "creating a log reader", e))?;
        let topic = self.topic.clone();
        let consumer = tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(Some(&topic), LOOKUP_TIMEOUT)?;
            let mut wanted = TopicPartitionList::new();
            for t in metadata.topics().iter().filter(|t| t.name() == topic) {
                for p in t.partitions() {
                    wanted.add_partition_offset(
                        &topic,
                        p.id(),
                        Offset::Offset(start_us.div_euclid(1000)),
                    )?;
                }
            }
            let mut found = consumer.offsets_for_times(wanted, LOOKUP_TIMEOUT)?;
            // No record at or after the time: start at the end.
            let missing: Vec<i32> = found
                .elements()
                .iter()
                .filter(|e| !matches!(e.offset(), Offset::Offset(o) if o >= 0))
                .map(|e| e.partition())
                .collect();
            for partition in missing {
                found.set_partition_offset(&topic, partition, Offset::End)?;
            }
            consumer.assign(&found)?;
            Ok::<_, rdkafka::error::KafkaError>(consumer)
        })
        .await
        .map_err(|e| BackendError::Internal(format!("starting a log tail: {e}")))?
        .map_err(|e| kafka_err(&brokers, "finding the log offsets for a time", e))?;
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(async move {
            loop {
                let item = match consumer.recv().await {
                    Ok(m) => match decode(&m) {
                        Some(e) if e.time_us < start_us => continue,
                        Some(e) => Ok(e),
                        None => continue, // not written by KafkaLog
                    },
                    Err(e) => Err(kafka_err(&brokers, "reading the log", e)),
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(LogTail { rx, task })
    }
}

/// An event from a record written by [`KafkaLog::append`].
fn decode<M: Message>(m: &M) -> Option<Event> {
    let series_id = String::from_utf8(m.key()?.to_vec()).ok()?;
    let mut event_id = None;
    let mut time_us = None;
    let mut tags = BTreeMap::new();
    for h in m.headers()?.iter() {
        let value = std::str::from_utf8(h.value.unwrap_or_default()).ok()?;
        if h.key == EVENT_ID {
            event_id = Some(value.to_string());
        } else if h.key == EVENT_TIME {
            time_us = value.parse().ok();
        } else if let Some(tag) = h.key.strip_prefix(TAG_PREFIX) {
            tags.insert(tag.to_string(), value.to_string());
        }
    }
    Some(Event {
        series_id,
        time_us: time_us?,
        event_id: event_id?,
        tags,
        payload: m.payload().unwrap_or_default().to_vec(),
    })
}

/// A running tail of a [`KafkaLog`]; stops when dropped.
pub struct LogTail {
    rx: mpsc::Receiver<Result<Event, BackendError>>,
    task: JoinHandle<()>,
}

impl LogTail {
    /// The next event (or read error); waits for one.
    pub async fn next(&mut self) -> Option<Result<Event, BackendError>> {
        self.rx.recv().await
    }
}

impl Drop for LogTail {
    fn drop(&mut self) {
        self.task.abort();
    }
}
