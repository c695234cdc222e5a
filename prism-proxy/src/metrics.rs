//! Prometheus metrics: request counts and latency histograms per
//! namespace, method and status, rendered at the admin listener's
//! `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::code_label;

/// The namespace label of requests naming no known namespace.
pub const UNKNOWN_NAMESPACE: &str = "_unknown";

const REQUESTS: &str = "prism_requests_total";
const DURATION: &str = "prism_request_duration_seconds";

/// Latency buckets, in seconds: 50 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns its handle.
/// Describes only the request metrics; the modules that own other
/// metrics describe them (`server::start` calls each), so this module
/// depends on none of them.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DURATION.to_string()), BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. in tests that
            // embed several proxies); requests are then recorded there.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::debug!("a metrics recorder was already installed");
            }
            metrics::describe_counter!(
                REQUESTS,
                "Data API requests by namespace, method and status"
            );
            metrics::describe_histogram!(
                DURATION,
                metrics::Unit::Seconds,
                "Data API request latency by namespace, method and status"
            );
            handle
        })
        .clone()
}

/// Records one finished request.
pub fn record_request(namespace: &str, method: &'static str, code: tonic::Code, took: Duration) {
    let labels = [
        ("namespace", namespace.to_string()),
        ("method", method.to_string()),
        ("status", code_label(code).to_string()),
    ];
    metrics::counter!(REQUESTS, &labels).increment(1);
    metrics::histogram!(DURATION, &labels).record(took.as_secs_f64());
}

/// Counts the events or messages one stream (Tail, Subscribe) sent.
pub fn record_stream_items(namespace: &str, dal: &'static str, method: &'static str, n: u64) {
    let labels = [
        ("namespace", namespace.to_string()),
        ("dal", dal.to_string()),
        ("method", method.to_string()),
    ];
    metrics::counter!(STREAM_ITEMS, &labels).increment(n);
}

/// Items (events, messages) sent on Tail and Subscribe streams.
pub const STREAM_ITEMS: &str = "prism_stream_items_total";
