//! Why a call was refused by a limit, as a gRPC status: the code, a
//! bounded message naming the limit, its configured value and the
//! namespace (never other caller data), and the retry hint as metadata.

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;

use super::breaker::BreakerOpen;
use super::deadline::Deadline;
use super::rate::{RateExceeded, RateScope};

/// The counter of calls refused by a limit, by namespace and limit.
pub const REJECTIONS: &str = "prism_limit_rejections_total";

/// The metadata carrying the retry hint, in whole milliseconds.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// The same hint under the name gRPC clients with a retry policy honour
/// (gRPC A6, server pushback).
pub const GRPC_RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

/// A call refused by one of its namespace's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitRejection {
    /// Over a rate limit: RESOURCE_EXHAUSTED.
    #[error("{}", rate_message(.namespace, .exceeded))]
    Rate {
        namespace: Arc<str>,
        exceeded: RateExceeded,
    },
    /// `max` calls are in flight: RESOURCE_EXHAUSTED.
    #[error(
        "namespace {} has {max} calls in flight, its limit (limits.max_in_flight); the call \
         was refused rather than queued; retry in {} ms",
        pattern_core::quote(.namespace),
        ms(*.retry_after)
    )]
    InFlight {
        namespace: Arc<str>,
        max: usize,
        retry_after: Duration,
    },
    /// The call ran past its deadline: DEADLINE_EXCEEDED.
    #[error(
        "deadline of {} ms exceeded on namespace {} (set by {})",
        ms(.deadline.timeout),
        pattern_core::quote(.namespace),
        .deadline.source.describe()
    )]
    Deadline {
        namespace: Arc<str>,
        deadline: Deadline,
    },
    /// The `grpc-timeout` header is not in the gRPC form: INVALID_ARGUMENT.
    #[error(
        "the grpc-timeout header is not a gRPC timeout (1 to 8 digits and a unit: H, M, S, m, \
         u or n, e.g. 500m); namespace {} refused the call",
        pattern_core::quote(.namespace)
    )]
    MalformedTimeout { namespace: Arc<str> },
    /// The backend's breaker is open: UNAVAILABLE.
    #[error(
        "namespace {}'s backend is failing: its circuit breaker opened after {} consecutive \
         failures (limits.breaker.failures) and fails calls fast for {} ms \
         (limits.breaker.cool_down_ms) before letting one probe through; retry in {} ms",
        pattern_core::quote(.namespace),
        .open.failures,
        ms(.open.cool_down),
        ms(.open.retry_after)
    )]
    BreakerOpen {
        namespace: Arc<str>,
        open: BreakerOpen,
    },
}

fn rate_message(namespace: &str, e: &RateExceeded) -> String {
    let (per_second, burst, retry) = (e.limit.per_second, e.limit.burst, ms(e.retry_after));
    let namespace = pattern_core::quote(namespace);
    match e.scope {
        RateScope::Namespace => format!(
            "namespace {namespace} is over its rate limit of {per_second} calls per second \
             (burst {burst}, limits.rate); retry in {retry} ms"
        ),
        RateScope::Principal => format!(
            "this caller is over the per-principal rate limit of namespace {namespace}: \
             {per_second} calls per second (burst {burst}, limits.rate.per_principal); retry \
             in {retry} ms"
        ),
        RateScope::SharedPrincipals { max_principals } => format!(
            "this caller is over the per-principal rate limit of namespace {namespace}: \
             {per_second} calls per second (burst {burst}, limits.rate.per_principal), shared \
             by the callers past the {max_principals} tracked at once \
             (limits.rate.per_principal.max_principals); retry in {retry} ms"
        ),
    }
}

/// A duration in whole milliseconds, rounded up (a hint of 0 ms would
/// invite an immediate retry that fails again).
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

impl LimitRejection {
    /// The gRPC status code.
    pub fn code(&self) -> tonic::Code {
        match self {
            LimitRejection::Rate { .. } | LimitRejection::InFlight { .. } => {
                tonic::Code::ResourceExhausted
            }
            LimitRejection::Deadline { .. } => tonic::Code::DeadlineExceeded,
            LimitRejection::MalformedTimeout { .. } => tonic::Code::InvalidArgument,
            LimitRejection::BreakerOpen { .. } => tonic::Code::Unavailable,
        }
    }

    /// The `limit` label of [`REJECTIONS`]; `None` for a request refused
    /// for its form (counted with the requests, as INVALID_ARGUMENT).
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            LimitRejection::Rate { .. } => Some("rate"),
            LimitRejection::InFlight { .. } => Some("in_flight"),
            LimitRejection::Deadline { .. } => Some("deadline"),
            LimitRejection::BreakerOpen { .. } => Some("breaker"),
            LimitRejection::MalformedTimeout { .. } => None,
        }
    }

    /// The namespace whose limit refused the call.
    pub fn namespace(&self) -> &str {
        match self {
            LimitRejection::Rate { namespace, .. }
            | LimitRejection::InFlight { namespace, .. }
            | LimitRejection::Deadline { namespace, .. }
            | LimitRejection::MalformedTimeout { namespace }
            | LimitRejection::BreakerOpen { namespace, .. } => namespace,
        }
    }

    /// When a retry may succeed; `None` when retrying as is will not
    /// help (a deadline, a malformed header).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LimitRejection::Rate { exceeded, .. } => Some(exceeded.retry_after),
            LimitRejection::InFlight { retry_after, .. } => Some(*retry_after),
            LimitRejection::BreakerOpen { open, .. } => Some(open.retry_after),
            LimitRejection::Deadline { .. } | LimitRejection::MalformedTimeout { .. } => None,
        }
    }

    /// The status answering the call: code, message (bounded by
    /// [`pattern_core::status`]) and, with a retry hint, the metadata
    /// `retry-after-ms` and `grpc-retry-pushback-ms`.
    pub fn to_status(&self) -> tonic::Status {
        let mut status = pattern_core::status(self.code(), self.to_string());
        if let Some(after) = self.retry_after() {
            let value = AsciiMetadataValue::from(ms(after));
            status.metadata_mut().insert(RETRY_AFTER_MS, value.clone());
            status.metadata_mut().insert(GRPC_RETRY_PUSHBACK_MS, value);
        }
        status
    }

    /// Counts the rejection in [`REJECTIONS`].
    pub(super) fn count(&self) {
        if let Some(limit) = self.limit() {
            metrics::counter!(
                REJECTIONS,
                "namespace" => self.namespace().to_string(),
                "limit" => limit
            )
            .increment(1);
        }
    }
}

impl From<LimitRejection> for tonic::Status {
    fn from(rejection: LimitRejection) -> Self {
        rejection.to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BucketSpec;
    use crate::limits::deadline::DeadlineSource;

    fn ns() -> Arc<str> {
        "orders".into()
    }

    #[test]
    fn each_rejection_names_limit_value_namespace_and_hint() {
        let rate = LimitRejection::Rate {
            namespace: ns(),
            exceeded: RateExceeded {
                scope: RateScope::Namespace,
                limit: BucketSpec {
                    per_second: 100,
                    burst: 250,
                },
                retry_after: Duration::from_micros(2500),
            },
        };
        let status = rate.to_status();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "namespace 'orders' is over its rate limit of 100 calls per second (burst 250, \
             limits.rate); retry in 3 ms"
        );
        assert_eq!(status.metadata().get(RETRY_AFTER_MS).unwrap(), "3");
        assert_eq!(status.metadata().get(GRPC_RETRY_PUSHBACK_MS).unwrap(), "3");

        let in_flight = LimitRejection::InFlight {
            namespace: ns(),
            max: 1024,
            retry_after: Duration::from_millis(100),
        }
        .to_status();
        assert_eq!(in_flight.code(), tonic::Code::ResourceExhausted);
        assert!(
            in_flight
                .message()
                .contains("has 1024 calls in flight, its limit (limits.max_in_flight)")
        );
        assert_eq!(in_flight.metadata().get(RETRY_AFTER_MS).unwrap(), "100");

        let breaker = LimitRejection::BreakerOpen {
            namespace: ns(),
            open: BreakerOpen {
                failures: 20,
                cool_down: Duration::from_secs(5),
                retry_after: Duration::from_millis(1200),
            },
        }
        .to_status();
        assert_eq!(breaker.code(), tonic::Code::Unavailable);
        assert!(breaker.message().contains("after 20 consecutive failures"));
        assert!(
            breaker
                .message()
                .contains("for 5000 ms (limits.breaker.cool_down_ms)")
        );
        assert_eq!(breaker.metadata().get(RETRY_AFTER_MS).unwrap(), "1200");
    }

    #[test]
    fn deadlines_say_where_they_came_from_and_give_no_hint() {
        for (source, says) in [
            (DeadlineSource::Client, "set by the client's grpc-timeout"),
            (
                DeadlineSource::NamespaceDefault,
                "limits.deadline.default_ms",
            ),
            (DeadlineSource::NamespaceMax, "limits.deadline.max_ms"),
        ] {
            let status = LimitRejection::Deadline {
                namespace: ns(),
                deadline: Deadline {
                    timeout: Duration::from_secs(30),
                    source,
                },
            }
            .to_status();
            assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
            assert!(
                status
                    .message()
                    .starts_with("deadline of 30000 ms exceeded on namespace 'orders'")
            );
            assert!(status.message().contains(says), "{}", status.message());
            assert!(status.metadata().get(RETRY_AFTER_MS).is_none());
        }
        let malformed = LimitRejection::MalformedTimeout { namespace: ns() }.to_status();
        assert_eq!(malformed.code(), tonic::Code::InvalidArgument);
        assert!(malformed.metadata().get(RETRY_AFTER_MS).is_none());
    }

    #[test]
    fn hints_round_up_to_a_whole_millisecond() {
        assert_eq!(ms(Duration::from_nanos(1)), 1);
        assert_eq!(ms(Duration::from_millis(7)), 7);
        assert_eq!(ms(Duration::ZERO), 0);
    }
}
