//! `prism.keyvalue.v1.KeyValueService`: its RPCs declared for the call
//! pipeline ([`crate::pipeline`]), and the operation of each: validate the
//! request against its namespace, route it to the namespace's backend, map
//! the result.

pub(crate) mod validate;

use std::sync::Arc;

use pattern_core::grpc::convert;
use pattern_core::keyvalue::request_fingerprint;
use pattern_core::{Capability, Cursor, IdempotencyKey, Mutation, PageRequest, Selection};
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_server::KeyValueService;
use tonic::{Request, Response, Status};

use crate::audit::AuditLog;
use crate::error::ProxyError;
use crate::permission::Permission;
use crate::pipeline::{Declared, Masked, Pipeline, Reveal, Rpc};
use crate::registry::{Namespace, Registry};
use validate::Check;

/// The KeyValue gRPC service.
#[derive(Clone)]
pub struct KvService {
    pipeline: Pipeline,
}

impl KvService {
    pub fn new(registry: Arc<Registry>, audit: Arc<AuditLog>) -> Self {
        KvService {
            pipeline: Pipeline::new(registry, audit),
        }
    }

    /// Sets whether authentication is enabled on the listener.
    pub fn with_auth_enabled(mut self, enabled: bool) -> Self {
        self.pipeline = self.pipeline.with_auth_enabled(enabled);
        self
    }
}

const SERVICE: &str = "prism.keyvalue.v1.KeyValueService";

pub const PUT: Rpc<pb::PutRequest, pb::PutResponse> = Rpc::unary(
    crate::dal::KEYVALUE,
    SERVICE,
    "Put",
    Permission::Write,
    &["id", "items[].key"],
    &[],
);
pub const GET: Rpc<pb::GetRequest, pb::GetResponse> = Rpc::unary(
    crate::dal::KEYVALUE,
    SERVICE,
    "Get",
    Permission::Read,
    &["id", "selection.keys.keys[]"],
    &["items[].key"],
);
pub const DELETE: Rpc<pb::DeleteRequest, pb::DeleteResponse> = Rpc::unary(
    crate::dal::KEYVALUE,
    SERVICE,
    "Delete",
    Permission::Write,
    &["id", "selection.keys.keys[]"],
    &[],
);
pub const SCAN: Rpc<pb::ScanRequest, pb::ScanResponse> = Rpc::unary(
    crate::dal::KEYVALUE,
    SERVICE,
    "Scan",
    Permission::Read,
    &[],
    &["records[].items[].key"],
);
pub const MUTATE: Rpc<pb::MutateRequest, pb::MutateResponse> = Rpc::unary(
    crate::dal::KEYVALUE,
    SERVICE,
    "Mutate",
    Permission::Write,
    &[
        "mutations[].id",
        "mutations[].put.key",
        "mutations[].delete.keys.keys[]",
    ],
    &[],
);

/// Every KeyValue RPC.
pub static RPCS: &[&dyn Declared] = &[&PUT, &GET, &DELETE, &SCAN, &MUTATE];

crate::no_values!(pb::PutResponse, pb::DeleteResponse, pb::MutateResponse);

impl Masked for pb::GetResponse {
    const VALUES: &'static [&'static str] = &["items[].value"];
    fn mask(&mut self, reveal: &mut Reveal) {
        reveal_items(reveal, &mut self.items);
    }
}

impl Masked for pb::ScanResponse {
    const VALUES: &'static [&'static str] = &["records[].items[].value"];
    fn mask(&mut self, reveal: &mut Reveal) {
        for record in &mut self.records {
            reveal_items(reveal, &mut record.items);
        }
    }
}

/// Masks the values of returned items.
fn reveal_items(reveal: &mut Reveal, items: &mut [pb::Item]) {
    for item in items {
        reveal.returned(&mut item.value);
    }
}

fn decode_token(token: &str, fingerprint: u64) -> Result<Option<Cursor>, ProxyError> {
    if token.is_empty() {
        return Ok(None);
    }
    Ok(Some(Cursor::decode(token, fingerprint)?))
}

#[tonic::async_trait]
impl KeyValueService for KvService {
    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        self.pipeline.unary(&PUT, r, put).await
    }

    async fn get(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.pipeline.unary(&GET, r, get).await
    }

    async fn delete(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.pipeline.unary(&DELETE, r, delete).await
    }

    async fn scan(
        &self,
        r: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        self.pipeline.unary(&SCAN, r, scan).await
    }

    async fn mutate(
        &self,
        r: Request<pb::MutateRequest>,
    ) -> Result<Response<pb::MutateResponse>, Status> {
        self.pipeline.unary(&MUTATE, r, mutate).await
    }
}

async fn put(ns: Arc<Namespace>, req: pb::PutRequest) -> Result<pb::PutResponse, ProxyError> {
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
}

async fn get(ns: Arc<Namespace>, req: pb::GetRequest) -> Result<pb::GetResponse, ProxyError> {
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
    Ok(pb::GetResponse {
        items: page.items.into_iter().map(convert::item).collect(),
        next_page_token: page.next.map(|c| c.encode(fingerprint)).unwrap_or_default(),
    })
}

async fn delete(
    ns: Arc<Namespace>,
    req: pb::DeleteRequest,
) -> Result<pb::DeleteResponse, ProxyError> {
    let check = Check(&ns);
    check.id("id", &req.id)?;
    let selection = convert::selection(req.selection);
    check.selection("selection", &selection)?;
    let deleted = ns.kv()?.delete(&req.id, &selection).await?;
    Ok(pb::DeleteResponse { deleted })
}

async fn scan(ns: Arc<Namespace>, req: pb::ScanRequest) -> Result<pb::ScanResponse, ProxyError> {
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
    Ok(pb::ScanResponse {
        records: convert::records(page.items),
        next_page_token: page.next.map(|c| c.encode(fingerprint)).unwrap_or_default(),
    })
}

async fn mutate(
    ns: Arc<Namespace>,
    req: pb::MutateRequest,
) -> Result<pb::MutateResponse, ProxyError> {
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
