//! Acknowledged writes to `demo-sqlite` survive `kill -9` of the proxy.

use prism_proto::keyvalue::v1 as pb;
use prism_tests::ProxyProcess;

const N: usize = 300;

#[tokio::test]
async fn acknowledged_puts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());
    let mut kv = proxy.kv_client().await;
    let mut acknowledged = Vec::new();
    for i in 0..N {
        let id = format!("order-{}", i % 17);
        let key = format!("item-{i:04}");
        let response = kv
            .put(pb::PutRequest {
                namespace: "demo-sqlite".into(),
                id: id.clone(),
                items: vec![pb::PutItem {
                    key: key.clone().into_bytes(),
                    value: format!("value {i}").into_bytes(),
                    ttl: None,
                    expected_version: None,
                }],
                idempotency_token: String::new(),
            })
            .await
            .expect("put acknowledged");
        acknowledged.push((id, key, i, response.into_inner().versions[0]));
    }
    drop(kv);
    proxy.kill9();

    let proxy = ProxyProcess::start(dir.path());
    let mut kv = proxy.kv_client().await;
    for (id, key, i, version) in &acknowledged {
        let items = kv
            .get(pb::GetRequest {
                namespace: "demo-sqlite".into(),
                id: id.clone(),
                selection: Some(pb::KeySelection {
                    selection: Some(pb::key_selection::Selection::Keys(pb::KeyList {
                        keys: vec![key.clone().into_bytes()],
                    })),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(items.len(), 1, "acknowledged put {i} ({id}/{key}) lost");
        assert_eq!(items[0].value, format!("value {i}").into_bytes());
        assert_eq!(items[0].version, *version);
    }
    // The version counter continues after the crash.
    let next = kv
        .put(pb::PutRequest {
            namespace: "demo-sqlite".into(),
            id: "after".into(),
            items: vec![pb::PutItem {
                key: b"k".to_vec(),
                value: vec![],
                ttl: None,
                expected_version: None,
            }],
            idempotency_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions[0];
    let max = acknowledged.iter().map(|a| a.3).max().unwrap();
    assert!(next > max, "version {next} after restart must exceed {max}");
}
