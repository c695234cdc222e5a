//! The proxy's side of a pattern: a backend of any DAL that forwards every
//! call over gRPC, to a pattern someone else runs ([`attach`], `mode:
//! remote`) or to a supervised child process
//! ([`PatternBackend::start`](super::process), `mode: process`).
//!
//! [`PatternBackend`] implements every DAL's backend trait; the proxy
//! holds it as the one its namespace's DAL needs (KeyValue in [`kv`],
//! TimeSeries in [`timeseries`], PubSub in [`pubsub`]). A call to a DAL the
//! pattern does not serve fails with the pattern's own error.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use std::future::Future;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prism_proto::pattern::v1 as lc;
use prism_proto::pattern::v1::pattern_lifecycle_client::PatternLifecycleClient;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::process::PatternProcess;
use super::status::is_not_started;
use super::{Endpoint, TEST_CLOCK_HEADER};
use crate::capabilities::{Capabilities, Capability};
use crate::clock::Clock;
use crate::error::BackendError;

mod kv;
mod pubsub;
mod timeseries;

/// A backend kind named by a pattern, as a `&'static str` (the trait's
/// `kind` returns one). Kinds are few and fixed, so each is stored once.
pub fn intern_kind(kind: &str) -> &'static str {
    static KINDS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut kinds = KINDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = kinds.get(kind) {
        return k;
    }
    let k: &'static str = Box::leak(kind.to_string().into_boxed_str());
    kinds.insert(k);
    k
}

/// Capabilities from their names; unknown names (from a newer pattern) are
/// ignored.
pub fn capabilities_from_names(names: &[String]) -> Capabilities {
    names
        .iter()
        .filter_map(|n| Capability::from_name(n))
        .collect()
}

/// Maps a status from a pattern to a backend error. Statuses the pattern
/// chose pass through unchanged; transport failures say the pattern could
/// not be reached.
pub fn status_error(endpoint: &str, status: tonic::Status) -> BackendError {
    if let Some(err) = super::status::from_status(&status) {
        return err;
    }
    // The client's own timeout (the call's deadline, or
    // UNBOUNDED_CALL_TIMEOUT) passed with no answer.
    if status.code() == tonic::Code::Cancelled && status.message() == "Timeout expired" {
        return BackendError::Unavailable(format!(
            "pattern process at {endpoint} did not answer in time; the call may or may not \
             have been applied; retry shortly"
        ));
    }
    // Statuses made by the gRPC client itself (connection refused, reset
    // mid-call when the pattern died) carry their cause; a pattern's own
    // statuses do not.
    let from_transport = std::error::Error::source(&status).is_some()
        || status.message() == "transport error"
        || (status.code() == tonic::Code::Unknown && status.message().is_empty());
    if from_transport {
        return BackendError::Unavailable(format!(
            "pattern process at {endpoint} cannot be reached ({}); the call may or may not \
             have been applied; retry shortly (writes with an idempotency token)",
            status.message()
        ));
    }
    BackendError::Status {
        code: status.code(),
        message: status.message().to_string(),
    }
}

/// One connection to a pattern serving one namespace: the channel, what
/// the pattern said it is, and how to initialize it again if it restarted.
/// Cheap to clone.
#[derive(Clone)]
pub struct Link {
    namespace: String,
    kind: &'static str,
    capabilities: Capabilities,
    endpoint: String,
    channel: Channel,
    test_clock: Option<Arc<dyn Clock>>,
    reattach: Option<Arc<Reattach>>,
}

/// Initializes a remote pattern again after it restarted: a pattern the
/// proxy did not start can come back empty-handed.
struct Reattach {
    lifecycle: PatternLifecycleClient<Channel>,
    request: lc::InitializeRequest,
    lock: tokio::sync::Mutex<()>,
}

impl Reattach {
    async fn initialize(&self) -> Result<lc::InitializeResponse, tonic::Status> {
        let _one_at_a_time = self.lock.lock().await;
        let mut lifecycle = self.lifecycle.clone();
        let response = lifecycle
            .initialize(self.request.clone())
            .await?
            .into_inner();
        lifecycle.start(lc::StartRequest {}).await?;
        Ok(response)
    }
}

/// Connects to a pattern someone else runs (`mode: remote`), initializes
/// and starts it with `request`, and returns a backend forwarding to it.
/// Retries while the pattern cannot be reached, up to `timeout`. If the
/// pattern restarts later, the first call that finds it uninitialized
/// initializes it again and is then retried.
pub async fn attach(
    endpoint: &Endpoint,
    request: lc::InitializeRequest,
    timeout: Duration,
) -> Result<PatternBackend, BackendError> {
    let channel = endpoint.channel(Duration::from_secs(2));
    let reattach = Reattach {
        lifecycle: PatternLifecycleClient::new(channel.clone()),
        request,
        lock: tokio::sync::Mutex::new(()),
    };
    let deadline = Instant::now() + timeout;
    let response = loop {
        match reattach.initialize().await {
            Ok(r) => break r,
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => {
                let message = format!(
                    "remote pattern at {endpoint} for namespace '{}': {}",
                    reattach.request.namespace,
                    s.message()
                );
                return Err(match s.code() {
                    tonic::Code::Unavailable => BackendError::Unavailable(format!(
                        "{message}; is the pattern running? start it with --listen/--socket at \
                         that address"
                    )),
                    tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                        BackendError::Config(message)
                    }
                    _ => BackendError::Internal(message),
                });
            }
        }
    };
    let dal = response
        .dals
        .iter()
        .find(|d| d.dal == reattach.request.dal)
        .ok_or_else(|| {
            BackendError::Config(format!(
                "remote pattern at {endpoint} does not serve the {} DAL",
                reattach.request.dal
            ))
        })?;
    let mut link = Link::new(
        &reattach.request.namespace,
        &dal.backend_kind,
        capabilities_from_names(&dal.capabilities),
        &endpoint.to_string(),
        channel,
        None,
    );
    link.reattach = Some(Arc::new(reattach));
    let dal = link_dal(&link);
    let backend = PatternBackend::over(link);
    backend.prepare(&dal, timeout).await?;
    Ok(backend)
}

fn link_dal(link: &Link) -> String {
    link.reattach
        .as_ref()
        .map(|r| r.request.dal.clone())
        .unwrap_or_default()
}

impl Link {
    /// A link for `namespace` over `channel`. `kind` and `capabilities`
    /// are what the pattern's Initialize answered; `endpoint` names the
    /// pattern in errors. With `test_clock`, every call carries that
    /// clock's time for a pattern started with `--test-clock`.
    pub fn new(
        namespace: &str,
        kind: &str,
        capabilities: Capabilities,
        endpoint: &str,
        channel: Channel,
        test_clock: Option<Arc<dyn Clock>>,
    ) -> Self {
        Link {
            namespace: namespace.to_string(),
            kind: intern_kind(kind),
            capabilities,
            endpoint: endpoint.to_string(),
            channel,
            test_clock,
            reattach: None,
        }
    }

    /// Sends one call; if a remote pattern answers that it is not
    /// initialized (it restarted), initializes it and sends the call again.
    async fn call<C, Req, Resp, Fut>(
        &self,
        client: C,
        message: Req,
        send: impl Fn(C, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, BackendError>
    where
        C: Clone,
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut result = send(client.clone(), self.request(message.clone())).await;
        if let (Err(status), Some(reattach)) = (&result, &self.reattach)
            && is_not_started(status)
        {
            tracing::info!(endpoint = %self.endpoint, "remote pattern restarted; initializing it again");
            result = match reattach.initialize().await {
                Ok(_) => send(client, self.request(message)).await,
                Err(e) => Err(e),
            };
        }
        result
            .map(tonic::Response::into_inner)
            .map_err(|s| self.error(s))
    }

    /// A request for `message`, carrying the time left of the call being
    /// served as `grpc-timeout`, so the pattern stops when the caller has
    /// given up; a call outside any deadline (a tail's reads, retention,
    /// a backfill) gets [`UNBOUNDED_CALL_TIMEOUT`], so a hung pattern
    /// cannot hold it forever.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(crate::deadline::remaining().unwrap_or(UNBOUNDED_CALL_TIMEOUT));
        if let Some(clock) = &self.test_clock {
            let now = clock.now_ms().to_string();
            request.metadata_mut().insert(
                TEST_CLOCK_HEADER,
                now.parse().expect("digits are valid metadata"),
            );
        }
        request
    }

    fn error(&self, status: tonic::Status) -> BackendError {
        status_error(&self.endpoint, status)
    }

    /// The error of a pattern answer that breaks the protocol.
    fn broken(&self, what: &str) -> BackendError {
        BackendError::Internal(format!("pattern at {} {what}", self.endpoint))
    }

    /// A round trip to the pattern: its lifecycle health answer. Without
    /// a lifecycle client (the link to a supervised process) the
    /// supervisor watches health.
    async fn health(&self) -> Result<(), BackendError> {
        let Some(reattach) = &self.reattach else {
            return Ok(());
        };
        let mut lifecycle = reattach.lifecycle.clone();
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            lifecycle.health(lc::HealthRequest {}),
        )
        .await
        .map_err(|_| {
            BackendError::Unavailable(format!(
                "pattern at {} did not answer its health check within 2s",
                self.endpoint
            ))
        })?
        .map_err(|s| self.error(s))?
        .into_inner();
        match lc::ServingState::try_from(answer.state) {
            Ok(lc::ServingState::Serving) => Ok(()),
            _ => Err(BackendError::Unavailable(format!(
                "pattern at {} is not serving: {}",
                self.endpoint, answer.reason
            ))),
        }
    }
}

/// The timeout of a call to a pattern made outside any call deadline.
pub const UNBOUNDED_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a [`PatternBackend`]'s calls go.
#[derive(Clone)]
pub(crate) enum Route {
    /// A pattern someone else runs, over one link.
    Remote(Link),
    /// A supervised child process: the link to the process running now.
    Process {
        process: Arc<PatternProcess>,
        shutdown_timeout: Duration,
    },
}

impl Route {
    fn link(&self) -> Result<Link, BackendError> {
        match self {
            Route::Remote(link) => Ok(link.clone()),
            Route::Process { process, .. } => process.current(),
        }
    }
}

/// A namespace's backend served by a pattern, of whichever DAL it serves.
/// While a supervised process is down, calls fail at once with
/// UNAVAILABLE instead of waiting.
pub struct PatternBackend {
    route: Route,
    kind: &'static str,
    capabilities: Capabilities,
    /// TimeSeries: the pattern's highest visible sequence, fed by a
    /// `WatchSequence` stream started on first use.
    sequence: OnceLock<watch::Sender<u64>>,
    watcher: Mutex<Option<tokio::task::AbortHandle>>,
}

impl PatternBackend {
    pub(crate) fn new(route: Route, kind: &'static str, capabilities: Capabilities) -> Self {
        PatternBackend {
            route,
            kind,
            capabilities,
            sequence: OnceLock::new(),
            watcher: Mutex::new(None),
        }
    }

    /// A backend over one fixed link (tests, and `attach`).
    pub fn over(link: Link) -> Self {
        let (kind, capabilities) = (link.kind, link.capabilities);
        PatternBackend::new(Route::Remote(link), kind, capabilities)
    }

    /// The supervised process, in `process` mode.
    pub fn process(&self) -> Option<&Arc<PatternProcess>> {
        match &self.route {
            Route::Process { process, .. } => Some(process),
            Route::Remote(_) => None,
        }
    }

    /// Gets ready to serve `dal` once the pattern is up: a TimeSeries
    /// pattern's sequence is followed from the start.
    pub(crate) async fn prepare(&self, dal: &str, timeout: Duration) -> Result<(), BackendError> {
        if dal == crate::timeseries::DAL {
            self.follow_sequence(timeout).await?;
        }
        Ok(())
    }

    /// The link to send a call on, or UNAVAILABLE at once while a
    /// supervised process is not serving.
    fn link(&self) -> Result<Link, BackendError> {
        self.route.link()
    }
}

impl Drop for PatternBackend {
    fn drop(&mut self) {
        if let Some(watcher) = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            watcher.abort();
        }
    }
}

#[async_trait]
impl crate::Backend for PatternBackend {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn health(&self) -> Result<(), BackendError> {
        match &self.route {
            Route::Remote(link) => link.health().await,
            Route::Process { process, .. } => process.health(),
        }
    }

    async fn close(&self) -> Result<(), BackendError> {
        if let Some(watcher) = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            watcher.abort();
        }
        if let Route::Process {
            process,
            shutdown_timeout,
        } = &self.route
        {
            process.shutdown(*shutdown_timeout).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> Link {
        // Never connected: only the requests it builds are looked at.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        Link::new(
            "orders",
            "memstore",
            Capabilities::default(),
            "test",
            channel,
            None,
        )
    }

    /// The `grpc-timeout` a request carries, in nanoseconds.
    fn sent_timeout<T>(request: &tonic::Request<T>) -> Option<u64> {
        let sent = request
            .metadata()
            .get("grpc-timeout")?
            .to_str()
            .unwrap()
            .to_string();
        let unit = sent.chars().last().unwrap();
        let n: u64 = sent[..sent.len() - 1].parse().unwrap();
        Some(match unit {
            'n' => n,
            'u' => n * 1_000,
            'm' => n * 1_000_000,
            'S' => n * 1_000_000_000,
            'M' => n * 60_000_000_000,
            other => panic!("unexpected unit {other} in {sent}"),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_with_a_deadline_forwards_the_time_left() {
        let backend = backend();
        let at = tokio::time::Instant::now() + Duration::from_millis(1500);
        let request = crate::deadline::within(Some(at), async { backend.request(()) }).await;
        // tonic sends Request::set_timeout as grpc-timeout.
        assert_eq!(sent_timeout(&request), Some(1_500_000_000));
    }

    #[tokio::test]
    async fn a_call_without_a_deadline_gets_the_default_bound() {
        let backend = backend();
        let bound = Some(UNBOUNDED_CALL_TIMEOUT.as_nanos() as u64);
        assert_eq!(sent_timeout(&backend.request(())), bound);
        let request = crate::deadline::within(None, async { backend.request(()) }).await;
        assert_eq!(sent_timeout(&request), bound);
    }

    #[test]
    fn the_clients_own_timeout_is_unavailable_not_cancelled() {
        let e = status_error(
            "unix:///p.sock",
            tonic::Status::cancelled("Timeout expired"),
        );
        assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    }
}
