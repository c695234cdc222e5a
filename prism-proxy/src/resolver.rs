//! Maps a backend kind (`memstore`, `sqlite`, ...) to the factory that
//! opens it. Adding a backend is one `register` line in [`Resolver::builtin`].

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pattern_core::needs::NeedsProfile;
use pattern_core::{BackendError, Factory, OpenContext};

use crate::config::{BackendMode, ConfigError, Dal, NamespaceConfig};

/// The proxy's built-in resolver, built once: needs-based selection reads
/// the kinds' needs profiles from it when a namespace loads.
pub fn builtin() -> &'static Resolver {
    static BUILTIN: std::sync::LazyLock<Resolver> = std::sync::LazyLock::new(Resolver::builtin);
    &BUILTIN
}

/// The facts of a registered factory, whatever its DAL: what the
/// resolver asks without opening anything.
trait Facts: Send + Sync {
    fn needs_profile(&self) -> NeedsProfile;
    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError>;
    fn placement_options(&self) -> &'static [&'static str];
    fn default_placement_is_private(&self) -> bool;
    fn data_files(&self, namespace: &str, options: &serde_json::Value) -> Vec<PathBuf>;
}

impl<F: Factory> Facts for F {
    fn needs_profile(&self) -> NeedsProfile {
        Factory::needs_profile(self)
    }
    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        Factory::check_options(self, options)
    }
    fn placement_options(&self) -> &'static [&'static str] {
        Factory::placement_options(self)
    }
    fn default_placement_is_private(&self) -> bool {
        Factory::default_placement_is_private(self)
    }
    fn data_files(&self, namespace: &str, options: &serde_json::Value) -> Vec<PathBuf> {
        Factory::data_files(self, namespace, options)
    }
}

/// One registered factory: its facts, and the factory itself as an
/// `Arc<dyn Factory<Backend = B>>` for its DAL's backend trait `B`.
#[derive(Clone)]
struct Registered {
    facts: Arc<dyn Facts>,
    opener: Arc<dyn Any + Send + Sync>,
}

/// The registered backend factories, keyed by the DAL's backend trait
/// (which names the DAL) and the kind.
#[derive(Clone, Default)]
pub struct Resolver {
    factories: BTreeMap<(TypeId, &'static str), Registered>,
    /// `patterns.allowed_binaries` of prism.yaml: the programs a namespace
    /// may name in `backend.pattern.binary`.
    allowed_binaries: Vec<PathBuf>,
}

impl Resolver {
    /// Every backend built into this proxy: one line per (DAL, kind).
    pub fn builtin() -> Self {
        let mut r = Resolver::default();
        r.register(pattern_memstore::MemstoreFactory);
        r.register(pattern_sqlite::SqliteFactory);
        r.register(pattern_postgres::PostgresFactory);
        r.register(pattern_redis::RedisFactory);
        r.register(pattern_memstore::timeseries::MemTimeSeriesFactory);
        r.register(pattern_sqlite::SqliteTimeSeriesFactory);
        r.register(pattern_postgres::PostgresTimeSeriesFactory);
        r.register(pattern_nats::NatsFactory);
        r.register(pattern_redis::RedisPubSubFactory);
        #[cfg(feature = "kafka")]
        r.register(pattern_kafka::KafkaFactory);
        r
    }

    /// Registers a backend factory under its DAL (the DAL whose backend
    /// trait is `F::Backend`) and kind.
    pub fn register<F: Factory>(&mut self, factory: F) {
        let kind = factory.kind();
        let factory = Arc::new(factory);
        let opener: Arc<dyn Factory<Backend = F::Backend>> = factory.clone();
        self.factories.insert(
            (TypeId::of::<F::Backend>(), kind),
            Registered {
                facts: factory,
                opener: Arc::new(opener),
            },
        );
    }

    fn get(&self, dal: Dal, kind: &str) -> Option<&Registered> {
        self.factories
            .iter()
            .find(|((t, k), _)| *t == dal.backend_type() && *k == kind)
            .map(|(_, r)| r)
    }

    /// The known kinds of `dal`, sorted.
    pub fn kinds_of(&self, dal: Dal) -> Vec<&'static str> {
        self.factories
            .keys()
            .filter(|(t, _)| *t == dal.backend_type())
            .map(|(_, k)| *k)
            .collect()
    }

    /// The needs profiles of `dal`'s kinds, in preference order.
    pub fn needs_profiles(&self, dal: Dal) -> Vec<NeedsProfile> {
        let mut profiles: Vec<NeedsProfile> = self
            .factories
            .iter()
            .filter(|((t, _), _)| *t == dal.backend_type())
            .map(|(_, r)| r.facts.needs_profile())
            .collect();
        profiles.sort_by_key(|p| (p.preference, p.kind));
        profiles
    }

    /// "no keyvalue backend of kind 'x'; keyvalue backends: a, b".
    fn unknown(&self, dal: Dal, kind: &str) -> String {
        format!(
            "unknown {} backend kind '{kind}'; known kinds: {}",
            dal.name(),
            self.kinds_of(dal).join(", ")
        )
    }

    /// Opens a backend of `kind` for `dal`, whose backend trait is `B`.
    /// The error says which kinds exist or what is wrong with the options.
    pub async fn open<B: ?Sized + pattern_core::Backend>(
        &self,
        dal: Dal,
        kind: &str,
        ctx: OpenContext,
    ) -> Result<Arc<B>, String> {
        let factory = self
            .get(dal, kind)
            .and_then(|r| r.opener.downcast_ref::<Arc<dyn Factory<Backend = B>>>())
            .ok_or_else(|| self.unknown(dal, kind))?;
        factory.open(ctx).await.map_err(|e| e.to_string())
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
        self.get(dal, kind)
            .map(|r| r.facts.placement_options())
            .unwrap_or(&[pattern_core::placement::ALL_OPTIONS])
    }

    /// Whether `kind`'s default placement keeps data private to the proxy
    /// (see `default_placement_is_private` of the factories).
    pub fn default_is_private(&self, dal: Dal, kind: &str) -> bool {
        self.get(dal, kind)
            .is_some_and(|r| r.facts.default_placement_is_private())
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
            let files = self
                .get(ns.dal, spec.kind.as_str())
                .map(|r| r.facts.data_files(&ns.name, &spec.options));
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
        let known = self.get(ns.dal, ns.backend.kind.as_str());
        if known.is_none() && ns.backend.mode != BackendMode::Embedded {
            // A third-party pattern: its options are checked by the pattern
            // itself when the proxy initializes it.
            return Ok(());
        }
        let factory = known.ok_or_else(|| {
            ConfigError::new(
                &ns.source,
                "backend.kind",
                self.unknown(ns.dal, &ns.backend.kind),
            )
        })?;
        factory
            .facts
            .check_options(&ns.backend.options)
            .map_err(|e| {
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
