//! The three measurements: publish throughput, consume throughput, and
//! end-to-end latency under a paced publisher.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::paths::{ConsumeReport, Consumer, Publisher};
use crate::payload::{self, MEASURED, Tally, WARMUP};

/// When a publish run stops.
#[derive(Clone, Copy)]
pub enum Stop {
    /// After this many messages.
    Count(u64),
    /// When this instant passes (the calls in flight then complete).
    At(Instant),
}

/// One measured figure: a rate and, where it applies, a latency
/// distribution (µs), with the errors met on the way.
pub struct Measured {
    pub msgs: u64,
    pub elapsed: Duration,
    pub latency_us: Option<Histogram<u64>>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// A remark printed under the table (readiness time, duplicates, loss).
    pub note: Option<String>,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Publishes with `inflight` concurrent calls of `batch` messages each
/// (sequence numbers from 0), until `stop`. The latency recorded is that
/// of each call (a batch's call covers all its messages).
pub async fn publish_run(
    publisher: &Publisher,
    stop: Stop,
    inflight: usize,
    batch: usize,
    size: usize,
) -> Result<Measured> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..inflight {
        let publisher = publisher.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = payload::histogram();
            let (mut msgs, mut errors, mut first_error) = (0u64, 0u64, None);
            loop {
                let first = match stop {
                    Stop::At(deadline) if Instant::now() >= deadline => break,
                    Stop::Count(n) => {
                        let first = next.fetch_add(batch as u64, Ordering::Relaxed);
                        if first >= n {
                            break;
                        }
                        first
                    }
                    Stop::At(_) => next.fetch_add(batch as u64, Ordering::Relaxed),
                };
                let last = match stop {
                    Stop::Count(n) => (first + batch as u64).min(n),
                    Stop::At(_) => first + batch as u64,
                };
                let payloads = (first..last)
                    .map(|seq| payload::make(size, seq, MEASURED))
                    .collect();
                let t = Instant::now();
                match publisher.publish(worker, payloads).await {
                    Ok(()) => {
                        msgs += last - first;
                        hist.saturating_record(t.elapsed().as_micros().max(1) as u64);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (msgs, errors, first_error, hist)
        }));
    }
    let mut total = Measured {
        msgs: 0,
        elapsed: Duration::ZERO,
        latency_us: Some(payload::histogram()),
        errors: 0,
        first_error: None,
        note: None,
    };
    for task in tasks {
        let (msgs, errors, first_error, hist) = task.await.context("a publisher panicked")?;
        total.msgs += msgs;
        total.errors += errors;
        if let Some(e) = first_error {
            total.first_error.get_or_insert(e);
        }
        if let Some(h) = total.latency_us.as_mut() {
            h.add(&hist).context("merging histograms")?;
        }
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

fn consume_note(tally: &Tally, report: &ConsumeReport, expected: u64) -> String {
    let mut note = format!(
        "ready after {} ms; {} of {expected} received",
        report.ready_after.as_millis(),
        tally.unique
    );
    if tally.duplicates > 0 {
        note.push_str(&format!(", {} redelivered", tally.duplicates));
    }
    if tally.malformed > 0 {
        note.push_str(&format!(", {} malformed", tally.malformed));
    }
    note
}

/// Pre-publishes `messages` with `prepublisher`, then drains them with
/// `consumer`. The rate is over first to last message received, so the
/// group join (reported in the note) is not counted.
pub async fn consume_throughput(
    prepublisher: &Publisher,
    prepublish_batch: usize,
    consumer: Consumer,
    messages: u64,
    inflight: usize,
    size: usize,
    timeout: Duration,
) -> Result<Measured> {
    let pre = publish_run(
        prepublisher,
        Stop::Count(messages),
        inflight,
        prepublish_batch,
        size,
    )
    .await?;
    if pre.errors > 0 || pre.msgs != messages {
        bail!(
            "pre-publishing {messages} messages published {} with {} errors (first: {})",
            pre.msgs,
            pre.errors,
            pre.first_error.unwrap_or_default()
        );
    }
    let (tally, report) = consumer
        .run(Tally::new(messages), Instant::now() + timeout)
        .await?;
    let elapsed = match (tally.first_at, tally.last_at) {
        (Some(a), Some(b)) => b - a,
        _ => Duration::ZERO,
    };
    let lost = messages - tally.unique;
    Ok(Measured {
        msgs: tally.unique,
        elapsed,
        latency_us: None,
        errors: report.errors + lost,
        first_error: report
            .first_error
            .clone()
            .or_else(|| (lost > 0).then(|| format!("{lost} messages not received in time"))),
        note: Some(consume_note(&tally, &report, messages)),
    })
}

/// Starts `consumer`, waits until it receives a warm-up message, then
/// publishes `rate` messages a second for `secs` seconds (each in its own
/// call, at most `inflight` outstanding) and records receive − send of
/// every message.
pub async fn latency(
    publisher: &Publisher,
    consumer: Consumer,
    rate: u64,
    secs: u64,
    inflight: usize,
    size: usize,
    timeout: Duration,
) -> Result<Measured> {
    let expected = rate * secs;
    let tally = Tally::new(expected);
    let warmups = tally.warmups.clone();
    let consumer = tokio::spawn(consumer.run(tally, Instant::now() + timeout));
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    let mut warm_errors = 0u64;
    while warmups.load(Ordering::Relaxed) == 0 {
        if Instant::now() > warm_deadline || consumer.is_finished() {
            bail!("the consumer received no warm-up message within 60 s");
        }
        if publisher
            .publish(0, vec![payload::make(size, 0, WARMUP)])
            .await
            .is_err()
        {
            warm_errors += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let limit = Arc::new(Semaphore::new(inflight));
    let errors = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = Vec::with_capacity(expected as usize);
    for seq in 0..expected {
        ticker.tick().await;
        let permit = limit.clone().acquire_owned().await?;
        let publisher = publisher.clone();
        let errors = errors.clone();
        sends.push(tokio::spawn(async move {
            let p = payload::make(size, seq, MEASURED);
            let r = publisher.publish(seq as usize, vec![p]).await;
            drop(permit);
            if let Err(e) = r {
                errors.fetch_add(1, Ordering::Relaxed);
                return Some(format!("{e:#}"));
            }
            None
        }));
    }
    let mut first_error = None;
    for s in sends {
        if let Some(e) = s.await.context("a publish task panicked")? {
            first_error.get_or_insert(e);
        }
    }
    let (tally, report) = consumer.await.context("the consumer panicked")??;
    let lost = expected - tally.unique;
    let mut note = consume_note(&tally, &report, expected);
    if warm_errors > 0 {
        note.push_str(&format!(", {warm_errors} warm-up publishes failed"));
    }
    Ok(Measured {
        msgs: tally.unique,
        elapsed: Duration::from_secs(secs),
        errors: errors.load(Ordering::Relaxed) + report.errors + lost,
        first_error: first_error
            .or(report.first_error)
            .or_else(|| (lost > 0).then(|| format!("{lost} messages not received in time"))),
        latency_us: Some(tally.latency_us),
        note: Some(note),
    })
}
