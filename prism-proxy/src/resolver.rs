//! Maps a backend kind (`memstore`, `sqlite`, ...) to the factory that
//! opens it. Adding a backend is one `register` line in [`Resolver::builtin`].

use std::collections::BTreeMap;
use std::sync::Arc;

use pattern_core::{KeyValueBackend, KeyValueFactory, OpenContext};

use crate::config::{BackendMode, ConfigError, NamespaceConfig};

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
        r.register(pattern_postgres::PostgresFactory);
        r.register(pattern_redis::RedisFactory);
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

    /// Checks that a namespace's backend kind exists and its options are
    /// valid, without opening anything. The error names the namespace's
    /// file and the field.
    pub fn check(&self, ns: &NamespaceConfig) -> Result<(), ConfigError> {
        let known = self.keyvalue.get(ns.backend.kind.as_str());
        if known.is_none() && ns.backend.mode != BackendMode::Embedded {
            // A third-party pattern: its options are checked by the pattern
            // itself when the proxy initializes it.
            return Ok(());
        }
        let factory = known.ok_or_else(|| {
            ConfigError::new(
                &ns.source,
                "backend.kind",
                format!(
                    "unknown backend kind '{}'; known kinds: {}",
                    ns.backend.kind,
                    self.kinds().join(", ")
                ),
            )
        })?;
        factory.check_options(&ns.backend.options).map_err(|e| {
            match ns.selection.as_ref().and_then(|s| s.settings_from.as_ref()) {
                // Chosen from needs: the options came from `backends:`.
                Some(file) => ConfigError::new(
                    file,
                    &format!("backends.{}", ns.backend.kind),
                    format!(
                        "{e} (namespace '{}' was placed on {} by its needs)",
                        ns.name, ns.backend.kind
                    ),
                ),
                None => ConfigError::new(&ns.source, "backend.options", e.to_string()),
            }
        })
    }

    /// Checks every namespace with [`Resolver::check`].
    pub fn check_all(&self, namespaces: &[NamespaceConfig]) -> Result<(), ConfigError> {
        namespaces.iter().try_for_each(|ns| self.check(ns))
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
