//! Deliberately broken backends, to prove the acceptance runner catches a
//! backend that claims more than it does.

use std::sync::Arc;

use async_trait::async_trait;

use crate::capabilities::{Capabilities, Capability};
use crate::error::BackendError;
use crate::idempotency::IdempotencyKey;
use crate::keyvalue::{
    Item, KeyValueBackend, KeyValueFactory, Mutation, Page, PageRequest, PutItem, ScanEntry,
    Selection, WriteOutcome,
};

/// Wraps a factory; its backends claim `ttl` but drop every TTL, so items
/// never expire. Its kind is `broken-ttl-claim`.
pub struct BrokenTtlClaim<F>(pub F);

#[async_trait]
impl<F: KeyValueFactory> crate::Factory for BrokenTtlClaim<F> {
    type Backend = dyn KeyValueBackend;

    fn kind(&self) -> &'static str {
        "broken-ttl-claim"
    }

    fn needs_profile(&self) -> crate::needs::NeedsProfile {
        crate::needs::NeedsProfile {
            kind: "broken-ttl-claim",
            ..self.0.needs_profile()
        }
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        self.0.check_options(options)
    }

    async fn open(&self, ctx: crate::OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        Ok(Arc::new(IgnoresTtl(self.0.open(ctx).await?)))
    }
}

struct IgnoresTtl(Arc<dyn KeyValueBackend>);

fn strip(items: Vec<PutItem>) -> Vec<PutItem> {
    items
        .into_iter()
        .map(|mut i| {
            i.ttl = None;
            i
        })
        .collect()
}

#[async_trait]
impl crate::Backend for IgnoresTtl {
    fn kind(&self) -> &'static str {
        "broken-ttl-claim"
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities().with(Capability::Ttl)
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.0.health().await
    }
}

#[async_trait]
impl KeyValueBackend for IgnoresTtl {
    async fn put(
        &self,
        id: &str,
        items: Vec<PutItem>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        self.0.put(id, strip(items), idempotency).await
    }

    async fn get(
        &self,
        id: &str,
        selection: &Selection,
        page: PageRequest,
    ) -> Result<Page<Item>, BackendError> {
        self.0.get(id, selection, page).await
    }

    async fn delete(&self, id: &str, selection: &Selection) -> Result<u64, BackendError> {
        self.0.delete(id, selection).await
    }

    async fn scan(&self, page: PageRequest) -> Result<Page<ScanEntry>, BackendError> {
        self.0.scan(page).await
    }

    async fn mutate(
        &self,
        mutations: Vec<Mutation>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        self.0.mutate(mutations, idempotency).await
    }
}
