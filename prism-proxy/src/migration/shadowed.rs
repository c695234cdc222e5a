//! [`ShadowedKv`]: a KeyValue backend over a primary and a shadow. A write
//! runs whole in a task of its own, so a client that goes away mid-call
//! does not stop it between the primary and the shadow. Reads
//! are the primary's (a sample of Gets and Scan pages is compared with the
//! shadow from `shadow-read` on); every write runs on the primary and then, under the
//! id's lock, on the shadow. A shadow failure never fails the call: the id
//! is queued for repair (ADR-016).

use std::sync::Arc;

use async_trait::async_trait;
use pattern_core::{
    BackendError, Capabilities, Capability, IdempotencyKey, Item, KeyValueBackend, Mutation, Page,
    PageRequest, PutItem, ScanEntry, Selection, WriteOutcome,
};

use super::MigrationShared;

/// The most ids of one sampled Scan page compared with the shadow.
const SCAN_IDS_COMPARED: usize = 16;

/// One served version of a migrating namespace.
pub struct ShadowedKv {
    pub(super) primary: Arc<dyn KeyValueBackend>,
    pub(super) shadow: Arc<dyn KeyValueBackend>,
    pub(super) shared: Arc<MigrationShared>,
    /// The share of first-page reads compared with the shadow (0 before
    /// `shadow-read`).
    pub(super) read_sample: f64,
}

impl ShadowedKv {
    /// The version served with `roles`.
    pub fn new(roles: super::KvRoles, shared: Arc<MigrationShared>) -> Self {
        ShadowedKv {
            primary: roles.primary,
            shadow: roles.shadow,
            shared,
            read_sample: 0.0,
        }
    }

    /// Compares `share` of the reads (from `shadow-read` on).
    pub fn comparing(mut self, share: f64) -> Self {
        self.read_sample = share;
        self
    }
}

/// `items` as the shadow writes them: the primary checked the conditions.
fn unconditional(items: &[PutItem]) -> Vec<PutItem> {
    items
        .iter()
        .map(|i| PutItem {
            expected_version: None,
            ..i.clone()
        })
        .collect()
}

/// Runs `shadow_write`; on failure counts, logs and queues `ids`.
async fn mirror(
    shared: &MigrationShared,
    ids: Vec<String>,
    shadow_write: impl std::future::Future<Output = Result<(), BackendError>>,
) {
    match shadow_write.await {
        Ok(()) => shared.counters.shadow_writes.inc(),
        Err(e) => shared.shadow_failed(ids, &e).await,
    }
}

impl ShadowedKv {
    /// The two backends and the shared state, for a task of their own.
    fn sides(
        &self,
    ) -> (
        Arc<dyn KeyValueBackend>,
        Arc<dyn KeyValueBackend>,
        Arc<MigrationShared>,
    ) {
        (
            self.primary.clone(),
            self.shadow.clone(),
            self.shared.clone(),
        )
    }
}

#[async_trait]
impl pattern_core::Backend for ShadowedKv {
    fn kind(&self) -> &'static str {
        self.primary.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.primary.capabilities()
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.primary.health().await
    }

    /// The registry closes the two backends themselves.
    async fn close(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

#[async_trait]
impl KeyValueBackend for ShadowedKv {
    async fn put(
        &self,
        id: &str,
        items: Vec<PutItem>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        let (primary, shadow, shared) = self.sides();
        let id = id.to_string();
        super::whole(async move {
            let _lock = shared.locks.lock(&id).await;
            let shadow_items = unconditional(&items);
            let outcome = primary.put(&id, items, idempotency).await?;
            if !outcome.replayed {
                mirror(&shared, vec![id.clone()], async {
                    shadow.put(&id, shadow_items, None).await.map(|_| ())
                })
                .await;
            }
            Ok(outcome)
        })
        .await
    }

    async fn get(
        &self,
        id: &str,
        selection: &Selection,
        page: PageRequest,
    ) -> Result<Page<Item>, BackendError> {
        let first_page = page.cursor.is_none();
        let got = self.primary.get(id, selection, page).await?;
        if first_page && super::compare::sampled(self.read_sample) {
            tokio::spawn(super::compare::compare(
                self.shared.clone(),
                id.to_string(),
                selection.clone(),
            ));
        }
        Ok(got)
    }

    async fn delete(&self, id: &str, selection: &Selection) -> Result<u64, BackendError> {
        let (primary, shadow, shared) = self.sides();
        let (id, selection) = (id.to_string(), selection.clone());
        super::whole(async move {
            let _lock = shared.locks.lock(&id).await;
            let removed = primary.delete(&id, &selection).await?;
            mirror(&shared, vec![id.clone()], async {
                shadow.delete(&id, &selection).await.map(|_| ())
            })
            .await;
            Ok(removed)
        })
        .await
    }

    async fn scan(&self, page: PageRequest) -> Result<Page<ScanEntry>, BackendError> {
        let got = self.primary.scan(page).await?;
        if super::compare::sampled(self.read_sample) {
            let mut ids: Vec<&str> = got.items.iter().map(|e| e.id.as_str()).collect();
            ids.dedup();
            for id in ids.into_iter().take(SCAN_IDS_COMPARED) {
                tokio::spawn(super::compare::compare(
                    self.shared.clone(),
                    id.to_string(),
                    Selection::All,
                ));
            }
        }
        Ok(got)
    }

    async fn mutate(
        &self,
        mutations: Vec<Mutation>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        let (primary, shadow, shared) = self.sides();
        super::whole(async move {
            let mut ids: Vec<String> = mutations
                .iter()
                .map(|m| match m {
                    Mutation::Put { id, .. } | Mutation::Delete { id, .. } => id.clone(),
                })
                .collect();
            ids.sort();
            ids.dedup();
            let _locks = shared.locks.lock_all(ids.iter().map(String::as_str)).await;
            let shadow_mutations: Vec<Mutation> = mutations
                .iter()
                .map(|m| match m {
                    Mutation::Put { id, item } => Mutation::Put {
                        id: id.clone(),
                        item: unconditional(std::slice::from_ref(item)).remove(0),
                    },
                    other => other.clone(),
                })
                .collect();
            let outcome = primary.mutate(mutations, idempotency).await?;
            if !outcome.replayed {
                mirror(&shared, ids.clone(), async {
                    if shadow.capabilities().has(Capability::Transactions) {
                        return shadow.mutate(shadow_mutations, None).await.map(|_| ());
                    }
                    // One by one: the shadow is not read before promotion,
                    // and a repair mends a half-applied batch.
                    for m in shadow_mutations {
                        match m {
                            Mutation::Put { id, item } => {
                                shadow.put(&id, vec![item], None).await?;
                            }
                            Mutation::Delete { id, selection } => {
                                shadow.delete(&id, &selection).await?;
                            }
                        }
                    }
                    Ok(())
                })
                .await;
            }
            Ok(outcome)
        })
        .await
    }
}
