//! Namespaces that state their needs instead of a backend, served by a real
//! proxy whose `prism.yaml` lists the machine's PostgreSQL and Redis under
//! `backends:`; `prismctl namespace explain` shows each choice and why, and
//! data calls work on the chosen backends.

use prism_proto::keyvalue::v1 as pb;
use prism_tests::{ProxyProcess, free_addr, prismctl};

fn postgres_url_with_password() -> String {
    // The machine's PostgreSQL trusts local connections, so the password is
    // ignored; it is there to check that explain never shows it.
    std::env::var("PRISM_TEST_POSTGRES_URL_WITH_PASSWORD")
        .unwrap_or_else(|_| "postgres://postgres:hunter2-e2e@127.0.0.1:5432/test".to_string())
}

fn redis_url() -> String {
    std::env::var("PRISM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A need set, the backend it must get, and words the reasons for the
/// choice must contain.
struct Case {
    suffix: &'static str,
    needs: &'static str,
    backend: &'static str,
    reasons_mention: &'static [&'static str],
    /// (rejected backend, words its reasons must contain)
    rejected_because: (&'static str, &'static str),
}

const CASES: [Case; 4] = [
    Case {
        suffix: "cache",
        needs: "{durability: none, read_rps: 15000, p99_latency_ms: 5}",
        backend: "memstore",
        reasons_mention: &[
            "`durability: none`",
            "`read_rps: 15000`",
            "`p99_latency_ms: 5`",
        ],
        rejected_because: ("sqlite", "`read_rps: 15000`"),
    },
    Case {
        suffix: "ledger",
        needs: "{durability: durable, scope: local, data_size: 20GiB}",
        backend: "sqlite",
        reasons_mention: &["`durability: durable`", "`data_size: 20GiB`"],
        rejected_because: ("memstore", "`durability: durable`"),
    },
    Case {
        suffix: "orders",
        needs: "{scope: shared, write_rps: 200, retention_days: 30}",
        backend: "postgres",
        reasons_mention: &[
            "`scope: shared`",
            "`durability: durable` (default)",
            "`retention_days: 30`",
        ],
        rejected_because: ("redis", "`durability: durable` (default)"),
    },
    Case {
        suffix: "sessions",
        needs: "{scope: shared, durability: none, write_rps: 3000}",
        backend: "redis",
        reasons_mention: &["`scope: shared`", "`write_rps: 3000`"],
        rejected_because: ("postgres", "`write_rps: 3000`"),
    },
];

#[tokio::test]
async fn explain_gives_a_reasoned_choice_for_each_need_set() {
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let prefix = format!("e2e-needs-{}-{now}", std::process::id());
    let prism_yaml = dir.path().join("prism.yaml");
    std::fs::write(
        &prism_yaml,
        format!(
            "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n\
             backends:\n  postgres:\n    url: {}\n    schema: prism_needs_e2e\n    pool_size: 2\n\
             \x20 redis:\n    url: {}\n    key_prefix: prism-needs-e2e\n",
            free_addr(),
            free_addr(),
            postgres_url_with_password(),
            redis_url(),
        ),
    )
    .unwrap();
    for case in &CASES {
        let name = format!("{prefix}-{}", case.suffix);
        std::fs::write(
            ns_dir.join(format!("{name}.yaml")),
            format!("name: {name}\ndal: keyvalue\nneeds: {}\n", case.needs),
        )
        .unwrap();
    }
    let explicit = format!("{prefix}-explicit");
    let explicit_file = ns_dir.join(format!("{explicit}.yaml"));
    std::fs::write(
        &explicit_file,
        format!("name: {explicit}\ndal: keyvalue\nbackend:\n  kind: memstore\n"),
    )
    .unwrap();

    let config = prism_yaml.display().to_string();
    let proxy = ProxyProcess::start_with(&dir.path().join("data"), &["--config", &config]);

    for case in &CASES {
        let name = format!("{prefix}-{}", case.suffix);
        let out = prismctl(proxy.grpc, &["-o", "json", "namespace", "explain", &name]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json output");
        assert_eq!(json["namespace"], name.as_str());
        assert_eq!(json["backend"], case.backend, "{name}: {json:#}");
        assert_eq!(json["mode"], "embedded");
        assert_eq!(json["explicit"], false);
        let reasons: Vec<&str> = json["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        for word in case.reasons_mention {
            assert!(
                reasons
                    .iter()
                    .any(|r| r.contains(word) && r.contains(case.backend)),
                "{name}: no reason mentions {word}: {reasons:#?}"
            );
        }
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("first backend in the preference order")),
            "{reasons:#?}"
        );
        let (kind, because) = case.rejected_because;
        let rejected = json["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind)
            .unwrap_or_else(|| panic!("{name}: {kind} not rejected: {json:#}"));
        assert!(
            rejected["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().contains(because)),
            "{name}: {kind} not rejected for {because}: {rejected:#}"
        );
        // The password in the catalog's URL never leaves the proxy.
        assert!(!stdout(&out).contains("hunter2"), "{}", stdout(&out));
        if case.backend == "postgres" {
            assert_eq!(
                json["options"]["url"],
                "postgres://postgres:***@127.0.0.1:5432/test"
            );
            assert_eq!(json["options"]["schema"], "prism_needs_e2e");
        }
    }

    // The table form names the choice and the reasons.
    let orders = format!("{prefix}-orders");
    let out = prismctl(proxy.grpc, &["namespace", "explain", &orders]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("WHY postgres"), "{text}");
    assert!(text.contains("REJECTED"), "{text}");
    assert!(
        text.lines().any(|l| l
            .split_whitespace()
            .eq(["durability", "durable", "default"])),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    // An explicit backend says so and names its file.
    let out = prismctl(
        proxy.grpc,
        &["-o", "json", "namespace", "explain", &explicit],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["explicit"], true);
    assert_eq!(json["backend"], "memstore");
    let reason = json["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("configured explicitly")
            && reason.contains(&explicit_file.display().to_string()),
        "{reason}"
    );

    // An unknown namespace is NOT_FOUND with the known ones listed.
    let out = prismctl(proxy.grpc, &["namespace", "explain", "no-such-namespace"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("NOT_FOUND"), "{}", stderr(&out));
    assert!(stderr(&out).contains(&orders), "{}", stderr(&out));

    // Data calls work on every needs-selected namespace.
    let mut kv = proxy.kv_client().await;
    for case in &CASES {
        let name = format!("{prefix}-{}", case.suffix);
        let put = kv
            .put(pb::PutRequest {
                namespace: name.clone(),
                id: "record-1".into(),
                items: vec![pb::PutItem {
                    key: b"k".to_vec(),
                    value: case.backend.as_bytes().to_vec(),
                    ttl: None,
                    expected_version: Some(0),
                }],
                idempotency_token: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("put on {name} ({}): {e}", case.backend))
            .into_inner();
        let items = kv
            .get(pb::GetRequest {
                namespace: name.clone(),
                id: "record-1".into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("get on {name}: {e}"))
            .into_inner()
            .items;
        assert_eq!(items.len(), 1, "{name}");
        assert_eq!(items[0].value, case.backend.as_bytes(), "{name}");
        assert_eq!(items[0].version, put.versions[0], "{name}");
    }

    // `prismctl health` lists them with the chosen backends.
    let out = prismctl(proxy.grpc, &["health"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sessions = format!("{prefix}-sessions");
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with(&sessions) && l.contains("redis")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn conflicting_needs_stop_the_proxy_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    std::fs::write(
        dir.path().join("prism.yaml"),
        "namespaces:\n  dir: namespaces\n",
    )
    .unwrap();
    std::fs::write(
        ns_dir.join("hot.yaml"),
        "name: hot\ndal: keyvalue\nneeds: {durability: durable, write_rps: 10000}\n",
    )
    .unwrap();
    let config = dir.path().join("prism.yaml").display().to_string();
    let out = std::process::Command::new(prism_tests::binary("prism-proxy"))
        .args(["--config", &config, "--check"])
        .env_remove("PRISM_CONFIG")
        .output()
        .expect("running prism-proxy --check");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("hot.yaml"), "{err}");
    assert!(
        err.contains("`durability: durable` and `write_rps: 10000` conflict"),
        "{err}"
    );
}

/// `needs:` places TimeSeries and PubSub namespaces too, among their own
/// DAL's kinds, with the connection settings from `backends:`.
#[tokio::test]
async fn needs_place_timeseries_and_pubsub_namespaces_on_their_own_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    let prefix = format!("e2e-dal-needs-{}", std::process::id());
    let nats_url =
        std::env::var("PRISM_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let prism_yaml = dir.path().join("prism.yaml");
    std::fs::write(
        &prism_yaml,
        format!(
            "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n\
             backends:\n  postgres:\n    url: {}\n    schema: prism_dal_needs_e2e\n    pool_size: 2\n\
             \x20 nats:\n    url: {nats_url}\n",
            free_addr(),
            free_addr(),
            postgres_url_with_password(),
        ),
    )
    .unwrap();
    let cases = [
        ("ts-cache", "timeseries", "{durability: none}", "memstore"),
        ("ts-shared", "timeseries", "{scope: shared}", "postgres"),
        (
            "events",
            "pubsub",
            "{durability: restart, scope: shared}",
            "nats",
        ),
    ];
    for (suffix, dal, needs, _) in &cases {
        let name = format!("{prefix}-{suffix}");
        std::fs::write(
            ns_dir.join(format!("{name}.yaml")),
            format!("name: {name}\ndal: {dal}\nneeds: {needs}\n"),
        )
        .unwrap();
    }
    let config = prism_yaml.display().to_string();
    let proxy = ProxyProcess::start_with(&dir.path().join("data"), &["--config", &config]);
    for (suffix, _, _, backend) in &cases {
        let name = format!("{prefix}-{suffix}");
        let out = prismctl(proxy.grpc, &["-o", "json", "namespace", "explain", &name]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json output");
        assert_eq!(json["backend"], *backend, "{name}: {json:#}");
        assert_eq!(json["explicit"], false);
        let rejected: Vec<&str> = json["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        assert!(
            !rejected.contains(&"sqlite") || suffix.starts_with("ts"),
            "{name}: a PubSub namespace is placed among PubSub kinds only: {rejected:?}"
        );
    }
}
