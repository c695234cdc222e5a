//! Configuration: `prism.yaml` (listeners, where namespaces live, the
//! external stores namespaces stating `needs` may use) and one YAML file
//! per namespace, which names its backend or states its needs
//! ([`needs`]).
//!
//! Parsing is strict: every struct denies unknown fields, and an error
//! names the file, the field (as a dotted path) and what is allowed. Parsed
//! files are then validated into typed values; relative paths in
//! `prism.yaml` are resolved against the directory of that file.
//!
//! With no configuration file the proxy runs the *embedded default*: the
//! listeners below and the built-in demo namespaces (`demo-mem` on
//! memstore, `demo-sqlite` on SQLite under `./data/`).

mod audit;
mod auth;
mod bounds;
mod dal;
mod limits;
mod listeners;
mod migration;
mod namespace;
pub mod needs;
mod policy;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use audit::{
    AuditConfig, AuditFile, AuditPolicy, FileSinkConfig, FileSinkFile, NamespaceAudit,
    NatsSinkConfig, SinkConfig, SinkKind,
};
pub use auth::{AuthConfig, AuthFile, JwksLocation, JwtConfig, TlsConfig};
pub use bounds::{MAX_YAML_BYTES, MAX_YAML_DEPTH, check_yaml_bounds};
pub use dal::{PubSubSettings, TimeSeriesSettings, format_duration, parse_duration};
pub use limits::{BreakerLimits, BucketSpec, DeadlineLimits, Limits, PrincipalRate, RateLimit};
pub use listeners::Listeners;
pub use migration::{DEFAULT_READ_SAMPLE, MigrationConfig, MigrationPhase};
pub use namespace::{BackendMode, BackendSpec, Dal, NamespaceConfig, PatternConfig, validate_name};
pub use needs::{BackendCatalog, Needs, Selection};
pub use policy::{PolicyConfig, validate_entries};

/// A configuration error: which file, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Dotted path of the field, empty when the error is about the file.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() || self.field == "." {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: field `{}`: {}", self.file, self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(file: impl fmt::Display, field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The error with its field's leading `from` section named `to` (a
    /// check written for one section, applied to another).
    pub fn renamed(mut self, from: &str, to: &str) -> Self {
        if let Some(rest) = self.field.strip_prefix(from) {
            self.field = format!("{to}{rest}");
        }
        self.message = self.message.replace(&format!("{from}."), &format!("{to}."));
        self
    }
}

/// Parses YAML text strictly into `T`; errors name `file` and the field.
/// Text over the size or nesting bounds ([`check_yaml_bounds`]) is
/// refused before it is parsed.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ConfigError> {
    check_yaml_bounds(text).map_err(|e| ConfigError::new(file, "", e))?;
    let de = yaml_serde::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let message = e.into_inner().to_string();
        // The YAML error may already start with the path; say it once.
        let message = message
            .strip_prefix(&format!("{field}: "))
            .map(str::to_string)
            .unwrap_or(message);
        ConfigError::new(file, &field, message)
    })
}

/// `namespaces` in `prism.yaml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NamespacesSource {
    /// A directory with one `<name>.yaml` per namespace, watched for
    /// changes. A `prism.yaml` sets this or `store`; only the embedded
    /// default (no file) serves the built-in demo namespaces.
    pub dir: Option<PathBuf>,
    /// A config store shared by a fleet of proxies, instead of `dir`.
    pub store: Option<StoreFile>,
    /// Where relative `schema.proto` paths of namespaces in `store` are
    /// found. Default: the directory of `prism.yaml`.
    pub schema_dir: Option<PathBuf>,
}

/// `namespaces.store`: exactly one of these.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// A PostgreSQL table.
    pub postgres: Option<PostgresStoreFile>,
    /// A NATS JetStream key-value bucket.
    pub nats: Option<NatsStoreFile>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PostgresStoreFile {
    /// e.g. `postgres://prism@db:5432/prism`.
    pub url: String,
    /// Default `prism_config.namespaces`; created when missing.
    #[serde(default = "default_store_table")]
    pub table: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NatsStoreFile {
    /// e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Default `prism-namespaces`; created when missing.
    #[serde(default = "default_store_bucket")]
    pub bucket: String,
}

fn default_store_table() -> String {
    "prism_config.namespaces".to_string()
}

fn default_store_bucket() -> String {
    "prism-namespaces".to_string()
}

/// Where the proxy keeps its namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreSpec {
    /// In memory, seeded from [`ProxyConfig::namespaces`]: the embedded
    /// default and configurations built in code. Changes made through the
    /// admin API last until the proxy stops.
    #[default]
    Memory,
    /// `namespaces.dir`.
    Dir(PathBuf),
    Postgres {
        url: String,
        table: String,
    },
    Nats {
        url: String,
        bucket: String,
    },
}

impl StoreSpec {
    /// Whether the store is shared by a fleet (namespaces are read from
    /// it, not from files at start-up).
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreSpec::Postgres { .. } | StoreSpec::Nats { .. })
    }
}

/// `log` in `prism.yaml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `prism_proxy=debug`; the
    /// `RUST_LOG` environment variable overrides it. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `prism.yaml` as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyFile {
    pub listeners: Listeners,
    pub namespaces: NamespacesSource,
    /// Where backends keep files (SQLite databases). Default `./data`.
    pub data_dir: PathBuf,
    /// How long shutdown waits for in-flight calls. Default 30.
    pub shutdown_grace_secs: u64,
    pub log: LogConfig,
    /// External stores that namespaces stating `needs` may be placed on.
    /// Default: none (such namespaces go to memstore or SQLite).
    pub backends: BackendCatalog,
    /// Authentication and listener TLS; off by default.
    pub auth: AuthFile,
    /// The audit log's sink and queue; see `docs-cms/configuration.md`.
    pub audit: AuditFile,
    /// Which programs namespaces may run as pattern processes.
    pub patterns: PatternsFile,
}

/// `patterns` in `prism.yaml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PatternsFile {
    /// The programs a namespace may name in `backend.pattern.binary`
    /// (relative paths are relative to `prism.yaml`). Default: none, so a
    /// process-mode namespace runs `prism-pattern-<kind>` from beside the
    /// proxy (or from `PATH`). Which programs the proxy runs is the
    /// operator's decision: namespace YAML cannot add to this list.
    pub allowed_binaries: Vec<PathBuf>,
}

impl Default for ProxyFile {
    fn default() -> Self {
        ProxyFile {
            listeners: Listeners::default(),
            namespaces: NamespacesSource::default(),
            data_dir: PathBuf::from("data"),
            shutdown_grace_secs: 30,
            log: LogConfig::default(),
            backends: BackendCatalog::default(),
            auth: AuthFile::default(),
            audit: AuditFile::default(),
            patterns: PatternsFile::default(),
        }
    }
}

/// The validated configuration the proxy runs with.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listeners: Listeners,
    pub data_dir: PathBuf,
    pub shutdown_grace_secs: u64,
    pub log: LogConfig,
    pub audit: AuditConfig,
    pub namespaces: Vec<NamespaceConfig>,
    pub auth: AuthConfig,
    /// Where the namespaces came from, for logs.
    pub source: String,
    /// `backends` of `prism.yaml`; the namespaces above were resolved
    /// against it.
    pub backends: BackendCatalog,
    /// Where namespaces are stored and watched. With a shared store,
    /// `namespaces` is empty: they are read from the store at start-up.
    pub store: StoreSpec,
    /// Base directory of relative `schema.proto` paths for namespaces
    /// read from a shared store.
    pub schema_dir: PathBuf,
    /// `patterns.allowed_binaries`, resolved.
    pub allowed_binaries: Vec<PathBuf>,
}

impl ProxyConfig {
    /// The backends built into this proxy, with the pattern binaries the
    /// operator allowed.
    pub fn resolver(&self) -> crate::resolver::Resolver {
        crate::resolver::Resolver::builtin().with_allowed_binaries(self.allowed_binaries.clone())
    }
}

impl Default for ProxyConfig {
    /// The defaults of an empty `prism.yaml` (without namespaces), for
    /// callers that build a configuration in code:
    /// `ProxyConfig { namespaces, ..ProxyConfig::default() }`.
    fn default() -> Self {
        let file = ProxyFile::default();
        ProxyConfig {
            listeners: file.listeners,
            data_dir: file.data_dir,
            shutdown_grace_secs: file.shutdown_grace_secs,
            log: file.log,
            namespaces: Vec::new(),
            source: "built in code".to_string(),
            backends: file.backends,
            auth: AuthConfig::default(),
            audit: AuditConfig::default(),
            store: StoreSpec::Memory,
            schema_dir: PathBuf::from("."),
            allowed_binaries: Vec::new(),
        }
    }
}

const DEMO_NAMESPACES: &[(&str, &str)] = &[
    (
        "demo-mem.yaml",
        include_str!("../../defaults/demo-mem.yaml"),
    ),
    (
        "demo-sqlite.yaml",
        include_str!("../../defaults/demo-sqlite.yaml"),
    ),
];

impl ProxyConfig {
    /// The embedded default: default listeners, `./data`, demo namespaces.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::from_file(
            ProxyFile::default(),
            Path::new("."),
            "built-in defaults",
            true,
        )
    }

    /// Loads `prism.yaml` at `path` and the namespaces it points to.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&shown, "", format!("cannot read: {e}")))?;
        let file: ProxyFile = parse_yaml(&shown, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_file(file, base, &shown, false)
    }

    fn from_file(
        mut file: ProxyFile,
        base: &Path,
        shown: &str,
        demo: bool,
    ) -> Result<Self, ConfigError> {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        file.backends.source = shown.to_string();
        let (namespaces, source, store) = match (&file.namespaces.dir, &file.namespaces.store) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    shown,
                    "namespaces.store",
                    "set either namespaces.dir (a directory of YAML files) or namespaces.store \
                     (a store shared by a fleet of proxies), not both",
                ));
            }
            (None, Some(store)) => {
                let spec = match (&store.postgres, &store.nats) {
                    (Some(p), None) => StoreSpec::Postgres {
                        url: p.url.clone(),
                        table: p.table.clone(),
                    },
                    (None, Some(n)) => StoreSpec::Nats {
                        url: n.url.clone(),
                        bucket: n.bucket.clone(),
                    },
                    _ => {
                        return Err(ConfigError::new(
                            shown,
                            "namespaces.store",
                            "set exactly one of namespaces.store.postgres {url, table} and \
                             namespaces.store.nats {url, bucket}",
                        ));
                    }
                };
                (Vec::new(), "the shared config store".to_string(), spec)
            }
            (Some(dir), None) => {
                let dir = resolve(dir);
                if !dir.is_dir() {
                    return Err(ConfigError::new(
                        shown,
                        "namespaces.dir",
                        format!(
                            "{} is not a directory; create it with one <name>.yaml per \
                             namespace, or point namespaces.dir elsewhere (relative paths \
                             are relative to this file)",
                            dir.display()
                        ),
                    ));
                }
                (
                    load_namespace_dir(&dir, &file.backends)?,
                    dir.display().to_string(),
                    StoreSpec::Dir(dir),
                )
            }
            (None, None) if !demo => {
                return Err(ConfigError::new(
                    shown,
                    "namespaces.dir",
                    "is required: the directory holding one <name>.yaml per namespace (or set \
                     namespaces.store for a store shared by several proxies)",
                ));
            }
            (None, None) => (
                DEMO_NAMESPACES
                    .iter()
                    .map(|(name, text)| {
                        NamespaceConfig::parse_with(
                            &format!("built-in {name}"),
                            text,
                            &file.backends,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                "built-in demo namespaces".to_string(),
                StoreSpec::Memory,
            ),
        };
        let schema_dir = file
            .namespaces
            .schema_dir
            .as_deref()
            .map_or_else(|| base.to_path_buf(), resolve);
        file.listeners.validate(shown)?;
        let auth = file.auth.validate(shown, resolve)?;
        let audit = file.audit.validate(shown, resolve)?;
        let allowed_binaries = file
            .patterns
            .allowed_binaries
            .iter()
            .map(|p| resolve(p))
            .collect();
        Ok(ProxyConfig {
            allowed_binaries,
            auth,
            audit,
            listeners: file.listeners,
            data_dir: resolve(&file.data_dir),
            shutdown_grace_secs: file.shutdown_grace_secs,
            log: file.log,
            namespaces,
            source,
            backends: file.backends,
            store,
            schema_dir,
        })
    }
}

/// Loads every `*.yaml` / `*.yml` in `dir` as a namespace; names must be
/// unique. Namespaces stating `needs` are placed on memstore, SQLite or a
/// store of `catalog`.
pub fn load_namespace_dir(
    dir: &Path,
    catalog: &BackendCatalog,
) -> Result<Vec<NamespaceConfig>, ConfigError> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::new(&shown, "", format!("cannot read namespace directory: {e}"))
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    let mut out: Vec<(String, NamespaceConfig)> = Vec::new();
    for path in paths {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::new(&file, "", format!("cannot read: {e}")))?;
        let ns = NamespaceConfig::parse_with(&file, &text, catalog)?;
        if let Some((other, _)) = out.iter().find(|(_, n)| n.name == ns.name) {
            return Err(ConfigError::new(
                &file,
                "name",
                format!("namespace '{}' is already defined in {other}", ns.name),
            ));
        }
        out.push((file, ns));
    }
    Ok(out.into_iter().map(|(_, ns)| ns).collect())
}

#[cfg(test)]
mod tests;
