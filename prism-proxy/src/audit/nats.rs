//! The `nats` sink: each record is published as JSON to
//! `<subject_prefix>.<namespace>`.
//!
//! A `block` record is confirmed before its call returns: when a
//! JetStream stream captures its subject it goes out as a JetStream
//! publish and the sink waits for the stream's ack (the record is then
//! stored); otherwise it is a core publish followed by a flush, whose
//! answer proves the server received it — all core NATS offers. Whether a
//! subject is captured is asked once and remembered for 30 seconds, so a
//! stream created later is used from then on. `drop` records are core
//! publishes without waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishErrorKind};

use crate::config::NatsSinkConfig;

/// A connected NATS sink.
pub struct NatsSink {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    timeout: Duration,
    url: String,
    /// subject → (captured by a stream, when that was learned).
    captured: Mutex<HashMap<String, (bool, Instant)>>,
}

/// How long the sink trusts what it learned about a subject's stream.
const CAPTURE_TTL: Duration = Duration::from_secs(30);

/// A NATS sink failure (no record content).
#[derive(Debug, thiserror::Error)]
#[error("audit NATS sink {url}: {what}: {detail}")]
pub struct NatsError {
    url: String,
    what: &'static str,
    detail: String,
}

/// One record to publish.
pub struct Message {
    /// The subject's last part (the namespace, or `_unknown`).
    pub namespace: String,
    pub payload: Vec<u8>,
    /// A caller waits for this record.
    pub confirm: bool,
}

impl NatsSink {
    /// Connects; fails when the server cannot be reached in `timeout_ms`.
    pub async fn connect(config: &NatsSinkConfig) -> Result<Self, NatsError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let err = |what, detail: String| NatsError {
            url: config.url.clone(),
            what,
            detail,
        };
        let options = async_nats::ConnectOptions::new()
            .name("prism-proxy audit")
            .connection_timeout(timeout)
            .request_timeout(Some(timeout));
        let client = tokio::time::timeout(timeout, options.connect(config.url.as_str()))
            .await
            .map_err(|_| err("connecting", format!("timed out after {timeout:?}")))?
            .map_err(|e| {
                err(
                    "connecting",
                    format!("{e}; start NATS there or change audit.nats.url"),
                )
            })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(timeout);
        Ok(NatsSink {
            client,
            js,
            prefix: config.subject_prefix.clone(),
            timeout,
            url: config.url.clone(),
            captured: Mutex::new(HashMap::new()),
        })
    }

    fn subject(&self, namespace: &str) -> String {
        format!("{}.{namespace}", self.prefix)
    }

    fn err(&self, what: &'static str, detail: impl ToString) -> NatsError {
        NatsError {
            url: self.url.clone(),
            what,
            detail: detail.to_string(),
        }
    }

    /// Whether a JetStream stream stores `subject`. When JetStream cannot
    /// say (an error other than "no such stream"), the answer is yes:
    /// the record then waits for an ack that may fail, never the other
    /// way round.
    async fn is_captured(&self, subject: &str) -> bool {
        let lock = || self.captured.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((captured, at)) = lock().get(subject)
            && at.elapsed() < CAPTURE_TTL
        {
            return *captured;
        }
        let answer = tokio::time::timeout(self.timeout, self.js.stream_by_subject(subject)).await;
        let captured = match answer {
            Ok(Ok(_)) => true,
            // No stream, or no JetStream on the server at all.
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    GetStreamByNameErrorKind::NotFound | GetStreamByNameErrorKind::Request
                ) =>
            {
                false
            }
            Ok(Err(_)) | Err(_) => return true,
        };
        lock().insert(subject.to_string(), (captured, Instant::now()));
        captured
    }

    /// Publishes `batch`; returns once every record to be confirmed is
    /// confirmed (see the module doc).
    pub async fn write(&self, batch: Vec<Message>) -> Result<(), NatsError> {
        let mut acks = Vec::new();
        let mut flush = false;
        for m in batch {
            let subject = self.subject(&m.namespace);
            if m.confirm && self.is_captured(&subject).await {
                let ack = self
                    .js
                    .publish(subject, m.payload.into())
                    .await
                    .map_err(|e| self.err("publishing", e))?;
                acks.push(ack);
            } else {
                flush |= m.confirm;
                self.client
                    .publish(subject, m.payload.into())
                    .await
                    .map_err(|e| self.err("publishing", e))?;
            }
        }
        if flush {
            self.flush().await?;
        }
        for ack in acks {
            match tokio::time::timeout(self.timeout + Duration::from_millis(100), ack).await {
                Ok(Ok(_)) => {}
                // The stream went away since we asked: the server got it.
                Ok(Err(e)) if e.kind() == PublishErrorKind::StreamNotFound => {}
                Ok(Err(e)) => return Err(self.err("waiting for the JetStream ack", e)),
                Err(_) => {
                    return Err(self.err(
                        "waiting for the JetStream ack",
                        format!("no answer in {:?}", self.timeout),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sends what the client still buffers.
    pub async fn flush(&self) -> Result<(), NatsError> {
        tokio::time::timeout(self.timeout, self.client.flush())
            .await
            .map_err(|_| self.err("flushing", format!("timed out after {:?}", self.timeout)))?
            .map_err(|e| self.err("flushing", e))
    }
}
