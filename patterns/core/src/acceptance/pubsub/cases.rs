//! PubSub acceptance cases. Each takes a [`PubSubHarness`] and panics with
//! a message saying what the backend got wrong.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use super::{
    PubSubHarness, ack, message, payloads, publish, pull, pull_for, pull_n, subscribe,
    subscription, unique_topic,
};
use crate::capabilities::Capability;
use crate::error::BackendError;
use crate::pubsub::{OutgoingMessage, StartAt, dead_letter_topic};

const SHORT: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_secs(60);
/// How long a case waits for messages it expects.
const PATIENCE: Duration = Duration::from_secs(15);

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Published messages come back with their ids, payloads and attributes,
/// on a first attempt, with a plausible publish time.
pub async fn publish_then_pull(h: &PubSubHarness) {
    let (b, _) = h.open("publish").await;
    let topic = unique_topic("orders");
    let sub = subscription(&topic, "g", "c1", LONG);
    subscribe(&b, &sub).await;
    let before = now_us();
    let mut messages: Vec<OutgoingMessage> = (0..3).map(message).collect();
    messages[1].attributes.insert("ünï".into(), "cödé ✓".into());
    messages[2].payload = vec![0, 255, 1, 254];
    let ids = publish(&b, &topic, messages.clone()).await;
    let got = pull_n(&b, &sub, 3, PATIENCE).await;
    assert_eq!(got.len(), 3, "3 published messages are delivered");
    for d in &got {
        let i = ids
            .iter()
            .position(|id| *id == d.message_id)
            .unwrap_or_else(|| panic!("delivered id {} was never published", d.message_id));
        assert_eq!(d.payload, messages[i].payload, "payload of message {i}");
        assert_eq!(
            d.attributes, messages[i].attributes,
            "attributes of message {i}"
        );
        assert_eq!(d.ordering_key, "");
        assert_eq!(d.attempt, 1, "first delivery has attempt 1");
        assert!(!d.ack_id.is_empty());
        let slack = 300_000_000; // 5 minutes of clock skew
        assert!(
            d.publish_time_us > before - slack && d.publish_time_us < now_us() + slack,
            "publish_time_us {} is not near now",
            d.publish_time_us
        );
    }
    assert_eq!(
        ack(&b, &sub, &got).await,
        3,
        "3 outstanding deliveries acked"
    );
}

/// The ids of a batch name its messages in batch order, and every message
/// of the batch is delivered once.
pub async fn batch_publish_keeps_order(h: &PubSubHarness) {
    let (b, _) = h.open("batch").await;
    let topic = unique_topic("batch");
    let sub = subscription(&topic, "g", "c1", LONG);
    subscribe(&b, &sub).await;
    let ids = publish(&b, &topic, (0..25).map(message).collect()).await;
    let got = pull_n(&b, &sub, 25, PATIENCE).await;
    assert_eq!(got.len(), 25, "the whole batch is delivered");
    let mut seen = HashSet::new();
    let mut times = BTreeMap::new();
    for d in &got {
        let i = ids
            .iter()
            .position(|id| *id == d.message_id)
            .expect("a published id");
        assert_eq!(
            d.payload,
            format!("m-{i}").into_bytes(),
            "id {i} names message {i}"
        );
        assert!(seen.insert(i), "message {i} delivered twice");
        times.insert(i, d.publish_time_us);
    }
    let times: Vec<i64> = times.into_values().collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "publish times follow batch order: {times:?}"
    );
    ack(&b, &sub, &got).await;
}

/// An acked delivery is never delivered again; an unacked one is.
pub async fn ack_stops_redelivery(h: &PubSubHarness) {
    let (b, _) = h.open("ack").await;
    let topic = unique_topic("ack");
    let sub = subscription(&topic, "g", "c1", SHORT);
    subscribe(&b, &sub).await;
    let ids = publish(&b, &topic, (0..2).map(message).collect()).await;
    let got = pull_n(&b, &sub, 2, PATIENCE).await;
    assert_eq!(got.len(), 2);
    let acked = got.iter().find(|d| d.message_id == ids[0]).unwrap().clone();
    assert_eq!(ack(&b, &sub, std::slice::from_ref(&acked)).await, 1);
    // Acking again is not an error.
    let again = ack(&b, &sub, std::slice::from_ref(&acked)).await;
    assert!(again <= 1, "a repeated ack counts at most once");
    let later = pull_for(&b, &sub, SHORT * 3).await;
    assert!(
        later.iter().all(|d| d.message_id != ids[0]),
        "the acked message was delivered again"
    );
    assert!(
        later
            .iter()
            .any(|d| d.message_id == ids[1] && d.attempt >= 2),
        "the unacked message was not redelivered within 3 ack deadlines"
    );
}

/// A delivery not acked within its deadline comes again, not earlier, with
/// the same id and the next attempt number.
pub async fn unacked_is_redelivered_after_deadline(h: &PubSubHarness) {
    let (b, _) = h.open("redeliver").await;
    let topic = unique_topic("redeliver");
    let deadline = Duration::from_secs(2);
    let sub = subscription(&topic, "g", "c1", deadline);
    subscribe(&b, &sub).await;
    let ids = publish(&b, &topic, vec![message(7)]).await;
    let first = pull_n(&b, &sub, 1, PATIENCE).await;
    assert_eq!(first.len(), 1);
    let delivered_at = Instant::now();
    assert_eq!(first[0].attempt, 1);
    let second = pull_n(&b, &sub, 1, PATIENCE).await;
    assert_eq!(second.len(), 1, "the unacked message is redelivered");
    assert!(
        delivered_at.elapsed() >= deadline.mul_f32(0.8),
        "redelivered after {:?}, before the {deadline:?} ack deadline",
        delivered_at.elapsed()
    );
    assert_eq!(
        second[0].message_id, ids[0],
        "redelivery keeps the message id"
    );
    assert_eq!(second[0].attempt, 2);
    assert_eq!(second[0].payload, b"m-7".to_vec());
    assert_eq!(
        ack(&b, &sub, &second).await,
        1,
        "the redelivery can be acked"
    );
    assert!(pull_for(&b, &sub, deadline + SHORT).await.is_empty());
}

/// A nacked delivery comes again at once, long before its deadline.
pub async fn nack_redelivers_at_once(h: &PubSubHarness) {
    let (b, _) = h.open("nack").await;
    let topic = unique_topic("nack");
    let sub = subscription(&topic, "g", "c1", LONG);
    subscribe(&b, &sub).await;
    let ids = publish(&b, &topic, vec![message(1)]).await;
    let first = pull_n(&b, &sub, 1, PATIENCE).await;
    assert_eq!(first.len(), 1);
    let n = b
        .nack(&topic, "g", &[first[0].ack_id.clone()])
        .await
        .unwrap_or_else(|e| panic!("nack: {e}"));
    assert_eq!(n, 1, "one outstanding delivery nacked");
    let again = pull_n(&b, &sub, 1, Duration::from_secs(10)).await;
    assert_eq!(
        again.len(),
        1,
        "a nacked message is redelivered well before its 60 s deadline"
    );
    assert_eq!(again[0].message_id, ids[0]);
    assert_eq!(again[0].attempt, 2);
    ack(&b, &sub, &again).await;
}

/// A consumer that dies with unacked deliveries: another consumer of the
/// group receives every unacked message again (duplicates of those are
/// allowed) and none of the acked ones.
pub async fn restarted_consumer_gets_unacked(h: &PubSubHarness) {
    let (b, _) = h.open("restart").await;
    let topic = unique_topic("restart");
    let a = subscription(&topic, "g", "consumer-a", SHORT);
    subscribe(&b, &a).await;
    let ids = publish(&b, &topic, (0..10).map(message).collect()).await;
    let got = pull_n(&b, &a, 10, PATIENCE).await;
    assert_eq!(got.len(), 10);
    let (acked, unacked): (Vec<_>, Vec<_>) = got.into_iter().partition(|d| {
        let i = ids.iter().position(|id| *id == d.message_id).unwrap();
        i % 3 == 0 // 0, 3, 6, 9
    });
    assert_eq!(ack(&b, &a, &acked).await, 4);
    // Consumer A is gone; B joins.
    let bsub = subscription(&topic, "g", "consumer-b", SHORT);
    let want: HashSet<String> = unacked.iter().map(|d| d.message_id.clone()).collect();
    let acked_ids: HashSet<String> = acked.iter().map(|d| d.message_id.clone()).collect();
    let mut received = HashSet::new();
    let end = Instant::now() + PATIENCE;
    while received != want && Instant::now() < end {
        let batch = pull(&b, &bsub, 10, Duration::from_millis(500)).await;
        for d in &batch {
            assert!(
                !acked_ids.contains(&d.message_id),
                "an acked message was delivered again"
            );
            assert!(d.attempt >= 2, "a redelivery has attempt >= 2");
            received.insert(d.message_id.clone());
        }
        ack(&b, &bsub, &batch).await;
    }
    assert_eq!(
        received, want,
        "consumer B receives exactly the 6 unacked messages"
    );
    let later = pull_for(&b, &bsub, SHORT * 2).await;
    assert!(
        later.is_empty(),
        "{} messages delivered after all were acked",
        later.len()
    );
}

/// Ack ids that are malformed or name another namespace's deliveries are
/// refused, and never acknowledge anything.
pub async fn foreign_ack_ids_refused(h: &PubSubHarness) {
    let (b, _) = h.open("foreign-a").await;
    let (other, _) = h.open("foreign-b").await;
    let topic = unique_topic("foreign");
    let sub = subscription(&topic, "g", "c1", SHORT);
    subscribe(&b, &sub).await;
    subscribe(&other, &sub).await;
    let ids = publish(&b, &topic, vec![message(1)]).await;
    let got = pull_n(&b, &sub, 1, PATIENCE).await;
    assert_eq!(got.len(), 1);
    for bad in ["", "not-an-ack-id", "../../etc", "$JS.ACK.>", "0-0-0-0"] {
        match b.ack(&topic, "g", &[bad.to_string()]).await {
            Err(BackendError::InvalidArgument(_)) => {}
            other => panic!("ack id {bad:?} must be refused as invalid, got {other:?}"),
        }
    }
    // The other namespace's backend must not ack this namespace's delivery.
    let foreign = other.ack(&topic, "g", &[got[0].ack_id.clone()]).await;
    assert!(
        matches!(foreign, Err(_) | Ok(0)),
        "a delivery of another namespace was acked: {foreign:?}"
    );
    let again = pull_n(&b, &sub, 1, PATIENCE).await;
    assert!(
        again.iter().any(|d| d.message_id == ids[0]),
        "the message is still redelivered after a foreign ack"
    );
    ack(&b, &sub, &again).await;
}

/// ConsumerGroups: consumers of one group split the messages, no message
/// going to both (none is redelivered: the deadline is long); another group
/// gets every message.
pub async fn consumer_groups_share_and_fan_out(h: &PubSubHarness) {
    let (b, _) = h.open("groups").await;
    if !b.capabilities().has(Capability::ConsumerGroups) {
        return;
    }
    let topic = unique_topic("groups");
    let c1 = subscription(&topic, "g1", "c1", LONG);
    let c2 = subscription(&topic, "g1", "c2", LONG);
    let other = subscription(&topic, "g2", "c1", LONG);
    for s in [&c1, &c2, &other] {
        subscribe(&b, s).await;
    }
    let ids = publish(&b, &topic, (0..20).map(message).collect()).await;
    let mut by: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let end = Instant::now() + PATIENCE;
    while by[0].len() + by[1].len() < 20 && Instant::now() < end {
        for (i, s) in [&c1, &c2].into_iter().enumerate() {
            let got = pull(&b, s, 4, Duration::from_millis(200)).await;
            by[i].extend(got.iter().map(|d| d.message_id.clone()));
            ack(&b, s, &got).await;
        }
    }
    let first: HashSet<&String> = by[0].iter().collect();
    assert!(
        by[1].iter().all(|id| !first.contains(id)),
        "a message went to both consumers of one group"
    );
    let all: HashSet<&String> = by[0].iter().chain(&by[1]).collect();
    assert_eq!(
        all.len(),
        20,
        "the group's consumers together got every message once"
    );
    assert_eq!(
        by[0].len() + by[1].len(),
        20,
        "no message delivered twice in the group"
    );
    let fanned = pull_n(&b, &other, 20, PATIENCE).await;
    let fanned: HashSet<String> = fanned.into_iter().map(|d| d.message_id).collect();
    assert_eq!(
        fanned,
        ids.into_iter().collect(),
        "the second group gets every message"
    );
}

/// DeadLetter: a message never acked is delivered `max_attempts` times,
/// then published to `<topic>.dlq` with its payload, attributes and
/// ordering key (plus `prism-*` attributes), and not delivered again.
pub async fn poison_message_dead_lettered(h: &PubSubHarness) {
    let (b, _) = h.open("dlq").await;
    if !b.capabilities().has(Capability::DeadLetter) {
        return;
    }
    let topic = unique_topic("poison");
    let dlq = dead_letter_topic(&topic);
    let mut sub = subscription(&topic, "g", "c1", SHORT);
    sub.max_attempts = 3;
    let dlq_sub = subscription(&dlq, "dlq-reader", "c1", LONG);
    subscribe(&b, &sub).await;
    subscribe(&b, &dlq_sub).await;
    let mut poison = message(13);
    poison.ordering_key = "key-1".into();
    let ids = publish(&b, &topic, vec![poison.clone()]).await;
    let mut attempts = Vec::new();
    let mut dead = Vec::new();
    let end = Instant::now() + Duration::from_secs(25);
    while dead.is_empty() && Instant::now() < end {
        for d in pull(&b, &sub, 10, Duration::from_millis(300)).await {
            assert_eq!(d.message_id, ids[0]);
            attempts.push(d.attempt);
        }
        dead.extend(pull(&b, &dlq_sub, 10, Duration::from_millis(100)).await);
    }
    assert_eq!(dead.len(), 1, "the poison message reaches {dlq} once");
    assert_eq!(
        attempts,
        vec![1, 2, 3],
        "delivered exactly max_attempts times"
    );
    let d = &dead[0];
    assert_eq!(d.payload, poison.payload);
    assert_eq!(d.ordering_key, poison.ordering_key);
    for (k, v) in &poison.attributes {
        assert_eq!(d.attributes.get(k), Some(v), "attribute {k} kept");
    }
    assert_eq!(
        d.attributes.get("prism-original-message-id"),
        Some(&ids[0]),
        "attributes: {:?}",
        d.attributes
    );
    assert_eq!(
        d.attributes.get("prism-attempts").map(String::as_str),
        Some("3")
    );
    assert!(d.attributes.contains_key("prism-dlq-reason"));
    ack(&b, &dlq_sub, &dead).await;
    let later = pull_for(&b, &sub, SHORT * 3).await;
    assert!(
        later.is_empty(),
        "a dead-lettered message was delivered again"
    );
}

/// OrderingKey: with one consumer, messages of each key arrive in publish
/// order, across publish calls and interleaved keys.
pub async fn ordering_key_order(h: &PubSubHarness) {
    let (b, _) = h.open("ordering").await;
    if !b.capabilities().has(Capability::OrderingKey) {
        return;
    }
    let topic = unique_topic("ordered");
    let sub = subscription(&topic, "g", "c1", LONG);
    subscribe(&b, &sub).await;
    let keyed = |i: usize| OutgoingMessage {
        ordering_key: format!("k{}", i % 3),
        attributes: BTreeMap::new(),
        payload: i.to_string().into_bytes(),
    };
    for chunk in (0..30).collect::<Vec<_>>().chunks(7) {
        publish(&b, &topic, chunk.iter().map(|i| keyed(*i)).collect()).await;
    }
    let got = pull_n(&b, &sub, 30, PATIENCE).await;
    assert_eq!(got.len(), 30);
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (d, p) in got.iter().zip(payloads(&got)) {
        let i: usize = p.parse().unwrap();
        assert_eq!(d.ordering_key, format!("k{}", i % 3), "ordering key kept");
        per_key.entry(d.ordering_key.clone()).or_default().push(i);
    }
    for (key, seq) in per_key {
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        assert_eq!(seq, sorted, "messages of key {key} out of publish order");
    }
    ack(&b, &sub, &got).await;
}

/// Replay: a new group starting at the earliest message receives messages
/// published before it existed; one starting at the latest does not.
/// Without the capability, an earliest start is refused as unsupported.
pub async fn replay_from_earliest(h: &PubSubHarness) {
    let (b, _) = h.open("replay").await;
    let topic = unique_topic("replay");
    let mut early = subscription(&topic, "early", "c1", LONG);
    early.start_at = StartAt::Earliest;
    let late = subscription(&topic, "late", "c1", LONG);
    if !b.capabilities().has(Capability::Replay) {
        match b.pull(&early, 10, Duration::from_millis(100)).await {
            Err(BackendError::Unsupported { capability, .. }) => {
                assert_eq!(capability, Capability::Replay)
            }
            other => panic!("an earliest start without replay must be refused, got {other:?}"),
        }
        return;
    }
    // A group on the topic exists before the first publish (some backends
    // retain nothing for a topic nobody subscribed to).
    subscribe(&b, &subscription(&topic, "anchor", "c1", LONG)).await;
    let ids = publish(&b, &topic, (0..5).map(message).collect()).await;
    let got = pull_n(&b, &early, 5, PATIENCE).await;
    let got: Vec<String> = got.into_iter().map(|d| d.message_id).collect();
    assert_eq!(
        got.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>(),
        "an earliest group replays the 5 earlier messages"
    );
    assert!(
        pull_for(&b, &late, SHORT).await.is_empty(),
        "a latest group receives messages published before it existed"
    );
    let newer = publish(&b, &topic, vec![message(5)]).await;
    let got = pull_n(&b, &late, 1, PATIENCE).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].message_id, newer[0],
        "a latest group gets new messages"
    );
}

/// Durable: unacked messages survive closing and reopening the backend.
pub async fn durable(h: &PubSubHarness) {
    let (b, namespace) = h.open("durable").await;
    if !b.capabilities().has(Capability::Durable) {
        return;
    }
    let topic = unique_topic("durable");
    let sub = subscription(&topic, "g", "c1", SHORT);
    subscribe(&b, &sub).await;
    // One message per publish: the Kafka-protocol test broker (tansu 0.6)
    // cannot resume a group from an offset inside a record batch (it skips
    // the rest of that batch), which real Kafka can; see
    // docs-cms/kafka-backend.md.
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.extend(publish(&b, &topic, vec![message(i)]).await);
    }
    let got = pull_n(&b, &sub, 3, PATIENCE).await;
    assert_eq!(got.len(), 3);
    let first = got.iter().find(|d| d.message_id == ids[0]).unwrap().clone();
    assert_eq!(ack(&b, &sub, &[first]).await, 1);
    b.close().await.unwrap_or_else(|e| panic!("close: {e}"));
    drop(b);
    let b = h.reopen(&namespace).await;
    let sub = subscription(&topic, "g", "c2", SHORT);
    let mut received = HashSet::new();
    let end = Instant::now() + PATIENCE;
    while received.len() < 2 && Instant::now() < end {
        let batch = pull(&b, &sub, 10, Duration::from_millis(500)).await;
        for d in &batch {
            assert_ne!(
                d.message_id, ids[0],
                "an acked message came back after reopening"
            );
            received.insert(d.message_id.clone());
        }
        ack(&b, &sub, &batch).await;
    }
    let want: HashSet<String> = ids[1..].iter().cloned().collect();
    assert_eq!(received, want, "the 2 unacked messages survive reopening");
}
