//! Hostile data-plane input through a real `prism-proxy` with JWT auth:
//! errors quote caller input only up to a bound, a call naming the same
//! thing twice is refused whole, and NOT_FOUND lists only the namespaces
//! the caller may see.

use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_proto::pubsub::v1 as pspb;
use prism_proto::pubsub::v1::pub_sub_service_client::PubSubServiceClient;
use prism_proto::timeseries::v1 as tspb;
use prism_proto::timeseries::v1::time_series_service_client::TimeSeriesServiceClient;
use prism_tests::ProxyProcess;
use prism_tests::oidc::TestIssuer;
use tonic::transport::Channel;
use tonic::{Code, Request};

struct Setup {
    issuer: TestIssuer,
    proxy: ProxyProcess,
}

fn start() -> Setup {
    let dir = tempfile::tempdir().unwrap().keep();
    let issuer = TestIssuer::start();
    let ns = dir.join("ns");
    std::fs::create_dir_all(&ns).unwrap();
    let policy =
        |who: &str| format!("policy:\n  read: [\"user:{who}\"]\n  write: [\"user:{who}\"]\n");
    for (name, dal, who) in [
        ("alpha", "keyvalue", "alice"),
        ("alpha-events", "timeseries", "alice"),
        ("alpha-queue", "pubsub", "alice"),
        ("hidden-billing", "keyvalue", "bob"),
    ] {
        let backend = match dal {
            "pubsub" => "backend:\n  kind: redis\n  options:\n    url: redis://127.0.0.1:6379\n",
            _ => "backend:\n  kind: memstore\n",
        };
        std::fs::write(
            ns.join(format!("{name}.yaml")),
            format!("name: {name}\ndal: {dal}\n{backend}{}", policy(who)),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("prism.yaml"),
        format!("namespaces:\n  dir: ns\n{}", issuer.auth_section(&[])),
    )
    .unwrap();
    let proxy = ProxyProcess::start_with(
        &dir.join("data"),
        &["--config", &dir.join("prism.yaml").display().to_string()],
    );
    Setup { issuer, proxy }
}

impl Setup {
    fn request<T>(&self, sub: &str, message: T) -> Request<T> {
        let token = self.issuer.sign(&self.issuer.claims(sub));
        let mut r = Request::new(message);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    }

    async fn kv(&self) -> KeyValueServiceClient<Channel> {
        KeyValueServiceClient::connect(self.proxy.grpc_url())
            .await
            .unwrap()
    }
}

fn item(key: &str, value: &str, expected_version: Option<u64>) -> pb::PutItem {
    pb::PutItem {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        expected_version,
        ..Default::default()
    }
}

#[tokio::test]
async fn errors_quote_input_only_up_to_a_bound() {
    let s = start();
    let long = "n".repeat(100_000);
    let status = s
        .kv()
        .await
        .get(s.request(
            "alice",
            pb::GetRequest {
                namespace: long.clone(),
                id: "x".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    // The real error, not a metadata-size failure of the client.
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().len() < 400,
        "{} bytes",
        status.message().len()
    );
    assert!(
        status.message().contains("(100000 bytes)"),
        "{}",
        status.message()
    );

    // A token whose key id is 10 KB.
    let kid = "k".repeat(10_000);
    let token = s.issuer.sign_with_stranger(&kid, &s.issuer.claims("alice"));
    let mut req = Request::new(pb::GetRequest {
        namespace: "alpha".into(),
        id: "x".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let status = s.kv().await.get(req).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().len() < 400,
        "{} bytes",
        status.message().len()
    );
    assert!(
        status.message().contains("(10000 bytes)"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn not_found_lists_only_what_the_caller_may_see() {
    let s = start();
    let not_found = |sub: &'static str| {
        let req = s.request(
            sub,
            pb::GetRequest {
                namespace: "orders".into(),
                id: "x".into(),
                ..Default::default()
            },
        );
        async {
            let status = s.kv().await.get(req).await.unwrap_err();
            assert_eq!(status.code(), Code::NotFound, "{status:?}");
            status.message().to_string()
        }
    };
    let nobody = not_found("mallory").await;
    assert!(
        !nobody.contains("alpha") && !nobody.contains("hidden"),
        "{nobody}"
    );
    let alice = not_found("alice").await;
    assert!(
        alice.contains("alpha, alpha-events, alpha-queue"),
        "{alice}"
    );
    assert!(!alice.contains("hidden-billing"), "{alice}");
}

#[tokio::test]
async fn a_call_naming_the_same_thing_twice_is_refused_whole() {
    let s = start();
    let mut kv = s.kv().await;
    let put = |items: Vec<pb::PutItem>| {
        s.request(
            "alice",
            pb::PutRequest {
                namespace: "alpha".into(),
                id: "dup".into(),
                items,
                ..Default::default()
            },
        )
    };
    let v = kv.put(put(vec![item("k", "v1", None)])).await.unwrap();
    let v1 = v.into_inner().versions[0];
    // The same key twice, each expecting the version just read.
    let status = kv
        .put(put(vec![
            item("k", "a", Some(v1)),
            item("k", "b", Some(v1)),
        ]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("items[1].key repeats items[0].key"),
        "{}",
        status.message()
    );
    // Nothing was written: the item is still at v1 with its old value.
    let got = kv
        .get(s.request(
            "alice",
            pb::GetRequest {
                namespace: "alpha".into(),
                id: "dup".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.items.len(), 1);
    assert_eq!(
        (got.items[0].version, got.items[0].value.as_slice()),
        (v1, &b"v1"[..])
    );

    // Mutate: the same (id, key) in two puts.
    let mutation = |key: &str| pb::Mutation {
        id: "dup".into(),
        op: Some(pb::mutation::Op::Put(item(key, "m", Some(v1)))),
    };
    let status = kv
        .mutate(s.request(
            "alice",
            pb::MutateRequest {
                namespace: "alpha".into(),
                mutations: vec![mutation("k"), mutation("k")],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("mutations[1].put.key repeats"),
        "{}",
        status.message()
    );

    // A key list naming one key twice.
    let status = kv
        .get(s.request(
            "alice",
            pb::GetRequest {
                namespace: "alpha".into(),
                id: "dup".into(),
                selection: Some(pb::KeySelection {
                    selection: Some(pb::key_selection::Selection::Keys(pb::KeyList {
                        keys: vec![b"k".to_vec(), b"k".to_vec()],
                    })),
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // TimeSeries: one event twice in one write; nothing is written.
    let mut ts = TimeSeriesServiceClient::connect(s.proxy.grpc_url())
        .await
        .unwrap();
    let event = tspb::Event {
        series_id: "s".into(),
        event_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        event_id: "e1".into(),
        ..Default::default()
    };
    let status = ts
        .write(s.request(
            "alice",
            tspb::WriteRequest {
                namespace: "alpha-events".into(),
                events: vec![event.clone(), event.clone()],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("events[1] repeats events[0]"),
        "{}",
        status.message()
    );
    let written = ts
        .write(s.request(
            "alice",
            tspb::WriteRequest {
                namespace: "alpha-events".into(),
                events: vec![event],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(written.written, 1, "the refused write stored nothing");

    // PubSub: one ack id twice.
    let mut ps = PubSubServiceClient::connect(s.proxy.grpc_url())
        .await
        .unwrap();
    let status = ps
        .ack(s.request(
            "alice",
            pspb::AckRequest {
                namespace: "alpha-queue".into(),
                topic: "t".into(),
                group: "g".into(),
                ack_ids: vec!["a1".into(), "a1".into()],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("ack_ids[1] repeats ack_ids[0]"),
        "{}",
        status.message()
    );
}
