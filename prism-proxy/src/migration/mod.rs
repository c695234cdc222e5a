//! Moving a KeyValue or TimeSeries namespace to another backend while it
//! serves (ADR-016): the shadowed backends that dual-write, the durable
//! queue of ids (KeyValue) or events (TimeSeries) to repair, the task that
//! repairs them, and the backfill.

mod backfill;
mod compare;
mod locks;
pub(crate) mod queue;
mod repair;
mod series;
mod series_copy;
#[cfg(test)]
mod series_tests;
mod shadowed;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use pattern_core::timeseries::TimeSeriesBackend;
use pattern_core::{BackendError, KeyValueBackend};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::audit::KeyHasher;
use crate::backend::DalBackend;
use crate::config::MigrationPhase;
pub use compare::MismatchSample;
pub use locks::IdLocks;
pub use queue::{Checkpoint, RepairQueue};
pub use repair::{Repaired, items_of, repair, same_item};
pub use series::ShadowedTs;
pub use shadowed::ShadowedKv;

/// Which backend is primary in a phase: the source until `promoted`.
pub struct Pair<B: ?Sized> {
    pub primary: Arc<B>,
    pub shadow: Arc<B>,
}

impl<B: ?Sized> Clone for Pair<B> {
    fn clone(&self) -> Self {
        Pair {
            primary: self.primary.clone(),
            shadow: self.shadow.clone(),
        }
    }
}

impl<B: ?Sized> Pair<B> {
    pub fn for_phase(phase: MigrationPhase, source: &Arc<B>, target: &Arc<B>) -> Self {
        let (primary, shadow) = if phase == MigrationPhase::Promoted {
            (target.clone(), source.clone())
        } else {
            (source.clone(), target.clone())
        };
        Pair { primary, shadow }
    }
}

/// The primary and the shadow of a KeyValue namespace.
pub type KvRoles = Pair<dyn KeyValueBackend>;
/// The primary and the shadow of a TimeSeries namespace.
pub type TsRoles = Pair<dyn TimeSeriesBackend>;

/// The primary and the shadow, of the namespace's DAL.
#[derive(Clone)]
pub enum Roles {
    KeyValue(KvRoles),
    TimeSeries(TsRoles),
}

impl Roles {
    /// The roles of `source` and `target` in `phase`.
    pub fn for_phase(
        phase: MigrationPhase,
        source: &DalBackend,
        target: &DalBackend,
    ) -> Result<Roles, String> {
        match (source, target) {
            (DalBackend::KeyValue(s), DalBackend::KeyValue(t)) => {
                Ok(Pair::for_phase(phase, s, t).into())
            }
            (DalBackend::TimeSeries(s), DalBackend::TimeSeries(t)) => {
                Ok(Pair::for_phase(phase, s, t).into())
            }
            _ => Err(format!(
                "a {} namespace cannot migrate to a {} backend",
                source.dal().name(),
                target.dal().name()
            )),
        }
    }
}

impl From<KvRoles> for Roles {
    fn from(p: KvRoles) -> Self {
        Roles::KeyValue(p)
    }
}

impl From<TsRoles> for Roles {
    fn from(p: TsRoles) -> Self {
        Roles::TimeSeries(p)
    }
}

/// A count kept in the process and exported at `/metrics`.
pub struct Counter {
    value: AtomicU64,
    metric: &'static str,
    namespace: String,
}

impl Counter {
    fn new(metric: &'static str, namespace: &str) -> Self {
        Counter {
            value: AtomicU64::new(0),
            metric,
            namespace: namespace.to_string(),
        }
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(self.metric, "namespace" => self.namespace.clone()).increment(n);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// What a migration counted in this proxy.
pub struct Counters {
    /// Shadow writes that succeeded.
    pub shadow_writes: Counter,
    /// Shadow writes that failed (their ids were queued).
    pub shadow_failures: Counter,
    /// Queued ids repaired.
    pub repaired: Counter,
    /// Sampled reads compared with the shadow.
    pub compared: Counter,
    /// Compared reads that differed (after a re-check).
    pub mismatches: Counter,
}

/// The state of one namespace's migration in this proxy, shared by every
/// served version of it while the migration lasts: the id locks, the
/// repair queue and its task, the counters.
pub struct MigrationShared {
    pub namespace: String,
    /// `migration.id`: the migration this state belongs to.
    pub id: Option<String>,
    pub locks: IdLocks,
    pub queue: Arc<RepairQueue>,
    pub counters: Counters,
    /// The current version's roles, for the repair task.
    roles: ArcSwap<Roles>,
    wake: Notify,
    hasher: KeyHasher,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// The last mismatches found (ids and keys hashed).
    samples: Mutex<std::collections::VecDeque<MismatchSample>>,
    /// The phase and backfill rate of the version served.
    phase: Mutex<Option<(MigrationPhase, Option<u32>)>>,
    /// The backfill's progress, as last saved.
    progress: Mutex<Option<Checkpoint>>,
    /// The running backfill.
    backfill: Mutex<Option<JoinHandle<()>>>,
    /// Why the backfill last failed (it retries).
    backfill_error: Mutex<Option<String>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for MigrationShared {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Longest wait between repair attempts of a failing shadow.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// How often the repair task looks at the queue without being woken.
const POLL: Duration = Duration::from_secs(2);

impl MigrationShared {
    /// Starts the migration state of `namespace` with `roles`, and its
    /// repair task (which picks up ids a previous run of the proxy left
    /// queued).
    pub fn start(
        namespace: &str,
        data_dir: &Path,
        roles: impl Into<Roles>,
    ) -> Result<Arc<Self>, String> {
        Self::start_for(namespace, None, data_dir, roles)
    }

    /// As [`MigrationShared::start`], for migration `id` (`migration.id`):
    /// a saved checkpoint of another migration is not resumed.
    pub fn start_for(
        namespace: &str,
        id: Option<String>,
        data_dir: &Path,
        roles: impl Into<Roles>,
    ) -> Result<Arc<Self>, String> {
        let queue = shared_queue(data_dir)?;
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| "no randomness for the migration's id hashing".to_string())?;
        let shared = Arc::new(MigrationShared {
            namespace: namespace.to_string(),
            id,
            locks: IdLocks::default(),
            queue,
            counters: Counters {
                shadow_writes: Counter::new("prism_migration_shadow_writes_total", namespace),
                shadow_failures: Counter::new("prism_migration_shadow_failures_total", namespace),
                repaired: Counter::new("prism_migration_repairs_total", namespace),
                compared: Counter::new("prism_migration_reads_compared_total", namespace),
                mismatches: Counter::new("prism_migration_mismatches_total", namespace),
            },
            samples: Mutex::new(std::collections::VecDeque::new()),
            phase: Mutex::new(None),
            progress: Mutex::new(None),
            backfill: Mutex::new(None),
            backfill_error: Mutex::new(None),
            roles: ArcSwap::from_pointee(roles.into()),
            wake: Notify::new(),
            hasher: KeyHasher::from_secret(&secret),
            worker: Mutex::new(None),
        });
        let task = tokio::spawn(repair_loop(Arc::downgrade(&shared)));
        *shared.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(shared)
    }

    /// The migration ended (aborted or finalized): stops the backfill and
    /// the repair task now rather than when the last old version is gone.
    pub fn stop(&self) {
        for task in [locked(&self.worker).take(), locked(&self.backfill).take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }

    /// Sets the roles of the version now served.
    pub fn set_roles(&self, roles: impl Into<Roles>) {
        self.roles.store(Arc::new(roles.into()));
    }

    /// The roles of the version now served.
    pub fn roles(&self) -> Roles {
        Roles::clone(&self.roles.load_full())
    }

    /// The roles of the version now served, of a KeyValue namespace.
    pub(crate) fn kv_roles(&self) -> Result<KvRoles, String> {
        match self.roles() {
            Roles::KeyValue(p) => Ok(p),
            Roles::TimeSeries(_) => Err(format!("'{}' serves TimeSeries", self.namespace)),
        }
    }

    /// The roles of the version now served, of a TimeSeries namespace.
    pub(crate) fn ts_roles(&self) -> Result<TsRoles, String> {
        match self.roles() {
            Roles::TimeSeries(p) => Ok(p),
            Roles::KeyValue(_) => Err(format!("'{}' serves KeyValue", self.namespace)),
        }
    }

    /// Follows the phase of the version now served: runs the backfill in
    /// `backfill` (once to its end, retrying after failures), stops it in
    /// any other phase.
    pub fn set_phase(self: &Arc<Self>, phase: MigrationPhase, backfill_rate: Option<u32>) {
        let before = locked(&self.phase)
            .replace((phase, backfill_rate))
            .map(|(p, _)| p);
        // Rolled back into backfill (from shadow-read or promoted): copy
        // again from the start.
        let again = phase == MigrationPhase::Backfill && before.is_some_and(|p| p > phase);
        let mut task = locked(&self.backfill);
        if phase != MigrationPhase::Backfill {
            if let Some(t) = task.take() {
                t.abort();
            }
            return;
        }
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let weak = Arc::downgrade(self);
        *task = Some(tokio::spawn(async move {
            let mut pause = MIN_BACKOFF * 10;
            if again && let Some(s) = weak.upgrade() {
                *locked(&s.progress) = None;
                if let Err(e) = s.queue.clear_checkpoint(&s.namespace).await {
                    tracing::error!(namespace = %s.namespace, error = %e, "could not restart the backfill");
                }
            }
            loop {
                let Some(s) = weak.upgrade() else { return };
                let rate = locked(&s.phase).and_then(|(_, r)| r);
                let run = match s.roles() {
                    Roles::KeyValue(_) => backfill::run(s.clone(), rate).await,
                    Roles::TimeSeries(_) => series_copy::backfill(s.clone(), rate).await,
                };
                match run {
                    Ok(()) => {
                        *locked(&s.backfill_error) = None;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(namespace = %s.namespace, error = %e, "backfill failed; retrying");
                        *locked(&s.backfill_error) = Some(e);
                    }
                }
                drop(s);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_BACKOFF);
            }
        }));
    }

    pub(crate) fn set_progress(&self, cp: Checkpoint) {
        let labels = [("namespace", self.namespace.clone())];
        metrics::gauge!("prism_migration_backfill_items", &labels).set(cp.items as f64);
        metrics::gauge!("prism_migration_backfill_bytes", &labels).set(cp.bytes as f64);
        if let Some(total) = cp.total {
            metrics::gauge!("prism_migration_backfill_total_items", &labels).set(total as f64);
        }
        let now = now_ms();
        metrics::gauge!("prism_migration_backfill_items_per_second", &labels)
            .set(cp.items_per_second(now));
        if let Some(eta) = cp.eta_seconds(now) {
            metrics::gauge!("prism_migration_backfill_eta_seconds", &labels).set(eta);
        }
        *locked(&self.progress) = Some(cp);
    }

    /// Saves the backfill's checkpoint and shows it as its progress.
    pub(crate) async fn save_progress(&self, cp: &Checkpoint) -> Result<(), String> {
        self.queue.save_checkpoint(&self.namespace, cp).await?;
        self.set_progress(cp.clone());
        Ok(())
    }

    /// The backfill's progress in this proxy: the checkpoint in memory, or
    /// the saved one of this migration.
    pub async fn progress(&self) -> Result<Option<Checkpoint>, String> {
        if let Some(cp) = locked(&self.progress).clone() {
            return Ok(Some(cp));
        }
        let saved = self.queue.checkpoint(&self.namespace).await?;
        Ok(saved.filter(|cp| cp.migration == self.id))
    }

    /// Why the backfill last failed, while it retries.
    pub fn backfill_error(&self) -> Option<String> {
        locked(&self.backfill_error).clone()
    }

    /// The last mismatches found, newest last.
    pub fn mismatch_samples(&self) -> Vec<MismatchSample> {
        locked(&self.samples).iter().cloned().collect()
    }

    /// An id as it may appear in logs.
    pub fn hashed(&self, id: &str) -> String {
        self.hasher.hash(id.as_bytes())
    }

    /// A key as it may appear in logs.
    pub fn hashed_key(&self, key: &[u8]) -> String {
        self.hasher.hash(key)
    }

    /// A shadow write failed: count, log (ids hashed), queue for repair.
    pub(crate) async fn shadow_failed(&self, ids: Vec<String>, error: &BackendError) {
        self.counters.shadow_failures.inc();
        tracing::warn!(
            namespace = %self.namespace,
            ids = ?ids.iter().map(|id| self.hashed(id)).collect::<Vec<_>>(),
            error = %error,
            "shadow write failed; the id is queued for repair"
        );
        self.queue_repairs(ids).await;
    }

    /// Queues `ids` for the repair task (not a failure: the repair
    /// decides what to copy).
    pub(crate) async fn queue_repairs(&self, ids: Vec<String>) {
        if let Err(e) = self.queue.push(&self.namespace, ids).await {
            tracing::error!(namespace = %self.namespace, error = %e, "could not queue a repair");
        }
        self.wake.notify_one();
    }

    /// Ids waiting for repair.
    pub async fn queued(&self) -> Result<u64, String> {
        self.queue.len(&self.namespace).await
    }

    /// Repairs up to `limit` queued ids; returns how many were repaired and
    /// whether one failed.
    async fn repair_some(&self, limit: usize) -> Result<(usize, bool), String> {
        let ids = self.queue.pending_attempts(&self.namespace, limit).await?;
        let mut repaired = 0;
        for (id, attempts) in &ids {
            let result = match self.roles() {
                Roles::KeyValue(roles) => {
                    let _lock = self.locks.lock(id).await;
                    repair(roles.primary.as_ref(), roles.shadow.as_ref(), id, now_ms())
                        .await
                        .map(|_| ())
                }
                Roles::TimeSeries(roles) => series_copy::repair(&roles, id, *attempts).await,
            };
            match result {
                Ok(_) => {
                    self.queue.done(&self.namespace, id).await?;
                    self.counters.repaired.inc();
                    repaired += 1;
                }
                Err(e) => {
                    tracing::warn!(
                        namespace = %self.namespace,
                        id = %self.hashed(id),
                        error = %e,
                        "repairing the shadow failed; will retry"
                    );
                    self.queue.attempted(&self.namespace, id).await?;
                    return Ok((repaired, true));
                }
            }
        }
        Ok((repaired, false))
    }
}

/// Repairs queued ids until the migration state is dropped.
async fn repair_loop(shared: Weak<MigrationShared>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let woken = s.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let wait = match s.repair_some(64).await {
            Ok((n, false)) if n > 0 => {
                backoff = MIN_BACKOFF;
                continue;
            }
            Ok((_, false)) => None,
            Ok((_, true)) => Some(backoff),
            Err(e) => {
                tracing::error!(namespace = %s.namespace, error = %e, "repair queue failed");
                Some(backoff)
            }
        };
        // `s` stays alive while waiting (at most MAX_BACKOFF or POLL): the
        // migration state is dropped after that.
        match wait {
            Some(pause) => {
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            None => {
                let _ = tokio::time::timeout(POLL, woken).await;
            }
        }
    }
}

/// Runs a dual-write to its end even when the caller stops waiting (the
/// client cancelled, or its deadline passed): a write the primary took is
/// then mirrored or queued all the same.
pub(crate) async fn whole<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, BackendError>> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::spawn(work)
        .await
        .unwrap_or_else(|e| Err(BackendError::Internal(format!("a dual-write stopped: {e}"))))
}

/// The repair queue of `data_dir` (one per data directory in the process).
pub fn queue_for(data_dir: &Path) -> Result<Arc<RepairQueue>, String> {
    shared_queue(data_dir)
}

/// One queue per data directory in the process.
fn shared_queue(data_dir: &Path) -> Result<Arc<RepairQueue>, String> {
    static QUEUES: Mutex<Vec<(std::path::PathBuf, Weak<RepairQueue>)>> = Mutex::new(Vec::new());
    let mut queues = QUEUES.lock().unwrap_or_else(|e| e.into_inner());
    queues.retain(|(_, q)| q.strong_count() > 0);
    if let Some(q) = queues
        .iter()
        .find(|(p, _)| p == data_dir)
        .and_then(|(_, q)| q.upgrade())
    {
        return Ok(q);
    }
    let q = Arc::new(RepairQueue::open(data_dir)?);
    queues.push((data_dir.to_path_buf(), Arc::downgrade(&q)));
    Ok(q)
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
