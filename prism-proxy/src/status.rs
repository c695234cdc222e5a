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
use crate::auth::Principal;
use crate::config::NamespaceConfig;
use crate::manage::{ManageError, Manager};
use crate::registry::{Namespace, Registry};

/// The admin gRPC service.
pub struct AdminApi {
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    manager: Arc<Manager>,
    /// With authentication, every method but WhoAmI needs `admin` on the
    /// namespace concerned (or `auth.admins`).
    auth_enabled: bool,
    /// `auth.admins`: administrators of every namespace.
    admins: Vec<String>,
}

impl AdminApi {
    pub fn new(registry: Arc<Registry>, audit: Arc<AuditLog>, manager: Arc<Manager>) -> Self {
        AdminApi {
            registry,
            audit,
            manager,
            auth_enabled: false,
            admins: Vec::new(),
        }
    }

    /// Sets `auth.admins`.
    pub fn with_admins(mut self, admins: Vec<String>) -> Self {
        self.admins = admins;
        self
    }

    /// Whether `principal` administers every namespace.
    fn is_global_admin(&self, principal: &Principal) -> bool {
        !self.auth_enabled || crate::policy::matches_any(&self.admins, principal)
    }

    /// Whether `principal` administers `namespace` (which exists).
    fn may_admin(&self, principal: &Principal, namespace: &str) -> bool {
        self.is_global_admin(principal) || self.may_audit(principal, namespace)
    }

    /// PERMISSION_DENIED unless `principal` administers `namespace`; an
    /// unknown namespace is NOT_FOUND for global admins and
    /// PERMISSION_DENIED for others (who may not learn what exists).
    fn require_admin(&self, principal: &Principal, namespace: &str) -> Result<(), Status> {
        if self.may_admin(principal, namespace) {
            if self.registry.get(namespace).is_none() {
                return Err(ManageError::NotFound(namespace.to_string()).into());
            }
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "principal '{}' lacks the 'admin' permission on namespace '{namespace}' (or it does \
             not exist); an operator grants it in the namespace's policy.admin or in auth.admins \
             of prism.yaml",
            principal.subject
        )))
    }

    fn require_global_admin(&self, principal: &Principal, what: &str) -> Result<(), Status> {
        if self.is_global_admin(principal) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "principal '{}' may not {what}: that needs auth.admins in prism.yaml (the \
             administrators of every namespace)",
            principal.subject
        )))
    }

    /// Sets whether authentication is enabled on the listener.
    pub fn with_auth_enabled(mut self, enabled: bool) -> Self {
        self.auth_enabled = enabled;
        self
    }

    /// Whether `principal` may see audit records of `namespace`.
    fn may_audit(&self, principal: &Principal, namespace: &str) -> bool {
        !self.auth_enabled
            || crate::policy::matches_any(&self.admins, principal)
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
        config_version: r.config_version.unwrap_or(0),
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
        request: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        let principal = principal_of(&request);
        let visible: Vec<_> = self
            .registry
            .list()
            .into_iter()
            .filter(|ns| self.may_admin(&principal, &ns.config.name))
            .collect();
        let mut namespaces = Vec::with_capacity(visible.len());
        for ns in &visible {
            namespaces.push(namespace_info(ns).await);
        }
        Ok(Response::new(pb::ListNamespacesResponse {
            namespaces,
            store: self.manager.store().describe(),
        }))
    }

    async fn get_namespace(
        &self,
        request: Request<pb::GetNamespaceRequest>,
    ) -> Result<Response<pb::NamespaceInfo>, Status> {
        let principal = principal_of(&request);
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "name is empty; give the namespace to get",
            ));
        }
        self.require_admin(&principal, &name)?;
        let ns = self.registry.lookup(&name)?;
        Ok(Response::new(namespace_info(&ns).await))
    }

    async fn apply_namespace(
        &self,
        request: Request<pb::ApplyNamespaceRequest>,
    ) -> Result<Response<pb::ApplyNamespaceResponse>, Status> {
        let principal = principal_of(&request);
        let req = request.into_inner();
        if req.yaml.trim().is_empty() {
            return Err(Status::invalid_argument(
                "yaml is empty; send the namespace's YAML (as in a namespace file)",
            ));
        }
        if req.yaml.contains(":***@") {
            return Err(Status::invalid_argument(
                "the YAML holds a redacted password (`:***@` in a URL, as `namespace get` shows \
                 it); put the real password back, or move the URL into the backends: catalog \
                 of prism.yaml and state `needs:` instead",
            ));
        }
        match crate::manage::name_of(&req.yaml) {
            Some(name) if self.registry.get(&name).is_some() => {
                self.require_admin(&principal, &name)?;
            }
            _ => self.require_global_admin(&principal, "create namespaces")?,
        }
        let outcome = self
            .manager
            .apply(
                &req.yaml,
                req.dry_run,
                req.expected_version,
                &principal.subject,
            )
            .await?;
        Ok(Response::new(pb::ApplyNamespaceResponse {
            name: outcome.name,
            version: outcome.version,
            created: outcome.created,
            changed: outcome.changed,
            diff: outcome.diff,
            dry_run: outcome.dry_run,
            errors: outcome
                .errors
                .into_iter()
                .map(|e| pb::FieldError {
                    field: if e.field == "." {
                        String::new()
                    } else {
                        e.field
                    },
                    message: e.message,
                })
                .collect(),
        }))
    }

    async fn delete_namespace(
        &self,
        request: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<Response<pb::DeleteNamespaceResponse>, Status> {
        let principal = principal_of(&request);
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(Status::invalid_argument(
                "name is empty; give the namespace to delete",
            ));
        }
        self.require_admin(&principal, &req.name)?;
        let version = self
            .manager
            .delete(&req.name, req.expected_version, &principal.subject)
            .await?;
        Ok(Response::new(pb::DeleteNamespaceResponse {
            name: req.name,
            version,
        }))
    }

    async fn reload(
        &self,
        request: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        let principal = principal_of(&request);
        self.require_global_admin(&principal, "reload the namespaces")?;
        let report = self.manager.reload().await?;
        Ok(Response::new(pb::ReloadResponse {
            applied: report.applied,
            removed: report.removed,
            rejected: report
                .rejected
                .into_iter()
                .map(|(namespace, e)| pb::RejectedChange {
                    namespace,
                    source: e.file,
                    field: e.field,
                    message: e.message,
                })
                .collect(),
        }))
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
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let principal = principal_of(&request);
        let visible: Vec<_> = self
            .registry
            .list()
            .into_iter()
            .filter(|ns| self.may_admin(&principal, &ns.config.name))
            .collect();
        let mut namespaces = Vec::with_capacity(visible.len());
        for ns in &visible {
            namespaces.push(namespace_status(ns).await);
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
        let principal = principal_of(&request);
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "name is empty; give the namespace to explain",
            ));
        }
        self.require_admin(&principal, &name)?;
        let ns = self.registry.lookup(&name)?;
        Ok(Response::new(explain(&ns.config)))
    }
}

/// The caller, as the auth layer found it (anonymous without one).
fn principal_of<T>(request: &Request<T>) -> Principal {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::anonymous)
}

/// One namespace for ListNamespaces and GetNamespace.
async fn namespace_info(ns: &Namespace) -> pb::NamespaceInfo {
    let c = &ns.config;
    let l = &c.limits;
    let limits = [
        ("max_key_bytes", l.max_key_bytes),
        ("max_id_bytes", l.max_id_bytes),
        ("max_value_bytes", l.max_value_bytes),
        ("max_items_per_call", l.max_items_per_call),
        ("default_page_size_bytes", l.default_page_size_bytes),
        ("max_page_size_bytes", l.max_page_size_bytes),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v as u64))
    .collect();
    pb::NamespaceInfo {
        name: c.name.clone(),
        dal: c.dal.name().to_string(),
        description: c.description.clone(),
        version: ns.version,
        yaml: redact_urls_in(&c.yaml),
        source: c.source.clone(),
        applied_at: crate::audit::rfc3339_millis(ns.applied_at),
        status: Some(namespace_status(ns).await),
        explicit_backend: c.selection.is_none(),
        schema: c.compiled_schema.as_deref().map(schema_info),
        policy: Some(match &c.policy {
            Some(p) => pb::PolicyInfo {
                defined: true,
                read: p.read.clone(),
                write: p.write.clone(),
                admin: p.admin.clone(),
                pii_read: p.pii_read.clone(),
            },
            None => pb::PolicyInfo::default(),
        }),
        limits,
    }
}

/// Every field of the schema's message (nested messages flattened to
/// dotted paths, three levels deep), with its annotations.
fn schema_info(schema: &crate::schema::Schema) -> pb::SchemaInfo {
    use prost_reflect::Kind;
    fn walk(
        message: &prost_reflect::MessageDescriptor,
        prefix: &str,
        depth: usize,
        annotated: &std::collections::HashMap<&str, &crate::schema::FieldAnnotation>,
        out: &mut Vec<pb::SchemaField>,
    ) {
        for field in message.fields() {
            let path = if prefix.is_empty() {
                field.name().to_string()
            } else {
                format!("{prefix}.{}", field.name())
            };
            let kind = field.kind();
            let mut type_name = match &kind {
                Kind::Message(m) => m.full_name().to_string(),
                Kind::Enum(e) => e.full_name().to_string(),
                other => format!("{other:?}").to_lowercase(),
            };
            if field.is_list() {
                type_name = format!("repeated {type_name}");
            } else if field.is_map() {
                type_name = "map".to_string();
            }
            let a = annotated.get(path.as_str());
            out.push(pb::SchemaField {
                path: path.clone(),
                r#type: type_name,
                pii: a
                    .and_then(|a| a.pii)
                    .map(|k| format!("{k:?}").to_lowercase())
                    .unwrap_or_default(),
                index: a.and_then(|a| a.index.clone()).unwrap_or_default(),
                access_audit: a.is_some_and(|a| a.access_audit),
            });
            if let Kind::Message(m) = kind
                && depth < 3
                && !field.is_map()
            {
                walk(&m, &path, depth + 1, annotated, out);
            }
        }
    }
    let annotated = schema
        .fields()
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    let mut fields = Vec::new();
    walk(schema.descriptor(), "", 0, &annotated, &mut fields);
    pb::SchemaInfo {
        message: schema.message_name().to_string(),
        encoding: schema.encoding().name().to_string(),
        proto: schema.source().display().to_string(),
        fields,
    }
}

/// `text` with the password of every `scheme://user:password@` URL
/// replaced by `***`.
fn redact_urls_in(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|word| {
            let trimmed = word.trim_end();
            let quoted = trimmed.trim_matches(|c| c == '"' || c == '\'');
            if quoted.contains("://") {
                word.replacen(quoted, &redact_url(quoted), 1)
            } else {
                word.to_string()
            }
        })
        .collect()
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
