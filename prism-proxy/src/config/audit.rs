//! Audit settings: `audit` in `prism.yaml` (where records go) and `audit`
//! in a namespace's YAML (whether a call waits for its record, and whether
//! ids and keys are recorded in clear text).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `audit` in `prism.yaml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditFile {
    /// Where records go: `file` (default) or `nats`.
    pub sink: SinkKind,
    /// Records waiting for the sink, at most. Default 8192. A `block`
    /// namespace's call waits for room; a `drop` namespace's record is
    /// dropped (and counted) when the queue is full.
    pub queue_capacity: usize,
    /// How long a `block` call waits for its record to be written before
    /// it fails with UNAVAILABLE, in milliseconds. Default 5000.
    pub block_timeout_ms: u64,
    /// Recent records kept in memory for `prismctl audit tail`. Default
    /// 1000.
    pub tail_buffer: usize,
    /// The secret that ids and keys are hashed with (HMAC-SHA-256),
    /// 64 hex digits. Created (mode 0600) when missing. Default
    /// `<data_dir>/audit/hash.key`. Proxies sharing this file produce the
    /// same hash for the same id.
    pub hash_key_file: Option<PathBuf>,
    /// The `file` sink's settings.
    pub file: Option<FileSinkFile>,
    /// The `nats` sink's settings (required when `sink: nats`).
    pub nats: Option<NatsSinkConfig>,
}

impl Default for AuditFile {
    fn default() -> Self {
        AuditFile {
            sink: SinkKind::File,
            queue_capacity: 8192,
            block_timeout_ms: 5000,
            tail_buffer: 1000,
            hash_key_file: None,
            file: None,
            nats: None,
        }
    }
}

/// `audit.sink`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// JSON lines in a local file, rotated by size.
    #[default]
    File,
    /// JSON messages on NATS subjects `<subject_prefix>.<namespace>`.
    Nats,
}

impl SinkKind {
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::File => "file",
            SinkKind::Nats => "nats",
        }
    }
}

/// `audit.file` as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkFile {
    /// The active file. Default `<data_dir>/audit/audit.jsonl`.
    pub path: Option<PathBuf>,
    /// Size at which the active file is rotated, in bytes. Default
    /// 67108864 (64 MiB); at least 4096.
    pub max_bytes: u64,
    /// Rotated files kept (`audit.jsonl.1` newest … `audit.jsonl.<keep>`
    /// oldest); older ones are deleted. Default 10; at least 1.
    pub keep: u32,
    /// Longest time a written record waits for fsync, in milliseconds.
    /// Default 1000. 0: fsync every batch before its calls return.
    pub fsync_interval_ms: u64,
}

impl Default for FileSinkFile {
    fn default() -> Self {
        FileSinkFile {
            path: None,
            max_bytes: 64 << 20,
            keep: 10,
            fsync_interval_ms: 1000,
        }
    }
}

/// `audit.nats`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSinkConfig {
    /// The NATS server. Default `nats://127.0.0.1:4222`.
    pub url: String,
    /// Records are published to `<subject_prefix>.<namespace>`. Default
    /// `prism.audit`.
    pub subject_prefix: String,
    /// How long connecting, a flush or a JetStream ack may take, in
    /// milliseconds. Default 5000.
    pub timeout_ms: u64,
}

impl Default for NatsSinkConfig {
    fn default() -> Self {
        NatsSinkConfig {
            url: "nats://127.0.0.1:4222".to_string(),
            subject_prefix: "prism.audit".to_string(),
            timeout_ms: 5000,
        }
    }
}

/// The validated audit settings the proxy runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub queue_capacity: usize,
    pub block_timeout: Duration,
    pub tail_buffer: usize,
    /// `None`: `<data_dir>/audit/hash.key` (see [`AuditConfig::hash_key_path`]).
    pub hash_key_file: Option<PathBuf>,
    pub sink: SinkConfig,
}

impl AuditConfig {
    /// The hash key file, defaulting under the proxy's final `data_dir`
    /// (which `--data-dir` may override after the file was read).
    pub fn hash_key_path(&self, data_dir: &Path) -> PathBuf {
        self.hash_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("audit").join("hash.key"))
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditFile::default()
            .validate("built-in defaults", |p| p.to_path_buf())
            .expect("the default audit settings are valid")
    }
}

/// The validated sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    File(FileSinkConfig),
    Nats(NatsSinkConfig),
}

impl SinkConfig {
    pub fn name(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => SinkKind::File.name(),
            SinkConfig::Nats(_) => SinkKind::Nats.name(),
        }
    }
}

impl FileSinkConfig {
    /// The active file, defaulting under the proxy's final `data_dir`.
    pub fn path(&self, data_dir: &Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| data_dir.join("audit").join("audit.jsonl"))
    }
}

/// The validated `file` sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// `None`: `<data_dir>/audit/audit.jsonl` (see [`FileSinkConfig::path`]).
    pub path: Option<PathBuf>,
    pub max_bytes: u64,
    pub keep: u32,
    /// Zero: fsync before acknowledging every batch.
    pub fsync_interval: Duration,
}

impl AuditFile {
    /// Validates `audit` of `prism.yaml` (`file`); relative paths are
    /// resolved with `resolve`.
    pub fn validate(
        self,
        file: &str,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> Result<AuditConfig, ConfigError> {
        if self.queue_capacity == 0 {
            return Err(ConfigError::new(
                file,
                "audit.queue_capacity",
                "must be at least 1",
            ));
        }
        if self.block_timeout_ms == 0 {
            return Err(ConfigError::new(
                file,
                "audit.block_timeout_ms",
                "must be at least 1: how long a call of a `block` namespace waits for its \
                 audit record to be written",
            ));
        }
        let sink = match self.sink {
            SinkKind::File => {
                if self.nats.is_some() {
                    return Err(ConfigError::new(
                        file,
                        "audit.nats",
                        "applies only to audit.sink nats; remove it or set audit.sink: nats",
                    ));
                }
                let f = self.file.unwrap_or_default();
                if f.max_bytes < 4096 {
                    return Err(ConfigError::new(
                        file,
                        "audit.file.max_bytes",
                        format!("is {} but must be at least 4096", f.max_bytes),
                    ));
                }
                if f.keep == 0 {
                    return Err(ConfigError::new(
                        file,
                        "audit.file.keep",
                        "must be at least 1: the number of rotated files kept",
                    ));
                }
                SinkConfig::File(FileSinkConfig {
                    path: f.path.map(|p| resolve(&p)),
                    max_bytes: f.max_bytes,
                    keep: f.keep,
                    fsync_interval: Duration::from_millis(f.fsync_interval_ms),
                })
            }
            SinkKind::Nats => {
                if self.file.is_some() {
                    return Err(ConfigError::new(
                        file,
                        "audit.file",
                        "applies only to audit.sink file; remove it or set audit.sink: file",
                    ));
                }
                let Some(n) = self.nats else {
                    return Err(ConfigError::new(
                        file,
                        "audit.nats",
                        "is required for audit.sink nats: at least `url: nats://host:4222`",
                    ));
                };
                if !(n.url.starts_with("nats://") || n.url.starts_with("tls://")) {
                    return Err(ConfigError::new(
                        file,
                        "audit.nats.url",
                        format!("'{}' must look like nats://host:4222", n.url),
                    ));
                }
                if !valid_subject_prefix(&n.subject_prefix) {
                    return Err(ConfigError::new(
                        file,
                        "audit.nats.subject_prefix",
                        format!(
                            "'{}' is not a valid subject prefix; use dot-separated tokens of \
                             letters, digits, '-' and '_', e.g. prism.audit",
                            n.subject_prefix
                        ),
                    ));
                }
                if n.timeout_ms == 0 {
                    return Err(ConfigError::new(
                        file,
                        "audit.nats.timeout_ms",
                        "must be at least 1",
                    ));
                }
                SinkConfig::Nats(n)
            }
        };
        Ok(AuditConfig {
            queue_capacity: self.queue_capacity,
            block_timeout: Duration::from_millis(self.block_timeout_ms),
            tail_buffer: self.tail_buffer,
            hash_key_file: self.hash_key_file.map(|p| resolve(&p)),
            sink,
        })
    }
}

fn valid_subject_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        })
}

/// `audit` in a namespace's YAML.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NamespaceAudit {
    /// `block` (default) or `drop`.
    pub policy: AuditPolicy,
    /// Record ids and keys in clear text instead of hashed. Default false.
    pub clear_keys: bool,
}

/// What a call does when the audit queue is full.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuditPolicy {
    /// The call waits for room in the queue and returns only once its
    /// record is written (`write(2)` done for the file sink; acked or
    /// flushed for NATS). No acknowledged call goes unrecorded. The
    /// default: an audit log that silently loses records is not one.
    #[default]
    Block,
    /// The call never waits; with the queue full its record is dropped and
    /// counted in `prism_audit_dropped_total`.
    Drop,
}

impl AuditPolicy {
    pub fn name(self) -> &'static str {
        match self {
            AuditPolicy::Block => "block",
            AuditPolicy::Drop => "drop",
        }
    }
}
