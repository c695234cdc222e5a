//! `prism.admin.v1.AdminService`: what the proxy serves, the state of
//! every namespace's backend and pattern process, and the audit tail.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prism_proto::admin::v1 as pb;
use prism_proto::admin::v1::admin_service_server::AdminService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, AuditRecord, TailFilter};
use crate::config::NamespaceConfig;
use crate::registry::{Namespace, Registry};

/// The admin gRPC service.
pub struct AdminApi {
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    /// With authentication, audit records are shown only for namespaces
    /// on which the caller holds `admin`.
    auth_enabled: bool,
}

impl AdminApi {
    pub fn new(registry: Arc<Registry>, audit: Arc<AuditLog>) -> Self {
        AdminApi {
            registry,
            audit,
            auth_enabled: false,
        }
    }

    /// Sets whether authentication is enabled on the listener.
    pub fn with_auth_enabled(mut self, enabled: bool) -> Self {
        self.auth_enabled = enabled;
        self
    }

    /// Whether `principal` may see audit records of `namespace`.
    fn may_audit(&self, principal: &crate::auth::Principal, namespace: &str) -> bool {
        !self.auth_enabled
            || self.registry.lookup(namespace).is_ok_and(|ns| {
                crate::policy::allows(
                    ns.config.policy.as_ref(),
                    true,
                    principal,
                    crate::policy::Permission::Admin,
                )
            })
    }
}

/// Recent records sent by `TailAudit` when the request sets no limit.
const DEFAULT_TAIL: u32 = 100;

fn to_pb(r: &AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        time: r.time.clone(),
        principal: r.principal.clone(),
        namespace: r.namespace.clone(),
        dal: r.dal.clone(),
        method: r.method.clone(),
        ids: r.ids.clone(),
        keys: r.keys.clone(),
        selection: r.selection.clone().unwrap_or_default(),
        truncated: r.truncated,
        pii_fields: r
            .pii_fields
            .iter()
            .map(|p| pb::PiiField {
                field: p.field.clone(),
                masked: p.masked,
            })
            .collect(),
        status: r.status.clone(),
        latency_us: r.latency_us,
        trace_id: r.trace_id.clone(),
        config_version: 0,
    }
}

type TailStream = Pin<Box<dyn Stream<Item = Result<pb::AuditRecord, Status>> + Send>>;

async fn namespace_status(ns: &Namespace) -> pb::NamespaceStatus {
    let health = tokio::time::timeout(Duration::from_secs(2), ns.backend.health()).await;
    let (healthy, health_detail) = match health {
        Ok(Ok(())) => (true, String::new()),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (false, "backend health check timed out after 2s".to_string()),
    };
    let pattern = ns.endpoint.as_ref().map(|endpoint| {
        let mut p = pb::PatternStatus {
            endpoint: endpoint.clone(),
            ..Default::default()
        };
        if let Some(process) = &ns.pattern {
            let s = process.status();
            p.state = s.state.name().to_string();
            p.restarts = s.restarts;
            p.pid = s.pid.unwrap_or(0);
            p.last_error = s.last_error.unwrap_or_default();
        }
        p
    });
    pb::NamespaceStatus {
        name: ns.config.name.clone(),
        dal: ns.config.dal.name().to_string(),
        backend_kind: ns.backend.kind().to_string(),
        mode: ns.config.backend.mode.name().to_string(),
        capabilities: ns
            .capabilities
            .names()
            .into_iter()
            .map(String::from)
            .collect(),
        healthy,
        health_detail,
        pattern,
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_namespaces(
        &self,
        _request: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        Err(Status::unimplemented(
            "ListNamespaces is not implemented yet",
        ))
    }

    async fn get_namespace(
        &self,
        _request: Request<pb::GetNamespaceRequest>,
    ) -> Result<Response<pb::NamespaceInfo>, Status> {
        Err(Status::unimplemented("GetNamespace is not implemented yet"))
    }

    async fn apply_namespace(
        &self,
        _request: Request<pb::ApplyNamespaceRequest>,
    ) -> Result<Response<pb::ApplyNamespaceResponse>, Status> {
        Err(Status::unimplemented(
            "ApplyNamespace is not implemented yet",
        ))
    }

    async fn delete_namespace(
        &self,
        _request: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<Response<pb::DeleteNamespaceResponse>, Status> {
        Err(Status::unimplemented(
            "DeleteNamespace is not implemented yet",
        ))
    }

    async fn reload(
        &self,
        _request: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        Err(Status::unimplemented("Reload is not implemented yet"))
    }

    type TailAuditStream = TailStream;

    async fn tail_audit(
        &self,
        request: Request<pb::TailAuditRequest>,
    ) -> Result<Response<Self::TailAuditStream>, Status> {
        let principal = request
            .extensions()
            .get::<crate::auth::Principal>()
            .cloned()
            .unwrap_or_else(crate::auth::Principal::anonymous);
        let req = request.into_inner();
        if !req.namespace.is_empty() && !self.may_audit(&principal, &req.namespace) {
            return Err(Status::permission_denied(format!(
                "principal '{}' lacks the 'admin' permission on namespace '{}', which \
                 reading its audit records needs; an operator can grant it in policy.admin \
                 of the namespace's configuration",
                principal.subject, req.namespace
            )));
        }
        let filter = TailFilter {
            namespace: req.namespace,
            principal: req.principal,
            status: req.status,
        };
        if !filter.status.is_empty() && !crate::audit::is_code_name(&filter.status) {
            return Err(Status::invalid_argument(format!(
                "status '{}' is not a gRPC status name; use e.g. OK, NOT_FOUND, \
                 INVALID_ARGUMENT, UNAVAILABLE",
                filter.status
            )));
        }
        let limit = req.limit.unwrap_or(DEFAULT_TAIL) as usize;
        let (recent, follower) = self.audit.tail().snapshot(&filter, limit);
        // Only namespaces the caller administers (with authentication).
        let visible: std::collections::HashSet<String> = self
            .registry
            .list()
            .iter()
            .map(|ns| ns.config.name.clone())
            .filter(|name| self.may_audit(&principal, name))
            .collect();
        let everything = !self.auth_enabled;
        let shown =
            move |r: &crate::audit::AuditRecord| everything || visible.contains(&r.namespace);
        let recent: Vec<_> = recent.into_iter().filter(|r| shown(r)).collect();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let follow = req.follow;
        tokio::spawn(async move {
            for record in recent {
                if tx.send(Ok(to_pb(&record))).await.is_err() {
                    return;
                }
            }
            let (true, Some(mut follower)) = (follow, follower) else {
                return;
            };
            loop {
                let next = tokio::select! {
                    next = follower.recv() => next,
                    () = tx.closed() => return,
                };
                match next {
                    Ok(record) if filter.matches(&record) && shown(&record) => {
                        if tx.send(Ok(to_pb(&record))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "audit tail follower fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let mut namespaces = Vec::new();
        for ns in self.registry.list() {
            namespaces.push(namespace_status(&ns).await);
        }
        Ok(Response::new(pb::GetStatusResponse { namespaces }))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let principal = request
            .extensions()
            .get::<crate::auth::Principal>()
            .cloned()
            .ok_or_else(|| Status::internal("no principal on the request: auth layer missing"))?;
        Ok(Response::new(pb::WhoAmIResponse {
            subject: principal.subject,
            groups: principal.groups,
            scopes: principal.scopes,
            method: principal.method.name().to_string(),
            expires_at_unix_secs: principal
                .expires_at
                .and_then(|e| i64::try_from(e).ok())
                .unwrap_or(0),
        }))
    }

    async fn explain_namespace(
        &self,
        request: Request<pb::ExplainNamespaceRequest>,
    ) -> Result<Response<pb::ExplainNamespaceResponse>, Status> {
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "name is empty; give the namespace to explain",
            ));
        }
        let ns = self.registry.lookup(&name)?;
        Ok(Response::new(explain(&ns.config)))
    }
}

/// The explanation of one namespace's backend.
pub fn explain(config: &NamespaceConfig) -> pb::ExplainNamespaceResponse {
    let backend = &config.backend;
    let options = match &backend.options {
        serde_json::Value::Object(map) => {
            map.iter().map(|(k, v)| (k.clone(), redact(k, v))).collect()
        }
        _ => Default::default(),
    };
    let mut out = pb::ExplainNamespaceResponse {
        name: config.name.clone(),
        backend_kind: backend.kind.clone(),
        mode: backend.mode.name().to_string(),
        options,
        explicit: config.selection.is_none(),
        source: config.source.clone(),
        ..Default::default()
    };
    match &config.selection {
        Some(selection) => {
            out.needs = selection
                .needs
                .iter()
                .map(|n| pb::NeedValue {
                    name: n.need.field().to_string(),
                    value: n.need.value(),
                    defaulted: n.defaulted,
                })
                .collect();
            out.reasons = selection.reasons.clone();
            out.rejected = selection
                .rejected
                .iter()
                .map(|r| pb::RejectedBackend {
                    kind: r.kind.to_string(),
                    reasons: r.reasons.clone(),
                })
                .collect();
        }
        None => {
            out.reasons = vec![format!(
                "the backend is configured explicitly in {} (`backend.kind: {}`, mode {}); \
                 no selection was made",
                config.source,
                backend.kind,
                backend.mode.name()
            )];
        }
    }
    out
}

/// An option value for display: strings as written, others as JSON; a
/// password in a URL, and the value of a key naming a secret, as `***`.
fn redact(key: &str, value: &serde_json::Value) -> String {
    let key = key.to_ascii_lowercase();
    if ["password", "secret", "token"]
        .iter()
        .any(|s| key.contains(s))
    {
        return "***".to_string();
    }
    match value {
        serde_json::Value::String(s) => redact_url(s),
        other => other.to_string(),
    }
}

/// `scheme://user:password@host/...` with the password replaced by `***`;
/// anything else unchanged.
fn redact_url(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_string();
    };
    let rest = &text[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return text.to_string();
    };
    let Some(colon) = authority[..at].find(':') else {
        return text.to_string();
    };
    format!(
        "{}{}***{}",
        &text[..start],
        &authority[..=colon],
        &text[start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db:5432/prism?sslmode=disable"),
            "postgres://app:***@db:5432/prism?sslmode=disable"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(redact_url("no url here"), "no url here");
        assert_eq!(
            redact_url("http://host/path@with:colon"),
            "http://host/path@with:colon"
        );
        assert_eq!(redact("password", &"x".into()), "***");
        assert_eq!(redact("pool_size", &8.into()), "8");
    }

    #[test]
    fn an_explicit_backend_says_so_and_names_the_file() {
        let ns = NamespaceConfig::parse(
            "ns/orders.yaml",
            "name: orders\ndal: keyvalue\nbackend:\n  kind: postgres\n  options:\n    url: postgres://app:pw@db/prism\n",
        )
        .unwrap();
        let out = explain(&ns);
        assert!(out.explicit);
        assert_eq!(out.backend_kind, "postgres");
        assert_eq!(out.options["url"], "postgres://app:***@db/prism");
        assert!(
            out.reasons[0].contains("explicitly in ns/orders.yaml"),
            "{:?}",
            out.reasons
        );
        assert!(out.needs.is_empty() && out.rejected.is_empty());
    }
}
