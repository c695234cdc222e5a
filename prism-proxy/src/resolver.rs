//! Maps a backend kind (`memstore`, `sqlite`, ...) to the factory that
//! opens it. Adding a backend is one `register` line in [`Resolver::builtin`].

use std::collections::BTreeMap;
use std::sync::Arc;

use pattern_core::pubsub::{PubSubBackend, PubSubContext, PubSubFactory};
use pattern_core::timeseries::{TimeSeriesBackend, TimeSeriesContext, TimeSeriesFactory};
use pattern_core::{BackendError, KeyValueBackend, KeyValueFactory, OpenContext};

use crate::config::{BackendMode, ConfigError, Dal, NamespaceConfig};

/// The registered backend factories, per DAL.
#[derive(Clone, Default)]
pub struct Resolver {
    keyvalue: BTreeMap<&'static str, Arc<dyn KeyValueFactory>>,
    timeseries: BTreeMap<&'static str, Arc<dyn TimeSeriesFactory>>,
    pubsub: BTreeMap<&'static str, Arc<dyn PubSubFactory>>,
}

impl Resolver {
    /// Every backend built into this proxy.
    pub fn builtin() -> Self {
        let mut r = Resolver::default();
        r.register(pattern_memstore::MemstoreFactory);
        r.register(pattern_sqlite::SqliteFactory);
        r.register(pattern_postgres::PostgresFactory);
        r.register(pattern_redis::RedisFactory);
        r.register_timeseries(pattern_memstore::timeseries::MemTimeSeriesFactory);
        r.register_timeseries(pattern_sqlite::SqliteTimeSeriesFactory);
        r.register_timeseries(pattern_postgres::PostgresTimeSeriesFactory);
        r.register_pubsub(pattern_nats::NatsFactory);
        r.register_pubsub(pattern_redis::RedisPubSubFactory);
        r.register_pubsub(pattern_kafka::KafkaFactory);
        r
    }

    /// Registers a KeyValue backend factory under its kind.
    pub fn register(&mut self, factory: impl KeyValueFactory) {
        self.keyvalue.insert(factory.kind(), Arc::new(factory));
    }

    /// Registers a TimeSeries backend factory under its kind.
    pub fn register_timeseries(&mut self, factory: impl TimeSeriesFactory) {
        self.timeseries.insert(factory.kind(), Arc::new(factory));
    }

    /// Registers a PubSub backend factory under its kind.
    pub fn register_pubsub(&mut self, factory: impl PubSubFactory) {
        self.pubsub.insert(factory.kind(), Arc::new(factory));
    }

    /// The known KeyValue kinds, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.keyvalue.keys().copied().collect()
    }

    /// The known kinds of `dal`, sorted.
    pub fn kinds_of(&self, dal: Dal) -> Vec<&'static str> {
        match dal {
            Dal::Keyvalue => self.kinds(),
            Dal::Timeseries => self.timeseries.keys().copied().collect(),
            Dal::Pubsub => self.pubsub.keys().copied().collect(),
        }
    }

    /// Checks a TimeSeries or PubSub namespace's kind and options.
    fn check_other(&self, ns: &NamespaceConfig) -> Result<(), ConfigError> {
        let kind = ns.backend.kind.as_str();
        let checked: Option<Result<(), BackendError>> = match ns.dal {
            Dal::Keyvalue => None,
            Dal::Timeseries => self
                .timeseries
                .get(kind)
                .map(|f| f.check_options(&ns.backend.options)),
            Dal::Pubsub => self
                .pubsub
                .get(kind)
                .map(|f| f.check_options(&ns.backend.options)),
        };
        match checked {
            None => Err(ConfigError::new(
                &ns.source,
                "backend.kind",
                format!(
                    "no {} backend of kind '{kind}'; {} backends: {}",
                    ns.dal.name(),
                    ns.dal.name(),
                    self.kinds_of(ns.dal).join(", ")
                ),
            )),
            Some(result) => {
                result.map_err(|e| ConfigError::new(&ns.source, "backend.options", e.to_string()))
            }
        }
    }

    /// Checks that a namespace's backend kind exists and its options are
    /// valid, without opening anything. The error names the namespace's
    /// file and the field.
    pub fn check(&self, ns: &NamespaceConfig) -> Result<(), ConfigError> {
        if ns.dal != Dal::Keyvalue {
            return self.check_other(ns);
        }
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

    /// Opens a TimeSeries backend of `kind`.
    pub async fn open_timeseries(
        &self,
        kind: &str,
        ctx: TimeSeriesContext,
        options: serde_json::Value,
    ) -> Result<Arc<dyn TimeSeriesBackend>, String> {
        let factory = self.timeseries.get(kind).ok_or_else(|| {
            format!(
                "no timeseries backend of kind '{kind}'; timeseries backends: {}",
                self.kinds_of(Dal::Timeseries).join(", ")
            )
        })?;
        factory.open(ctx, options).await.map_err(|e| e.to_string())
    }

    /// Opens a PubSub backend of `kind`.
    pub async fn open_pubsub(
        &self,
        kind: &str,
        ctx: PubSubContext,
        options: serde_json::Value,
    ) -> Result<Arc<dyn PubSubBackend>, String> {
        let factory = self.pubsub.get(kind).ok_or_else(|| {
            format!(
                "no pubsub backend of kind '{kind}'; pubsub backends: {}",
                self.kinds_of(Dal::Pubsub).join(", ")
            )
        })?;
        factory.open(ctx, options).await.map_err(|e| e.to_string())
    }
}
