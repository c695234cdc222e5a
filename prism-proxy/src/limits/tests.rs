//! [`NamespaceLimits`] as the pipeline uses it, on tokio's paused clock.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::time::{Instant, advance};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use super::*;
use crate::error::ProxyError;

fn namespace(limits: &str) -> NamespaceConfig {
    NamespaceConfig::parse(
        "ns/orders.yaml",
        &format!("name: orders\ndal: keyvalue\nbackend: {{kind: memstore}}\nlimits:\n{limits}"),
    )
    .unwrap()
}

fn limits(yaml: &str) -> NamespaceLimits {
    NamespaceLimits::new(&namespace(yaml))
}

fn timeout(value: &'static str) -> MetadataMap {
    let mut m = MetadataMap::new();
    m.insert(GRPC_TIMEOUT, AsciiMetadataValue::from_static(value));
    m
}

#[tokio::test(start_paused = true)]
async fn the_defaults_admit_with_a_thirty_second_deadline() {
    let l = limits("  max_key_bytes: 1024\n");
    let admission = l.admit("alice", &MetadataMap::new()).unwrap();
    assert_eq!(
        admission.deadline(),
        Some(Deadline {
            timeout: Duration::from_secs(30),
            source: DeadlineSource::NamespaceDefault
        })
    );
    assert_eq!(l.in_flight(), 1);
    assert_eq!(l.breaker_state(), Some(BreakerState::Closed));
    admission.finish(tonic::Code::Ok);
    assert_eq!(l.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn in_flight_calls_past_the_limit_are_refused_with_a_hint() {
    let l = limits("  max_in_flight: 2\n");
    let a = l.admit("alice", &MetadataMap::new()).unwrap();
    let _b = l.admit("bob", &MetadataMap::new()).unwrap();
    let refused = l.admit("carol", &MetadataMap::new()).unwrap_err();
    assert_eq!(refused.limit(), Some("in_flight"));
    let status = tonic::Status::from(ProxyError::from(refused));
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().starts_with(
            "namespace 'orders' has 2 calls in flight, its limit (limits.max_in_flight)"
        ),
        "{}",
        status.message()
    );
    assert_eq!(status.metadata().get(RETRY_AFTER_MS).unwrap(), "100");
    drop(a);
    l.admit("carol", &MetadataMap::new())
        .unwrap()
        .finish(tonic::Code::Ok);
}

#[tokio::test(start_paused = true)]
async fn a_rate_refusal_takes_no_slot_and_names_no_caller() {
    let l = limits("  rate: {per_principal: {calls_per_second: 1}}\n  max_in_flight: 1\n");
    drop(l.admit("alice@example.com", &MetadataMap::new()).unwrap());
    let refused = l
        .admit("alice@example.com", &MetadataMap::new())
        .unwrap_err();
    assert_eq!(refused.limit(), Some("rate"));
    let status = refused.to_status();
    assert!(!status.message().contains("alice"), "{}", status.message());
    assert_eq!(status.metadata().get(RETRY_AFTER_MS).unwrap(), "1000");
    assert_eq!(l.in_flight(), 0);
    // Another principal is not affected, and a second later alice is back.
    drop(l.admit("bob", &MetadataMap::new()).unwrap());
    advance(Duration::from_secs(1)).await;
    drop(l.admit("alice@example.com", &MetadataMap::new()).unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_malformed_grpc_timeout_is_invalid_argument_and_takes_nothing() {
    let l = limits("  rate: {calls_per_second: 1}\n");
    let refused = l.admit("alice", &timeout("1.5S")).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(refused.limit(), None);
    assert!(!refused.to_string().contains("1.5S"));
    l.admit("alice", &timeout("1500m"))
        .unwrap()
        .finish(tonic::Code::Ok);
}

#[tokio::test(start_paused = true)]
async fn run_bounds_the_call_by_the_clients_deadline_capped_by_the_maximum() {
    let l = limits("  deadline: {max_ms: 2000}\n");
    let mut admission = l.admit("alice", &timeout("1H")).unwrap();
    assert_eq!(
        admission.deadline().unwrap().source,
        DeadlineSource::NamespaceMax
    );
    advance(Duration::from_millis(500)).await;
    assert_eq!(admission.remaining(), Some(Duration::from_millis(1500)));
    assert_eq!(admission.grpc_timeout().unwrap(), "1500000u");
    let start = Instant::now();
    let out = admission.run(std::future::pending::<()>()).await;
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    let status = tonic::Status::from(out.unwrap_err());
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert!(
        status.message().starts_with(
            "deadline of 2000 ms exceeded on namespace 'orders' (set by the namespace's \
             maximum, limits.deadline.max_ms)"
        ),
        "{}",
        status.message()
    );
    assert_eq!(admission.remaining(), Some(Duration::ZERO));
    admission.finish(tonic::Code::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn an_expired_client_deadline_does_not_trip_the_breaker() {
    let l = limits("  breaker: {failures: 1}\n");
    let mut admission = l.admit("alice", &timeout("10m")).unwrap();
    admission
        .run(std::future::pending::<()>())
        .await
        .unwrap_err();
    admission.finish(tonic::Code::DeadlineExceeded);
    assert_eq!(l.breaker_state(), Some(BreakerState::Closed));
    // The namespace's own deadline expiring is the backend's failure.
    let mut admission = l.admit("alice", &MetadataMap::new()).unwrap();
    admission
        .run(std::future::pending::<()>())
        .await
        .unwrap_err();
    admission.finish(tonic::Code::DeadlineExceeded);
    assert!(matches!(l.breaker_state(), Some(BreakerState::Open { .. })));
}

#[tokio::test(start_paused = true)]
async fn finish_feeds_the_breaker_which_fails_fast_then_probes() {
    let l = limits("  breaker: {failures: 2, cool_down_ms: 3000}\n");
    for _ in 0..2 {
        l.admit("a", &MetadataMap::new())
            .unwrap()
            .finish(tonic::Code::Unavailable);
    }
    let refused = l.admit("a", &MetadataMap::new()).unwrap_err();
    assert_eq!(refused.limit(), Some("breaker"));
    let status = refused.to_status();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.metadata().get(RETRY_AFTER_MS).unwrap(), "3000");
    assert_eq!(l.in_flight(), 0, "a refused call gives its slot back");
    advance(Duration::from_secs(3)).await;
    let probe = l.admit("a", &MetadataMap::new()).unwrap();
    assert_eq!(l.breaker_state(), Some(BreakerState::HalfOpen));
    // A caller's error from the probe shows the backend answers.
    probe.finish(tonic::Code::NotFound);
    assert_eq!(l.breaker_state(), Some(BreakerState::Closed));
}

#[tokio::test(start_paused = true)]
async fn off_limits_admit_everything_without_a_deadline() {
    let l = limits(
        "  max_in_flight: 0\n  deadline: {default_ms: 0, max_ms: 0}\n  breaker: {failures: 0}\n",
    );
    let held: Vec<_> = (0..5000)
        .map(|_| l.admit("a", &MetadataMap::new()).unwrap())
        .collect();
    assert!(
        held.iter()
            .all(|a| a.deadline().is_none() && a.grpc_timeout().is_none())
    );
    assert_eq!(l.breaker_state(), None);
    for a in held {
        a.finish(tonic::Code::Unavailable);
    }
}

#[test]
fn same_config_compares_name_and_call_limits() {
    let l = NamespaceLimits::new(&namespace("  max_in_flight: 4\n"));
    assert!(l.same_config(&namespace("  max_in_flight: 4\n  max_value_bytes: 10\n")));
    assert!(!l.same_config(&namespace("  max_in_flight: 5\n")));
    let mut renamed = namespace("  max_in_flight: 4\n");
    renamed.name = "payments".into();
    assert!(!l.same_config(&renamed));
}

#[tokio::test(start_paused = true)]
async fn rejections_and_breaker_state_are_exported() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        let l = limits("  max_in_flight: 1\n  breaker: {failures: 1}\n");
        let held = l.admit("a", &MetadataMap::new()).unwrap();
        l.admit("a", &MetadataMap::new()).unwrap_err();
        held.finish(tonic::Code::Internal);
        l.admit("a", &MetadataMap::new()).unwrap_err();
        l.admit("a", &timeout("x")).unwrap_err();
    });
    let text = handle.render();
    for line in [
        r#"prism_limit_rejections_total{namespace="orders",limit="in_flight"} 1"#,
        r#"prism_limit_rejections_total{namespace="orders",limit="breaker"} 1"#,
        r#"prism_breaker_state{namespace="orders"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    // A malformed header is not a limit.
    assert_eq!(
        text.matches("prism_limit_rejections_total{").count(),
        2,
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_operation_sees_its_deadline_and_a_failure_past_it_is_a_deadline() {
    let l = limits("  deadline: {default_ms: 1000}\n");
    let mut admission = l.admit("alice", &MetadataMap::new()).unwrap();
    // Inside run, a forwarding backend reads the time left.
    let seen = admission
        .run(async {
            advance(Duration::from_millis(400)).await;
            pattern_core::deadline::remaining()
        })
        .await
        .unwrap();
    assert_eq!(seen, Some(Duration::from_millis(600)));
    assert!(
        admission.failed_past_deadline().is_none(),
        "a failure before the deadline is the backend's"
    );
    advance(Duration::from_millis(600)).await;
    let rejection = admission
        .failed_past_deadline()
        .expect("a failure at the deadline is the deadline's");
    assert_eq!(
        tonic::Status::from(rejection).code(),
        tonic::Code::DeadlineExceeded
    );
    admission.finish(tonic::Code::DeadlineExceeded);
    // Without a deadline, nothing is past it.
    let l = limits("  deadline: {default_ms: 0, max_ms: 0}\n");
    let mut admission = l.admit("alice", &MetadataMap::new()).unwrap();
    advance(Duration::from_secs(3600)).await;
    assert!(admission.failed_past_deadline().is_none());
    admission.finish(tonic::Code::Unavailable);
}
