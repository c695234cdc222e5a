//! The SQLite schema, owned and migrated by the backend.
//!
//! Migrations are numbered; `PRAGMA user_version` records the last one
//! applied, so opening a database applies exactly the missing ones, each in
//! its own transaction. Re-opening is idempotent.

use rusqlite::Connection;

/// Migrations in order; index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    // 1: items, the version counter, idempotency records.
    "CREATE TABLE kv_items (
        id         TEXT    NOT NULL,
        key        BLOB    NOT NULL,
        value      BLOB    NOT NULL,
        version    INTEGER NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (id, key)
     ) WITHOUT ROWID;
     CREATE INDEX kv_items_expiry ON kv_items (expires_at) WHERE expires_at IS NOT NULL;
     CREATE TABLE kv_counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
     INSERT INTO kv_counter (name, value) VALUES ('version', 0);
     CREATE TABLE kv_idempotency (
        token       TEXT    PRIMARY KEY,
        fingerprint INTEGER NOT NULL,
        outcomes    TEXT    NOT NULL,
        expires_at  INTEGER NOT NULL
     );
     CREATE INDEX kv_idempotency_expiry ON kv_idempotency (expires_at);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations `conn`'s database is missing. Refuses a database
/// written by a newer Prism.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if current > SCHEMA_VERSION {
        return Err(format!(
            "the database has schema version {current}, newer than this Prism's \
             {SCHEMA_VERSION}; upgrade Prism or use another file"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration {version}: {e}"))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(err.contains("newer"), "{err}");
    }
}
