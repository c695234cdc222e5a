//! The most calls of a namespace running at once. A call past the limit
//! is refused at once rather than queued: a queue in front of a slow
//! backend only turns its slowness into everyone's latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The retry hint of a call refused for the in-flight limit: a slot frees
/// as soon as any call finishes, so a short back-off.
pub const IN_FLIGHT_RETRY: Duration = Duration::from_millis(100);

/// The counter of one namespace's calls in flight.
#[derive(Debug)]
pub struct InFlightLimit {
    /// 0: no limit (and nothing counted).
    max: usize,
    count: Arc<AtomicUsize>,
}

/// One call's slot; gives it back when dropped, however the call ends.
#[derive(Debug)]
#[must_use = "the slot is given back when the permit is dropped"]
pub struct InFlightPermit(Option<Arc<AtomicUsize>>);

impl InFlightLimit {
    /// At most `max` calls at once; 0 for no limit.
    pub fn new(max: usize) -> Self {
        InFlightLimit {
            max,
            count: Arc::default(),
        }
    }

    /// The configured limit, 0 for none.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot, or `None` when `max` calls hold one. Never waits.
    pub fn try_acquire(&self) -> Option<InFlightPermit> {
        if self.max == 0 {
            return Some(InFlightPermit(None));
        }
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlightPermit(Some(self.count.clone())))
    }

    /// Calls holding a slot now (0 when there is no limit).
    pub fn in_flight(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

impl Drop for InFlightPermit {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_calls_are_shed_until_a_slot_frees() {
        let limit = InFlightLimit::new(2);
        let a = limit.try_acquire().unwrap();
        let b = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.in_flight(), 2);
        drop(a);
        let c = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        drop((b, c));
        assert_eq!(limit.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_call_gives_its_slot_back() {
        let limit = Arc::new(InFlightLimit::new(1));
        let permit = limit.try_acquire().unwrap();
        let call = tokio::spawn(async move {
            let _permit = permit;
            std::future::pending::<()>().await
        });
        assert!(limit.try_acquire().is_none());
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn zero_is_no_limit() {
        let limit = InFlightLimit::new(0);
        let held: Vec<_> = (0..10_000).map(|_| limit.try_acquire().unwrap()).collect();
        assert_eq!(held.len(), 10_000);
    }
}
