//! Where a namespace's events live in PostgreSQL: table, partition and
//! channel names, the DDL creating them, and partition lookups.
//!
//! Each namespace has a parent table `<schema>.ts_<prefix>_<hash>`
//! partitioned by RANGE on `time_us`, one partition per time bucket
//! (`<parent>_p<start>`, `m` for a negative start), created when a write
//! first needs it. `<prefix>` is the namespace reduced to lowercase letters,
//! digits and `_` (at most 16 characters, for people reading `\dt`);
//! `<hash>` (FNV-1a 64 of schema and namespace) makes the name unique and
//! short enough for PostgreSQL's 63-byte identifiers whatever the
//! namespace. Every identifier is double-quoted in SQL anyway.

/// Serializes the open-time DDL of every namespace ("prismts" in ASCII).
const DDL_LOCK: i64 = 0x0070_7269_736d_7473;

/// FNV-1a, 64 bits: stable across builds and platforms (the name of a
/// table must never change between releases).
fn fnv64(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in data {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The names of one namespace's objects.
#[derive(Debug, Clone)]
pub struct Layout {
    pub schema: String,
    pub namespace: String,
    /// The parent table's name (unquoted).
    pub table: String,
    /// The LISTEN/NOTIFY channel.
    pub channel: String,
}

impl Layout {
    /// The layout of `namespace` in `schema` (a valid identifier).
    pub fn new(schema: &str, namespace: &str) -> Self {
        let prefix: String = namespace
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(16)
            .collect();
        let hash = fnv64(format!("{schema}\u{0}{namespace}").as_bytes());
        Layout {
            schema: schema.to_string(),
            namespace: namespace.to_string(),
            table: format!("ts_{prefix}_{hash:016x}"),
            channel: format!("prism_ts_{hash:016x}"),
        }
    }

    /// The parent table, quoted.
    pub fn parent(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.table)
    }

    /// The namespace counters table, quoted.
    pub fn counters(&self) -> String {
        format!("\"{}\".\"ts_namespaces\"", self.schema)
    }

    /// The unquoted name of the partition for the bucket starting at `start`.
    pub fn partition_name(&self, start: i64) -> String {
        if start < 0 {
            format!("{}_pm{}", self.table, start.unsigned_abs())
        } else {
            format!("{}_p{start}", self.table)
        }
    }

    /// Creates the schema, the counters table, this namespace's counter row
    /// and parent table, if missing. Under a transaction-scoped advisory
    /// lock, so concurrent opens do not race on `IF NOT EXISTS`.
    pub async fn create(
        &self,
        client: &mut tokio_postgres::Client,
    ) -> Result<(), tokio_postgres::Error> {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
            .await?;
        let parent = self.parent();
        let seq_index = format!("\"{}_seq\"", self.table);
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS {counters} (
                namespace  TEXT   PRIMARY KEY,
                table_name TEXT   NOT NULL,
                sequence   BIGINT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS {parent} (
                series_id TEXT   COLLATE \"C\" NOT NULL,
                time_us   BIGINT NOT NULL,
                event_id  TEXT   COLLATE \"C\" NOT NULL,
                sequence  BIGINT NOT NULL,
                tags      JSONB  NOT NULL,
                payload   BYTEA  NOT NULL,
                PRIMARY KEY (series_id, time_us, event_id)
             ) PARTITION BY RANGE (time_us);
             CREATE INDEX IF NOT EXISTS {seq_index} ON {parent} (series_id, sequence);",
            schema = self.schema,
            counters = self.counters(),
        ))
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO {} (namespace, table_name, sequence) VALUES ($1, $2, 0)
                 ON CONFLICT (namespace) DO NOTHING",
                self.counters()
            ),
            &[&self.namespace, &self.table],
        )
        .await?;
        tx.commit().await
    }

    /// Creates the partition for the bucket `[start, end)` if missing, under
    /// an advisory lock on the parent, so concurrent writers needing the
    /// same new bucket do not race.
    pub async fn create_partition(
        &self,
        client: &mut tokio_postgres::Client,
        start: i64,
        end: i64,
    ) -> Result<(), tokio_postgres::Error> {
        let tx = client.transaction().await?;
        let key = fnv64(self.table.as_bytes()) as i64;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .await?;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS \"{}\".\"{}\" PARTITION OF {} FOR VALUES FROM ({start}) TO ({end})",
            self.schema,
            self.partition_name(start),
            self.parent(),
        ))
        .await?;
        tx.commit().await
    }

    /// The partitions of the parent table with their upper bounds
    /// (exclusive), read from the catalog.
    pub async fn partitions(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
        let rows = client
            .query(
                "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
                 FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid
                 JOIN pg_class p ON p.oid = i.inhparent
                 JOIN pg_namespace n ON n.oid = p.relnamespace
                 WHERE n.nspname = $1 AND p.relname = $2",
                &[&self.schema, &self.table],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let name: String = r.get(0);
                let bound: String = r.get(1);
                upper_bound(&bound).map(|end| (name, end))
            })
            .collect())
    }
}

/// The upper bound of `FOR VALUES FROM ('a') TO ('b')` (quotes optional).
fn upper_bound(bound: &str) -> Option<i64> {
    let to = bound.rsplit_once("TO (")?.1;
    to.trim_end_matches(')')
        .trim_matches('\'')
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_safe_and_distinct() {
        let a = Layout::new("prism", "Orders/EU \"x\"; DROP TABLE y");
        assert!(a.table.len() <= 40, "{}", a.table);
        assert!(
            a.table
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{}",
            a.table
        );
        let long = Layout::new("prism", &"n".repeat(500));
        assert!(long.partition_name(i64::MIN).len() <= 63);
        assert_ne!(
            Layout::new("prism", "a").table,
            Layout::new("prism", "A").table
        );
        assert_ne!(
            Layout::new("s1", "a").channel,
            Layout::new("s2", "a").channel
        );
        assert_eq!(
            Layout::new("prism", "a").table,
            Layout::new("prism", "a").table
        );
    }

    #[test]
    fn bounds_parse() {
        assert_eq!(
            upper_bound("FOR VALUES FROM ('-3600000000') TO ('0')"),
            Some(0)
        );
        assert_eq!(upper_bound("FOR VALUES FROM (10) TO (20)"), Some(20));
        assert_eq!(upper_bound("DEFAULT"), None);
    }
}
