//! Requests no generated client would send, against the real proxy
//! binary: a message that does not decode, a `content-type` that is not
//! gRPC, and a `Duration` outside its defined range. Each is refused with
//! INVALID_ARGUMENT naming what is wrong, and the first two leave the
//! audit record every call gets. A message over the listener's size limit
//! is RESOURCE_EXHAUSTED naming the limit, and audited too.

use std::future::poll_fn;
use std::task::{Context, Poll};

use prism_proto::keyvalue::v1 as pb;
use prism_proxy::audit::AuditRecord;
use prism_tests::{ConfigDir, ProxyProcess, http_get, wait_until};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::Code;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Service, http};
use tonic::transport::Channel;

/// Sends its bytes as they are, and reads an answer's bytes.
#[derive(Debug, Default, Clone)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; buf.remaining()];
        buf.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// A channel that sends every request with the given `content-type`.
#[derive(Clone)]
struct ContentType(Channel, &'static str);

impl Service<http::Request<Body>> for ContentType {
    type Response = <Channel as Service<http::Request<Body>>>::Response;
    type Error = <Channel as Service<http::Request<Body>>>::Error;
    type Future = <Channel as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        request.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(self.1),
        );
        self.0.call(request)
    }
}

/// A request id unique to this run, to find the call's audit record.
fn request_id(what: &str) -> String {
    format!(
        "{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Waits for the audit record of the call sent with `request_id`.
fn audit_record(proxy: &ProxyProcess, request_id: &str) -> AuditRecord {
    let file = proxy.data_dir.join("audit").join("audit.jsonl");
    let mut found = None;
    wait_until("the call's audit record", || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<AuditRecord>(l).ok())
            .find(|r| r.trace_id == request_id);
        found.is_some()
    });
    found.unwrap()
}

async fn raw_call(
    channel: Channel,
    path: &'static str,
    body: Vec<u8>,
    id: &str,
    streaming: bool,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    let path = http::uri::PathAndQuery::from_static(path);
    if streaming {
        grpc.server_streaming(request, path, Raw)
            .await
            .expect_err("the call is refused")
    } else {
        grpc.unary(request, path, Raw)
            .await
            .expect_err("the call is refused")
    }
}

#[tokio::test]
async fn a_message_that_does_not_decode_is_invalid_argument_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());
    let channel = Channel::from_shared(proxy.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();

    // A Put whose namespace (field 1, a string) is not UTF-8.
    let mut put = vec![0x0a, 0x03, 0xff, 0xfe, 0xfd];
    put.extend(
        pb::PutRequest {
            id: "alice@example.com".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let id = request_id("undecodable-put");
    let status = raw_call(
        channel.clone(),
        "/prism.keyvalue.v1.KeyValueService/Put",
        put,
        &id,
        false,
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(
            "malformed request: failed to decode Protobuf message: PutRequest.namespace"
        ),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("alice"), "{}", status.message());
    assert!(status.metadata().get("prism-malformed-message").is_none());
    let record = audit_record(&proxy, &id);
    assert_eq!(record.method, "Put");
    assert_eq!(record.dal, "keyvalue");
    assert_eq!(record.status, "INVALID_ARGUMENT");
    assert_eq!(record.principal, "anonymous");
    assert_eq!(record.namespace, "_invalid");

    // A server-streaming call: the same.
    let id = request_id("undecodable-tail");
    let status = raw_call(
        channel.clone(),
        "/prism.timeseries.v1.TimeSeriesService/Tail",
        vec![0x12, 0x01, 0xc0],
        &id,
        true,
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("TailRequest.series_id"),
        "{}",
        status.message()
    );
    let record = audit_record(&proxy, &id);
    assert_eq!(
        (record.dal.as_str(), record.method.as_str()),
        ("timeseries", "Tail")
    );

    // The proxy still serves well-formed calls.
    let mut kv = proxy.kv_client().await;
    kv.get(pb::GetRequest {
        namespace: "demo-mem".into(),
        id: "nobody".into(),
        ..Default::default()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_request_that_is_not_grpc_is_refused_before_any_service() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());
    let channel = Channel::from_shared(proxy.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut json = ContentType(channel, "application/json");

    // What a gRPC client reports.
    let id = request_id("json-get");
    let mut grpc = tonic::client::Grpc::new(json.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(
        pb::GetRequest {
            namespace: "demo-mem".into(),
            id: "x".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    let status = grpc
        .unary(
            request,
            http::uri::PathAndQuery::from_static("/prism.keyvalue.v1.KeyValueService/Get"),
            Raw,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("content-type must be application/grpc"),
        "{}",
        status.message()
    );
    let record = audit_record(&proxy, &id);
    assert_eq!(
        (record.method.as_str(), record.status.as_str()),
        ("Get", "INVALID_ARGUMENT")
    );

    // What any HTTP/2 client sees: 415, as the gRPC spec asks.
    poll_fn(|cx| json.poll_ready(cx)).await.unwrap();
    let response = json
        .call(
            http::Request::post(format!(
                "{}/prism.keyvalue.v1.KeyValueService/Get",
                proxy.grpc_url()
            ))
            .body(Body::empty())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        response.headers().get("grpc-status").unwrap(),
        &(Code::InvalidArgument as i32).to_string()
    );
}

fn put_with_ttl(id: &str, seconds: i64, nanos: i32) -> pb::PutRequest {
    pb::PutRequest {
        namespace: "demo-mem".into(),
        id: id.into(),
        items: vec![pb::PutItem {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ttl: Some(prost_types::Duration { seconds, nanos }),
            expected_version: None,
        }],
        idempotency_token: String::new(),
    }
}

#[tokio::test]
async fn a_duration_outside_its_range_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());
    let mut kv = proxy.kv_client().await;
    let id = request_id("ttl");

    for (seconds, nanos, says) in [
        (
            1,
            2_000_000_000,
            "items[0].ttl.nanos is outside -999999999..999999999",
        ),
        (1, -1_000_000_000, "items[0].ttl.nanos is outside"),
        (
            2,
            -1,
            "items[0].ttl.seconds and items[0].ttl.nanos have opposite signs",
        ),
        (-1, 0, "items[0].ttl must not be negative"),
    ] {
        let err = kv.put(put_with_ttl(&id, seconds, nanos)).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{seconds} s {nanos} ns: {err:?}"
        );
        assert!(err.message().starts_with(says), "{}", err.message());
    }
    let err = kv
        .mutate(pb::MutateRequest {
            namespace: "demo-mem".into(),
            mutations: vec![pb::Mutation {
                id: id.clone(),
                op: Some(pb::mutation::Op::Put(pb::PutItem {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    ttl: Some(prost_types::Duration {
                        seconds: 1,
                        nanos: 2_000_000_000,
                    }),
                    expected_version: None,
                })),
            }],
            idempotency_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .starts_with("mutations[0].put.ttl.nanos is outside"),
        "{}",
        err.message()
    );
    let stored = kv
        .get(pb::GetRequest {
            namespace: "demo-mem".into(),
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stored.items.is_empty(), "nothing was written");

    // The largest well-formed fraction is accepted.
    kv.put(put_with_ttl(&id, 1, 999_999_999)).await.unwrap();
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted_naming_the_limit() {
    let cfg = ConfigDir::with_namespace("oversize", "dal: keyvalue\nbackend:\n  kind: memstore\n");
    let yaml = std::fs::read_to_string(&cfg.config).unwrap();
    std::fs::write(
        &cfg.config,
        yaml.replace("namespaces:", "  max_message_bytes: 65536\nnamespaces:"),
    )
    .unwrap();
    let proxy = cfg.start();
    let mut kv = proxy.kv_client().await;

    let id = request_id("oversize-put");
    let mut put = put_with_ttl("big", 60, 0);
    put.namespace = cfg.name.clone();
    put.items[0].value = vec![7; 70_000];
    let size = put.encoded_len();
    let mut request = tonic::Request::new(put);
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    let err = kv.put(request).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    for says in [
        &format!("{size} bytes") as &str,
        "limit of 65536 bytes",
        "listeners.max_message_bytes",
        "split the batch",
    ] {
        assert!(err.message().contains(says), "{says}: {}", err.message());
    }
    let record = audit_record(&proxy, &id);
    assert_eq!(
        (record.method.as_str(), record.status.as_str()),
        ("Put", "RESOURCE_EXHAUSTED")
    );
    let (_, metrics) = http_get(proxy.admin, "/metrics").unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("prism_requests_total")
                && l.contains(r#"method="Put""#)
                && l.contains(r#"status="resource_exhausted""#)),
        "{metrics}"
    );

    // Under the limit, the same call goes through.
    let mut put = put_with_ttl("small", 60, 0);
    put.namespace = cfg.name.clone();
    put.items[0].value = vec![7; 1_000];
    kv.put(put).await.unwrap();
}
