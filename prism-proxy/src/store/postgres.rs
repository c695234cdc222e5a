//! A shared store on PostgreSQL: one table, one row per namespace.
//!
//! The table (`name text primary key, yaml text, version bigint,
//! updated_at timestamptz`) and a sequence `<table>_version` beside it are
//! created when missing. Every put and every delete takes the sequence's
//! next value, so versions grow across the whole table and every proxy
//! reads the same version for the same change. Each change is one
//! statement that also sends a `NOTIFY` on a channel named after the
//! table; PostgreSQL delivers it when the change commits.
//!
//! Watching LISTENs on that channel on a dedicated connection and, as a
//! fallback for a lost connection or a change made by hand, compares a
//! fingerprint of the table (names and versions) every second.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::NoTls;

use super::{ConfigStore, StoreError, StoredNamespace};

/// How often the watcher compares the table's fingerprint.
const POLL: Duration = Duration::from_secs(1);
/// The longest a single store operation may take.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting, when the URL does not say `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnecting the listener: first and longest wait.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The config store on a PostgreSQL table.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// For the LISTEN connection.
    pg: tokio_postgres::Config,
    /// `schema.table`.
    table: String,
    /// The NOTIFY channel.
    channel: String,
    /// `host:port/db`, for messages.
    address: String,
    sql: Sql,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("store", &self.describe())
            .finish()
    }
}

/// The statements, with the table and sequence names filled in.
struct Sql {
    list: String,
    current: String,
    put_any: String,
    put_create: String,
    put_update: String,
    delete: String,
    fingerprint: String,
}

impl Sql {
    fn new(table: &str, seq: &str) -> Self {
        // $1 name, $2 yaml, $3 channel, $4 expected version.
        let notify = "SELECT version, pg_notify($3, $1) FROM w";
        let insert = format!(
            "INSERT INTO {table} (name, yaml, version, updated_at) \
             VALUES ($1, $2, nextval('{seq}'), now())"
        );
        Sql {
            list: format!("SELECT name, yaml, version FROM {table}"),
            current: format!("SELECT version FROM {table} WHERE name = $1"),
            put_any: format!(
                "WITH w AS ({insert} ON CONFLICT (name) DO UPDATE SET yaml = excluded.yaml, \
                 version = excluded.version, updated_at = excluded.updated_at \
                 RETURNING version) {notify}"
            ),
            put_create: format!(
                "WITH w AS ({insert} ON CONFLICT (name) DO NOTHING RETURNING version) {notify}"
            ),
            put_update: format!(
                "WITH w AS (UPDATE {table} SET yaml = $2, version = nextval('{seq}'), \
                 updated_at = now() WHERE name = $1 AND version = $4 RETURNING version) {notify}"
            ),
            // $1 name, $2 channel, $3 expected version or NULL.
            delete: format!(
                "WITH d AS (DELETE FROM {table} WHERE name = $1 \
                 AND ($3::bigint IS NULL OR version = $3) RETURNING name) \
                 SELECT nextval('{seq}'), pg_notify($2, $1) FROM d"
            ),
            fingerprint: format!(
                "SELECT count(*)::text || ':' || md5(coalesce(string_agg(name || '=' || \
                 version::text, ',' ORDER BY name COLLATE \"C\"), '')) FROM {table}"
            ),
        }
    }
}

/// A plain lowercase SQL identifier, short enough for derived names.
fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    (1..=48).contains(&s.len())
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `table` or `schema.table` → (schema, table); no schema means `public`.
fn parse_table(table: &str) -> Result<(String, String), StoreError> {
    let (schema, name) = match table.split_once('.') {
        Some((s, t)) => (s, t),
        None => ("public", table),
    };
    if valid_identifier(schema) && valid_identifier(name) {
        Ok((schema.to_string(), name.to_string()))
    } else {
        Err(StoreError::Invalid(format!(
            "namespaces.store.table is '{table}'; use a table name or schema.table, each part \
             1 to 48 lowercase letters, digits or '_', starting with a letter or '_' \
             (e.g. prism_config.namespaces)"
        )))
    }
}

/// FNV-1a: a hash every proxy build computes the same way.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The NOTIFY channel of a table: its name, or a hash of it when too long.
fn channel_of(qualified: &str) -> String {
    let plain = format!("prism:{qualified}");
    if plain.len() <= 63 {
        plain
    } else {
        format!("prism:{:016x}", fnv(qualified))
    }
}

/// `host:port[,host:port]/db` of a connection config; never the password.
fn address_of(pg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = pg
                .get_ports()
                .get(i)
                .or(pg.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(",")
    };
    match pg.get_dbname() {
        Some(db) => format!("{hosts}/{db}"),
        None => hosts,
    }
}

impl PostgresStore {
    /// Connects to `url` (e.g. `postgres://prism@db:5432/prism`) and
    /// creates `table` (`name` or `schema.name`), its schema and its
    /// version sequence when missing. Safe when several proxies start at
    /// once: the creation runs under an advisory lock.
    pub async fn connect(url: &str, table: &str) -> Result<PostgresStore, StoreError> {
        let (schema, name) = parse_table(table)?;
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Invalid(format!(
                "namespaces.store.url is not a PostgreSQL URL ({e}); \
                 write it as postgres://user@host:5432/database"
            ))
        })?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        pg.keepalives_idle(Duration::from_secs(30));
        let manager = Manager::from_config(
            pg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(4)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Invalid(format!("postgres config store: {e}")))?;
        let qualified = format!("{schema}.{name}");
        let seq = format!("{schema}.{name}_version");
        let store = PostgresStore {
            inner: Arc::new(Inner {
                pool,
                address: address_of(&pg),
                pg,
                channel: channel_of(&qualified),
                sql: Sql::new(&qualified, &seq),
                table: qualified,
            }),
        };
        store.bounded(store.create_table(&schema, &seq)).await?;
        Ok(store)
    }

    async fn create_table(&self, schema: &str, seq: &str) -> Result<(), StoreError> {
        let table = &self.inner.table;
        let mut client = self.client().await?;
        let exists = "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL";
        let present = |row: tokio_postgres::Row| row.get::<_, bool>(0);
        let row = client
            .query_one(exists, &[table, &seq])
            .await
            .map_err(|e| self.pg_err("checking the table", e))?;
        if present(row) {
            return Ok(());
        }
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.pg_err("creating the table", e))?;
        let lock = fnv(&format!("prism config store {table}")) as i64;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
            .await
            .map_err(|e| self.pg_err("creating the table", e))?;
        let has_schema = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&schema],
            )
            .await
            .map_err(|e| self.pg_err("creating the table", e))?
            .get::<_, bool>(0);
        let mut ddl = String::new();
        if !has_schema {
            ddl.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {schema};"));
        }
        ddl.push_str(&format!(
            "CREATE SEQUENCE IF NOT EXISTS {seq};\
             CREATE TABLE IF NOT EXISTS {table} (name text PRIMARY KEY, yaml text NOT NULL, \
             version bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());"
        ));
        tx.batch_execute(&ddl)
            .await
            .map_err(|e| self.pg_err("creating the table", e))?;
        tx.commit()
            .await
            .map_err(|e| self.pg_err("creating the table", e))
    }

    fn unavailable(&self, message: String) -> StoreError {
        StoreError::Unavailable {
            store: self.describe(),
            message,
        }
    }

    fn pg_err(&self, what: &str, e: tokio_postgres::Error) -> StoreError {
        let address = &self.inner.address;
        match e.as_db_error() {
            Some(db) => self.unavailable(format!(
                "{what}: PostgreSQL refused with {} {}; check that the user in \
                 namespaces.store.url may create, read and write table {} (prism.yaml)",
                db.code().code(),
                db.message(),
                self.inner.table
            )),
            None => self.unavailable(format!(
                "{what}: {e}; is PostgreSQL running at {address}? \
                 check namespaces.store.url in prism.yaml"
            )),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(|e| {
            self.unavailable(format!(
                "cannot get a connection: {e}; is PostgreSQL running at {}? \
                 check namespaces.store.url in prism.yaml",
                self.inner.address
            ))
        })
    }

    /// Runs `op` with the operation time limit.
    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(OP_TIMEOUT, op)
            .await
            .unwrap_or_else(|_| {
                Err(self.unavailable(format!(
                "no answer within {OP_TIMEOUT:?}; is PostgreSQL at {} overloaded or unreachable?",
                self.inner.address
            )))
            })
    }

    /// The stored version of `name`, 0 when absent.
    async fn current(
        &self,
        client: &deadpool_postgres::Object,
        name: &str,
    ) -> Result<u64, StoreError> {
        let stmt = client
            .prepare_cached(&self.inner.sql.current)
            .await
            .map_err(|e| self.pg_err("reading a version", e))?;
        let row = client
            .query_opt(&stmt, &[&name])
            .await
            .map_err(|e| self.pg_err("reading a version", e))?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    /// Runs a change statement; the version it returned, if a row changed.
    async fn change(
        &self,
        client: &deadpool_postgres::Object,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<u64>, StoreError> {
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.pg_err("preparing a change", e))?;
        let row = client
            .query_opt(&stmt, params)
            .await
            .map_err(|e| self.pg_err("writing", e))?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    async fn fingerprint(&self) -> Result<String, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(&self.inner.sql.fingerprint, &[])
            .await
            .map_err(|e| self.pg_err("polling for changes", e))?;
        Ok(row.get(0))
    }
}

#[async_trait]
impl ConfigStore for PostgresStore {
    fn describe(&self) -> String {
        format!("postgres {} table {}", self.inner.address, self.inner.table)
    }

    async fn list(&self) -> Result<Vec<StoredNamespace>, StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let rows = client
                .query(&self.inner.sql.list, &[])
                .await
                .map_err(|e| self.pg_err("listing namespaces", e))?;
            let mut out: Vec<StoredNamespace> = rows
                .into_iter()
                .map(|row| {
                    let name: String = row.get(0);
                    StoredNamespace {
                        source: format!("postgres table {} key {name}", self.inner.table),
                        name,
                        yaml: row.get(1),
                        version: row.get::<_, i64>(2) as u64,
                    }
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn put(
        &self,
        name: &str,
        yaml: &str,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        crate::config::validate_name(name).map_err(StoreError::Invalid)?;
        let sql = &self.inner.sql;
        let channel = &self.inner.channel;
        self.bounded(async {
            let client = self.client().await?;
            loop {
                let done = match expected_version {
                    None => {
                        self.change(&client, &sql.put_any, &[&name, &yaml, channel])
                            .await?
                    }
                    Some(0) => {
                        self.change(&client, &sql.put_create, &[&name, &yaml, channel])
                            .await?
                    }
                    Some(v) => {
                        let v = i64::try_from(v).unwrap_or(i64::MAX);
                        self.change(&client, &sql.put_update, &[&name, &yaml, channel, &v])
                            .await?
                    }
                };
                if let Some(version) = done {
                    return Ok(version);
                }
                let expected = expected_version.unwrap_or_default();
                let actual = self.current(&client, name).await?;
                // Equal: it changed back between the two statements; retry.
                if actual != expected {
                    return Err(StoreError::VersionMismatch {
                        name: name.to_string(),
                        expected,
                        actual,
                    });
                }
            }
        })
        .await
    }

    async fn delete(&self, name: &str, expected_version: Option<u64>) -> Result<u64, StoreError> {
        let channel = &self.inner.channel;
        self.bounded(async {
            let client = self.client().await?;
            let expected = expected_version.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
            loop {
                if let Some(version) = self
                    .change(
                        &client,
                        &self.inner.sql.delete,
                        &[&name, channel, &expected],
                    )
                    .await?
                {
                    return Ok(version);
                }
                let actual = self.current(&client, name).await?;
                match expected_version {
                    Some(expected) if actual != expected => {
                        return Err(StoreError::VersionMismatch {
                            name: name.to_string(),
                            expected,
                            actual,
                        });
                    }
                    _ if actual == 0 => {
                        return Err(StoreError::NotFound {
                            name: name.to_string(),
                        });
                    }
                    // Re-created between the two statements; retry.
                    _ => {}
                }
            }
        })
        .await
    }

    async fn watch(&self) -> Result<mpsc::Receiver<()>, StoreError> {
        let listener = self.bounded(self.listen()).await?;
        let last = self.bounded(self.fingerprint()).await?;
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(self.clone().run_watch(Some(listener), last, tx));
        Ok(rx)
    }
}

#[path = "postgres_watch.rs"]
mod watch;

#[cfg(test)]
#[path = "postgres_tests.rs"]
mod tests;
