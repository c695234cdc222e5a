//! `prismctl` against a real proxy.

use prism_tests::{ProxyProcess, prismctl};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn put_get_scan_delete_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());
    let ns = ["--namespace", "demo-sqlite", "--id", "cli"];

    let out = prismctl(
        proxy.grpc,
        &[
            &["kv", "put"][..],
            &ns,
            &["--key", "greeting", "--value", "hello"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let out = prismctl(
        proxy.grpc,
        &[&["-o", "json", "kv", "get"][..], &ns].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json output");
    assert_eq!(json["items"][0]["key"], "greeting");
    assert_eq!(json["items"][0]["value"], "hello");
    let version = json["items"][0]["version"].as_u64().unwrap();
    assert!(version > 0);

    let out = prismctl(proxy.grpc, &["kv", "scan", "--namespace", "demo-sqlite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("greeting") && stdout(&out).contains("hello"),
        "{}",
        stdout(&out)
    );

    // A stale conditional write fails with the gRPC status and exit code 1.
    let out = prismctl(
        proxy.grpc,
        &[
            &["kv", "put"][..],
            &ns,
            &[
                "--key",
                "greeting",
                "--value",
                "x",
                "--expected-version",
                "0",
            ],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("FAILED_PRECONDITION"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("version {version}")),
        "{}",
        stderr(&out)
    );

    let out = prismctl(
        proxy.grpc,
        &[&["kv", "delete"][..], &ns, &["--key", "greeting"]].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains('1'), "{}", stdout(&out));

    let out = prismctl(
        proxy.grpc,
        &["kv", "get", "--namespace", "nope", "--id", "x"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("NOT_FOUND"), "{}", stderr(&out));

    let out = prismctl(proxy.grpc, &["health"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("SERVING"), "{}", stdout(&out));
}

#[test]
fn unreachable_proxy_is_a_clear_error() {
    let addr = prism_tests::free_addr();
    let out = prismctl(addr, &["health"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).is_empty());
}
