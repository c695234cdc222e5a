//! Counts calls in flight on the gRPC listener, so shutdown can wait for
//! exactly those calls instead of for idle client connections to go away.
//! A tower layer: it wraps every request whatever its service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::Notify;

/// The shared in-flight counter.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Calls currently in flight.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Resolves once no call is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn enter(self: &Arc<Self>) -> Guard {
        self.count.fetch_add(1, Ordering::AcqRel);
        Guard(self.clone())
    }
}

/// Decrements the counter when the call's future completes or is dropped.
struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The layer counting calls into an [`InFlight`].
#[derive(Debug, Clone)]
pub struct InFlightLayer(pub Arc<InFlight>);

impl<S> tower_layer::Layer<S> for InFlightLayer {
    type Service = InFlightService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightService {
            inner,
            counter: self.0.clone(),
        }
    }
}

/// A service counted by [`InFlightLayer`].
#[derive(Debug, Clone)]
pub struct InFlightService<S> {
    inner: S,
    counter: Arc<InFlight>,
}

impl<S, R> tower_service::Service<R> for InFlightService<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let guard = self.counter.enter();
        let fut = self.inner.call(request);
        Box::pin(async move {
            let out = fut.await;
            drop(guard);
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_after_every_guard_drops() {
        let counter = Arc::new(InFlight::default());
        let a = counter.enter();
        let b = counter.enter();
        assert_eq!(counter.count(), 2);
        let waiter = tokio::spawn({
            let counter = counter.clone();
            async move { counter.wait_idle().await }
        });
        drop(a);
        assert!(!waiter.is_finished() || counter.count() == 0);
        drop(b);
        waiter.await.unwrap();
        assert_eq!(counter.count(), 0);
    }
}
