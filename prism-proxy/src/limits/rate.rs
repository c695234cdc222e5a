//! Rate limits: token buckets for a namespace and for each principal
//! calling it.
//!
//! A bucket is kept as the generic cell rate algorithm (GCRA) keeps it:
//! one number, the *theoretical arrival time* (TAT) of the next call at
//! the sustained rate. A call at `now` is admitted when `max(tat, now) +
//! interval - now` stays within `burst` intervals, and then moves the TAT
//! on by one interval. That is exactly a token bucket of `burst` tokens
//! refilled at `per_second`, in one atomic word: the namespace bucket is
//! a compare-and-swap loop, no lock, no allocation.
//!
//! A TAT at or before `now` is a full bucket, the same as a new one; so
//! the per-principal map can forget those principals without changing
//! what any caller is allowed. The map holds at most `max_principals`
//! entries, keyed by a keyed hash of the subject (SipHash with a random
//! key per proxy: 16 bytes an entry, whatever the subject's length). When
//! it is full of active principals, new ones share one overflow bucket
//! until a sweep (at most once a second) finds idle entries to forget.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{BucketSpec, RateLimit};

/// How often a full principal map may be swept for idle entries.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A bucket's parameters in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    /// Time between two calls at the sustained rate.
    interval: u64,
    /// How far past `now` the TAT may run: `burst` intervals.
    tolerance: u64,
}

impl Gcra {
    fn new(spec: BucketSpec) -> Self {
        let interval = 1_000_000_000 / u64::from(spec.per_second.max(1));
        Gcra {
            interval,
            tolerance: interval * u64::from(spec.burst.max(1)),
        }
    }

    /// Admits one call at `now` against `tat`: the new TAT, or how long
    /// until a call would be admitted.
    fn step(self, tat: u64, now: u64) -> Result<u64, Duration> {
        let next = tat.max(now) + self.interval;
        let ahead = next - now;
        if ahead > self.tolerance {
            Err(Duration::from_nanos(ahead - self.tolerance))
        } else {
            Ok(next)
        }
    }
}

/// Which bucket refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// The namespace's bucket (`limits.rate`).
    Namespace,
    /// The caller's own bucket (`limits.rate.per_principal`).
    Principal,
    /// The bucket shared by principals past `max_principals`.
    SharedPrincipals { max_principals: usize },
}

/// A call refused by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateExceeded {
    pub scope: RateScope,
    /// The bucket as configured.
    pub limit: BucketSpec,
    /// How long until the bucket admits a call.
    pub retry_after: Duration,
}

/// The rate limits of one namespace.
#[derive(Debug)]
pub struct RateLimiter {
    origin: Instant,
    namespace: Option<(BucketSpec, Gcra, AtomicU64)>,
    principals: Option<Principals>,
}

#[derive(Debug)]
struct Principals {
    spec: BucketSpec,
    gcra: Gcra,
    max: usize,
    hasher: RandomState,
    map: Mutex<PrincipalMap>,
}

#[derive(Debug, Default)]
struct PrincipalMap {
    /// Subject hash → TAT.
    tats: HashMap<u64, u64>,
    /// The TAT of the bucket shared by principals that found the map full.
    overflow: u64,
    /// When the map was last swept; `None` before the first sweep.
    last_sweep: Option<u64>,
}

impl RateLimiter {
    /// The limiter for `limits.rate`; admits everything when it is off.
    pub fn new(config: &RateLimit) -> Self {
        RateLimiter {
            origin: Instant::now(),
            namespace: config
                .namespace_bucket()
                .map(|spec| (spec, Gcra::new(spec), AtomicU64::new(0))),
            principals: config.principal_bucket().map(|spec| Principals {
                spec,
                gcra: Gcra::new(spec),
                max: config.per_principal.max_principals.max(1),
                hasher: RandomState::new(),
                map: Mutex::default(),
            }),
        }
    }

    /// Takes one call from the caller's bucket, then from the
    /// namespace's. The caller's comes first so that a principal over its
    /// own limit does not use up the namespace's budget for the others; a
    /// call the namespace's bucket then refuses has still used one of the
    /// caller's.
    pub fn check(&self, principal_subject: &str) -> Result<(), RateExceeded> {
        if self.namespace.is_none() && self.principals.is_none() {
            return Ok(());
        }
        let now = self.now();
        if let Some(p) = &self.principals {
            p.check(principal_subject, now)?;
        }
        if let Some((spec, gcra, tat)) = &self.namespace {
            let mut current = tat.load(Ordering::Acquire);
            loop {
                let next = gcra
                    .step(current, now)
                    .map_err(|retry_after| RateExceeded {
                        scope: RateScope::Namespace,
                        limit: *spec,
                        retry_after,
                    })?;
                match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => break,
                    Err(seen) => current = seen,
                }
            }
        }
        Ok(())
    }

    /// Nanoseconds since the limiter was made.
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX / 2)
    }

    /// Principals with a bucket of their own.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.principals.as_ref().map_or(0, |p| p.lock().tats.len())
    }
}

impl Principals {
    fn lock(&self) -> std::sync::MutexGuard<'_, PrincipalMap> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, subject: &str, now: u64) -> Result<(), RateExceeded> {
        let key = self.hasher.hash_one(subject);
        let mut map = self.lock();
        let map = &mut *map;
        let refused = |scope, retry_after| RateExceeded {
            scope,
            limit: self.spec,
            retry_after,
        };
        if !map.tats.contains_key(&key) && map.tats.len() >= self.max {
            let due = map
                .last_sweep
                .is_none_or(|at| now.saturating_sub(at) >= SWEEP_EVERY.as_nanos() as u64);
            if due {
                map.tats.retain(|_, tat| *tat > now);
                map.last_sweep = Some(now);
            }
            if map.tats.len() >= self.max {
                map.overflow = self.gcra.step(map.overflow, now).map_err(|retry| {
                    refused(
                        RateScope::SharedPrincipals {
                            max_principals: self.max,
                        },
                        retry,
                    )
                })?;
                return Ok(());
            }
        }
        let tat = map.tats.entry(key).or_insert(0);
        *tat = self
            .gcra
            .step(*tat, now)
            .map_err(|retry| refused(RateScope::Principal, retry))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PrincipalRate;
    use tokio::time::advance;

    fn limiter(per_second: u32, burst: u32, principal: Option<(u32, u32, usize)>) -> RateLimiter {
        RateLimiter::new(&RateLimit {
            calls_per_second: per_second,
            burst: (per_second > 0).then_some(burst),
            per_principal: match principal {
                Some((calls_per_second, burst, max_principals)) => PrincipalRate {
                    calls_per_second,
                    burst: Some(burst),
                    max_principals,
                },
                None => PrincipalRate::default(),
            },
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_sustained_rate() {
        let rate = limiter(10, 3, None);
        for _ in 0..3 {
            rate.check("a").unwrap();
        }
        let refused = rate.check("a").unwrap_err();
        assert_eq!(refused.scope, RateScope::Namespace);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        // A refused call takes nothing: the hint still holds.
        advance(Duration::from_millis(99)).await;
        assert_eq!(
            rate.check("a").unwrap_err().retry_after,
            Duration::from_millis(1)
        );
        advance(Duration::from_millis(1)).await;
        rate.check("a").unwrap();
        rate.check("a").unwrap_err();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_to_the_burst_and_no_more() {
        let rate = limiter(2, 4, None);
        for _ in 0..4 {
            rate.check("a").unwrap();
        }
        rate.check("a").unwrap_err();
        advance(Duration::from_secs(3600)).await;
        for _ in 0..4 {
            rate.check("a").unwrap();
        }
        assert_eq!(
            rate.check("a").unwrap_err().retry_after,
            Duration::from_millis(500)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn off_admits_everything() {
        let rate = limiter(0, 0, None);
        for _ in 0..10_000 {
            rate.check("a").unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_principal_has_its_own_bucket() {
        let rate = limiter(0, 0, Some((1, 2, 100)));
        rate.check("alice").unwrap();
        rate.check("alice").unwrap();
        let refused = rate.check("alice").unwrap_err();
        assert_eq!(refused.scope, RateScope::Principal);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        rate.check("bob").unwrap();
        rate.check("bob").unwrap();
        rate.check("bob").unwrap_err();
    }

    #[tokio::test(start_paused = true)]
    async fn a_principal_over_its_limit_leaves_the_namespace_budget_alone() {
        let rate = limiter(1, 3, Some((1, 1, 100)));
        rate.check("greedy").unwrap();
        for _ in 0..10 {
            assert_eq!(
                rate.check("greedy").unwrap_err().scope,
                RateScope::Principal
            );
        }
        rate.check("b").unwrap();
        rate.check("c").unwrap();
        assert_eq!(rate.check("d").unwrap_err().scope, RateScope::Namespace);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_subjects_is_bounded_and_shares_one_bucket() {
        let rate = limiter(0, 0, Some((1, 1, 2)));
        rate.check("a").unwrap();
        rate.check("b").unwrap();
        // The map is full of active principals: newcomers share a bucket.
        rate.check("c").unwrap();
        let refused = rate.check("d").unwrap_err();
        assert_eq!(
            refused.scope,
            RateScope::SharedPrincipals { max_principals: 2 }
        );
        for i in 0..1000 {
            let _ = rate.check(&format!("flood-{i}"));
        }
        assert_eq!(rate.tracked(), 2);
        // Once a and b are idle (full again) they are forgotten, which
        // gives a newcomer a bucket of its own.
        advance(Duration::from_secs(1)).await;
        rate.check("e").unwrap();
        assert_eq!(rate.check("e").unwrap_err().scope, RateScope::Principal);
        assert!(rate.tracked() <= 2);
    }

    #[tokio::test(start_paused = true)]
    async fn sweeps_of_a_full_map_are_at_most_once_a_second() {
        let rate = limiter(0, 0, Some((1, 1, 1)));
        rate.check("a").unwrap(); // sweeps nothing yet: the map has room
        rate.check("b").unwrap(); // full: sweeps (a is active), shares
        advance(Duration::from_millis(999)).await;
        // a would be idle at 1 s; no sweep before then.
        assert_eq!(
            rate.check("c").unwrap_err().scope,
            RateScope::SharedPrincipals { max_principals: 1 }
        );
        advance(Duration::from_millis(1)).await;
        rate.check("c").unwrap();
        assert_eq!(rate.check("c").unwrap_err().scope, RateScope::Principal);
    }
}
