//! Helpers for Prism's end-to-end tests: find the built binaries, pick free
//! ports, start a real `prism-proxy` process and wait until it serves, talk
//! to its admin listener, and stop it gently (SIGTERM) or hard (SIGKILL).

#![forbid(unsafe_code)]

pub mod oidc;
pub mod pki;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use tonic::transport::Channel;

/// How long a test waits for a condition before failing.
pub const WAIT: Duration = Duration::from_secs(60);

/// The path of a workspace binary built next to the running test
/// (`target/<profile>/<name>`). `cargo test --workspace` builds them.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` (the test command does)",
        path.display()
    );
    path
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    listener.local_addr().expect("local address")
}

/// Polls `condition` until it holds or [`WAIT`] passes.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal HTTP/1.0 GET; returns (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, &[("Host", &addr.to_string())], "")
}

/// One HTTP/1.0 request with exactly `headers` (no `Host` unless given)
/// and `body` (sent with its `Content-Length`); returns (status code,
/// body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A `prism-proxy` process on free ports.
pub struct ProxyProcess {
    pub child: Child,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl ProxyProcess {
    /// Starts the proxy with the embedded default namespaces, keeping data
    /// in `data_dir`, and waits until it is ready.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// Starts the proxy with extra arguments and waits until it is ready.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// Like [`ProxyProcess::start_with`], with extra environment variables
    /// (which override the defaults, e.g. `RUST_LOG`).
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let grpc = free_addr();
        let admin = free_addr();
        let log = data_dir.join(format!("proxy-{}.log", grpc.port()));
        std::fs::create_dir_all(data_dir).expect("creating the data directory");
        let log_file = std::fs::File::create(&log).expect("creating the proxy log");
        let child = Command::new(binary("prism-proxy"))
            .args(["--grpc-addr", &grpc.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--data-dir", &data_dir.display().to_string()])
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .env_remove("PRISM_CONFIG")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("starting prism-proxy");
        let mut proxy = ProxyProcess {
            child,
            grpc,
            admin,
            data_dir: data_dir.to_path_buf(),
            log,
        };
        proxy.wait_ready();
        proxy
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prism-proxy exited early with {status}:\n{}", self.log());
            }
            if matches!(http_get(self.admin, "/readyz"), Ok((200, _))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prism-proxy not ready in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the proxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://host:port` of the gRPC listener.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// A KeyValue client connected to the proxy.
    pub async fn kv_client(&self) -> KeyValueServiceClient<Channel> {
        KeyValueServiceClient::connect(self.grpc_url())
            .await
            .expect("connecting to the proxy")
    }

    /// SIGKILL: the process dies at once, without any cleanup.
    pub fn kill9(mut self) {
        self.child.kill().expect("sending SIGKILL");
        self.child.wait().expect("reaping the proxy");
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the proxy") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "proxy did not exit after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `prismctl` against `addr` with `args`, without the caller's
/// `~/.prism/` (config file and cached token) or `PRISM_*` variables.
pub fn prismctl(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(binary("prismctl"))
        .args(["--addr", &format!("http://{addr}")])
        .args(args)
        .env(
            "PRISM_CONFIG_DIR",
            std::env::temp_dir().join("prism-tests-no-config-dir"),
        )
        .env_remove("PRISM_TOKEN")
        .env_remove("PRISM_CA_FILE")
        .env_remove("PRISM_CERT_FILE")
        .env_remove("PRISM_KEY_FILE")
        .env_remove("PRISM_TLS_SERVER_NAME")
        .output()
        .expect("running prismctl")
}

/// The stdout of a `prismctl` run that must succeed (the failure shows
/// both streams).
pub fn succeeded(out: Output) -> String {
    assert!(
        out.status.success(),
        "prismctl failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("prismctl prints UTF-8")
}

/// A proxy's configuration in a temporary directory: `prism.yaml` with
/// free listener ports, and a `namespaces/` directory holding one
/// namespace file.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
    /// The path of `prism.yaml`.
    pub config: String,
    /// The namespace's name (unique to this run).
    pub name: String,
    /// The namespace's file.
    pub file: PathBuf,
}

impl ConfigDir {
    /// A namespace named `<prefix>-<pid>-<ms>` whose file says `body`
    /// after its `name:` line.
    pub fn with_namespace(prefix: &str, body: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ns_dir = dir.path().join("namespaces");
        std::fs::create_dir(&ns_dir).expect("creating namespaces/");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_millis();
        let name = format!("{prefix}-{}-{now}", std::process::id());
        std::fs::write(
            dir.path().join("prism.yaml"),
            format!(
                "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n",
                free_addr(),
                free_addr()
            ),
        )
        .expect("writing prism.yaml");
        let file = ns_dir.join(format!("{name}.yaml"));
        std::fs::write(&file, format!("name: {name}\n{body}")).expect("writing the namespace");
        let config = dir.path().join("prism.yaml").display().to_string();
        ConfigDir {
            dir,
            config,
            name,
            file,
        }
    }

    /// Starts a proxy on this configuration (data in `<dir>/data`).
    pub fn start(&self) -> ProxyProcess {
        ProxyProcess::start_with(&self.dir.path().join("data"), &["--config", &self.config])
    }
}

impl ProxyProcess {
    /// `prismctl migrate ARGS...` against this proxy; must succeed.
    pub fn migrate(&self, args: &[&str]) -> String {
        let mut all = vec!["migrate"];
        all.extend_from_slice(args);
        succeeded(prismctl(self.grpc, &all))
    }

    /// `prismctl migrate status NAME -o json`.
    pub fn migration_status(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.migrate(&["status", name, "-o", "json"]))
            .expect("migrate status prints JSON")
    }
}
