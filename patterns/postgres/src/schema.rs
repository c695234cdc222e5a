//! The PostgreSQL schema, owned and migrated by the backend.
//!
//! Migrations are numbered and recorded in `<schema>.prism_migrations`;
//! they run in one transaction under a transaction-scoped advisory lock, so
//! many proxies (or tests) opening the same schema at once apply each
//! migration exactly once. Re-opening is idempotent.

use tokio_postgres::Client;

/// Migrations in order; index + 1 is the version. `{s}` is the schema.
const MIGRATIONS: &[&str] = &[
    // 1: items (ids sort bytewise with the C collation, keys are bytea),
    //    per-namespace version counters, idempotency records.
    "CREATE TABLE {s}.kv_items (
        namespace  TEXT   NOT NULL,
        id         TEXT   COLLATE \"C\" NOT NULL,
        key        BYTEA  NOT NULL,
        value      BYTEA  NOT NULL,
        version    BIGINT NOT NULL,
        expires_at BIGINT,
        PRIMARY KEY (namespace, id, key)
     );
     CREATE INDEX kv_items_expiry ON {s}.kv_items (namespace, expires_at)
        WHERE expires_at IS NOT NULL;
     CREATE TABLE {s}.kv_versions (
        namespace TEXT   PRIMARY KEY,
        value     BIGINT NOT NULL
     );
     CREATE TABLE {s}.kv_idempotency (
        namespace   TEXT   NOT NULL,
        token       TEXT   NOT NULL,
        fingerprint BIGINT NOT NULL,
        outcomes    TEXT   NOT NULL,
        expires_at  BIGINT NOT NULL,
        PRIMARY KEY (namespace, token)
     );",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// A fixed key for the migration advisory lock ("prism" in ASCII).
const LOCK_KEY: i64 = 0x0070_7269_736d;

/// Creates the schema if needed and applies missing migrations.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.prism_migrations (
            version    INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );"
    ))
    .await?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT COALESCE(MAX(version), 0) FROM {schema}.prism_migrations"),
            &[],
        )
        .await?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(&sql.replace("{s}", schema)).await?;
        tx.execute(
            &format!("INSERT INTO {schema}.prism_migrations (version) VALUES ($1)"),
            &[&version],
        )
        .await?;
    }
    tx.commit().await
}

/// Whether `name` is a safe, unquoted PostgreSQL identifier.
pub fn valid_identifier(name: &str) -> bool {
    (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(valid_identifier("prism"));
        assert!(valid_identifier("prism_test_2"));
        assert!(!valid_identifier("Prism"));
        assert!(!valid_identifier("x; drop table y"));
        assert!(!valid_identifier(""));
    }
}
