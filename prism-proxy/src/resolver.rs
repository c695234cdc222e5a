//! Maps a backend kind (`memstore`, `sqlite`, ...) to the factory that
//! opens it. Adding a backend is one `register` line in [`Resolver::builtin`].

use std::collections::BTreeMap;
use std::sync::Arc;

use pattern_core::{KeyValueBackend, KeyValueFactory, OpenContext};

/// The registered backend factories.
#[derive(Clone, Default)]
pub struct Resolver {
    keyvalue: BTreeMap<&'static str, Arc<dyn KeyValueFactory>>,
}

impl Resolver {
    /// Every backend built into this proxy.
    pub fn builtin() -> Self {
        let mut r = Resolver::default();
        r.register(pattern_memstore::MemstoreFactory);
        r.register(pattern_sqlite::SqliteFactory);
        r
    }

    /// Registers a KeyValue backend factory under its kind.
    pub fn register(&mut self, factory: impl KeyValueFactory) {
        self.keyvalue.insert(factory.kind(), Arc::new(factory));
    }

    /// The known kinds, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.keyvalue.keys().copied().collect()
    }

    /// Opens a KeyValue backend of `kind`. The error says which kinds exist
    /// or what is wrong with the options.
    pub async fn open_keyvalue(
        &self,
        kind: &str,
        ctx: OpenContext,
        options: serde_json::Value,
    ) -> Result<Arc<dyn KeyValueBackend>, String> {
        let factory = self.keyvalue.get(kind).ok_or_else(|| {
            format!(
                "unknown backend kind '{kind}'; known kinds: {}",
                self.kinds().join(", ")
            )
        })?;
        factory.open(ctx, options).await.map_err(|e| e.to_string())
    }
}
