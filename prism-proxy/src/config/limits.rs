//! `limits:` of a namespace: the sizes one request may have (checked by
//! the DAL services' validation) and the limits on calls that
//! [`crate::limits`] applies in the call pipeline: rate, calls in
//! flight, deadlines and the backend's circuit breaker.
//!
//! Every field is optional. The call limits default to what protects a
//! proxy without knowing the namespace's traffic: no rate limit (a rate
//! is a capacity decision only the namespace's owner can make), 1024
//! calls in flight, a 30 s deadline for calls that bring none (at most
//! 5 min), and a breaker opening after 20 consecutive backend failures.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// Per-namespace limits. Requests beyond a size limit fail with
/// INVALID_ARGUMENT naming the limit and its value; calls beyond a call
/// limit with RESOURCE_EXHAUSTED (UNAVAILABLE while the breaker is open).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest key, in bytes. Default 1024.
    pub max_key_bytes: usize,
    /// Largest id, in bytes. Default 512.
    pub max_id_bytes: usize,
    /// Largest value, in bytes. Default 1048576 (1 MiB).
    pub max_value_bytes: usize,
    /// Most items in one Put, keys in one Get/Delete key list, or
    /// mutations in one Mutate. Default 1000.
    pub max_items_per_call: usize,
    /// Page budget when a request gives none. Default 1048576 (1 MiB).
    pub default_page_size_bytes: usize,
    /// Largest page budget a request may ask for. Default 4194304 (4 MiB).
    pub max_page_size_bytes: usize,
    /// Calls per second into the namespace, on this proxy. Default: off.
    pub rate: RateLimit,
    /// Most calls of the namespace running at once on this proxy; a call
    /// past it is refused at once, not queued. 0: no limit. Default 1024:
    /// far above what a backend's connection pool serves at once (calls
    /// past the pool wait in its queue), so only a pile-up of stuck or
    /// slow calls reaches it, and then it bounds the memory and the queue
    /// in front of the backend instead of letting them grow.
    pub max_in_flight: usize,
    /// How long a call may run.
    pub deadline: DeadlineLimits,
    /// The circuit breaker in front of the namespace's backend.
    pub breaker: BreakerLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 1024,
            max_id_bytes: 512,
            max_value_bytes: 1 << 20,
            max_items_per_call: 1000,
            default_page_size_bytes: 1 << 20,
            max_page_size_bytes: 4 << 20,
            rate: RateLimit::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            deadline: DeadlineLimits::default(),
            breaker: BreakerLimits::default(),
        }
    }
}

/// The default of `limits.max_in_flight`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// The largest `calls_per_second` (namespace or per principal): far past
/// what one proxy serves; to have no limit, leave it 0.
pub const MAX_CALLS_PER_SECOND: u32 = 1_000_000;

/// The largest `burst`.
pub const MAX_BURST: u32 = 10_000_000;

/// The most principals `rate.per_principal.max_principals` may track.
pub const MAX_TRACKED_PRINCIPALS: usize = 1_000_000;

/// `deadline.default_ms` when the file sets none (30 s).
pub const DEFAULT_DEADLINE_MS: u64 = 30_000;

/// The longest `deadline.default_ms`, `deadline.max_ms` (24 h).
pub const MAX_DEADLINE_MS: u64 = 24 * 60 * 60 * 1000;

/// The longest `breaker.cool_down_ms` (1 h).
pub const MAX_COOL_DOWN_MS: u64 = 60 * 60 * 1000;

/// `limits.rate`: a token bucket for the whole namespace and, optionally,
/// one per principal.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Calls per second the namespace admits, the bucket's refill rate.
    /// 0 (the default): no namespace-wide rate limit.
    pub calls_per_second: u32,
    /// Calls admitted at once after a quiet period, the bucket's size; at
    /// least 1. Default: `calls_per_second` (one second's worth).
    pub burst: Option<u32>,
    /// A bucket per calling principal (its subject), in addition.
    pub per_principal: PrincipalRate,
}

/// `limits.rate.per_principal`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PrincipalRate {
    /// Calls per second one principal may make into the namespace. 0 (the
    /// default): no per-principal limit.
    pub calls_per_second: u32,
    /// Calls one principal may make at once after a quiet period; at
    /// least 1. Default: `calls_per_second`.
    pub burst: Option<u32>,
    /// Most principals whose buckets are kept. Default 10000. Buckets of
    /// idle principals (full again) are forgotten first, which loses
    /// nothing; while every tracked principal is active, new ones share
    /// one bucket, so a flood of distinct subjects cannot grow memory.
    pub max_principals: usize,
}

impl Default for PrincipalRate {
    fn default() -> Self {
        PrincipalRate {
            calls_per_second: 0,
            burst: None,
            max_principals: 10_000,
        }
    }
}

/// A token bucket as configured: `per_second` tokens a second, at most
/// `burst` held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    pub per_second: u32,
    pub burst: u32,
}

impl RateLimit {
    /// The namespace-wide bucket; `None` when off.
    pub fn namespace_bucket(&self) -> Option<BucketSpec> {
        bucket(self.calls_per_second, self.burst)
    }

    /// The per-principal bucket; `None` when off.
    pub fn principal_bucket(&self) -> Option<BucketSpec> {
        bucket(
            self.per_principal.calls_per_second,
            self.per_principal.burst,
        )
    }
}

fn bucket(per_second: u32, burst: Option<u32>) -> Option<BucketSpec> {
    (per_second > 0).then(|| BucketSpec {
        per_second,
        burst: burst.unwrap_or(per_second),
    })
}

/// `limits.deadline`. The deadline of a call is the client's
/// (`grpc-timeout`), else `default_ms`; and never more than `max_ms`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlineLimits {
    /// The deadline of a call whose client sends none, in milliseconds.
    /// 0: none (then `max_ms` bounds it). Default 30000 (30 s), or
    /// `max_ms` when that is lower: longer than any single page or batch
    /// takes on a healthy backend, short enough that a call stuck on an
    /// unwell one gives its in-flight slot back within half a minute.
    pub default_ms: Option<u64>,
    /// The longest deadline a call may have, in milliseconds; a client
    /// asking for more gets this. 0: no maximum. Default 300000 (5 min).
    pub max_ms: u64,
}

impl Default for DeadlineLimits {
    fn default() -> Self {
        DeadlineLimits {
            default_ms: None,
            max_ms: 300_000,
        }
    }
}

impl DeadlineLimits {
    /// The default deadline in milliseconds, 0 for none: `default_ms`,
    /// else [`DEFAULT_DEADLINE_MS`] lowered to `max_ms`.
    pub fn default_ms(&self) -> u64 {
        match (self.default_ms, self.max_ms) {
            (Some(ms), _) => ms,
            (None, 0) => DEFAULT_DEADLINE_MS,
            (None, max) => DEFAULT_DEADLINE_MS.min(max),
        }
    }

    /// The default deadline, `None` when there is none.
    pub fn default_deadline(&self) -> Option<Duration> {
        let ms = self.default_ms();
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// `max_ms`, `None` when 0.
    pub fn max_deadline(&self) -> Option<Duration> {
        (self.max_ms > 0).then(|| Duration::from_millis(self.max_ms))
    }
}

/// `limits.breaker`: after `failures` consecutive failures of the backend
/// (UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED, ...; not the caller's
/// errors), calls fail fast with UNAVAILABLE for `cool_down_ms`, then one
/// probe call is let through: success closes the breaker, failure opens
/// it again.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerLimits {
    /// Consecutive failures that open the breaker. 0: no breaker.
    /// Default 20: a backend answering nothing but errors twenty times in
    /// a row is down, not flaky, and failing fast spares it the load and
    /// the callers the wait; one success in between resets the count.
    pub failures: u32,
    /// How long the breaker stays open before a probe, in milliseconds;
    /// at least 1. Default 5000: long enough for a restarting backend or
    /// a failover to finish, short enough that callers see a recovery
    /// within seconds.
    pub cool_down_ms: u64,
}

impl Default for BreakerLimits {
    fn default() -> Self {
        BreakerLimits {
            failures: 20,
            cool_down_ms: 5_000,
        }
    }
}

impl BreakerLimits {
    /// `cool_down_ms` as a duration.
    pub fn cool_down(&self) -> Duration {
        Duration::from_millis(self.cool_down_ms)
    }
}

impl Limits {
    /// Whether the call limits (rate, in flight, deadline, breaker) are
    /// the same in both, so their state can be kept across a reload.
    pub fn same_call_limits(&self, other: &Limits) -> bool {
        self.rate == other.rate
            && self.max_in_flight == other.max_in_flight
            && self.deadline == other.deadline
            && self.breaker == other.breaker
    }

    /// Checks the call limits; the error names the field.
    pub(super) fn validate_call_limits(&self, file: &str) -> Result<(), ConfigError> {
        let r = &self.rate;
        check_bucket(file, "limits.rate", r.calls_per_second, r.burst)?;
        let p = &r.per_principal;
        check_bucket(
            file,
            "limits.rate.per_principal",
            p.calls_per_second,
            p.burst,
        )?;
        if !(1..=MAX_TRACKED_PRINCIPALS).contains(&p.max_principals) {
            return Err(ConfigError::new(
                file,
                "limits.rate.per_principal.max_principals",
                format!("must be between 1 and {MAX_TRACKED_PRINCIPALS}"),
            ));
        }
        let d = &self.deadline;
        for (field, value) in [
            ("limits.deadline.default_ms", d.default_ms()),
            ("limits.deadline.max_ms", d.max_ms),
        ] {
            if value > MAX_DEADLINE_MS {
                return Err(ConfigError::new(
                    file,
                    field,
                    format!("must be at most {MAX_DEADLINE_MS} (24 h); 0 for none"),
                ));
            }
        }
        if d.default_ms() > 0 && d.max_ms > 0 && d.default_ms() > d.max_ms {
            return Err(ConfigError::new(
                file,
                "limits.deadline.default_ms",
                format!(
                    "is {} but limits.deadline.max_ms is {}; the default must not exceed the \
                     maximum",
                    d.default_ms(),
                    d.max_ms
                ),
            ));
        }
        let b = &self.breaker;
        if b.failures > 0 && !(1..=MAX_COOL_DOWN_MS).contains(&b.cool_down_ms) {
            return Err(ConfigError::new(
                file,
                "limits.breaker.cool_down_ms",
                format!(
                    "must be between 1 and {MAX_COOL_DOWN_MS} (1 h) while limits.breaker.failures \
                     is set; set failures: 0 to turn the breaker off"
                ),
            ));
        }
        Ok(())
    }
}

/// `calls_per_second` and `burst` of the bucket at `field`.
fn check_bucket(
    file: &str,
    field: &str,
    per_second: u32,
    burst: Option<u32>,
) -> Result<(), ConfigError> {
    if per_second > MAX_CALLS_PER_SECOND {
        return Err(ConfigError::new(
            file,
            &format!("{field}.calls_per_second"),
            format!("must be at most {MAX_CALLS_PER_SECOND}; 0 for no limit"),
        ));
    }
    match burst {
        Some(_) if per_second == 0 => Err(ConfigError::new(
            file,
            &format!("{field}.burst"),
            format!("applies only with {field}.calls_per_second set; set it or remove burst"),
        )),
        Some(b) if !(1..=MAX_BURST).contains(&b) => Err(ConfigError::new(
            file,
            &format!("{field}.burst"),
            format!("must be between 1 and {MAX_BURST}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::NamespaceConfig;

    const HEAD: &str = "name: orders\ndal: keyvalue\nbackend: {kind: memstore}\n";

    fn parse(limits: &str) -> Result<NamespaceConfig, crate::config::ConfigError> {
        NamespaceConfig::parse("ns/orders.yaml", &format!("{HEAD}limits:\n{limits}"))
    }

    #[test]
    fn call_limits_default_when_absent() {
        let ns = NamespaceConfig::parse("ns/orders.yaml", HEAD).unwrap();
        let l = &ns.limits;
        assert_eq!(l.rate.namespace_bucket(), None);
        assert_eq!(l.rate.principal_bucket(), None);
        assert_eq!(l.rate.per_principal.max_principals, 10_000);
        assert_eq!(l.max_in_flight, 1024);
        assert_eq!(
            (l.deadline.default_ms(), l.deadline.max_ms),
            (30_000, 300_000)
        );
        assert_eq!((l.breaker.failures, l.breaker.cool_down_ms), (20, 5_000));
    }

    #[test]
    fn every_call_limit_is_read() {
        let ns = parse(
            "  max_key_bytes: 64\n  rate:\n    calls_per_second: 100\n    burst: 250\n    \
             per_principal: {calls_per_second: 5, max_principals: 50}\n  max_in_flight: 8\n  \
             deadline: {default_ms: 0, max_ms: 2000}\n  breaker: {failures: 0}\n",
        )
        .unwrap();
        let l = &ns.limits;
        assert_eq!(l.max_key_bytes, 64);
        let ns_bucket = l.rate.namespace_bucket().unwrap();
        assert_eq!((ns_bucket.per_second, ns_bucket.burst), (100, 250));
        // A burst left out is one second's worth.
        let p = l.rate.principal_bucket().unwrap();
        assert_eq!((p.per_second, p.burst), (5, 5));
        assert_eq!(l.rate.per_principal.max_principals, 50);
        assert_eq!(l.max_in_flight, 8);
        assert_eq!(l.deadline.default_deadline(), None);
        assert_eq!(
            l.deadline.max_deadline(),
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(l.breaker.failures, 0);
    }

    #[test]
    fn bad_call_limits_name_the_field() {
        for (limits, field, says) in [
            (
                "  rate: {calls_per_second: 10, burst: 0}\n",
                "limits.rate.burst",
                "between 1 and",
            ),
            (
                "  rate: {burst: 10}\n",
                "limits.rate.burst",
                "applies only with limits.rate.calls_per_second",
            ),
            (
                "  rate: {calls_per_second: 2000000}\n",
                "limits.rate.calls_per_second",
                "at most 1000000",
            ),
            (
                "  rate: {per_principal: {burst: 3}}\n",
                "limits.rate.per_principal.burst",
                "applies only with limits.rate.per_principal.calls_per_second",
            ),
            (
                "  rate: {per_principal: {calls_per_second: 1, max_principals: 0}}\n",
                "limits.rate.per_principal.max_principals",
                "between 1 and",
            ),
            (
                "  deadline: {default_ms: 5000, max_ms: 1000}\n",
                "limits.deadline.default_ms",
                "must not exceed the maximum",
            ),
            (
                "  deadline: {max_ms: 90000000}\n",
                "limits.deadline.max_ms",
                "at most 86400000",
            ),
            (
                "  breaker: {failures: 3, cool_down_ms: 0}\n",
                "limits.breaker.cool_down_ms",
                "between 1 and",
            ),
        ] {
            let err = parse(limits).unwrap_err();
            assert_eq!(err.field, field, "{limits}: {err}");
            assert!(err.message.contains(says), "{limits}: {err}");
        }
    }

    #[test]
    fn a_lower_maximum_lowers_the_unset_default() {
        let ns = parse("  deadline: {max_ms: 2000}\n").unwrap();
        assert_eq!(ns.limits.deadline.default_ms(), 2000);
        let ns = parse("  deadline: {max_ms: 0}\n").unwrap();
        assert_eq!(ns.limits.deadline.default_ms(), 30_000);
        assert_eq!(ns.limits.deadline.max_deadline(), None);
    }

    #[test]
    fn off_values_are_accepted() {
        // No default deadline with a maximum, no maximum with a default, no
        // breaker with any cool-down, no in-flight limit.
        for limits in [
            "  deadline: {default_ms: 0}\n",
            "  deadline: {max_ms: 0, default_ms: 600000}\n",
            "  breaker: {failures: 0, cool_down_ms: 0}\n",
            "  max_in_flight: 0\n",
        ] {
            parse(limits).unwrap_or_else(|e| panic!("{limits}: {e}"));
        }
    }

    #[test]
    fn unknown_call_limit_fields_are_refused() {
        let err = parse("  rate: {calls_per_secnd: 5}\n").unwrap_err();
        assert_eq!(err.field, "limits.rate.calls_per_secnd");
        let err = parse("  breaker: {failure: 5}\n").unwrap_err();
        assert_eq!(err.field, "limits.breaker.failure");
    }

    #[test]
    fn same_call_limits_ignores_the_size_limits() {
        let a = parse("  max_key_bytes: 10\n  max_in_flight: 4\n").unwrap();
        let b = parse("  max_key_bytes: 20\n  max_in_flight: 4\n").unwrap();
        let c = parse("  max_in_flight: 5\n").unwrap();
        let d = parse("  max_in_flight: 4\n  rate: {calls_per_second: 1}\n").unwrap();
        assert!(a.limits.same_call_limits(&b.limits));
        assert!(!a.limits.same_call_limits(&c.limits));
        assert!(!a.limits.same_call_limits(&d.limits));
    }
}
