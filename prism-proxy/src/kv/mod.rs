//! `prism.keyvalue.v1.KeyValueService`: validates each request against its
//! namespace, routes it to the namespace's backend, and maps the result.
//! Metrics, logging and the audit record wrap every RPC in one place
//! ([`KvService::observe`]).

pub(crate) mod validate;

use std::sync::Arc;

use pattern_core::grpc::convert;
use pattern_core::paging::request_fingerprint;
use pattern_core::{Capability, Cursor, IdempotencyKey, Mutation, PageRequest, Selection};
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_server::KeyValueService;
use tonic::{Request, Response, Status};

use crate::audit::{self, AuditLog, AuditedResponse};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::gate::{Gate, Reveal, caller};
use crate::policy::Permission;
use crate::registry::{Namespace, Registry};
use validate::Check;

/// The KeyValue gRPC service.
#[derive(Clone)]
pub struct KvService {
    gate: Gate,
}

impl KvService {
    pub fn new(registry: Arc<Registry>, audit: Arc<AuditLog>) -> Self {
        KvService {
            gate: Gate::new(registry, audit),
        }
    }

    /// Sets whether authentication is enabled on the listener.
    pub fn with_auth_enabled(mut self, enabled: bool) -> Self {
        self.gate = self.gate.with_auth_enabled(enabled);
        self
    }

    /// Looks the KeyValue namespace up and checks that `principal` holds
    /// `permission` on it.
    fn authorized(
        &self,
        name: &str,
        principal: &Principal,
        permission: Permission,
    ) -> Result<Arc<Namespace>, ProxyError> {
        let ns = self.gate.authorized(name, principal, permission)?;
        ns.kv()?;
        Ok(ns)
    }

    fn reveal(&self, ns: &Namespace, principal: &Principal) -> Reveal {
        self.gate.reveal(ns, principal)
    }

    async fn observe<T: AuditedResponse>(
        &self,
        call: audit::Call,
        body: impl std::future::Future<Output = Result<T, ProxyError>>,
    ) -> Result<Response<T>, Status> {
        self.gate.observe(DAL, call, body).await
    }
}

/// Masks the values of returned items.
fn reveal_items(reveal: &mut Reveal, items: &mut [pb::Item]) {
    for item in items {
        reveal.returned(&mut item.value);
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
        let call = self.gate.audit().call("Put", &request);
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
            validate::no_repeats(
                "key",
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (format!("items[{i}].key"), item.key.as_slice())),
            )?;
            let idempotency = check
                .token(req.idempotency_token)?
                .map(|t| IdempotencyKey::for_put(t, &req.id, &items));
            let out = ns.kv()?.put(&req.id, items, idempotency).await?;
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
        let call = self.gate.audit().call("Get", &request);
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
                .kv()?
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
            reveal_items(&mut reveal, &mut items);
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
        let call = self.gate.audit().call("Delete", &request);
        let req = request.into_inner();
        self.observe(call, async move {
            let ns = self.authorized(&req.namespace, &principal, Permission::Write)?;
            let check = Check(&ns);
            check.id("id", &req.id)?;
            let selection = convert::selection(req.selection);
            check.selection("selection", &selection)?;
            let deleted = ns.kv()?.delete(&req.id, &selection).await?;
            Ok(pb::DeleteResponse { deleted })
        })
        .await
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let principal = caller(&request);
        let call = self.gate.audit().call("Scan", &request);
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
                .kv()?
                .scan(PageRequest {
                    budget_bytes,
                    cursor,
                })
                .await?;
            let mut records = convert::records(page.items);
            let mut reveal = self.reveal(&ns, &principal);
            for record in &mut records {
                reveal_items(&mut reveal, &mut record.items);
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
        let call = self.gate.audit().call("Mutate", &request);
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
            validate::no_repeats("key of an id", mutated_keys(&mutations))?;
            let idempotency = check
                .token(req.idempotency_token)?
                .map(|t| IdempotencyKey::for_mutate(t, &mutations));
            let out = ns.kv()?.mutate(mutations, idempotency).await?;
            Ok(pb::MutateResponse {
                results: out.outcomes.into_iter().map(convert::outcome).collect(),
                replayed: out.replayed,
            })
        })
        .await
    }
}

/// Every (id, key) a Mutate names explicitly (put keys and listed delete
/// keys), with its field, for [`validate::no_repeats`].
fn mutated_keys(mutations: &[Mutation]) -> Vec<(String, (&str, &[u8]))> {
    let mut out = Vec::new();
    for (i, m) in mutations.iter().enumerate() {
        match m {
            Mutation::Put { id, item } => {
                out.push((
                    format!("mutations[{i}].put.key"),
                    (id.as_str(), item.key.as_slice()),
                ));
            }
            Mutation::Delete {
                id,
                selection: Selection::Keys(keys),
            } => {
                for (k, key) in keys.iter().enumerate() {
                    out.push((
                        format!("mutations[{i}].delete.keys[{k}]"),
                        (id.as_str(), key.as_slice()),
                    ));
                }
            }
            Mutation::Delete { .. } => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
