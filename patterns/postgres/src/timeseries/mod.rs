//! The postgres TimeSeries backend (kind `postgres`), per ADR-014 and
//! `docs-cms/adr/015-timeseries-storage.md`.
//!
//! * Layout ([`layout`]): a table per namespace, partitioned by RANGE on
//!   `time_us`, one partition per time bucket created on demand; primary
//!   key `(series_id, time_us, event_id)`, an index on
//!   `(series_id, sequence)`, tags as `jsonb` (filtered with `@>`).
//! * Sequences: every write transaction first runs `UPDATE ts_namespaces
//!   SET sequence = sequence + n RETURNING sequence` on the namespace's
//!   row. The row lock serializes writers until commit, so commit order is
//!   sequence order. Each event of the batch gets one of the `n` reserved
//!   numbers; an event already stored (`ON CONFLICT DO NOTHING`) leaves its
//!   number unused. Such gaps are harmless: a tail needs order, not
//!   density.
//! * Scan (a migration's backfill): keyset pagination on the primary key
//!   across partitions, leaving out sequences above the bound;
//!   `last_sequence` reads the committed counter row.
//! * Retention: `drop_before` drops whole partitions whose upper bound is
//!   at or before the cutoff; no row is deleted.
//! * Tails wake on `LISTEN/NOTIFY` with a polling fallback ([`notify`]).
//!
//! Options (`backend.options`): `url` (required), `schema` (default
//! `prism`), `pool_size` (default 8), `poll_interval_ms` (default 500: how
//! soon a tail sees a write whose notification was lost).

mod layout;
mod notify;
mod ops;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Pool, Runtime};
use pattern_core::OpenContext;
use pattern_core::needs::{Consistency, Durability, GIB, NeedsProfile, Scope};
use pattern_core::timeseries::{
    Event, EventKey, EventPage, ReadQuery, StoredEvent, TailQuery, TimeSeriesBackend, WriteSummary,
};
use pattern_core::{BackendError, Capabilities, Capability};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_postgres::NoTls;

pub use layout::Layout;

use crate::{KIND, pg_err, schema};

/// postgres TimeSeries options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresTimeSeriesOptions {
    pub url: Option<String>,
    pub schema: String,
    pub pool_size: usize,
    pub poll_interval_ms: u64,
}

impl Default for PostgresTimeSeriesOptions {
    fn default() -> Self {
        PostgresTimeSeriesOptions {
            url: None,
            schema: "prism".to_string(),
            pool_size: 8,
            poll_interval_ms: 500,
        }
    }
}

impl PostgresTimeSeriesOptions {
    /// Parses and checks options strictly.
    pub fn parse(options: serde_json::Value) -> Result<Self, BackendError> {
        let options: Self = pattern_core::keyvalue::parse_options(KIND, options)?;
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
        if !(10..=60_000).contains(&options.poll_interval_ms) {
            return bad(format!(
                "postgres backend option `poll_interval_ms` is {}; allowed: 10 to 60000",
                options.poll_interval_ms
            ));
        }
        Ok(options)
    }
}

/// What the operations share.
pub(crate) struct Shared {
    pool: Pool,
    layout: Layout,
    bucket_us: i64,
    high_water: watch::Sender<u64>,
    /// Bucket starts whose partition this backend knows to exist.
    partitions: Mutex<HashSet<i64>>,
}

impl Shared {
    async fn client(&self) -> Result<deadpool_postgres::Object, BackendError> {
        self.pool
            .get()
            .await
            .map_err(|e| BackendError::Unavailable(format!("postgres connection pool: {e}")))
    }

    /// The namespace's committed counter: every sequence up to it is
    /// committed (or unused).
    async fn committed_sequence(&self) -> Result<u64, BackendError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &format!(
                    "SELECT sequence FROM {} WHERE namespace = $1",
                    self.layout.counters()
                ),
                &[&self.layout.namespace],
            )
            .await
            .map_err(pg_err)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }
}

/// The postgres TimeSeries backend for one namespace.
pub struct PostgresTimeSeries {
    shared: Arc<Shared>,
    notifier: notify::Notifier,
}

impl PostgresTimeSeries {
    /// Connects, creates the namespace's table if missing, and starts
    /// listening for writes.
    pub async fn open(
        namespace: &str,
        bucket_us: i64,
        options: &PostgresTimeSeriesOptions,
    ) -> Result<Self, BackendError> {
        let url = options.url.clone().unwrap_or_default();
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(url.clone());
        config.pool = Some(deadpool_postgres::PoolConfig::new(options.pool_size));
        let pool = config
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| BackendError::Config(format!("postgres pool: {e}")))?;
        let shared = Arc::new(Shared {
            pool,
            layout: Layout::new(&options.schema, namespace),
            bucket_us: bucket_us.max(1),
            high_water: watch::channel(0).0,
            partitions: Mutex::new(HashSet::new()),
        });
        {
            let mut client = shared.client().await?;
            shared.layout.create(&mut client).await.map_err(pg_err)?;
        }
        let high = shared.committed_sequence().await?;
        notify::raise(&shared.high_water, high);
        let notifier = notify::Notifier::spawn(
            &shared,
            url,
            Duration::from_millis(options.poll_interval_ms),
        );
        Ok(PostgresTimeSeries { shared, notifier })
    }

    /// Where this namespace's events live.
    pub fn layout(&self) -> &Layout {
        &self.shared.layout
    }
}

#[async_trait]
impl pattern_core::Backend for PostgresTimeSeries {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        [Capability::Retention, Capability::Durable, Capability::Scan]
            .into_iter()
            .collect()
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.notifier.stop();
        self.shared.pool.close();
        Ok(())
    }

    async fn health(&self) -> Result<(), BackendError> {
        let client = self.shared.client().await?;
        client.query_one("SELECT 1", &[]).await.map_err(pg_err)?;
        Ok(())
    }
}

#[async_trait]
impl TimeSeriesBackend for PostgresTimeSeries {
    async fn write(&self, events: Vec<Event>) -> Result<WriteSummary, BackendError> {
        ops::write(&self.shared, events).await
    }

    async fn read(&self, query: &ReadQuery) -> Result<EventPage, BackendError> {
        ops::read(&self.shared, query).await
    }

    async fn read_since(
        &self,
        query: &TailQuery,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        ops::read_since(&self.shared, query, after_sequence, limit).await
    }

    fn watch_sequence(&self) -> watch::Receiver<u64> {
        self.shared.high_water.subscribe()
    }

    async fn drop_before(&self, cutoff_us: i64) -> Result<u64, BackendError> {
        ops::drop_before(&self.shared, cutoff_us).await
    }

    async fn scan(
        &self,
        after: Option<&EventKey>,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BackendError> {
        ops::scan(&self.shared, after, up_to, limit).await
    }

    async fn last_sequence(&self) -> Result<u64, BackendError> {
        self.shared.committed_sequence().await
    }
}

/// Opens [`PostgresTimeSeries`] backends (kind `postgres`).
#[derive(Debug, Default, Clone, Copy)]
pub struct PostgresTimeSeriesFactory;

#[async_trait]
impl pattern_core::Factory for PostgresTimeSeriesFactory {
    type Backend = dyn TimeSeriesBackend;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn needs_profile(&self) -> NeedsProfile {
        NeedsProfile {
            kind: KIND,
            preference: 2,
            external: true,
            consistency: Consistency::Strong,
            durability: Durability::Durable,
            durability_note: "commits to PostgreSQL, which flushes its WAL before acknowledging",
            scope: Scope::Shared,
            read_rps: 2_000,
            write_rps: 1_000,
            write_note: "",
            p99_ms: 80,
            max_data_bytes: 1024 * GIB,
            data_note: "one partitioned table in the configured database",
            keeps_for_days: true,
        }
    }

    fn placement_options(&self) -> &'static [&'static str] {
        &["url", "schema"]
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        PostgresTimeSeriesOptions::parse(options.clone()).map(|_| ())
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        let options = ctx.options.clone();
        let options = PostgresTimeSeriesOptions::parse(options)?;
        Ok(Arc::new(
            PostgresTimeSeries::open(&ctx.namespace, ctx.bucket_us(), &options).await?,
        ))
    }
}
