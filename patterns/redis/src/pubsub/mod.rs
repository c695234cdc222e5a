//! Prism's PubSub backend on Redis Streams (kind `redis`, like the
//! KeyValue backend; the DAL picks the factory).
//!
//! * A topic is the stream `<prefix>:{<ns>}:topic:<topic>` (all keys of a
//!   namespace share its hash tag, so one script may touch a topic and its
//!   dead-letter topic on Redis Cluster). A message is one entry with the
//!   fields `payload`, `ordering_key` (when set) and `attr:<name>` per
//!   attribute; its id is the entry id, its publish time the id's
//!   milliseconds. `XRANGE` shows messages as they are.
//! * A consumer group is a Redis consumer group of that stream, created
//!   on first pull (`XGROUP CREATE ... MKSTREAM`, at `$` for a group
//!   starting at the latest message, `0` for the earliest).
//! * A pull runs one script (`lua/pubsub_pull.lua`): `XAUTOCLAIM` with
//!   min-idle = the ack deadline claims deliveries due again (Redis counts
//!   deliveries in the pending entry list), dead-letters those past
//!   `max_attempts` (`XADD` to `<topic>.dlq` and `XACK`, atomically), then
//!   `XREADGROUP >` reads new messages. Without deliveries the pull polls
//!   until its wait ends (a blocking `XREADGROUP` would stall the shared
//!   multiplexed connection).
//! * An ack id is the entry id; `XACK` answers how many were pending. A
//!   nack makes a delivery look idle for a year (`XCLAIM ... IDLE JUSTID`,
//!   which keeps its delivery count), so the next pull of any consumer
//!   claims it.
//!
//! Capabilities: `consumer_groups`, `replay`, `dead_letter`, and
//! `ordering_key` in this sense: a group's first deliveries follow publish
//! order for every key (a topic is one stream); redeliveries may come after
//! later messages and a key's messages are spread over the group's
//! consumers, so per-key order holds for a group with one consumer that
//! acks in time. Not `durable`: Redis here runs without persistence.
//!
//! Options: `url` (required), `key_prefix` (default `prism`), `max_len`
//! (default none: each topic stream is trimmed to about that many entries
//! on publish, `MAXLEN ~`).

mod pull;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pattern_core::OpenContext;
use pattern_core::needs::{Consistency, Durability, GIB, NeedsProfile, Scope};
use pattern_core::pubsub::{Delivery, OutgoingMessage, PubSubBackend, Subscription};
use pattern_core::{BackendError, Capabilities, Capability};
use redis::aio::ConnectionManager;
use serde::Deserialize;

use crate::{KIND, RedisOptions, connect, redis_err};

/// How far in the past a nack moves a delivery (longer than any deadline).
const NACK_IDLE_MS: u64 = 365 * 24 * 3600 * 1000;
/// Longest ack deadline accepted (a nack must look idle past it).
const MAX_ACK_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// Options of the Redis PubSub backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisPubSubOptions {
    /// `redis://[user:password@]host:port[/db]`; required.
    pub url: Option<String>,
    /// The first segment of every key name (default `prism`).
    pub key_prefix: String,
    /// Trim each topic stream to about this many entries on publish;
    /// default: no trimming.
    pub max_len: Option<u64>,
}

impl Default for RedisPubSubOptions {
    fn default() -> Self {
        RedisPubSubOptions {
            url: None,
            key_prefix: "prism".into(),
            max_len: None,
        }
    }
}

impl RedisPubSubOptions {
    /// Parses and checks options strictly (the URL and prefix as the
    /// KeyValue backend does).
    pub fn parse(options: serde_json::Value) -> Result<Self, BackendError> {
        let options: RedisPubSubOptions = pattern_core::keyvalue::parse_options(KIND, options)?;
        RedisOptions::parse(serde_json::json!({
            "url": options.url,
            "key_prefix": options.key_prefix,
        }))?;
        if options.max_len == Some(0) {
            return Err(BackendError::Config(
                "redis backend option `max_len` is 0; use a positive number of entries, or omit it"
                    .into(),
            ));
        }
        Ok(options)
    }

    fn kv(&self) -> RedisOptions {
        RedisOptions {
            url: self.url.clone(),
            key_prefix: self.key_prefix.clone(),
            ..RedisOptions::default()
        }
    }
}

/// Opens [`RedisPubSubBackend`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisPubSubFactory;

#[async_trait]
impl pattern_core::Factory for RedisPubSubFactory {
    type Backend = dyn PubSubBackend;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn needs_profile(&self) -> NeedsProfile {
        NeedsProfile {
            kind: KIND,
            preference: 1,
            external: true,
            consistency: Consistency::Strong,
            durability: Durability::Restart,
            durability_note: "keeps messages in Redis streams in Redis's memory: they survive \
                              restarts of the proxy, not of Redis",
            scope: Scope::Shared,
            read_rps: 3_000,
            write_rps: 3_000,
            write_note: "",
            p99_ms: 10,
            max_data_bytes: 8 * GIB,
            data_note: "it lives in Redis's memory",
            keeps_for_days: false,
        }
    }

    fn placement_options(&self) -> &'static [&'static str] {
        &["url", "key_prefix"]
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        RedisPubSubOptions::parse(options.clone()).map(|_| ())
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        let options = ctx.options.clone();
        let options = RedisPubSubOptions::parse(options)?;
        Ok(Arc::new(
            RedisPubSubBackend::open(&ctx.namespace, &options).await?,
        ))
    }
}

/// The Redis Streams PubSub backend of one namespace.
pub struct RedisPubSubBackend {
    conn: ConnectionManager,
    address: String,
    /// `<prefix>:{<ns>}:topic:`.
    topic_base: String,
    max_len: Option<u64>,
    /// (topic, group) pairs whose group is known to exist.
    groups: Mutex<HashSet<(String, String)>>,
}

impl RedisPubSubBackend {
    /// Connects to Redis.
    pub async fn open(namespace: &str, options: &RedisPubSubOptions) -> Result<Self, BackendError> {
        if namespace.contains(['{', '}']) {
            return Err(BackendError::Config(format!(
                "namespace {namespace:?} cannot be stored in redis: its name may not contain \
                 '{{' or '}}'"
            )));
        }
        let (conn, address) = connect(&options.kv()).await?;
        Ok(RedisPubSubBackend {
            conn,
            address,
            topic_base: format!("{}:{{{namespace}}}:topic:", options.key_prefix),
            max_len: options.max_len,
            groups: Mutex::new(HashSet::new()),
        })
    }

    /// The stream key of `topic` (checked).
    pub fn stream_key(&self, topic: &str) -> Result<String, BackendError> {
        check_topic(topic)?;
        Ok(format!("{}{topic}", self.topic_base))
    }

    fn err(&self, e: redis::RedisError) -> BackendError {
        redis_err(&self.address, e)
    }
}

/// Checks a topic name: 1 to 200 of `[A-Za-z0-9_-.]`, dots only between
/// other characters (the rule every PubSub backend applies).
pub fn check_topic(topic: &str) -> Result<(), BackendError> {
    let ok = !topic.is_empty()
        && topic.len() <= 200
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && topic.split('.').all(|t| !t.is_empty());
    if ok {
        Ok(())
    } else {
        Err(BackendError::InvalidArgument(format!(
            "topic {topic:?} is invalid; use 1 to 200 letters, digits, '-', '_' or '.', \
             with no leading, trailing or doubled '.'"
        )))
    }
}

fn check_name(what: &str, name: &str) -> Result<(), BackendError> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(BackendError::InvalidArgument(format!(
            "{what} name {name:?} is invalid; use 1 to 200 bytes without control characters"
        )));
    }
    Ok(())
}

/// Checks an ack id: a stream entry id `<ms>-<seq>`.
pub fn check_ack_id(ack_id: &str) -> Result<(), BackendError> {
    let ok = ack_id.split_once('-').is_some_and(|(ms, seq)| {
        [ms, seq].iter().all(|p| {
            !p.is_empty()
                && p.len() <= 20
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u64>().is_ok()
        })
    });
    if ok {
        Ok(())
    } else {
        Err(BackendError::InvalidArgument(format!(
            "ack id {ack_id:?} is invalid; pass the ack_id of a delivery of this topic and group \
             unchanged"
        )))
    }
}

#[async_trait]
impl pattern_core::Backend for RedisPubSubBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        [
            Capability::OrderingKey,
            Capability::Replay,
            Capability::ConsumerGroups,
            Capability::DeadLetter,
        ]
        .into_iter()
        .collect()
    }

    async fn health(&self) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| redis_err(&self.address, e))?;
        Ok(())
    }
}

#[async_trait]
impl PubSubBackend for RedisPubSubBackend {
    async fn publish(
        &self,
        topic: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<String>, BackendError> {
        let key = self.stream_key(topic)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for m in &messages {
            let cmd = pipe.cmd("XADD").arg(&key);
            if let Some(n) = self.max_len {
                cmd.arg("MAXLEN").arg("~").arg(n);
            }
            cmd.arg("*").arg("payload").arg(&m.payload);
            if !m.ordering_key.is_empty() {
                cmd.arg("ordering_key").arg(&m.ordering_key);
            }
            for (k, v) in &m.attributes {
                cmd.arg(format!("attr:{k}")).arg(v);
            }
        }
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await.map_err(|e| self.err(e))
    }

    async fn pull(
        &self,
        sub: &Subscription,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BackendError> {
        check_name("group", &sub.group)?;
        check_name("consumer", &sub.consumer)?;
        if sub.max_attempts == 0 {
            return Err(BackendError::InvalidArgument(
                "max_attempts must be at least 1".into(),
            ));
        }
        if sub.ack_deadline.is_zero() || sub.ack_deadline > MAX_ACK_DEADLINE {
            return Err(BackendError::InvalidArgument(
                "ack_deadline must be between 1 ms and 24 hours".into(),
            ));
        }
        pull::pull(self, sub, max, wait).await
    }

    async fn ack(&self, topic: &str, group: &str, ack_ids: &[String]) -> Result<u32, BackendError> {
        let key = self.stream_key(topic)?;
        check_name("group", group)?;
        ack_ids.iter().try_for_each(|id| check_ack_id(id))?;
        if ack_ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let n: Result<u32, _> = redis::cmd("XACK")
            .arg(&key)
            .arg(group)
            .arg(ack_ids)
            .query_async(&mut conn)
            .await;
        match n {
            Ok(n) => Ok(n),
            Err(e) if e.code() == Some("NOGROUP") => Ok(0),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn nack(
        &self,
        topic: &str,
        group: &str,
        ack_ids: &[String],
    ) -> Result<u32, BackendError> {
        let key = self.stream_key(topic)?;
        check_name("group", group)?;
        ack_ids.iter().try_for_each(|id| check_ack_id(id))?;
        if ack_ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let claimed: Result<Vec<String>, _> = redis::cmd("XCLAIM")
            .arg(&key)
            .arg(group)
            .arg("prism-nacked")
            .arg(0)
            .arg(ack_ids)
            .arg("IDLE")
            .arg(NACK_IDLE_MS)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await;
        match claimed {
            Ok(ids) => Ok(ids.len() as u32),
            // No such group: nothing of it is pending.
            Err(e) if e.code() == Some("NOGROUP") => Ok(0),
            Err(e) => Err(self.err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_ids_are_entry_ids() {
        check_ack_id("1700000000000-0").unwrap();
        check_ack_id("0-1").unwrap();
        for bad in [
            "",
            "1",
            "-1",
            "1-",
            "a-1",
            "1-2-3",
            "0-0-0-0",
            "99999999999999999999999-0",
        ] {
            assert!(check_ack_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn options_are_checked() {
        RedisPubSubOptions::parse(serde_json::json!({"url": "redis://127.0.0.1:6379"})).unwrap();
        assert!(RedisPubSubOptions::parse(serde_json::json!({})).is_err());
        assert!(
            RedisPubSubOptions::parse(serde_json::json!({"url": "redis://h", "max_len": 0}))
                .is_err()
        );
        assert!(
            RedisPubSubOptions::parse(serde_json::json!({"url": "redis://h", "nope": 1})).is_err()
        );
    }
}
