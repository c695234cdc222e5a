//! A KeyValue backend that forwards every call to a pattern over gRPC.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use std::future::Future;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_proto::pattern::v1 as lc;
use prism_proto::pattern::v1::pattern_lifecycle_client::PatternLifecycleClient;
use tonic::transport::Channel;

use super::status::is_not_started;
use super::{Endpoint, MAX_MESSAGE_BYTES, TEST_CLOCK_HEADER, convert};
use crate::capabilities::{Capabilities, Capability};
use crate::clock::Clock;
use crate::error::BackendError;
use crate::idempotency::IdempotencyKey;
use crate::keyvalue::{
    Cursor, Item, KeyValueBackend, Mutation, Page, PageRequest, PutItem, ScanEntry, Selection,
    WriteOutcome, request_fingerprint,
};

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

/// Forwards KeyValue calls to a pattern serving one namespace.
#[derive(Clone)]
pub struct RemoteKeyValue {
    namespace: String,
    kind: &'static str,
    capabilities: Capabilities,
    endpoint: String,
    client: KeyValueServiceClient<Channel>,
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
) -> Result<RemoteKeyValue, BackendError> {
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
    let mut backend = RemoteKeyValue::new(
        &reattach.request.namespace,
        &dal.backend_kind,
        capabilities_from_names(&dal.capabilities),
        &endpoint.to_string(),
        channel,
        None,
    );
    backend.reattach = Some(Arc::new(reattach));
    Ok(backend)
}

impl RemoteKeyValue {
    /// A backend for `namespace` over `channel`. `kind` and `capabilities`
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
        RemoteKeyValue {
            namespace: namespace.to_string(),
            kind: intern_kind(kind),
            capabilities,
            endpoint: endpoint.to_string(),
            client: KeyValueServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            test_clock,
            reattach: None,
        }
    }

    /// Sends one call; if a remote pattern answers that it is not
    /// initialized (it restarted), initializes it and sends the call again.
    async fn call<Req, Resp, Fut>(
        &self,
        message: Req,
        send: impl Fn(KeyValueServiceClient<Channel>, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, BackendError>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut result = send(self.client.clone(), self.request(message.clone())).await;
        if let (Err(status), Some(reattach)) = (&result, &self.reattach)
            && is_not_started(status)
        {
            tracing::info!(endpoint = %self.endpoint, "remote pattern restarted; initializing it again");
            result = match reattach.initialize().await {
                Ok(_) => send(self.client.clone(), self.request(message)).await,
                Err(e) => Err(e),
            };
        }
        result
            .map(tonic::Response::into_inner)
            .map_err(|s| self.error(s))
    }

    /// A request for `message`, carrying the time left of the call being
    /// served as `grpc-timeout`, so the pattern stops when the caller has
    /// given up.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(left) = crate::deadline::remaining() {
            request.set_timeout(left);
        }
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

    fn page_token(&self, cursor: &Option<Cursor>, fingerprint: u64) -> String {
        cursor
            .as_ref()
            .map(|c| c.encode(fingerprint))
            .unwrap_or_default()
    }

    fn page_size(budget: usize) -> u32 {
        budget.clamp(1, u32::MAX as usize) as u32
    }

    fn next_cursor(&self, token: &str, fingerprint: u64) -> Result<Option<Cursor>, BackendError> {
        if token.is_empty() {
            return Ok(None);
        }
        Cursor::decode(token, fingerprint).map(Some).map_err(|e| {
            BackendError::Internal(format!(
                "pattern at {} returned a page token this proxy cannot read: {e}",
                self.endpoint
            ))
        })
    }

    fn write_outcome(
        &self,
        results: Vec<pb::MutationResult>,
        replayed: bool,
    ) -> Result<WriteOutcome, BackendError> {
        let outcomes = results
            .into_iter()
            .map(convert::outcome_from_pb)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                BackendError::Internal(format!(
                    "pattern at {} returned an empty mutation result",
                    self.endpoint
                ))
            })?;
        Ok(WriteOutcome { outcomes, replayed })
    }
}

#[async_trait]
impl crate::Backend for RemoteKeyValue {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn health(&self) -> Result<(), BackendError> {
        // A round trip to the pattern: its lifecycle health answer. Without
        // a lifecycle client (the forwarding half of a supervised process)
        // the supervisor watches health.
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

#[async_trait]
impl KeyValueBackend for RemoteKeyValue {
    async fn put(
        &self,
        id: &str,
        items: Vec<PutItem>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        let request = pb::PutRequest {
            namespace: self.namespace.clone(),
            id: id.to_string(),
            items: items.iter().map(convert::put_item_to_pb).collect(),
            idempotency_token: idempotency.map(|k| k.token).unwrap_or_default(),
        };
        let reply = self
            .call(request, |mut c, r| async move { c.put(r).await })
            .await?;
        Ok(WriteOutcome {
            outcomes: reply
                .versions
                .into_iter()
                .map(crate::keyvalue::MutationOutcome::Version)
                .collect(),
            replayed: reply.replayed,
        })
    }

    async fn get(
        &self,
        id: &str,
        selection: &Selection,
        page: PageRequest,
    ) -> Result<Page<Item>, BackendError> {
        let fingerprint = request_fingerprint(&self.namespace, "Get", id, selection);
        let request = pb::GetRequest {
            namespace: self.namespace.clone(),
            id: id.to_string(),
            selection: Some(convert::selection_to_pb(selection)),
            page_size_bytes: Self::page_size(page.budget_bytes),
            page_token: self.page_token(&page.cursor, fingerprint),
        };
        let reply = self
            .call(request, |mut c, r| async move { c.get(r).await })
            .await?;
        Ok(Page {
            items: reply.items.into_iter().map(convert::item_from_pb).collect(),
            next: self.next_cursor(&reply.next_page_token, fingerprint)?,
        })
    }

    async fn delete(&self, id: &str, selection: &Selection) -> Result<u64, BackendError> {
        let request = pb::DeleteRequest {
            namespace: self.namespace.clone(),
            id: id.to_string(),
            selection: Some(convert::selection_to_pb(selection)),
        };
        let reply = self
            .call(request, |mut c, r| async move { c.delete(r).await })
            .await?;
        Ok(reply.deleted)
    }

    async fn scan(&self, page: PageRequest) -> Result<Page<ScanEntry>, BackendError> {
        let fingerprint = request_fingerprint(&self.namespace, "Scan", "", &Selection::All);
        let request = pb::ScanRequest {
            namespace: self.namespace.clone(),
            page_size_bytes: Self::page_size(page.budget_bytes),
            page_token: self.page_token(&page.cursor, fingerprint),
        };
        let reply = self
            .call(request, |mut c, r| async move { c.scan(r).await })
            .await?;
        Ok(Page {
            items: convert::entries_from_records(reply.records),
            next: self.next_cursor(&reply.next_page_token, fingerprint)?,
        })
    }

    async fn mutate(
        &self,
        mutations: Vec<Mutation>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        let request = pb::MutateRequest {
            namespace: self.namespace.clone(),
            mutations: mutations.iter().map(convert::mutation_to_pb).collect(),
            idempotency_token: idempotency.map(|k| k.token).unwrap_or_default(),
        };
        let reply = self
            .call(request, |mut c, r| async move { c.mutate(r).await })
            .await?;
        self.write_outcome(reply.results, reply.replayed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> RemoteKeyValue {
        // Never connected: only the requests it builds are looked at.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        RemoteKeyValue::new(
            "orders",
            "memstore",
            Capabilities::default(),
            "test",
            channel,
            None,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_with_a_deadline_forwards_the_time_left() {
        let backend = backend();
        let at = tokio::time::Instant::now() + Duration::from_millis(1500);
        let request = crate::deadline::within(Some(at), async { backend.request(()) }).await;
        // tonic sends Request::set_timeout as grpc-timeout.
        let sent = request
            .metadata()
            .get("grpc-timeout")
            .expect("grpc-timeout is set")
            .to_str()
            .unwrap()
            .to_string();
        let unit = sent.chars().last().unwrap();
        let n: u64 = sent[..sent.len() - 1].parse().unwrap();
        let nanos = match unit {
            'n' => n,
            'u' => n * 1_000,
            'm' => n * 1_000_000,
            'S' => n * 1_000_000_000,
            other => panic!("unexpected unit {other} in {sent}"),
        };
        assert_eq!(nanos, 1_500_000_000, "{sent}");
    }

    #[tokio::test]
    async fn a_call_without_a_deadline_sends_none() {
        let backend = backend();
        assert!(backend.request(()).metadata().get("grpc-timeout").is_none());
        let request = crate::deadline::within(None, async { backend.request(()) }).await;
        assert!(request.metadata().get("grpc-timeout").is_none());
    }
}
