//! `prism-load`: drives Put and Get through the Prism proxy at a given
//! concurrency and reports throughput and p50/p99/p99.9 latency (HDR
//! histograms) — and, in the same run, the same operations against the
//! backend trait called directly, so the proxy's cost reads as a ratio.
//!
//! The proxy runs in this process (the real gRPC server on a loopback
//! port, reached through a real gRPC client), with one namespace per
//! backend in a temporary data directory.
//!
//! ```text
//! cargo run --release -p prism-tests --bin prism-load -- --concurrency 16 --duration-secs 10
//! ```

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use pattern_core::{KeyValueBackend, OpenContext, PageRequest, PutItem, Selection, SystemClock};
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_proxy::ProxyConfig;
use prism_proxy::config::{Listeners, LogConfig, NamespaceConfig};
use prism_proxy::resolver::Resolver;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Parser)]
#[command(about = "Prism load generator: proxy vs direct backend calls")]
struct Args {
    /// Concurrent callers.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds per measured phase.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 128)]
    value_bytes: usize,
    /// Distinct keys written and read.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Backends to measure (memstore, sqlite, postgres).
    #[arg(long, value_delimiter = ',', default_value = "memstore,sqlite")]
    backends: Vec<String>,
    /// gRPC connections from the load generator to the proxy.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// SQLite durability for the benchmark namespace: full or normal.
    #[arg(long, default_value = "full")]
    sqlite_synchronous: String,
    /// PostgreSQL for the postgres backend (schema `prism_bench`).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Put,
    Get,
}

/// One way of issuing an operation: the backend trait, the proxy, or the
/// gRPC floor (a health check on the same connections: the cost of gRPC,
/// HTTP/2 and loopback TCP with no Prism logic at all).
#[derive(Clone)]
enum Target {
    Floor(Vec<HealthClient<Channel>>),
    Direct(Arc<dyn KeyValueBackend>),
    Proxy {
        namespace: String,
        clients: Vec<KeyValueServiceClient<Channel>>,
    },
}

fn id_key(i: usize) -> (String, Vec<u8>) {
    (
        format!("id-{:03}", i % 100),
        format!("key-{i:08}").into_bytes(),
    )
}

impl Target {
    async fn call(&self, worker: usize, op: Op, i: usize, value: &[u8]) -> Result<()> {
        let (id, key) = id_key(i);
        match self {
            Target::Floor(clients) => {
                let mut client = clients[worker % clients.len()].clone();
                client
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await?;
            }
            Target::Direct(backend) => match op {
                Op::Put => {
                    backend
                        .put(&id, vec![PutItem::new(key, value)], None)
                        .await?;
                }
                Op::Get => {
                    let page = backend
                        .get(
                            &id,
                            &Selection::Keys(vec![key]),
                            PageRequest::first(1 << 20),
                        )
                        .await?;
                    anyhow::ensure!(page.items.len() == 1, "direct get found nothing");
                }
            },
            Target::Proxy { namespace, clients } => {
                let mut client = clients[worker % clients.len()].clone();
                match op {
                    Op::Put => {
                        client
                            .put(pb::PutRequest {
                                namespace: namespace.clone(),
                                id,
                                items: vec![pb::PutItem {
                                    key,
                                    value: value.to_vec(),
                                    ttl: None,
                                    expected_version: None,
                                }],
                                idempotency_token: String::new(),
                            })
                            .await?;
                    }
                    Op::Get => {
                        let items = client
                            .get(pb::GetRequest {
                                namespace: namespace.clone(),
                                id,
                                selection: Some(pb::KeySelection {
                                    selection: Some(pb::key_selection::Selection::Keys(
                                        pb::KeyList { keys: vec![key] },
                                    )),
                                }),
                                ..Default::default()
                            })
                            .await?
                            .into_inner()
                            .items;
                        anyhow::ensure!(items.len() == 1, "proxy get found nothing");
                    }
                }
            }
        }
        Ok(())
    }
}

struct Measured {
    ops: u64,
    errors: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

impl Measured {
    fn throughput(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn quantile_us(&self, q: f64) -> u64 {
        self.latency_us.value_at_quantile(q)
    }
}

async fn run_phase(target: &Target, op: Op, args: &Args) -> Result<Measured> {
    let value = Arc::new(vec![b'v'; args.value_bytes]);
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let target = target.clone();
        let value = value.clone();
        let keys = args.keys;
        let concurrency = args.concurrency;
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let (mut ops, mut errors) = (0u64, 0u64);
            let mut i = worker;
            while Instant::now() < deadline {
                let t = Instant::now();
                match target.call(worker, op, i % keys, &value).await {
                    Ok(()) => {
                        ops += 1;
                        hist.saturating_record(t.elapsed().as_micros().max(1) as u64);
                    }
                    Err(_) => errors += 1,
                }
                i += concurrency;
            }
            (ops, errors, hist)
        }));
    }
    let mut total = Measured {
        ops: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    for task in tasks {
        let (ops, errors, hist) = task.await?;
        total.ops += ops;
        total.errors += errors;
        total.latency_us.add(&hist)?;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn populate(target: &Target, args: &Args) -> Result<()> {
    let value = vec![b'v'; args.value_bytes];
    let chunk = args.keys.div_ceil(args.concurrency.max(1));
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let (target, value) = (target.clone(), value.clone());
        let range = (w * chunk)..((w + 1) * chunk).min(args.keys);
        tasks.push(tokio::spawn(async move {
            for i in range {
                target.call(w, Op::Put, i, &value).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn namespace_yaml(name: &str, kind: &str, args: &Args) -> String {
    let options = match kind {
        "sqlite" => format!("  options:\n    synchronous: {}\n", args.sqlite_synchronous),
        "postgres" => format!(
            "  options:\n    url: {}\n    schema: prism_bench\n",
            args.postgres_url
        ),
        _ => String::new(),
    };
    format!("name: {name}\ndal: keyvalue\nbackend:\n  kind: {kind}\n{options}")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let namespaces = args
        .backends
        .iter()
        .map(|kind| {
            let yaml = namespace_yaml(&format!("bench-{kind}"), kind, &args);
            NamespaceConfig::parse(&format!("bench-{kind}"), &yaml)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = ProxyConfig {
        listeners: Listeners {
            grpc: "127.0.0.1:0".parse()?,
            admin: "127.0.0.1:0".parse()?,
            ..Listeners::default()
        },
        data_dir: data.path().join("proxy"),
        shutdown_grace_secs: 5,
        log: LogConfig::default(),
        namespaces: namespaces.clone(),
        source: "prism-load".into(),
    };
    let proxy = prism_proxy::start(config).await?;
    let mut clients = Vec::new();
    let mut health_clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = Channel::from_shared(format!("http://{}", proxy.grpc_addr))?
            .connect()
            .await
            .context("connecting to the proxy")?;
        health_clients.push(HealthClient::new(channel.clone()));
        clients.push(KeyValueServiceClient::new(channel));
    }
    let resolver = Resolver::builtin();

    println!(
        "prism-load: concurrency {}, {} s per phase, {} B values, {} keys, {} proxy connections, sqlite synchronous={}",
        args.concurrency,
        args.duration_secs,
        args.value_bytes,
        args.keys,
        args.connections,
        args.sqlite_synchronous
    );
    println!(
        "{:<9} {:<4} {:<7} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "backend", "op", "path", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "errors"
    );
    let floor = run_phase(&Target::Floor(health_clients), Op::Get, &args).await?;
    println!(
        "{:<9} {:<4} {:<7} {:>10.0} {:>9} {:>9} {:>9} {:>7}",
        "(none)",
        "-",
        "floor",
        floor.throughput(),
        floor.quantile_us(0.5),
        floor.quantile_us(0.99),
        floor.quantile_us(0.999),
        floor.errors
    );
    let mut rows = Vec::new();
    for ns in &namespaces {
        let kind = ns.backend.kind.clone();
        let direct_backend = resolver
            .open_keyvalue(
                &kind,
                OpenContext {
                    namespace: format!("direct-{kind}"),
                    data_dir: data.path().join("direct"),
                    clock: Arc::new(SystemClock),
                },
                ns.backend.options.clone(),
            )
            .await
            .map_err(anyhow::Error::msg)?;
        let direct = Target::Direct(direct_backend);
        let via_proxy = Target::Proxy {
            namespace: ns.name.clone(),
            clients: clients.clone(),
        };
        populate(&direct, &args).await?;
        populate(&via_proxy, &args).await?;
        for op in [Op::Put, Op::Get] {
            let d = run_phase(&direct, op, &args).await?;
            let p = run_phase(&via_proxy, op, &args).await?;
            for (path, m) in [("direct", &d), ("proxy", &p)] {
                println!(
                    "{:<9} {:<4} {:<7} {:>10.0} {:>9} {:>9} {:>9} {:>7}",
                    kind,
                    format!("{op:?}").to_lowercase(),
                    path,
                    m.throughput(),
                    m.quantile_us(0.5),
                    m.quantile_us(0.99),
                    m.quantile_us(0.999),
                    m.errors
                );
            }
            rows.push((kind.clone(), op, d, p));
        }
    }
    println!("\nproxy cost (proxy / direct):");
    println!(
        "| backend | op | throughput ratio | p50 ratio | p99 ratio | p99.9 ratio | proxy p50 µs | proxy p99 µs |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (kind, op, d, p) in &rows {
        let ratio = |q: f64| p.quantile_us(q) as f64 / d.quantile_us(q).max(1) as f64;
        println!(
            "| {kind} | {} | {:.3} | {:.1}x | {:.1}x | {:.1}x | {} | {} |",
            format!("{op:?}").to_lowercase(),
            p.throughput() / d.throughput(),
            ratio(0.5),
            ratio(0.99),
            ratio(0.999),
            p.quantile_us(0.5),
            p.quantile_us(0.99),
        );
    }
    println!(
        "\ngRPC floor (health check on the same connections, no Prism logic): \
         {:.0} ops/s, p50 {} µs, p99 {} µs. Proxy p50 minus floor p50 is Prism's own cost.",
        floor.throughput(),
        floor.quantile_us(0.5),
        floor.quantile_us(0.99)
    );
    proxy.shutdown().await;
    Ok(())
}
