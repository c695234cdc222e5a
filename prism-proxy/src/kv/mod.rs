//! `prism.keyvalue.v1.KeyValueService`: validates each request against its
//! namespace, routes it to the namespace's backend, and maps the result.
//! Metrics, logging and the audit record wrap every RPC in one place
//! ([`KvService::observe`]).

mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use pattern_core::grpc::convert;
use pattern_core::paging::request_fingerprint;
use pattern_core::{Capability, Cursor, IdempotencyKey, Mutation, PageRequest, Selection};
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_server::KeyValueService;
use tonic::{Request, Response, Status};

use crate::audit::{self, AuditLog, AuditedResponse, PiiField, PiiSlot};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::metrics;
use crate::policy::{self, Permission};
use crate::registry::{Namespace, Registry};
use crate::schema::Schema;
use validate::Check;

/// The KeyValue gRPC service.
#[derive(Clone)]
pub struct KvService {
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    /// Whether callers are authenticated; decides what a namespace without
    /// a policy allows (see [`crate::policy`]).
    auth_enabled: bool,
}

impl KvService {
    pub fn new(registry: Arc<Registry>, audit: Arc<AuditLog>) -> Self {
        KvService {
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

    fn namespace(&self, name: &str) -> Result<Arc<Namespace>, ProxyError> {
        validate::namespace_name(name)?;
        self.registry.lookup(name)
    }

    /// Looks the namespace up and checks that `principal` holds
    /// `permission` on it.
    fn authorized(
        &self,
        name: &str,
        principal: &Principal,
        permission: Permission,
    ) -> Result<Arc<Namespace>, ProxyError> {
        let ns = self.namespace(name)?;
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
    fn reveal(&self, ns: &Namespace, principal: &Principal) -> Reveal {
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
fn caller<T>(request: &Request<T>) -> Principal {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::anonymous)
}

/// Applies PII masking to the values of one response.
struct Reveal {
    schema: Option<Arc<Schema>>,
    clear: bool,
    /// PII fields masked in this response, for the audit record.
    masked_fields: Vec<String>,
    /// Whether any value was returned.
    returned: bool,
}

impl Reveal {
    fn value(&mut self, value: &mut Vec<u8>) {
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

    fn items(&mut self, items: &mut [pb::Item]) {
        for item in items {
            self.value(&mut item.value);
            self.returned |= !item.value.is_empty();
        }
    }

    /// Tells the audit record which PII fields the caller received and
    /// whether masked: the masked ones, or (in clear) every PII field the
    /// schema declares, once any value was returned.
    fn report(self, slot: &PiiSlot) {
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

impl KvService {
    /// Runs one RPC body, recording its outcome and latency per namespace,
    /// method and status, and writing the call's audit record (waiting
    /// for it under the namespace's `block` policy; if the record cannot
    /// be written the call fails with UNAVAILABLE).
    async fn observe<T: AuditedResponse>(
        &self,
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
                DAL,
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

/// The DAL in audit records.
const DAL: &str = "keyvalue";

fn decode_token(token: &str, fingerprint: u64) -> Result<Option<Cursor>, ProxyError> {
    if token.is_empty() {
        return Ok(None);
    }
    Ok(Some(Cursor::decode(token, fingerprint)?))
}

#[tonic::async_trait]
impl KeyValueService for KvService {
    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let principal = caller(&request);
        let call = self.audit.call("Put", &request);
        let req = request.into_inner();
        self.observe(call, async move {
            let ns = self.authorized(&req.namespace, &principal, Permission::Write)?;
            let check = Check(&ns);
            check.id("id", &req.id)?;
            check.count("items", req.items.len())?;
            let items = req
                .items
                .into_iter()
                .enumerate()
                .map(|(i, item)| check.put_item(&format!("items[{i}]"), item))
                .collect::<Result<Vec<_>, _>>()?;
            let idempotency = check
                .token(req.idempotency_token)?
                .map(|t| IdempotencyKey::for_put(t, &req.id, &items));
            let out = ns.backend.put(&req.id, items, idempotency).await?;
            Ok(pb::PutResponse {
                versions: out.versions(),
                replayed: out.replayed,
            })
        })
        .await
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let principal = caller(&request);
        let call = self.audit.call("Get", &request);
        let pii = call.pii.clone();
        let req = request.into_inner();
        self.observe(call, async move {
            let ns = self.authorized(&req.namespace, &principal, Permission::Read)?;
            let check = Check(&ns);
            check.id("id", &req.id)?;
            let selection = convert::selection(req.selection);
            check.selection("selection", &selection)?;
            let budget_bytes = check.page_size(req.page_size_bytes)?;
            let fingerprint = request_fingerprint(&req.namespace, "Get", &req.id, &selection);
            let cursor = decode_token(&req.page_token, fingerprint)?;
            let page = ns
                .backend
                .get(
                    &req.id,
                    &selection,
                    PageRequest {
                        budget_bytes,
                        cursor,
                    },
                )
                .await?;
            let mut items: Vec<pb::Item> = page.items.into_iter().map(convert::item).collect();
            let mut reveal = self.reveal(&ns, &principal);
            reveal.items(&mut items);
            reveal.report(&pii);
            Ok(pb::GetResponse {
                items,
                next_page_token: page.next.map(|c| c.encode(fingerprint)).unwrap_or_default(),
            })
        })
        .await
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let principal = caller(&request);
        let call = self.audit.call("Delete", &request);
        let req = request.into_inner();
        self.observe(call, async move {
            let ns = self.authorized(&req.namespace, &principal, Permission::Write)?;
            let check = Check(&ns);
            check.id("id", &req.id)?;
            let selection = convert::selection(req.selection);
            check.selection("selection", &selection)?;
            let deleted = ns.backend.delete(&req.id, &selection).await?;
            Ok(pb::DeleteResponse { deleted })
        })
        .await
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let principal = caller(&request);
        let call = self.audit.call("Scan", &request);
        let pii = call.pii.clone();
        let req = request.into_inner();
        self.observe(call, async move {
            let ns = self.authorized(&req.namespace, &principal, Permission::Read)?;
            let check = Check(&ns);
            check.capability(Capability::Scan, "Scan")?;
            let budget_bytes = check.page_size(req.page_size_bytes)?;
            let fingerprint = request_fingerprint(&req.namespace, "Scan", "", &Selection::All);
            let cursor = decode_token(&req.page_token, fingerprint)?;
            let page = ns
                .backend
                .scan(PageRequest {
                    budget_bytes,
                    cursor,
                })
                .await?;
            let mut records = convert::records(page.items);
            let mut reveal = self.reveal(&ns, &principal);
            for record in &mut records {
                reveal.items(&mut record.items);
            }
            reveal.report(&pii);
            Ok(pb::ScanResponse {
                records,
                next_page_token: page.next.map(|c| c.encode(fingerprint)).unwrap_or_default(),
            })
        })
        .await
    }

    async fn mutate(
        &self,
        request: Request<pb::MutateRequest>,
    ) -> Result<Response<pb::MutateResponse>, Status> {
        let principal = caller(&request);
        let call = self.audit.call("Mutate", &request);
        let req = request.into_inner();
        self.observe(call, async move {
            let ns = self.authorized(&req.namespace, &principal, Permission::Write)?;
            let check = Check(&ns);
            check.capability(Capability::Transactions, "Mutate")?;
            check.count("mutations", req.mutations.len())?;
            let mut mutations = Vec::with_capacity(req.mutations.len());
            for (i, m) in req.mutations.into_iter().enumerate() {
                let field = format!("mutations[{i}]");
                check.id(&format!("{field}.id"), &m.id)?;
                mutations.push(match m.op {
                    Some(pb::mutation::Op::Put(item)) => Mutation::Put {
                        item: check.put_item(&format!("{field}.put"), item)?,
                        id: m.id,
                    },
                    Some(pb::mutation::Op::Delete(sel)) => {
                        let selection = convert::selection(Some(sel));
                        check.selection(&format!("{field}.delete"), &selection)?;
                        Mutation::Delete {
                            id: m.id,
                            selection,
                        }
                    }
                    None => {
                        return Err(ProxyError::invalid(format!(
                            "{field} has no operation; set either put or delete"
                        )));
                    }
                });
            }
            let idempotency = check
                .token(req.idempotency_token)?
                .map(|t| IdempotencyKey::for_mutate(t, &mutations));
            let out = ns.backend.mutate(mutations, idempotency).await?;
            Ok(pb::MutateResponse {
                results: out.outcomes.into_iter().map(convert::outcome).collect(),
                replayed: out.replayed,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests;
