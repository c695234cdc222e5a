//! The KeyValue API through a real `prism-proxy` process: status codes for
//! bad input, health, reflection and metrics.

use prism_proto::keyvalue::v1 as pb;
use prism_tests::{ProxyProcess, http_get};
use tonic::Code;

fn put(namespace: &str, id: &str, items: Vec<pb::PutItem>) -> pb::PutRequest {
    pb::PutRequest {
        namespace: namespace.into(),
        id: id.into(),
        items,
        idempotency_token: String::new(),
    }
}

fn item(key: &[u8], value: &[u8]) -> pb::PutItem {
    pb::PutItem {
        key: key.to_vec(),
        value: value.to_vec(),
        ttl: None,
        expected_version: None,
    }
}

fn get(namespace: &str, id: &str) -> pb::GetRequest {
    pb::GetRequest {
        namespace: namespace.into(),
        id: id.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn bad_input_gets_clear_statuses_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());
    let mut kv = proxy.kv_client().await;

    let err = kv
        .put(put("", "id", vec![item(b"k", b"v")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("namespace must not be empty"),
        "{}",
        err.message()
    );

    let err = kv
        .put(put("demo-mem", "", vec![item(b"k", b"v")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("id must not be empty"),
        "{}",
        err.message()
    );

    let err = kv.get(get("orders", "id")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        err.message(),
        "namespace 'orders' not found; known namespaces: demo-mem, demo-sqlite"
    );

    // One oversized value fails the whole Put: the valid item is not written.
    let big = vec![0u8; (1 << 20) + 1];
    let err = kv
        .put(put(
            "demo-sqlite",
            "limits",
            vec![item(b"ok", b"v"), item(b"big", &big)],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("max_value_bytes = 1048576"),
        "{}",
        err.message()
    );
    let items = kv
        .get(get("demo-sqlite", "limits"))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(items.is_empty(), "nothing of a refused Put is written");

    let err = kv
        .put(put("demo-mem", "k", vec![item(&[b'k'; 1025], b"")]))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("max_key_bytes = 1024"),
        "{}",
        err.message()
    );

    let many: Vec<_> = (0..1001u32).map(|i| item(&i.to_be_bytes(), b"")).collect();
    let err = kv.put(put("demo-mem", "many", many)).await.unwrap_err();
    assert!(
        err.message().contains("max_items_per_call = 1000"),
        "{}",
        err.message()
    );

    let err = kv.put(put("demo-mem", "none", vec![])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let mut bad_token = get("demo-mem", "id");
    bad_token.page_token = "definitely-not-a-token".into();
    let err = kv.get(bad_token).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("invalid page_token"),
        "{}",
        err.message()
    );

    // A token is bound to its request: reusing it on another id is refused.
    kv.put(put(
        "demo-mem",
        "paged",
        (0..5u8).map(|i| item(&[i], b"xx")).collect(),
    ))
    .await
    .unwrap();
    let mut first = get("demo-mem", "paged");
    first.page_size_bytes = 3;
    let token = kv.get(first).await.unwrap().into_inner().next_page_token;
    assert!(!token.is_empty());
    let mut other = get("demo-mem", "other-id");
    other.page_token = token;
    let err = kv.get(other).await.unwrap_err();
    assert!(
        err.message().contains("different request"),
        "{}",
        err.message()
    );

    let mut huge_page = get("demo-mem", "id");
    huge_page.page_size_bytes = 64 << 20;
    let err = kv.get(huge_page).await.unwrap_err();
    assert!(
        err.message().contains("max_page_size_bytes"),
        "{}",
        err.message()
    );

    // A conditional write that fails says the current version.
    let v = kv
        .put(put("demo-mem", "cond", vec![item(b"k", b"1")]))
        .await
        .unwrap()
        .into_inner()
        .versions[0];
    let mut stale = item(b"k", b"2");
    stale.expected_version = Some(v + 7);
    let err = kv
        .put(put("demo-mem", "cond", vec![stale]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains(&format!("is at version {v}")),
        "{}",
        err.message()
    );

    let err = kv
        .mutate(pb::MutateRequest {
            namespace: "demo-mem".into(),
            mutations: vec![pb::Mutation {
                id: "m".into(),
                op: None,
            }],
            idempotency_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("mutations[0] has no operation"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn health_reflection_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());

    let channel = tonic::transport::Channel::from_shared(proxy.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "prism.keyvalue.v1.KeyValueService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream
        .message()
        .await
        .unwrap()
        .expect("a reflection response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"prism.keyvalue.v1.KeyValueService".to_string()),
        "{names:?}"
    );
    for name in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
    }
    // v1 hands out the file that defines a service.
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "prism.keyvalue.v1.KeyValueService".into(),
        )),
    };
    let response = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("a reflection response");
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let file = <prost_types::FileDescriptorProto as prost::Message>::decode(
        files.file_descriptor_proto[0].as_slice(),
    )
    .unwrap();
    assert_eq!(file.package(), "prism.keyvalue.v1");
    assert!(file.service.iter().any(|s| s.name() == "KeyValueService"));

    let mut kv = proxy.kv_client().await;
    kv.put(put("demo-mem", "m", vec![item(b"k", b"v")]))
        .await
        .unwrap();
    kv.get(get("demo-mem", "m")).await.unwrap();
    kv.get(get("nope", "m")).await.unwrap_err();

    let (status, body) = http_get(proxy.admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    let has = |needle: &str| {
        body.lines()
            .any(|l| l.starts_with("prism_requests_total") && l.contains(needle))
    };
    assert!(
        has(r#"method="Put""#) && has(r#"namespace="demo-mem""#),
        "{body}"
    );
    assert!(
        has(r#"namespace="_unknown""#) && has(r#"status="not_found""#),
        "{body}"
    );
    assert!(
        body.contains("prism_request_duration_seconds_bucket"),
        "histograms: {body}"
    );
    assert_eq!(http_get(proxy.admin, "/healthz").unwrap().0, 200);
    assert_eq!(http_get(proxy.admin, "/readyz").unwrap().0, 200);
}
