//! The namespace registry: namespace name → configuration and open
//! backend. Lookups are lock-free (an atomically swapped map), so the
//! registry can be replaced while requests are in flight.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pattern_core::{Capabilities, Clock, KeyValueBackend, OpenContext};

use crate::config::{ConfigError, NamespaceConfig};
use crate::error::ProxyError;
use crate::resolver::Resolver;

/// A served namespace.
pub struct Namespace {
    pub config: NamespaceConfig,
    pub backend: Arc<dyn KeyValueBackend>,
    /// The backend's capabilities, read once when the namespace loaded.
    pub capabilities: Capabilities,
}

/// All served namespaces.
pub struct Registry {
    namespaces: ArcSwap<BTreeMap<String, Arc<Namespace>>>,
}

impl Registry {
    /// Opens the backend of every namespace. The first failure stops
    /// start-up with an error naming the namespace's file and the field.
    pub async fn open(
        configs: &[NamespaceConfig],
        resolver: &Resolver,
        data_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        resolver.check_all(configs)?;
        let mut map = BTreeMap::new();
        for config in configs {
            let ctx = OpenContext {
                namespace: config.name.clone(),
                data_dir: data_dir.to_path_buf(),
                clock: clock.clone(),
            };
            let backend = resolver
                .open_keyvalue(&config.backend.kind, ctx, config.backend.options.clone())
                .await
                .map_err(|e| ConfigError::new(&config.source, "backend", e))?;
            let capabilities = backend.capabilities();
            tracing::info!(
                namespace = %config.name,
                backend = backend.kind(),
                capabilities = ?capabilities.names(),
                "namespace loaded"
            );
            map.insert(
                config.name.clone(),
                Arc::new(Namespace {
                    config: config.clone(),
                    backend,
                    capabilities,
                }),
            );
        }
        Ok(Registry {
            namespaces: ArcSwap::from_pointee(map),
        })
    }

    /// The namespace called `name`, or NOT_FOUND listing the known ones.
    pub fn lookup(&self, name: &str) -> Result<Arc<Namespace>, ProxyError> {
        let map = self.namespaces.load();
        map.get(name)
            .cloned()
            .ok_or_else(|| ProxyError::NamespaceNotFound {
                name: name.to_string(),
                known: map.keys().cloned().collect(),
            })
    }

    /// Every namespace, by name.
    pub fn list(&self) -> Vec<Arc<Namespace>> {
        self.namespaces.load().values().cloned().collect()
    }

    /// Closes every backend; logs (never fails on) close errors.
    pub async fn close_all(&self) {
        for ns in self.list() {
            if let Err(e) = ns.backend.close().await {
                tracing::warn!(namespace = %ns.config.name, error = %e, "closing backend failed");
            } else {
                tracing::info!(namespace = %ns.config.name, "backend closed");
            }
        }
    }
}
