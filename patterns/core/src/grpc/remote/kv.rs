//! KeyValue over a pattern: the public KeyValue API, unchanged (page
//! tokens are the proxy's own cursors, bound to the same fingerprints).

use async_trait::async_trait;
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use tonic::transport::Channel;

use super::{Link, PatternBackend};
use crate::error::BackendError;
use crate::grpc::{MAX_MESSAGE_BYTES, convert};
use crate::idempotency::IdempotencyKey;
use crate::keyvalue::{
    Cursor, Item, KeyValueBackend, Mutation, Page, PageRequest, PutItem, ScanEntry, Selection,
    WriteOutcome, request_fingerprint,
};

fn client(link: &Link) -> KeyValueServiceClient<Channel> {
    KeyValueServiceClient::new(link.channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn page_token(cursor: &Option<Cursor>, fingerprint: u64) -> String {
    cursor
        .as_ref()
        .map(|c| c.encode(fingerprint))
        .unwrap_or_default()
}

fn page_size(budget: usize) -> u32 {
    budget.clamp(1, u32::MAX as usize) as u32
}

fn next_cursor(link: &Link, token: &str, fingerprint: u64) -> Result<Option<Cursor>, BackendError> {
    if token.is_empty() {
        return Ok(None);
    }
    Cursor::decode(token, fingerprint).map(Some).map_err(|e| {
        link.broken(&format!(
            "returned a page token this proxy cannot read: {e}"
        ))
    })
}

fn write_outcome(
    link: &Link,
    results: Vec<pb::MutationResult>,
    replayed: bool,
) -> Result<WriteOutcome, BackendError> {
    let outcomes = results
        .into_iter()
        .map(convert::outcome_from_pb)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| link.broken("returned an empty mutation result"))?;
    Ok(WriteOutcome { outcomes, replayed })
}

#[async_trait]
impl KeyValueBackend for PatternBackend {
    async fn put(
        &self,
        id: &str,
        items: Vec<PutItem>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        let link = self.link()?;
        let request = pb::PutRequest {
            namespace: link.namespace.clone(),
            id: id.to_string(),
            items: items.iter().map(convert::put_item_to_pb).collect(),
            idempotency_token: idempotency.map(|k| k.token).unwrap_or_default(),
        };
        let reply = link
            .call(
                client(&link),
                request,
                |mut c, r| async move { c.put(r).await },
            )
            .await?;
        Ok(WriteOutcome {
            outcomes: reply
                .versions
                .into_iter()
                .map(crate::keyvalue::MutationOutcome::Version)
                .collect(),
            replayed: reply.replayed,
        })
    }

    async fn get(
        &self,
        id: &str,
        selection: &Selection,
        page: PageRequest,
    ) -> Result<Page<Item>, BackendError> {
        let link = self.link()?;
        let fingerprint = request_fingerprint(&link.namespace, "Get", id, selection);
        let request = pb::GetRequest {
            namespace: link.namespace.clone(),
            id: id.to_string(),
            selection: Some(convert::selection_to_pb(selection)),
            page_size_bytes: page_size(page.budget_bytes),
            page_token: page_token(&page.cursor, fingerprint),
        };
        let reply = link
            .call(
                client(&link),
                request,
                |mut c, r| async move { c.get(r).await },
            )
            .await?;
        Ok(Page {
            items: reply.items.into_iter().map(convert::item_from_pb).collect(),
            next: next_cursor(&link, &reply.next_page_token, fingerprint)?,
        })
    }

    async fn delete(&self, id: &str, selection: &Selection) -> Result<u64, BackendError> {
        let link = self.link()?;
        let request = pb::DeleteRequest {
            namespace: link.namespace.clone(),
            id: id.to_string(),
            selection: Some(convert::selection_to_pb(selection)),
        };
        let reply = link
            .call(client(&link), request, |mut c, r| async move {
                c.delete(r).await
            })
            .await?;
        Ok(reply.deleted)
    }

    async fn scan(&self, page: PageRequest) -> Result<Page<ScanEntry>, BackendError> {
        let link = self.link()?;
        let fingerprint = request_fingerprint(&link.namespace, "Scan", "", &Selection::All);
        let request = pb::ScanRequest {
            namespace: link.namespace.clone(),
            page_size_bytes: page_size(page.budget_bytes),
            page_token: page_token(&page.cursor, fingerprint),
        };
        let reply = link
            .call(
                client(&link),
                request,
                |mut c, r| async move { c.scan(r).await },
            )
            .await?;
        Ok(Page {
            items: convert::entries_from_records(reply.records),
            next: next_cursor(&link, &reply.next_page_token, fingerprint)?,
        })
    }

    async fn mutate(
        &self,
        mutations: Vec<Mutation>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        let link = self.link()?;
        let request = pb::MutateRequest {
            namespace: link.namespace.clone(),
            mutations: mutations.iter().map(convert::mutation_to_pb).collect(),
            idempotency_token: idempotency.map(|k| k.token).unwrap_or_default(),
        };
        let reply = link
            .call(client(&link), request, |mut c, r| async move {
                c.mutate(r).await
            })
            .await?;
        write_outcome(&link, reply.results, reply.replayed)
    }
}
