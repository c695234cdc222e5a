//! redis: Prism's KeyValue backend on Redis (redis-rs, async, with an
//! auto-reconnecting `ConnectionManager`).
//!
//! * Each item is its own Redis string (`version:expires_at:value`), so
//!   Redis's native expiry (PXAT) reclaims TTL items; per id a sorted set
//!   of its keys (all scores 0) keeps them in bytewise order; a sorted set
//!   of ids serves Scan. The layout is in [`layout`] and ADR-006.
//! * Every operation is one Lua script (module `scripts`, `src/lua/`), so a Put or Mutate
//!   is atomic, conditions are checked against the state before the call,
//!   and a page is read from one consistent state. Scripts run with EVALSHA
//!   and are reloaded when Redis lost them.
//! * Visibility follows the backend's clock: an item whose expiry has
//!   passed by that clock is never returned or counted, even before Redis
//!   reclaims it. A sweeper removes expired items and their index entries.
//! * Every key of a namespace shares one cluster hash tag
//!   (`<prefix>:{<namespace>}:`), so the multi-key scripts stay valid on
//!   Redis Cluster.
//! * A lost server makes calls fail with UNAVAILABLE; the connection
//!   manager reconnects when it is back, without reopening the backend.
//!   Redis runs here without persistence, so the backend does not declare
//!   `durable` (nor `snapshot_reads`: pages are read afresh).
//!
//! Options (namespace YAML, `backend.options`):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `url` | required | `redis://[user:password@]host:port[/db]` |
//! | `key_prefix` | `prism` | first segment of every key name |
//! | `sweep_interval_ms` | 1000 | how often expired items are removed |

#![forbid(unsafe_code)]

pub mod layout;
mod ops;
pub mod pubsub;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pattern_core::background::Periodic;
use pattern_core::needs::{Consistency, Durability, GIB, NeedsProfile, Scope};
use pattern_core::{
    BackendError, Capabilities, Capability, Clock, IdempotencyKey, Item, KeyValueBackend, Mutation,
    MutationOutcome, OpenContext, Page, PageRequest, PutItem, ScanEntry, Selection, WriteOutcome,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, ScriptInvocation};
use serde::Deserialize;

pub use layout::Layout;
pub use ops::SweepStats;
pub use pubsub::{RedisPubSubBackend, RedisPubSubFactory, RedisPubSubOptions};

/// The backend kind name.
pub const KIND: &str = "redis";

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a call may wait for Redis's answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connection attempts after the first before a call fails (the next call
/// starts over).
const CONNECT_RETRIES: usize = 2;

/// redis options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]`; required.
    pub url: Option<String>,
    /// The first segment of every key name (default `prism`): 1 to 64
    /// printable ASCII characters, no spaces, `{` or `}`.
    pub key_prefix: String,
    /// How often the sweeper removes expired items (default 1000 ms).
    pub sweep_interval_ms: u64,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: None,
            key_prefix: "prism".to_string(),
            sweep_interval_ms: 1000,
        }
    }
}

impl RedisOptions {
    /// Parses and checks options strictly.
    pub fn parse(options: serde_json::Value) -> Result<Self, BackendError> {
        let options: RedisOptions = pattern_core::keyvalue::parse_options(KIND, options)?;
        options.client()?;
        let prefix = &options.key_prefix;
        if prefix.is_empty()
            || prefix.len() > 64
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
        {
            return Err(BackendError::Config(format!(
                "redis backend option `key_prefix` is {prefix:?}; use 1 to 64 printable ASCII \
                 characters without spaces, '{{' or '}}'"
            )));
        }
        Ok(options)
    }

    /// A client for `url` (connects nothing).
    fn client(&self) -> Result<redis::Client, BackendError> {
        let Some(url) = &self.url else {
            return Err(BackendError::Config(
                "redis backend option `url` is required, e.g. redis://127.0.0.1:6379/0".into(),
            ));
        };
        redis::Client::open(url.as_str()).map_err(|e| {
            BackendError::Config(format!(
                "redis backend option `url` is invalid: {e}; \
                 expected redis://[user:password@]host:port[/db], e.g. redis://127.0.0.1:6379/0"
            ))
        })
    }
}

/// An auto-reconnecting connection to `options.url`, and the server's
/// `host:port` for messages. Shared by the KeyValue and PubSub backends.
pub(crate) async fn connect(
    options: &RedisOptions,
) -> Result<(ConnectionManager, String), BackendError> {
    let client = options.client()?;
    let address = client.get_connection_info().addr().to_string();
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(CONNECT_RETRIES)
        .set_max_delay(Duration::from_secs(1));
    let conn = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| redis_err(&address, e))?;
    Ok((conn, address))
}

/// What the operations need: the connection, the key layout, a clock.
pub(crate) struct Shared {
    conn: ConnectionManager,
    layout: Layout,
    clock: Arc<dyn Clock>,
    /// `host:port`, for messages (never the URL, which may hold a password).
    address: String,
}

impl Shared {
    /// Runs a script invocation.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err(&self.address, e))
    }
}

/// Whether an error means Redis cannot serve right now (a retry may work).
fn is_unavailable(e: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    match e.kind() {
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => true,
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::ReadOnly,
        ) => true,
        _ => matches!(e.code(), Some("BUSY" | "OOM")),
    }
}

/// Maps a Redis error: connection loss, timeouts and a busy or loading
/// server are UNAVAILABLE (retry); anything else is INTERNAL. Messages name
/// the server's address, never values.
pub(crate) fn redis_err(address: &str, e: RedisError) -> BackendError {
    if is_unavailable(&e) {
        BackendError::Unavailable(format!(
            "redis at {address}: {e}; the call may be retried once Redis is reachable \
             (the backend reconnects on its own); a write may or may not have been applied, \
             so retry writes with the same idempotency token"
        ))
    } else {
        BackendError::Internal(format!("redis at {address}: {e}"))
    }
}

/// The redis backend for one namespace.
pub struct RedisBackend {
    shared: Arc<Shared>,
    sweeper: Option<Periodic>,
}

impl RedisBackend {
    /// Connects to Redis and starts the sweeper. Fails with UNAVAILABLE
    /// when Redis cannot be reached.
    pub async fn open(
        namespace: &str,
        clock: Arc<dyn Clock>,
        options: &RedisOptions,
    ) -> Result<Self, BackendError> {
        Self::open_with(namespace, clock, options, true).await
    }

    /// [`RedisBackend::open`], with or without the background sweeper
    /// (tests sweep when they choose to).
    async fn open_with(
        namespace: &str,
        clock: Arc<dyn Clock>,
        options: &RedisOptions,
        background_sweeper: bool,
    ) -> Result<Self, BackendError> {
        if namespace.contains(['{', '}']) {
            return Err(BackendError::Config(format!(
                "namespace {namespace:?} cannot be stored in redis: its name may not contain \
                 '{{' or '}}'"
            )));
        }
        let (conn, address) = connect(options).await?;
        let shared = Arc::new(Shared {
            conn,
            layout: Layout::new(&options.key_prefix, namespace),
            clock,
            address,
        });
        if !background_sweeper {
            return Ok(RedisBackend {
                shared,
                sweeper: None,
            });
        }
        let every = Duration::from_millis(options.sweep_interval_ms);
        let sweeper = Periodic::spawn(&shared, every, |shared| async move {
            match ops::sweep(&shared).await {
                Ok(stats) if stats.entries > 0 => tracing::debug!(
                    entries = stats.entries,
                    deleted = stats.deleted,
                    "redis sweep"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "redis sweep failed"),
            }
        });
        Ok(RedisBackend {
            shared,
            sweeper: Some(sweeper),
        })
    }

    /// Runs one sweep now (the sweeper does this every
    /// `sweep_interval_ms`).
    pub async fn sweep(&self) -> Result<SweepStats, BackendError> {
        ops::sweep(&self.shared).await
    }

    /// The key names of this backend's namespace.
    pub fn layout(&self) -> &Layout {
        &self.shared.layout
    }
}

#[async_trait]
impl pattern_core::Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        [
            Capability::Ttl,
            Capability::Scan,
            Capability::ConditionalWrite,
            Capability::Transactions,
            Capability::Idempotency,
        ]
        .into_iter()
        .collect()
    }

    async fn health(&self) -> Result<(), BackendError> {
        let mut conn = self.shared.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| redis_err(&self.shared.address, e))?;
        Ok(())
    }

    async fn close(&self) -> Result<(), BackendError> {
        if let Some(sweeper) = &self.sweeper {
            sweeper.stop();
        }
        Ok(())
    }
}

#[async_trait]
impl KeyValueBackend for RedisBackend {
    async fn put(
        &self,
        id: &str,
        items: Vec<PutItem>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        let mutations = items
            .into_iter()
            .map(|item| Mutation::Put {
                id: id.to_string(),
                item,
            })
            .collect();
        ops::write(&self.shared, mutations, idempotency).await
    }

    async fn get(
        &self,
        id: &str,
        selection: &Selection,
        page: PageRequest,
    ) -> Result<Page<Item>, BackendError> {
        ops::get(&self.shared, id, selection, &page).await
    }

    async fn delete(&self, id: &str, selection: &Selection) -> Result<u64, BackendError> {
        let mutations = vec![Mutation::Delete {
            id: id.to_string(),
            selection: selection.clone(),
        }];
        let out = ops::write(&self.shared, mutations, None).await?;
        Ok(match out.outcomes.first() {
            Some(MutationOutcome::Deleted(n)) => *n,
            _ => 0,
        })
    }

    async fn scan(&self, page: PageRequest) -> Result<Page<ScanEntry>, BackendError> {
        ops::scan(&self.shared, &page).await
    }

    async fn mutate(
        &self,
        mutations: Vec<Mutation>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<WriteOutcome, BackendError> {
        ops::write(&self.shared, mutations, idempotency).await
    }
}

/// Opens redis backends.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedisFactory;

#[async_trait]
impl pattern_core::Factory for RedisFactory {
    type Backend = dyn KeyValueBackend;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn needs_profile(&self) -> NeedsProfile {
        NeedsProfile {
            kind: KIND,
            preference: 2,
            external: true,
            consistency: Consistency::Strong,
            durability: Durability::Restart,
            durability_note: "keeps data in Redis's memory without persistence: it survives \
                              restarts of the proxy, not of Redis",
            scope: Scope::Shared,
            read_rps: 5_000,
            write_rps: 4_000,
            write_note: "",
            p99_ms: 5,
            max_data_bytes: 8 * GIB,
            data_note: "it lives in Redis's memory",
            keeps_for_days: false,
        }
    }

    fn placement_options(&self) -> &'static [&'static str] {
        &["url", "key_prefix"]
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        RedisOptions::parse(options.clone()).map(|_| ())
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        let options = ctx.options.clone();
        let options = RedisOptions::parse(options)?;
        Ok(Arc::new(
            RedisBackend::open(&ctx.namespace, ctx.clock, &options).await?,
        ))
    }
}

#[cfg(test)]
mod tests;
