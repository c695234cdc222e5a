//! The admin API as JSON over HTTP, under `/api/v1`: a thin adapter that
//! authenticates the caller like the gRPC listener does, then calls the
//! same [`AdminService`] methods, so both behave identically.
//!
//! | method and path                          | AdminService call  |
//! |------------------------------------------|--------------------|
//! | `GET /api/v1/whoami`                     | WhoAmI             |
//! | `GET /api/v1/status`                     | GetStatus          |
//! | `GET /api/v1/namespaces`                 | ListNamespaces     |
//! | `POST /api/v1/namespaces[?dry_run=true]` | ApplyNamespace     |
//! | `GET /api/v1/namespaces/{name}`          | GetNamespace       |
//! | `DELETE /api/v1/namespaces/{name}[?expected_version=N]` | DeleteNamespace |
//! | `GET /api/v1/namespaces/{name}/explain`  | ExplainNamespace   |
//! | `POST /api/v1/reload`                    | Reload             |
//! | `GET /api/v1/namespaces/{name}/migration` | GetMigration      |
//! | `POST /api/v1/namespaces/{name}/migration` | Migrate (body: MigrateRequest without `name`) |
//! | `GET /api/v1/audit?namespace=&principal=&status=&limit=&follow=` | TailAudit |
//!
//! Bodies are the protobuf JSON mapping of the messages (see [`super::json`]);
//! every request other than GET and HEAD says `Content-Type:
//! application/json`, and cross-site requests are refused before they
//! reach a handler (see [`super::cross_site`]).
//! Errors are `{"code": "NOT_FOUND", "message": "..."}` with the HTTP
//! status of the gRPC code. The audit tail answers `{"records": [...]}`;
//! with `follow=true` it streams newline-delimited JSON, one record per
//! line, until the client disconnects (browsers read it with `fetch`, which
//! unlike `EventSource` can send the `Authorization` header).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prism_proto::admin::v1 as pb;
use prism_proto::admin::v1::admin_service_server::AdminService;
use serde::Deserialize;
use tokio_stream::StreamExt;
use tonic::Status;

use super::AdminState;
use super::json::{AdminMessage, ApiError, error_body, from_json, json_response, to_json};

/// The `/api/v1` routes.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/whoami", get(who_am_i))
        .route("/status", get(status))
        .route("/namespaces", get(list_namespaces).post(apply_namespace))
        .route(
            "/namespaces/{name}",
            get(get_namespace).delete(delete_namespace),
        )
        .route("/namespaces/{name}/explain", get(explain_namespace))
        .route(
            "/namespaces/{name}/migration",
            get(get_migration).post(migrate),
        )
        .route("/reload", post(reload))
        .route("/audit", get(tail_audit))
        .fallback(unknown_route)
}

type ApiResult = Result<Response, ApiError>;

/// Authenticates the caller from the `Authorization` header (as the gRPC
/// listener's `AuthLayer` does) and wraps `message` in a `tonic::Request`
/// carrying the principal.
async fn request<T>(
    state: &AdminState,
    headers: &HeaderMap,
    path: &str,
    message: T,
) -> Result<tonic::Request<T>, ApiError> {
    let principal = state.auth.authenticate(headers, None).await.map_err(|e| {
        tracing::info!(path, reason = %e, "admin api call refused: not authenticated");
        Status::from(e)
    })?;
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(principal);
    Ok(request)
}

/// The JSON answer of a unary call.
fn respond<M: AdminMessage>(result: Result<tonic::Response<M>, Status>) -> ApiResult {
    let message = result?.into_inner();
    Ok(json_response(StatusCode::OK, &to_json(&message)?))
}

/// A query string that does not parse is INVALID_ARGUMENT, in JSON.
fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| {
        ApiError(Status::invalid_argument(format!(
            "bad query string: {}",
            e.body_text()
        )))
    })
}

async fn who_am_i(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> ApiResult {
    let req = request(&state, &headers, "whoami", pb::WhoAmIRequest {}).await?;
    respond(state.api.who_am_i(req).await)
}

async fn status(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> ApiResult {
    let req = request(&state, &headers, "status", pb::GetStatusRequest {}).await?;
    respond(state.api.get_status(req).await)
}

async fn list_namespaces(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> ApiResult {
    let req = request(&state, &headers, "namespaces", pb::ListNamespacesRequest {}).await?;
    respond(state.api.list_namespaces(req).await)
}

async fn get_namespace(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let req = request(
        &state,
        &headers,
        "namespace",
        pb::GetNamespaceRequest { name },
    )
    .await?;
    respond(state.api.get_namespace(req).await)
}

async fn explain_namespace(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let message = pb::ExplainNamespaceRequest { name };
    let req = request(&state, &headers, "explain", message).await?;
    respond(state.api.explain_namespace(req).await)
}

async fn get_migration(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let message = pb::GetMigrationRequest { name };
    let req = request(&state, &headers, "migration", message).await?;
    respond(state.api.get_migration(req).await)
}

async fn migrate(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let mut message: pb::MigrateRequest = from_json(&body)?;
    if !message.name.is_empty() && message.name != name {
        return Err(ApiError(Status::invalid_argument(format!(
            "the body names namespace {} but the path {}; leave name out of the body",
            pattern_core::quote(&message.name),
            pattern_core::quote(&name)
        ))));
    }
    message.name = name;
    let req = request(&state, &headers, "migrate", message).await?;
    respond(state.api.migrate(req).await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyQuery {
    dry_run: Option<bool>,
}

async fn apply_namespace(
    State(state): State<Arc<AdminState>>,
    q: Result<Query<ApplyQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let q = query(q)?;
    let mut message: pb::ApplyNamespaceRequest = from_json(&body)?;
    if let Some(dry_run) = q.dry_run {
        message.dry_run = dry_run;
    }
    if message.yaml.trim().is_empty() {
        return Err(ApiError(Status::invalid_argument(
            "yaml is empty; send {\"yaml\": \"<the namespace YAML>\", \"dryRun\": false}",
        )));
    }
    let req = request(&state, &headers, "apply", message).await?;
    respond(state.api.apply_namespace(req).await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    expected_version: Option<u64>,
}

async fn delete_namespace(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let q = query(q)?;
    let message = pb::DeleteNamespaceRequest {
        name,
        expected_version: q.expected_version,
    };
    let req = request(&state, &headers, "delete", message).await?;
    respond(state.api.delete_namespace(req).await)
}

async fn reload(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> ApiResult {
    let req = request(&state, &headers, "reload", pb::ReloadRequest {}).await?;
    respond(state.api.reload(req).await)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AuditQuery {
    namespace: String,
    principal: String,
    status: String,
    limit: Option<u32>,
    follow: bool,
}

async fn tail_audit(
    State(state): State<Arc<AdminState>>,
    q: Result<Query<AuditQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let q = query(q)?;
    let follow = q.follow;
    let message = pb::TailAuditRequest {
        namespace: q.namespace,
        principal: q.principal,
        status: q.status,
        follow,
        limit: q.limit,
    };
    let req = request(&state, &headers, "audit", message).await?;
    let mut stream = state.api.tail_audit(req).await?.into_inner();
    if !follow {
        let mut records = Vec::new();
        while let Some(record) = stream.next().await {
            records.push(to_json(&record?)?);
        }
        return Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "records": records }),
        ));
    }
    // One JSON document per line; an error ends the stream with an
    // `{"error": {...}}` line.
    let lines = stream.map(|item| {
        let value = item
            .and_then(|record| to_json(&record))
            .unwrap_or_else(|status| serde_json::json!({ "error": error_body(&status) }));
        let mut line = value.to_string();
        line.push('\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    let mut response = Body::from_stream(lines).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn unknown_route() -> ApiError {
    ApiError(Status::not_found(
        "no such admin API route; see /about for the routes under /api/v1",
    ))
}
