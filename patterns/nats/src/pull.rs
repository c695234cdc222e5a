//! Pulling deliveries from a group's durable consumer, and dead-lettering.
//!
//! Every pull request sent to the server completes before `pull` returns
//! (a no-wait fetch, or a one-message request that expires within the
//! caller's wait), so no message is delivered into a request nobody reads:
//! such a lost delivery would count as an attempt.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use pattern_core::BackendError;
use pattern_core::pubsub::{Delivery, Subscription, dead_letter_topic};
use tokio_stream::StreamExt;

use crate::{NatsBackend, codec, names, unavailable};

/// Most messages one pull returns.
const MAX_BATCH: usize = 1000;
/// The shortest wait sent to the server for a waiting pull.
const MIN_EXPIRES: Duration = Duration::from_millis(10);

pub(crate) async fn pull(
    b: &NatsBackend,
    sub: &Subscription,
    max: usize,
    wait: Duration,
) -> Result<Vec<Delivery>, BackendError> {
    names::check_topic(&sub.topic)?;
    names::check_name("group", &sub.group)?;
    names::check_name("consumer", &sub.consumer)?;
    if sub.max_attempts == 0 {
        return Err(BackendError::InvalidArgument(
            "max_attempts must be at least 1".into(),
        ));
    }
    if sub.ack_deadline < Duration::from_millis(100) {
        return Err(BackendError::InvalidArgument(
            "ack_deadline must be at least 100 ms".into(),
        ));
    }
    let consumer = b.consumer(sub).await?;
    let max = max.clamp(1, MAX_BATCH);
    let end = Instant::now() + wait;
    let mut out = Vec::new();
    loop {
        let fetched = consumer
            .fetch()
            .max_messages(max - out.len())
            .messages()
            .await
            .map_err(|e| unavailable("pulling", e))?;
        let n = take(b, sub, fetched, &mut out).await?;
        if out.len() >= max || (n == 0 && !out.is_empty()) {
            return Ok(out);
        }
        if n > 0 {
            continue; // all were dead-lettered, or more may be ready
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(out);
        }
        let waited = consumer
            .batch()
            .max_messages(1)
            .expires(left.max(MIN_EXPIRES))
            .messages()
            .await
            .map_err(|e| unavailable("pulling", e))?;
        take(b, sub, waited, &mut out).await?;
        if Instant::now() >= end && out.is_empty() {
            return Ok(out);
        }
    }
}

/// Reads a pull request's messages into `out`, dead-lettering those past
/// `max_attempts`; returns how many messages the request brought.
async fn take(
    b: &NatsBackend,
    sub: &Subscription,
    mut batch: jetstream::consumer::pull::Batch,
    out: &mut Vec<Delivery>,
) -> Result<usize, BackendError> {
    let consumer = names::consumer_name(&sub.topic, &sub.group);
    let mut n = 0;
    while let Some(message) = batch.next().await {
        let message = message.map_err(|e| unavailable("pulling", e))?;
        n += 1;
        let Some(reply) = message.reply.as_ref().map(|r| r.to_string()) else {
            continue;
        };
        let info = names::parse_ack_id(&reply, &b.stream_name, &consumer)
            .map_err(|e| BackendError::Internal(format!("nats: unexpected reply subject: {e}")))?;
        let (ordering_key, attributes) = codec::from_headers(message.headers.as_ref());
        let message_id = info.stream_sequence.to_string();
        let attempt = b
            .attempts
            .next(&consumer, info.stream_sequence, info.delivered);
        if attempt == DEAD || attempt > u64::from(sub.max_attempts) {
            if attempt != DEAD {
                dead_letter(b, sub, &message, &message_id, &ordering_key, attributes).await?;
                b.attempts.dead(&consumer, info.stream_sequence);
            }
            b.client
                .request(reply, "+ACK".into())
                .await
                .map_err(|e| unavailable("ending a dead-lettered message", e))?;
            continue;
        }
        out.push(Delivery {
            message_id,
            ack_id: reply,
            ordering_key,
            attributes,
            payload: message.payload.to_vec(),
            publish_time_us: info.timestamp_ns / 1000,
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
        });
    }
    Ok(n)
}

/// Publishes `message` to the dead-letter topic with `prism-*` attributes.
async fn dead_letter(
    b: &NatsBackend,
    sub: &Subscription,
    message: &jetstream::Message,
    message_id: &str,
    ordering_key: &str,
    mut attributes: std::collections::BTreeMap<String, String>,
) -> Result<(), BackendError> {
    attributes.insert(
        "prism-dlq-reason".into(),
        "max_attempts reached without an ack".into(),
    );
    attributes.insert("prism-original-message-id".into(), message_id.into());
    attributes.insert("prism-original-topic".into(), sub.topic.clone());
    attributes.insert("prism-attempts".into(), sub.max_attempts.to_string());
    attributes.insert("prism-group".into(), sub.group.clone());
    let headers = codec::to_headers(ordering_key, &attributes)?;
    let subject = format!("{}.{}", b.subject_root, dead_letter_topic(&sub.topic));
    b.js.publish_with_headers(subject, headers, message.payload.clone())
        .await
        .map_err(|e| unavailable("dead-lettering", e))?
        .await
        .map_err(|e| unavailable("dead-lettering", e))?;
    Ok(())
}

/// Marks a message this backend dead-lettered.
const DEAD: u64 = u64::MAX;
/// Most deliveries remembered; past it the memory starts over (attempt
/// numbers then come from the server alone).
const MAX_REMEMBERED: usize = 100_000;

/// The attempt numbers of deliveries this backend made, by (consumer,
/// stream sequence). The server's delivery count can go back to 1 for a
/// message it redelivers (seen with nats-server 2.9: a redelivery racing
/// the ack wait, or one after the message was acknowledged on
/// dead-lettering); counting here as well keeps a message's attempts
/// increasing, so it is dead-lettered after `max_attempts` deliveries, and
/// a message dead-lettered once is never delivered again by this backend.
#[derive(Default)]
pub(crate) struct Attempts(Mutex<HashMap<(String, u64), u64>>);

impl Attempts {
    /// The attempt number of a delivery the server counts as `delivered`:
    /// never lower than one more than the last this backend saw; [`DEAD`]
    /// for a message already dead-lettered.
    pub(crate) fn next(&self, consumer: &str, sequence: u64, delivered: u64) -> u64 {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_REMEMBERED {
            map.clear();
        }
        let entry = map.entry((consumer.to_string(), sequence)).or_insert(0);
        if *entry == DEAD {
            return DEAD;
        }
        *entry = delivered.max(*entry + 1);
        *entry
    }

    /// Remembers that a message was dead-lettered.
    pub(crate) fn dead(&self, consumer: &str, sequence: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((consumer.to_string(), sequence), DEAD);
    }

    /// Forgets an acknowledged message.
    pub(crate) fn forget(&self, consumer: &str, sequence: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(consumer.to_string(), sequence));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_never_go_back_and_dead_letters_stay_dead() {
        let a = Attempts::default();
        assert_eq!(a.next("c", 7, 1), 1);
        assert_eq!(a.next("c", 7, 2), 2);
        // The server's count went back to 1: this backend's does not.
        assert_eq!(a.next("c", 7, 1), 3);
        assert_eq!(a.next("other", 7, 1), 1, "per consumer");
        a.dead("c", 7);
        assert_eq!(a.next("c", 7, 1), DEAD);
        a.forget("other", 7);
        assert_eq!(a.next("other", 7, 1), 1);
    }
}
