//! [`KafkaLog`]: Kafka as the durable log behind a TimeSeries tail
//! (ADR-014, "Kafka behind tail"), selected by a namespace's
//! `timeseries.log` section.
//!
//! Every written event is produced to one topic, keyed by its series id
//! (so a series keeps its order within a partition), with the event time
//! as the record timestamp. A tail from time `T` asks Kafka for each
//! partition's first offset whose timestamp is at least `T`
//! (`offsets_for_times`; every earlier record is older than `T`), reads
//! from there without a consumer group, and delivers the records of its
//! series whose time is at least `T` and whose tags match, in log order.
//! An event's sequence is its offset + 1. The tail is caught up when every
//! partition has reached the end it had (librdkafka's partition EOF).
//!
//! Record layout: key = series id, value = payload, headers
//! `prism-event-id`, `prism-event-time-us`, and one `tag.<name>` per tag.
//! The log is at least once: a retried write appends its events again.
//! A tail drops an event it has already delivered (by time and event id,
//! among the last [`DEDUP_WINDOW`] it delivered); other readers of the
//! topic see the repeat and can drop it by the same identity.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use pattern_core::BackendError;
use pattern_core::timeseries::{
    Event, EventLog, StoredEvent, TailItem, TailQuery, TailReceiver, TailStart,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::publish::Publisher;
use crate::{KafkaOptions, kafka_err};

const EVENT_ID: &str = "prism-event-id";
const EVENT_TIME: &str = "prism-event-time-us";
const TAG_PREFIX: &str = "tag.";
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many delivered events a tail remembers to drop repeats.
pub const DEDUP_WINDOW: usize = 65_536;

/// Options of a `timeseries.log` of kind `kafka`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogOptions {
    /// Bootstrap servers (default `127.0.0.1:9092`).
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// The topic (default `prism.<namespace>.events`).
    #[serde(default)]
    pub topic: Option<String>,
    /// Partitions when Prism creates the topic (default 3).
    #[serde(default = "default_partitions")]
    pub partitions: i32,
}

fn default_brokers() -> String {
    KafkaOptions::default().brokers
}

fn default_partitions() -> i32 {
    KafkaOptions::default().partitions
}

/// A Kafka topic that holds a namespace's written events.
pub struct KafkaLog {
    options: KafkaOptions,
    topic: String,
    publisher: Publisher,
}

impl KafkaLog {
    /// Checks the `timeseries.log.options` of namespace `namespace`;
    /// returns them with the topic resolved.
    pub fn check_options(
        namespace: &str,
        options: serde_json::Value,
    ) -> Result<(KafkaOptions, String), BackendError> {
        let options = if options.is_null() {
            serde_json::json!({})
        } else {
            options
        };
        let log: LogOptions = serde_json::from_value(options).map_err(|e| {
            BackendError::Config(format!(
                "kafka log options: {e}; the fields are brokers, topic and partitions"
            ))
        })?;
        let topic = log
            .topic
            .clone()
            .unwrap_or_else(|| format!("prism.{namespace}.events"));
        let kafka = KafkaOptions::parse(serde_json::json!({
            "brokers": log.brokers,
            "partitions": log.partitions,
        }))?;
        check_topic(&topic)?;
        Ok((kafka, topic))
    }

    /// Opens the log of namespace `namespace` with its
    /// `timeseries.log.options`.
    pub fn open(namespace: &str, options: serde_json::Value) -> Result<Self, BackendError> {
        let (options, topic) = Self::check_options(namespace, options)?;
        Self::new(options, &topic)
    }

    /// A log on Kafka topic `topic` (created on first append or tail with
    /// `options.partitions` partitions; `options.topic_prefix` is not
    /// used).
    pub fn new(options: KafkaOptions, topic: &str) -> Result<Self, BackendError> {
        check_topic(topic)?;
        let publisher = Publisher::new(&options, 0)?;
        Ok(KafkaLog {
            options,
            topic: topic.to_string(),
            publisher,
        })
    }

    /// The Kafka topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// A consumer assigned to every partition of the topic at the first
    /// offset at or after `start` (`None`: the end); returns it with where
    /// each partition starts and ends.
    async fn reader(&self, start: Option<i64>) -> Result<(StreamConsumer, CatchUp), BackendError> {
        self.publisher.ensure_topic(&self.topic).await?;
        let brokers = self.options.brokers.clone();
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "prism-log-tail")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("client.id", "prism-kafka-log")
            .create()
            .map_err(|e| kafka_err(&brokers, "creating a log reader", e))?;
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(Some(&topic), LOOKUP_TIMEOUT)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic)
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            let mut catch_up = CatchUp::default();
            let mut wanted = TopicPartitionList::new();
            for &p in &partitions {
                let (_low, high) = consumer.fetch_watermarks(&topic, p, LOOKUP_TIMEOUT)?;
                catch_up.partitions.insert(p, (high, high));
                let offset = match start {
                    Some(us) => Offset::Offset(us.div_euclid(1000)),
                    None => Offset::End,
                };
                wanted.add_partition_offset(&topic, p, offset)?;
            }
            let mut found = match start {
                Some(_) => consumer.offsets_for_times(wanted, LOOKUP_TIMEOUT)?,
                None => wanted,
            };
            for e in found.elements() {
                // A partition with no record at or after the time starts
                // at its end (Kafka answers -1: `Offset::End`).
                if let Offset::Offset(o) = e.offset()
                    && o >= 0
                    && let Some(state) = catch_up.partitions.get_mut(&e.partition())
                {
                    state.0 = o;
                }
            }
            let ends: Vec<i32> = found
                .elements()
                .iter()
                .filter(|e| !matches!(e.offset(), Offset::Offset(o) if o >= 0))
                .map(|e| e.partition())
                .collect();
            for partition in ends {
                found.set_partition_offset(&topic, partition, Offset::End)?;
            }
            consumer.assign(&found)?;
            Ok::<_, KafkaError>((consumer, catch_up))
        })
        .await
        .map_err(|e| BackendError::Internal(format!("starting a log tail: {e}")))?
        .map_err(|e| kafka_err(&brokers, "finding where to start reading the log", e))
    }
}

/// Whether a log tail has read what the log held when it started.
///
/// A partition is at its end when librdkafka reports partition EOF, which
/// rests on the broker's high watermark. Some Kafka-protocol brokers
/// (tansu 0.6) report a watermark below the true end (the base offset of
/// the last record batch + 1), and EOF never comes: for them, a partition
/// whose position passed the watermark it had at the start counts as read
/// once no record has arrived for [`CATCH_UP_IDLE`].
#[derive(Default)]
struct CatchUp {
    /// Partition -> (next offset to read, high watermark at the start).
    partitions: BTreeMap<i32, (i64, i64)>,
    /// Partitions librdkafka reported at their end.
    eof: BTreeSet<i32>,
    done: bool,
}

/// How long a tail past every start watermark waits for another record
/// before it reports catching up, when the broker sends no EOF.
const CATCH_UP_IDLE: Duration = Duration::from_millis(200);

impl CatchUp {
    fn read(&mut self, partition: i32, offset: i64) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.0 = state.0.max(offset + 1);
        }
    }

    /// Whether every partition reported EOF.
    fn all_eof(&self) -> bool {
        self.partitions.keys().all(|p| self.eof.contains(p))
    }

    /// Whether every partition reported EOF or passed its start watermark.
    fn past_watermarks(&self) -> bool {
        self.partitions
            .iter()
            .all(|(p, (next, high))| self.eof.contains(p) || next >= high)
    }
}

fn check_topic(topic: &str) -> Result<(), BackendError> {
    if topic.is_empty() || topic.len() > crate::MAX_KAFKA_TOPIC || !crate::kafka_name_chars(topic) {
        return Err(BackendError::Config(format!(
            "log topic {topic:?} is not a Kafka topic name; use 1 to 249 of the characters \
             a-z A-Z 0-9 . _ -"
        )));
    }
    Ok(())
}

#[async_trait]
impl EventLog for KafkaLog {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    /// A record's limit less room for the headers.
    fn max_event_bytes(&self) -> usize {
        crate::publish::MAX_RECORD_BYTES - (64 << 10)
    }

    /// Produces `events` to the log; returns once Kafka has them all.
    async fn append(&self, events: &[Event]) -> Result<(), BackendError> {
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

    async fn tail(
        &self,
        query: &TailQuery,
        start: TailStart,
    ) -> Result<TailReceiver, BackendError> {
        let from = match start {
            TailStart::From => Some(query.from_us),
            TailStart::Now => None,
        };
        let (consumer, mut catch_up) = self.reader(from).await?;
        let brokers = self.options.brokers.clone();
        let query = query.clone();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut seen = Recent::default();
            loop {
                let waiting = !catch_up.done && catch_up.past_watermarks();
                let received = tokio::select! {
                    r = consumer.recv() => Some(r),
                    () = tokio::time::sleep(CATCH_UP_IDLE), if waiting => None,
                    () = tx.closed() => return,
                };
                let item = match received {
                    None => {
                        catch_up.done = true;
                        TailItem::CaughtUp(last)
                    }
                    Some(Ok(m)) => {
                        catch_up.read(m.partition(), m.offset());
                        match decode(&m) {
                            Some(e)
                                if e.series_id == query.series_id
                                    && e.time_us >= query.from_us
                                    && e.matches(&query.tags)
                                    && seen.first_time(&e) =>
                            {
                                last = u64::try_from(m.offset()).unwrap_or(0) + 1;
                                TailItem::Event(StoredEvent {
                                    event: e,
                                    sequence: last,
                                })
                            }
                            // Another series, filtered out, a repeat, or
                            // not written by KafkaLog.
                            _ => continue,
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        catch_up.eof.insert(p);
                        if catch_up.done || !catch_up.all_eof() {
                            continue;
                        }
                        catch_up.done = true;
                        TailItem::CaughtUp(last)
                    }
                    Some(Err(e)) => {
                        let _ = tx
                            .send(Err(kafka_err(&brokers, "reading the log", e)))
                            .await;
                        return;
                    }
                };
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// The identities of the events a tail delivered last.
#[derive(Default)]
struct Recent {
    set: HashSet<(i64, String)>,
    order: VecDeque<(i64, String)>,
}

impl Recent {
    /// Remembers `e`; false when it was delivered already.
    fn first_time(&mut self, e: &Event) -> bool {
        let id = (e.time_us, e.event_id.clone());
        if !self.set.insert(id.clone()) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > DEDUP_WINDOW
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
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
