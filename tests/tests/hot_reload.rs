//! Hot reload of namespaces in a real proxy under steady load: twenty
//! consecutive changes — through the admin API, by editing the namespace
//! file, and by SIGHUP after an edit — fail no request; a broken change is
//! rejected (API: INVALID_ARGUMENT; file: reported by Reload) while the old
//! version keeps serving; every change is in the audit log with its
//! version.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prism_proto::admin::v1 as admin;
use prism_proto::admin::v1::admin_service_client::AdminServiceClient;
use prism_proto::keyvalue::v1 as pb;
use prism_tests::ProxyProcess;
use tonic::Code;
use tonic::transport::Channel;

const LOADERS: usize = 4;

fn namespace_yaml(change: usize) -> String {
    format!(
        "name: load\ndal: keyvalue\ndescription: change {change}\nbackend:\n  kind: memstore\n\
         limits:\n  max_value_bytes: {}\n",
        4096 + change
    )
}

/// Waits until the proxy serves `description` for `load`.
async fn wait_for_description(admin: &mut AdminServiceClient<Channel>, description: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ns = admin
            .get_namespace(admin::GetNamespaceRequest {
                name: "load".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if ns.description == description {
            return ns.version;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy still serves {:?}, not {description:?}",
            ns.description
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes, then reads back, unique keys until `stop`; counts successes
/// and failures (an error, or a written key not read back).
async fn load(
    proxy_url: String,
    worker: usize,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut kv = pb::key_value_service_client::KeyValueServiceClient::connect(proxy_url)
        .await
        .unwrap();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let id = format!("w{worker}");
        let key = format!("k{i}").into_bytes();
        let put = kv
            .put(pb::PutRequest {
                namespace: "load".into(),
                id: id.clone(),
                items: vec![pb::PutItem {
                    key: key.clone(),
                    value: b"value".to_vec(),
                    ttl: None,
                    expected_version: None,
                }],
                idempotency_token: String::new(),
            })
            .await;
        let got = match put {
            Ok(_) => {
                kv.get(pb::GetRequest {
                    namespace: "load".into(),
                    id,
                    selection: Some(pb::KeySelection {
                        selection: Some(pb::key_selection::Selection::Keys(pb::KeyList {
                            keys: vec![key],
                        })),
                    }),
                    ..Default::default()
                })
                .await
            }
            Err(e) => Err(e),
        };
        match got {
            Ok(r) if r.get_ref().items.len() == 1 => {
                ok.fetch_add(2, Ordering::Relaxed);
            }
            Ok(r) => {
                failed.fetch_add(1, Ordering::Relaxed);
                failures
                    .lock()
                    .unwrap()
                    .push(format!("read back {} items", r.get_ref().items.len()));
            }
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                failures.lock().unwrap().push(format!("{e}"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_changes_under_load_fail_no_request_and_a_broken_one_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    let file = ns_dir.join("load.yaml");
    std::fs::write(&file, namespace_yaml(0)).unwrap();
    let config = dir.path().join("prism.yaml");
    std::fs::write(&config, "namespaces:\n  dir: namespaces\n").unwrap();
    let proxy = ProxyProcess::start_with(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    let mut admin = AdminServiceClient::connect(proxy.grpc_url()).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let loaders: Vec<_> = (0..LOADERS)
        .map(|w| {
            tokio::spawn(load(
                proxy.grpc_url(),
                w,
                stop.clone(),
                ok.clone(),
                failed.clone(),
                failures.clone(),
            ))
        })
        .collect();
    // Load is running before the first change.
    let deadline = Instant::now() + Duration::from_secs(15);
    while ok.load(Ordering::Relaxed) < 50 {
        assert!(Instant::now() < deadline, "no load got through");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut versions = vec![wait_for_description(&mut admin, "change 0").await];
    for change in 1..=20 {
        let yaml = namespace_yaml(change);
        match change % 3 {
            // Through the admin API.
            0 => {
                let r = admin
                    .apply_namespace(admin::ApplyNamespaceRequest {
                        yaml,
                        dry_run: false,
                        expected_version: Some(*versions.last().unwrap()),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(r.changed && !r.created);
                assert!(
                    r.diff.contains(&format!("+description: change {change}")),
                    "{}",
                    r.diff
                );
            }
            // The file edited; the proxy's watcher notices.
            1 => std::fs::write(&file, yaml).unwrap(),
            // The file edited, then SIGHUP.
            _ => {
                std::fs::write(&file, yaml).unwrap();
                let status = std::process::Command::new("kill")
                    .args(["-HUP", &proxy.child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(status.success());
            }
        }
        let version = wait_for_description(&mut admin, &format!("change {change}")).await;
        assert!(version > *versions.last().unwrap(), "versions grow");
        versions.push(version);

        if change == 10 {
            // A broken change through the API: rejected, nothing changes.
            let bad = "name: load\ndal: keyvalue\nbackend:\n  kind: memstore\nlimits:\n  max_key_bytes: 0\n";
            let err = admin
                .apply_namespace(admin::ApplyNamespaceRequest {
                    yaml: bad.into(),
                    dry_run: false,
                    expected_version: None,
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(
                err.message().contains("limits.max_key_bytes"),
                "{}",
                err.message()
            );
            // A broken file: Reload reports it; the old version serves.
            std::fs::write(&file, bad).unwrap();
            let report = admin
                .reload(admin::ReloadRequest {})
                .await
                .unwrap()
                .into_inner();
            assert_eq!(report.rejected.len(), 1, "{report:?}");
            assert_eq!(report.rejected[0].field, "limits.max_key_bytes");
            assert!(report.rejected[0].source.ends_with("load.yaml"));
            assert_eq!(
                wait_for_description(&mut admin, "change 10").await,
                version,
                "the previous version keeps serving"
            );
            std::fs::write(&file, namespace_yaml(10)).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.await.unwrap();
    }
    let ok = ok.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    eprintln!("requests: {ok} ok, {failed} failed across 20 changes");
    assert_eq!(failed, 0, "failures: {:?}", failures.lock().unwrap());
    assert!(ok > 200, "only {ok} requests ran");

    // Every change is in the audit log (the file sink) with its version.
    let text =
        std::fs::read_to_string(dir.path().join("data").join("audit").join("audit.jsonl")).unwrap();
    let mut recorded = Vec::new();
    let mut rejected = 0;
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        if r["dal"] != "admin" || r["namespace"] != "load" {
            continue;
        }
        if r["status"] == "OK" {
            recorded.push(r["config_version"].as_u64().unwrap());
        } else {
            rejected += 1;
        }
    }
    for v in &versions[1..] {
        assert!(
            recorded.contains(v),
            "version {v} not audited: {recorded:?}"
        );
    }
    assert!(rejected >= 2, "both rejected changes are recorded");
}
