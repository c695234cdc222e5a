//! The KeyValue service of a pattern: light checks (the proxy has already
//! applied the namespace's limits), then the backend.

use std::sync::Arc;

use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_server::KeyValueService;
use tonic::{Request, Response, Status};

use super::{DEFAULT_PAGE_BYTES, Host};
use crate::error::BackendError;
use crate::grpc::convert;
use crate::idempotency::IdempotencyKey;
use crate::keyvalue::{
    Cursor, KeyValueBackend, Mutation, PageRequest, Selection, request_fingerprint,
};

pub(super) struct HostKv(pub(super) Arc<Host>);

fn invalid(message: String) -> BackendError {
    BackendError::InvalidArgument(message)
}

fn put_items(field: &str, items: Vec<pb::PutItem>) -> Result<Vec<crate::PutItem>, BackendError> {
    if items.is_empty() {
        return Err(invalid(format!("{field} must hold at least one entry")));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| put_item(&format!("{field}[{i}]"), item))
        .collect()
}

fn put_item(field: &str, item: pb::PutItem) -> Result<crate::PutItem, BackendError> {
    if item.key.is_empty() {
        return Err(invalid(format!("{field}.key must not be empty")));
    }
    let ttl = convert::ttl(item.ttl).map_err(|e| invalid(format!("{field}.ttl {e}")))?;
    Ok(crate::PutItem {
        key: item.key,
        value: item.value,
        ttl,
        expected_version: item.expected_version,
    })
}

fn non_empty_id(field: &str, id: &str) -> Result<(), BackendError> {
    if id.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    Ok(())
}

fn page(budget: u32, token: &str, fingerprint: u64) -> Result<PageRequest, BackendError> {
    let budget_bytes = match budget {
        0 => DEFAULT_PAGE_BYTES,
        n => n as usize,
    };
    let cursor = if token.is_empty() {
        None
    } else {
        Some(Cursor::decode(token, fingerprint)?)
    };
    Ok(PageRequest {
        budget_bytes,
        cursor,
    })
}

fn token(token: String) -> Option<String> {
    (!token.is_empty()).then_some(token)
}

#[tonic::async_trait]
impl KeyValueService for HostKv {
    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let (backend, _guard) = self.0.enter_as::<dyn KeyValueBackend, _>(
            &request,
            &request.get_ref().namespace,
            crate::keyvalue::DAL,
        )?;
        let req = request.into_inner();
        self.0
            .run(async move {
                non_empty_id("id", &req.id)?;
                let items = put_items("items", req.items)?;
                let idempotency = token(req.idempotency_token)
                    .map(|t| IdempotencyKey::for_put(t, &req.id, &items));
                let out = backend.put(&req.id, items, idempotency).await?;
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
        let (backend, _guard) = self.0.enter_as::<dyn KeyValueBackend, _>(
            &request,
            &request.get_ref().namespace,
            crate::keyvalue::DAL,
        )?;
        let req = request.into_inner();
        self.0
            .run(async move {
                non_empty_id("id", &req.id)?;
                let selection = convert::selection(req.selection);
                let fingerprint = request_fingerprint(&req.namespace, "Get", &req.id, &selection);
                let page_request = page(req.page_size_bytes, &req.page_token, fingerprint)?;
                let page = backend.get(&req.id, &selection, page_request).await?;
                Ok(pb::GetResponse {
                    items: page.items.into_iter().map(convert::item).collect(),
                    next_page_token: page.next.map(|c| c.encode(fingerprint)).unwrap_or_default(),
                })
            })
            .await
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let (backend, _guard) = self.0.enter_as::<dyn KeyValueBackend, _>(
            &request,
            &request.get_ref().namespace,
            crate::keyvalue::DAL,
        )?;
        let req = request.into_inner();
        self.0
            .run(async move {
                non_empty_id("id", &req.id)?;
                let selection = convert::selection(req.selection);
                let deleted = backend.delete(&req.id, &selection).await?;
                Ok(pb::DeleteResponse { deleted })
            })
            .await
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let (backend, _guard) = self.0.enter_as::<dyn KeyValueBackend, _>(
            &request,
            &request.get_ref().namespace,
            crate::keyvalue::DAL,
        )?;
        let req = request.into_inner();
        self.0
            .run(async move {
                let fingerprint = request_fingerprint(&req.namespace, "Scan", "", &Selection::All);
                let page_request = page(req.page_size_bytes, &req.page_token, fingerprint)?;
                let page = backend.scan(page_request).await?;
                Ok(pb::ScanResponse {
                    records: convert::records(page.items),
                    next_page_token: page.next.map(|c| c.encode(fingerprint)).unwrap_or_default(),
                })
            })
            .await
    }

    async fn mutate(
        &self,
        request: Request<pb::MutateRequest>,
    ) -> Result<Response<pb::MutateResponse>, Status> {
        let (backend, _guard) = self.0.enter_as::<dyn KeyValueBackend, _>(
            &request,
            &request.get_ref().namespace,
            crate::keyvalue::DAL,
        )?;
        let req = request.into_inner();
        self.0
            .run(async move {
                if req.mutations.is_empty() {
                    return Err(invalid("mutations must hold at least one entry".into()));
                }
                let mut mutations = Vec::with_capacity(req.mutations.len());
                for (i, m) in req.mutations.into_iter().enumerate() {
                    let field = format!("mutations[{i}]");
                    non_empty_id(&format!("{field}.id"), &m.id)?;
                    mutations.push(match m.op {
                        Some(pb::mutation::Op::Put(item)) => Mutation::Put {
                            item: put_item(&format!("{field}.put"), item)?,
                            id: m.id,
                        },
                        Some(pb::mutation::Op::Delete(sel)) => Mutation::Delete {
                            id: m.id,
                            selection: convert::selection(Some(sel)),
                        },
                        None => {
                            return Err(invalid(format!(
                                "{field} has no operation; set either put or delete"
                            )));
                        }
                    });
                }
                let idempotency =
                    token(req.idempotency_token).map(|t| IdempotencyKey::for_mutate(t, &mutations));
                let out = backend.mutate(mutations, idempotency).await?;
                Ok(pb::MutateResponse {
                    results: out.outcomes.into_iter().map(convert::outcome).collect(),
                    replayed: out.replayed,
                })
            })
            .await
    }
}
