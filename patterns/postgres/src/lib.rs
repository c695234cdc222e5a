//! postgres: Prism's KeyValue backend on PostgreSQL (tokio-postgres with a
//! deadpool connection pool).
//!
//! * One set of tables per schema, shared by namespaces (a `namespace`
//!   column); the backend creates and migrates them ([`schema`]).
//! * Writes of one namespace serialize on its row in `kv_versions`: the
//!   first statement of every write transaction (`UPDATE ... RETURNING`)
//!   takes that row's lock and reserves a version per Put, so versions
//!   increase in commit order and conditions are checked against committed
//!   state. A Put or Mutate is one transaction; every statement is prepared
//!   once per connection, so the lock is held for as few round trips as
//!   possible.
//! * TTL: an `expires_at` column filtered on every read, and a sweeper
//!   that deletes expired rows.
//! * Paging continues strictly after the last (id, key) returned; each
//!   page is one statement, so consistent on its own.
//! * A lost server makes calls fail with UNAVAILABLE; the pool reconnects
//!   when it is back, without restarting the proxy.
//!
//! Options (namespace YAML, `backend.options`):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `url` | required | connection string, e.g. `postgres://user@127.0.0.1:5432/db` |
//! | `schema` | `prism` | schema holding the tables (lowercase identifier) |
//! | `pool_size` | 8 | connections in the pool (1 to 256) |
//! | `sweep_interval_ms` | 1000 | how often expired items are deleted |

#![forbid(unsafe_code)]

mod ops;
pub mod schema;
pub mod timeseries;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Pool, Runtime};
use pattern_core::background::Periodic;
use pattern_core::needs::{Consistency, Durability, GIB, NeedsProfile, Scope};
use pattern_core::{
    BackendError, Capabilities, Capability, Clock, IdempotencyKey, Item, KeyValueBackend, Mutation,
    MutationOutcome, OpenContext, Page, PageRequest, PutItem, ScanEntry, Selection, WriteOutcome,
};
use serde::Deserialize;
use tokio_postgres::NoTls;

pub use timeseries::{PostgresTimeSeries, PostgresTimeSeriesFactory, PostgresTimeSeriesOptions};

/// The backend kind name.
pub const KIND: &str = "postgres";

/// postgres options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresOptions {
    pub url: Option<String>,
    pub schema: String,
    pub pool_size: usize,
    pub sweep_interval_ms: u64,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            url: None,
            schema: "prism".to_string(),
            pool_size: 8,
            sweep_interval_ms: 1000,
        }
    }
}

impl PostgresOptions {
    /// Parses and checks options strictly.
    pub fn parse(options: serde_json::Value) -> Result<Self, BackendError> {
        let options: PostgresOptions = pattern_core::keyvalue::parse_options(KIND, options)?;
        let bad = |m: String| Err(BackendError::Config(m));
        match &options.url {
            None => {
                return bad("postgres backend option `url` is required, e.g. \
                     postgres://postgres@127.0.0.1:5432/prism"
                    .into());
            }
            Some(url) => {
                if let Err(e) = url.parse::<tokio_postgres::Config>() {
                    return bad(format!("postgres backend option `url` is invalid: {e}"));
                }
            }
        }
        if !schema::valid_identifier(&options.schema) {
            return bad(format!(
                "postgres backend option `schema` is '{}'; use 1 to 48 lowercase letters, \
                 digits or '_', starting with a letter or '_'",
                options.schema
            ));
        }
        if !(1..=256).contains(&options.pool_size) {
            return bad(format!(
                "postgres backend option `pool_size` is {}; allowed: 1 to 256",
                options.pool_size
            ));
        }
        Ok(options)
    }
}

/// What the operations need: the pool, the namespace, the schema, a clock.
pub(crate) struct Shared {
    pool: Pool,
    namespace: String,
    schema: String,
    clock: Arc<dyn Clock>,
}

/// The postgres backend for one namespace.
pub struct PostgresBackend {
    shared: Arc<Shared>,
    sweeper: Periodic,
}

/// Maps a PostgreSQL error: server-side errors (constraint, syntax, ...)
/// are INTERNAL with their SQLSTATE; anything else (connection refused,
/// closed, timed out) is UNAVAILABLE, so clients retry.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> BackendError {
    match e.as_db_error() {
        Some(db) => BackendError::Internal(format!(
            "postgres error {}: {}",
            db.code().code(),
            db.message()
        )),
        None => BackendError::Unavailable(format!("postgres: {e}")),
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> BackendError {
    BackendError::Unavailable(format!("postgres connection pool: {e}"))
}

impl Shared {
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, BackendError> {
        self.pool.get().await.map_err(pool_err)
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms().min(i64::MAX as u64) as i64
    }
}

impl PostgresBackend {
    /// Connects, migrates the schema and registers the namespace.
    pub async fn open(
        namespace: String,
        clock: Arc<dyn Clock>,
        options: &PostgresOptions,
    ) -> Result<Self, BackendError> {
        let url = options.url.clone().unwrap_or_default();
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(url);
        config.pool = Some(deadpool_postgres::PoolConfig::new(options.pool_size));
        let pool = config
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| BackendError::Config(format!("postgres pool: {e}")))?;
        let shared = Arc::new(Shared {
            pool,
            namespace,
            schema: options.schema.clone(),
            clock,
        });
        {
            let mut client = shared.client().await?;
            schema::migrate(&mut client, &shared.schema)
                .await
                .map_err(pg_err)?;
            client
                .execute(
                    &format!(
                        "INSERT INTO {}.kv_versions (namespace, value) VALUES ($1, 0)
                         ON CONFLICT (namespace) DO NOTHING",
                        shared.schema
                    ),
                    &[&shared.namespace],
                )
                .await
                .map_err(pg_err)?;
        }
        let every = Duration::from_millis(options.sweep_interval_ms);
        let sweeper = Periodic::spawn(&shared, every, |shared| async move {
            if let Err(e) = ops::sweep(&shared).await {
                tracing::warn!(error = %e, "postgres sweep failed");
            }
        });
        Ok(PostgresBackend { shared, sweeper })
    }
}

#[async_trait]
impl pattern_core::Backend for PostgresBackend {
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
            Capability::Durable,
        ]
        .into_iter()
        .collect()
    }

    async fn health(&self) -> Result<(), BackendError> {
        let client = self.shared.client().await?;
        client.query_one("SELECT 1", &[]).await.map_err(pg_err)?;
        Ok(())
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.sweeper.stop();
        self.shared.pool.close();
        Ok(())
    }
}

#[async_trait]
impl KeyValueBackend for PostgresBackend {
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

/// Opens postgres backends.
#[derive(Debug, Default, Clone, Copy)]
pub struct PostgresFactory;

#[async_trait]
impl pattern_core::Factory for PostgresFactory {
    type Backend = dyn KeyValueBackend;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn needs_profile(&self) -> NeedsProfile {
        NeedsProfile {
            kind: KIND,
            preference: 3,
            external: true,
            consistency: Consistency::Strong,
            durability: Durability::Durable,
            durability_note: "commits to PostgreSQL, which flushes its WAL before acknowledging",
            scope: Scope::Shared,
            read_rps: 3_000,
            write_rps: 500,
            write_note: " (writes of one namespace serialize on its version row)",
            p99_ms: 80,
            max_data_bytes: 1024 * GIB,
            data_note: "tables in the configured database",
            keeps_for_days: true,
        }
    }

    fn placement_options(&self) -> &'static [&'static str] {
        &["url", "schema"]
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        PostgresOptions::parse(options.clone()).map(|_| ())
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        let options = ctx.options.clone();
        let options = PostgresOptions::parse(options)?;
        Ok(Arc::new(
            PostgresBackend::open(ctx.namespace, ctx.clock, &options).await?,
        ))
    }
}

#[cfg(test)]
mod tests;
