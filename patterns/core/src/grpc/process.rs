//! Runs a pattern binary as a child process: starts it on a Unix socket,
//! initializes it, restarts it with exponential backoff when it dies, and
//! drains it on shutdown. [`PatternBackend::start`] gives the backend the
//! proxy routes to, of whichever DAL the pattern serves; while the process
//! is down its calls fail fast with UNAVAILABLE instead of waiting.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prism_proto::pattern::v1 as lc;
use prism_proto::pattern::v1::pattern_lifecycle_client::PatternLifecycleClient;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::transport::Channel;

use super::Endpoint;
use super::remote::{Link, PatternBackend, Route, capabilities_from_names, intern_kind};
use crate::capabilities::Capabilities;
use crate::clock::Clock;
use crate::error::BackendError;
use crate::idempotency::Fingerprint;

/// How long to wait between restarts: doubles after each quick failure,
/// back to `initial` once a process stayed up for `reset_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(30),
        }
    }
}

/// Everything needed to run one namespace's pattern process.
#[derive(Debug, Clone)]
pub struct PatternSpec {
    pub namespace: String,
    /// The DAL, e.g. `keyvalue`.
    pub dal: String,
    /// The backend kind, e.g. `redis`.
    pub kind: String,
    /// The namespace's backend options.
    pub options: serde_json::Value,
    /// The namespace's settings for its DAL (TimeSeries:
    /// `{"bucket_ms": N}`); null: defaults.
    pub settings: serde_json::Value,
    pub data_dir: PathBuf,
    /// The pattern binary.
    pub binary: PathBuf,
    /// The Unix socket the pattern listens on.
    pub socket: PathBuf,
    /// How long a start (spawn, connect, Initialize, Start) may take.
    pub start_timeout: Duration,
    pub backoff: Backoff,
    /// Forward this clock to the pattern (started with `--test-clock`).
    /// Tests only.
    pub test_clock: Option<Arc<dyn Clock>>,
}

impl PatternSpec {
    /// A spec with default timeouts and a socket under the system's
    /// temporary directory.
    pub fn new(namespace: &str, kind: &str, binary: impl Into<PathBuf>) -> Self {
        PatternSpec {
            namespace: namespace.to_string(),
            dal: crate::keyvalue::DAL.into(),
            kind: kind.to_string(),
            options: serde_json::Value::Null,
            settings: serde_json::Value::Null,
            data_dir: std::env::temp_dir(),
            binary: binary.into(),
            socket: default_socket_path(namespace),
            start_timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
            test_clock: None,
        }
    }
}

/// A socket path for a namespace's pattern, short enough for the 108-byte
/// limit on Unix socket paths and unique per proxy process and start.
pub fn default_socket_path(namespace: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut fp = Fingerprint::new("socket");
    fp.str(namespace);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "prism-{}-{:012x}-{n}.sock",
        std::process::id(),
        fp.finish() & 0xffff_ffff_ffff
    ))
}

/// Where a pattern process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternState {
    /// Being spawned and initialized.
    Starting,
    /// Serving calls.
    Serving,
    /// Serving, but its last health check reported a problem.
    Degraded,
    /// Died; waiting for the backoff to pass before starting again.
    Restarting,
    /// Draining on shutdown.
    Stopping,
    /// Exited on shutdown.
    Stopped,
}

impl PatternState {
    /// Every state, for metrics.
    pub const ALL: [PatternState; 6] = [
        PatternState::Starting,
        PatternState::Serving,
        PatternState::Degraded,
        PatternState::Restarting,
        PatternState::Stopping,
        PatternState::Stopped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PatternState::Starting => "starting",
            PatternState::Serving => "serving",
            PatternState::Degraded => "degraded",
            PatternState::Restarting => "restarting",
            PatternState::Stopping => "stopping",
            PatternState::Stopped => "stopped",
        }
    }
}

/// A pattern process's state, for `/metrics` and `prismctl health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternStatus {
    pub state: PatternState,
    /// Times the process was restarted after dying.
    pub restarts: u64,
    /// The running process's id.
    pub pid: Option<u32>,
    /// Why the process last died or failed to start, or why it is degraded.
    pub last_error: Option<String>,
}

/// What the pattern said when it was first initialized.
#[derive(Debug, Clone)]
struct Initialized {
    kind: &'static str,
    capabilities: Capabilities,
}

struct Shared {
    spec: PatternSpec,
    status: watch::Sender<PatternStatus>,
    backend: RwLock<Option<Link>>,
}

impl Shared {
    fn set_status(&self, f: impl FnOnce(&mut PatternStatus)) {
        self.status.send_modify(f);
    }

    fn set_backend(&self, backend: Option<Link>) {
        *self.backend.write().unwrap_or_else(|e| e.into_inner()) = backend;
    }
}

/// A running child and the handles to talk to it.
struct Running {
    child: Child,
    /// Held open: the pattern exits when it closes (the proxy died).
    _stdin: Option<tokio::process::ChildStdin>,
    lifecycle: PatternLifecycleClient<Channel>,
    started_at: Instant,
}

type StopRequest = (Duration, oneshot::Sender<String>);

/// A supervised pattern process.
pub struct PatternProcess {
    shared: Arc<Shared>,
    info: Initialized,
    stop: mpsc::Sender<StopRequest>,
}

impl PatternProcess {
    /// Starts the pattern and waits until it serves. Fails with the
    /// pattern's own error when it cannot start (bad options, backend
    /// unreachable, binary missing); no restart is attempted then.
    pub async fn start(spec: PatternSpec) -> Result<Arc<PatternProcess>, BackendError> {
        let shared = Arc::new(Shared {
            status: watch::channel(PatternStatus {
                state: PatternState::Starting,
                restarts: 0,
                pid: None,
                last_error: None,
            })
            .0,
            spec,
            backend: RwLock::new(None),
        });
        let (running, info) = launch(&shared.spec).await?;
        shared.set_backend(Some(remote(&shared.spec, &info)));
        shared.set_status(|s| {
            s.state = PatternState::Serving;
            s.pid = running.child.id();
        });
        tracing::info!(
            namespace = %shared.spec.namespace,
            kind = info.kind,
            pid = running.child.id(),
            socket = %shared.spec.socket.display(),
            "pattern process serving"
        );
        let (stop, stop_rx) = mpsc::channel(1);
        tokio::spawn(supervise(shared.clone(), info.clone(), running, stop_rx));
        Ok(Arc::new(PatternProcess { shared, info, stop }))
    }

    /// The current state.
    pub fn status(&self) -> PatternStatus {
        self.shared.status.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn watch(&self) -> watch::Receiver<PatternStatus> {
        self.shared.status.subscribe()
    }

    /// The namespace served.
    pub fn namespace(&self) -> &str {
        &self.shared.spec.namespace
    }

    /// The socket the pattern listens on.
    pub fn socket(&self) -> &Path {
        &self.shared.spec.socket
    }

    /// Drains the pattern (waiting up to `timeout` for running calls),
    /// stops it and waits for it to exit (killing it if it does not).
    /// Returns a one-line summary. Calling it again is harmless.
    pub async fn shutdown(&self, timeout: Duration) -> String {
        let (tx, rx) = oneshot::channel();
        if self.stop.send((timeout, tx)).await.is_err() {
            return "already stopped".into();
        }
        rx.await.unwrap_or_else(|_| "already stopped".into())
    }

    fn unavailable(&self) -> BackendError {
        let status = self.status();
        let mut message = format!(
            "the pattern process of namespace '{}' is {} (restarts so far: {})",
            self.shared.spec.namespace,
            status.state.name(),
            status.restarts
        );
        if let Some(e) = &status.last_error {
            message.push_str(&format!("; last error: {e}"));
        }
        message.push_str("; the proxy restarts it by itself, retry shortly");
        BackendError::Unavailable(message)
    }

    /// Serving, or UNAVAILABLE with why not.
    pub(crate) fn health(&self) -> Result<(), BackendError> {
        match self.status().state {
            PatternState::Serving => Ok(()),
            _ => Err(self.unavailable()),
        }
    }

    /// The link to forward to, or UNAVAILABLE right away while the
    /// process is not serving.
    pub(crate) fn current(&self) -> Result<Link, BackendError> {
        self.shared
            .backend
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| self.unavailable())
    }
}

fn remote(spec: &PatternSpec, info: &Initialized) -> Link {
    let endpoint = Endpoint::Unix(spec.socket.clone());
    Link::new(
        &spec.namespace,
        info.kind,
        info.capabilities,
        &endpoint.to_string(),
        endpoint.channel(Duration::from_secs(1)),
        spec.test_clock.clone(),
    )
}

/// Spawns the binary and takes it through Initialize and Start.
async fn launch(spec: &PatternSpec) -> Result<(Running, Initialized), BackendError> {
    let mut command = Command::new(&spec.binary);
    command
        .arg("--socket")
        .arg(&spec.socket)
        .arg("--exit-on-stdin-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if spec.test_clock.is_some() {
        command.arg("--test-clock");
    }
    let mut child = command.spawn().map_err(|e| {
        BackendError::Config(format!(
            "cannot start pattern binary {} for namespace '{}': {e}; build it (cargo build \
             --workspace --bins) or set backend.pattern.binary",
            spec.binary.display(),
            spec.namespace
        ))
    })?;
    let stdin = child.stdin.take();
    let endpoint = Endpoint::Unix(spec.socket.clone());
    let channel = endpoint.channel(Duration::from_secs(1));
    let mut lifecycle = PatternLifecycleClient::new(channel);
    let request = lc::InitializeRequest {
        namespace: spec.namespace.clone(),
        dal: spec.dal.clone(),
        backend_kind: spec.kind.clone(),
        options_json: json_or_empty(&spec.options),
        data_dir: spec.data_dir.display().to_string(),
        proxy_version: env!("CARGO_PKG_VERSION").to_string(),
        settings_json: json_or_empty(&spec.settings),
    };
    let deadline = Instant::now() + spec.start_timeout;
    let mut wait = Duration::from_millis(5);
    let response = loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(BackendError::Unavailable(format!(
                "pattern binary {} for namespace '{}' exited during start ({status}); see its \
                 log lines above",
                spec.binary.display(),
                spec.namespace
            )));
        }
        if !spec.socket.exists() {
            // Not listening yet.
        } else {
            match lifecycle.initialize(request.clone()).await {
                Ok(r) => break r.into_inner(),
                Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {}
                Err(s) => {
                    let _ = child.start_kill();
                    return Err(initialize_error(spec, s));
                }
            }
        }
        if Instant::now() >= deadline {
            let _ = child.start_kill();
            return Err(BackendError::Unavailable(format!(
                "pattern for namespace '{}' did not answer on {} within {:?}",
                spec.namespace,
                spec.socket.display(),
                spec.start_timeout
            )));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(200));
    };
    let dal = response
        .dals
        .iter()
        .find(|d| d.dal == spec.dal)
        .ok_or_else(|| {
            let _ = child.start_kill();
            BackendError::Config(format!(
                "pattern {} does not serve the {} DAL namespace '{}' needs",
                spec.binary.display(),
                spec.dal,
                spec.namespace
            ))
        })?;
    let info = Initialized {
        kind: intern_kind(&dal.backend_kind),
        capabilities: capabilities_from_names(&dal.capabilities),
    };
    lifecycle
        .start(lc::StartRequest {})
        .await
        .map_err(|s| initialize_error(spec, s))?;
    Ok((
        Running {
            child,
            _stdin: stdin,
            lifecycle,
            started_at: Instant::now(),
        },
        info,
    ))
}

fn initialize_error(spec: &PatternSpec, status: tonic::Status) -> BackendError {
    let message = format!(
        "pattern for namespace '{}' refused to start: {}",
        spec.namespace,
        status.message()
    );
    match status.code() {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
            BackendError::Config(message)
        }
        tonic::Code::Unavailable => BackendError::Unavailable(message),
        _ => BackendError::Internal(message),
    }
}

/// Watches the child: restarts it when it dies, polls its health, and
/// drains it when asked to stop.
async fn supervise(
    shared: Arc<Shared>,
    info: Initialized,
    mut running: Running,
    mut stop_rx: mpsc::Receiver<StopRequest>,
) {
    let spec = &shared.spec;
    let mut backoff = spec.backoff.initial;
    let mut health_tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            exited = running.child.wait() => {
                shared.set_backend(None);
                let why = match exited {
                    Ok(status) => format!("exited unexpectedly ({status})"),
                    Err(e) => format!("could not be watched: {e}"),
                };
                tracing::warn!(namespace = %spec.namespace, "pattern process {why}; restarting");
                shared.set_status(|s| {
                    s.state = PatternState::Restarting;
                    s.pid = None;
                    s.last_error = Some(why);
                    s.restarts += 1;
                });
                if running.started_at.elapsed() >= spec.backoff.reset_after {
                    backoff = spec.backoff.initial;
                }
                match restart(&shared, &info, &mut backoff, &mut stop_rx).await {
                    Some(next) => running = next,
                    None => return,
                }
            }
            request = stop_rx.recv() => {
                let Some((timeout, reply)) = request else { return };
                let summary = stop(&shared, &mut running, timeout).await;
                let _ = reply.send(summary);
                return;
            }
            _ = health_tick.tick() => check_health(&shared, &mut running).await,
        }
    }
}

/// Starts the pattern again after `backoff`, doubling it after each
/// failure. `None` if a stop request came in meanwhile.
async fn restart(
    shared: &Arc<Shared>,
    info: &Initialized,
    backoff: &mut Duration,
    stop_rx: &mut mpsc::Receiver<StopRequest>,
) -> Option<Running> {
    let spec = &shared.spec;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(*backoff) => {}
            request = stop_rx.recv() => {
                shared.set_status(|s| s.state = PatternState::Stopped);
                if let Some((_, reply)) = request {
                    let _ = reply.send("stopped while restarting".into());
                }
                return None;
            }
        }
        *backoff = (*backoff * 2).min(spec.backoff.max);
        shared.set_status(|s| s.state = PatternState::Starting);
        match launch(spec).await {
            Ok((running, _)) => {
                shared.set_backend(Some(remote(spec, info)));
                shared.set_status(|s| {
                    s.state = PatternState::Serving;
                    s.pid = running.child.id();
                });
                tracing::info!(
                    namespace = %spec.namespace,
                    pid = running.child.id(),
                    "pattern process restarted and serving"
                );
                return Some(running);
            }
            Err(e) => {
                tracing::warn!(namespace = %spec.namespace, error = %e, retry_in = ?*backoff, "pattern restart failed");
                shared.set_status(|s| {
                    s.state = PatternState::Restarting;
                    s.last_error = Some(e.to_string());
                });
            }
        }
    }
}

async fn check_health(shared: &Shared, running: &mut Running) {
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        running.lifecycle.health(lc::HealthRequest {}),
    )
    .await;
    let (state, reason) = match answer {
        Ok(Ok(r)) => {
            let r = r.into_inner();
            match lc::ServingState::try_from(r.state) {
                Ok(lc::ServingState::Serving) => (PatternState::Serving, None),
                _ => (PatternState::Degraded, Some(r.reason)),
            }
        }
        Ok(Err(s)) => (
            PatternState::Degraded,
            Some(format!("health check failed: {}", s.message())),
        ),
        Err(_) => (
            PatternState::Degraded,
            Some("health check timed out".into()),
        ),
    };
    shared.set_status(|s| {
        if matches!(s.state, PatternState::Serving | PatternState::Degraded) {
            s.state = state;
            if reason.is_some() {
                s.last_error = reason;
            }
        }
    });
}

/// How long past its drain timeout a pattern may take to answer Drain.
const DRAIN_SLACK: Duration = Duration::from_secs(5);

async fn stop(shared: &Shared, running: &mut Running, timeout: Duration) -> String {
    shared.set_backend(None);
    shared.set_status(|s| s.state = PatternState::Stopping);
    // The pattern waits `timeout` for its calls, then closes its backend;
    // a backend whose close hangs must not hold the proxy's shutdown.
    let drain = tokio::time::timeout(
        timeout + DRAIN_SLACK,
        running.lifecycle.drain(lc::DrainRequest {
            timeout: prost_types::Duration::try_from(timeout).ok(),
        }),
    )
    .await
    .unwrap_or_else(|_| {
        Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {:?}",
            timeout + DRAIN_SLACK
        )))
    });
    let mut summary = match drain {
        Ok(r) => {
            let r = r.into_inner();
            let mut s = format!("drained: {} completed, {} aborted", r.completed, r.aborted);
            if !r.closed {
                s.push_str(&format!("; {}", r.message));
            }
            s
        }
        Err(e) => format!("drain failed: {}", e.message()),
    };
    let _ = running.lifecycle.stop(lc::StopRequest {}).await;
    // The pattern's server finishes once its connections close: drop ours
    // (the data-plane channel went with the backend above; replace the
    // lifecycle client with an idle one that never connects).
    running.lifecycle = PatternLifecycleClient::new(
        Endpoint::Unix(shared.spec.socket.clone()).channel(Duration::from_secs(1)),
    );
    match tokio::time::timeout(Duration::from_secs(5), running.child.wait()).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => summary.push_str(&format!("; exited with {status}")),
        _ => {
            let _ = running.child.kill().await;
            summary.push_str("; did not exit in 5s and was killed");
        }
    }
    let _ = std::fs::remove_file(&shared.spec.socket);
    shared.set_status(|s| {
        s.state = PatternState::Stopped;
        s.pid = None;
    });
    tracing::info!(namespace = %shared.spec.namespace, %summary, "pattern process stopped");
    summary
}

/// A JSON value as the lifecycle protocol carries it: empty for null.
pub fn json_or_empty(value: &serde_json::Value) -> String {
    if value.is_null() {
        String::new()
    } else {
        value.to_string()
    }
}

/// How long closing a process-mode backend waits for its running calls.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

impl PatternBackend {
    /// Starts the pattern described by `spec` and returns a backend routing
    /// to it (of the DAL `spec.dal`).
    pub async fn start(spec: PatternSpec) -> Result<PatternBackend, BackendError> {
        let dal = spec.dal.clone();
        let timeout = spec.start_timeout;
        let process = PatternProcess::start(spec).await?;
        let (kind, capabilities) = (process.info.kind, process.info.capabilities);
        let backend = PatternBackend::new(
            Route::Process {
                process,
                shutdown_timeout: SHUTDOWN_TIMEOUT,
            },
            kind,
            capabilities,
        );
        if let Err(e) = backend.prepare(&dal, timeout).await {
            let _ = crate::Backend::close(&backend).await;
            return Err(e);
        }
        Ok(backend)
    }
}
