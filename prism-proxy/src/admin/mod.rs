//! The admin HTTP listener: the admin UI at `/` (see [`ui`]), the admin API
//! as JSON under `/api/v1` (see [`api`]), and, public even with
//! authentication on, `/healthz` (the process is alive), `/readyz` (it can
//! serve: not draining, every backend healthy) and `/metrics` (Prometheus
//! text format). `/about` lists the routes in plain text. The UI and the
//! API refuse what a browser sends on behalf of another site, and, with
//! authentication off, requests not addressed to a loopback host (see
//! [`cross_site`]).

pub mod api;
pub mod cross_site;
pub mod json;
pub mod ui;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use pattern_core::grpc::process::PatternState;

use crate::auth::Authenticator;
use crate::registry::Registry;
use crate::status::AdminApi;

/// What the admin endpoints read.
pub struct AdminState {
    pub registry: Arc<Registry>,
    pub metrics: PrometheusHandle,
    /// False before start-up completes and once draining begins.
    pub ready: AtomicBool,
    /// The admin service the gRPC listener also serves; `/api/v1` calls it.
    pub api: Arc<AdminApi>,
    /// Authenticates `/api/v1` callers, as the gRPC listener does.
    pub auth: Arc<Authenticator>,
}

/// The admin routes.
pub fn router(state: Arc<AdminState>) -> Router {
    let rules = cross_site::Rules {
        auth_enabled: state.auth.enabled(),
    };
    Router::new()
        .merge(ui::routes().layer(from_fn_with_state(rules, cross_site::ui_guard)))
        .route("/about", get(about))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest(
            "/api/v1",
            api::routes().layer(from_fn_with_state(rules, cross_site::api_guard)),
        )
        .with_state(state)
}

async fn about() -> impl IntoResponse {
    "Prism admin listener\n\n\
     /          the admin UI (sign in with a bearer token when authentication is on)\n\
     /api/v1    the admin API as JSON (whoami, status, namespaces, reload, audit); send\n\
     \x20          `Authorization: Bearer <token>` when authentication is on; requests other\n\
     \x20          than GET and HEAD need `Content-Type: application/json`; an `Origin` header\n\
     \x20          must be this listener; with authentication off, only a loopback Host\n\
     \x20          (localhost, 127.0.0.1, [::1]) is served\n\
     /healthz   liveness: 200 while the process runs\n\
     /readyz    readiness: 200 when every namespace's backend is healthy, 503 while draining\n\
     /metrics   Prometheus metrics (prism_requests_total, prism_request_duration_seconds)\n"
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if !state.ready.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or draining\n".to_string(),
        );
    }
    let mut problems = Vec::new();
    for ns in state.registry.list() {
        let health = tokio::time::timeout(Duration::from_secs(2), ns.backend.health()).await;
        match health {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("namespace {}: {e}", ns.config.name)),
            Err(_) => problems.push(format!(
                "namespace {}: backend health check timed out after 2s",
                ns.config.name
            )),
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", problems.join("\n")),
        )
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    text.push_str(&pattern_metrics(&state.registry));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// `prism_pattern_state` (1 for each process-mode namespace's current
/// state, 0 for the others) and `prism_pattern_restarts_total`, read from
/// the supervisors at scrape time.
fn pattern_metrics(registry: &Registry) -> String {
    use std::fmt::Write;
    let patterns: Vec<_> = registry
        .list()
        .into_iter()
        .filter_map(|ns| {
            ns.pattern
                .clone()
                .map(|p| (ns.config.name.clone(), p.status()))
        })
        .collect();
    if patterns.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    out.push_str("# HELP prism_pattern_state Pattern process state per namespace (1 = current)\n");
    out.push_str("# TYPE prism_pattern_state gauge\n");
    for (ns, status) in &patterns {
        for state in PatternState::ALL {
            let v = u8::from(status.state == state);
            let _ = writeln!(
                out,
                "prism_pattern_state{{namespace=\"{ns}\",state=\"{}\"}} {v}",
                state.name()
            );
        }
    }
    out.push_str("# HELP prism_pattern_restarts_total Pattern process restarts after it died\n");
    out.push_str("# TYPE prism_pattern_restarts_total counter\n");
    for (ns, status) in &patterns {
        let _ = writeln!(
            out,
            "prism_pattern_restarts_total{{namespace=\"{ns}\"}} {}",
            status.restarts
        );
    }
    out
}
