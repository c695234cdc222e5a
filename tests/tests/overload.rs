//! A namespace driven far over its limits through a real `prism-proxy`:
//! the proxy stays up, admitted calls succeed, the others are refused at
//! once with RESOURCE_EXHAUSTED naming the limit and carrying a retry hint,
//! and another namespace on the same proxy keeps serving.

use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_tests::ProxyProcess;
use tonic::Code;

fn start() -> ProxyProcess {
    let dir = tempfile::tempdir().unwrap().keep();
    let ns = dir.join("ns");
    std::fs::create_dir_all(&ns).unwrap();
    // 20 calls per second with a burst of 20: a flood of 200 calls at once
    // is 10x the rate.
    std::fs::write(
        ns.join("limited.yaml"),
        "name: limited\ndal: keyvalue\nbackend:\n  kind: memstore\nlimits:\n  rate:\n    \
         calls_per_second: 20\n    burst: 20\n",
    )
    .unwrap();
    std::fs::write(
        ns.join("other.yaml"),
        "name: other\ndal: keyvalue\nbackend:\n  kind: memstore\n",
    )
    .unwrap();
    std::fs::write(dir.join("prism.yaml"), "namespaces:\n  dir: ns\n").unwrap();
    ProxyProcess::start_with(
        &dir.join("data"),
        &["--config", &dir.join("prism.yaml").display().to_string()],
    )
}

fn put(namespace: &str, id: String) -> pb::PutRequest {
    pb::PutRequest {
        namespace: namespace.into(),
        id,
        items: vec![pb::PutItem {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_over_its_rate_sheds_the_excess_and_others_keep_serving() {
    let proxy = start();
    let kv = KeyValueServiceClient::connect(proxy.grpc_url())
        .await
        .unwrap();
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let mut kv = kv.clone();
            tokio::spawn(async move { kv.put(put("limited", format!("id-{i}"))).await })
        })
        .collect();
    // While the flood runs, the other namespace serves.
    let mut other = kv.clone();
    for i in 0..20 {
        other
            .put(put("other", format!("o-{i}")))
            .await
            .expect("another namespace keeps serving");
    }
    let (mut admitted, mut shed) = (0, 0);
    for call in flood {
        match call.await.unwrap() {
            Ok(_) => admitted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().contains("limits.rate"),
                    "names the limit: {}",
                    status.message()
                );
                let hint = status
                    .metadata()
                    .get("retry-after-ms")
                    .expect("a retry hint")
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
                assert!(hint > 0, "retry-after-ms {hint}");
                shed += 1;
            }
        }
    }
    assert_eq!(admitted + shed, 200);
    // The burst is admitted; far fewer than all are (the rate refills 20
    // per second, and the flood takes well under the seconds it would need).
    assert!(admitted >= 20, "admitted {admitted}");
    assert!(shed >= 100, "shed {shed} of 200");
    // The proxy is still up and the namespace serves again once tokens
    // refill.
    let mut kv2 = kv.clone();
    let mut served = false;
    for _ in 0..100 {
        match kv2.put(put("limited", "after".into())).await {
            Ok(_) => {
                served = true;
                break;
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                let wait = s
                    .metadata()
                    .get("retry-after-ms")
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(50);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    assert!(served, "the namespace serves again after its retry hint");
}
