//! The limits a namespace puts on calls: rate, calls in flight, deadline
//! and the circuit breaker of its backend (`limits:` in the namespace's
//! YAML, [`crate::config::Limits`]).
//!
//! The call pipeline keeps one [`NamespaceLimits`] per namespace, beside
//! the namespace's backend, and uses it in three steps around the
//! operation (after the policy check, before the audit record):
//!
//! ```ignore
//! let mut admission = ns.limits.admit(&principal.subject, request.metadata())?;
//! let result = admission.run(operation(backend, request)).await;
//! let result = result.map_err(ProxyError::from).and_then(|r| r); // a deadline → DEADLINE_EXCEEDED
//! admission.finish(code_of(&result));
//! ```
//!
//! * [`NamespaceLimits::admit`] takes the caller's rate tokens (its own
//!   bucket, then the namespace's), a slot in flight and the breaker's
//!   permission, and works out the call's deadline; it refuses with a
//!   [`LimitRejection`], which converts into a `tonic::Status` (and a
//!   [`ProxyError`](crate::error::ProxyError)) carrying the retry hint.
//!   It never waits: a call over a limit is refused at once.
//! * [`Admission::run`] runs the operation under the deadline; past it
//!   the operation's future is dropped, which cancels the backend call,
//!   and the answer is DEADLINE_EXCEEDED naming the deadline and where it
//!   came from. The operation runs inside [`pattern_core::deadline::within`],
//!   so a backend that forwards the call to a pattern process sends the
//!   time left as `grpc-timeout` ([`Admission::grpc_timeout`] is that
//!   header for requests built by hand).
//! * [`Admission::finish`] feeds the call's status code to the breaker.
//!   Dropping the admission instead gives the in-flight slot back and
//!   tells the breaker nothing, as when the caller goes away.
//!
//! For a server stream (Tail, Subscribe), run only the opening of the
//! stream under the admission: the namespace's default and maximum
//! deadlines bound calls, not subscriptions (the client's own
//! `grpc-timeout` still ends the stream, in tonic's transport), and a
//! stream's life is bounded by the listener's stream and connection caps
//! rather than by `max_in_flight`.
//!
//! The state (buckets, the in-flight count, the breaker) lives as long as
//! the `NamespaceLimits`: on a configuration reload, keep the old one
//! when [`NamespaceLimits::same_config`] says the call limits did not
//! change, so a reload neither refills buckets nor closes an open
//! breaker. A new one starts empty; calls admitted by the old one keep
//! their slots on it.
//!
//! The client's deadline is also enforced by tonic's transport (which
//! answers CANCELLED "Timeout expired" and, having started its clock
//! first, usually fires first); what this module adds is the namespace's
//! default and maximum, the DEADLINE_EXCEEDED message, and the forwarding.

mod breaker;
mod deadline;
mod in_flight;
mod rate;
mod rejection;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use crate::config::{Limits, NamespaceConfig};

pub use breaker::{
    BREAKER_STATE, Breaker, BreakerOpen, BreakerPermit, BreakerState, Outcome, classify,
};
pub use deadline::{
    Deadline, DeadlineSource, Expired, GRPC_TIMEOUT, MalformedTimeout, effective_deadline, expiry,
    grpc_timeout_value, parse_grpc_timeout, run_until,
};
pub use in_flight::{IN_FLIGHT_RETRY, InFlightLimit, InFlightPermit};
pub use rate::{RateExceeded, RateLimiter, RateScope};
pub use rejection::{GRPC_RETRY_PUSHBACK_MS, LimitRejection, REJECTIONS, RETRY_AFTER_MS};

/// Describes the limits' metrics (called where the proxy's metrics are
/// described).
pub fn describe_metrics() {
    metrics::describe_counter!(
        REJECTIONS,
        "Calls refused by a namespace's limits, by namespace and limit (rate, in_flight, \
         deadline, breaker)"
    );
    metrics::describe_gauge!(
        BREAKER_STATE,
        "State of the circuit breaker in front of a namespace's backend: 0 closed, 1 open, 2 \
         half-open (probing)"
    );
}

/// The call limits of one namespace, and their state.
#[derive(Debug)]
pub struct NamespaceLimits {
    namespace: Arc<str>,
    /// The configuration this was built from, for [`Self::same_config`].
    config: Limits,
    rate: RateLimiter,
    in_flight: InFlightLimit,
    breaker: Option<Arc<Breaker>>,
}

/// A call let through by [`NamespaceLimits::admit`]: its slot in flight,
/// its passage through the breaker and its deadline.
#[derive(Debug)]
#[must_use = "run the call under the admission, then finish it"]
pub struct Admission {
    namespace: Arc<str>,
    deadline: Option<Deadline>,
    expires_at: Option<Instant>,
    /// Whether [`Admission::run`] hit the deadline.
    expired: bool,
    _in_flight: InFlightPermit,
    breaker: BreakerPermit,
}

impl NamespaceLimits {
    /// Fresh limits for `config`'s namespace: full buckets, nothing in
    /// flight, the breaker closed.
    pub fn new(config: &NamespaceConfig) -> Self {
        let namespace: Arc<str> = config.name.as_str().into();
        let limits = &config.limits;
        NamespaceLimits {
            rate: RateLimiter::new(&limits.rate),
            in_flight: InFlightLimit::new(limits.max_in_flight),
            breaker: Breaker::new(namespace.clone(), &limits.breaker),
            config: limits.clone(),
            namespace,
        }
    }

    /// Whether `config` has the same namespace and call limits, so this
    /// state should be kept across the reload that brought it.
    pub fn same_config(&self, config: &NamespaceConfig) -> bool {
        *self.namespace == *config.name && self.config.same_call_limits(&config.limits)
    }

    /// Admits one call of `principal_subject` with request metadata
    /// `headers`, or says which limit refuses it (and counts the refusal
    /// in `prism_limit_rejections_total`). Never waits. Checked in this
    /// order: the `grpc-timeout` header's form, the rate limits, the
    /// in-flight limit, the breaker; a call refused by a later check has
    /// still used its rate tokens.
    pub fn admit(
        &self,
        principal_subject: &str,
        headers: &MetadataMap,
    ) -> Result<Admission, LimitRejection> {
        self.try_admit(principal_subject, headers)
            .inspect_err(LimitRejection::count)
    }

    fn try_admit(
        &self,
        principal_subject: &str,
        headers: &MetadataMap,
    ) -> Result<Admission, LimitRejection> {
        let namespace = &self.namespace;
        let deadline = effective_deadline(headers, &self.config.deadline).map_err(|_| {
            LimitRejection::MalformedTimeout {
                namespace: namespace.clone(),
            }
        })?;
        let start = Instant::now();
        self.rate
            .check(principal_subject)
            .map_err(|exceeded| LimitRejection::Rate {
                namespace: namespace.clone(),
                exceeded,
            })?;
        let in_flight = self
            .in_flight
            .try_acquire()
            .ok_or_else(|| LimitRejection::InFlight {
                namespace: namespace.clone(),
                max: self.in_flight.max(),
                retry_after: IN_FLIGHT_RETRY,
            })?;
        let breaker = match &self.breaker {
            Some(b) => b.admit().map_err(|open| LimitRejection::BreakerOpen {
                namespace: namespace.clone(),
                open,
            })?,
            None => BreakerPermit::unlimited(),
        };
        Ok(Admission {
            namespace: namespace.clone(),
            deadline,
            expires_at: expiry(start, deadline),
            expired: false,
            _in_flight: in_flight,
            breaker,
        })
    }

    /// Calls in flight now (0 without an in-flight limit).
    pub fn in_flight(&self) -> usize {
        self.in_flight.in_flight()
    }

    /// The breaker's state; `None` when the namespace has none.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.breaker.as_ref().map(|b| b.state())
    }
}

impl Admission {
    /// The call's deadline; `None` when it has none.
    pub fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    /// Time left before the deadline (zero once past it); `None` without
    /// a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.expires_at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// The `grpc-timeout` value forwarding the time left to a pattern
    /// process; `None` without a deadline.
    pub fn grpc_timeout(&self) -> Option<AsciiMetadataValue> {
        self.remaining().map(grpc_timeout_value)
    }

    /// Runs the call's operation under its deadline: the operation's
    /// output, or (the operation dropped, counted in
    /// `prism_limit_rejections_total{limit="deadline"}`) a
    /// [`LimitRejection::Deadline`] naming the deadline and its source.
    /// The operation sees the deadline as [`pattern_core::deadline`], so
    /// a backend that forwards it to a pattern process passes the time
    /// left on.
    pub async fn run<F: Future>(&mut self, operation: F) -> Result<F::Output, LimitRejection> {
        let operation = pattern_core::deadline::within(self.expires_at, operation);
        match run_until(self.expires_at, operation).await {
            Ok(out) => Ok(out),
            Err(Expired) => Err(self.expire()),
        }
    }

    /// For an operation that failed: whether that was because the call's
    /// deadline passed meanwhile (a pattern process told the time left
    /// gives up at the same moment as the proxy, and its answer can come
    /// first). If so the call is treated as expired, as in
    /// [`Admission::run`], and the rejection to answer with is returned.
    pub fn failed_past_deadline(&mut self) -> Option<LimitRejection> {
        let at = self.expires_at?;
        (Instant::now() >= at).then(|| self.expire())
    }

    fn expire(&mut self) -> LimitRejection {
        self.expired = true;
        let rejection = LimitRejection::Deadline {
            namespace: self.namespace.clone(),
            deadline: self.deadline.expect("only a call with a deadline expires"),
        };
        rejection.count();
        rejection
    }

    /// Ends the call with status `code`, telling the breaker how the
    /// backend did ([`classify`]). A deadline that expired in
    /// [`Admission::run`] counts against the backend only when the
    /// namespace set it: a client's short deadline is the client's choice.
    pub fn finish(self, code: tonic::Code) {
        let client_deadline = self
            .deadline
            .is_some_and(|d| d.source == DeadlineSource::Client);
        let outcome = if self.expired && client_deadline {
            Outcome::Ignored
        } else {
            classify(code)
        };
        self.breaker.record(outcome);
    }
}

#[cfg(test)]
mod tests;
