//! Periodic background work tied to a backend's lifetime (TTL sweepers and
//! the like).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

/// A task running `work` every interval while its target is alive. It
/// holds the target weakly, so it never keeps a backend alive, and it stops
/// when the target is dropped, when [`Periodic::stop`] is called, or when
/// the `Periodic` itself is dropped.
#[derive(Debug)]
pub struct Periodic(Option<JoinHandle<()>>);

impl Periodic {
    /// Spawns the task on the current tokio runtime; outside a runtime
    /// nothing runs (callers then drive the work themselves, as tests do).
    pub fn spawn<T, F, Fut>(target: &Arc<T>, every: Duration, work: F) -> Self
    where
        T: Send + Sync + 'static,
        F: Fn(Arc<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Periodic(None);
        };
        let weak = Arc::downgrade(target);
        let every = every.max(Duration::from_millis(10));
        Periodic(Some(runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(target) = weak.upgrade() else { break };
                work(target).await;
            }
        })))
    }

    /// Stops the task.
    pub fn stop(&self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn runs_while_the_target_lives() {
        let target = Arc::new(AtomicUsize::new(0));
        let periodic = Periodic::spawn(&target, Duration::from_secs(1), |t| async move {
            t.fetch_add(1, Ordering::SeqCst);
        });
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(target.load(Ordering::SeqCst), 4, "ticks at 0, 1, 2 and 3 s");
        periodic.stop();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(target.load(Ordering::SeqCst), 4, "no ticks after stop");
    }

    #[test]
    fn outside_a_runtime_nothing_runs() {
        let target = Arc::new(());
        let periodic = Periodic::spawn(&target, Duration::from_secs(1), |_| async {});
        assert!(periodic.0.is_none());
    }
}
