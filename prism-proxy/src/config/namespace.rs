//! One namespace's YAML file.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use super::PolicyConfig;
use super::dal::{PubSubSettings, TimeSeriesSettings};
use super::limits::Limits;
use super::migration::MigrationConfig;
use super::needs::{self, BackendCatalog, Needs, Selection};
use super::{ConfigError, NamespaceAudit, parse_yaml};
use crate::schema::{Schema, SchemaConfig};

pub use crate::dal::Dal;

/// How the proxy reaches the backend.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendMode {
    /// Linked into the proxy (the default for built-in backends).
    #[default]
    Embedded,
    /// A pattern process the proxy starts, supervises and drains.
    Process,
    /// A pattern process someone else runs, at `pattern.address`.
    Remote,
}

impl BackendMode {
    pub fn name(self) -> &'static str {
        match self {
            BackendMode::Embedded => "embedded",
            BackendMode::Process => "process",
            BackendMode::Remote => "remote",
        }
    }
}

/// `backend.pattern`: how to run or reach a pattern process.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// `process` mode: the pattern binary. Default: `prism-pattern-<kind>`
    /// next to the proxy's executable, else on `PATH`.
    pub binary: Option<std::path::PathBuf>,
    /// `remote` mode (required): `unix:///path.sock`, an absolute socket
    /// path, or `IP:PORT`.
    pub address: Option<String>,
    /// How long starting (or attaching to) the pattern may take, in
    /// seconds. Default 30.
    pub start_timeout_secs: Option<u64>,
    /// `process` mode: the longest wait between restarts, in seconds.
    /// Default 30; waits start at 0.1 s and double.
    pub max_restart_backoff_secs: Option<u64>,
}

/// `backend` of a namespace.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// The backend kind: `memstore`, `sqlite`, `postgres` or `redis`.
    pub kind: String,
    /// Default `embedded`.
    #[serde(default)]
    pub mode: BackendMode,
    /// Backend-specific options, checked strictly by the backend.
    #[serde(default)]
    pub options: serde_json::Value,
    /// Pattern process settings, for modes `process` and `remote`.
    #[serde(default)]
    pub pattern: Option<PatternConfig>,
}

/// A namespace as declared.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Lowercase letters, digits, `-`, `_` and `.`; 1 to 63 characters,
    /// starting with a letter or digit.
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub dal: Dal,
    /// The backend, stated explicitly; or, when the file states `needs`
    /// instead, the one chosen from them when the namespace loads.
    #[serde(default = "BackendSpec::unset", deserialize_with = "explicit_backend")]
    pub backend: BackendSpec,
    /// What the namespace needs, instead of `backend` (exactly one of the
    /// two). See [`needs`](super::needs).
    #[serde(default)]
    pub needs: Option<Needs>,
    /// How `backend` was chosen from `needs`; `None` when the file states
    /// `backend`.
    #[serde(skip)]
    pub selection: Option<Selection>,
    #[serde(default)]
    pub limits: Limits,
    /// The protobuf message that types every value (validation, PII
    /// masking); without it values are opaque bytes.
    #[serde(default)]
    pub schema: Option<SchemaConfig>,
    /// Who may read, write, administer and see PII; see [`crate::policy`].
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// Audit policy and key form; default `block`, hashed ids and keys.
    #[serde(default)]
    pub audit: NamespaceAudit,
    /// Retention and buckets (`dal: timeseries` only).
    #[serde(default)]
    pub timeseries: Option<TimeSeriesSettings>,
    /// Subscription defaults (`dal: pubsub` only).
    #[serde(default)]
    pub pubsub: Option<PubSubSettings>,
    /// A move to another backend in progress (ADR-016).
    #[serde(default)]
    pub migration: Option<MigrationConfig>,
    /// The file this namespace was read from, for error messages.
    #[serde(skip)]
    pub source: String,
    /// The YAML text it was parsed from.
    #[serde(skip)]
    pub yaml: String,
    /// `schema`, compiled when the namespace was parsed.
    #[serde(skip)]
    pub compiled_schema: Option<Arc<Schema>>,
}

impl BackendSpec {
    /// The placeholder while a file states `needs` instead.
    fn unset() -> Self {
        BackendSpec {
            kind: String::new(),
            mode: BackendMode::Embedded,
            options: serde_json::Value::Null,
            pattern: None,
        }
    }
}

/// `backend` as written; an empty kind would read as "no backend".
fn explicit_backend<'de, D: Deserializer<'de>>(d: D) -> Result<BackendSpec, D::Error> {
    let spec = BackendSpec::deserialize(d)?;
    if spec.kind.is_empty() {
        return Err(serde::de::Error::custom(
            "`kind` is empty; name a backend: memstore, sqlite, postgres or redis",
        ));
    }
    check_kind(&spec.kind).map_err(serde::de::Error::custom)?;
    Ok(spec)
}

/// A backend kind names a factory or a pattern binary
/// (`prism-pattern-<kind>`): 1 to 32 lowercase letters, digits, `-` or
/// `_`, so it can never be a path.
pub fn check_kind(kind: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&kind.len())
        && kind.starts_with(|c: char| c.is_ascii_lowercase())
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "kind {} is not a backend kind; use 1 to 32 lowercase letters, digits, '-' or '_', \
             starting with a letter (e.g. sqlite)",
            pattern_core::quote(kind)
        ))
    }
}

impl NamespaceConfig {
    /// Parses and validates one namespace file's text. A namespace that
    /// states `needs` is placed on memstore or SQLite (no external store
    /// is configured); see [`NamespaceConfig::parse_with`].
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        Self::parse_with(file, text, &BackendCatalog::default())
    }

    /// Parses and validates one namespace file's text; a namespace that
    /// states `needs` gets its backend chosen among memstore, SQLite and
    /// the stores in `catalog`.
    pub fn parse_with(
        file: &str,
        text: &str,
        catalog: &BackendCatalog,
    ) -> Result<Self, ConfigError> {
        let base = Path::new(file).parent().unwrap_or(Path::new("."));
        Self::parse_in(file, text, catalog, base)
    }

    /// [`NamespaceConfig::parse_with`] for text that is not a file (a
    /// shared store's entry): relative `schema.proto` paths are resolved
    /// against `schema_base`.
    pub fn parse_in(
        file: &str,
        text: &str,
        catalog: &BackendCatalog,
        schema_base: &Path,
    ) -> Result<Self, ConfigError> {
        let mut ns = Self::parse_unloaded(file, text, catalog)?;
        ns.load_schema(schema_base)?;
        Ok(ns)
    }

    /// Parses and validates one namespace's text without reading any other
    /// file: `schema` is not compiled yet ([`NamespaceConfig::load_schema`]
    /// does it), so who may apply the text can be checked first.
    pub fn parse_unloaded(
        file: &str,
        text: &str,
        catalog: &BackendCatalog,
    ) -> Result<Self, ConfigError> {
        let mut ns: NamespaceConfig = parse_yaml(file, text)?;
        ns.source = file.to_string();
        ns.yaml = text.to_string();
        ns.resolve_needs(file, catalog)?;
        ns.validate(file)?;
        if let Some(policy) = &ns.policy {
            policy
                .validate()
                .map_err(|(field, message)| ConfigError::new(file, &field, message))?;
        }
        Ok(ns)
    }

    /// Compiles `schema` (relative `schema.proto` paths against
    /// `schema_base`) and checks it against the rest of the namespace.
    pub fn load_schema(&mut self, schema_base: &Path) -> Result<(), ConfigError> {
        let file = self.source.clone();
        let file = file.as_str();
        let ns = self;
        if let Some(config) = &ns.schema {
            let schema = Schema::load(config, schema_base)
                .map_err(|e| ConfigError::new(file, "schema", e))?;
            if let Some(wanted) = &schema.annotations().backend
                && *wanted != ns.backend.kind
            {
                let (field, chosen) = if ns.selection.is_some() {
                    ("needs", "the needs chose")
                } else {
                    ("backend.kind", "backend.kind is")
                };
                return Err(ConfigError::new(
                    file,
                    field,
                    format!(
                        "{chosen} {:?} but the schema's message {} asks for backend {wanted:?} \
                         (option prism.options.v1.backend); change one of them",
                        ns.backend.kind,
                        schema.message_name()
                    ),
                ));
            }
            if ns.audit.policy == super::AuditPolicy::Drop
                && let Some(field) = schema.fields().iter().find(|f| f.access_audit)
            {
                return Err(ConfigError::new(
                    file,
                    "audit.policy",
                    format!(
                        "is drop, but field `{}` of {} is marked access_audit, which needs \
                         every access recorded; set audit.policy: block",
                        field.path,
                        schema.message_name()
                    ),
                ));
            }
            ns.compiled_schema = Some(Arc::new(schema));
        }
        Ok(())
    }

    /// Exactly one of `backend` and `needs`; chooses the backend from
    /// `needs`.
    fn resolve_needs(&mut self, file: &str, catalog: &BackendCatalog) -> Result<(), ConfigError> {
        let explicit = !self.backend.kind.is_empty();
        match (&self.needs, explicit) {
            (Some(_), true) => Err(ConfigError::new(
                file,
                "needs",
                format!(
                    "a namespace states either `backend` or `needs`, not both; remove `needs` \
                     to keep backend.kind {}, or remove `backend` to let Prism choose",
                    self.backend.kind
                ),
            )),
            (None, false) => Err(ConfigError::new(
                file,
                "backend",
                format!(
                    "is required unless the namespace states `needs`; set backend.kind ({}) \
                     or describe the namespace's needs under `needs:` (durability, scope, \
                     write_rps, ...)",
                    crate::resolver::builtin().kinds_of(self.dal).join(", ")
                ),
            )),
            (None, true) => Ok(()),
            (Some(stated), false) => {
                let (spec, selection) = needs::select(self.dal, stated, catalog)
                    .map_err(|e| ConfigError::new(file, &e.field, e.message))?;
                self.backend = spec;
                self.selection = Some(selection);
                Ok(())
            }
        }
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        if let Err(why) = validate_name(&self.name) {
            return Err(ConfigError::new(file, "name", why));
        }
        let l = &self.limits;
        for (field, value) in [
            ("limits.max_key_bytes", l.max_key_bytes),
            ("limits.max_id_bytes", l.max_id_bytes),
            ("limits.max_value_bytes", l.max_value_bytes),
            ("limits.max_items_per_call", l.max_items_per_call),
            ("limits.default_page_size_bytes", l.default_page_size_bytes),
            ("limits.max_page_size_bytes", l.max_page_size_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::new(file, field, "must be at least 1"));
            }
        }
        l.validate_call_limits(file)?;
        self.validate_mode(file)?;
        self.validate_dal(file)?;
        if let Some(m) = &self.migration {
            if self.needs.is_some() {
                return Err(ConfigError::new(
                    file,
                    "migration",
                    "needs a namespace that names its backend; replace `needs` with the \
                     `backend` it chose (prismctl namespace explain shows it)",
                ));
            }
            m.validate(self, file)?;
        }
        if l.default_page_size_bytes > l.max_page_size_bytes {
            return Err(ConfigError::new(
                file,
                "limits.default_page_size_bytes",
                format!(
                    "is {} but limits.max_page_size_bytes is {}; the default must not exceed the maximum",
                    l.default_page_size_bytes, l.max_page_size_bytes
                ),
            ));
        }
        if l.max_page_size_bytes > u32::MAX as usize {
            return Err(ConfigError::new(
                file,
                "limits.max_page_size_bytes",
                format!("must be at most {}", u32::MAX),
            ));
        }
        Ok(())
    }
}

impl NamespaceConfig {
    /// The `timeseries:` settings, defaults when the file has none.
    pub fn timeseries_settings(&self) -> TimeSeriesSettings {
        self.timeseries.clone().unwrap_or_default()
    }

    /// The `pubsub:` settings, defaults when the file has none.
    pub fn pubsub_settings(&self) -> PubSubSettings {
        self.pubsub.clone().unwrap_or_default()
    }

    /// The DAL sections match the DAL; TimeSeries and PubSub backends are
    /// linked into the proxy.
    fn validate_dal(&self, file: &str) -> Result<(), ConfigError> {
        let dal = self.dal.name();
        // A DAL's own section belongs to that DAL's namespaces only.
        let sections = [
            (crate::dal::TIMESERIES, self.timeseries.is_some()),
            (crate::dal::PUBSUB, self.pubsub.is_some()),
        ];
        for (owner, present) in sections {
            if let (true, Some(section)) = (present && owner != self.dal, owner.module().section) {
                return Err(ConfigError::new(
                    file,
                    section,
                    format!(
                        "applies only to dal: {owner}, and this namespace's dal is {dal}; \
                         remove it"
                    ),
                ));
            }
        }
        if !self.dal.module().pattern_modes && self.backend.mode != BackendMode::Embedded {
            return Err(ConfigError::new(
                file,
                "backend.mode",
                format!(
                    "is {}, but {dal} backends run linked into the proxy in this version; \
                     remove backend.mode (or set it to embedded)",
                    self.backend.mode.name()
                ),
            ));
        }
        if let Some(ts) = &self.timeseries {
            if let Some(log) = &ts.log {
                log.check(&self.name)
                    .map_err(|e| ConfigError::new(file, "timeseries.log", e))?;
            }
            if ts.bucket < std::time::Duration::from_secs(1) {
                return Err(ConfigError::new(
                    file,
                    "timeseries.bucket",
                    "must be at least 1s; buckets are the unit of storage and retention, \
                     typically 1h or 1d",
                ));
            }
            if let Some(retention) = ts.retention
                && retention < ts.bucket
            {
                return Err(ConfigError::new(
                    file,
                    "timeseries.retention",
                    format!(
                        "is {} but timeseries.bucket is {}; retention drops whole buckets, so it \
                         must be at least one bucket",
                        super::format_duration(retention),
                        super::format_duration(ts.bucket)
                    ),
                ));
            }
        }
        if let Some(ps) = &self.pubsub {
            if ps.max_attempts == 0 {
                return Err(ConfigError::new(
                    file,
                    "pubsub.max_attempts",
                    "must be at least 1 (deliveries before a message is dead-lettered)",
                ));
            }
            if ps.ack_deadline < std::time::Duration::from_secs(1) {
                return Err(ConfigError::new(
                    file,
                    "pubsub.ack_deadline",
                    "must be at least 1s",
                ));
            }
        }
        Ok(())
    }

    pub(super) fn validate_mode(&self, file: &str) -> Result<(), ConfigError> {
        let b = &self.backend;
        let pattern = b.pattern.clone().unwrap_or_default();
        match b.mode {
            BackendMode::Embedded if b.pattern.is_some() => Err(ConfigError::new(
                file,
                "backend.pattern",
                "applies only to backend.mode process or remote; remove it or set the mode",
            )),
            BackendMode::Process if pattern.address.is_some() => Err(ConfigError::new(
                file,
                "backend.pattern.address",
                "applies only to backend.mode remote; a process pattern listens on a socket \
                 the proxy chooses",
            )),
            BackendMode::Remote => {
                let Some(address) = &pattern.address else {
                    return Err(ConfigError::new(
                        file,
                        "backend.pattern.address",
                        "is required for backend.mode remote: where the pattern listens, e.g. \
                         unix:///run/prism/orders.sock or 127.0.0.1:7001",
                    ));
                };
                if pattern.binary.is_some() {
                    return Err(ConfigError::new(
                        file,
                        "backend.pattern.binary",
                        "applies only to backend.mode process; a remote pattern is started by \
                         someone else",
                    ));
                }
                pattern_core::grpc::Endpoint::parse(address)
                    .map(|_| ())
                    .map_err(|e| ConfigError::new(file, "backend.pattern.address", e))
            }
            _ => Ok(()),
        }
    }
}

/// Checks a namespace name; the error says what is allowed.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_len = (1..=63).contains(&name.len());
    let mut chars = name.chars();
    let ok_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok_len && ok_first && ok_rest {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid namespace name; use 1 to 63 lowercase letters, digits, \
             '-', '_' or '.', starting with a letter or digit",
            pattern_core::quote(name)
        ))
    }
}
