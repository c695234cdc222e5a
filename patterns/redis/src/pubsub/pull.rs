//! One pull: the script, group creation, and decoding of entries.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use pattern_core::BackendError;
use pattern_core::pubsub::{Delivery, StartAt, Subscription, dead_letter_topic};
use redis::{Script, Value};

use super::RedisPubSubBackend;

/// Most deliveries one pull returns.
const MAX_BATCH: usize = 1000;
/// Pause between polls while a pull waits for messages.
const POLL: Duration = Duration::from_millis(50);

static PULL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/pubsub_pull.lua")));

pub(super) async fn pull(
    b: &RedisPubSubBackend,
    sub: &Subscription,
    max: usize,
    wait: Duration,
) -> Result<Vec<Delivery>, BackendError> {
    let key = b.stream_key(&sub.topic)?;
    let dlq = b.stream_key(&dead_letter_topic(&sub.topic))?;
    let max = max.clamp(1, MAX_BATCH);
    ensure_group(b, &key, sub, false).await?;
    let end = Instant::now() + wait;
    loop {
        let reply = match run(b, &key, &dlq, sub, max).await {
            Err(e) if e.code() == Some("NOGROUP") => {
                // The stream or group went away (deleted, or Redis restarted
                // without persistence): create it again.
                ensure_group(b, &key, sub, true).await?;
                run(b, &key, &dlq, sub, max).await
            }
            other => other,
        }
        .map_err(|e| b.err(e))?;
        let deliveries = decode(reply)?;
        let left = end.saturating_duration_since(Instant::now());
        if !deliveries.is_empty() || left.is_zero() {
            return Ok(deliveries);
        }
        tokio::time::sleep(left.min(POLL)).await;
    }
}

async fn run(
    b: &RedisPubSubBackend,
    key: &str,
    dlq: &str,
    sub: &Subscription,
    max: usize,
) -> Result<Value, redis::RedisError> {
    let mut conn = b.conn.clone();
    PULL.key(key)
        .key(dlq)
        .arg(&sub.group)
        .arg(&sub.consumer)
        .arg(sub.ack_deadline.as_millis() as u64)
        .arg(max)
        .arg(sub.max_attempts)
        .arg(&sub.topic)
        .invoke_async(&mut conn)
        .await
}

/// Creates the group unless known to exist (`again`: even then).
async fn ensure_group(
    b: &RedisPubSubBackend,
    key: &str,
    sub: &Subscription,
    again: bool,
) -> Result<(), BackendError> {
    let id = (sub.topic.clone(), sub.group.clone());
    if !again
        && b.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    {
        return Ok(());
    }
    let start = match sub.start_at {
        StartAt::Latest => "$",
        StartAt::Earliest => "0",
    };
    let mut conn = b.conn.clone();
    let created: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(&sub.group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    match created {
        Ok(()) => {}
        Err(e) if e.code() == Some("BUSYGROUP") => {}
        Err(e) => return Err(b.err(e)),
    }
    b.groups
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id);
    Ok(())
}

fn bad(what: &str) -> BackendError {
    BackendError::Internal(format!("redis: unexpected pull reply: {what}"))
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// Decodes the script's `{{id, count, {field, value, ...}}, ...}`.
fn decode(reply: Value) -> Result<Vec<Delivery>, BackendError> {
    let Value::Array(entries) = reply else {
        return Err(bad("not an array"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else {
            return Err(bad("entry not an array"));
        };
        let [id, count, Value::Array(fields)] = parts.as_slice() else {
            return Err(bad("entry shape"));
        };
        let id = text(id).ok_or_else(|| bad("entry id"))?;
        let Value::Int(count) = count else {
            return Err(bad("delivery count"));
        };
        let mut delivery = Delivery {
            publish_time_us: id
                .split_once('-')
                .and_then(|(ms, _)| ms.parse::<i64>().ok())
                .map_or(0, |ms| ms.saturating_mul(1000)),
            message_id: id.clone(),
            ack_id: id,
            ordering_key: String::new(),
            attributes: BTreeMap::new(),
            payload: Vec::new(),
            attempt: u32::try_from(*count).unwrap_or(u32::MAX),
        };
        for pair in fields.chunks(2) {
            let [name, value] = pair else {
                return Err(bad("odd field list"));
            };
            let name = text(name).ok_or_else(|| bad("field name"))?;
            match name.as_str() {
                "payload" => delivery.payload = bytes(value).ok_or_else(|| bad("payload"))?,
                "ordering_key" => delivery.ordering_key = text(value).unwrap_or_default(),
                _ => {
                    if let Some(attr) = name.strip_prefix("attr:") {
                        delivery
                            .attributes
                            .insert(attr.to_string(), text(value).unwrap_or_default());
                    }
                }
            }
        }
        out.push(delivery);
    }
    Ok(out)
}
