//! A client generated from `proto/` in another language (Python, grpcio)
//! exercises the API against a real proxy.

use std::process::Command;

use prism_tests::{ProxyProcess, repo_root};

#[test]
fn python_grpc_client_against_the_proxy() {
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .expect("python3 is needed for this test");
    assert!(
        probe.success(),
        "the Python packages grpcio and grpcio-tools are missing; \
         run `python3 -m pip install grpcio grpcio-tools` (tooling/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());
    let output = Command::new("python3")
        .arg(repo_root().join("tests/python/kv_client_test.py"))
        .env("PRISM_GRPC_ADDR", proxy.grpc.to_string())
        .output()
        .expect("running the Python client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python client failed:\n{stderr}\nproxy log:\n{}",
        proxy.log()
    );
    assert!(stderr.contains("Ran 6 tests"), "{stderr}");
}
