//! Call deadlines: the client's `grpc-timeout`, the namespace's default
//! when it sends none, never more than the namespace's maximum.
//!
//! `grpc-timeout` is read in the form the gRPC HTTP/2 protocol defines:
//! 1 to 8 ASCII digits and one unit, `H` (hours), `M` (minutes), `S`,
//! `m` (milliseconds), `u` (microseconds) or `n` (nanoseconds). A value
//! not in that form is refused with INVALID_ARGUMENT rather than ignored
//! (grpc-go refuses it too): ignoring it would run the call under the
//! namespace's default, which may be far longer than the bound the
//! caller believes it set, and would hide the client's bug.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use crate::config::DeadlineLimits;

/// The request header carrying the client's timeout.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Where a call's deadline came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineSource {
    /// The client's `grpc-timeout`.
    Client,
    /// `limits.deadline.default_ms`: the client sent none.
    NamespaceDefault,
    /// `limits.deadline.max_ms`: shorter than what the client sent, or
    /// the client sent none and the namespace has no default.
    NamespaceMax,
}

impl DeadlineSource {
    /// For error messages: where the deadline came from.
    pub fn describe(self) -> &'static str {
        match self {
            DeadlineSource::Client => "the client's grpc-timeout",
            DeadlineSource::NamespaceDefault => {
                "the namespace's default, limits.deadline.default_ms, as the client sent no \
                 grpc-timeout"
            }
            DeadlineSource::NamespaceMax => "the namespace's maximum, limits.deadline.max_ms",
        }
    }
}

/// A call's deadline: how long it may run, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub timeout: Duration,
    pub source: DeadlineSource,
}

/// The request's `grpc-timeout` is not in the gRPC form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedTimeout;

/// A `grpc-timeout` value as a duration; `None` when it is not 1 to 8
/// ASCII digits followed by one of `H M S m u n`.
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The deadline of a call with request `headers` on a namespace with
/// `limits`: the client's `grpc-timeout`, else `default_ms`, at most
/// `max_ms`; `None` when neither the client nor the namespace sets one.
pub fn effective_deadline(
    headers: &MetadataMap,
    limits: &DeadlineLimits,
) -> Result<Option<Deadline>, MalformedTimeout> {
    let client = match headers.get(GRPC_TIMEOUT) {
        Some(value) => Some(parse_grpc_timeout(value.as_encoded_bytes()).ok_or(MalformedTimeout)?),
        None => None,
    };
    let asked = match client {
        Some(timeout) => Some(Deadline {
            timeout,
            source: DeadlineSource::Client,
        }),
        None => limits.default_deadline().map(|timeout| Deadline {
            timeout,
            source: DeadlineSource::NamespaceDefault,
        }),
    };
    let max = limits.max_deadline();
    Ok(match (asked, max) {
        (Some(d), Some(max)) if d.timeout > max => Some(Deadline {
            timeout: max,
            source: DeadlineSource::NamespaceMax,
        }),
        (None, Some(max)) => Some(Deadline {
            timeout: max,
            source: DeadlineSource::NamespaceMax,
        }),
        (asked, _) => asked,
    })
}

/// The `grpc-timeout` value telling a server (a pattern process) that
/// `remaining` is left: the finest unit that holds it in 8 digits,
/// rounded down so the callee never outlives the caller. What
/// `tonic::Request::set_timeout` sends, for requests built by hand.
pub fn grpc_timeout_value(remaining: Duration) -> AsciiMetadataValue {
    const MAX: u128 = 99_999_999;
    let nanos = remaining.as_nanos();
    let (n, unit) = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ]
    .into_iter()
    .map(|(per, unit)| (nanos / per, unit))
    .find(|(n, _)| *n <= MAX)
    .unwrap_or((MAX, 'H'));
    AsciiMetadataValue::try_from(format!("{n}{unit}")).expect("digits and a letter are ASCII")
}

/// The call ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired;

/// Runs `fut` until `expires_at` (forever when `None`); past it `fut` is
/// dropped, which cancels what it was waiting for, and the result is
/// [`Expired`].
pub async fn run_until<F: Future>(
    expires_at: Option<Instant>,
    fut: F,
) -> Result<F::Output, Expired> {
    match expires_at {
        Some(at) => tokio::time::timeout_at(at, fut).await.map_err(|_| Expired),
        None => Ok(fut.await),
    }
}

/// When a deadline started at `start` expires; `None` when there is none
/// or it lies past what the clock can represent.
pub fn expiry(start: Instant, deadline: Option<Deadline>) -> Option<Instant> {
    deadline.and_then(|d| start.checked_add(d.timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(timeout: Option<&'static str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(t) = timeout {
            m.insert(GRPC_TIMEOUT, AsciiMetadataValue::from_static(t));
        }
        m
    }

    fn limits(default_ms: u64, max_ms: u64) -> DeadlineLimits {
        DeadlineLimits {
            default_ms: Some(default_ms),
            max_ms,
        }
    }

    #[test]
    fn every_unit_is_read() {
        for (value, expected) in [
            ("2H", Duration::from_secs(7200)),
            ("3M", Duration::from_secs(180)),
            ("30S", Duration::from_secs(30)),
            ("250m", Duration::from_millis(250)),
            ("7u", Duration::from_micros(7)),
            ("99999999n", Duration::from_nanos(99_999_999)),
            ("0m", Duration::ZERO),
            ("00000001S", Duration::from_secs(1)),
            ("99999999H", Duration::from_secs(99_999_999 * 3600)),
        ] {
            assert_eq!(
                parse_grpc_timeout(value.as_bytes()),
                Some(expected),
                "{value}"
            );
        }
    }

    #[test]
    fn values_out_of_the_form_are_refused() {
        for value in [
            "",
            "S",
            "5",
            "123456789S",
            "10s",
            "+5S",
            "-1S",
            "1.5S",
            " 5S",
            "5S ",
            "5X",
            "٣S",
        ] {
            assert_eq!(parse_grpc_timeout(value.as_bytes()), None, "{value:?}");
        }
        let mut m = MetadataMap::new();
        m.insert(GRPC_TIMEOUT, AsciiMetadataValue::from_static("soon"));
        assert_eq!(effective_deadline(&m, &limits(0, 0)), Err(MalformedTimeout));
    }

    #[test]
    fn the_client_default_and_maximum_combine() {
        let d = |timeout: Duration, source| Some(Deadline { timeout, source });
        let cases = [
            (
                None,
                limits(30_000, 300_000),
                d(Duration::from_secs(30), DeadlineSource::NamespaceDefault),
            ),
            (
                Some("2S"),
                limits(30_000, 300_000),
                d(Duration::from_secs(2), DeadlineSource::Client),
            ),
            // A client may ask for more than the default, up to the maximum.
            (
                Some("60S"),
                limits(30_000, 300_000),
                d(Duration::from_secs(60), DeadlineSource::Client),
            ),
            (
                Some("1H"),
                limits(30_000, 300_000),
                d(Duration::from_secs(300), DeadlineSource::NamespaceMax),
            ),
            (
                None,
                limits(0, 5_000),
                d(Duration::from_secs(5), DeadlineSource::NamespaceMax),
            ),
            (
                Some("1H"),
                limits(30_000, 0),
                d(Duration::from_secs(3600), DeadlineSource::Client),
            ),
            (None, limits(0, 0), None),
        ];
        for (sent, limits, expected) in cases {
            assert_eq!(
                effective_deadline(&headers(sent), &limits).unwrap(),
                expected,
                "{sent:?} {limits:?}"
            );
        }
    }

    #[test]
    fn outgoing_timeouts_use_the_finest_unit_and_round_down() {
        for (remaining, sent) in [
            (Duration::ZERO, "0n"),
            (Duration::from_nanos(99_999_999), "99999999n"),
            (Duration::from_millis(1500), "1500000u"),
            (Duration::new(299, 999_999_999), "299999m"),
            (Duration::from_secs(200_000), "200000S"),
            (Duration::from_secs(100_000_000), "1666666M"),
            (Duration::from_secs(u64::MAX), "99999999H"),
        ] {
            assert_eq!(grpc_timeout_value(remaining), sent, "{remaining:?}");
        }
        // What is sent reads back as at most what remained.
        for ms in [1u64, 999, 1000, 123_456, 99_999_999, 100_000_000] {
            let remaining = Duration::from_millis(ms) + Duration::from_nanos(7);
            let sent = grpc_timeout_value(remaining);
            let read = parse_grpc_timeout(sent.as_encoded_bytes()).unwrap();
            assert!(
                read <= remaining && remaining - read < Duration::from_millis(1),
                "{ms}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_deadline_the_work_is_dropped() {
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guard = Flag(dropped.clone());
        let start = Instant::now();
        let deadline = Some(Deadline {
            timeout: Duration::from_millis(1500),
            source: DeadlineSource::Client,
        });
        let out = run_until(expiry(start, deadline), async move {
            let _guard = guard;
            std::future::pending::<()>().await
        })
        .await;
        assert_eq!(out, Err(Expired));
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
        // Work that finishes in time returns its output.
        assert_eq!(
            run_until(expiry(Instant::now(), deadline), async { 7 }).await,
            Ok(7)
        );
        assert_eq!(run_until(None, async { 8 }).await, Ok(8));
    }
}
