//! The two ways a message travels, per engine: the engine's own client
//! (`direct`) and Prism's gRPC PubSub service (`proxy`). Each path has a
//! [`Publisher`] (one publish = one awaited acknowledgement from the
//! engine or the proxy) and a [`Consumer`] (a consumer group that
//! acknowledges what it receives).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use async_nats::jetstream::{self, consumer::pull};
use prism_proto::pubsub::v1 as pb;
use prism_proto::pubsub::v1::pub_sub_service_client::PubSubServiceClient;
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::payload::Tally;

/// Most ack ids the proxy consumer sends in one Ack call (the proxy's
/// default `max_items_per_call` is 1000).
const ACK_BATCH: usize = 500;
/// Direct Kafka consumer: offsets are committed after this many messages
/// (and once at the end), as a consumer that commits in batches would.
const KAFKA_COMMIT_EVERY: u64 = 1000;

/// Publishes on one topic of one path.
#[derive(Clone)]
pub enum Publisher {
    /// JetStream publish, awaiting the stream's ack.
    Nats {
        js: jetstream::Context,
        subject: String,
    },
    /// rdkafka `FutureProducer::send`, awaiting the delivery report.
    Kafka {
        producer: FutureProducer,
        topic: String,
    },
    /// Prism `Publish`, awaiting its response.
    Proxy {
        clients: Vec<PubSubServiceClient<Channel>>,
        namespace: String,
        topic: String,
    },
}

impl Publisher {
    /// Publishes `payloads` and waits until all are acknowledged. Direct
    /// clients publish them one by one (they are only ever given one);
    /// the proxy sends them in one `Publish` call.
    pub async fn publish(&self, worker: usize, payloads: Vec<Vec<u8>>) -> Result<()> {
        match self {
            Publisher::Nats { js, subject } => {
                for p in payloads {
                    js.publish(subject.clone(), p.into())
                        .await
                        .context("JetStream publish")?
                        .await
                        .context("JetStream publish ack")?;
                }
            }
            Publisher::Kafka { producer, topic } => {
                for p in payloads {
                    producer
                        .send(
                            FutureRecord::<(), [u8]>::to(topic).payload(&p[..]),
                            Timeout::Never,
                        )
                        .await
                        .map_err(|(e, _)| anyhow!("Kafka delivery failed: {e}"))?;
                }
            }
            Publisher::Proxy {
                clients,
                namespace,
                topic,
            } => {
                let n = payloads.len();
                let mut client = clients[worker % clients.len()].clone();
                let response = client
                    .publish(pb::PublishRequest {
                        namespace: namespace.clone(),
                        topic: topic.clone(),
                        messages: payloads
                            .into_iter()
                            .map(|payload| pb::PublishMessage {
                                ordering_key: String::new(),
                                attributes: Default::default(),
                                payload,
                            })
                            .collect(),
                    })
                    .await
                    .context("Prism Publish")?
                    .into_inner();
                ensure!(
                    response.message_ids.len() == n,
                    "Publish of {n} messages returned {} message ids",
                    response.message_ids.len()
                );
            }
        }
        Ok(())
    }
}

/// A consumer group on one topic of one path.
pub enum Consumer {
    /// A durable JetStream pull consumer, explicit acks, from the start.
    Nats {
        js: jetstream::Context,
        stream: String,
        subject: String,
        durable: String,
    },
    /// An rdkafka `StreamConsumer` in a group, from the earliest offset,
    /// offsets stored per message and committed every
    /// [`KAFKA_COMMIT_EVERY`].
    Kafka {
        brokers: String,
        topic: String,
        group: String,
    },
    /// Prism `Subscribe` from the earliest message, each message's ack id
    /// sent back with `Ack` (batched by a second task, [`ACK_BATCH`] ids
    /// at most per call).
    Proxy {
        client: PubSubServiceClient<Channel>,
        namespace: String,
        topic: String,
        group: String,
    },
}

/// What a consumer run reports besides the messages themselves.
#[derive(Debug, Default)]
pub struct ConsumeReport {
    /// From the start of the run to the consumer being ready (the
    /// JetStream consumer created, the Kafka subscription made, the proxy's
    /// `Subscribed` marker received).
    pub ready_after: Duration,
    /// Failed acks, commits or receives.
    pub errors: u64,
    pub first_error: Option<String>,
}

impl ConsumeReport {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }
}

impl Consumer {
    /// Receives and acknowledges messages, handing each payload to
    /// `tally`, until the tally has every message it expects or
    /// `deadline` passes. Fails only when the consumer cannot start.
    pub async fn run(self, mut tally: Tally, deadline: Instant) -> Result<(Tally, ConsumeReport)> {
        let started = Instant::now();
        let mut report = ConsumeReport::default();
        let deadline = tokio::time::Instant::from_std(deadline);
        match self {
            Consumer::Nats {
                js,
                stream,
                subject,
                durable,
            } => {
                let stream = js
                    .get_stream(&stream)
                    .await
                    .with_context(|| format!("looking up JetStream stream {stream}"))?;
                let consumer: jetstream::consumer::PullConsumer = stream
                    .create_consumer(pull::Config {
                        durable_name: Some(durable.clone()),
                        filter_subject: subject,
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        deliver_policy: jetstream::consumer::DeliverPolicy::All,
                        max_ack_pending: 10_000,
                        ..Default::default()
                    })
                    .await
                    .with_context(|| format!("creating JetStream consumer {durable}"))?;
                let mut messages = consumer
                    .messages()
                    .await
                    .context("pulling from JetStream")?;
                report.ready_after = started.elapsed();
                while !tally.done() {
                    match tokio::time::timeout_at(deadline, messages.next()).await {
                        Err(_) | Ok(None) => break,
                        Ok(Some(Err(e))) => report.error(format!("JetStream pull: {e}")),
                        Ok(Some(Ok(m))) => {
                            tally.on(&m.payload);
                            if let Err(e) = m.ack().await {
                                report.error(format!("JetStream ack: {e}"));
                            }
                        }
                    }
                }
            }
            Consumer::Kafka {
                brokers,
                topic,
                group,
            } => {
                let consumer: StreamConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .set("group.id", &group)
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("session.timeout.ms", "10000")
                    .create()
                    .context("creating the Kafka consumer")?;
                consumer
                    .subscribe(&[&topic])
                    .with_context(|| format!("subscribing to Kafka topic {topic}"))?;
                report.ready_after = started.elapsed();
                let mut since_commit = 0u64;
                while !tally.done() {
                    match tokio::time::timeout_at(deadline, consumer.recv()).await {
                        Err(_) => break,
                        Ok(Err(e)) => report.error(format!("Kafka receive: {e}")),
                        Ok(Ok(m)) => {
                            tally.on(m.payload().unwrap_or_default());
                            if let Err(e) = consumer.store_offset_from_message(&m) {
                                report.error(format!("Kafka offset store: {e}"));
                            }
                            since_commit += 1;
                            if since_commit >= KAFKA_COMMIT_EVERY {
                                since_commit = 0;
                                if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
                                    report.error(format!("Kafka commit: {e}"));
                                }
                            }
                        }
                    }
                }
                if since_commit > 0
                    && let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
                {
                    report.error(format!("Kafka final commit: {e}"));
                }
            }
            Consumer::Proxy {
                mut client,
                namespace,
                topic,
                group,
            } => {
                let mut stream = client
                    .subscribe(pb::SubscribeRequest {
                        namespace: namespace.clone(),
                        topic: topic.clone(),
                        group: group.clone(),
                        ack_deadline_seconds: 60,
                        max_attempts: 0,
                        start_at: pb::StartAt::Earliest as i32,
                    })
                    .await
                    .context("Prism Subscribe")?
                    .into_inner();
                match stream.next().await {
                    Some(Ok(pb::SubscribeResponse {
                        item: Some(pb::subscribe_response::Item::Subscribed(_)),
                    })) => {}
                    other => bail!("Subscribe did not start with a Subscribed marker: {other:?}"),
                }
                report.ready_after = started.elapsed();
                let (ack_tx, ack_rx) = mpsc::unbounded_channel();
                let acker = tokio::spawn(ack_loop(
                    client.clone(),
                    pb::AckRequest {
                        namespace,
                        topic,
                        group,
                        ack_ids: Vec::new(),
                    },
                    ack_rx,
                ));
                while !tally.done() {
                    match tokio::time::timeout_at(deadline, stream.next()).await {
                        Err(_) | Ok(None) => break,
                        Ok(Some(Err(e))) => {
                            report.error(format!("Subscribe stream: {e}"));
                            break;
                        }
                        Ok(Some(Ok(r))) => match r.item {
                            Some(pb::subscribe_response::Item::Message(m)) => {
                                tally.on(&m.payload);
                                // The acker ends only after this sender drops.
                                let _ = ack_tx.send(m.ack_id);
                            }
                            other => report.error(format!("unexpected stream item {other:?}")),
                        },
                    }
                }
                drop(stream);
                drop(ack_tx);
                let (errors, first) = acker.await.context("the ack task panicked")?;
                report.errors += errors;
                if let Some(e) = first {
                    report.first_error.get_or_insert(e);
                }
            }
        }
        Ok((tally, report))
    }
}

/// Sends the ack ids it receives in `Ack` calls: everything queued when a
/// call starts, up to [`ACK_BATCH`], one call at a time. Returns the
/// failed calls and the first failure.
async fn ack_loop(
    mut client: PubSubServiceClient<Channel>,
    template: pb::AckRequest,
    mut ids: mpsc::UnboundedReceiver<String>,
) -> (u64, Option<String>) {
    let (mut errors, mut first) = (0u64, None);
    while let Some(id) = ids.recv().await {
        let mut batch = vec![id];
        while batch.len() < ACK_BATCH {
            match ids.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        let mut request = template.clone();
        request.ack_ids = batch;
        if let Err(e) = client.ack(request).await {
            errors += 1;
            first.get_or_insert_with(|| format!("Prism Ack: {e}"));
        }
    }
    (errors, first)
}
