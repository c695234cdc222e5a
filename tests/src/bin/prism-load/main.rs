//! `prism-load`: drives Put and Get at a given concurrency along every path
//! an application could take to its data, in one run, and reports
//! throughput and p50/p99/p99.9 latency (HDR histograms) per path, then the
//! added latency and the throughput ratio of each path against the
//! baseline (the direct client where there is one, else the backend
//! library).
//!
//! Paths, per backend:
//!
//! | path | what is called |
//! |---|---|
//! | `direct` | the store's own client (Redis `SET`/`GET`, a PostgreSQL upsert/select); redis and postgres only |
//! | `direct+twemproxy`, `direct+pgbouncer` | the same client through the peer proxy a user would otherwise deploy |
//! | `library` | Prism's backend crate called in-process (its data model, no gRPC) |
//! | `embedded` | the Prism proxy, backend linked in |
//! | `process` | the Prism proxy, backend as a pattern process over a Unix socket |
//! | `embedded+pgbouncer` | the Prism proxy, its postgres backend connected through pgbouncer |
//!
//! The proxy runs in this process (the real gRPC server on a loopback
//! port, reached through a real gRPC client), with one namespace per
//! backend and mode in a temporary data directory. A gRPC floor (a health
//! check on the same connections) shows what gRPC alone costs.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/prism-load --backends redis,postgres --concurrency 16 --duration-secs 10
//! ```
//!
//! `--scenario overload` instead drives one namespace far past its call
//! limits and reports its admitted calls' latency against the same
//! namespace unloaded (see `overload.rs`).

#![forbid(unsafe_code)]

mod overload;
mod peers;
mod raw;
mod report;

use std::str::FromStr;

use report::{Row, print_row, print_summary};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use pattern_core::{KeyValueBackend, OpenContext, PageRequest, PutItem, Selection, SystemClock};
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_proxy::ProxyConfig;
use prism_proxy::config::{Listeners, NamespaceConfig};
use prism_proxy::resolver::Resolver;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

/// Key prefix of the Prism redis namespaces (cleaned before and after).
const REDIS_KEY_PREFIX: &str = "prism-bench";
/// Schema of the Prism postgres namespaces (dropped before and after).
const POSTGRES_SCHEMA: &str = "prism_bench";
/// Connections in every PostgreSQL pool (Prism's default `pool_size`).
const POSTGRES_POOL: usize = 8;

#[derive(Clone, Debug, Parser)]
#[command(about = "Prism load generator: direct client vs peer proxy vs Prism, in one run")]
struct Args {
    /// What to measure: `paths` (every path to the data, against the
    /// direct client and the gRPC floor) or `overload` (a namespace far
    /// past its call limits, against the same namespace unloaded).
    #[arg(long, value_enum, default_value_t = Scenario::Paths)]
    scenario: Scenario,
    /// `overload`: the namespace's rate limit, calls per second (burst a
    /// tenth of it).
    #[arg(long, default_value_t = 1000)]
    overload_rate: u64,
    /// `overload`: the offered rate while overloaded, as a multiple of the
    /// rate limit.
    #[arg(long, default_value_t = 10)]
    overload_factor: u64,
    /// `overload`: the namespace's in-flight limit.
    #[arg(long, default_value_t = 16)]
    overload_in_flight: usize,
    /// `overload`: the most calls outstanding at once (more than the
    /// in-flight limit).
    #[arg(long, default_value_t = 64)]
    overload_callers: usize,
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
    /// Backends to measure: memstore, sqlite, redis, postgres.
    #[arg(long, value_delimiter = ',', default_value = "memstore,sqlite")]
    backends: Vec<String>,
    /// Proxy modes to measure: embedded, process (needs the
    /// prism-pattern-* binaries beside this one).
    #[arg(long, value_delimiter = ',', default_value = "embedded,process")]
    modes: Vec<String>,
    /// Peer proxies (twemproxy for redis, pgbouncer for postgres): `auto`
    /// measures them when installed, `on` requires them, `off` skips them.
    #[arg(long, value_enum, default_value_t = PeerChoice::Auto)]
    peers: PeerChoice,
    /// gRPC connections from the load generator to the proxy.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// SQLite durability for the benchmark namespace: full or normal.
    #[arg(long, default_value = "full")]
    sqlite_synchronous: String,
    /// PostgreSQL for the postgres backend (schemas `prism_bench`, `prism_bench_raw`).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Redis for the redis backend (keys `prism-bench*`).
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    redis_url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Scenario {
    Paths,
    Overload,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum PeerChoice {
    Auto,
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Put,
    Get,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
        }
    }
}

/// One way of issuing an operation.
#[derive(Clone)]
enum Target {
    /// A gRPC health check on the proxy's connections: the cost of gRPC,
    /// HTTP/2 and loopback TCP with no Prism logic at all.
    Floor(Vec<HealthClient<Channel>>),
    RawRedis(redis::aio::MultiplexedConnection),
    RawPostgres(deadpool_postgres::Pool),
    Library(Arc<dyn KeyValueBackend>),
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
        match (self, op) {
            (Target::Floor(clients), _) => {
                let mut client = clients[worker % clients.len()].clone();
                client
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await?;
            }
            (Target::RawRedis(conn), Op::Put) => raw::redis_put(conn, &id, &key, value).await?,
            (Target::RawRedis(conn), Op::Get) => raw::redis_get(conn, &id, &key).await?,
            (Target::RawPostgres(pool), Op::Put) => {
                raw::postgres_put(pool, &id, &key, value).await?
            }
            (Target::RawPostgres(pool), Op::Get) => raw::postgres_get(pool, &id, &key).await?,
            (Target::Library(backend), Op::Put) => {
                backend
                    .put(&id, vec![PutItem::new(key, value)], None)
                    .await?;
            }
            (Target::Library(backend), Op::Get) => {
                let page = backend
                    .get(
                        &id,
                        &Selection::Keys(vec![key]),
                        PageRequest::first(1 << 20),
                    )
                    .await?;
                anyhow::ensure!(page.items.len() == 1, "library get found nothing");
            }
            (Target::Proxy { namespace, clients }, op) => {
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
    first_error: Option<String>,
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

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
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
            let mut hist = histogram();
            let (mut ops, mut errors, mut first_error) = (0u64, 0u64, None);
            let mut i = worker;
            while Instant::now() < deadline {
                let t = Instant::now();
                match target.call(worker, op, i % keys, &value).await {
                    Ok(()) => {
                        ops += 1;
                        hist.saturating_record(t.elapsed().as_micros().max(1) as u64);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                i += concurrency;
            }
            (ops, errors, first_error, hist)
        }));
    }
    let mut total = Measured {
        ops: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latency_us: histogram(),
    };
    for task in tasks {
        let (ops, errors, first_error, hist) = task.await?;
        total.ops += ops;
        total.errors += errors;
        total.first_error = total.first_error.or(first_error);
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

/// The running peer proxies and the URLs that reach the stores through them.
#[derive(Default)]
struct Peers {
    twemproxy: Option<(peers::Peer, String)>,
    pgbouncer: Option<(peers::Peer, String)>,
}

impl Peers {
    async fn start(args: &Args) -> Result<Peers> {
        let mut peers = Peers::default();
        if args.peers == PeerChoice::Off {
            return Ok(peers);
        }
        let wanted = |kind: &str| args.backends.iter().any(|b| b == kind);
        let required = args.peers == PeerChoice::On;
        if wanted("redis") {
            let started = async {
                let info =
                    redis::IntoConnectionInfo::into_connection_info(args.redis_url.as_str())?;
                let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
                    bail!("twemproxy needs a TCP redis url, not {}", args.redis_url);
                };
                let peer = peers::twemproxy(&format!("{host}:{port}")).await?;
                let url = format!("redis://{}", peer.addr);
                Ok((peer, url))
            }
            .await;
            peers.twemproxy = keep_or_skip("twemproxy", started, required)?;
        }
        if wanted("postgres") {
            let started = async {
                let config = tokio_postgres::Config::from_str(&args.postgres_url)?;
                let host = match config.get_hosts().first() {
                    Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                    _ => bail!(
                        "pgbouncer needs a TCP postgres url, not {}",
                        args.postgres_url
                    ),
                };
                let port = config.get_ports().first().copied().unwrap_or(5432);
                let user = config.get_user().unwrap_or("postgres").to_string();
                let database = config.get_dbname().unwrap_or(&user).to_string();
                let peer = peers::pgbouncer(&host, port, &database, &user).await?;
                let url = format!("postgres://{user}@{}/{database}", peer.addr);
                Ok((peer, url))
            }
            .await;
            peers.pgbouncer = keep_or_skip("pgbouncer", started, required)?;
        }
        Ok(peers)
    }
}

fn keep_or_skip<T>(name: &str, started: Result<T>, required: bool) -> Result<Option<T>> {
    match started {
        Ok(peer) => Ok(Some(peer)),
        Err(e) if required => Err(e.context(format!("--peers on: {name} is required"))),
        Err(e) => {
            println!("note: {name} skipped: {e:#}");
            Ok(None)
        }
    }
}

/// One proxy namespace to declare: its name, backend kind, mode, and the
/// store URL override (through a peer proxy).
struct BenchNamespace {
    name: String,
    kind: String,
    mode: &'static str,
    url: Option<String>,
}

impl BenchNamespace {
    fn yaml(&self, args: &Args) -> String {
        let options = match self.kind.as_str() {
            "sqlite" => format!("    synchronous: {}\n", args.sqlite_synchronous),
            "postgres" => format!(
                "    url: {}\n    schema: {POSTGRES_SCHEMA}\n    pool_size: {POSTGRES_POOL}\n",
                self.url.as_deref().unwrap_or(&args.postgres_url)
            ),
            "redis" => format!(
                "    url: {}\n    key_prefix: {REDIS_KEY_PREFIX}\n",
                self.url.as_deref().unwrap_or(&args.redis_url)
            ),
            _ => String::new(),
        };
        let options = if options.is_empty() {
            String::new()
        } else {
            format!("  options:\n{options}")
        };
        format!(
            "name: {}\ndal: keyvalue\nbackend:\n  kind: {}\n  mode: {}\n{options}",
            self.name, self.kind, self.mode
        )
    }
}

fn bench_namespaces(args: &Args, peers: &Peers) -> Vec<BenchNamespace> {
    let mut out = Vec::new();
    for kind in &args.backends {
        for mode in ["embedded", "process"] {
            if args.modes.iter().any(|m| m == mode) {
                let suffix = if mode == "embedded" { "" } else { "-process" };
                out.push(BenchNamespace {
                    name: format!("bench-{kind}{suffix}"),
                    kind: kind.clone(),
                    mode,
                    url: None,
                });
            }
        }
        // Prism's redis backend cannot run behind twemproxy (its scripts
        // need SCRIPT LOAD, which twemproxy refuses), so only PostgreSQL
        // gets the stacked path.
        if kind == "postgres"
            && let Some((_, url)) = &peers.pgbouncer
        {
            out.push(BenchNamespace {
                name: "bench-postgres-pgbouncer".into(),
                kind: kind.clone(),
                mode: "embedded",
                url: Some(url.clone()),
            });
        }
    }
    out
}

fn check_args(args: &Args) -> Result<()> {
    for kind in &args.backends {
        if !["memstore", "sqlite", "redis", "postgres"].contains(&kind.as_str()) {
            bail!("unknown backend {kind:?}; choose from memstore, sqlite, redis, postgres");
        }
    }
    for mode in &args.modes {
        if !["embedded", "process"].contains(&mode.as_str()) {
            bail!("unknown mode {mode:?}; choose from embedded, process");
        }
    }
    if args.modes.iter().any(|m| m == "process") {
        for kind in &args.backends {
            let binary = prism_proxy::registry::pattern_binary(kind, None);
            if !binary.is_file() {
                bail!(
                    "process mode needs {} beside prism-load: run `cargo build --release \
                     --workspace --bins` (or pass --modes embedded)",
                    binary.display()
                );
            }
        }
    }
    Ok(())
}

async fn clean_stores(args: &Args) -> Result<()> {
    if args.backends.iter().any(|b| b == "redis") {
        raw::redis_cleanup(&args.redis_url, REDIS_KEY_PREFIX).await?;
    }
    if args.backends.iter().any(|b| b == "postgres") {
        raw::postgres_cleanup(&args.postgres_url, &[POSTGRES_SCHEMA, raw::POSTGRES_SCHEMA]).await?;
    }
    Ok(())
}

/// The paths measured for one backend, baseline first.
async fn paths_for(
    kind: &str,
    args: &Args,
    peers: &Peers,
    namespaces: &[BenchNamespace],
    clients: &[KeyValueServiceClient<Channel>],
    data: &std::path::Path,
) -> Result<Vec<(String, Target)>> {
    let mut paths = Vec::new();
    match kind {
        "redis" => {
            paths.push((
                "direct".into(),
                Target::RawRedis(raw::redis(&args.redis_url).await?),
            ));
            if let Some((peer, url)) = &peers.twemproxy {
                paths.push((
                    format!("direct+{}", peer.name),
                    Target::RawRedis(raw::redis(url).await?),
                ));
            }
        }
        "postgres" => {
            paths.push((
                "direct".into(),
                Target::RawPostgres(raw::postgres(&args.postgres_url, POSTGRES_POOL).await?),
            ));
            if let Some((peer, url)) = &peers.pgbouncer {
                paths.push((
                    format!("direct+{}", peer.name),
                    Target::RawPostgres(raw::postgres(url, POSTGRES_POOL).await?),
                ));
            }
        }
        _ => {}
    }
    let library_ns = namespaces
        .iter()
        .find(|ns| ns.kind == kind && ns.url.is_none())
        .context("no namespace for the library path")?;
    let config = NamespaceConfig::parse(&library_ns.name, &library_ns.yaml(args))?;
    let backend = Resolver::builtin()
        .open::<dyn KeyValueBackend>(
            prism_proxy::dal::KEYVALUE,
            kind,
            OpenContext::new(
                format!("library-{kind}"),
                data.join("library"),
                Arc::new(SystemClock),
            )
            .with_options(config.backend.options.clone()),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    paths.push(("library".into(), Target::Library(backend)));
    for ns in namespaces.iter().filter(|ns| ns.kind == kind) {
        let label = match (&ns.url, ns.mode) {
            (Some(_), _) => "embedded+pgbouncer".to_string(),
            (None, mode) => mode.to_string(),
        };
        paths.push((
            label,
            Target::Proxy {
                namespace: ns.name.clone(),
                clients: clients.to_vec(),
            },
        ));
    }
    Ok(paths)
}

/// Starts the proxy in this process on loopback ports, serving
/// `namespaces` with its data under `data`, and opens `--connections`
/// gRPC connections to it.
async fn start_proxy(
    namespaces: Vec<NamespaceConfig>,
    data: &std::path::Path,
    source: &str,
    args: &Args,
) -> Result<(prism_proxy::RunningProxy, Vec<Channel>)> {
    let config = ProxyConfig {
        listeners: Listeners {
            grpc: "127.0.0.1:0".parse()?,
            admin: "127.0.0.1:0".parse()?,
            ..Listeners::default()
        },
        data_dir: data.join("proxy"),
        shutdown_grace_secs: 5,
        namespaces,
        source: source.into(),
        ..ProxyConfig::default()
    };
    let proxy = prism_proxy::start(config).await?;
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = Channel::from_shared(format!("http://{}", proxy.grpc_addr))?
            .connect()
            .await
            .context("connecting to the proxy")?;
        channels.push(channel);
    }
    Ok((proxy, channels))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.scenario == Scenario::Overload {
        return overload::run(&args).await;
    }
    check_args(&args)?;
    clean_stores(&args).await?;
    let peers = Peers::start(&args).await?;
    let data = tempfile::tempdir()?;
    let namespaces = bench_namespaces(&args, &peers);
    let configs = namespaces
        .iter()
        .map(|ns| NamespaceConfig::parse(&ns.name, &ns.yaml(&args)))
        .collect::<Result<Vec<_>, _>>()?;
    let (proxy, channels) = start_proxy(configs, data.path(), "prism-load", &args).await?;
    let health_clients: Vec<_> = channels.iter().cloned().map(HealthClient::new).collect();
    let clients: Vec<_> = channels
        .into_iter()
        .map(KeyValueServiceClient::new)
        .collect();

    println!(
        "prism-load: concurrency {}, {} s per phase, {} B values, {} keys, {} proxy connections, \
         sqlite synchronous={}, postgres pools of {POSTGRES_POOL}",
        args.concurrency,
        args.duration_secs,
        args.value_bytes,
        args.keys,
        args.connections,
        args.sqlite_synchronous
    );
    println!(
        "{:<9} {:<4} {:<19} {:>9} {:>8} {:>8} {:>9} {:>6}",
        "backend", "op", "path", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "errors"
    );
    let floor = run_phase(&Target::Floor(health_clients), Op::Get, &args).await?;
    print_row("(none)", "-", "grpc floor", &floor);
    let mut rows = Vec::new();
    for kind in &args.backends {
        let paths = paths_for(kind, &args, &peers, &namespaces, &clients, data.path()).await?;
        for (_, target) in &paths {
            populate(target, &args).await?;
        }
        for op in [Op::Put, Op::Get] {
            for (path, target) in &paths {
                let m = run_phase(target, op, &args).await?;
                print_row(kind, op.name(), path, &m);
                rows.push(Row {
                    kind: kind.clone(),
                    op,
                    path: path.clone(),
                    m,
                });
            }
        }
    }
    print_summary(&rows);
    println!(
        "\ngRPC floor (health check on the proxy's connections, no Prism logic): \
         {:.0} ops/s, p50 {} µs, p99 {} µs.",
        floor.throughput(),
        floor.quantile_us(0.5),
        floor.quantile_us(0.99)
    );
    proxy.shutdown().await;
    drop(peers);
    clean_stores(&args).await?;
    Ok(())
}
