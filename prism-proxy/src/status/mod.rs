//! `prism.admin.v1.AdminService`: what the proxy serves, the state of
//! every namespace's backend and pattern process, and the audit tail.

use std::pin::Pin;
use std::sync::Arc;

use pattern_core::quote;
use prism_proto::admin::v1 as pb;
use prism_proto::admin::v1::admin_service_server::AdminService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

mod describe;

pub use describe::explain;
use describe::{namespace_info, namespace_status};

use crate::audit::{AuditLog, AuditRecord, TailFilter};
use crate::auth::Principal;
use crate::manage::{Authority, Manager};
use crate::registry::Registry;

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
            // NOT_FOUND lists the namespaces served.
            return self
                .registry
                .lookup(namespace)
                .map(|_| ())
                .map_err(Into::into);
        }
        Err(Status::permission_denied(format!(
            "principal {} lacks the 'admin' permission on namespace {} (or it does \
             not exist); an operator grants it in the namespace's policy.admin or in auth.admins \
             of prism.yaml",
            quote(&principal.subject),
            quote(namespace)
        )))
    }

    fn require_global_admin(&self, principal: &Principal, what: &str) -> Result<(), Status> {
        if self.is_global_admin(principal) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "principal {} may not {what}: that needs auth.admins in prism.yaml (the \
             administrators of every namespace)",
            quote(&principal.subject)
        )))
    }

    /// How `principal`'s changes to `namespace` are checked: an operator's
    /// as they are, a namespace admin's against the settings only an
    /// operator may make (ADR-017).
    fn authority(&self, principal: &Principal) -> Authority {
        if self.is_global_admin(principal) {
            Authority::Operator
        } else {
            Authority::NamespaceAdmin
        }
    }

    /// PERMISSION_DENIED unless `principal` administers some namespace (or
    /// every one): checked before an applied YAML is even parsed.
    fn require_some_admin(&self, principal: &Principal) -> Result<(), Status> {
        if self.is_global_admin(principal)
            || self
                .registry
                .list()
                .iter()
                .any(|ns| self.may_admin(principal, &ns.config.name))
        {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "principal {} administers no namespace, and applying one needs the 'admin' \
             permission on it (policy.admin) or auth.admins in prism.yaml",
            quote(&principal.subject)
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
                    crate::permission::Permission::Admin,
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
        // Nothing of the text is parsed for a caller who may apply nothing.
        self.require_some_admin(&principal)?;
        let req = request.into_inner();
        if req.yaml.trim().is_empty() {
            return Err(Status::invalid_argument(
                "yaml is empty; send the namespace's YAML (as in a namespace file)",
            ));
        }
        crate::config::check_yaml_bounds(&req.yaml)
            .map_err(|e| Status::invalid_argument(format!("yaml: {e}")))?;
        if req.yaml.contains(":***@") {
            return Err(Status::invalid_argument(
                "the YAML holds a redacted password (`:***@` in a URL, as `namespace get` shows \
                 it); put the real password back, or move the URL into the backends: catalog \
                 of prism.yaml and state `needs:` instead",
            ));
        }
        // Off the threads that serve calls: parsing is bounded, not free.
        let yaml = req.yaml.clone();
        let name = tokio::task::spawn_blocking(move || crate::manage::name_of(&yaml))
            .await
            .map_err(|e| Status::internal(format!("reading the namespace name: {e}")))?;
        match name {
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
                self.authority(&principal),
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

    async fn get_migration(
        &self,
        request: Request<pb::GetMigrationRequest>,
    ) -> Result<Response<pb::MigrationStatus>, Status> {
        let principal = principal_of(&request);
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "name is empty; give the namespace whose migration to show",
            ));
        }
        self.require_admin(&principal, &name)?;
        let s = self.manager.migration_status(&name).await?;
        Ok(Response::new(migration_status(s)))
    }

    async fn migrate(
        &self,
        request: Request<pb::MigrateRequest>,
    ) -> Result<Response<pb::MigrateResponse>, Status> {
        use crate::manage::migrate::MigrateAction;
        let principal = principal_of(&request);
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(Status::invalid_argument(
                "name is empty; give the namespace to migrate",
            ));
        }
        let action = match req.action.as_str() {
            "start" if req.to.trim().is_empty() => {
                return Err(Status::invalid_argument(
                    "start needs `to`: the backend to migrate to, e.g. {kind: postgres, options: \
                     {url: ...}}",
                ));
            }
            "start" => MigrateAction::Start {
                to: req.to.clone(),
                read_sample: req.read_sample,
                backfill_rate: req.backfill_rate,
            },
            "advance" => MigrateAction::Advance,
            "rollback" => MigrateAction::Rollback,
            "abort" => MigrateAction::Abort,
            "finalize" => MigrateAction::Finalize,
            other => {
                return Err(Status::invalid_argument(format!(
                    "action {} is not a migration step; use start, advance, rollback, \
                     abort or finalize",
                    quote(other)
                )));
            }
        };
        self.require_admin(&principal, &req.name)?;
        let outcome = self
            .manager
            .migrate(
                &req.name,
                action,
                req.force,
                &principal.subject,
                self.authority(&principal),
            )
            .await?;
        Ok(Response::new(pb::MigrateResponse {
            name: req.name,
            version: outcome.apply.version,
            phase: outcome.phase,
            forced: outcome.forced,
            diff: outcome.apply.diff,
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
                "principal {} lacks the 'admin' permission on namespace {}, which \
                 reading its audit records needs; an operator can grant it in policy.admin \
                 of the namespace's configuration",
                quote(&principal.subject),
                quote(&req.namespace)
            )));
        }
        let filter = TailFilter {
            namespace: req.namespace,
            principal: req.principal,
            status: req.status,
        };
        if !filter.status.is_empty() && !crate::audit::is_code_name(&filter.status) {
            return Err(Status::invalid_argument(format!(
                "status {} is not a gRPC status name; use e.g. OK, NOT_FOUND, \
                 INVALID_ARGUMENT, UNAVAILABLE",
                quote(&filter.status)
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

fn migration_status(s: crate::manage::migrate::MigrationStatus) -> pb::MigrationStatus {
    pb::MigrationStatus {
        namespace: s.namespace,
        version: s.version,
        phase: s.phase,
        source: s.source,
        target: s.target,
        read_sample: s.read_sample,
        backfill_rate: s.backfill_rate,
        shadow_writes: s.shadow_writes,
        shadow_failures: s.shadow_failures,
        repairs_queued: s.repairs_queued,
        repaired: s.repaired,
        reads_compared: s.reads_compared,
        mismatches: s.mismatches,
        mismatch_samples: s
            .mismatch_samples
            .into_iter()
            .map(|m| pb::MismatchSample {
                id: m.id,
                key: m.key,
                kind: m.kind.to_string(),
                at_ms: m.at_ms,
            })
            .collect(),
        backfill: s.backfill.map(|b| pb::BackfillProgress {
            items: b.items,
            bytes: b.bytes,
            total_items: b.total_items,
            items_per_second: b.items_per_second,
            eta_seconds: b.eta_seconds,
            finished: b.finished,
        }),
        backfill_error: s.backfill_error.unwrap_or_default(),
        blockers: s.blockers,
    }
}
