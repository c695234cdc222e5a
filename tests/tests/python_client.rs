//! Clients in another language (Python, grpcio) against a real proxy: one
//! generated from `proto/` exercises the API, one speaks the older
//! `grpc.reflection.v1alpha` protocol with no local `.proto` files.

use std::process::Command;

use prism_tests::{ProxyProcess, repo_root};

/// Fails with what to install when `python3` cannot import `modules`.
fn require_python(modules: &str, packages: &str) {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .expect("python3 is needed for this test");
    assert!(
        probe.success(),
        "the Python packages {packages} are missing; \
         run `python3 -m pip install {packages}` (tooling/test does)"
    );
}

/// Runs `tests/python/<script>` against a fresh proxy; returns its stderr
/// (where unittest reports).
fn run_python(script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path());
    let output = Command::new("python3")
        .arg(repo_root().join("tests/python").join(script))
        .env("PRISM_GRPC_ADDR", proxy.grpc.to_string())
        .output()
        .expect("running the Python client");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{script} failed:\n{stderr}\nproxy log:\n{}",
        proxy.log()
    );
    stderr
}

#[test]
fn python_grpc_client_against_the_proxy() {
    require_python("grpc, grpc_tools", "grpcio grpcio-tools");
    let stderr = run_python("kv_client_test.py");
    assert!(stderr.contains("Ran 6 tests"), "{stderr}");
}

#[test]
fn python_reflection_v1alpha_client_lists_and_describes_the_services() {
    require_python(
        "grpc, grpc_reflection.v1alpha.reflection_pb2_grpc",
        "grpcio grpcio-reflection",
    );
    let stderr = run_python("reflection_v1alpha_test.py");
    assert!(stderr.contains("Ran 3 tests"), "{stderr}");
}
