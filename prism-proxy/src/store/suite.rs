//! The behaviour every shared config store must have, run by each store's
//! tests against the real service.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ConfigStore, StoreError, StoredNamespace};

/// A unique suffix for table and bucket names.
pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!(
        "{:x}{:x}{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `body`, then `cleanup` even when `body` panicked; re-raises.
pub(crate) async fn with_cleanup<B, C>(body: B, cleanup: C)
where
    B: Future<Output = ()> + Send + 'static,
    C: Future<Output = ()>,
{
    let result = tokio::spawn(body).await;
    cleanup.await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn names_versions(list: &[StoredNamespace]) -> Vec<(String, u64)> {
    list.iter().map(|n| (n.name.clone(), n.version)).collect()
}

fn mismatch(result: Result<u64, StoreError>) -> u64 {
    match result {
        Err(StoreError::VersionMismatch { actual, .. }) => actual,
        other => panic!("expected a version mismatch, got {other:?}"),
    }
}

/// Versions grow across puts and deletes; compare-and-set; not found.
pub(crate) async fn versions_and_cas(store: &dyn ConfigStore) {
    assert!(
        store.list().await.unwrap().is_empty(),
        "a new store is empty"
    );
    let v1 = store.put("orders", "name: orders\n", None).await.unwrap();
    let v2 = store.put("users", "name: users\n", Some(0)).await.unwrap();
    assert!(v1 > 0 && v2 > v1, "{v1} {v2}");
    let listed = store.list().await.unwrap();
    assert_eq!(
        names_versions(&listed),
        [("orders".to_string(), v1), ("users".to_string(), v2)]
    );
    assert_eq!(listed[0].yaml, "name: orders\n");
    assert!(
        listed[0].source.ends_with("key orders"),
        "{}",
        listed[0].source
    );

    let v3 = store
        .put("orders", "name: orders\n# 2\n", Some(v1))
        .await
        .unwrap();
    assert!(v3 > v2);
    // Update at a stale version, create when it exists, update of a missing one.
    assert_eq!(mismatch(store.put("orders", "x", Some(v1)).await), v3);
    assert_eq!(mismatch(store.put("users", "x", Some(0)).await), v2);
    assert_eq!(mismatch(store.put("fresh", "x", Some(v3)).await), 0);

    assert_eq!(mismatch(store.delete("orders", Some(v1)).await), v3);
    let v4 = store.delete("users", Some(v2)).await.unwrap();
    assert!(v4 > v3, "a delete gets a new version: {v4} after {v3}");
    assert!(matches!(
        store.delete("users", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("never", Some(0)).await,
        Err(StoreError::NotFound { .. })
    ));
    // The deletion's version is not a version of the namespace.
    assert_eq!(mismatch(store.put("users", "x", Some(v4)).await), 0);
    let v5 = store.put("users", "name: users\n", Some(0)).await.unwrap();
    let v6 = store
        .put("orders", "name: orders\n# 3\n", None)
        .await
        .unwrap();
    assert!(v6 > v5 && v5 > v4, "{v4} {v5} {v6}");
    let listed = store.list().await.unwrap();
    assert_eq!(
        names_versions(&listed),
        [("orders".to_string(), v6), ("users".to_string(), v5)]
    );
    assert_eq!(listed[0].yaml, "name: orders\n# 3\n");

    let err = store.put("Bad Name", "x", None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

/// Waits until `rx` gets a hint and `store` lists `want` for `name`
/// (`None`: absent), within `within`.
pub(crate) async fn wait_seen(
    rx: &mut mpsc::Receiver<()>,
    store: &dyn ConfigStore,
    name: &str,
    want: Option<u64>,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => panic!("the watch ended"),
            Err(_) => panic!("no hint showing {name} at {want:?} within {within:?}"),
        }
        let listed = store.list().await.unwrap();
        let got = listed.iter().find(|n| n.name == name).map(|n| n.version);
        if got == want {
            return;
        }
    }
}

/// Two instances on the same store, as two proxies: a change through one
/// wakes the other's watch; a third, made later, lists the same set.
pub(crate) async fn two_proxies(a: &dyn ConfigStore, b: &dyn ConfigStore, c: &dyn ConfigStore) {
    let mut rx = b.watch().await.unwrap();
    let v1 = a.put("shared", "name: shared\n", None).await.unwrap();
    wait_seen(&mut rx, b, "shared", Some(v1), Duration::from_secs(2)).await;
    let v2 = a.put("other", "name: other\n", Some(0)).await.unwrap();
    wait_seen(&mut rx, b, "other", Some(v2), Duration::from_secs(2)).await;
    let v3 = a.delete("shared", Some(v1)).await.unwrap();
    assert!(v3 > v2);
    wait_seen(&mut rx, b, "shared", None, Duration::from_secs(2)).await;
    // And the other way round.
    let mut rx_a = a.watch().await.unwrap();
    let v4 = b
        .put("other", "name: other\n# b\n", Some(v2))
        .await
        .unwrap();
    wait_seen(&mut rx_a, a, "other", Some(v4), Duration::from_secs(2)).await;

    let from_a = a.list().await.unwrap();
    assert_eq!(names_versions(&from_a), [("other".to_string(), v4)]);
    assert_eq!(b.list().await.unwrap(), from_a);
    assert_eq!(
        c.list().await.unwrap(),
        from_a,
        "a later instance sees the same"
    );
}
