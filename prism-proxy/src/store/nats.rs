//! A shared store on a NATS JetStream key-value bucket: one key per
//! namespace, its value the YAML.
//!
//! A version is the entry's revision, the bucket stream's sequence number,
//! so it grows across the whole bucket and every proxy reads the same one.
//! A delete writes a delete marker; the marker's sequence is the
//! deletion's version. The bucket keeps one revision per key and is
//! created when missing.
//!
//! Watching follows every new message of the bucket (`watch_all`) and
//! re-subscribes, with backoff, when that stream ends.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, kv};
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::{ConfigStore, StoreError, StoredNamespace};

/// The longest a single request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Re-subscribing the watch: first and longest wait.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The config store on a NATS JetStream KV bucket.
#[derive(Clone)]
pub struct NatsKvStore {
    kv: kv::Store,
    js: jetstream::Context,
    bucket: String,
    /// `host:port[,host:port]` without credentials.
    address: String,
}

impl fmt::Debug for NatsKvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsKvStore")
            .field("store", &self.describe())
            .finish()
    }
}

/// The servers of a NATS URL list, without scheme or credentials.
fn address_of(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let server = server.trim();
            let server = server.split_once("://").map_or(server, |(_, rest)| rest);
            let server = server.rsplit_once('@').map_or(server, |(_, host)| host);
            server.trim_end_matches('/')
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `text` with the credentials of `url` cut out, for error messages.
fn redact(text: String, url: &str) -> String {
    url.split(',').fold(text, |text, server| {
        let server = server.split_once("://").map_or(server, |(_, rest)| rest);
        match server.rsplit_once('@') {
            Some((credentials, _)) if !credentials.is_empty() => text.replace(credentials, "***"),
            _ => text,
        }
    })
}

fn valid_bucket(bucket: &str) -> bool {
    (1..=64).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A namespace name that is also a KV key: no empty subject token.
fn check_key(name: &str) -> Result<(), StoreError> {
    crate::config::validate_name(name).map_err(StoreError::Invalid)?;
    if name.ends_with('.') || name.contains("..") {
        return Err(StoreError::Invalid(format!(
            "'{name}' cannot be a NATS KV key (a '.' at the end or two in a row); \
             rename the namespace"
        )));
    }
    Ok(())
}

/// Opens `bucket`, creating it when missing.
async fn open_bucket(js: &jetstream::Context, bucket: &str) -> Result<kv::Store, String> {
    if let Ok(kv) = js.get_key_value(bucket).await {
        return Ok(kv);
    }
    // The stream a KV bucket is, made directly: JetStream's
    // `create_key_value` first asks for account details that servers
    // before 2.10 answer in a form it cannot read.
    let config = jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("Prism namespace definitions".to_string()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    let created = js.create_stream(config).await;
    // Failed: another proxy may have created it meanwhile.
    js.get_key_value(bucket)
        .await
        .map_err(|open| match created {
            Ok(_) => format!("cannot open the bucket just created: {open}"),
            Err(create) => format!("cannot create the bucket: {create}"),
        })
}

impl NatsKvStore {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`, credentials in the
    /// URL if needed) and opens `bucket`, creating it (one revision per
    /// key) when missing; a concurrent creation by another proxy is fine.
    pub async fn connect(url: &str, bucket: &str) -> Result<NatsKvStore, StoreError> {
        if !valid_bucket(bucket) {
            return Err(StoreError::Invalid(format!(
                "namespaces.store.bucket is '{bucket}'; use 1 to 64 letters, digits, '-' or '_' \
                 (e.g. prism-namespaces)"
            )));
        }
        let address = address_of(url);
        let unavailable = |message: String| StoreError::Unavailable {
            store: format!("nats {address} kv bucket {bucket}"),
            message: redact(message, url),
        };
        let options = async_nats::ConnectOptions::new()
            .name("prism-proxy config store")
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(TIMEOUT));
        let client = tokio::time::timeout(CONNECT_TIMEOUT, options.connect(url))
            .await
            .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| {
                unavailable(format!(
                    "cannot connect: {e}; is NATS running at {address}? \
                     check namespaces.store.url in prism.yaml"
                ))
            })?;
        let mut js = jetstream::new(client);
        js.set_timeout(TIMEOUT);
        // A server error while several proxies create the bucket at once
        // is worth another try.
        let mut attempt = 0;
        let kv = loop {
            match open_bucket(&js, bucket).await {
                Ok(kv) => break kv,
                Err(e) if attempt < 2 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "config store bucket not opened; retrying");
                    tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                }
                Err(e) => {
                    return Err(unavailable(format!(
                        "{e}; is JetStream enabled on the NATS server at {address} \
                         (nats-server -js), and may this user create KV buckets?"
                    )));
                }
            }
        };
        Ok(NatsKvStore {
            kv,
            js,
            bucket: bucket.to_string(),
            address,
        })
    }

    fn unavailable(&self, what: &str, e: impl fmt::Display) -> StoreError {
        StoreError::Unavailable {
            store: self.describe(),
            message: format!(
                "{what}: {e}; is NATS running at {}? check namespaces.store.url in prism.yaml",
                self.address
            ),
        }
    }

    /// The live revision of `name`, 0 when absent or deleted.
    async fn current(&self, name: &str) -> Result<u64, StoreError> {
        let entry = self
            .kv
            .entry(name)
            .await
            .map_err(|e| self.unavailable("reading a key", e))?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => e.revision,
            _ => 0,
        })
    }

    fn mismatch(name: &str, expected: u64, actual: u64) -> StoreError {
        StoreError::VersionMismatch {
            name: name.to_string(),
            expected,
            actual,
        }
    }

    /// Writes a delete marker for `name` if its last message is still
    /// `revision`; its sequence, or `None` when something else came first.
    async fn delete_at(&self, name: &str, revision: u64) -> Result<Option<u64>, StoreError> {
        let prefix = self.kv.put_prefix.as_ref().unwrap_or(&self.kv.prefix);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            revision.to_string().as_str(),
        );
        let ack = self
            .js
            .publish_with_headers(format!("{prefix}{name}"), headers, "".into())
            .await
            .map_err(|e| self.unavailable("deleting", e))?
            .await;
        match ack {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(self.unavailable("deleting", e)),
        }
    }
}

#[async_trait]
impl ConfigStore for NatsKvStore {
    fn describe(&self) -> String {
        format!("nats {} kv bucket {}", self.address, self.bucket)
    }

    async fn list(&self) -> Result<Vec<StoredNamespace>, StoreError> {
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| self.unavailable("listing keys", e))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|e| self.unavailable("listing keys", e))?);
        }
        names.sort();
        names.dedup();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let entry = self
                .kv
                .entry(name.as_str())
                .await
                .map_err(|e| self.unavailable("reading a key", e))?;
            // Deleted since the keys were listed: skipped.
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                continue;
            };
            out.push(StoredNamespace {
                source: format!("nats kv bucket {} key {name}", self.bucket),
                yaml: String::from_utf8_lossy(&entry.value).into_owned(),
                version: entry.revision,
                name,
            });
        }
        Ok(out)
    }

    async fn put(
        &self,
        name: &str,
        yaml: &str,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        check_key(name)?;
        let value = || yaml.to_string().into();
        loop {
            match expected_version {
                None => {
                    return self
                        .kv
                        .put(name, value())
                        .await
                        .map_err(|e| self.unavailable("writing", e));
                }
                Some(0) => match self.kv.create(name, value()).await {
                    Ok(revision) => return Ok(revision),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                        let actual = self.current(name).await?;
                        // Deleted again meanwhile: retry.
                        if actual != 0 {
                            return Err(Self::mismatch(name, 0, actual));
                        }
                    }
                    Err(e) => return Err(self.unavailable("writing", e)),
                },
                Some(expected) => {
                    // A delete marker's revision is no version of `name`:
                    // check that the entry at `expected` is live.
                    let actual = self.current(name).await?;
                    if actual != expected {
                        return Err(Self::mismatch(name, expected, actual));
                    }
                    match self.kv.update(name, value(), expected).await {
                        Ok(revision) => return Ok(revision),
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                            let actual = self.current(name).await?;
                            if actual != expected {
                                return Err(Self::mismatch(name, expected, actual));
                            }
                        }
                        Err(e) => return Err(self.unavailable("writing", e)),
                    }
                }
            }
        }
    }

    async fn delete(&self, name: &str, expected_version: Option<u64>) -> Result<u64, StoreError> {
        check_key(name)?;
        loop {
            let actual = self.current(name).await?;
            if let Some(expected) = expected_version
                && actual != expected
            {
                return Err(Self::mismatch(name, expected, actual));
            }
            if actual == 0 {
                return Err(StoreError::NotFound {
                    name: name.to_string(),
                });
            }
            if let Some(version) = self.delete_at(name, actual).await? {
                return Ok(version);
            }
        }
    }

    async fn watch(&self) -> Result<mpsc::Receiver<()>, StoreError> {
        // The sequence first, so nothing between the two is missed.
        let last = self.last_sequence().await?;
        let watch = self
            .kv
            .watch_all()
            .await
            .map_err(|e| self.unavailable("watching the bucket", e))?;
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(self.clone().run_watch(watch, last, tx));
        Ok(rx)
    }
}

#[path = "nats_watch.rs"]
mod watch;

#[cfg(test)]
#[path = "nats_tests.rs"]
mod tests;
