//! A namespace on the Redis backend, configured in YAML and served by a
//! real proxy process; the data is readable with `redis-cli` afterwards, by
//! the key names `docs-cms/configuration.md` documents.

use prism_proto::keyvalue::v1 as pb;
use prism_tests::{ProxyProcess, free_addr};

fn redis_url() -> String {
    std::env::var("PRISM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// `redis-cli -u URL --raw ARGS...`, its standard output.
fn redis_cli(args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", &redis_url(), "--raw"])
        .args(args)
        .output()
        .expect("running redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn keyvalue_on_redis_through_the_proxy_is_readable_with_redis_cli() {
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let name = format!("e2e-redis-{}-{now}", std::process::id());
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
            "name: {name}\ndal: keyvalue\nbackend:\n  kind: redis\n  options:\n    url: {}\n    \
             key_prefix: prism-test\n",
            redis_url()
        ),
    )
    .unwrap();
    let config = dir.path().join("prism.yaml").display().to_string();
    let proxy = ProxyProcess::start_with(&dir.path().join("data"), &["--config", &config]);
    let mut kv = proxy.kv_client().await;
    let put = kv
        .put(pb::PutRequest {
            namespace: name.clone(),
            id: "user:1".into(),
            items: vec![pb::PutItem {
                key: b"name".to_vec(),
                value: b"ada".to_vec(),
                ttl: None,
                expected_version: Some(0),
            }],
            idempotency_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let version = put.versions[0];

    // The backend's own tool sees the documented layout.
    let base = format!("prism-test:{{{name}}}");
    assert_eq!(
        redis_cli(&["ZRANGE", &format!("{base}:ids"), "0", "-1"]),
        "user:1"
    );
    assert_eq!(
        redis_cli(&["ZRANGE", &format!("{base}:keys:user:1"), "0", "-1"]),
        "name"
    );
    assert_eq!(
        redis_cli(&["GET", &format!("{base}:item:6:user:1:name")]),
        format!("{version}:0:ada")
    );
    assert_eq!(
        redis_cli(&["GET", &format!("{base}:version")]),
        version.to_string()
    );

    // Clean up through the API; the keys go with the item.
    kv.delete(pb::DeleteRequest {
        namespace: name.clone(),
        id: "user:1".into(),
        selection: None,
    })
    .await
    .unwrap();
    assert_eq!(
        redis_cli(&["EXISTS", &format!("{base}:item:6:user:1:name")]),
        "0"
    );
}
