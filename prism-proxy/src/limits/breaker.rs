//! A circuit breaker in front of one backend.
//!
//! Closed, every call goes through and consecutive failures are counted
//! (failures are the codes saying the backend is unwell, see
//! [`classify`]; any answer in between resets the count). At the
//! threshold the breaker opens: calls fail fast with UNAVAILABLE for the
//! cool-down. Then the next call is let through as the one probe
//! (half-open): its success closes the breaker, its failure opens it for
//! another cool-down, and a probe that ends neither way (the caller went
//! away, the permit was dropped) lets the next call probe instead.
//!
//! Closed, [`Breaker::admit`] is one atomic load and a success one more
//! (a store only when failures were counted); the mutex is taken only on
//! transitions and while the breaker is not closed.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerLimits;

/// The gauge of breaker states: 0 closed, 1 open, 2 half-open.
pub const BREAKER_STATE: &str = "prism_breaker_state";

/// How a finished call counts for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered: success, or an error about the call itself.
    Success,
    /// The backend is unwell.
    Failure,
    /// Says nothing about the backend (the caller cancelled, a limit).
    Ignored,
}

/// How a call that ended with `code` counts: UNAVAILABLE, INTERNAL,
/// DEADLINE_EXCEEDED, DATA_LOSS and UNKNOWN are failures of the backend;
/// CANCELLED and RESOURCE_EXHAUSTED say nothing about it; every other
/// code is an answer (a caller's error like INVALID_ARGUMENT, NOT_FOUND
/// or FAILED_PRECONDITION proves the backend works).
pub fn classify(code: tonic::Code) -> Outcome {
    use tonic::Code::*;
    match code {
        Unavailable | Internal | DeadlineExceeded | DataLoss | Unknown => Outcome::Failure,
        Cancelled | ResourceExhausted => Outcome::Ignored,
        Ok | InvalidArgument | NotFound | AlreadyExists | PermissionDenied | FailedPrecondition
        | Aborted | OutOfRange | Unimplemented | Unauthenticated => Outcome::Success,
    }
}

/// A breaker's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Failing calls fast; `probe_at` is when the next call may probe.
    Open {
        probe_at: Instant,
    },
    /// The probe is out.
    HalfOpen,
}

impl BreakerState {
    fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open { .. } => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

/// A call refused because the breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOpen {
    /// `limits.breaker.failures`.
    pub failures: u32,
    /// `limits.breaker.cool_down_ms`.
    pub cool_down: Duration,
    /// How long until a call may probe the backend.
    pub retry_after: Duration,
}

/// The breaker of one backend.
#[derive(Debug)]
pub struct Breaker {
    /// For the state gauge and the log.
    namespace: Arc<str>,
    threshold: u32,
    cool_down: Duration,
    /// Consecutive failures while closed.
    failures: AtomicU32,
    /// Whether `state` is anything but closed.
    tripped: AtomicBool,
    state: Mutex<BreakerState>,
}

/// A call's passage through the breaker; [`BreakerPermit::record`] says
/// how it went. Dropped unrecorded, it counts as [`Outcome::Ignored`].
#[derive(Debug)]
#[must_use = "record how the call went"]
pub struct BreakerPermit {
    breaker: Option<Arc<Breaker>>,
    probe: bool,
}

impl Breaker {
    /// The breaker of `limits.breaker`; `None` when it is off
    /// (`failures: 0`).
    pub fn new(namespace: Arc<str>, limits: &BreakerLimits) -> Option<Arc<Self>> {
        if limits.failures == 0 {
            return None;
        }
        let breaker = Breaker {
            namespace,
            threshold: limits.failures,
            cool_down: limits.cool_down(),
            failures: AtomicU32::new(0),
            tripped: AtomicBool::new(false),
            state: Mutex::new(BreakerState::Closed),
        };
        breaker.set_gauge(BreakerState::Closed);
        Some(Arc::new(breaker))
    }

    /// Lets a call through, or refuses it while the breaker is open or
    /// its probe is out.
    pub fn admit(self: &Arc<Self>) -> Result<BreakerPermit, BreakerOpen> {
        let permit = |probe| BreakerPermit {
            breaker: Some(self.clone()),
            probe,
        };
        if !self.tripped.load(Ordering::Acquire) {
            return Ok(permit(false));
        }
        let mut state = self.lock();
        let refused = |retry_after| BreakerOpen {
            failures: self.threshold,
            cool_down: self.cool_down,
            retry_after,
        };
        match *state {
            BreakerState::Closed => Ok(permit(false)),
            BreakerState::Open { probe_at } => {
                let now = Instant::now();
                if now < probe_at {
                    return Err(refused(probe_at - now));
                }
                *state = BreakerState::HalfOpen;
                self.set_gauge(*state);
                Ok(permit(true))
            }
            // The probe decides soon; come back shortly.
            BreakerState::HalfOpen => Err(refused(self.cool_down.min(Duration::from_millis(100)))),
        }
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_gauge(&self, state: BreakerState) {
        metrics::gauge!(BREAKER_STATE, "namespace" => self.namespace.to_string())
            .set(state.gauge());
    }

    fn open(&self, state: &mut BreakerState, why: &'static str) {
        *state = BreakerState::Open {
            probe_at: Instant::now() + self.cool_down,
        };
        self.tripped.store(true, Ordering::Release);
        self.failures.store(0, Ordering::Release);
        self.set_gauge(*state);
        tracing::warn!(
            namespace = %self.namespace,
            failures = self.threshold,
            cool_down_ms = self.cool_down.as_millis() as u64,
            "circuit breaker opened: {why}"
        );
    }

    fn record(&self, probe: bool, outcome: Outcome) {
        if !probe {
            match outcome {
                Outcome::Success => {
                    if self.failures.load(Ordering::Acquire) != 0 {
                        self.failures.store(0, Ordering::Release);
                    }
                }
                Outcome::Failure => {
                    let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
                    if n >= self.threshold && !self.tripped.load(Ordering::Acquire) {
                        let mut state = self.lock();
                        if *state == BreakerState::Closed {
                            self.open(&mut state, "consecutive backend failures");
                        }
                    }
                }
                Outcome::Ignored => {}
            }
            return;
        }
        let mut state = self.lock();
        if *state != BreakerState::HalfOpen {
            return;
        }
        match outcome {
            Outcome::Success => {
                *state = BreakerState::Closed;
                self.failures.store(0, Ordering::Release);
                self.tripped.store(false, Ordering::Release);
                self.set_gauge(*state);
                tracing::info!(namespace = %self.namespace, "circuit breaker closed: the probe call succeeded");
            }
            Outcome::Failure => self.open(&mut state, "the probe call failed"),
            Outcome::Ignored => {
                // Let the next call probe.
                *state = BreakerState::Open {
                    probe_at: Instant::now(),
                };
                self.set_gauge(*state);
            }
        }
    }
}

impl BreakerPermit {
    /// A permit of no breaker (`limits.breaker.failures: 0`).
    pub fn unlimited() -> Self {
        BreakerPermit {
            breaker: None,
            probe: false,
        }
    }

    /// Whether this call is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Feeds the call's outcome to the breaker.
    pub fn record(mut self, outcome: Outcome) {
        if let Some(breaker) = self.breaker.take() {
            breaker.record(self.probe, outcome);
        }
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            breaker.record(self.probe, Outcome::Ignored);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn breaker(failures: u32, cool_down_ms: u64) -> Arc<Breaker> {
        Breaker::new(
            "orders".into(),
            &BreakerLimits {
                failures,
                cool_down_ms,
            },
        )
        .unwrap()
    }

    fn call(b: &Arc<Breaker>, code: tonic::Code) {
        b.admit().unwrap().record(classify(code));
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let b = breaker(3, 5000);
        call(&b, tonic::Code::Unavailable);
        call(&b, tonic::Code::Internal);
        call(&b, tonic::Code::Ok);
        call(&b, tonic::Code::DeadlineExceeded);
        call(&b, tonic::Code::Unavailable);
        // Caller errors are answers: they reset the count too.
        call(&b, tonic::Code::NotFound);
        call(&b, tonic::Code::Unavailable);
        call(&b, tonic::Code::Unavailable);
        // Ignored outcomes neither count nor reset.
        call(&b, tonic::Code::Cancelled);
        assert_eq!(b.state(), BreakerState::Closed);
        call(&b, tonic::Code::Unavailable);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        let refused = b.admit().unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(5));
        assert_eq!(
            (refused.failures, refused.cool_down),
            (3, Duration::from_secs(5))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_after_the_cool_down_decides() {
        let b = breaker(1, 5000);
        call(&b, tonic::Code::Unavailable);
        advance(Duration::from_millis(4000)).await;
        assert_eq!(b.admit().unwrap_err().retry_after, Duration::from_secs(1));
        advance(Duration::from_millis(1000)).await;
        let probe = b.admit().unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // While the probe is out, others are refused.
        b.admit().unwrap_err();
        probe.record(Outcome::Failure);
        assert_eq!(b.admit().unwrap_err().retry_after, Duration::from_secs(5));
        advance(Duration::from_secs(5)).await;
        b.admit().unwrap().record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(!b.admit().unwrap().is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_lets_the_next_call_probe() {
        let b = breaker(1, 100);
        call(&b, tonic::Code::Internal);
        advance(Duration::from_millis(100)).await;
        drop(b.admit().unwrap());
        let probe = b.admit().unwrap();
        assert!(probe.is_probe());
        probe.record(Outcome::Ignored);
        assert!(b.admit().unwrap().is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn late_results_of_calls_admitted_before_opening_do_not_close_it() {
        let b = breaker(1, 1000);
        let early = b.admit().unwrap();
        call(&b, tonic::Code::Unavailable);
        early.record(Outcome::Success);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        b.admit().unwrap_err();
    }

    #[test]
    fn off_is_no_breaker() {
        assert!(
            Breaker::new(
                "orders".into(),
                &BreakerLimits {
                    failures: 0,
                    cool_down_ms: 5000
                }
            )
            .is_none()
        );
    }
}
