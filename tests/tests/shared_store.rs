//! A fleet of proxies on one shared config store, PostgreSQL and NATS
//! JetStream KV: an apply through one proxy is served by the other within
//! 2 seconds (and the reverse, and deletes); a proxy started later comes up
//! with the current set.

use std::path::Path;
use std::time::{Duration, Instant};

use prism_proto::admin::v1 as admin;
use prism_proto::admin::v1::admin_service_client::AdminServiceClient;
use prism_proto::keyvalue::v1 as pb;
use prism_tests::ProxyProcess;
use tonic::Code;
use tonic::transport::Channel;

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}_{nanos}", std::process::id())
}

fn postgres_url() -> String {
    std::env::var("PRISM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn nats_url() -> String {
    std::env::var("PRISM_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

fn start(dir: &Path, name: &str, store: &str) -> ProxyProcess {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, format!("namespaces:\n  store:\n{store}")).unwrap();
    ProxyProcess::start_with(
        &dir.join(format!("data-{name}")),
        &["--config", &config.display().to_string()],
    )
}

async fn admin(proxy: &ProxyProcess) -> AdminServiceClient<Channel> {
    AdminServiceClient::connect(proxy.grpc_url()).await.unwrap()
}

fn yaml(description: &str) -> String {
    format!("name: fleet\ndal: keyvalue\ndescription: {description}\nbackend:\n  kind: memstore\n")
}

/// How long until `proxy` serves `fleet` at `version` (None: not at all).
async fn time_until_served(
    client: &mut AdminServiceClient<Channel>,
    version: Option<u64>,
    since: Instant,
) -> Duration {
    let deadline = since + Duration::from_secs(20);
    loop {
        let got = client
            .get_namespace(admin::GetNamespaceRequest {
                name: "fleet".into(),
            })
            .await;
        let serving = match &got {
            Ok(ns) => Some(ns.get_ref().version),
            Err(e) if e.code() == Code::NotFound => None,
            Err(e) => panic!("GetNamespace: {e}"),
        };
        if serving == version {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "still serving {serving:?}, waiting for {version:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn apply(client: &mut AdminServiceClient<Channel>, yaml: String) -> u64 {
    client
        .apply_namespace(admin::ApplyNamespaceRequest {
            yaml,
            dry_run: false,
            expected_version: None,
        })
        .await
        .unwrap()
        .into_inner()
        .version
}

async fn put_get(proxy: &ProxyProcess, key: &str) -> Result<usize, tonic::Status> {
    let mut kv = proxy.kv_client().await;
    kv.put(pb::PutRequest {
        namespace: "fleet".into(),
        id: "x".into(),
        items: vec![pb::PutItem {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    })
    .await?;
    Ok(kv
        .get(pb::GetRequest {
            namespace: "fleet".into(),
            id: "x".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .items
        .len())
}

/// The fleet scenario on the store configured by `store` (YAML lines
/// under `namespaces.store:`).
async fn fleet(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "a", store);
    let b = start(dir.path(), "b", store);
    let (mut admin_a, mut admin_b) = (admin(&a).await, admin(&b).await);
    let listed = admin_b
        .list_namespaces(admin::ListNamespacesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.namespaces.is_empty(), "a new store is empty");
    assert!(
        !listed.store.contains('@'),
        "no credentials: {}",
        listed.store
    );

    // Create through A; B serves it.
    let t = Instant::now();
    let v1 = apply(&mut admin_a, yaml("one")).await;
    let took = time_until_served(&mut admin_b, Some(v1), t).await;
    eprintln!("apply through A served by B after {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(put_get(&b, "k1").await.unwrap(), 1);

    // Update through B; A serves it.
    let t = Instant::now();
    let v2 = apply(&mut admin_b, yaml("two")).await;
    assert!(v2 > v1);
    let took = time_until_served(&mut admin_a, Some(v2), t).await;
    eprintln!("update through B served by A after {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // Only the description changed: A's memstore kept its data.
    assert_eq!(put_get(&a, "k2").await.unwrap(), 1);

    // A proxy started later comes up with the current set.
    let c = start(dir.path(), "c", store);
    let mut admin_c = admin(&c).await;
    let ns = admin_c
        .get_namespace(admin::GetNamespaceRequest {
            name: "fleet".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ns.version, ns.description.as_str()), (v2, "two"));

    // Delete through C; A and B stop serving it.
    let t = Instant::now();
    admin_c
        .delete_namespace(admin::DeleteNamespaceRequest {
            name: "fleet".into(),
            expected_version: Some(v2),
        })
        .await
        .unwrap();
    for client in [&mut admin_a, &mut admin_b] {
        let took = time_until_served(client, None, t).await;
        assert!(took < Duration::from_secs(2), "delete took {took:?}");
    }
    let err = put_get(&a, "k3").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn two_proxies_share_namespaces_through_postgres() {
    let schema = format!("prism_fleet_{}", unique());
    let store = format!(
        "    postgres:\n      url: {}\n      table: {schema}.namespaces\n",
        postgres_url()
    );
    fleet(&store).await;
    let (client, conn) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn two_proxies_share_namespaces_through_nats_kv() {
    let bucket = format!("prism-fleet-{}", unique());
    let store = format!(
        "    nats:\n      url: {}\n      bucket: {bucket}\n",
        nats_url()
    );
    fleet(&store).await;
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.delete_stream(format!("KV_{bucket}")).await.unwrap();
}
