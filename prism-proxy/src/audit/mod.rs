//! The audit log: one record per data API call (who, which namespace and
//! method, which ids and keys — hashed unless the namespace allows clear
//! text — the outcome, latency and trace id; never a stored value).
//!
//! A call's record goes through a bounded queue to one writer task that
//! hands batches to the sink (a JSON-lines file, or NATS). Per namespace,
//! `audit.policy` says what a call does about its record:
//!
//! * `block` (default): it waits for room in the queue and returns only
//!   once the sink has its record (the file sink: `write(2)` done; NATS:
//!   acked or received by the server). If that fails or takes longer than
//!   `audit.block_timeout_ms`, the call fails with UNAVAILABLE — its
//!   effect, if it had one, stays applied.
//! * `drop`: it never waits; a record finding the queue full is dropped
//!   and counted in `prism_audit_dropped_total{namespace,reason}`.
//!
//! See ADR 009 for the reasoning and `docs-cms/operations.md` for what a
//! crash can lose.

mod call;
mod file;
mod nats;
mod record;
mod tail;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Request;

pub use call::{ANONYMOUS, AuditedRequest, AuditedResponse, Call, MAX_TARGETS, PiiSlot, Targets};
pub use file::{FileError, FileSink};
pub use nats::{NatsError, NatsSink};
pub use record::{
    AuditRecord, HASH_PREFIX, HashKeyError, KeyHasher, PiiField, TraceIds, clear_key, code_name,
    is_code_name, rfc3339_millis,
};
pub use tail::{Tail, TailFilter};

use crate::config::{AuditConfig, AuditPolicy, NamespaceAudit, SinkConfig};

/// The `namespace` of a record whose call named an invalid namespace.
pub const INVALID_NAMESPACE: &str = "_invalid";

/// The metrics label and NATS subject token of namespaces that do not
/// exist (so that made-up names cannot grow either without bound).
pub const UNKNOWN_NAMESPACE: &str = crate::metrics::UNKNOWN_NAMESPACE;

const RECORDS: &str = "prism_audit_records_total";
const DROPPED: &str = "prism_audit_dropped_total";
const SINK_ERRORS: &str = "prism_audit_sink_errors_total";
const QUEUE_DEPTH: &str = "prism_audit_queue_depth";

/// Describes the audit metrics (called once the recorder is installed).
pub fn describe_metrics() {
    metrics::describe_counter!(RECORDS, "Audit records the sink accepted, by sink");
    metrics::describe_counter!(
        DROPPED,
        "Audit records dropped, by namespace and reason (queue_full, sink_error, closed)"
    );
    metrics::describe_counter!(SINK_ERRORS, "Failed audit sink writes, by sink");
    metrics::describe_gauge!(QUEUE_DEPTH, "Audit records waiting for the sink");
}

fn count_dropped(namespace: &str, reason: &'static str, n: u64) {
    metrics::counter!(DROPPED, "namespace" => namespace.to_string(), "reason" => reason)
        .increment(n);
}

/// Why the audit log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    HashKey(#[from] HashKeyError),
    #[error("{0}; fix the path or set audit.file.path in prism.yaml")]
    File(#[from] FileError),
    #[error("{0}")]
    Nats(#[from] NatsError),
}

/// Why a `block` call's record was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the audit sink did not take the record within {0:?}")]
    Timeout(Duration),
    #[error("the audit sink failed: {0}")]
    Sink(String),
    #[error("the audit log is closed (the proxy is shutting down)")]
    Closed,
}

impl From<SubmitError> for tonic::Status {
    fn from(e: SubmitError) -> Self {
        tonic::Status::unavailable(format!(
            "{e}; the call's namespace requires an audit record for every call, so it is \
             refused (a write may have been applied: retry with the same idempotency token). \
             See the proxy's log and prism_audit_sink_errors_total"
        ))
    }
}

/// A record on its way to the sink.
struct Entry {
    record: AuditRecord,
    /// The namespace as a bounded label (known namespace or `_unknown`).
    label: String,
    /// Set for `block`: told once the sink has the record.
    done: Option<oneshot::Sender<Result<(), String>>>,
}

// Records are the hot path and travel by value (no allocation per call);
// the rare `Close` wastes a slot's worth of bytes.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Record(Entry),
    /// Write what is queued, fsync, stop.
    Close(oneshot::Sender<()>),
}

/// The proxy's audit log.
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    hasher: KeyHasher,
    trace_ids: TraceIds,
    tail: Arc<Tail>,
    sink: &'static str,
    block_timeout: Duration,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// The largest batch the writer hands to the sink at once.
const MAX_BATCH: usize = 1024;

/// A call refused as malformed, for [`AuditLog::malformed_call`].
pub struct MalformedCall<'a> {
    pub principal: &'a str,
    pub dal: &'a str,
    pub method: &'a str,
    /// The `traceparent` header, when sent.
    pub traceparent: Option<&'a str>,
    /// The `x-request-id` header, when sent.
    pub x_request_id: Option<&'a str>,
    /// What the caller was answered.
    pub code: tonic::Code,
    pub started: std::time::Instant,
}

impl AuditLog {
    /// Opens the sink (creating the hash key and the audit file if
    /// needed, or connecting to NATS) and starts the writer.
    pub async fn start(config: &AuditConfig, data_dir: &Path) -> Result<Arc<Self>, AuditError> {
        let key_path = config.hash_key_path(data_dir);
        let hasher = tokio::task::spawn_blocking(move || KeyHasher::load_or_create(&key_path))
            .await
            .expect("loading the hash key does not panic")?;
        let sink = match &config.sink {
            SinkConfig::File(f) => {
                let (f, dir) = (f.clone(), data_dir.to_path_buf());
                let sink = tokio::task::spawn_blocking(move || FileSink::open(&f, &dir))
                    .await
                    .expect("opening the audit file does not panic")?;
                tracing::info!(path = %sink.path().display(), "audit log writing to file");
                writer::Sink::File(Arc::new(Mutex::new(sink)))
            }
            SinkConfig::Nats(n) => {
                let sink = NatsSink::connect(n).await?;
                tracing::info!(url = %n.url, prefix = %n.subject_prefix, "audit log publishing to nats");
                writer::Sink::Nats(Box::new(sink))
            }
        };
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let tail = Arc::new(Tail::new(config.tail_buffer));
        let name = config.sink.name();
        let writer = tokio::spawn(writer::run(rx, sink, tail.clone(), name));
        Ok(Arc::new(AuditLog {
            tx,
            hasher,
            trace_ids: TraceIds::new(),
            tail,
            sink: name,
            block_timeout: config.block_timeout,
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// Starts the audit record of a call arriving with `request`.
    pub fn call<R: AuditedRequest>(&self, method: &'static str, request: &Request<R>) -> Call {
        Call::start(method, request, &self.trace_ids)
    }

    /// The record of a finished `call`: `namespace` is its configuration's
    /// audit settings, `None` when no such namespace exists.
    pub fn record(
        &self,
        call: Call,
        dal: &str,
        namespace: Option<&NamespaceAudit>,
        code: tonic::Code,
        response: Option<&dyn AuditedResponse>,
    ) -> AuditRecord {
        let latency_us = u64::try_from(call.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut targets = call.targets;
        if let Some(response) = response {
            response.targets(&mut targets);
        }
        let clear = namespace.is_some_and(|a| a.clear_keys);
        let ids = targets
            .ids
            .iter()
            .map(|id| {
                if clear {
                    id.clone()
                } else {
                    self.hasher.hash(id.as_bytes())
                }
            })
            .collect();
        let keys = targets
            .keys
            .iter()
            .map(|k| {
                if clear {
                    clear_key(k)
                } else {
                    self.hasher.hash(k)
                }
            })
            .collect();
        let name = if crate::config::validate_name(&call.namespace).is_ok() {
            call.namespace
        } else {
            INVALID_NAMESPACE.to_string()
        };
        AuditRecord {
            time: rfc3339_millis(call.time),
            principal: call.principal,
            namespace: name,
            dal: dal.to_string(),
            method: call.method.to_string(),
            ids,
            keys,
            selection: targets.selection.map(str::to_string),
            truncated: targets.truncated,
            pii_fields: std::mem::take(&mut *call.pii.lock().unwrap_or_else(|e| e.into_inner())),
            status: code_name(code).to_string(),
            latency_us,
            trace_id: call.trace_id,
            config_version: None,
        }
    }

    /// Completes `call` and submits its record under the namespace's
    /// policy (`drop` for namespaces that do not exist: such calls touch
    /// no data). Errors only for `block`.
    pub fn finish(
        &self,
        call: Call,
        dal: &str,
        namespace: Option<&NamespaceAudit>,
        code: tonic::Code,
        response: Option<&dyn AuditedResponse>,
    ) -> impl Future<Output = Result<(), SubmitError>> + Send + '_ {
        let label = if namespace.is_some() {
            call.namespace.clone()
        } else {
            UNKNOWN_NAMESPACE.to_string()
        };
        let policy = namespace.map_or(AuditPolicy::Drop, |a| a.policy);
        let record = self.record(call, dal, namespace, code, response);
        self.submit(record, label, policy)
    }

    /// Queues `record` (`label`: the namespace's bounded label).
    pub async fn submit(
        &self,
        record: AuditRecord,
        label: String,
        policy: AuditPolicy,
    ) -> Result<(), SubmitError> {
        match policy {
            AuditPolicy::Drop => {
                self.enqueue_or_drop(Entry {
                    record,
                    label,
                    done: None,
                });
                Ok(())
            }
            AuditPolicy::Block => {
                let deadline = Instant::now() + self.block_timeout;
                let (done, confirmed) = oneshot::channel();
                let entry = Entry {
                    record,
                    label,
                    done: Some(done),
                };
                match tokio::time::timeout_at(deadline, self.tx.send(Msg::Record(entry))).await {
                    Err(_) => return Err(SubmitError::Timeout(self.block_timeout)),
                    Ok(Err(_)) => return Err(SubmitError::Closed),
                    Ok(Ok(())) => {}
                }
                match tokio::time::timeout_at(deadline, confirmed).await {
                    Err(_) => Err(SubmitError::Timeout(self.block_timeout)),
                    Ok(Err(_)) => Err(SubmitError::Closed),
                    Ok(Ok(Err(e))) => Err(SubmitError::Sink(e)),
                    Ok(Ok(Ok(()))) => Ok(()),
                }
            }
        }
    }

    /// Records a call refused before its service saw it because the
    /// request was malformed (a message that does not decode, a
    /// `content-type` that is not gRPC, a message over the size limit).
    /// Its namespace is unknown, so the record names `_invalid` and
    /// follows the `drop` policy, like calls naming no namespace.
    pub fn malformed_call(&self, call: MalformedCall<'_>) {
        let mut record = self.bare_record(
            call.principal,
            "",
            call.dal,
            call.method,
            call.code,
            call.started,
        );
        record.trace_id = call::trace_id(call.traceparent, call.x_request_id, &self.trace_ids);
        self.enqueue_or_drop(Entry {
            record,
            label: UNKNOWN_NAMESPACE.to_string(),
            done: None,
        });
    }

    /// A record of a call that names no ids or keys; `namespace` is kept
    /// when it is a valid name, else recorded as `_invalid`.
    fn bare_record(
        &self,
        principal: &str,
        namespace: &str,
        dal: &str,
        method: &str,
        code: tonic::Code,
        started: std::time::Instant,
    ) -> AuditRecord {
        AuditRecord {
            time: rfc3339_millis(std::time::SystemTime::now()),
            principal: principal.to_string(),
            namespace: if crate::config::validate_name(namespace).is_ok() {
                namespace.to_string()
            } else {
                INVALID_NAMESPACE.to_string()
            },
            dal: dal.to_string(),
            method: method.to_string(),
            ids: Vec::new(),
            keys: Vec::new(),
            selection: None,
            truncated: false,
            pii_fields: Vec::new(),
            status: code_name(code).to_string(),
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            trace_id: self.trace_ids.generate(),
            config_version: None,
        }
    }

    /// Records a change to a namespace's definition (dal `admin`):
    /// `method` is e.g. `ApplyNamespace`, `version` the version the change
    /// made (0 when it failed). Uses `block`: a configuration change is
    /// always recorded; an error is returned when the sink cannot take it.
    pub async fn admin_change(
        &self,
        principal: &str,
        namespace: &str,
        method: &str,
        code: tonic::Code,
        version: u64,
        started: std::time::Instant,
    ) -> Result<(), SubmitError> {
        let mut record = self.bare_record(principal, namespace, "admin", method, code, started);
        record.config_version = (version > 0).then_some(version);
        let label = record.namespace.clone();
        self.submit(record, label, AuditPolicy::Block).await
    }

    /// Queues `entry` if there is room, else drops and counts it.
    fn enqueue_or_drop(&self, entry: Entry) {
        match self.tx.try_send(Msg::Record(entry)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Msg::Record(e))) => {
                count_dropped(&e.label, "queue_full", 1);
            }
            Err(mpsc::error::TrySendError::Closed(Msg::Record(e))) => {
                count_dropped(&e.label, "closed", 1);
            }
            Err(_) => unreachable!("only records are sent here"),
        }
    }

    /// Recent records and new ones, for `TailAudit`.
    pub fn tail(&self) -> &Arc<Tail> {
        &self.tail
    }

    /// The sink's name (`file` or `nats`).
    pub fn sink_name(&self) -> &'static str {
        self.sink
    }

    /// Records waiting for the sink.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The hasher ids and keys are hashed with.
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Writes and fsyncs what is queued and stops the writer; calls after
    /// this find the log closed. Ends followers of the tail.
    pub async fn close(&self) {
        self.tail.close();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(writer) = writer else { return };
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        if let Err(e) = writer.await {
            tracing::warn!(error = %e, "audit writer task failed");
        }
    }
}

#[cfg(test)]
mod tests;
