//! Namespace management: applies changes to the namespace set while the
//! proxy serves, without failing a call.
//!
//! The [`Manager`] owns the path from the config store to the
//! [`Registry`]. Changes arrive three ways: an apply or delete through the
//! admin API (validated and opened here, then written to the store), a
//! change in the store noticed by its watcher (a file edited, another
//! proxy's apply), and an explicit reload (SIGHUP, the `Reload` RPC). All
//! three end in the same step: the new namespace is opened — sharing the
//! old backend when its `backend` section did not change — and swapped
//! into the registry atomically. A call already holding the old namespace
//! finishes on it; the old backend, when replaced, is closed only after
//! its last call finished. A change that fails validation or cannot open
//! its backend is rejected with its errors and the previous version keeps
//! serving. Every change is recorded in the audit log with its version.

pub mod authority;
pub mod diff;
pub mod migrate;
mod parse;

pub use authority::Authority;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pattern_core::Clock;
use serde::Deserialize;

use crate::audit::AuditLog;
use crate::backend::DalBackend;
use crate::config::{BackendCatalog, ConfigError};
use crate::registry::{Namespace, Registry};
use crate::resolver::Resolver;
use crate::store::{ConfigStore, StoreError, StoredNamespace};

/// The principal recorded for changes the proxy picked up from its store
/// (a file edit, another proxy's apply, a reload).
pub const STORE_PRINCIPAL: &str = "prism:config-store";

/// Why a management operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The YAML is invalid; the previous version keeps serving.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigError>),
    /// The backend could not be opened; nothing was stored.
    #[error("{0}; nothing was changed, the previous version keeps serving")]
    Open(ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "namespace {} does not exist; `prismctl namespace list` shows the namespaces served",
        pattern_core::quote(.0)
    )]
    NotFound(String),
    /// A step the namespace's state does not allow (a pre-flight check).
    #[error("{0}")]
    Refused(String),
    /// A request that cannot be carried out as given.
    #[error("{0}")]
    BadRequest(String),
    /// A namespace admin's change to a setting only an operator may make.
    #[error("{0}")]
    Denied(String),
}

impl From<ManageError> for tonic::Status {
    fn from(e: ManageError) -> Self {
        use tonic::Code;
        let code = match &e {
            ManageError::Invalid(_) | ManageError::BadRequest(_) => Code::InvalidArgument,
            ManageError::Refused(_) | ManageError::Open(_) => Code::FailedPrecondition,
            ManageError::Denied(_) => Code::PermissionDenied,
            ManageError::Store(StoreError::VersionMismatch { .. }) => Code::FailedPrecondition,
            ManageError::Store(StoreError::NotFound { .. }) | ManageError::NotFound(_) => {
                Code::NotFound
            }
            ManageError::Store(StoreError::Invalid(_)) => Code::Internal,
            ManageError::Store(StoreError::Unavailable { .. }) => Code::Unavailable,
        };
        pattern_core::status(code, e.to_string())
    }
}

/// What an apply did (or, for a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct ApplyOutcome {
    pub name: String,
    /// The new version; for a dry run or an unchanged apply, the version
    /// serving (0 if none).
    pub version: u64,
    pub created: bool,
    pub changed: bool,
    pub diff: String,
    pub dry_run: bool,
    /// Dry run only: what is wrong.
    pub errors: Vec<ConfigError>,
}

/// What a reload did.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    pub applied: Vec<String>,
    pub removed: Vec<String>,
    /// Rejected new versions (the previous one keeps serving): namespace
    /// name and why.
    pub rejected: Vec<(String, ConfigError)>,
}

/// Just the name of a namespace YAML.
#[derive(Deserialize)]
struct NameOnly {
    name: Option<String>,
}

/// The `name` a namespace YAML states, if it parses that far.
pub fn name_of(yaml: &str) -> Option<String> {
    yaml_serde::from_str::<NameOnly>(yaml)
        .ok()
        .and_then(|n| n.name)
        .filter(|n| !n.is_empty())
}

/// Applies namespace changes; see the module docs.
pub struct Manager {
    store: Arc<dyn ConfigStore>,
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    catalog: BackendCatalog,
    resolver: Resolver,
    data_dir: PathBuf,
    /// Base of relative schema paths; `None`: the namespace file's
    /// directory.
    schema_base: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    /// How long a replaced or deleted namespace's calls may run before
    /// its backend is closed anyway.
    grace: Duration,
    /// Serializes changes: one apply, delete or reload at a time.
    changes: tokio::sync::Mutex<()>,
    /// Versions rejected by a reload: name → (version, why), so a bad
    /// entry is reported, not retried on every change.
    rejected: Mutex<BTreeMap<String, (u64, ConfigError)>>,
}

/// How the manager is set up.
pub struct ManagerSetup {
    pub store: Arc<dyn ConfigStore>,
    pub registry: Arc<Registry>,
    pub audit: Arc<AuditLog>,
    pub catalog: BackendCatalog,
    pub resolver: Resolver,
    pub data_dir: PathBuf,
    pub schema_base: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
    pub grace: Duration,
}

impl Manager {
    pub fn new(setup: ManagerSetup) -> Arc<Self> {
        Arc::new(Manager {
            store: setup.store,
            registry: setup.registry,
            audit: setup.audit,
            catalog: setup.catalog,
            resolver: setup.resolver,
            data_dir: setup.data_dir,
            schema_base: setup.schema_base,
            clock: setup.clock,
            grace: setup.grace,
            changes: tokio::sync::Mutex::new(()),
            rejected: Mutex::new(BTreeMap::new()),
        })
    }

    /// The config store.
    pub fn store(&self) -> &Arc<dyn ConfigStore> {
        &self.store
    }

    fn schema_base(&self, source: &str) -> PathBuf {
        self.schema_base.clone().unwrap_or_else(|| {
            Path::new(source)
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        })
    }

    /// Creates or updates a namespace from `yaml`. A dry run validates and
    /// diffs only; otherwise the namespace is opened, stored (every proxy
    /// on the store picks it up) and served here at once.
    pub async fn apply(
        &self,
        yaml: &str,
        dry_run: bool,
        expected_version: Option<u64>,
        principal: &str,
        authority: Authority,
    ) -> Result<ApplyOutcome, ManageError> {
        let started = Instant::now();
        let owned = yaml.to_string();
        let name = tokio::task::spawn_blocking(move || name_of(&owned))
            .await
            .unwrap_or(None);
        let Some(name) = name else {
            let e = ConfigError::new(
                "applied YAML",
                "name",
                "is missing: every namespace YAML states its `name`",
            );
            return if dry_run {
                Ok(ApplyOutcome {
                    dry_run,
                    errors: vec![e],
                    ..ApplyOutcome::default()
                })
            } else {
                Err(ManageError::Invalid(vec![e]))
            };
        };
        let _guard = self.changes.lock().await;
        let current = self.registry.get(&name);
        let before = current.as_ref().map_or("", |c| c.config.yaml.as_str());
        let mut outcome = ApplyOutcome {
            name: name.clone(),
            version: current.as_ref().map_or(0, |c| c.version),
            created: current.is_none(),
            changed: before != yaml,
            diff: diff::unified(before, yaml),
            dry_run,
            errors: Vec::new(),
        };
        let source = format!("namespace {}", pattern_core::quote(&name));
        let parsed = match self
            .parse_as(&source, yaml, authority, current.as_deref())
            .await
        {
            Ok(config) => Ok(config),
            Err(Err(invalid)) => Err(invalid),
            Err(Ok(denied)) => {
                tracing::warn!(namespace = %name, principal, "namespace change refused: it changes a setting only an operator may make");
                if !dry_run {
                    self.record(
                        principal,
                        &name,
                        "ApplyNamespace",
                        tonic::Code::PermissionDenied,
                        0,
                        started,
                    )
                    .await;
                }
                return Err(ManageError::Denied(format!(
                    "{denied}; principal {} administers this namespace only",
                    pattern_core::quote(principal)
                )));
            }
        };
        if dry_run {
            if let Err(e) = parsed {
                outcome.errors.push(e);
            }
            if let (Some(expected), Some(_) | None) = (expected_version, &current)
                && expected != outcome.version
            {
                outcome.errors.push(ConfigError::new(
                    &source,
                    "",
                    StoreError::VersionMismatch {
                        name: name.clone(),
                        expected,
                        actual: outcome.version,
                    }
                    .to_string(),
                ));
            }
            return Ok(outcome);
        }
        let config = match parsed {
            Ok(config) => config,
            Err(e) => {
                self.record(
                    principal,
                    &name,
                    "ApplyNamespace",
                    tonic::Code::InvalidArgument,
                    0,
                    started,
                )
                .await;
                return Err(ManageError::Invalid(vec![e]));
            }
        };
        if !outcome.changed && expected_version.is_none_or(|v| v == outcome.version) {
            // Nothing to do: the same YAML is serving.
            return Ok(outcome);
        }
        let opened = Namespace::open(
            config,
            0,
            current.as_deref(),
            &self.resolver,
            &self.data_dir,
            self.clock.clone(),
        )
        .await;
        let mut ns = match opened {
            Ok(ns) => ns,
            Err(e) => {
                self.record(
                    principal,
                    &name,
                    "ApplyNamespace",
                    tonic::Code::FailedPrecondition,
                    0,
                    started,
                )
                .await;
                return Err(ManageError::Open(ConfigError::new(&source, "backend", e)));
            }
        };
        let version = match self.store.put(&name, yaml, expected_version).await {
            Ok(version) => version,
            Err(e) => {
                crate::registry::close_backends(&name, ns.released_by(current.as_deref())).await;
                let status: tonic::Status = ManageError::Store(e.clone()).into();
                self.record(
                    principal,
                    &name,
                    "ApplyNamespace",
                    status.code(),
                    0,
                    started,
                )
                .await;
                return Err(ManageError::Store(e));
            }
        };
        ns.version = version;
        // The store may name it differently (a file path).
        ns.config.source = self.source_of(&name).await.unwrap_or(source);
        let ns = Arc::new(ns);
        let previous = self.registry.replace(ns.clone());
        self.retire(previous, Some(&ns));
        self.rejected.lock().expect("rejected lock").remove(&name);
        tracing::info!(namespace = %name, version, principal, "namespace applied");
        self.record(
            principal,
            &name,
            "ApplyNamespace",
            tonic::Code::Ok,
            version,
            started,
        )
        .await;
        outcome.version = version;
        Ok(outcome)
    }

    /// Where the store keeps `name` (a file path for a directory).
    async fn source_of(&self, name: &str) -> Option<String> {
        self.store
            .list()
            .await
            .ok()?
            .into_iter()
            .find(|n| n.name == name)
            .map(|n| n.source)
    }

    /// Stops serving `name` and removes it from the store: new calls get
    /// NOT_FOUND, calls in flight finish (up to the grace period), then
    /// its backend is closed. Returns the deletion's version.
    pub async fn delete(
        &self,
        name: &str,
        expected_version: Option<u64>,
        principal: &str,
    ) -> Result<u64, ManageError> {
        let started = Instant::now();
        let _guard = self.changes.lock().await;
        if self.registry.get(name).is_none() {
            return Err(ManageError::NotFound(name.to_string()));
        }
        let version = match self.store.delete(name, expected_version).await {
            Ok(v) => v,
            Err(e) => {
                let status: tonic::Status = ManageError::Store(e.clone()).into();
                self.record(
                    principal,
                    name,
                    "DeleteNamespace",
                    status.code(),
                    0,
                    started,
                )
                .await;
                return Err(e.into());
            }
        };
        if let Some(old) = self.registry.remove(name) {
            let backends = old.raw_backends();
            // Streams end now (they would hold the version through the
            // grace period), and a migration stops and forgets its state.
            old.release(&backends);
            if let Some(ended) = &old.migration {
                ended.shared.stop();
                if let Err(e) = ended.shared.queue.clear(name).await {
                    tracing::warn!(namespace = %name, error = %e, "could not clear the ended migration's state");
                }
            }
            drain_and_close(old, backends, self.grace).await;
        }
        self.rejected.lock().expect("rejected lock").remove(name);
        tracing::info!(namespace = %name, version, principal, "namespace deleted");
        self.record(
            principal,
            name,
            "DeleteNamespace",
            tonic::Code::Ok,
            version,
            started,
        )
        .await;
        Ok(version)
    }

    /// Reads the store and applies every difference with the registry.
    pub async fn reload(&self) -> Result<ReloadReport, ManageError> {
        let _guard = self.changes.lock().await;
        let stored = self.store.list().await?;
        let mut report = ReloadReport::default();
        let names: BTreeSet<String> = stored.iter().map(|s| s.name.clone()).collect();
        for entry in stored {
            let started = Instant::now();
            let current = self.registry.get(&entry.name);
            if current
                .as_ref()
                .is_some_and(|c| c.version == entry.version && c.config.yaml == entry.yaml)
            {
                continue;
            }
            if let Some((version, why)) = self
                .rejected
                .lock()
                .expect("rejected lock")
                .get(&entry.name)
                && *version == entry.version
            {
                report.rejected.push((entry.name.clone(), why.clone()));
                continue;
            }
            match self.open_stored(&entry, current.as_deref()).await {
                Ok(ns) => {
                    let ns = Arc::new(ns);
                    let previous = self.registry.replace(ns.clone());
                    self.retire(previous, Some(&ns));
                    self.rejected
                        .lock()
                        .expect("rejected lock")
                        .remove(&entry.name);
                    tracing::info!(
                        namespace = %entry.name,
                        version = entry.version,
                        source = %entry.source,
                        "namespace change applied from the config store"
                    );
                    self.record(
                        STORE_PRINCIPAL,
                        &entry.name,
                        "LoadNamespace",
                        tonic::Code::Ok,
                        entry.version,
                        started,
                    )
                    .await;
                    report.applied.push(entry.name.clone());
                }
                Err(why) => {
                    tracing::error!(
                        namespace = %entry.name,
                        version = entry.version,
                        error = %why,
                        serving = current.as_ref().map_or(0, |c| c.version),
                        "namespace change rejected; the previous version keeps serving"
                    );
                    self.record(
                        STORE_PRINCIPAL,
                        &entry.name,
                        "LoadNamespace",
                        tonic::Code::InvalidArgument,
                        0,
                        started,
                    )
                    .await;
                    self.rejected
                        .lock()
                        .expect("rejected lock")
                        .insert(entry.name.clone(), (entry.version, why.clone()));
                    report.rejected.push((entry.name.clone(), why));
                }
            }
        }
        for ns in self.registry.list() {
            let name = ns.config.name.clone();
            if names.contains(&name) {
                continue;
            }
            drop(ns);
            let started = Instant::now();
            if let Some(old) = self.registry.remove(&name) {
                tracing::info!(namespace = %name, "namespace removed from the config store; draining");
                self.retire(Some(old), None);
                self.record(
                    STORE_PRINCIPAL,
                    &name,
                    "UnloadNamespace",
                    tonic::Code::Ok,
                    0,
                    started,
                )
                .await;
                report.removed.push(name);
            }
        }
        self.rejected
            .lock()
            .expect("rejected lock")
            .retain(|name, _| names.contains(name));
        Ok(report)
    }

    /// The rejected versions still in the store: name → why.
    pub fn rejected(&self) -> Vec<(String, ConfigError)> {
        self.rejected
            .lock()
            .expect("rejected lock")
            .iter()
            .map(|(n, (_, e))| (n.clone(), e.clone()))
            .collect()
    }

    async fn open_stored(
        &self,
        entry: &StoredNamespace,
        current: Option<&Namespace>,
    ) -> Result<Namespace, ConfigError> {
        let config = self.parse(&entry.source, &entry.yaml).await?;
        if config.name != entry.name {
            return Err(ConfigError::new(
                &entry.source,
                "name",
                format!(
                    "is '{}' but the store holds it under '{}'; apply it again with \
                     `prismctl namespace apply`",
                    config.name, entry.name
                ),
            ));
        }
        Namespace::open(
            config,
            entry.version,
            current,
            &self.resolver,
            &self.data_dir,
            self.clock.clone(),
        )
        .await
        .map_err(|e| ConfigError::new(&entry.source, "backend", e))
    }

    /// Opens every namespace in the store for start-up: the ones that
    /// fail are reported (and retried on the next change), not fatal, so
    /// one bad entry in a shared store does not stop a proxy.
    pub async fn load_initial(&self) -> Result<ReloadReport, ManageError> {
        self.reload().await
    }

    /// Closes `previous`'s backend once its calls finished, unless `next`
    /// shares it. Runs in the background.
    fn retire(&self, previous: Option<Arc<Namespace>>, next: Option<&Arc<Namespace>>) {
        if let Some(next) = next {
            next.activate();
        }
        let Some(previous) = previous else { return };
        // A migration that ended (abort, finalize; a delete ends it in `delete`) stops copying now.
        if let Some(ended) = &previous.migration
            && next.is_none_or(|n| {
                n.migration
                    .as_ref()
                    .is_none_or(|m| !Arc::ptr_eq(&m.shared, &ended.shared))
            })
        {
            ended.shared.stop();
            // Every proxy forgets the ended migration's queue and
            // checkpoint, unless another migration already began (its
            // checkpoint is told apart by `migration.id`).
            if next.is_none_or(|n| n.migration.is_none()) {
                let (queue, name) = (ended.shared.queue.clone(), previous.config.name.clone());
                tokio::spawn(async move {
                    if let Err(e) = queue.clear(&name).await {
                        tracing::warn!(namespace = %name, error = %e, "could not clear the ended migration's state");
                    }
                });
            }
        }
        // Tails follow a `timeseries.log`: a new log ends them even when
        // the store stays.
        if next.is_some_and(|n| {
            n.config.timeseries_settings().log != previous.config.timeseries_settings().log
        }) {
            previous.end_streams();
        }
        let released = previous.released_by(next.map(|n| n.as_ref()));
        if released.is_empty() {
            return;
        }
        // Tails and subscriptions on the old backend end now (their
        // clients reopen them on the next version) rather than hold it
        // through the grace period.
        previous.release(&released);
        let grace = self.grace;
        tokio::spawn(drain_and_close(previous, released, grace));
    }

    async fn record(
        &self,
        principal: &str,
        namespace: &str,
        method: &str,
        code: tonic::Code,
        version: u64,
        started: Instant,
    ) {
        if let Err(e) = self
            .audit
            .admin_change(principal, namespace, method, code, version, started)
            .await
        {
            tracing::error!(
                namespace,
                method,
                version,
                error = %e,
                "could not write the audit record of a namespace change"
            );
        }
    }

    /// Runs until `stop` fires: reloads on every hint from the store's
    /// watch, re-establishing the watch when it ends.
    pub async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut hints = match self.store.watch().await {
                Ok(rx) => {
                    backoff = Duration::from_millis(200);
                    rx
                }
                Err(e) => {
                    tracing::warn!(store = %self.store.describe(), error = %e, "cannot watch the config store; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            // Changes made while the watch was down.
            self.reload_logged("watch started").await;
            loop {
                tokio::select! {
                    hint = hints.recv() => {
                        if hint.is_none() {
                            break;
                        }
                        self.reload_logged("config store changed").await;
                    }
                    _ = stop.changed() => return,
                }
            }
        }
    }

    /// Reloads and logs the outcome (the watcher and SIGHUP).
    pub async fn reload_logged(&self, why: &str) {
        match self.reload().await {
            Ok(report) => {
                if !report.applied.is_empty() || !report.removed.is_empty() {
                    tracing::info!(
                        why,
                        applied = ?report.applied,
                        removed = ?report.removed,
                        "namespaces reloaded"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(why, error = %e, "reading the config store failed; serving what was loaded")
            }
        }
    }
}

/// Waits for `ns`'s calls to finish (up to `grace`), then closes
/// `backends` (those of its backends the next version does not hold).
async fn drain_and_close(ns: Arc<Namespace>, backends: Vec<DalBackend>, grace: Duration) {
    if !ns.drained(grace).await {
        tracing::warn!(
            namespace = %ns.config.name,
            grace_secs = grace.as_secs(),
            "calls still running after the grace period; closing the old backend anyway"
        );
    }
    crate::registry::close_backends(&ns.config.name, backends).await;
}

#[cfg(test)]
mod tests;
