//! A namespace served by a pattern someone else runs (`backend.mode:
//! remote`): the proxy attaches to it over TCP, and after the pattern is
//! restarted (empty, uninitialized) the next call initializes it again.

use std::process::{Child, Command, Stdio};

use prism_proto::keyvalue::v1 as pb;
use prism_tests::{ProxyProcess, binary, free_addr};

struct Pattern(Child);

impl Pattern {
    fn start(addr: std::net::SocketAddr) -> Self {
        Pattern(
            Command::new(binary("prism-pattern-memstore"))
                .args(["--listen", &addr.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting prism-pattern-memstore"),
        )
    }
}

impl Drop for Pattern {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn put(value: &str) -> pb::PutRequest {
    pb::PutRequest {
        namespace: "shared".into(),
        id: "id".into(),
        items: vec![pb::PutItem {
            key: b"k".to_vec(),
            value: value.as_bytes().to_vec(),
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    }
}

#[tokio::test]
async fn remote_pattern_is_attached_and_reinitialized_after_a_restart() {
    let pattern_addr = free_addr();
    let pattern = Pattern::start(pattern_addr);
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
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
        ns_dir.join("shared.yaml"),
        format!(
            "name: shared\ndal: keyvalue\nbackend:\n  kind: memstore\n  mode: remote\n  \
             pattern:\n    address: {pattern_addr}\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("prism.yaml").display().to_string();
    let proxy = ProxyProcess::start_with(&dir.path().join("data"), &["--config", &config]);
    let mut kv = proxy.kv_client().await;
    let v1 = kv.put(put("one")).await.unwrap().into_inner().versions[0];
    assert!(v1 > 0);

    // While the pattern is down, calls fail with UNAVAILABLE.
    drop(pattern);
    let err = kv.put(put("lost")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");

    // A fresh pattern (memstore: empty) is initialized again by the proxy.
    let _pattern = Pattern::start(pattern_addr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match kv.put(put("two")).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the restarted pattern never accepted a call: {e:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    let items = kv
        .get(pb::GetRequest {
            namespace: "shared".into(),
            id: "id".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].value, b"two");
}
