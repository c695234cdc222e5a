//! Maps a backend kind (`memstore`, `sqlite`, ...) to the factory that
//! opens it. Adding a backend is one `register` line in [`Resolver::builtin`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    /// `patterns.allowed_binaries` of prism.yaml: the programs a namespace
    /// may name in `backend.pattern.binary`.
    allowed_binaries: Vec<PathBuf>,
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
        #[cfg(feature = "kafka")]
        r.register_pubsub(pattern_kafka::KafkaFactory);
        r
    }

    /// Sets the pattern binaries a namespace may name
    /// (`patterns.allowed_binaries` of prism.yaml); without any, only
    /// the default `prism-pattern-<kind>` runs.
    pub fn with_allowed_binaries(mut self, binaries: Vec<PathBuf>) -> Self {
        self.allowed_binaries = binaries;
        self
    }

    /// The program a `process`-mode namespace of `kind` runs: the
    /// configured one when `patterns.allowed_binaries` lists it, else
    /// `prism-pattern-<kind>` beside the proxy (or on `PATH`). A binary the
    /// operator has not allowed is refused before anything runs.
    pub fn pattern_binary(&self, kind: &str, configured: Option<&Path>) -> Result<PathBuf, String> {
        let Some(binary) = configured else {
            return Ok(crate::registry::pattern_binary(kind, None));
        };
        let wanted = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
        let allowed = self
            .allowed_binaries
            .iter()
            .any(|a| std::fs::canonicalize(a).unwrap_or_else(|_| a.clone()) == wanted);
        if allowed {
            Ok(binary.to_path_buf())
        } else {
            Err(format!(
                "names a program that patterns.allowed_binaries of prism.yaml does not list; \
                 which programs the proxy runs is the operator's decision: list it there, or \
                 remove backend.pattern.binary to run prism-pattern-{kind} from beside the proxy"
            ))
        }
    }

    /// The options of `kind` that decide where data lives or which server
    /// it connects to (see [`pattern_core::placement`]); every option for
    /// a kind this proxy does not know.
    pub fn placement_options(&self, dal: Dal, kind: &str) -> &'static [&'static str] {
        let known = match dal {
            Dal::Keyvalue => self.keyvalue.get(kind).map(|f| f.placement_options()),
            Dal::Timeseries => self.timeseries.get(kind).map(|f| f.placement_options()),
            Dal::Pubsub => self.pubsub.get(kind).map(|f| f.placement_options()),
        };
        known.unwrap_or(&[pattern_core::placement::ALL_OPTIONS])
    }

    /// Whether `kind`'s default placement keeps data private to the proxy
    /// (see `default_placement_is_private` of the factories).
    pub fn default_is_private(&self, dal: Dal, kind: &str) -> bool {
        match dal {
            Dal::Keyvalue => self
                .keyvalue
                .get(kind)
                .map(|f| f.default_placement_is_private()),
            Dal::Timeseries => self
                .timeseries
                .get(kind)
                .map(|f| f.default_placement_is_private()),
            Dal::Pubsub => self
                .pubsub
                .get(kind)
                .map(|f| f.default_placement_is_private()),
        }
        .unwrap_or(false)
    }

    /// The files under the data directory that `ns` keeps (its backend's
    /// and its migration target's), each with the field that chose it.
    pub fn data_files(&self, ns: &NamespaceConfig) -> Vec<(String, PathBuf)> {
        let mut specs = vec![("backend", &ns.backend)];
        if let Some(m) = &ns.migration {
            specs.push(("migration.to", &m.to));
        }
        let mut out = Vec::new();
        for (field, spec) in specs {
            let files = match ns.dal {
                Dal::Keyvalue => self
                    .keyvalue
                    .get(spec.kind.as_str())
                    .map(|f| f.data_files(&ns.name, &spec.options)),
                Dal::Timeseries => self
                    .timeseries
                    .get(spec.kind.as_str())
                    .map(|f| f.data_files(&ns.name, &spec.options)),
                Dal::Pubsub => self
                    .pubsub
                    .get(spec.kind.as_str())
                    .map(|f| f.data_files(&ns.name, &spec.options)),
            };
            for file in files.unwrap_or_default() {
                let file: PathBuf = file
                    .components()
                    .filter(|c| !matches!(c, std::path::Component::CurDir))
                    .collect();
                out.push((format!("{field}.options.path"), file));
            }
        }
        out
    }

    /// Refuses `ns` when it would use a file another namespace of
    /// `others` keeps: one namespace's files are its own.
    pub fn check_files<'a>(
        &self,
        ns: &NamespaceConfig,
        others: impl IntoIterator<Item = &'a NamespaceConfig>,
    ) -> Result<(), ConfigError> {
        let mine = self.data_files(ns);
        if mine.is_empty() {
            return Ok(());
        }
        // The proxy's own files under the data directory.
        for (field, file) in &mine {
            let first = file
                .components()
                .next()
                .map(|c| c.as_os_str().to_os_string());
            let reserved = file == Path::new(crate::migration::queue::FILE)
                || first.is_some_and(|c| c == "audit");
            if reserved {
                return Err(ConfigError::new(
                    &ns.source,
                    field,
                    format!(
                        "names {} under the data directory, which the proxy keeps for itself \
                         (the migration queue {} and the audit/ directory); choose another path",
                        file.display(),
                        crate::migration::queue::FILE
                    ),
                ));
            }
        }
        for other in others {
            if other.name == ns.name {
                continue;
            }
            let theirs = self.data_files(other);
            if let Some((field, file)) = mine
                .iter()
                .find(|(_, f)| theirs.iter().any(|(_, t)| t == f))
            {
                return Err(ConfigError::new(
                    &ns.source,
                    field,
                    format!(
                        "names the file {} under the data directory, which namespace '{}' \
                         keeps; every namespace has its own files: choose another path (or \
                         leave it unset for {}'s own)",
                        file.display(),
                        other.name,
                        ns.name
                    ),
                ));
            }
        }
        Ok(())
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
        let mut specs = vec![("backend", &ns.backend)];
        if let Some(m) = &ns.migration {
            specs.push(("migration.to", &m.to));
        }
        for (field, spec) in specs {
            if spec.mode == BackendMode::Process {
                let configured = spec.pattern.as_ref().and_then(|p| p.binary.as_deref());
                self.pattern_binary(&spec.kind, configured).map_err(|e| {
                    ConfigError::new(&ns.source, &format!("{field}.pattern.binary"), e)
                })?;
            }
        }
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

    /// Checks every namespace with [`Resolver::check`], and that no two
    /// keep the same file.
    pub fn check_all(&self, namespaces: &[NamespaceConfig]) -> Result<(), ConfigError> {
        namespaces.iter().try_for_each(|ns| {
            self.check(ns)?;
            self.check_files(ns, namespaces)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, backend: &str) -> NamespaceConfig {
        NamespaceConfig::parse("t.yaml", &format!("name: {name}\ndal: keyvalue\n{backend}"))
            .unwrap()
    }

    #[test]
    fn one_namespace_s_files_are_its_own_and_the_proxy_keeps_its_own() {
        let r = Resolver::builtin();
        let beta = ns("beta", "backend: {kind: sqlite}\n");
        let alpha = ns(
            "alpha",
            "backend: {kind: sqlite, options: {path: ./beta.db}}\n",
        );
        let e = r.check_files(&alpha, [&beta]).unwrap_err();
        assert_eq!(e.field, "backend.options.path");
        assert!(e.message.contains("namespace 'beta' keeps"), "{e}");
        let own = ns("alpha", "backend: {kind: sqlite}\n");
        assert_eq!(r.check_files(&own, [&beta]), Ok(()));
        let queue = ns("migrations", "backend: {kind: sqlite}\n");
        let e = r.check_files(&queue, []).unwrap_err();
        assert!(e.message.contains("keeps for itself"), "{e}");
        let audit = ns(
            "x",
            "backend: {kind: sqlite, options: {path: audit/x.db}}\n",
        );
        assert!(r.check_files(&audit, []).is_err());
    }
}
