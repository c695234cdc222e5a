use std::time::Duration;

use super::*;
use crate::store::suite;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh schema name, and a cleanup that drops it.
fn schema() -> String {
    format!("prism_store_t{}", suite::unique())
}

async fn drop_schema(schema: String) {
    let (client, connection) = tokio_postgres::connect(URL, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn versions_grow_across_puts_and_deletes_and_cas_holds() {
    let schema = schema();
    let table = format!("{schema}.namespaces");
    suite::with_cleanup(
        async move {
            let store = PostgresStore::connect(URL, &table).await.unwrap();
            suite::versions_and_cas(&store).await;
        },
        drop_schema(schema),
    )
    .await;
}

#[tokio::test]
async fn two_proxies_on_one_table_see_each_others_changes() {
    let schema = schema();
    let table = format!("{schema}.namespaces");
    suite::with_cleanup(
        async move {
            // Both start at once on a table that does not exist yet.
            let (a, b) = tokio::join!(
                PostgresStore::connect(URL, &table),
                PostgresStore::connect(URL, &table)
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            let c = PostgresStore::connect(URL, &table).await.unwrap();
            suite::two_proxies(&a, &b, &c).await;
        },
        drop_schema(schema),
    )
    .await;
}

#[tokio::test]
async fn the_watch_survives_losing_its_connection() {
    let schema = schema();
    let table = format!("{schema}.namespaces");
    suite::with_cleanup(
        async move {
            let store = PostgresStore::connect(URL, &table).await.unwrap();
            let mut rx = store.watch().await.unwrap();
            // Kill the LISTEN connection from the server side.
            let channel = store.inner.channel.clone();
            let (admin, connection) = tokio_postgres::connect(URL, NoTls).await.unwrap();
            tokio::spawn(connection);
            let killed = admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE query = $1",
                    &[&format!("LISTEN \"{channel}\"")],
                )
                .await
                .unwrap()
                .get::<_, i64>(0);
            assert_eq!(killed, 1, "the listener's backend was found");
            let other = PostgresStore::connect(URL, &table).await.unwrap();
            let v = other.put("late", "name: late\n", None).await.unwrap();
            suite::wait_seen(&mut rx, &store, "late", Some(v), Duration::from_secs(5)).await;
            // Reconnected: a later change is still seen.
            let v = other.put("later", "name: later\n", None).await.unwrap();
            suite::wait_seen(&mut rx, &store, "later", Some(v), Duration::from_secs(5)).await;
        },
        drop_schema(schema),
    )
    .await;
}

#[tokio::test]
async fn a_plain_table_name_is_in_public_and_bad_names_are_refused() {
    let name = format!("prism_store_t{}", suite::unique());
    let table = name.clone();
    suite::with_cleanup(
        async move {
            let store = PostgresStore::connect(URL, &table).await.unwrap();
            assert_eq!(
                store.describe(),
                format!("postgres 127.0.0.1:5432/test table public.{table}")
            );
            for bad in ["", "a.b.c", "Orders", "x;drop", "1abc", "s.", &"a".repeat(49)] {
                let err = PostgresStore::connect(URL, bad).await.unwrap_err();
                assert!(
                    matches!(&err, StoreError::Invalid(m) if m.contains("schema.table")),
                    "{bad}: {err:?}"
                );
            }
        },
        async move {
            let (client, connection) = tokio_postgres::connect(URL, NoTls).await.unwrap();
            tokio::spawn(connection);
            client
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS public.{name}; DROP SEQUENCE IF EXISTS public.{name}_version"
                ))
                .await
                .unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn messages_never_show_the_password() {
    let schema = schema();
    let table = format!("{schema}.namespaces");
    suite::with_cleanup(
        async move {
            let url = "postgres://postgres:s3cr3t@127.0.0.1:5432/test";
            let store = PostgresStore::connect(url, &table).await.unwrap();
            assert!(!store.describe().contains("s3cr3t"));
            assert!(!format!("{store:?}").contains("s3cr3t"));
            // Nothing listens on port 1.
            let err = PostgresStore::connect("postgres://u:s3cr3t@127.0.0.1:1/test", &table)
                .await
                .unwrap_err()
                .to_string();
            assert!(!err.contains("s3cr3t"), "{err}");
            assert!(
                err.contains("127.0.0.1:1/test") && err.contains("namespaces.store.url"),
                "{err}"
            );
            let err = PostgresStore::connect("postgres://u:s3cr3t@[bad", &table)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                !err.contains("s3cr3t") && err.contains("namespaces.store.url"),
                "{err}"
            );
        },
        drop_schema(schema),
    )
    .await;
}
