//! The deadline of the call being served, carried to the backend so that a
//! backend which forwards the call (a pattern process, a remote pattern)
//! passes the time left on as `grpc-timeout`, and the far side stops when
//! the caller has given up.
//!
//! The proxy runs each operation inside [`within`]; a forwarding backend
//! reads [`remaining`] when it builds its request. The deadline lives in a
//! task-local, so it reaches everything the operation awaits in its own
//! task, and nothing that outlives it.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static CALL_DEADLINE: Option<Instant>;
}

/// Runs `operation` with `deadline` as the call's deadline (`None`: the
/// call has none).
pub async fn within<F: Future>(deadline: Option<Instant>, operation: F) -> F::Output {
    CALL_DEADLINE.scope(deadline, operation).await
}

/// Time left before the current call's deadline (zero once past it);
/// `None` outside [`within`] or for a call without a deadline.
pub fn remaining() -> Option<Duration> {
    CALL_DEADLINE
        .try_with(|deadline| deadline.map(|at| at.saturating_duration_since(Instant::now())))
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_time_left_is_seen_inside_and_only_inside() {
        assert_eq!(remaining(), None, "no call, no deadline");
        let at = Instant::now() + Duration::from_millis(500);
        within(Some(at), async {
            assert_eq!(remaining(), Some(Duration::from_millis(500)));
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(remaining(), Some(Duration::from_millis(300)));
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert_eq!(remaining(), Some(Duration::ZERO), "past it: nothing left");
        })
        .await;
        within(None, async { assert_eq!(remaining(), None) }).await;
        assert_eq!(remaining(), None);
    }
}
