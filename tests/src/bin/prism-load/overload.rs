//! `--scenario overload`: one namespace driven far past its call limits,
//! against the same namespace unloaded, in one run.
//!
//! The namespace (memstore, embedded) has a rate limit and an in-flight
//! limit. First a single paced caller measures it unloaded, at half its
//! rate limit. Then many callers, more than its in-flight limit, call it as
//! fast as they can (the offered rate is printed, as a multiple of the
//! rate limit) while the same paced caller keeps going: its calls are the
//! admitted calls whose latency the scenario reports. A second namespace
//! without limits is measured by its own paced caller during the flood, to
//! show it keeps serving. Refused calls (RESOURCE_EXHAUSTED) are counted
//! with their own latency: they must come back at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_proxy::config::NamespaceConfig;

use crate::{Args, Op, Target, histogram, populate, start_proxy};

const LIMITED: &str = "overload-limited";
const OTHER: &str = "overload-other";

/// What one group of callers saw.
struct Tally {
    admitted: Histogram<u64>,
    refused: Histogram<u64>,
    /// Of the refused, those refused by the in-flight limit (the rest by
    /// the rate limit).
    refused_in_flight: u64,
    /// Failures other than a limit's refusal (a transport error, a hang
    /// cut short, a wrong answer): must stay 0.
    failed: u64,
    first_failure: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            admitted: histogram(),
            refused: histogram(),
            refused_in_flight: 0,
            failed: 0,
            first_failure: None,
        }
    }

    fn record(&mut self, latency: Duration, outcome: Result<()>) {
        let us = latency.as_micros().max(1) as u64;
        match outcome {
            Ok(()) => self.admitted.saturating_record(us),
            Err(e) if is_refusal(&e) => {
                if e.to_string().contains("limits.max_in_flight") {
                    self.refused_in_flight += 1;
                }
                self.refused.saturating_record(us)
            }
            Err(e) => {
                self.failed += 1;
                self.first_failure.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
}

fn is_refusal(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tonic::Status>()
        .is_some_and(|s| s.code() == tonic::Code::ResourceExhausted)
}

fn namespaces(args: &Args) -> Result<Vec<NamespaceConfig>> {
    let limited = format!(
        "name: {LIMITED}\ndal: keyvalue\nbackend:\n  kind: memstore\nlimits:\n  rate:\n    \
         calls_per_second: {rate}\n    burst: {burst}\n  max_in_flight: {in_flight}\n",
        rate = args.overload_rate,
        burst = (args.overload_rate / 10).max(1),
        in_flight = args.overload_in_flight,
    );
    let other = format!("name: {OTHER}\ndal: keyvalue\nbackend:\n  kind: memstore\n");
    Ok(vec![
        NamespaceConfig::parse(LIMITED, &limited)?,
        NamespaceConfig::parse(OTHER, &other)?,
    ])
}

/// Gets on `target` at `per_second`, open loop (each call is sent on its
/// tick whether or not earlier ones have answered), until `until`; at most
/// `max_outstanding` calls wait for an answer at once (a tick past that is
/// counted as not sent: the load generator could not keep up).
async fn open_loop(
    target: &Target,
    per_second: u64,
    max_outstanding: usize,
    until: Instant,
    keys: usize,
) -> Result<(Tally, u64)> {
    let interval = Duration::from_secs_f64(1.0 / per_second as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let outstanding = Arc::new(tokio::sync::Semaphore::new(max_outstanding));
    let mut calls = tokio::task::JoinSet::new();
    let mut tally = Tally::new();
    let (mut i, mut unsent) = (0usize, 0u64);
    while Instant::now() < until {
        tick.tick().await;
        let Ok(permit) = outstanding.clone().try_acquire_owned() else {
            unsent += 1;
            continue;
        };
        let target = target.clone();
        let key = i % keys;
        calls.spawn(async move {
            let t = Instant::now();
            let outcome = target.call(key, Op::Get, key, &[]).await;
            let latency = t.elapsed();
            drop(permit);
            (latency, outcome)
        });
        i += 1;
        // Tally what has answered, so the set stays small.
        while let Some(done) = calls.try_join_next() {
            let (latency, outcome) = done?;
            tally.record(latency, outcome);
        }
    }
    while let Some(done) = calls.join_next().await {
        let (latency, outcome) = done?;
        tally.record(latency, outcome);
    }
    Ok((tally, unsent))
}

fn row(what: &str, h: &Histogram<u64>, seconds: f64) {
    println!(
        "| {what} | {} | {:.0} | {} | {} | {} |",
        h.len(),
        h.len() as f64 / seconds,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
    );
}

pub async fn run(args: &Args) -> Result<()> {
    let rate = args.overload_rate;
    if rate == 0 || args.overload_in_flight == 0 || args.overload_factor < 2 {
        bail!(
            "--overload-rate and --overload-in-flight must be above 0, --overload-factor at least 2"
        );
    }
    if args.overload_callers <= args.overload_in_flight {
        bail!(
            "--overload-callers ({}) must exceed --overload-in-flight ({}) to overload it",
            args.overload_callers,
            args.overload_in_flight
        );
    }
    let data = tempfile::tempdir()?;
    let (proxy, channels) =
        start_proxy(namespaces(args)?, data.path(), "prism-load overload", args).await?;
    let clients: Vec<_> = channels
        .into_iter()
        .map(KeyValueServiceClient::new)
        .collect();
    let target = |namespace: &str| Target::Proxy {
        namespace: namespace.into(),
        clients: clients.clone(),
    };
    let (limited, other) = (target(LIMITED), target(OTHER));
    let keys = args.keys.clamp(1, 1000);
    populate(
        &other,
        &Args {
            keys,
            ..args.clone()
        },
    )
    .await?;
    // The limited namespace's keys, at its rate: a refused Put is retried
    // after its hint.
    let filling = Instant::now();
    let mut i = 0;
    while i < keys {
        match limited.call(0, Op::Put, i, b"v").await {
            Ok(()) => i += 1,
            Err(e) if is_refusal(&e) => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(e) => return Err(e),
        }
        if filling.elapsed() > Duration::from_secs(60) {
            bail!("filling {LIMITED} took over a minute");
        }
    }
    let phase = Duration::from_secs(args.duration_secs);
    let calm = (rate / 2).max(1);
    let offered = rate * args.overload_factor;
    println!(
        "prism-load overload: namespace {LIMITED} (memstore, embedded) limited to {rate} calls/s \
         (burst {}) and {} in flight; unloaded: {calm} calls/s; overloaded: {offered} calls/s \
         ({}x the rate), up to {} outstanding; {OTHER} (no limits) at {calm} calls/s throughout; \
         {} s per phase; {} proxy connections",
        (rate / 10).max(1),
        args.overload_in_flight,
        args.overload_factor,
        args.overload_callers,
        args.duration_secs,
        args.connections,
    );

    let callers = args.overload_callers;
    let (unloaded, _) = open_loop(&limited, calm, callers, Instant::now() + phase, keys).await?;
    let until = Instant::now() + phase;
    let started = Instant::now();
    let (flooded, other_during) = tokio::join!(
        open_loop(&limited, offered, callers, until, keys),
        open_loop(&other, calm, callers, until, keys),
    );
    let seconds = started.elapsed().as_secs_f64();
    let ((flooded, unsent), (other_during, _)) = (flooded?, other_during?);
    let sent = flooded.admitted.len() + flooded.refused.len() + flooded.failed;

    println!(
        "\nsent to {LIMITED} during the overload: {:.0} calls/s = {:.1}x its rate limit \
         ({unsent} ticks not sent: more than {callers} outstanding)",
        sent as f64 / seconds,
        sent as f64 / seconds / rate as f64
    );
    println!("\n| calls | count | per s | p50 µs | p99 µs | p99.9 µs |");
    println!("|---|---|---|---|---|---|");
    let phase_s = phase.as_secs_f64();
    row(&format!("{LIMITED}, unloaded"), &unloaded.admitted, phase_s);
    row(
        &format!("{LIMITED}, overloaded: admitted"),
        &flooded.admitted,
        seconds,
    );
    row(
        &format!("{LIMITED}, overloaded: refused (RESOURCE_EXHAUSTED)"),
        &flooded.refused,
        seconds,
    );
    row(
        &format!("{OTHER}, during the overload"),
        &other_during.admitted,
        seconds,
    );
    let ratio = |q: f64| {
        flooded.admitted.value_at_quantile(q) as f64
            / unloaded.admitted.value_at_quantile(q).max(1) as f64
    };
    println!(
        "\nadmitted calls on {LIMITED} overloaded against unloaded: p50 {:.2}x, p99 {:.2}x; \
         refused: {} by the rate limit, {} by the in-flight limit",
        ratio(0.5),
        ratio(0.99),
        flooded.refused.len() - flooded.refused_in_flight,
        flooded.refused_in_flight,
    );
    proxy.shutdown().await;
    let mut failed = 0;
    for (what, tally) in [
        ("unloaded", &unloaded),
        ("overloaded", &flooded),
        ("the other namespace", &other_during),
    ] {
        if tally.failed > 0 {
            println!(
                "FAILED: {what}: {} calls failed other than by a limit; first: {}",
                tally.failed,
                tally.first_failure.as_deref().unwrap_or("?")
            );
            failed += tally.failed;
        }
    }
    if failed > 0 {
        bail!("{failed} calls failed other than by a limit's refusal");
    }
    if !unloaded.refused.is_empty() || !other_during.refused.is_empty() {
        bail!("calls under their limits were refused");
    }
    Ok(())
}
