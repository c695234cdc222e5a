//! The PubSub acceptance suite: the harness, shared helpers and the macro
//! every PubSub backend runs; the cases are in [`cases`] (re-exported here).
//!
//! ```ignore
//! pattern_core::pubsub_acceptance_suite!(mode = "embedded", MyFactory, serde_json::json!({}));
//! ```
//!
//! Every case opens a fresh backend for a namespace of its own and uses
//! topic names of its own, so cases and backends run in parallel. Cases
//! choose their own ack deadlines (1 to 2 seconds where redelivery is
//! awaited) and wait for conditions by pulling with a deadline, never by
//! sleeping, so they hold for any backend. A case whose capability the
//! backend does not declare checks a clean refusal where the API has one
//! (replay) and otherwise reports `not_applicable`.

mod cases;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use cases::*;

use super::Harness;
use super::report::CaseSubject;
use crate::capabilities::{Capabilities, Capability};
use crate::clock::SystemClock;
use crate::pubsub::{
    Delivery, OutgoingMessage, PubSubBackend, PubSubFactory, StartAt, Subscription,
};

/// Opens PubSub backends for acceptance tests.
pub struct PubSubHarness {
    factory: Arc<dyn PubSubFactory>,
    options: serde_json::Value,
    dir: tempfile::TempDir,
    mode: &'static str,
    claimed: Mutex<Option<Capabilities>>,
}

static NEXT_TOPIC: AtomicU64 = AtomicU64::new(0);

impl PubSubHarness {
    /// A harness opening backends with `factory` and `options`.
    pub fn new(factory: Arc<dyn PubSubFactory>, options: serde_json::Value) -> Self {
        PubSubHarness {
            factory,
            options,
            dir: tempfile::tempdir().expect("creating a temporary data directory"),
            mode: "embedded",
            claimed: Mutex::new(None),
        }
    }

    /// This harness, reporting its runs under `mode`.
    pub fn with_mode(mut self, mode: &'static str) -> Self {
        self.mode = mode;
        self
    }

    /// Opens a backend for a fresh namespace; returns it and the namespace
    /// (to reopen it with [`PubSubHarness::reopen`]).
    pub async fn open(&self, test: &str) -> (Arc<dyn PubSubBackend>, String) {
        let namespace = Harness::unique_namespace(test);
        (self.reopen(&namespace).await, namespace)
    }

    /// Opens a backend for `namespace` (again).
    pub async fn reopen(&self, namespace: &str) -> Arc<dyn PubSubBackend> {
        let ctx = crate::OpenContext::new(namespace, self.dir.path(), Arc::new(SystemClock))
            .with_options(self.options.clone());
        let backend = self
            .factory
            .open(ctx)
            .await
            .unwrap_or_else(|e| panic!("opening the backend: {e}"));
        *self.claimed.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend.capabilities());
        backend
    }
}

impl CaseSubject for PubSubHarness {
    fn backend_kind(&self) -> &'static str {
        self.factory.kind()
    }
    fn mode(&self) -> &'static str {
        self.mode
    }
    fn claimed(&self) -> Option<Capabilities> {
        *self.claimed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The capability a case tests, or `None` for core behaviour.
pub fn case_capability(case: &str) -> Option<Capability> {
    match case {
        "consumer_groups_share_and_fan_out" => Some(Capability::ConsumerGroups),
        "poison_message_dead_lettered" => Some(Capability::DeadLetter),
        "ordering_key_order" => Some(Capability::OrderingKey),
        "replay_from_earliest" => Some(Capability::Replay),
        "durable" => Some(Capability::Durable),
        _ => None,
    }
}

/// A topic name unique in this process and run: `<base>-<n>`.
pub fn unique_topic(base: &str) -> String {
    let n = NEXT_TOPIC.fetch_add(1, Ordering::Relaxed);
    format!("{base}-{}-{n}", std::process::id())
}

/// A subscription of `consumer` in `group` starting at the latest message.
pub fn subscription(
    topic: &str,
    group: &str,
    consumer: &str,
    ack_deadline: Duration,
) -> Subscription {
    Subscription {
        topic: topic.to_string(),
        group: group.to_string(),
        consumer: consumer.to_string(),
        ack_deadline,
        max_attempts: 100,
        start_at: StartAt::Latest,
    }
}

/// Message `i`: payload `m-<i>`, attribute `n = <i>`, no ordering key.
pub fn message(i: usize) -> OutgoingMessage {
    OutgoingMessage {
        ordering_key: String::new(),
        attributes: BTreeMap::from([("n".to_string(), i.to_string())]),
        payload: format!("m-{i}").into_bytes(),
    }
}

/// Publishes `messages` to `topic`, checking one distinct id per message.
pub async fn publish(
    b: &Arc<dyn PubSubBackend>,
    topic: &str,
    messages: Vec<OutgoingMessage>,
) -> Vec<String> {
    let n = messages.len();
    let ids = b
        .publish(topic, messages)
        .await
        .unwrap_or_else(|e| panic!("publish to {topic}: {e}"));
    assert_eq!(ids.len(), n, "publish returns one id per message");
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), n, "message ids are distinct: {ids:?}");
    assert!(
        ids.iter().all(|id| !id.is_empty()),
        "message ids are not empty"
    );
    ids
}

/// One pull, panicking on error.
pub async fn pull(
    b: &Arc<dyn PubSubBackend>,
    sub: &Subscription,
    max: usize,
    wait: Duration,
) -> Vec<Delivery> {
    b.pull(sub, max, wait)
        .await
        .unwrap_or_else(|e| panic!("pull {} in group {}: {e}", sub.topic, sub.group))
}

/// Creates the subscription's group (a first pull) before messages are
/// published, as a subscriber that starts at the latest message must.
pub async fn subscribe(b: &Arc<dyn PubSubBackend>, sub: &Subscription) {
    let got = pull(b, sub, 10, Duration::from_millis(100)).await;
    assert!(
        got.is_empty(),
        "a new group on a new topic has nothing to deliver, got {} messages",
        got.len()
    );
}

/// Pulls until `n` deliveries arrived or `within` passed; returns them all.
pub async fn pull_n(
    b: &Arc<dyn PubSubBackend>,
    sub: &Subscription,
    n: usize,
    within: Duration,
) -> Vec<Delivery> {
    let end = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < end {
        let wait = end
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(500));
        got.extend(pull(b, sub, n - got.len(), wait).await);
    }
    got
}

/// Everything delivered while pulling for `during`.
pub async fn pull_for(
    b: &Arc<dyn PubSubBackend>,
    sub: &Subscription,
    during: Duration,
) -> Vec<Delivery> {
    let end = Instant::now() + during;
    let mut got = Vec::new();
    while Instant::now() < end {
        let wait = end
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(300));
        got.extend(pull(b, sub, 100, wait).await);
    }
    got
}

/// Acknowledges `deliveries`; returns the backend's count.
pub async fn ack(b: &Arc<dyn PubSubBackend>, sub: &Subscription, deliveries: &[Delivery]) -> u32 {
    let ids: Vec<String> = deliveries.iter().map(|d| d.ack_id.clone()).collect();
    b.ack(&sub.topic, &sub.group, &ids)
        .await
        .unwrap_or_else(|e| panic!("ack on {}: {e}", sub.topic))
}

/// The payloads of `deliveries` as strings.
pub fn payloads(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect()
}

/// Runs the whole PubSub acceptance suite: one multi-thread tokio test per
/// case. `$factory` implements [`PubSubFactory`], `$options` is a
/// `serde_json::Value`; `mode` labels report lines (`"suite":"pubsub"`,
/// see [`super::CaseReport`]); attributes given first apply to every case.
/// The calling crate needs `tokio` with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! pubsub_acceptance_suite {
    ($(#[$attr:meta])* mode = $mode:literal, $factory:expr, $options:expr) => {
        $crate::pubsub_acceptance_suite!(@cases [$(#[$attr])*] $mode, $factory, $options;
            publish_then_pull,
            batch_publish_keeps_order,
            ack_stops_redelivery,
            unacked_is_redelivered_after_deadline,
            nack_redelivers_at_once,
            restarted_consumer_gets_unacked,
            foreign_ack_ids_refused,
            consumer_groups_share_and_fan_out,
            poison_message_dead_lettered,
            ordering_key_order,
            replay_from_earliest,
            durable
        );
    };
    ($(#[$attr:meta])* $factory:expr, $options:expr) => {
        $crate::pubsub_acceptance_suite!($(#[$attr])* mode = "embedded", $factory, $options);
    };
    (@cases $attrs:tt $mode:literal, $factory:expr, $options:expr; $($case:ident),* $(,)?) => {
        $(
            $crate::pubsub_acceptance_suite!(@case $attrs $mode, $factory, $options, $case);
        )*
    };
    (@case [$($attr:tt)*] $mode:literal, $factory:expr, $options:expr, $case:ident) => {
        $($attr)*
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let harness = $crate::acceptance::pubsub::PubSubHarness::new(
                ::std::sync::Arc::new($factory),
                $options,
            )
            .with_mode($mode);
            let report = $crate::acceptance::CaseReport::start(
                &harness,
                "pubsub",
                stringify!($case),
                $crate::acceptance::pubsub::case_capability(stringify!($case)),
            );
            $crate::acceptance::pubsub::$case(&harness).await;
            report.passed();
        }
    };
}
