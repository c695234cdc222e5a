//! What every DAL service does around a call, in one place: namespace
//! lookup and permission check, PII masking of returned values, and the
//! metrics, log line and audit record of the call ([`Gate::observe`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::audit::{self, AuditLog, AuditedResponse, PiiField, PiiSlot};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::metrics;
use crate::policy::{self, Permission};
use crate::registry::{Namespace, Registry};
use crate::schema::Schema;

/// What every DAL service does around a call: find the namespace, check
/// the caller's permission, mask PII on the way out, and record metrics and
/// the audit record.
#[derive(Clone)]
pub struct Gate {
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    /// Whether callers are authenticated; decides what a namespace without
    /// a policy allows (see [`crate::policy`]).
    auth_enabled: bool,
}

impl Gate {
    pub fn new(registry: Arc<Registry>, audit: Arc<AuditLog>) -> Self {
        Gate {
            registry,
            audit,
            auth_enabled: false,
        }
    }

    /// The namespaces served.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The audit log calls are recorded in.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Writes the closing audit record of a stream (Tail, Subscribe) that
    /// ended with `code`; under the namespace's `drop` or `block` policy
    /// alike it never fails the stream, which has already ended, but a
    /// record that cannot be written is logged.
    pub async fn record_stream_end(
        &self,
        dal: &'static str,
        call: audit::Call,
        ns: &Namespace,
        code: tonic::Code,
    ) {
        let method = call.method;
        if let Err(e) = self
            .audit
            .finish(call, dal, Some(&ns.config.audit), code, None)
            .await
        {
            tracing::warn!(namespace = %ns.config.name, method, error = %e, "no audit record for the end of a stream");
        }
    }

    /// Sets whether authentication is enabled on the listener.
    pub fn with_auth_enabled(mut self, enabled: bool) -> Self {
        self.auth_enabled = enabled;
        self
    }

    /// The namespace `name`; NOT_FOUND lists only the namespaces on which
    /// `principal` holds some permission.
    pub fn namespace(
        &self,
        name: &str,
        principal: &Principal,
    ) -> Result<Arc<Namespace>, ProxyError> {
        crate::kv::validate::namespace_name(name)?;
        self.registry.lookup_as(name, |ns| {
            Permission::ALL
                .into_iter()
                .any(|p| policy::allows(ns.config.policy.as_ref(), self.auth_enabled, principal, p))
        })
    }

    /// Looks the namespace up and checks that `principal` holds
    /// `permission` on it.
    pub fn authorized(
        &self,
        name: &str,
        principal: &Principal,
        permission: Permission,
    ) -> Result<Arc<Namespace>, ProxyError> {
        let ns = self.namespace(name, principal)?;
        let policy = ns.config.policy.as_ref();
        if !policy::allows(policy, self.auth_enabled, principal, permission) {
            return Err(ProxyError::PermissionDenied {
                namespace: ns.config.name.clone(),
                permission,
                subject: principal.subject.clone(),
                has_policy: policy.is_some(),
            });
        }
        Ok(ns)
    }

    /// How values leave this namespace for `principal`: in clear, or with
    /// PII masked.
    pub fn reveal(&self, ns: &Namespace, principal: &Principal) -> Reveal {
        let schema = ns.config.compiled_schema.clone().filter(|s| s.has_pii());
        let clear = schema.is_none()
            || policy::allows(
                ns.config.policy.as_ref(),
                self.auth_enabled,
                principal,
                Permission::PiiRead,
            );
        Reveal {
            schema,
            clear,
            masked_fields: Vec::new(),
            returned: false,
        }
    }
}

/// The caller, as the authentication layer recorded it.
pub fn caller<T>(request: &Request<T>) -> Principal {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::anonymous)
}

/// Applies PII masking to the values of one response.
pub struct Reveal {
    schema: Option<Arc<Schema>>,
    clear: bool,
    /// PII fields masked in this response, for the audit record.
    masked_fields: Vec<String>,
    /// Whether any value was returned.
    returned: bool,
}

impl Reveal {
    pub fn value(&mut self, value: &mut Vec<u8>) {
        let Some(schema) = self.schema.as_ref().filter(|_| !self.clear) else {
            return;
        };
        let out = schema.mask(value);
        if out.withheld {
            tracing::warn!(
                message_type = schema.message_name(),
                "a stored value no longer decodes as the namespace's schema; withheld from a \
                 caller without pii:read"
            );
        }
        if let Some(replacement) = out.replacement {
            *value = replacement;
        }
        for field in out.masked_fields {
            if !self.masked_fields.contains(&field) {
                self.masked_fields.push(field);
            }
        }
    }

    /// Masks one returned value and notes that a value was returned.
    pub fn returned(&mut self, value: &mut Vec<u8>) {
        self.value(value);
        self.returned |= !value.is_empty();
    }

    /// Tells the audit record which PII fields the caller received and
    /// whether masked: the masked ones, or (in clear) every PII field the
    /// schema declares, once any value was returned.
    pub fn report(self, slot: &PiiSlot) {
        let Some(schema) = &self.schema else {
            return;
        };
        let fields: Vec<PiiField> = if self.clear {
            if !self.returned {
                return;
            }
            schema
                .fields()
                .iter()
                .filter(|f| f.pii.is_some())
                .map(|f| PiiField {
                    field: f.path.clone(),
                    masked: false,
                })
                .collect()
        } else {
            self.masked_fields
                .into_iter()
                .map(|field| PiiField {
                    field,
                    masked: true,
                })
                .collect()
        };
        slot.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(fields);
    }
}

impl Gate {
    /// Runs one RPC body, recording its outcome and latency per namespace,
    /// method and status, and writing the call's audit record (waiting
    /// for it under the namespace's `block` policy; if the record cannot
    /// be written the call fails with UNAVAILABLE).
    pub async fn observe<T: AuditedResponse>(
        &self,
        dal: &'static str,
        call: audit::Call,
        body: impl Future<Output = Result<T, ProxyError>>,
    ) -> Result<Response<T>, Status> {
        let method = call.method;
        let start = Instant::now();
        let result = body.await;
        let mut code = result
            .as_ref()
            .map_or_else(ProxyError::code, |_| tonic::Code::Ok);
        // Unknown names are not used as labels: they would grow without bound.
        let ns = self.registry.lookup(call.namespace()).ok();
        let label = ns
            .as_ref()
            .map_or(metrics::UNKNOWN_NAMESPACE, |ns| ns.config.name.as_str());
        let audited = self
            .audit
            .finish(
                call,
                dal,
                ns.as_ref().map(|ns| &ns.config.audit),
                code,
                result.as_ref().ok().map(|r| r as &dyn AuditedResponse),
            )
            .await;
        if let Err(e) = audited {
            code = tonic::Code::Unavailable;
            metrics::record_request(label, method, code, start.elapsed());
            tracing::warn!(namespace = label, method, error = %e, "call refused: no audit record");
            return Err(e.into());
        }
        metrics::record_request(label, method, code, start.elapsed());
        if let Err(e) = &result
            && matches!(code, tonic::Code::Internal | tonic::Code::Unavailable)
        {
            tracing::warn!(namespace = label, method, code = ?code, error = %e, "request failed");
        }
        result.map(Response::new).map_err(Status::from)
    }
}
