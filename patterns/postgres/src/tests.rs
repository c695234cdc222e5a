//! The acceptance suite against the PostgreSQL on this machine
//! (127.0.0.1:5432, database `test`; override with PRISM_TEST_POSTGRES_URL).
//! Each test has its own namespace, so tests run in parallel on one schema.

use super::*;
use pattern_core::Backend;

fn test_url() -> String {
    std::env::var("PRISM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn options() -> serde_json::Value {
    serde_json::json!({ "url": test_url(), "schema": "prism_acceptance" })
}

#[test]
fn options_are_checked() {
    let err = PostgresOptions::parse(serde_json::json!({})).unwrap_err();
    assert!(err.to_string().contains("`url` is required"), "{err}");
    let err = PostgresOptions::parse(serde_json::json!({"url": test_url(), "schema": "Bad-Name"}))
        .unwrap_err();
    assert!(err.to_string().contains("`schema`"), "{err}");
    let err =
        PostgresOptions::parse(serde_json::json!({"url": test_url(), "pool": 3})).unwrap_err();
    assert!(err.to_string().contains("unknown field `pool`"), "{err}");
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    // A port nothing listens on (bound and released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PostgresOptions::parse(serde_json::json!({
        "url": format!("postgres://postgres@127.0.0.1:{port}/test"),
    }))
    .unwrap();
    let err = PostgresBackend::open("x".into(), Arc::new(pattern_core::SystemClock), &options)
        .await
        .err()
        .expect("no server there");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn data_survives_reopen_and_migrations_are_idempotent() {
    let options = PostgresOptions::parse(options()).unwrap();
    let ns = pattern_core::acceptance::Harness::unique_namespace("reopen");
    let clock: Arc<dyn Clock> = Arc::new(pattern_core::SystemClock);
    let b = PostgresBackend::open(ns.clone(), clock.clone(), &options)
        .await
        .unwrap();
    let v = b
        .put("id", vec![PutItem::new("k", "v")], None)
        .await
        .unwrap()
        .versions()[0];
    b.close().await.unwrap();
    let b = PostgresBackend::open(ns, clock, &options).await.unwrap();
    let page = b
        .get("id", &Selection::All, PageRequest::first(1024))
        .await
        .unwrap();
    assert_eq!(page.items[0].value, b"v");
    let v2 = b
        .put("id", vec![PutItem::new("k", "w")], None)
        .await
        .unwrap()
        .versions()[0];
    assert!(v2 > v);
}

/// Pages larger than one fetch (256 rows) are filled across fetches.
#[tokio::test]
async fn pages_span_several_fetches() {
    let options = PostgresOptions::parse(options()).unwrap();
    let ns = pattern_core::acceptance::Harness::unique_namespace("chunks");
    let b = PostgresBackend::open(ns, Arc::new(pattern_core::SystemClock), &options)
        .await
        .unwrap();
    let items: Vec<PutItem> = (0..600u32)
        .map(|i| PutItem::new(format!("k{i:04}"), "v"))
        .collect();
    b.put("id", items, None).await.unwrap();
    let mut keys = Vec::new();
    let mut request = PageRequest::first(2000);
    loop {
        let page = b.get("id", &Selection::All, request.clone()).await.unwrap();
        keys.extend(page.items.into_iter().map(|i| i.key));
        match page.next {
            Some(c) => request.cursor = Some(c),
            None => break,
        }
    }
    let want: Vec<Vec<u8>> = (0..600u32)
        .map(|i| format!("k{i:04}").into_bytes())
        .collect();
    assert_eq!(keys, want);
    let all = b
        .get(
            "id",
            &Selection::Prefix(b"k0".to_vec()),
            PageRequest::first(1 << 20),
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 600);
    assert!(all.next.is_none());
}
