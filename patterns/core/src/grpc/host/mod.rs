//! The generic pattern host: serves a backend crate's factories as a
//! pattern process, speaking the lifecycle protocol and the data service
//! of the DAL it is initialized for (KeyValue: the public API; TimeSeries
//! and PubSub: the backend protocol of `prism/pattern/v1/backends.proto`)
//! on one endpoint.
//!
//! A backend crate becomes a pattern binary with a short `main`, one line
//! per DAL it serves:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     use pattern_core::grpc::host::{self, Hosted};
//!     host::main([
//!         Hosted::keyvalue(my_backend::MyFactory),
//!         Hosted::timeseries(my_backend::MyTimeSeriesFactory),
//!     ])
//! }
//! ```
//!
//! Command line: `--socket PATH` (Unix socket, created with mode 0600) or
//! `--listen IP:PORT`; `--exit-on-stdin-eof` (the proxy passes it, so a
//! pattern never outlives a proxy killed with SIGKILL); `--test-clock` (tests
//! only: take the time from each call's [`TEST_CLOCK_HEADER`]).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prism_proto::keyvalue::v1::key_value_service_server::KeyValueServiceServer;
use prism_proto::pattern::v1 as lc;
use prism_proto::pattern::v1::pattern_lifecycle_server::{
    PatternLifecycle, PatternLifecycleServer,
};
use prism_proto::pattern::v1::pub_sub_backend_server::PubSubBackendServer;
use prism_proto::pattern::v1::time_series_backend_server::TimeSeriesBackendServer;
use tokio::sync::{Notify, oneshot, watch};
use tonic::{Request, Response, Status};

mod kv;
mod pubsub;
mod timeseries;

use kv::HostKv;
use pubsub::HostPubSub;
use timeseries::HostTimeSeries;

use super::{Endpoint, MAX_MESSAGE_BYTES, TEST_CLOCK_HEADER};
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::error::BackendError;
use crate::keyvalue::{KeyValueBackend, KeyValueFactory};
use crate::pubsub::{PubSubBackend, PubSubFactory};
use crate::timeseries::{TimeSeriesBackend, TimeSeriesFactory, TimeSeriesSettings};
use crate::{Backend, Factory, OpenContext};

/// Page budget when a request names none.
const DEFAULT_PAGE_BYTES: usize = 1 << 20;
/// Drain timeout when a Drain request names none.
const DEFAULT_DRAIN: Duration = Duration::from_secs(10);
/// How long the server waits for connections to close after Stop.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// How a pattern process listens and behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOptions {
    pub endpoint: Endpoint,
    /// Take the time from each call's [`TEST_CLOCK_HEADER`]; tests only.
    pub test_clock: bool,
    /// Drain and exit when standard input closes (the parent died).
    pub exit_on_stdin_eof: bool,
}

impl HostOptions {
    /// Parses the pattern binary's arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<HostOptions, String> {
        let mut endpoint = None;
        let mut test_clock = false;
        let mut exit_on_stdin_eof = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--socket" | "--listen" => {
                    let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
                    let parsed = if arg == "--socket" {
                        Endpoint::Unix(value.into())
                    } else {
                        Endpoint::parse(&value)?
                    };
                    if endpoint.replace(parsed).is_some() {
                        return Err("give one of --socket or --listen, once".into());
                    }
                }
                "--test-clock" => test_clock = true,
                "--exit-on-stdin-eof" => exit_on_stdin_eof = true,
                other => return Err(format!("unknown argument '{other}'")),
            }
        }
        let endpoint = endpoint.ok_or("say where to listen: --socket PATH or --listen IP:PORT")?;
        Ok(HostOptions {
            endpoint,
            test_clock,
            exit_on_stdin_eof,
        })
    }
}

fn usage(program: &str, served: &Served) -> String {
    format!(
        "{program}: serves the '{kind}' backend ({dals}) as a Prism pattern process\n\n\
         usage: {program} (--socket PATH | --listen IP:PORT) [--exit-on-stdin-eof] [--test-clock]\n\n\
         The proxy starts this for namespaces with `backend.mode: process`; run it yourself\n\
         for `backend.mode: remote`. It speaks prism.pattern.v1.PatternLifecycle on the\n\
         endpoint, and the data service of the DAL it is initialized for:\n\
         prism.keyvalue.v1.KeyValueService, or prism.pattern.v1.TimeSeriesBackend or\n\
         PubSubBackend (proto/prism/pattern/v1/backends.proto).",
        kind = served.kind(),
        dals = served.dals(),
    )
}

/// The whole `main` of a pattern binary: parses arguments, sets up logging
/// (stderr; `PRISM_LOG` or `RUST_LOG` filter, default `info`) and serves
/// until stopped, SIGTERM, or (with `--exit-on-stdin-eof`) the parent's
/// exit.
pub fn main(served: impl IntoIterator<Item = Hosted>) -> ExitCode {
    let served = match Served::new(served) {
        Ok(served) => Arc::new(served),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut args = std::env::args();
    let program = args.next().unwrap_or_else(|| "prism-pattern".into());
    let args: Vec<String> = args.collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", usage(&program, &served));
        return ExitCode::SUCCESS;
    }
    let options = match HostOptions::parse(args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: {e}\n\n{}", usage(&program, &served));
            return ExitCode::from(2);
        }
    };
    let filter = std::env::var("PRISM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(serve(served, options, std::future::pending()));
    // The stdin watcher is a blocking read that cannot be cancelled; do not
    // let it hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `factory` on `options.endpoint` until Stop is called, SIGTERM
/// arrives, standard input closes (with `exit_on_stdin_eof`), or
/// `shutdown` completes. The backend is drained and closed before this
/// returns.
pub async fn serve(
    served: Arc<Served>,
    options: HostOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let (stop_tx, stop_rx) = oneshot::channel();
    let host = Arc::new(Host::new(served, options.test_clock, stop_tx));
    let lifecycle = PatternLifecycleServer::new(Lifecycle(host.clone()));
    let kv = KeyValueServiceServer::new(HostKv(host.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let timeseries = TimeSeriesBackendServer::new(HostTimeSeries(host.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let pubsub = PubSubBackendServer::new(HostPubSub(host.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let router = tonic::transport::Server::builder()
        .add_service(lifecycle)
        .add_service(kv)
        .add_service(timeseries)
        .add_service(pubsub);

    let exit_on_eof = options.exit_on_stdin_eof;
    // How long the server may wait for its connections to close once told
    // to stop: a Stop comes after a Drain, so nothing is in flight and the
    // wait is short; otherwise in-flight calls get the drain period.
    let (grace_tx, grace_rx) = oneshot::channel::<Duration>();
    let stopping_host = host.clone();
    let stopping = async move {
        let grace = tokio::select! {
            _ = stop_rx => {
                tracing::info!("stop requested");
                STOP_GRACE
            }
            _ = shutdown => DEFAULT_DRAIN,
            _ = terminate_signal() => {
                tracing::info!("SIGTERM received; draining");
                DEFAULT_DRAIN
            }
            _ = stdin_closed(exit_on_eof) => {
                tracing::info!("the proxy went away (stdin closed); draining");
                DEFAULT_DRAIN
            }
        };
        // Long-lived streams (sequence watches) end now, so the server's
        // graceful shutdown waits only for calls in flight.
        stopping_host.drain_started.send_replace(true);
        let _ = grace_tx.send(grace);
    };
    // A client that keeps an idle connection open must not hold the exit.
    let give_up = async move {
        match grace_rx.await {
            Ok(grace) => tokio::time::sleep(grace).await,
            Err(_) => std::future::pending().await,
        }
    };

    let served = match &options.endpoint {
        Endpoint::Unix(path) => {
            let listener = bind_unix(path)?;
            tracing::info!(kind = host.served.kind(), socket = %path.display(), "pattern listening");
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let result = tokio::select! {
                r = router.serve_with_incoming_shutdown(incoming, stopping) => r,
                _ = give_up => Ok(()),
            };
            let _ = std::fs::remove_file(path);
            result
        }
        Endpoint::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            tracing::info!(kind = host.served.kind(), addr = %addr, "pattern listening");
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            tokio::select! {
                r = router.serve_with_incoming_shutdown(incoming, stopping) => r,
                _ = give_up => Ok(()),
            }
        }
    };
    host.drain(DEFAULT_DRAIN).await;
    served.map_err(|e| format!("serving: {e}"))
}

fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        // A socket left by a process that died; nobody can be listening on
        // it if connecting fails.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{} is in use by another running pattern; pick another --socket",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("removing stale {}: {e}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("restricting {}: {e}", path.display()))?;
    Ok(listener)
}

async fn terminate_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

async fn stdin_closed(enabled: bool) {
    use tokio::io::AsyncReadExt;
    if !enabled {
        return std::future::pending().await;
    }
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// One DAL a pattern binary serves: its factory, type-erased so one host
/// serves any DAL. Made by [`Hosted::keyvalue`], [`Hosted::timeseries`] or
/// [`Hosted::pubsub`].
pub struct Hosted {
    dal: &'static str,
    kind: &'static str,
    check_options: Box<OptionsCheck>,
    open: Box<dyn Fn(OpenContext) -> OpenFuture + Send + Sync>,
    /// Applies the namespace's DAL settings (`settings_json`) to the
    /// open context.
    settings: fn(&serde_json::Value, OpenContext) -> Result<OpenContext, String>,
}

/// An opened backend: as the common supertrait, and as the DAL's own
/// trait object (`Arc<dyn KeyValueBackend>`, ...) behind `Any`.
type Opened = (Arc<dyn Backend>, Box<dyn Any + Send + Sync>);
type OptionsCheck = dyn Fn(&serde_json::Value) -> Result<(), BackendError> + Send + Sync;
type OpenFuture = Pin<Box<dyn Future<Output = Result<Opened, BackendError>> + Send>>;

impl Hosted {
    fn new<B: ?Sized + Backend + 'static>(
        dal: &'static str,
        factory: Arc<dyn Factory<Backend = B>>,
        upcast: fn(Arc<B>) -> Arc<dyn Backend>,
        settings: fn(&serde_json::Value, OpenContext) -> Result<OpenContext, String>,
    ) -> Hosted {
        let checker = factory.clone();
        Hosted {
            dal,
            kind: factory.kind(),
            check_options: Box::new(move |options| checker.check_options(options)),
            open: Box::new(move |ctx| {
                let factory = factory.clone();
                Box::pin(async move {
                    let backend = factory.open(ctx).await?;
                    let common = upcast(backend.clone());
                    Ok((common, Box::new(backend) as Box<dyn Any + Send + Sync>))
                })
            }),
            settings,
        }
    }

    /// Serves KeyValue namespaces with `factory`.
    pub fn keyvalue(factory: impl KeyValueFactory) -> Hosted {
        let factory: Arc<dyn Factory<Backend = dyn KeyValueBackend>> = Arc::new(factory);
        Hosted::new(crate::keyvalue::DAL, factory, |b| b, no_settings)
    }

    /// Serves TimeSeries namespaces with `factory`; their bucket comes in
    /// `settings_json` as `{"bucket_ms": N}`.
    pub fn timeseries(factory: impl TimeSeriesFactory) -> Hosted {
        let factory: Arc<dyn Factory<Backend = dyn TimeSeriesBackend>> = Arc::new(factory);
        Hosted::new(crate::timeseries::DAL, factory, |b| b, timeseries_settings)
    }

    /// Serves PubSub namespaces with `factory`.
    pub fn pubsub(factory: impl PubSubFactory) -> Hosted {
        let factory: Arc<dyn Factory<Backend = dyn PubSubBackend>> = Arc::new(factory);
        Hosted::new(crate::pubsub::DAL, factory, |b| b, no_settings)
    }
}

fn no_settings(_: &serde_json::Value, ctx: OpenContext) -> Result<OpenContext, String> {
    Ok(ctx)
}

fn timeseries_settings(
    settings: &serde_json::Value,
    ctx: OpenContext,
) -> Result<OpenContext, String> {
    let Some(ms) = settings.get("bucket_ms") else {
        return Ok(ctx);
    };
    let ms = ms
        .as_u64()
        .filter(|ms| *ms > 0)
        .ok_or("settings_json.bucket_ms must be a positive whole number of milliseconds")?;
    Ok(ctx.with_settings(TimeSeriesSettings {
        bucket: Duration::from_millis(ms),
    }))
}

/// Every DAL one pattern binary serves, all of one backend kind.
pub struct Served(Vec<Hosted>);

impl Served {
    /// Checks that `hosted` is not empty, names one kind, and each DAL once.
    pub fn new(hosted: impl IntoIterator<Item = Hosted>) -> Result<Served, String> {
        let hosted: Vec<Hosted> = hosted.into_iter().collect();
        let Some(first) = hosted.first() else {
            return Err("a pattern binary must serve at least one DAL".into());
        };
        for (i, h) in hosted.iter().enumerate() {
            if h.kind != first.kind {
                return Err(format!(
                    "a pattern binary serves one backend kind; got '{}' and '{}'",
                    first.kind, h.kind
                ));
            }
            if hosted[..i].iter().any(|o| o.dal == h.dal) {
                return Err(format!("the {} DAL is registered twice", h.dal));
            }
        }
        Ok(Served(hosted))
    }

    /// The backend kind served.
    pub fn kind(&self) -> &'static str {
        self.0[0].kind
    }

    /// The DALs served, for messages.
    fn dals(&self) -> String {
        self.0.iter().map(|h| h.dal).collect::<Vec<_>>().join(", ")
    }

    fn get(&self, dal: &str) -> Option<&Hosted> {
        self.0.iter().find(|h| h.dal == dal)
    }
}

/// What Initialize set up.
struct Loaded {
    request: lc::InitializeRequest,
    response: lc::InitializeResponse,
    backend: Arc<dyn Backend>,
    /// The DAL's trait object, `Arc<dyn KeyValueBackend>` and so on.
    typed: Box<dyn Any + Send + Sync>,
}

impl Loaded {
    /// The backend as `B` (`dyn KeyValueBackend`, ...), or
    /// FAILED_PRECONDITION when the pattern was initialized for another
    /// DAL.
    fn as_dal<B: ?Sized + 'static>(&self, dal: &str) -> Result<Arc<B>, Status> {
        self.typed.downcast_ref::<Arc<B>>().cloned().ok_or_else(|| {
            Status::failed_precondition(format!(
                "this pattern was initialized for the {} DAL, not {dal}",
                self.request.dal
            ))
        })
    }
}

struct Host {
    served: Arc<Served>,
    test_clock: Option<Arc<ManualClock>>,
    loaded: tokio::sync::Mutex<Option<Arc<Loaded>>>,
    /// The backend once initialized; read without locking by data calls.
    backend: std::sync::OnceLock<Arc<Loaded>>,
    started: AtomicBool,
    draining: AtomicBool,
    drained: tokio::sync::Mutex<Option<lc::DrainResponse>>,
    in_flight: AtomicU64,
    completed: AtomicU64,
    idle: Notify,
    abort: watch::Sender<bool>,
    /// True once a drain began: long-lived streams end.
    drain_started: watch::Sender<bool>,
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
}

/// Counts a data call in flight.
struct CallGuard<'a>(&'a Host);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0.completed.fetch_add(1, Ordering::SeqCst);
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Host {
    fn new(served: Arc<Served>, test_clock: bool, stop: oneshot::Sender<()>) -> Self {
        Host {
            served,
            test_clock: test_clock.then(|| Arc::new(ManualClock::starting_now())),
            loaded: tokio::sync::Mutex::new(None),
            backend: std::sync::OnceLock::new(),
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            drained: tokio::sync::Mutex::new(None),
            in_flight: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            idle: Notify::new(),
            abort: watch::channel(false).0,
            drain_started: watch::channel(false).0,
            stop: std::sync::Mutex::new(Some(stop)),
        }
    }

    async fn initialize(
        &self,
        req: lc::InitializeRequest,
    ) -> Result<lc::InitializeResponse, Status> {
        let mut loaded = self.loaded.lock().await;
        if let Some(existing) = loaded.as_ref() {
            // A second proxy (remote mode) or a retry: the same
            // configuration is accepted, another one is not.
            fn settings(r: &lc::InitializeRequest) -> [&str; 5] {
                [
                    &r.namespace,
                    &r.dal,
                    &r.backend_kind,
                    &r.options_json,
                    &r.settings_json,
                ]
            }
            if settings(&existing.request) == settings(&req) {
                return Ok(existing.response.clone());
            }
            return Err(Status::failed_precondition(format!(
                "this pattern already serves namespace '{}' with other settings; start a \
                 separate pattern process for a different configuration",
                existing.request.namespace
            )));
        }
        if req.namespace.is_empty() {
            return Err(Status::invalid_argument("namespace must not be empty"));
        }
        let Some(hosted) = self.served.get(&req.dal) else {
            return Err(Status::invalid_argument(format!(
                "dal '{}' is not served by this pattern; it serves: {}",
                req.dal,
                self.served.dals()
            )));
        };
        let kind = hosted.kind;
        if !req.backend_kind.is_empty() && req.backend_kind != kind {
            return Err(Status::invalid_argument(format!(
                "this pattern serves backend kind '{kind}', not '{}'; point the namespace at \
                 the pattern binary for its kind",
                req.backend_kind
            )));
        }
        let options: serde_json::Value = if req.options_json.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&req.options_json).map_err(|e| {
                Status::invalid_argument(format!("options_json is not valid JSON: {e}"))
            })?
        };
        (hosted.check_options)(&options).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let settings: serde_json::Value = if req.settings_json.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&req.settings_json).map_err(|e| {
                Status::invalid_argument(format!("settings_json is not valid JSON: {e}"))
            })?
        };
        let clock: Arc<dyn Clock> = match &self.test_clock {
            Some(clock) => clock.clone(),
            None => Arc::new(SystemClock),
        };
        let data_dir = if req.data_dir.is_empty() {
            std::env::current_dir().unwrap_or_else(|_| ".".into())
        } else {
            req.data_dir.clone().into()
        };
        let ctx = OpenContext::new(req.namespace.clone(), data_dir, clock).with_options(options);
        let ctx = (hosted.settings)(&settings, ctx).map_err(Status::invalid_argument)?;
        let (backend, typed) = (hosted.open)(ctx).await.map_err(|e| match e {
            BackendError::Config(m) => Status::invalid_argument(m),
            other => Status::from(other),
        })?;
        let response = lc::InitializeResponse {
            pattern_name: format!("prism-pattern-{kind}"),
            pattern_version: env!("CARGO_PKG_VERSION").to_string(),
            dals: vec![lc::DalCapabilities {
                dal: hosted.dal.into(),
                backend_kind: kind.to_string(),
                capabilities: backend
                    .capabilities()
                    .names()
                    .into_iter()
                    .map(String::from)
                    .collect(),
            }],
        };
        tracing::info!(namespace = %req.namespace, kind, "pattern initialized");
        let entry = Arc::new(Loaded {
            request: req,
            response: response.clone(),
            backend,
            typed,
        });
        let _ = self.backend.set(entry.clone());
        *loaded = Some(entry);
        Ok(response)
    }

    /// Admits one data call: the pattern must be started and not draining,
    /// and the call must be for its namespace.
    fn enter<T>(
        &self,
        request: &Request<T>,
        namespace: &str,
    ) -> Result<(Arc<Loaded>, CallGuard<'_>), Status> {
        let loaded = self.backend.get().ok_or_else(|| {
            super::status::not_started(
                "pattern not initialized; call PatternLifecycle.Initialize first",
            )
        })?;
        if !self.started.load(Ordering::SeqCst) {
            return Err(super::status::not_started(
                "pattern initialized but not started; call PatternLifecycle.Start",
            ));
        }
        if namespace != loaded.request.namespace {
            return Err(Status::not_found(format!(
                "namespace '{namespace}' is not served here; this pattern serves '{}'",
                loaded.request.namespace
            )));
        }
        if let Some(clock) = &self.test_clock
            && let Some(ms) = request
                .metadata()
                .get(TEST_CLOCK_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        {
            clock.set(ms);
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = CallGuard(self);
        // Checked after counting, so a drain either sees this call or the
        // call sees the drain.
        if self.draining.load(Ordering::SeqCst) {
            return Err(Status::unavailable(
                "pattern is draining and takes no new calls; retry against the restarted pattern",
            ));
        }
        Ok((loaded.clone(), guard))
    }

    /// Turns true when a drain begins.
    fn draining_signal(&self) -> watch::Receiver<bool> {
        self.drain_started.subscribe()
    }

    /// [`Host::enter`] for a call of `dal`, whose backend trait is `B`.
    fn enter_as<B: ?Sized + 'static, T>(
        &self,
        request: &Request<T>,
        namespace: &str,
        dal: &str,
    ) -> Result<(Arc<B>, CallGuard<'_>), Status> {
        let (loaded, guard) = self.enter(request, namespace)?;
        Ok((loaded.as_dal::<B>(dal)?, guard))
    }

    /// Runs a data call body, cancelled if a drain times out.
    async fn run<T>(
        &self,
        body: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<Response<T>, Status> {
        let mut abort = self.abort.subscribe();
        tokio::select! {
            result = body => result.map(Response::new).map_err(|e| super::status::to_status(&e)),
            _ = abort.wait_for(|a| *a) => Err(Status::unavailable(
                "the call was aborted because the pattern drained before it finished; \
                 it may or may not have been applied",
            )),
        }
    }

    async fn drain(&self, timeout: Duration) -> lc::DrainResponse {
        let mut drained = self.drained.lock().await;
        if let Some(done) = drained.as_ref() {
            return done.clone();
        }
        self.draining.store(true, Ordering::SeqCst);
        self.drain_started.send_replace(true);
        let before = self.completed.load(Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let aborted = self.in_flight.load(Ordering::SeqCst);
        if aborted > 0 {
            self.abort.send_replace(true);
        }
        let completed = self.completed.load(Ordering::SeqCst) - before;
        let (closed, message) = match self.backend.get() {
            Some(loaded) => match loaded.backend.close().await {
                Ok(()) => (true, String::new()),
                Err(e) => (false, format!("closing the backend failed: {e}")),
            },
            None => (
                true,
                "nothing to close: the pattern was never initialized".into(),
            ),
        };
        tracing::info!(completed, aborted, closed, "pattern drained");
        let response = lc::DrainResponse {
            completed,
            aborted,
            closed,
            message,
        };
        *drained = Some(response.clone());
        response
    }
}

struct Lifecycle(Arc<Host>);

#[tonic::async_trait]
impl PatternLifecycle for Lifecycle {
    async fn initialize(
        &self,
        request: Request<lc::InitializeRequest>,
    ) -> Result<Response<lc::InitializeResponse>, Status> {
        self.0
            .initialize(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn start(
        &self,
        _: Request<lc::StartRequest>,
    ) -> Result<Response<lc::StartResponse>, Status> {
        if self.0.backend.get().is_none() {
            return Err(Status::failed_precondition(
                "pattern not initialized; call Initialize before Start",
            ));
        }
        if self.0.draining.load(Ordering::SeqCst) {
            return Err(Status::failed_precondition(
                "pattern has drained and cannot start again; start a new process",
            ));
        }
        self.0.started.store(true, Ordering::SeqCst);
        Ok(Response::new(lc::StartResponse {}))
    }

    async fn health(
        &self,
        _: Request<lc::HealthRequest>,
    ) -> Result<Response<lc::HealthResponse>, Status> {
        let host = &self.0;
        let in_flight = host.in_flight.load(Ordering::SeqCst);
        let (state, reason) = match host.backend.get() {
            None => (lc::ServingState::NotServing, "not initialized".to_string()),
            Some(_) if host.draining.load(Ordering::SeqCst) => {
                (lc::ServingState::NotServing, "draining".to_string())
            }
            Some(_) if !host.started.load(Ordering::SeqCst) => (
                lc::ServingState::NotServing,
                "initialized, not started".to_string(),
            ),
            Some(loaded) => match loaded.backend.health().await {
                Ok(()) => (lc::ServingState::Serving, String::new()),
                Err(e @ BackendError::Unavailable(_)) => {
                    (lc::ServingState::NotServing, e.to_string())
                }
                Err(e) => (lc::ServingState::Degraded, e.to_string()),
            },
        };
        Ok(Response::new(lc::HealthResponse {
            state: state as i32,
            reason,
            in_flight,
        }))
    }

    async fn drain(
        &self,
        request: Request<lc::DrainRequest>,
    ) -> Result<Response<lc::DrainResponse>, Status> {
        let timeout = request
            .into_inner()
            .timeout
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(DEFAULT_DRAIN);
        Ok(Response::new(self.0.drain(timeout).await))
    }

    async fn stop(
        &self,
        _: Request<lc::StopRequest>,
    ) -> Result<Response<lc::StopResponse>, Status> {
        if let Some(stop) = self.0.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
        Ok(Response::new(lc::StopResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn bucket_of(settings: serde_json::Value) -> Result<Option<Duration>, String> {
        let ctx = OpenContext::new("ns", std::env::temp_dir(), Arc::new(SystemClock));
        let ctx = timeseries_settings(&settings, ctx)?;
        Ok(ctx.settings::<TimeSeriesSettings>().map(|s| s.bucket))
    }

    #[test]
    fn a_timeseries_pattern_takes_its_bucket_from_the_settings() {
        assert_eq!(
            bucket_of(serde_json::json!({"bucket_ms": 1500})),
            Ok(Some(Duration::from_millis(1500)))
        );
        assert_eq!(bucket_of(serde_json::Value::Null), Ok(None));
        for bad in [
            serde_json::json!({"bucket_ms": 0}),
            serde_json::json!({"bucket_ms": "1h"}),
        ] {
            let e = bucket_of(bad).unwrap_err();
            assert!(e.contains("bucket_ms"), "{e}");
        }
    }

    #[test]
    fn a_pattern_binary_serves_at_least_one_dal() {
        let e = Served::new(Vec::new()).err().expect("no DAL is refused");
        assert!(e.contains("at least one DAL"), "{e}");
    }

    #[test]
    fn options_parse() {
        let o = HostOptions::parse(args("--socket /tmp/p.sock --exit-on-stdin-eof")).unwrap();
        assert_eq!(o.endpoint, Endpoint::Unix("/tmp/p.sock".into()));
        assert!(o.exit_on_stdin_eof && !o.test_clock);
        let o = HostOptions::parse(args("--listen 127.0.0.1:7001 --test-clock")).unwrap();
        assert_eq!(o.endpoint, Endpoint::Tcp("127.0.0.1:7001".parse().unwrap()));
        assert!(o.test_clock);
        assert!(
            HostOptions::parse(args(""))
                .unwrap_err()
                .contains("--socket")
        );
        assert!(
            HostOptions::parse(args("--socket"))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            HostOptions::parse(args("--bogus"))
                .unwrap_err()
                .contains("unknown")
        );
        assert!(
            HostOptions::parse(args("--socket /a --listen 127.0.0.1:1"))
                .unwrap_err()
                .contains("once")
        );
    }
}
