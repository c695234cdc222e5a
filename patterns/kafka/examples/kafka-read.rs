//! Prints every record of a Kafka topic the way the kafka PubSub backend
//! wrote it (partition, offset = the Prism message id, key = ordering key,
//! headers = attributes, payload), from the beginning, then exits.
//!
//! `cargo run -p pattern-kafka --example kafka-read -- prism.<namespace>.<topic> [brokers]`
//!
//! It assigns the partitions directly (no consumer group), so it never
//! disturbs Prism's groups.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(topic) = args.next() else {
        return Err("usage: kafka-read <kafka topic> [brokers, default 127.0.0.1:9092]".into());
    };
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "prism-kafka-read")
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
            let (_, high) = consumer.fetch_watermarks(&topic, p.id(), Duration::from_secs(10))?;
            ends.push((p.id(), high));
        }
    }
    consumer.assign(&tpl)?;
    let mut left: i64 = ends.iter().map(|(_, high)| high).sum();
    while left > 0 {
        let Some(m) = consumer.poll(Duration::from_secs(10)) else {
            return Err("no record within 10 s; is the broker up?".into());
        };
        let m = m?;
        left -= 1;
        let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
        let mut headers = Vec::new();
        if let Some(h) = m.headers() {
            for h in h.iter() {
                let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                headers.push(format!("{}={value}", h.key));
            }
        }
        let payload = String::from_utf8_lossy(m.payload().unwrap_or_default());
        println!(
            "{}-{} key={key:?} attributes=[{}] payload={payload:?}",
            m.partition(),
            m.offset(),
            headers.join(", ")
        );
    }
    Ok(())
}
