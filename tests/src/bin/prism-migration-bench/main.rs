//! `prism-migration-bench`: the latency a migration adds to KeyValue calls
//! (ADR-016), in one run. Three namespaces on the same source backend are
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
//! ```

#![forbid(unsafe_code)]

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_proxy::config::{Listeners, NamespaceConfig};
use prism_proxy::{ProxyConfig, RunningProxy};
use tonic::transport::Channel;

#[derive(Debug, Parser)]
#[command(
    about = "Prism migration benchmark: latency of calls with no migration, in dual-write and in shadow-read"
)]
struct Args {
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
            "name: {name}\ndal: keyvalue\nbackend:\n{}",
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

async fn timed<T>(
    h: &mut Histogram<u64>,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<()> {
    let started = Instant::now();
    call.await.context("a call through the proxy failed")?;
    h.record(started.elapsed().as_micros().max(1) as u64)?;
    Ok(())
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
    let mut kv = KeyValueServiceClient::new(channel);
    let value = vec![b'x'; args.value_bytes];
    let mut puts: Vec<Histogram<u64>> = VARIANTS.iter().map(|_| histogram()).collect();
    let mut gets: Vec<Histogram<u64>> = VARIANTS.iter().map(|_| histogram()).collect();
    // Warm-up: connections and statements, not measured.
    for variant in VARIANTS {
        let name = format!("migbench-{variant}-{run}");
        for i in 0..50 {
            kv.put(put(&name, i, &value)).await?;
        }
    }
    // The same calls on the two backends directly (no proxy, no gRPC),
    // for scale: dual-write adds about one target Put to a Put.
    let mut direct_puts: Vec<Histogram<u64>> = (0..2).map(|_| histogram()).collect();
    let mut direct_gets: Vec<Histogram<u64>> = (0..2).map(|_| histogram()).collect();
    let mut direct = Vec::new();
    for (i, kind) in [&args.source, &args.target].into_iter().enumerate() {
        let ctx = pattern_core::OpenContext {
            namespace: format!("migbench-direct-{i}-{run}"),
            data_dir: data.path().join("direct"),
            clock: std::sync::Arc::new(pattern_core::SystemClock),
        };
        let options = options(kind, &args, &format!("{run}-direct"))?;
        direct.push(
            prism_proxy::resolver::Resolver::builtin()
                .open_keyvalue(kind, ctx, options)
                .await
                .map_err(anyhow::Error::msg)?,
        );
    }
    for round in 0..args.rounds {
        for (d, backend) in direct.iter().enumerate() {
            for i in 0..args.calls {
                let n = round * args.calls + i;
                let item = pattern_core::PutItem::new(format!("k{}", n % 7), value.clone());
                let started = Instant::now();
                backend
                    .put(&format!("id-{}", n % 1000), vec![item], None)
                    .await?;
                direct_puts[d].record(started.elapsed().as_micros().max(1) as u64)?;
            }
            for i in 0..args.calls {
                let n = round * args.calls + i;
                let started = Instant::now();
                backend
                    .get(
                        &format!("id-{}", n % 1000),
                        &pattern_core::Selection::All,
                        pattern_core::PageRequest::first(1 << 20),
                    )
                    .await?;
                direct_gets[d].record(started.elapsed().as_micros().max(1) as u64)?;
            }
        }
    }
    for round in 0..args.rounds {
        for (v, variant) in VARIANTS.iter().enumerate() {
            let name = format!("migbench-{variant}-{run}");
            for i in 0..args.calls {
                let n = round * args.calls + i;
                timed(&mut puts[v], kv.put(put(&name, n, &value))).await?;
            }
            for i in 0..args.calls {
                let n = round * args.calls + i;
                timed(
                    &mut gets[v],
                    kv.get(pb::GetRequest {
                        namespace: name.clone(),
                        id: format!("id-{}", n % 1000),
                        ..Default::default()
                    }),
                )
                .await?;
            }
        }
    }
    println!(
        "prism-migration-bench: {} -> {}, {} rounds of {} Puts and {} Gets per namespace, \
         {} B values, read_sample {}",
        args.source,
        args.target,
        args.rounds,
        args.calls,
        args.calls,
        args.value_bytes,
        args.read_sample
    );
    println!(
        "{:<16} {:<4} {:>9} {:>9} {:>10} {:>10}",
        "namespace", "call", "p50 µs", "p99 µs", "p50 ratio", "p99 ratio"
    );
    for (call, hs, direct) in [("Put", &puts, &direct_puts), ("Get", &gets, &direct_gets)] {
        let base = &hs[0];
        for (label, h) in [
            (format!("{} direct", args.source), &direct[0]),
            (format!("{} direct", args.target), &direct[1]),
        ] {
            println!(
                "{:<16} {:<4} {:>9} {:>9} {:>9.2}x {:>9.2}x",
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
                "{:<16} {:<4} {:>9} {:>9} {:>9.2}x {:>9.2}x",
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
