//! The direct clients: what an application would do against the store with
//! no Prism at all. Redis: `SET` and `GET` of one string per item over one
//! multiplexed connection (as Prism's backend uses). PostgreSQL: an upsert
//! and a primary-key select on a two-column-key table, through a deadpool
//! of the same size as Prism's backend pool.

use anyhow::{Context, Result, ensure};
use deadpool_postgres::{Pool, Runtime};
use redis::IntoConnectionInfo;
use redis::aio::MultiplexedConnection;
use tokio_postgres::NoTls;

/// Prefix of every key the raw Redis client writes.
pub const REDIS_PREFIX: &str = "prism-bench-raw";
/// Schema of the raw PostgreSQL client's table.
pub const POSTGRES_SCHEMA: &str = "prism_bench_raw";

/// Connects to Redis (or twemproxy) at `url`. The connection skips `CLIENT
/// SETINFO`, which twemproxy answers by closing the connection.
pub async fn redis(url: &str) -> Result<MultiplexedConnection> {
    let info = url.into_connection_info()?;
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to redis at {url}"))
}

pub async fn redis_put(
    conn: &MultiplexedConnection,
    id: &str,
    key: &[u8],
    value: &[u8],
) -> Result<()> {
    let mut conn = conn.clone();
    let _: () = redis::cmd("SET")
        .arg(redis_key(id, key))
        .arg(value)
        .query_async(&mut conn)
        .await?;
    Ok(())
}

pub async fn redis_get(conn: &MultiplexedConnection, id: &str, key: &[u8]) -> Result<()> {
    let mut conn = conn.clone();
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(redis_key(id, key))
        .query_async(&mut conn)
        .await?;
    ensure!(value.is_some(), "raw redis get found nothing");
    Ok(())
}

fn redis_key(id: &str, key: &[u8]) -> Vec<u8> {
    let mut k = format!("{REDIS_PREFIX}:{id}:").into_bytes();
    k.extend_from_slice(key);
    k
}

/// Deletes every key under `prefix` (the benchmark's own data).
pub async fn redis_cleanup(url: &str, prefix: &str) -> Result<u64> {
    let mut conn = redis(url).await?;
    let mut cursor = 0u64;
    let mut deleted = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// A pool on `url` with the raw table created.
pub async fn postgres(url: &str, pool_size: usize) -> Result<Pool> {
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(url.to_string());
    config.pool = Some(deadpool_postgres::PoolConfig::new(pool_size));
    let pool = config.create_pool(Some(Runtime::Tokio1), NoTls)?;
    let client = pool
        .get()
        .await
        .with_context(|| format!("connecting to postgres at {url}"))?;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {POSTGRES_SCHEMA};
             CREATE TABLE IF NOT EXISTS {POSTGRES_SCHEMA}.kv (
                 id text NOT NULL, key bytea NOT NULL, value bytea NOT NULL,
                 PRIMARY KEY (id, key))"
        ))
        .await?;
    Ok(pool)
}

pub async fn postgres_put(pool: &Pool, id: &str, key: &[u8], value: &[u8]) -> Result<()> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(&format!(
            "INSERT INTO {POSTGRES_SCHEMA}.kv (id, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (id, key) DO UPDATE SET value = EXCLUDED.value"
        ))
        .await?;
    client.execute(&statement, &[&id, &key, &value]).await?;
    Ok(())
}

pub async fn postgres_get(pool: &Pool, id: &str, key: &[u8]) -> Result<()> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT value FROM {POSTGRES_SCHEMA}.kv WHERE id = $1 AND key = $2"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&id, &key]).await?;
    ensure!(row.is_some(), "raw postgres get found nothing");
    Ok(())
}

/// Drops the schemas the benchmark created.
pub async fn postgres_cleanup(url: &str, schemas: &[&str]) -> Result<()> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let connection = tokio::spawn(connection);
    for schema in schemas {
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await?;
    }
    drop(client);
    let _ = connection.await;
    Ok(())
}
