use std::time::Duration;

use super::*;
use crate::store::suite;

const URL: &str = "nats://127.0.0.1:4222";

fn bucket() -> String {
    format!("prism-store-t{}", suite::unique())
}

async fn drop_bucket(bucket: String) {
    let client = async_nats::connect(URL).await.unwrap();
    let js = jetstream::new(client);
    // Absent when the test failed before creating it.
    let _ = js.delete_stream(format!("KV_{bucket}")).await;
}

#[tokio::test]
async fn versions_grow_across_puts_and_deletes_and_cas_holds() {
    let bucket = bucket();
    let b = bucket.clone();
    suite::with_cleanup(
        async move {
            let store = NatsKvStore::connect(URL, &b).await.unwrap();
            suite::versions_and_cas(&store).await;
        },
        drop_bucket(bucket),
    )
    .await;
}

#[tokio::test]
async fn two_proxies_on_one_bucket_see_each_others_changes() {
    let bucket = bucket();
    let b = bucket.clone();
    suite::with_cleanup(
        async move {
            // Both start at once on a bucket that does not exist yet.
            let (one, two) =
                tokio::join!(NatsKvStore::connect(URL, &b), NatsKvStore::connect(URL, &b));
            let (one, two) = (one.unwrap(), two.unwrap());
            let three = NatsKvStore::connect(URL, &b).await.unwrap();
            suite::two_proxies(&one, &two, &three).await;
        },
        drop_bucket(bucket),
    )
    .await;
}

#[tokio::test]
async fn purged_keys_are_not_listed_and_odd_names_are_refused() {
    let bucket = bucket();
    let b = bucket.clone();
    suite::with_cleanup(
        async move {
            let store = NatsKvStore::connect(URL, &b).await.unwrap();
            let kept = store.put("kept", "name: kept\n", None).await.unwrap();
            store.put("gone", "name: gone\n", None).await.unwrap();
            // Purged by another tool, not through the store.
            store.kv.purge("gone").await.unwrap();
            let listed = store.list().await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!((listed[0].name.as_str(), listed[0].version), ("kept", kept));
            assert_eq!(listed[0].source, format!("nats kv bucket {b} key kept"),);
            assert!(matches!(
                store.delete("gone", None).await,
                Err(StoreError::NotFound { .. })
            ));
            for bad in ["ends.", "a..b", "Upper", ""] {
                let err = store.put(bad, "x", None).await.unwrap_err();
                assert!(matches!(err, StoreError::Invalid(_)), "{bad}: {err:?}");
            }
            for bad in ["", "a.b", "a b", "x*"] {
                let err = NatsKvStore::connect(URL, bad).await.unwrap_err();
                assert!(
                    matches!(&err, StoreError::Invalid(m) if m.contains("namespaces.store.bucket")),
                    "{bad}: {err:?}"
                );
            }
        },
        drop_bucket(bucket),
    )
    .await;
}

#[tokio::test]
async fn messages_never_show_credentials() {
    assert_eq!(
        address_of("nats://u:s3cr3t@127.0.0.1:4222, tls://tok@h2:4223/"),
        "127.0.0.1:4222,h2:4223"
    );
    let bucket = bucket();
    let b = bucket.clone();
    suite::with_cleanup(
        async move {
            let store = NatsKvStore::connect(URL, &b).await.unwrap();
            assert_eq!(
                store.describe(),
                format!("nats 127.0.0.1:4222 kv bucket {b}")
            );
            // Nothing listens on port 1.
            let err = NatsKvStore::connect("nats://u:s3cr3t@127.0.0.1:1", &b)
                .await
                .unwrap_err()
                .to_string();
            assert!(!err.contains("s3cr3t"), "{err}");
            assert!(
                err.contains("127.0.0.1:1") && err.contains("namespaces.store.url"),
                "{err}"
            );
        },
        drop_bucket(bucket),
    )
    .await;
}

#[tokio::test]
async fn the_watch_survives_losing_its_consumer() {
    let bucket = bucket();
    let b = bucket.clone();
    suite::with_cleanup(
        async move {
            let store = NatsKvStore::connect(URL, &b).await.unwrap();
            let mut rx = store.watch().await.unwrap();
            // Remove the watch's consumer on the server.
            let stream = store.js.get_stream(format!("KV_{b}")).await.unwrap();
            let mut names = stream.consumer_names();
            let mut removed = 0;
            while let Some(name) = names.next().await {
                stream.delete_consumer(&name.unwrap()).await.unwrap();
                removed += 1;
            }
            assert_eq!(removed, 1, "the watch's consumer was found");
            let other = NatsKvStore::connect(URL, &b).await.unwrap();
            let v = other.put("late", "name: late\n", None).await.unwrap();
            suite::wait_seen(&mut rx, &store, "late", Some(v), Duration::from_secs(5)).await;
            let v = other.put("later", "name: later\n", None).await.unwrap();
            suite::wait_seen(&mut rx, &store, "later", Some(v), Duration::from_secs(5)).await;
        },
        drop_bucket(bucket),
    )
    .await;
}
