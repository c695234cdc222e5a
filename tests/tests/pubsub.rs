//! PubSub through the real proxy on NATS JetStream and Redis Streams: a
//! subscriber that goes away mid-stream leaves its unacknowledged messages
//! to the next consumer of its group, acknowledged ones are not delivered
//! again, a poison message is dead-lettered after its attempts, prismctl
//! publishes and subscribes, and the messages are readable with the
//! engines' own clients.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use prism_proto::pubsub::v1 as pb;
use prism_proto::pubsub::v1::pub_sub_service_client::PubSubServiceClient;
use prism_tests::{ProxyProcess, free_addr};
use tonic::Streaming;
use tonic::transport::Channel;

fn unique(prefix: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{prefix}-{}-{now}", std::process::id())
}

/// A proxy serving one PubSub namespace on `kind`, in backend `mode`
/// (`embedded` or `process`).
fn proxy(name: &str, kind: &str, mode: &str) -> (tempfile::TempDir, ProxyProcess) {
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    std::fs::write(
        dir.path().join("prism.yaml"),
        format!(
            "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n",
            free_addr(),
            free_addr()
        ),
    )
    .unwrap();
    std::fs::write(
        ns_dir.join(format!("{name}.yaml")),
        format!(
            "name: {name}\ndal: pubsub\nbackend:\n  kind: {kind}\n  mode: {mode}\n  options: {}\npubsub:\n  ack_deadline: 2s\n  max_attempts: 3\n",
            if kind == "redis" { "{url: 'redis://127.0.0.1:6379'}" } else { "{}" }
        ),
    )
    .unwrap();
    let config = dir.path().join("prism.yaml").display().to_string();
    let proxy = ProxyProcess::start_with(&dir.path().join("data"), &["--config", &config]);
    (dir, proxy)
}

async fn client(proxy: &ProxyProcess) -> PubSubServiceClient<Channel> {
    PubSubServiceClient::connect(proxy.grpc_url())
        .await
        .unwrap()
}

async fn publish(
    c: &mut PubSubServiceClient<Channel>,
    ns: &str,
    topic: &str,
    payloads: &[String],
) -> Vec<String> {
    c.publish(pb::PublishRequest {
        namespace: ns.into(),
        topic: topic.into(),
        messages: payloads
            .iter()
            .map(|p| pb::PublishMessage {
                payload: p.clone().into_bytes(),
                attributes: [("source".to_string(), "e2e".to_string())].into(),
                ..Default::default()
            })
            .collect(),
    })
    .await
    .unwrap()
    .into_inner()
    .message_ids
}

/// Subscribes and waits for the Subscribed marker.
async fn subscribe(
    c: &mut PubSubServiceClient<Channel>,
    ns: &str,
    topic: &str,
    group: &str,
    max_attempts: u32,
) -> Streaming<pb::SubscribeResponse> {
    let mut stream = c
        .subscribe(pb::SubscribeRequest {
            namespace: ns.into(),
            topic: topic.into(),
            group: group.into(),
            ack_deadline_seconds: 2,
            max_attempts,
            start_at: pb::StartAt::Latest as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(
        matches!(
            first.item,
            Some(pb::subscribe_response::Item::Subscribed(_))
        ),
        "{first:?}"
    );
    stream
}

/// The next message within `within`, or None.
async fn next(
    stream: &mut Streaming<pb::SubscribeResponse>,
    within: Duration,
) -> Option<pb::Message> {
    match tokio::time::timeout(within, stream.message()).await {
        Err(_) => None,
        Ok(item) => match item.unwrap().unwrap().item {
            Some(pb::subscribe_response::Item::Message(m)) => Some(m),
            other => panic!("unexpected {other:?}"),
        },
    }
}

async fn ack(
    c: &mut PubSubServiceClient<Channel>,
    ns: &str,
    topic: &str,
    group: &str,
    ids: Vec<String>,
) {
    c.ack(pb::AckRequest {
        namespace: ns.into(),
        topic: topic.into(),
        group: group.into(),
        ack_ids: ids,
    })
    .await
    .unwrap();
}

/// The acceptance scenario through the proxy; returns the topic used.
async fn killed_subscriber_and_poison_message(
    kind: &str,
) -> (String, String, tempfile::TempDir, ProxyProcess) {
    killed_subscriber_and_poison_message_in(kind, "embedded").await
}

/// [`killed_subscriber_and_poison_message`] with the backend in `mode`.
async fn killed_subscriber_and_poison_message_in(
    kind: &str,
    mode: &str,
) -> (String, String, tempfile::TempDir, ProxyProcess) {
    let ns = unique(&format!("ps-{kind}-{mode}"));
    let (dir, proxy) = proxy(&ns, kind, mode);
    let mut c = client(&proxy).await;
    let topic = "orders";

    // Consumer A takes all ten, acks four, and goes away mid-stream.
    let mut a = subscribe(&mut c, &ns, topic, "billing", 0).await;
    let payloads: Vec<String> = (0..10).map(|i| format!("order-{i}")).collect();
    let ids = publish(&mut c, &ns, topic, &payloads).await;
    assert_eq!(ids.len(), 10);
    let mut got = Vec::new();
    while got.len() < 10 {
        got.push(
            next(&mut a, Duration::from_secs(10))
                .await
                .expect("A receives all ten"),
        );
    }
    assert!(got.iter().all(|m| m.attempt == 1));
    let acked: BTreeSet<String> = got[..4].iter().map(|m| m.message_id.clone()).collect();
    ack(
        &mut c,
        &ns,
        topic,
        "billing",
        got[..4].iter().map(|m| m.ack_id.clone()).collect(),
    )
    .await;
    drop(a);

    // Consumer B of the same group gets the six others again, and none
    // of the four acknowledged ones.
    let mut b = subscribe(&mut c, &ns, topic, "billing", 0).await;
    let mut again = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while again.len() < 6 && Instant::now() < deadline {
        if let Some(m) = next(&mut b, Duration::from_secs(5)).await {
            assert!(
                !acked.contains(&m.message_id),
                "an acked message came again: {m:?}"
            );
            assert!(m.attempt >= 2, "a redelivery: {m:?}");
            ack(&mut c, &ns, topic, "billing", vec![m.ack_id.clone()]).await;
            again.insert(m.message_id);
        }
    }
    let expected: BTreeSet<String> = got[4..].iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(again, expected, "every unacked message, redelivered");
    // Everything is acknowledged now: nothing comes within two deadlines.
    assert!(
        next(&mut b, Duration::from_secs(5)).await.is_none(),
        "nothing acked is redelivered"
    );
    drop(b);

    // A poison message: never acked, delivered three times, then it is in
    // the dead-letter topic.
    let mut dlq = subscribe(&mut c, &ns, "orders.dlq", "ops", 0).await;
    let mut p = subscribe(&mut c, &ns, "payments", "workers", 3).await;
    let poison = publish(&mut c, &ns, "payments", &["poison".to_string()]).await;
    let mut attempts = Vec::new();
    let mut p_dlq = subscribe(&mut c, &ns, "payments.dlq", "ops", 0).await;
    // Delivered again after each ack deadline, up to the third attempt. A
    // delivery the server made while no pull was reading it still counts
    // as an attempt (seen once on NATS under CI load: attempts 1, 3), so
    // the test asks for increasing attempts, never more than 3, not for
    // every number.
    while attempts.last().is_none_or(|a| *a < 3) {
        let Some(m) = next(&mut p, Duration::from_secs(15)).await else {
            break;
        };
        assert_eq!(m.message_id, poison[0]);
        eprintln!("poison delivery: attempt {} ack id {}", m.attempt, m.ack_id);
        attempts.push(m.attempt);
    }
    assert_eq!(
        attempts.first(),
        Some(&1),
        "delivered first as attempt 1: {attempts:?}"
    );
    assert!(
        attempts.windows(2).all(|w| w[0] < w[1]) && attempts.iter().all(|a| *a <= 3),
        "attempts increase up to max_attempts: {attempts:?}"
    );
    assert!(
        attempts.len() >= 2,
        "redelivered after its ack deadline: {attempts:?}"
    );
    let dead = next(&mut p_dlq, Duration::from_secs(20))
        .await
        .expect("the poison message is dead-lettered");
    assert_eq!(dead.payload, b"poison");
    assert_eq!(
        dead.attributes.get("prism-original-message-id"),
        Some(&poison[0])
    );
    let fourth = next(&mut p, Duration::from_secs(5)).await;
    assert!(fourth.is_none(), "not delivered a fourth time: {fourth:?}");
    assert!(
        next(&mut dlq, Duration::from_millis(200)).await.is_none(),
        "orders had no dead letters"
    );
    (ns, topic.to_string(), dir, proxy)
}

/// prismctl publishes lines and a subscriber prints them, acking each.
fn prismctl_publish_and_subscribe(proxy: &ProxyProcess, ns: &str) {
    let addr = proxy.grpc;
    let sub = std::process::Command::new(prism_tests::binary("prismctl"))
        .args(["--addr", &format!("http://{addr}")])
        .args([
            "pubsub",
            "subscribe",
            "--namespace",
            ns,
            "--topic",
            "cli",
            "--group",
            "g",
            "--limit",
            "3",
            "-o",
            "json",
        ])
        .env(
            "PRISM_CONFIG_DIR",
            std::env::temp_dir().join("prism-tests-no-config-dir"),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The group exists once prismctl reports the subscription; publish
    // then.
    let mut child = sub;
    let stderr = child.stderr.take().unwrap();
    let (said, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = said.send(line);
        }
    });
    let line = heard
        .recv_timeout(Duration::from_secs(20))
        .expect("prismctl reports the subscription");
    assert!(line.contains("subscribed to cli in group g"), "{line}");
    let out = std::process::Command::new(prism_tests::binary("prismctl"))
        .args(["--addr", &format!("http://{addr}")])
        .args([
            "pubsub",
            "publish",
            "--namespace",
            ns,
            "--topic",
            "cli",
            "--lines",
            "-o",
            "json",
        ])
        .env(
            "PRISM_CONFIG_DIR",
            std::env::temp_dir().join("prism-tests-no-config-dir"),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut p| {
            use std::io::Write;
            p.stdin
                .take()
                .unwrap()
                .write_all(b"hello-1\nhello-2\nhello-3\n")?;
            p.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let published: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(published["message_ids"].as_array().unwrap().len(), 3);
    let out = child.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|m| m["payload"].as_str().unwrap().starts_with("hello-"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_through_the_proxy() {
    let (ns, topic, _dir, proxy) = killed_subscriber_and_poison_message("nats").await;
    prismctl_publish_and_subscribe(&proxy, &ns);
    // The messages with a plain NATS client: the namespace's stream holds
    // the ten orders on the topic's subject.
    let nats = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let mut stream = js.get_stream(format!("PRISM_{ns}")).await.unwrap();
    let subject = format!("prism.{ns}.{topic}");
    let info = stream.info().await.unwrap();
    assert!(info.state.messages >= 10, "{:?}", info.state);
    let first = stream
        .get_first_raw_message_by_subject(&subject, 1)
        .await
        .unwrap();
    assert_eq!(&first.payload[..], b"order-0");
    js.delete_stream(format!("PRISM_{ns}")).await.unwrap();
}

/// The same scenario with the NATS backend in a pattern process: the
/// proxy runs `prism-pattern-nats` and builds the Subscribe streams from
/// its pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_in_a_pattern_process_through_the_proxy() {
    let (ns, _topic, _dir, proxy) =
        killed_subscriber_and_poison_message_in("nats", "process").await;
    let patterns = pattern_children(proxy.child.id(), "prism-pattern-nats");
    assert_eq!(
        patterns.len(),
        1,
        "one pattern process serves the namespace"
    );
    prismctl_publish_and_subscribe(&proxy, &ns);
    let nats = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let mut stream = js.get_stream(format!("PRISM_{ns}")).await.unwrap();
    let info = stream.info().await.unwrap();
    assert!(
        info.state.messages >= 10,
        "the pattern wrote to NATS: {:?}",
        info.state
    );
    js.delete_stream(format!("PRISM_{ns}")).await.unwrap();
}

/// The proxy's child processes running `program`.
fn pattern_children(pid: u32, program: &str) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string(), "-f", program])
        .output()
        .expect("running pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_through_the_proxy() {
    let (ns, topic, _dir, proxy) = killed_subscriber_and_poison_message("redis").await;
    prismctl_publish_and_subscribe(&proxy, &ns);
    // The messages with redis-cli.
    let key = format!("prism:{{{ns}}}:topic:{topic}");
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "XRANGE", &key, "-", "+"])
        .output()
        .expect("running redis-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    for i in 0..10 {
        assert!(text.contains(&format!("order-{i}")), "{text}");
    }
    let cleanup = std::process::Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "--scan",
            "--pattern",
            &format!("prism:{{{ns}}}:*"),
        ])
        .output()
        .unwrap();
    for k in String::from_utf8_lossy(&cleanup.stdout).lines() {
        let _ = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "DEL", k])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_through_the_proxy() {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (ns, topic, _dir, proxy) = killed_subscriber_and_poison_message("kafka").await;
    prismctl_publish_and_subscribe(&proxy, &ns);
    // The messages with a plain Kafka client: every partition of the
    // topic, read from the beginning without a group.
    let kafka_topic = format!("prism.{ns}.{topic}");
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("group.id", format!("{ns}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(&kafka_topic), Duration::from_secs(10))
        .unwrap();
    let mut partitions = rdkafka::TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == kafka_topic) {
        for p in t.partitions() {
            partitions
                .add_partition_offset(&kafka_topic, p.id(), rdkafka::Offset::Beginning)
                .unwrap();
        }
    }
    assert!(partitions.count() > 0, "the topic {kafka_topic} exists");
    consumer.assign(&partitions).unwrap();
    let mut payloads = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while payloads.len() < 10 && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_secs(1)) {
            let m = m.unwrap();
            payloads.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
    }
    let want: BTreeSet<String> = (0..10).map(|i| format!("order-{i}")).collect();
    assert_eq!(payloads, want);
}
