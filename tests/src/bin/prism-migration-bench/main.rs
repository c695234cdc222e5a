//! `prism-migration-bench`: the latency a migration adds to KeyValue calls
//! (Put, Get) or TimeSeries calls (`--dal timeseries`: Write of one event,
//! Read of a series' first page) (ADR-016), in one run. Three namespaces on the same source backend are
//! served by one in-process proxy:
//!
//! | namespace | what it does |
//! |---|---|
//! | `none` | no migration |
//! | `dual-write` | migrating to the target, phase dual-write: every write also goes to the target |
//! | `shadow-read` | phase shadow-read with `--read-sample` of reads compared with the target |
//!
//! Rounds of sequential Puts and Gets go to each namespace in turn (so
//! machine noise spreads over all three), and the p50 and p99 of each call
//! are printed with their ratio to `none`.
//!
//! ```text
//! cargo build --release -p prism-tests --bin prism-migration-bench
//! target/release/prism-migration-bench --source sqlite --target postgres
//! target/release/prism-migration-bench --dal timeseries --source sqlite --target postgres
//! ```

#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use pattern_core::timeseries::TimeSeriesBackend;
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_proto::timeseries::v1 as tspb;
use prism_proto::timeseries::v1::time_series_service_client::TimeSeriesServiceClient;
use prism_proxy::config::{Listeners, NamespaceConfig};
use prism_proxy::{ProxyConfig, RunningProxy};
use tonic::transport::Channel;

#[derive(Debug, Parser)]
#[command(
    about = "Prism migration benchmark: latency of calls with no migration, in dual-write and in shadow-read"
)]
struct Args {
    /// The namespaces' DAL: keyvalue or timeseries.
    #[arg(long, default_value = "keyvalue")]
    dal: String,
    /// The namespaces' backend: memstore, sqlite, postgres or redis.
    #[arg(long, default_value = "sqlite")]
    source: String,
    /// The backend migrated to.
    #[arg(long, default_value = "postgres")]
    target: String,
    /// Share of reads compared in shadow-read.
    #[arg(long, default_value_t = 1.0)]
    read_sample: f64,
    /// Rounds; each runs `--calls` Puts then Gets on every namespace.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

const VARIANTS: [&str; 3] = ["none", "dual-write", "shadow-read"];

/// The backend options of `kind` for this run.
fn options(kind: &str, args: &Args, run: &str) -> Result<serde_json::Value> {
    Ok(match kind {
        "memstore" | "sqlite" => serde_json::json!({}),
        "postgres" => serde_json::json!({
            "url": args.postgres_url,
            "schema": format!("migbench_{}", run.replace('-', "_")),
        }),
        "redis" => serde_json::json!({
            "url": args.redis_url,
            "key_prefix": format!("migbench-{run}"),
        }),
        other => bail!("unknown backend {other:?}; use memstore, sqlite, postgres or redis"),
    })
}

/// A `backend:` section body (JSON is YAML flow syntax).
fn backend_yaml(kind: &str, args: &Args, run: &str, indent: &str) -> Result<String> {
    Ok(format!(
        "{indent}  kind: {kind}\n{indent}  options: {}\n",
        options(kind, args, run)?
    ))
}

fn namespaces(args: &Args, run: &str) -> Result<Vec<NamespaceConfig>> {
    let mut out = Vec::new();
    for variant in VARIANTS {
        let name = format!("migbench-{variant}-{run}");
        let mut yaml = format!(
            "name: {name}\ndal: {}\nbackend:\n{}",
            args.dal,
            backend_yaml(&args.source, args, run, "")?
        );
        if variant != "none" {
            yaml.push_str(&format!(
                "migration:\n  to:\n{}  phase: {variant}\n  read_sample: {}\n",
                backend_yaml(&args.target, args, run, "  ")?,
                args.read_sample
            ));
        }
        out.push(NamespaceConfig::parse(&name, &yaml).with_context(|| yaml.clone())?);
    }
    Ok(out)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let run = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs()
    );
    let data = tempfile::tempdir()?;
    let config = ProxyConfig {
        listeners: Listeners {
            grpc: "127.0.0.1:0".parse()?,
            admin: "127.0.0.1:0".parse()?,
            ..Listeners::default()
        },
        data_dir: data.path().join("proxy"),
        shutdown_grace_secs: 5,
        namespaces: namespaces(&args, &run)?,
        source: "prism-migration-bench".into(),
        ..ProxyConfig::default()
    };
    let proxy: RunningProxy = prism_proxy::start(config)
        .await
        .context("starting the proxy")?;
    let channel = Channel::from_shared(format!("http://{}", proxy.grpc_addr))?
        .connect()
        .await?;
    let mut calls = Calls::open(&args, channel, data.path(), &run).await?;
    let value = vec![b'x'; args.value_bytes];
    let mut puts: Vec<Histogram<u64>> = VARIANTS.iter().map(|_| histogram()).collect();
    let mut gets: Vec<Histogram<u64>> = VARIANTS.iter().map(|_| histogram()).collect();
    // Warm-up: connections and statements, not measured.
    for variant in VARIANTS {
        let name = format!("migbench-{variant}-{run}");
        for i in 0..50 {
            calls.write(&name, 1_000_000 + i, &value).await?;
        }
    }
    // The same calls on the two backends directly (no proxy, no gRPC),
    // for scale: dual-write adds about one target write to a write.
    let mut direct_puts: Vec<Histogram<u64>> = (0..2).map(|_| histogram()).collect();
    let mut direct_gets: Vec<Histogram<u64>> = (0..2).map(|_| histogram()).collect();
    for round in 0..args.rounds {
        for d in 0..2 {
            for i in 0..args.calls {
                let n = round * args.calls + i;
                let started = Instant::now();
                calls.direct_write(d, n, &value).await?;
                direct_puts[d].record(started.elapsed().as_micros().max(1) as u64)?;
            }
            for i in 0..args.calls {
                let n = round * args.calls + i;
                let started = Instant::now();
                calls.direct_read(d, n).await?;
                direct_gets[d].record(started.elapsed().as_micros().max(1) as u64)?;
            }
        }
    }
    for round in 0..args.rounds {
        for (v, variant) in VARIANTS.iter().enumerate() {
            let name = format!("migbench-{variant}-{run}");
            for i in 0..args.calls {
                let n = round * args.calls + i;
                let started = Instant::now();
                calls.write(&name, n, &value).await?;
                puts[v].record(started.elapsed().as_micros().max(1) as u64)?;
            }
            for i in 0..args.calls {
                let n = round * args.calls + i;
                let started = Instant::now();
                calls.read(&name, n).await?;
                gets[v].record(started.elapsed().as_micros().max(1) as u64)?;
            }
        }
    }
    let (write_call, read_call) = calls.names();
    println!(
        "prism-migration-bench: {} {} -> {}, {} rounds of {} {write_call}s and {} {read_call}s \
         per namespace, {} B values, read_sample {}",
        args.dal,
        args.source,
        args.target,
        args.rounds,
        args.calls,
        args.calls,
        args.value_bytes,
        args.read_sample
    );
    println!(
        "{:<16} {:<5} {:>9} {:>9} {:>10} {:>10}",
        "namespace", "call", "p50 µs", "p99 µs", "p50 ratio", "p99 ratio"
    );
    for (call, hs, direct) in [
        (write_call, &puts, &direct_puts),
        (read_call, &gets, &direct_gets),
    ] {
        let base = &hs[0];
        for (label, h) in [
            (format!("{} direct", args.source), &direct[0]),
            (format!("{} direct", args.target), &direct[1]),
        ] {
            println!(
                "{:<16} {:<5} {:>9} {:>9} {:>9.2}x {:>9.2}x",
                label,
                call,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.5) as f64 / base.value_at_quantile(0.5) as f64,
                h.value_at_quantile(0.99) as f64 / base.value_at_quantile(0.99) as f64,
            );
        }
        for (v, variant) in VARIANTS.iter().enumerate() {
            let h = &hs[v];
            println!(
                "{:<16} {:<5} {:>9} {:>9} {:>9.2}x {:>9.2}x",
                variant,
                call,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.5) as f64 / base.value_at_quantile(0.5) as f64,
                h.value_at_quantile(0.99) as f64 / base.value_at_quantile(0.99) as f64,
            );
        }
    }
    proxy.shutdown().await;
    Ok(())
}

fn put(name: &str, n: usize, value: &[u8]) -> pb::PutRequest {
    pb::PutRequest {
        namespace: name.to_string(),
        id: format!("id-{}", n % 1000),
        items: vec![pb::PutItem {
            key: format!("k{}", n % 7).into_bytes(),
            value: value.to_vec(),
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    }
}

/// Microseconds of the `n`th TimeSeries event (all in the past hour).
fn event_us(n: usize) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    now - 3_600_000_000 + n as i64
}

/// The calls measured, on one DAL: through the proxy, and on the two
/// backends directly.
enum Calls {
    KeyValue {
        client: KeyValueServiceClient<Channel>,
        direct: Vec<Arc<dyn pattern_core::KeyValueBackend>>,
    },
    TimeSeries {
        client: TimeSeriesServiceClient<Channel>,
        direct: Vec<Arc<dyn TimeSeriesBackend>>,
    },
}

impl Calls {
    async fn open(args: &Args, channel: Channel, data: &Path, run: &str) -> Result<Self> {
        let resolver = prism_proxy::resolver::Resolver::builtin();
        let mut kv = Vec::new();
        let mut ts = Vec::new();
        for (i, kind) in [&args.source, &args.target].into_iter().enumerate() {
            let namespace = format!("migbench-direct-{i}-{run}");
            let options = options(kind, args, &format!("{run}-direct"))?;
            let clock = Arc::new(pattern_core::SystemClock);
            let data_dir = data.join("direct");
            match args.dal.as_str() {
                "keyvalue" => {
                    let ctx = pattern_core::OpenContext::new(namespace, data_dir, clock)
                        .with_options(options);
                    kv.push(
                        resolver
                            .open(prism_proxy::dal::KEYVALUE, kind, ctx)
                            .await
                            .map_err(anyhow::Error::msg)?,
                    );
                }
                "timeseries" => {
                    let ctx = pattern_core::OpenContext::new(namespace, data_dir, clock)
                        .with_options(options);
                    ts.push(
                        resolver
                            .open(prism_proxy::dal::TIMESERIES, kind, ctx)
                            .await
                            .map_err(anyhow::Error::msg)?,
                    );
                }
                other => bail!("unknown DAL {other:?}; use keyvalue or timeseries"),
            }
        }
        Ok(if ts.is_empty() {
            Calls::KeyValue {
                client: KeyValueServiceClient::new(channel),
                direct: kv,
            }
        } else {
            Calls::TimeSeries {
                client: TimeSeriesServiceClient::new(channel),
                direct: ts,
            }
        })
    }

    fn names(&self) -> (&'static str, &'static str) {
        match self {
            Calls::KeyValue { .. } => ("Put", "Get"),
            Calls::TimeSeries { .. } => ("Write", "Read"),
        }
    }

    async fn write(&mut self, name: &str, n: usize, value: &[u8]) -> Result<()> {
        match self {
            Calls::KeyValue { client, .. } => {
                client.put(put(name, n, value)).await?;
            }
            Calls::TimeSeries { client, .. } => {
                let us = event_us(n);
                client
                    .write(tspb::WriteRequest {
                        namespace: name.to_string(),
                        events: vec![tspb::Event {
                            series_id: format!("s-{}", n % 50),
                            event_time: Some(prost_types::Timestamp {
                                seconds: us.div_euclid(1_000_000),
                                nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
                            }),
                            event_id: format!("e{n}"),
                            tags: Default::default(),
                            payload: value.to_vec(),
                        }],
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn read(&mut self, name: &str, n: usize) -> Result<()> {
        match self {
            Calls::KeyValue { client, .. } => {
                client
                    .get(pb::GetRequest {
                        namespace: name.to_string(),
                        id: format!("id-{}", n % 1000),
                        ..Default::default()
                    })
                    .await?;
            }
            Calls::TimeSeries { client, .. } => {
                client
                    .read(tspb::ReadRequest {
                        namespace: name.to_string(),
                        series_id: format!("s-{}", n % 50),
                        page_size_bytes: READ_PAGE_BYTES as u32,
                        ..Default::default()
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn direct_write(&self, d: usize, n: usize, value: &[u8]) -> Result<()> {
        match self {
            Calls::KeyValue { direct, .. } => {
                let item = pattern_core::PutItem::new(format!("k{}", n % 7), value.to_vec());
                direct[d]
                    .put(&format!("id-{}", n % 1000), vec![item], None)
                    .await?;
            }
            Calls::TimeSeries { direct, .. } => {
                direct[d]
                    .write(vec![pattern_core::timeseries::Event {
                        series_id: format!("s-{}", n % 50),
                        time_us: event_us(n),
                        event_id: format!("e{n}"),
                        tags: Default::default(),
                        payload: value.to_vec(),
                    }])
                    .await?;
            }
        }
        Ok(())
    }

    async fn direct_read(&self, d: usize, n: usize) -> Result<()> {
        match self {
            Calls::KeyValue { direct, .. } => {
                direct[d]
                    .get(
                        &format!("id-{}", n % 1000),
                        &pattern_core::Selection::All,
                        pattern_core::PageRequest::first(1 << 20),
                    )
                    .await?;
            }
            Calls::TimeSeries { direct, .. } => {
                direct[d]
                    .read(&pattern_core::timeseries::ReadQuery {
                        series_id: format!("s-{}", n % 50),
                        budget_bytes: READ_PAGE_BYTES,
                        ..Default::default()
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

/// The page size of a TimeSeries Read.
const READ_PAGE_BYTES: usize = 16 << 10;
