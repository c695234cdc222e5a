//! `prism-pubsub-bench`: publish throughput, consume throughput and
//! end-to-end latency of PubSub through the Prism proxy versus the
//! engine's own client, for Kafka and NATS JetStream, in one run.
//!
//! | path | publish | consume |
//! |---|---|---|
//! | `direct` | async-nats JetStream publish awaiting the ack; rdkafka `FutureProducer` awaiting the delivery report | a durable JetStream pull consumer acking each message; an rdkafka `StreamConsumer` in a group committing offsets |
//! | `proxy` | gRPC `Publish` (one message, or a batch of 100 for `proxy-batch100`) | gRPC `Subscribe` + `Ack` |
//!
//! The proxy runs in this process (the real gRPC server on a loopback
//! port) with one `dal: pubsub` namespace per engine; both paths use the
//! same broker. Every run uses fresh topic, stream and group names, and
//! deletes the topics and streams it created at the end.
//!
//! ```text
//! cargo build --release -p prism-tests --bin prism-pubsub-bench
//! target/release/prism-pubsub-bench --backends kafka,nats
//! ```

#![forbid(unsafe_code)]

mod paths;
mod payload;
mod phases;
mod setup;

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;

use crate::paths::{Consumer, Publisher};
use crate::phases::{Measured, Stop};
use crate::setup::Engine;

#[derive(Debug, Parser)]
#[command(about = "Prism PubSub benchmark: proxy vs direct client, Kafka and NATS, in one run")]
pub struct Args {
    /// Engines to measure: kafka, nats.
    #[arg(long, value_delimiter = ',', default_value = "kafka,nats")]
    backends: Vec<String>,
    /// Message size in bytes (at least 17: time stamp, sequence, kind).
    #[arg(long, default_value_t = 256)]
    message_bytes: usize,
    /// Publish calls in flight.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    /// Seconds of the publish throughput phase.
    #[arg(long, default_value_t = 5)]
    publish_secs: u64,
    /// Also measure Publish calls of 100 messages through the proxy.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    batch: bool,
    /// Messages pre-published, then drained, for consume throughput.
    #[arg(long, default_value_t = 20_000)]
    consume_messages: u64,
    /// Messages a second of the paced publisher in the latency phase.
    #[arg(long, default_value_t = 1000)]
    latency_rate: u64,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    /// Longest wait for a consumer to receive everything.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// gRPC connections to the proxy (publishes are spread over them).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// NATS server (JetStream enabled).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
}

/// The metric name of the end-to-end latency phase.
const LATENCY: &str = "e2e latency µs";

/// One line of the result table.
struct Row {
    backend: String,
    metric: &'static str,
    path: &'static str,
    m: Measured,
}

fn print_row(r: &Row) {
    let q = |q: f64| {
        r.m.latency_us
            .as_ref()
            .map(|h| h.value_at_quantile(q).to_string())
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<6} {:<17} {:<15} {:>11.0} {:>9} {:>9} {:>9} {:>6}",
        r.backend,
        r.metric,
        r.path,
        r.m.rate(),
        q(0.5),
        q(0.99),
        q(0.999),
        r.m.errors
    );
}

fn print_ratios(rows: &[Row]) {
    println!(
        "\nproxy / direct (throughput: proxy ÷ direct; latency: proxy ÷ direct at p50 / p99 / p99.9)"
    );
    for r in rows.iter().filter(|r| r.path != "direct") {
        let Some(d) = rows
            .iter()
            .find(|d| d.backend == r.backend && d.metric == r.metric && d.path == "direct")
        else {
            continue;
        };
        let ratio = |a: u64, b: u64| a as f64 / (b.max(1) as f64);
        let lat = match (&r.m.latency_us, &d.m.latency_us) {
            (Some(p), Some(q)) => format!(
                "  latency x{:.2} / x{:.2} / x{:.2}",
                ratio(p.value_at_quantile(0.5), q.value_at_quantile(0.5)),
                ratio(p.value_at_quantile(0.99), q.value_at_quantile(0.99)),
                ratio(p.value_at_quantile(0.999), q.value_at_quantile(0.999)),
            ),
            _ => String::new(),
        };
        // The latency phase's rate is the paced publisher's, the same on both paths.
        let throughput = if r.metric == LATENCY {
            "throughput (paced)".to_string()
        } else {
            format!(
                "throughput x{:.2}",
                r.m.rate() / d.m.rate().max(f64::MIN_POSITIVE)
            )
        };
        println!(
            "{:<6} {:<17} {:<15} {throughput}{lat}",
            r.backend, r.metric, r.path
        );
    }
}

/// Runs every metric for one engine, both paths.
async fn bench_engine(engine: &Engine, args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let size = args.message_bytes;
    let timeout = Duration::from_secs(args.timeout_secs);
    let name = engine.kind.to_string();
    let mut push = |metric, path, m: Measured| {
        let row = Row {
            backend: name.clone(),
            metric,
            path,
            m,
        };
        print_row(&row);
        rows.push(row);
    };
    // 1. Publish throughput.
    let mut publish = vec![("direct", engine.direct_publisher("publish"), 1)];
    publish.push(("proxy", engine.proxy_publisher("publish"), 1));
    if args.batch {
        publish.push((
            "proxy-batch100",
            engine.proxy_publisher("publish-batch"),
            100,
        ));
    }
    for (path, publisher, batch) in publish {
        let until = std::time::Instant::now() + Duration::from_secs(args.publish_secs);
        let m =
            phases::publish_run(&publisher, Stop::At(until), args.inflight, batch, size).await?;
        push("publish msgs/s", path, m);
    }
    // 2. Consume throughput: pre-published with the same path's client.
    let consume: [(&'static str, Publisher, usize, Consumer); 2] = [
        (
            "direct",
            engine.direct_publisher("consume"),
            1,
            engine.direct_consumer("consume", "drain"),
        ),
        (
            "proxy",
            engine.proxy_publisher("consume"),
            100,
            engine.proxy_consumer("consume", "drain"),
        ),
    ];
    for (path, publisher, batch, consumer) in consume {
        let m = phases::consume_throughput(
            &publisher,
            batch,
            consumer,
            args.consume_messages,
            args.inflight,
            size,
            timeout,
        )
        .await?;
        push("consume msgs/s", path, m);
    }
    // 3. End-to-end latency.
    for path in ["direct", "proxy"] {
        let (publisher, consumer) = if path == "direct" {
            (
                engine.direct_publisher("latency"),
                engine.direct_consumer("latency", "e2e"),
            )
        } else {
            (
                engine.proxy_publisher("latency"),
                engine.proxy_consumer("latency", "e2e"),
            )
        };
        let m = phases::latency(
            &publisher,
            consumer,
            args.latency_rate,
            args.latency_secs,
            args.inflight,
            size,
            timeout,
        )
        .await?;
        push(LATENCY, path, m);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.message_bytes < payload::HEADER {
        bail!(
            "--message-bytes {} is too small; use at least {}",
            args.message_bytes,
            payload::HEADER
        );
    }
    if args.inflight == 0 || args.latency_rate == 0 || args.consume_messages == 0 {
        bail!("--inflight, --latency-rate and --consume-messages must be at least 1");
    }
    let proxy = setup::start_proxy(&args).await?;
    println!(
        "prism-pubsub-bench: {} B messages, {} publishes in flight, publish {} s, \
         consume {} messages, latency {} msg/s for {} s, {} proxy connections",
        args.message_bytes,
        args.inflight,
        args.publish_secs,
        args.consume_messages,
        args.latency_rate,
        args.latency_secs,
        args.connections
    );
    println!(
        "{:<6} {:<17} {:<15} {:>11} {:>9} {:>9} {:>9} {:>6}",
        "engine", "metric", "path", "msgs/s", "p50 µs", "p99 µs", "p99.9 µs", "errors"
    );
    let mut rows = Vec::new();
    let mut failure = None;
    let mut engines = Vec::new();
    for kind in &args.backends {
        match Engine::open(kind, &args, &proxy).await {
            Ok(engine) => {
                let result = bench_engine(&engine, &args, &mut rows).await;
                engines.push(engine);
                if let Err(e) = result {
                    failure = Some(e);
                    break;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    print_ratios(&rows);
    println!();
    for r in &rows {
        if let Some(note) = &r.m.note {
            println!("{} {} {}: {note}", r.backend, r.metric, r.path);
        }
        if let Some(e) = &r.m.first_error {
            println!("{} {} {}: first error: {e}", r.backend, r.metric, r.path);
        }
    }
    // The proxy's consumers leave their groups before the topics go.
    proxy.handle.shutdown().await;
    for engine in &engines {
        if let Err(e) = engine.cleanup().await {
            eprintln!("{e:#}");
            failure.get_or_insert(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
