//! Starting the in-process proxy, connecting the engines' own clients,
//! naming everything uniquely per run, and deleting what the run created.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use async_nats::jetstream::{self, stream};
use prism_proto::pubsub::v1::pub_sub_service_client::PubSubServiceClient;
use prism_proxy::config::{Listeners, NamespaceConfig};
use prism_proxy::{ProxyConfig, RunningProxy};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use tonic::transport::Channel;

use crate::Args;
use crate::paths::{Consumer, Publisher};

/// Partitions of the direct path's Kafka topics (the proxy's default for
/// the topics it creates).
const KAFKA_PARTITIONS: i32 = 3;
/// Topics each path uses.
const TOPICS: [&str; 4] = ["publish", "publish-batch", "consume", "latency"];

/// The proxy, its clients, and this run's unique tag.
pub struct Proxy {
    pub handle: RunningProxy,
    clients: Vec<PubSubServiceClient<Channel>>,
    /// `<pid>-<unix seconds>`: part of every name this run creates.
    run: String,
    _data: tempfile::TempDir,
}

fn namespace(kind: &str, run: &str) -> String {
    format!("psbench-{kind}-{run}")
}

/// Starts the proxy on loopback with one pubsub namespace per engine
/// asked for, on the same brokers the direct clients use.
pub async fn start_proxy(args: &Args) -> Result<Proxy> {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let run = format!("{}-{secs}", std::process::id());
    let mut namespaces = Vec::new();
    for kind in &args.backends {
        let options = match kind.as_str() {
            "nats" => format!("    url: {}\n", args.nats_url),
            "kafka" => format!("    brokers: {}\n", args.kafka_brokers),
            other => bail!("unknown backend {other:?}; use kafka or nats"),
        };
        let name = namespace(kind, &run);
        let yaml = format!(
            "name: {name}\ndal: pubsub\nbackend:\n  kind: {kind}\n  options:\n{options}\
             pubsub:\n  ack_deadline: 60s\n"
        );
        namespaces.push(NamespaceConfig::parse(&name, &yaml)?);
    }
    let data = tempfile::tempdir()?;
    let config = ProxyConfig {
        listeners: Listeners {
            grpc: "127.0.0.1:0".parse()?,
            admin: "127.0.0.1:0".parse()?,
            ..Listeners::default()
        },
        data_dir: data.path().join("proxy"),
        shutdown_grace_secs: 5,
        namespaces,
        source: "prism-pubsub-bench".into(),
        ..ProxyConfig::default()
    };
    let handle = prism_proxy::start(config)
        .await
        .context("starting the proxy")?;
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = Channel::from_shared(format!("http://{}", handle.grpc_addr))?
            .connect()
            .await
            .context("connecting to the proxy")?;
        clients.push(PubSubServiceClient::new(channel));
    }
    Ok(Proxy {
        handle,
        clients,
        run,
        _data: data,
    })
}

/// The engine's own client.
enum Direct {
    Nats {
        js: jetstream::Context,
        stream: String,
    },
    Kafka {
        producer: FutureProducer,
        admin: AdminClient<DefaultClientContext>,
        brokers: String,
    },
}

/// One engine, reachable directly and through the proxy.
pub struct Engine {
    pub kind: &'static str,
    run: String,
    namespace: String,
    clients: Vec<PubSubServiceClient<Channel>>,
    direct: Direct,
    /// Errors met while deleting what the run created.
    cleanup_errors: Mutex<Vec<String>>,
}

impl Engine {
    /// Connects the direct client and creates the direct path's stream
    /// (NATS) or topics (Kafka).
    pub async fn open(kind: &str, args: &Args, proxy: &Proxy) -> Result<Engine> {
        let run = proxy.run.clone();
        let (kind, direct) = match kind {
            "nats" => {
                let client = async_nats::connect(&args.nats_url)
                    .await
                    .with_context(|| format!("connecting to NATS at {}", args.nats_url))?;
                let js = jetstream::new(client);
                let stream = format!("PSBENCH_{run}");
                js.create_stream(stream::Config {
                    name: stream.clone(),
                    subjects: vec![format!("psbench.{run}.>")],
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("creating JetStream stream {stream}"))?;
                ("nats", Direct::Nats { js, stream })
            }
            "kafka" => {
                let brokers = args.kafka_brokers.clone();
                let producer: FutureProducer = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .set("acks", "all")
                    .set("message.timeout.ms", "30000")
                    .create()
                    .context("creating the Kafka producer")?;
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .create()
                    .context("creating the Kafka admin client")?;
                let names: Vec<String> = TOPICS
                    .iter()
                    .map(|t| format!("psbench.{run}.{t}"))
                    .collect();
                let new: Vec<NewTopic> = names
                    .iter()
                    .map(|n| NewTopic::new(n, KAFKA_PARTITIONS, TopicReplication::Fixed(-1)))
                    .collect();
                let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
                for r in admin.create_topics(&new, &options).await? {
                    if let Err((topic, code)) = r {
                        bail!("creating Kafka topic {topic} failed: {code}");
                    }
                }
                (
                    "kafka",
                    Direct::Kafka {
                        producer,
                        admin,
                        brokers,
                    },
                )
            }
            other => bail!("unknown backend {other:?}; use kafka or nats"),
        };
        Ok(Engine {
            kind,
            namespace: namespace(kind, &run),
            run,
            clients: proxy.clients.clone(),
            direct,
            cleanup_errors: Mutex::new(Vec::new()),
        })
    }

    pub fn direct_publisher(&self, topic: &str) -> Publisher {
        match &self.direct {
            Direct::Nats { js, .. } => Publisher::Nats {
                js: js.clone(),
                subject: format!("psbench.{}.{topic}", self.run),
            },
            Direct::Kafka { producer, .. } => Publisher::Kafka {
                producer: producer.clone(),
                topic: format!("psbench.{}.{topic}", self.run),
            },
        }
    }

    pub fn direct_consumer(&self, topic: &str, group: &str) -> Consumer {
        match &self.direct {
            Direct::Nats { js, stream } => Consumer::Nats {
                js: js.clone(),
                stream: stream.clone(),
                subject: format!("psbench.{}.{topic}", self.run),
                durable: format!("{topic}-{group}"),
            },
            Direct::Kafka { brokers, .. } => Consumer::Kafka {
                brokers: brokers.clone(),
                topic: format!("psbench.{}.{topic}", self.run),
                group: format!("psbench.{}.{topic}.{group}", self.run),
            },
        }
    }

    pub fn proxy_publisher(&self, topic: &str) -> Publisher {
        Publisher::Proxy {
            clients: self.clients.clone(),
            namespace: self.namespace.clone(),
            topic: topic.into(),
        }
    }

    pub fn proxy_consumer(&self, topic: &str, group: &str) -> Consumer {
        Consumer::Proxy {
            client: self.clients[0].clone(),
            namespace: self.namespace.clone(),
            topic: topic.into(),
            group: group.into(),
        }
    }

    fn failed(&self, e: String) {
        self.cleanup_errors
            .lock()
            .expect("cleanup error list poisoned")
            .push(e);
    }

    /// Deletes the direct path's stream or topics and the proxy
    /// namespace's (`PRISM_<ns>`; `prism.<ns>.<topic>`). Fails, after
    /// trying everything, with what could not be deleted.
    pub async fn cleanup(&self) -> Result<()> {
        match &self.direct {
            Direct::Nats { js, stream } => {
                for name in [stream.clone(), format!("PRISM_{}", self.namespace)] {
                    if let Err(e) = js.delete_stream(&name).await {
                        self.failed(format!("deleting JetStream stream {name}: {e}"));
                    }
                }
            }
            Direct::Kafka { admin, .. } => {
                let mut names: Vec<String> = TOPICS
                    .iter()
                    .map(|t| format!("psbench.{}.{t}", self.run))
                    .collect();
                names.extend(
                    TOPICS
                        .iter()
                        .map(|t| format!("prism.{}.{t}", self.namespace)),
                );
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
                match admin.delete_topics(&refs, &options).await {
                    Ok(results) => {
                        for r in results {
                            if let Err((topic, code)) = r {
                                self.failed(format!("deleting Kafka topic {topic}: {code}"));
                            }
                        }
                    }
                    Err(e) => self.failed(format!("deleting Kafka topics: {e}")),
                }
            }
        }
        let errors = self
            .cleanup_errors
            .lock()
            .expect("cleanup error list poisoned");
        if !errors.is_empty() {
            bail!("cleanup of {} failed: {}", self.kind, errors.join("; "));
        }
        Ok(())
    }
}
