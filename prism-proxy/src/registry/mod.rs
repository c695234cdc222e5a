//! The namespace registry: namespace name → configuration and open
//! backend. Lookups are lock-free (an atomically swapped map), so the
//! registry can be replaced while requests are in flight.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use pattern_core::grpc::process::PatternProcess;
use pattern_core::pubsub::PubSubBackend;
use pattern_core::timeseries::{LoggedTimeSeries, TimeSeriesBackend};
use pattern_core::{Capabilities, Clock, KeyValueBackend};

use crate::backend::{DalBackend, wrong_dal};
use crate::config::{BackendSpec, ConfigError, MigrationPhase, NamespaceConfig};
use crate::error::ProxyError;
use crate::migration::{MigrationShared, Roles, ShadowedKv, ShadowedTs};
use crate::resolver::Resolver;

mod open;
mod streams;

pub use open::pattern_binary;
pub(crate) use open::{Opened, open_backend};
use streams::{release_flags, streams_flag};

/// A served namespace.
pub struct Namespace {
    pub config: NamespaceConfig,
    pub backend: DalBackend,
    /// The backend's capabilities, read once when the namespace loaded.
    pub capabilities: Capabilities,
    /// The call limits' state (buckets, calls in flight, breaker), kept
    /// across versions whose call limits are the same.
    pub limits: Arc<crate::limits::NamespaceLimits>,
    /// The supervised pattern process, in `process` mode.
    pub pattern: Option<Arc<PatternProcess>>,
    /// Where the pattern listens, in `process` and `remote` modes.
    pub endpoint: Option<String>,
    /// The config store's version of this definition.
    pub version: u64,
    /// When this proxy started serving this version.
    pub applied_at: SystemTime,
    /// TimeSeries retention, while this version is served.
    _retention: Option<crate::retention::RetentionTask>,
    /// The two backends and the shared state of a migration in progress
    /// (`backend` is then the [`crate::migration::ShadowedKv`] or
    /// [`crate::migration::ShadowedTs`] over them).
    pub migration: Option<MigrationBackends>,
    /// Without a migration: the backend instance itself, under the
    /// TimeSeries log wrapper if there is one (to share and to close).
    raw: Option<DalBackend>,
    /// One flag per backend of [`Namespace::raw_backends`], shared by
    /// every version holding that backend, set when the backend is
    /// released (a later version runs on another one, or the namespace was
    /// deleted): streams opened on a version reading from it then end, so
    /// their clients reopen them on the version serving.
    released: Vec<Arc<tokio::sync::watch::Sender<bool>>>,
    /// Set when the streams of this version must end although its
    /// backends stay: its `timeseries.log` changed (tails follow the log).
    /// Shared by the versions with the same log.
    streams_ended: Arc<tokio::sync::watch::Sender<bool>>,
}

/// The backend instances a version holds: both sides of a migration, or
/// the one under its wrappers (`raw`), else `backend` itself.
fn raw_of(
    migration: Option<&MigrationBackends>,
    raw: Option<&DalBackend>,
    backend: &DalBackend,
) -> Vec<DalBackend> {
    match migration {
        Some(m) => vec![m.source.clone(), m.target.clone()],
        None => vec![raw.unwrap_or(backend).clone()],
    }
}

/// Closes the backends of `opened` that `previous` does not hold (a
/// version that failed to open releases only what it opened itself).
async fn close_new(previous: Option<&Namespace>, opened: &[DalBackend]) {
    let held = previous.map(|p| p.raw_backends()).unwrap_or_default();
    for b in opened {
        if !held.iter().any(|h| h.same(b)) {
            let _ = b.close().await;
        }
    }
}

/// The backends of a migrating namespace.
#[derive(Clone)]
pub struct MigrationBackends {
    /// `backend` of the namespace file: the primary until promotion.
    pub source: DalBackend,
    /// `migration.to`.
    pub target: DalBackend,
    pub shared: Arc<MigrationShared>,
    /// The target's supervised pattern process and endpoint, when it runs
    /// in `process` or `remote` mode.
    pub target_pattern: Option<Arc<PatternProcess>>,
    pub target_endpoint: Option<String>,
}

impl Namespace {
    /// The backend instances this version holds (both sides of a
    /// migration), for closing.
    pub fn raw_backends(&self) -> Vec<DalBackend> {
        raw_of(self.migration.as_ref(), self.raw.as_ref(), &self.backend)
    }

    /// An open backend of `previous` configured as `spec` (for `config`'s
    /// DAL and bucket), with its pattern process, to share rather than open
    /// again.
    fn reusable(
        previous: Option<&Namespace>,
        config: &NamespaceConfig,
        spec: &BackendSpec,
    ) -> Option<Opened> {
        let prev = previous?;
        if prev.config.dal != config.dal
            || !config.dal.module().reusable
            || prev.config.timeseries_settings().bucket != config.timeseries_settings().bucket
        {
            return None;
        }
        let as_source = || (prev.pattern.clone(), prev.endpoint.clone());
        match &prev.migration {
            Some(m) if prev.config.backend == *spec => {
                let (p, e) = as_source();
                Some((m.source.clone(), p, e))
            }
            Some(m)
                if prev
                    .config
                    .migration
                    .as_ref()
                    .is_some_and(|c| c.to == *spec) =>
            {
                Some((
                    m.target.clone(),
                    m.target_pattern.clone(),
                    m.target_endpoint.clone(),
                ))
            }
            None if prev.config.backend == *spec => {
                let (p, e) = as_source();
                Some((prev.raw_backends().pop()?, p, e))
            }
            _ => None,
        }
    }
}

impl Namespace {
    /// Opens `config`'s backend, or shares `previous`'s when the backend
    /// section is unchanged (a change of policy, limits, schema or
    /// description keeps the backend, its data and its connections).
    pub async fn open(
        config: NamespaceConfig,
        version: u64,
        previous: Option<&Namespace>,
        resolver: &Resolver,
        data_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Namespace, String> {
        let limits = match previous {
            Some(prev) if prev.limits.same_config(&config) => prev.limits.clone(),
            _ => Arc::new(crate::limits::NamespaceLimits::new(&config)),
        };
        if let Some(prev) = previous
            && prev.config.backend == config.backend
            && prev.config.dal == config.dal
            && prev.config.timeseries_settings().bucket == config.timeseries_settings().bucket
            && prev.config.timeseries_settings().log == config.timeseries_settings().log
            && prev.config.migration == config.migration
        {
            let retention = crate::retention::RetentionTask::start(&config, &prev.backend);
            return Ok(Namespace {
                config,
                backend: prev.backend.clone(),
                capabilities: prev.capabilities,
                limits,
                pattern: prev.pattern.clone(),
                endpoint: prev.endpoint.clone(),
                version,
                applied_at: SystemTime::now(),
                _retention: retention,
                migration: prev.migration.clone(),
                raw: prev.raw.clone(),
                released: prev.released.clone(),
                streams_ended: prev.streams_ended.clone(),
            });
        }
        // The log opens first: nothing is opened (or shared) yet if it fails.
        let log = match &config.timeseries_settings().log {
            Some(log) if config.dal == crate::dal::TIMESERIES => Some(
                log.open(&config.name)
                    .map_err(|e| format!("timeseries.log: {e}"))?,
            ),
            _ => None,
        };
        let with_log = |b: DalBackend| match (&log, b) {
            (Some(log), DalBackend::TimeSeries(store)) => {
                DalBackend::TimeSeries(Arc::new(LoggedTimeSeries::new(store, log.clone())))
            }
            (_, b) => b,
        };
        let mut migration = None;
        let mut raw = None;
        let (backend, pattern, endpoint) = {
            {
                let (source, p, e) = match Self::reusable(previous, &config, &config.backend) {
                    Some(opened) => opened,
                    None => open_backend(&config, resolver, data_dir, clock.clone()).await?,
                };
                match &config.migration {
                    None => {
                        raw = Some(source.clone());
                        (with_log(source), p, e)
                    }
                    Some(m) => {
                        let (target, target_pattern, target_endpoint) =
                            match Self::reusable(previous, &config, &m.to) {
                                Some(opened) => opened,
                                None => {
                                    let mut target_config = config.clone();
                                    target_config.backend = m.to.clone();
                                    match open_backend(&target_config, resolver, data_dir, clock)
                                        .await
                                    {
                                        Ok(opened) => opened,
                                        Err(err) => {
                                            close_new(previous, &[source]).await;
                                            return Err(format!("migration.to: {err}"));
                                        }
                                    }
                                }
                            };
                        // The shared state follows this version's roles and
                        // phase once it serves (`activate`), not before: the
                        // version may not be committed.
                        let started =
                            Roles::for_phase(m.phase, &source, &target).and_then(|roles| {
                                // The same migration (target and id) shares its
                                // state across versions; another one starts anew.
                                let same = previous.and_then(|p| {
                                    let c = p.config.migration.as_ref()?;
                                    (c.to == m.to && c.id == m.id).then_some(p.migration.as_ref()?)
                                });
                                let shared = match same {
                                    Some(prev) => prev.shared.clone(),
                                    None => MigrationShared::start_for(
                                        &config.name,
                                        m.id.clone(),
                                        data_dir,
                                        roles.clone(),
                                    )?,
                                };
                                Ok((roles, shared))
                            });
                        let (roles, shared) = match started {
                            Ok(started) => started,
                            Err(err) => {
                                close_new(previous, &[source, target]).await;
                                return Err(err);
                            }
                        };
                        let sample = if m.phase >= MigrationPhase::ShadowRead {
                            m.read_sample
                        } else {
                            0.0
                        };
                        let served = match roles {
                            Roles::KeyValue(r) => DalBackend::KeyValue(Arc::new(
                                ShadowedKv::new(r, shared.clone()).comparing(sample),
                            )),
                            Roles::TimeSeries(r) => DalBackend::TimeSeries(Arc::new(
                                ShadowedTs::new(r, shared.clone()).comparing(sample),
                            )),
                        };
                        migration = Some(MigrationBackends {
                            source,
                            target,
                            shared,
                            target_pattern,
                            target_endpoint,
                        });
                        (with_log(served), p, e)
                    }
                }
            }
        };
        let capabilities = backend.capabilities();
        if config.dal == crate::dal::TIMESERIES
            && config.timeseries_settings().retention.is_some()
            && !capabilities.has(pattern_core::Capability::Retention)
        {
            let opened = raw_of(migration.as_ref(), raw.as_ref(), &backend);
            close_new(previous, &opened).await;
            return Err(format!(
                "timeseries.retention is set but backend '{}' cannot drop old buckets (it lacks \
                 the retention capability); remove the retention or use memstore, sqlite or \
                 postgres",
                backend.kind()
            ));
        }
        let retention = crate::retention::RetentionTask::start(&config, &backend);
        tracing::info!(
            namespace = %config.name,
            backend = backend.kind(),
            mode = config.backend.mode.name(),
            chosen_by = if config.selection.is_some() { "needs" } else { "backend" },
            capabilities = ?capabilities.names(),
            version,
            "namespace backend opened"
        );
        let streams_ended = streams_flag(previous, &config);
        let raws = raw_of(migration.as_ref(), raw.as_ref(), &backend);
        Ok(Namespace {
            config,
            backend,
            capabilities,
            limits,
            pattern,
            endpoint,
            version,
            applied_at: SystemTime::now(),
            _retention: retention,
            migration,
            raw,
            released: release_flags(previous, &raws),
            streams_ended,
        })
    }

    /// Makes this version's migration phase the one running, once the
    /// version serves: the repair task follows its roles, the backfill
    /// runs in `backfill` and stops in the other phases.
    pub fn activate(&self) {
        if let (Some(m), Some(c)) = (&self.migration, &self.config.migration)
            && let Ok(roles) = Roles::for_phase(c.phase, &m.source, &m.target)
        {
            m.shared.set_roles(roles);
            m.shared.set_phase(c.phase, c.backfill_rate);
        }
    }

    /// Whether `other` holds every backend instance of this version.
    pub fn shares_backend(&self, other: &Namespace) -> bool {
        self.released_by(Some(other)).is_empty()
    }

    /// The backends of this version that `next` does not hold: what to
    /// close once this version's calls have finished.
    pub fn released_by(&self, next: Option<&Namespace>) -> Vec<DalBackend> {
        let kept = next.map(|n| n.raw_backends()).unwrap_or_default();
        self.raw_backends()
            .into_iter()
            .filter(|b| !kept.iter().any(|k| k.same(b)))
            .collect()
    }

    /// The KeyValue backend, or FAILED_PRECONDITION naming the DAL served.
    pub fn kv(&self) -> Result<&Arc<dyn KeyValueBackend>, ProxyError> {
        match &self.backend {
            DalBackend::KeyValue(b) => Ok(b),
            other => Err(wrong_dal(
                &self.config.name,
                other.dal(),
                crate::dal::KEYVALUE,
            )),
        }
    }

    /// The TimeSeries backend, or FAILED_PRECONDITION naming the DAL served.
    pub fn timeseries(&self) -> Result<&Arc<dyn TimeSeriesBackend>, ProxyError> {
        match &self.backend {
            DalBackend::TimeSeries(b) => Ok(b),
            other => Err(wrong_dal(
                &self.config.name,
                other.dal(),
                crate::dal::TIMESERIES,
            )),
        }
    }

    /// The PubSub backend, or FAILED_PRECONDITION naming the DAL served.
    pub fn pubsub(&self) -> Result<&Arc<dyn PubSubBackend>, ProxyError> {
        match &self.backend {
            DalBackend::PubSub(b) => Ok(b),
            other => Err(wrong_dal(
                &self.config.name,
                other.dal(),
                crate::dal::PUBSUB,
            )),
        }
    }

    /// Waits until no call holds this namespace any more (the registry no
    /// longer lists it and calls in flight have finished), up to `grace`.
    /// Returns whether it drained.
    pub async fn drained(self: &Arc<Self>, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        // `self` is one reference; the caller holds it.
        while Arc::strong_count(self) > 1 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Closes the backend; logs (never fails on) a close error.
    pub async fn close(&self) {
        close_namespaces(std::iter::once(self)).await;
    }
}

/// All served namespaces.
pub struct Registry {
    namespaces: ArcSwap<BTreeMap<String, Arc<Namespace>>>,
}

impl Registry {
    /// Opens the backend of every namespace (`(config, version)`). The
    /// first failure stops start-up with an error naming the namespace's
    /// file and the field.
    pub async fn open(
        configs: &[(NamespaceConfig, u64)],
        resolver: &Resolver,
        data_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let plain: Vec<NamespaceConfig> = configs.iter().map(|(c, _)| c.clone()).collect();
        resolver.check_all(&plain)?;
        let mut map: BTreeMap<String, Arc<Namespace>> = BTreeMap::new();
        for (config, version) in configs {
            let opened = Namespace::open(
                config.clone(),
                *version,
                None,
                resolver,
                data_dir,
                clock.clone(),
            )
            .await;
            match opened {
                Ok(ns) => {
                    ns.activate();
                    map.insert(config.name.clone(), Arc::new(ns));
                }
                Err(e) => {
                    // Namespaces opened so far may own pattern processes.
                    close_namespaces(map.values().map(|n| n.as_ref())).await;
                    return Err(ConfigError::new(&config.source, "backend", e));
                }
            }
        }
        Ok(Registry {
            namespaces: ArcSwap::from_pointee(map),
        })
    }

    /// A registry serving nothing yet.
    pub fn empty() -> Self {
        Registry {
            namespaces: ArcSwap::from_pointee(BTreeMap::new()),
        }
    }

    /// The namespace called `name`, if served.
    pub fn get(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.load().get(name).cloned()
    }

    /// Serves `ns` in place of the namespace of the same name (atomically:
    /// each call sees the old or the new one); returns the one replaced.
    pub fn replace(&self, ns: Arc<Namespace>) -> Option<Arc<Namespace>> {
        let name = ns.config.name.clone();
        let mut previous = None;
        self.namespaces.rcu(|map| {
            let mut map = BTreeMap::clone(map);
            previous = map.insert(name.clone(), ns.clone());
            map
        });
        previous
    }

    /// Stops serving `name`; returns it. Calls already holding it finish.
    pub fn remove(&self, name: &str) -> Option<Arc<Namespace>> {
        let mut removed = None;
        self.namespaces.rcu(|map| {
            let mut map = BTreeMap::clone(map);
            removed = map.remove(name);
            map
        });
        removed
    }

    /// The namespace called `name`, or NOT_FOUND listing every known one
    /// (for operators; a data-plane caller gets [`Registry::lookup_as`]).
    pub fn lookup(&self, name: &str) -> Result<Arc<Namespace>, ProxyError> {
        self.lookup_as(name, |_| true)
    }

    /// The namespace called `name` if `visible` accepts it (the caller
    /// holds a permission on it), else NOT_FOUND listing only the known
    /// namespaces `visible` accepts. A namespace the caller may not see is
    /// answered exactly as one that does not exist, so a caller can neither
    /// list nor probe for what else the proxy serves.
    pub fn lookup_as(
        &self,
        name: &str,
        visible: impl Fn(&Namespace) -> bool,
    ) -> Result<Arc<Namespace>, ProxyError> {
        let map = self.namespaces.load();
        map.get(name)
            .filter(|ns| visible(ns))
            .cloned()
            .ok_or_else(|| ProxyError::NamespaceNotFound {
                name: name.to_string(),
                known: map
                    .iter()
                    .filter(|(_, ns)| visible(ns))
                    .map(|(name, _)| name.clone())
                    .collect(),
            })
    }

    /// Every namespace, by name.
    pub fn list(&self) -> Vec<Arc<Namespace>> {
        self.namespaces.load().values().cloned().collect()
    }

    /// Closes every backend (draining pattern processes); logs (never
    /// fails on) close errors.
    pub async fn close_all(&self) {
        let all = self.list();
        // Namespaces sharing a backend (none today) close it once.
        close_namespaces(all.iter().map(|n| n.as_ref())).await;
    }
}

async fn close_namespaces<'a>(namespaces: impl Iterator<Item = &'a Namespace>) {
    for ns in namespaces {
        close_backends(&ns.config.name, ns.raw_backends()).await;
    }
}

/// Closes `backends` of namespace `name`; logs (never fails on) errors.
pub async fn close_backends(name: &str, backends: Vec<DalBackend>) {
    for backend in backends {
        if let Err(e) = backend.close().await {
            tracing::warn!(namespace = %name, backend = backend.kind(), error = %e, "closing backend failed");
        } else {
            tracing::info!(namespace = %name, backend = backend.kind(), "backend closed");
        }
    }
}
