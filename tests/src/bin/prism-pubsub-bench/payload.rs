//! The benchmark's message payload and the consumer-side tally.
//!
//! A payload is `send time (u64 LE, ns since the process's epoch) | sequence
//! number (u64 LE) | kind (1 byte) | padding` up to the message size.
//! Publisher and consumer run in one process, so the send time and the
//! receive time come from the same monotonic clock.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;

/// Header bytes every payload carries; the smallest message size.
pub const HEADER: usize = 17;
/// A message that counts.
pub const MEASURED: u8 = 0;
/// A warm-up message: proves the consumer receives, is not measured.
pub const WARMUP: u8 = 1;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process's epoch.
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// A payload of `size` bytes (at least [`HEADER`]) stamped with the current time.
pub fn make(size: usize, seq: u64, kind: u8) -> Vec<u8> {
    let mut p = vec![b'x'; size.max(HEADER)];
    p[0..8].copy_from_slice(&now_ns().to_le_bytes());
    p[8..16].copy_from_slice(&seq.to_le_bytes());
    p[16] = kind;
    p
}

/// A histogram of microseconds from 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What a consumer saw: distinct measured messages (by sequence number),
/// duplicates (at-least-once redeliveries), warm-ups, malformed payloads,
/// the end-to-end latency of each first delivery, and when the first and
/// last measured message arrived.
pub struct Tally {
    expected: u64,
    seen: Vec<bool>,
    pub unique: u64,
    pub duplicates: u64,
    pub malformed: u64,
    /// Shared so that a publisher can wait for the consumer to be live.
    pub warmups: Arc<AtomicU64>,
    pub first_at: Option<Instant>,
    pub last_at: Option<Instant>,
    pub latency_us: Histogram<u64>,
}

impl Tally {
    /// A tally expecting the measured sequence numbers `0..expected`.
    pub fn new(expected: u64) -> Tally {
        Tally {
            expected,
            seen: vec![false; expected as usize],
            unique: 0,
            duplicates: 0,
            malformed: 0,
            warmups: Arc::new(AtomicU64::new(0)),
            first_at: None,
            last_at: None,
            latency_us: histogram(),
        }
    }

    /// Every expected message was received.
    pub fn done(&self) -> bool {
        self.unique >= self.expected
    }

    /// Counts one received payload.
    pub fn on(&mut self, payload: &[u8]) {
        let received = now_ns();
        if payload.len() < HEADER {
            self.malformed += 1;
            return;
        }
        let sent = u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes"));
        let seq = u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes"));
        match payload[16] {
            WARMUP => {
                self.warmups.fetch_add(1, Ordering::Relaxed);
            }
            MEASURED if seq < self.expected => {
                let slot = &mut self.seen[seq as usize];
                if *slot {
                    self.duplicates += 1;
                    return;
                }
                *slot = true;
                self.unique += 1;
                let now = Instant::now();
                self.first_at.get_or_insert(now);
                self.last_at = Some(now);
                let us = received.saturating_sub(sent) / 1000;
                self.latency_us.saturating_record(us.max(1));
            }
            _ => self.malformed += 1,
        }
    }
}
