//! The kafka PubSub backend against the Kafka-protocol broker on
//! 127.0.0.1:9092 (`tooling/kafka-broker` starts one). Every test uses its
//! own namespace, so its topics and groups are its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pattern_core::pubsub::{
    Delivery, OutgoingMessage, PubSubBackend, StartAt, Subscription, dead_letter_topic,
};
use pattern_core::{Backend, BackendError, Capability, SystemClock};
use pattern_kafka::{KafkaBackend, KafkaOptions};

/// How long a test waits for messages it expects.
const PATIENCE: Duration = Duration::from_secs(30);

fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{prefix}-{}-{n}-{t}", std::process::id())
}

async fn backend(namespace: &str) -> KafkaBackend {
    KafkaBackend::open(
        namespace,
        Arc::new(SystemClock),
        KafkaOptions::parse(serde_json::json!({ "brokers": "127.0.0.1:9092" })).unwrap(),
    )
    .await
    .unwrap()
}

fn sub(topic: &str, group: &str, consumer: &str) -> Subscription {
    Subscription {
        topic: topic.into(),
        group: group.into(),
        consumer: consumer.into(),
        ack_deadline: Duration::from_secs(30),
        max_attempts: 5,
        start_at: StartAt::Earliest,
    }
}

fn msg(key: &str, payload: &str) -> OutgoingMessage {
    OutgoingMessage {
        ordering_key: key.into(),
        attributes: BTreeMap::from([("n".to_string(), payload.to_string())]),
        payload: payload.as_bytes().to_vec(),
    }
}

/// Pulls until `n` deliveries arrived (fails after [`PATIENCE`]).
async fn pull_n(b: &KafkaBackend, s: &Subscription, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "expected {n} deliveries on {}/{}, got {}: {:?}",
            s.topic,
            s.group,
            got.len(),
            payloads(&got)
        );
        let batch = b
            .pull(s, n - got.len(), Duration::from_millis(500))
            .await
            .unwrap();
        got.extend(batch);
    }
    got
}

/// Pulls for `d` and returns whatever arrived.
async fn pull_for(b: &KafkaBackend, s: &Subscription, d: Duration) -> Vec<Delivery> {
    let end = Instant::now() + d;
    let mut got = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        got.extend(b.pull(s, 100, left).await.unwrap());
    }
    got
}

fn payloads(d: &[Delivery]) -> Vec<String> {
    d.iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect()
}

fn ack_ids(d: &[Delivery]) -> Vec<String> {
    d.iter().map(|d| d.ack_id.clone()).collect()
}

#[tokio::test]
async fn declares_its_capabilities_and_checks_options() {
    let b = backend(&unique("caps")).await;
    for cap in [
        Capability::OrderingKey,
        Capability::Replay,
        Capability::ConsumerGroups,
        Capability::DeadLetter,
        Capability::Durable,
    ] {
        assert!(b.capabilities().has(cap), "{cap}");
    }
    let err = KafkaOptions::parse(serde_json::json!({ "broker": "x:1" })).unwrap_err();
    assert!(err.to_string().contains("broker"), "{err}");
    let err = KafkaOptions::parse(serde_json::json!({ "partitions": 0 })).unwrap_err();
    assert!(err.to_string().contains("partitions"), "{err}");
    let err = b
        .publish("bad topic!", vec![msg("", "x")])
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidArgument(_)), "{err:?}");
}

#[tokio::test]
async fn publish_then_pull_round_trips_in_order() {
    let b = backend(&unique("rt")).await;
    let s = sub("orders", "g", "c1");
    let sent: Vec<_> = (0..5).map(|i| msg("", &format!("m{i}"))).collect();
    let ids = b.publish("orders", sent).await.unwrap();
    assert_eq!(ids.len(), 5);
    let got = pull_n(&b, &s, 5).await;
    let got_ids: Vec<_> = got.iter().map(|d| d.message_id.clone()).collect();
    assert_eq!(
        got_ids, ids,
        "delivered in publish order with the published ids"
    );
    assert_eq!(payloads(&got), ["m0", "m1", "m2", "m3", "m4"]);
    for d in &got {
        assert_eq!(d.attempt, 1);
        assert_eq!(d.attributes["n"], String::from_utf8_lossy(&d.payload));
        assert!(d.publish_time_us > 0);
    }
    assert_eq!(b.ack("orders", "g", &ack_ids(&got)).await.unwrap(), 5);
    assert_eq!(
        b.ack("orders", "g", &ack_ids(&got)).await.unwrap(),
        0,
        "acking again counts nothing"
    );
}

#[tokio::test]
async fn latest_group_gets_only_messages_published_after_it_started() {
    let b = backend(&unique("latest")).await;
    b.publish("t", vec![msg("", "before")]).await.unwrap();
    let mut s = sub("t", "late", "c1");
    s.start_at = StartAt::Latest;
    assert!(b.pull(&s, 10, Duration::ZERO).await.unwrap().is_empty());
    b.publish("t", vec![msg("", "after")]).await.unwrap();
    let got = pull_n(&b, &s, 1).await;
    assert_eq!(payloads(&got), ["after"]);
    // A new Earliest group replays everything retained.
    let replay = pull_n(&b, &sub("t", "replay", "c1"), 2).await;
    assert_eq!(payloads(&replay), ["before", "after"]);
}

#[tokio::test]
async fn unacked_is_redelivered_after_the_deadline_and_acked_is_not() {
    let b = backend(&unique("redeliver")).await;
    let mut s = sub("t", "g", "c1");
    s.ack_deadline = Duration::from_secs(1);
    b.publish("t", vec![msg("", "a"), msg("", "b")])
        .await
        .unwrap();
    let first = pull_n(&b, &s, 2).await;
    assert_eq!(
        b.ack("t", "g", &[first[0].ack_id.clone()]).await.unwrap(),
        1
    );
    let again = pull_n(&b, &s, 1).await;
    assert_eq!(payloads(&again), ["b"]);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].message_id, first[1].message_id);
    assert_eq!(
        b.ack("t", "g", &[first[1].ack_id.clone()]).await.unwrap(),
        0,
        "an ack of a delivery redelivered since counts 0"
    );
    assert_eq!(
        b.ack("t", "g", &[again[0].ack_id.clone()]).await.unwrap(),
        1
    );
    let later = pull_for(&b, &s, Duration::from_millis(2500)).await;
    assert!(
        later.is_empty(),
        "acked messages came back: {:?}",
        payloads(&later)
    );
}

#[tokio::test]
async fn nack_redelivers_at_once() {
    let b = backend(&unique("nack")).await;
    let s = sub("t", "g", "c1");
    b.publish("t", vec![msg("", "x")]).await.unwrap();
    let first = pull_n(&b, &s, 1).await;
    assert_eq!(b.nack("t", "g", &ack_ids(&first)).await.unwrap(), 1);
    let started = Instant::now();
    let again = pull_n(&b, &s, 1).await;
    assert!(started.elapsed() < Duration::from_secs(10), "not at once");
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].message_id, first[0].message_id);
}

#[tokio::test]
async fn another_consumer_of_the_group_gets_what_a_dead_one_left_unacked() {
    let b = backend(&unique("dead")).await;
    let mut a = sub("t", "g", "a");
    a.ack_deadline = Duration::from_secs(1);
    let sent: Vec<_> = (0..4).map(|i| msg("", &format!("m{i}"))).collect();
    b.publish("t", sent).await.unwrap();
    let got = pull_n(&b, &a, 4).await;
    b.ack("t", "g", &[got[0].ack_id.clone(), got[2].ack_id.clone()])
        .await
        .unwrap();
    // Consumer a stops pulling; consumer c takes over.
    let mut c = sub("t", "g", "c");
    c.ack_deadline = Duration::from_secs(1);
    let taken = pull_n(&b, &c, 2).await;
    let mut names = payloads(&taken);
    names.sort();
    assert_eq!(names, ["m1", "m3"]);
    assert!(taken.iter().all(|d| d.attempt == 2));
    b.ack("t", "g", &ack_ids(&taken)).await.unwrap();
    let more = pull_for(&b, &c, Duration::from_millis(2000)).await;
    assert!(more.is_empty(), "{:?}", payloads(&more));
}

#[tokio::test]
async fn every_group_gets_every_message() {
    let b = backend(&unique("groups")).await;
    let sent: Vec<_> = (0..3)
        .map(|i| msg(&format!("k{i}"), &format!("m{i}")))
        .collect();
    b.publish("t", sent).await.unwrap();
    for group in ["one", "two"] {
        let got = pull_n(&b, &sub("t", group, "c"), 3).await;
        let names: BTreeSet<_> = payloads(&got).into_iter().collect();
        assert_eq!(
            names,
            BTreeSet::from(["m0".into(), "m1".into(), "m2".into()])
        );
        b.ack("t", group, &ack_ids(&got)).await.unwrap();
    }
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_after_max_attempts() {
    let b = backend(&unique("poison")).await;
    let mut s = sub("t", "g", "c");
    s.max_attempts = 2;
    let mut poison = msg("key-1", "poison");
    poison.attributes.insert("kind".into(), "bad".into());
    let ids = b.publish("t", vec![poison]).await.unwrap();
    for attempt in 1..=2 {
        let d = pull_n(&b, &s, 1).await;
        assert_eq!(d[0].attempt, attempt);
        b.nack("t", "g", &ack_ids(&d)).await.unwrap();
    }
    let after = pull_for(&b, &s, Duration::from_millis(1500)).await;
    assert!(after.is_empty(), "delivered a third time: {after:?}");
    let dlq = dead_letter_topic("t");
    let dead = pull_n(&b, &sub(&dlq, "inspect", "c"), 1).await;
    let d = &dead[0];
    assert_eq!(d.payload, b"poison");
    assert_eq!(d.ordering_key, "key-1");
    assert_eq!(d.attributes["kind"], "bad");
    assert_eq!(d.attributes["prism-original-message-id"], ids[0]);
    assert_eq!(d.attributes["prism-attempts"], "2");
    assert!(d.attributes.contains_key("prism-dlq-reason"));
}

#[tokio::test]
async fn messages_with_one_key_keep_their_order() {
    let b = backend(&unique("order")).await;
    let mut sent = Vec::new();
    for i in 0..30 {
        sent.push(msg(&format!("key{}", i % 4), &format!("{i}")));
    }
    let ids = b.publish("t", sent).await.unwrap();
    // One key, one partition.
    for k in 0..4 {
        let parts: BTreeSet<_> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 4 == k)
            .map(|(_, id)| id.split('-').next().unwrap().to_string())
            .collect();
        assert_eq!(parts.len(), 1, "key{k} spans partitions {parts:?}");
    }
    let got = pull_n(&b, &sub("t", "g", "c"), 30).await;
    let mut last: BTreeMap<String, i32> = BTreeMap::new();
    for d in &got {
        let n: i32 = String::from_utf8_lossy(&d.payload).parse().unwrap();
        if let Some(prev) = last.insert(d.ordering_key.clone(), n) {
            assert!(prev < n, "{} delivered {n} after {prev}", d.ordering_key);
        }
    }
    assert_eq!(last.len(), 4);
}

#[tokio::test]
async fn ack_ids_are_checked() {
    let b = backend(&unique("ackids")).await;
    let s = sub("t", "g", "c");
    b.publish("t", vec![msg("", "x")]).await.unwrap();
    let got = pull_n(&b, &s, 1).await;
    for bad in ["", "nonsense", "k1:zz:0:0:1"] {
        let err = b.ack("t", "g", &[bad.to_string()]).await.unwrap_err();
        assert!(matches!(err, BackendError::InvalidArgument(_)), "{err:?}");
    }
    // An ack id of another backend instance (another proxy).
    let other = backend(&unique("other")).await;
    let err = other.ack("t", "g", &ack_ids(&got)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert_eq!(b.ack("t", "g", &ack_ids(&got)).await.unwrap(), 1);
}

#[tokio::test]
async fn only_the_acknowledged_prefix_is_committed() {
    let ns = unique("commit");
    let b = backend(&ns).await;
    let s = sub("t", "g", "c");
    // One key: one partition, so offsets are consecutive. One publish per
    // message: tansu cannot fetch from an offset inside a record batch
    // (it skips to the next batch), and this test resumes mid-way.
    for i in 0..3 {
        b.publish("t", vec![msg("k", &format!("m{i}"))])
            .await
            .unwrap();
    }
    let got = pull_n(&b, &s, 3).await;
    b.ack("t", "g", &[got[0].ack_id.clone(), got[2].ack_id.clone()])
        .await
        .unwrap();
    b.close().await.unwrap();
    drop(b);
    // A new proxy resumes from the first unacknowledged message.
    let b2 = backend(&ns).await;
    let again = pull_n(&b2, &s, 2).await;
    assert_eq!(payloads(&again), ["m1", "m2"]);
    assert!(again.iter().all(|d| d.attempt == 1), "attempts restart");
}

#[tokio::test]
async fn two_proxies_in_one_group_share_the_messages_and_lose_none() {
    let ns = unique("proxies");
    let (a, b) = (backend(&ns).await, backend(&ns).await);
    let s = sub("t", "g", "c");
    // Both join the group; Kafka then splits the partitions between them
    // (on tansu the rebalance takes a few seconds).
    a.pull(&s, 1, Duration::ZERO).await.unwrap();
    b.pull(&s, 1, Duration::ZERO).await.unwrap();
    let mut published = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut per_proxy = [0usize; 2];
    let deadline = Instant::now() + PATIENCE;
    while seen != published || per_proxy.contains(&0) {
        assert!(
            Instant::now() < deadline,
            "delivered {} of {} messages; per proxy {per_proxy:?}",
            seen.len(),
            published.len()
        );
        if seen == published {
            let batch: Vec<_> = (0..12).map(|i| msg(&format!("k{i}"), "x")).collect();
            published.extend(b.publish("t", batch).await.unwrap());
        }
        for (i, proxy) in [&a, &b].into_iter().enumerate() {
            let got = proxy
                .pull(&s, 50, Duration::from_millis(200))
                .await
                .unwrap();
            // Each proxy acknowledges what it delivered.
            proxy.ack("t", "g", &ack_ids(&got)).await.unwrap();
            per_proxy[i] += got.len();
            seen.extend(got.into_iter().map(|d| d.message_id));
        }
    }
}
