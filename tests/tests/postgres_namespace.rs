//! A namespace on the PostgreSQL backend, configured in YAML and served by
//! a real proxy process; the data is readable with plain SQL afterwards.

use prism_proto::keyvalue::v1 as pb;
use prism_tests::{ProxyProcess, free_addr};

fn postgres_url() -> String {
    std::env::var("PRISM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

#[tokio::test]
async fn keyvalue_on_postgres_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let name = format!("e2e-pg-{}-{now}", std::process::id());
    std::fs::write(
        dir.path().join("prism.yaml"),
        format!(
            "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n",
            free_addr(),
            free_addr()
        ),
    )
    .unwrap();
    std::fs::write(
        ns_dir.join(format!("{name}.yaml")),
        format!(
            "name: {name}\ndal: keyvalue\nbackend:\n  kind: postgres\n  options:\n    url: {}\n    schema: prism_e2e\n",
            postgres_url()
        ),
    )
    .unwrap();
    let config = dir.path().join("prism.yaml").display().to_string();
    let proxy = ProxyProcess::start_with(&dir.path().join("data"), &["--config", &config]);
    let mut kv = proxy.kv_client().await;
    let put = kv
        .put(pb::PutRequest {
            namespace: name.clone(),
            id: "order-1".into(),
            items: vec![pb::PutItem {
                key: b"status".to_vec(),
                value: b"paid".to_vec(),
                ttl: None,
                expected_version: Some(0),
            }],
            idempotency_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let items = kv
        .get(pb::GetRequest {
            namespace: name.clone(),
            id: "order-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].value, b"paid");
    assert_eq!(items[0].version, put.versions[0]);

    // The backend's own tool sees the same row.
    let out = std::process::Command::new("psql")
        .args([
            &postgres_url(),
            "-tAc",
            &format!(
                "SELECT convert_from(value, 'UTF8') FROM prism_e2e.kv_items \
                 WHERE namespace = '{name}' AND id = 'order-1'"
            ),
        ])
        .output()
        .expect("running psql");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "paid");
}
