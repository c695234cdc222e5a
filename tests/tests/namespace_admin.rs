//! Who may change what, through a real `prism-proxy` with JWT auth: a
//! namespace admin changes only its namespace's data-plane settings; where
//! data lives on disk, which programs run and which servers the proxy
//! connects to stay the operator's (ADR-017). Applied YAML is bounded in
//! size and depth and is parsed only for callers who may apply something.

use std::path::{Path, PathBuf};

use prism_proto::admin::v1 as apb;
use prism_proto::admin::v1::admin_service_client::AdminServiceClient;
use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_tests::ProxyProcess;
use prism_tests::oidc::TestIssuer;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A proxy with namespaces `alpha` (SQLite, administered by alice) and
/// `beta` (SQLite, bob's data), operator `root`, and one allowed pattern
/// binary (`allowed.sh`, which is never started here).
struct Fleet {
    dir: PathBuf,
    issuer: TestIssuer,
    proxy: ProxyProcess,
}

const ALPHA: &str = "name: alpha\ndal: keyvalue\nbackend:\n  kind: sqlite\n  options:\n    \
                     path: alpha.db\npolicy:\n  read: [\"user:alice\"]\n  write: \
                     [\"user:alice\"]\n  admin: [\"user:alice\"]\n";

fn start() -> Fleet {
    let dir = tempfile::tempdir().unwrap().keep();
    let issuer = TestIssuer::start();
    let ns = dir.join("ns");
    std::fs::create_dir_all(&ns).unwrap();
    std::fs::write(ns.join("alpha.yaml"), ALPHA).unwrap();
    std::fs::write(
        ns.join("beta.yaml"),
        "name: beta\ndal: keyvalue\nbackend:\n  kind: sqlite\npolicy:\n  read: \
         [\"user:bob\"]\n  write: [\"user:bob\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("prism.yaml"),
        format!(
            "namespaces:\n  dir: ns\npatterns:\n  allowed_binaries: [allowed.sh]\n{}",
            issuer.auth_section(&["user:root"])
        ),
    )
    .unwrap();
    let proxy = ProxyProcess::start_with(
        &dir.join("data"),
        &["--config", &dir.join("prism.yaml").display().to_string()],
    );
    Fleet { dir, issuer, proxy }
}

impl Fleet {
    fn token(&self, sub: &str) -> String {
        format!("Bearer {}", self.issuer.sign(&self.issuer.claims(sub)))
    }

    fn request<T>(&self, sub: &str, message: T) -> Request<T> {
        let mut r = Request::new(message);
        r.metadata_mut()
            .insert("authorization", self.token(sub).parse().unwrap());
        r
    }

    async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::connect(self.proxy.grpc_url())
            .await
            .unwrap()
    }

    async fn apply(
        &self,
        sub: &str,
        yaml: &str,
    ) -> Result<apb::ApplyNamespaceResponse, tonic::Status> {
        let req = apb::ApplyNamespaceRequest {
            yaml: yaml.to_string(),
            ..Default::default()
        };
        self.admin()
            .await
            .apply_namespace(self.request(sub, req))
            .await
            .map(|r| r.into_inner())
    }

    async fn put(&self, sub: &str, ns: &str, key: &str, value: &str) -> Result<(), tonic::Status> {
        let mut kv = KeyValueServiceClient::connect(self.proxy.grpc_url())
            .await
            .unwrap();
        let req = pb::PutRequest {
            namespace: ns.into(),
            id: "record".into(),
            items: vec![pb::PutItem {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        };
        kv.put(self.request(sub, req)).await.map(|_| ())
    }

    async fn keys(&self, sub: &str, ns: &str) -> Vec<String> {
        let mut kv = KeyValueServiceClient::connect(self.proxy.grpc_url())
            .await
            .unwrap();
        let req = pb::GetRequest {
            namespace: ns.into(),
            id: "record".into(),
            ..Default::default()
        };
        let items = kv
            .get(self.request(sub, req))
            .await
            .unwrap()
            .into_inner()
            .items;
        items
            .into_iter()
            .map(|i| String::from_utf8(i.key).unwrap())
            .collect()
    }

    /// A script that leaves `marker` behind when run.
    fn script(&self, name: &str, marker: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

/// ALPHA with its `backend` section replaced.
fn alpha_with_backend(backend: &str) -> String {
    let policy = ALPHA.split("policy:").nth(1).unwrap();
    format!("name: alpha\ndal: keyvalue\n{backend}policy:{policy}")
}

#[track_caller]
fn denied(result: Result<apb::ApplyNamespaceResponse, tonic::Status>, field: &str) {
    let status = result.expect_err("the apply must be refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(&format!("`{field}`")),
        "names {field}: {}",
        status.message()
    );
    assert!(
        status.message().contains("operator"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_namespace_admin_cannot_reach_outside_its_namespace() {
    let f = start();
    f.put("bob", "beta", "secret", "bobs-data").await.unwrap();
    f.put("alice", "alpha", "mine", "alices-data")
        .await
        .unwrap();

    // Another namespace's database file.
    let other_file =
        alpha_with_backend("backend:\n  kind: sqlite\n  options:\n    path: beta.db\n");
    denied(f.apply("alice", &other_file).await, "backend.options.path");

    // A program of alice's choosing, in process mode: refused before it runs.
    let marker = f.dir.join("ran-by-alice");
    let script = f.script("evil.sh", &marker);
    let process = alpha_with_backend(&format!(
        "backend:\n  kind: sqlite\n  mode: process\n  options:\n    path: alpha.db\n  \
         pattern:\n    binary: {}\n",
        script.display()
    ));
    denied(f.apply("alice", &process).await, "backend.mode");

    // An arbitrary location: nothing is created there.
    let outside = f.dir.join("elsewhere");
    let anywhere = alpha_with_backend(&format!(
        "backend:\n  kind: sqlite\n  options:\n    path: {}/deep/x.db\n",
        outside.display()
    ));
    denied(f.apply("alice", &anywhere).await, "backend.options.path");

    // Another server, and a schema file anywhere on disk.
    let server = alpha_with_backend(
        "backend:\n  kind: redis\n  options:\n    url: redis://127.0.0.1:6379\n",
    );
    denied(f.apply("alice", &server).await, "backend.options.url");
    let schema = format!("{ALPHA}schema:\n  proto: /etc/hostname\n  message: x.Y\n");
    denied(f.apply("alice", &schema).await, "schema.proto");

    assert!(
        !marker.exists(),
        "the proxy ran a namespace admin's program"
    );
    assert!(!outside.exists(), "the proxy created {}", outside.display());
    // Nothing changed: both namespaces serve their own data.
    assert_eq!(f.keys("bob", "beta").await, ["secret"]);
    assert_eq!(f.keys("alice", "alpha").await, ["mine"]);

    // Data-plane settings stay alice's to change.
    let limits = format!("{ALPHA}limits:\n  max_value_bytes: 4096\n");
    let applied = f.apply("alice", &limits).await.unwrap();
    assert!(applied.changed && applied.version > 0, "{applied:?}");
    let memstore = alpha_with_backend("backend:\n  kind: memstore\n");
    assert!(f.apply("alice", &memstore).await.is_ok());
}

#[tokio::test]
async fn an_operator_is_bounded_too_files_and_programs() {
    let f = start();
    f.put("bob", "beta", "secret", "bobs-data").await.unwrap();
    // One namespace's file is its own, even for an operator.
    let other_file =
        alpha_with_backend("backend:\n  kind: sqlite\n  options:\n    path: beta.db\n");
    let status = f.apply("root", &other_file).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("namespace 'beta' keeps"),
        "{}",
        status.message()
    );
    // Paths resolve inside the data directory only.
    let outside = f.dir.join("abs");
    let absolute = alpha_with_backend(&format!(
        "backend:\n  kind: sqlite\n  options:\n    path: {}/x.db\n",
        outside.display()
    ));
    let status = f.apply("root", &absolute).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("inside the data directory"),
        "{}",
        status.message()
    );
    assert!(!outside.exists());
    // A program the operator has not allowed does not run.
    let marker = f.dir.join("ran-by-root");
    let script = f.script("unlisted.sh", &marker);
    let process = alpha_with_backend(&format!(
        "backend:\n  kind: sqlite\n  mode: process\n  pattern:\n    binary: {}\n",
        script.display()
    ));
    let status = f.apply("root", &process).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("patterns.allowed_binaries"),
        "{}",
        status.message()
    );
    assert!(!marker.exists(), "an unlisted program ran");
    assert_eq!(f.keys("bob", "beta").await, ["secret"]);
}

#[tokio::test]
async fn deep_yaml_is_refused_and_parsed_only_for_admins() {
    let f = start();
    // 160 KB nested 20 000 deep: the shape that stalled the proxy.
    let deep = format!(
        "name: alpha\ndal: keyvalue\ndescription: {}{}\n",
        "[".repeat(80_000),
        "]".repeat(80_000)
    );
    // A caller who administers nothing is refused before any parsing.
    let status = f.apply("mallory", &deep).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("administers no namespace"),
        "{}",
        status.message()
    );
    // An admin learns the limit.
    let status = f.apply("alice", &deep).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("limit of 32 levels"),
        "{}",
        status.message()
    );
    let big = format!("{ALPHA}description: {}\n", "x".repeat(300 << 10));
    let status = f.apply("alice", &big).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("262144 bytes"),
        "{}",
        status.message()
    );
    // Several at once leave data calls served.
    let applies: Vec<_> = (0..4)
        .map(|_| {
            let deep = deep.clone();
            let req = f.request(
                "alice",
                apb::ApplyNamespaceRequest {
                    yaml: deep,
                    ..Default::default()
                },
            );
            let url = f.proxy.grpc_url();
            tokio::spawn(async move {
                let mut admin = AdminServiceClient::connect(url).await.unwrap();
                admin.apply_namespace(req).await.unwrap_err().code()
            })
        })
        .collect();
    f.put("alice", "alpha", "during", "x").await.unwrap();
    for a in applies {
        assert_eq!(a.await.unwrap(), Code::InvalidArgument);
    }
    assert_eq!(f.keys("alice", "alpha").await, ["during"]);
}

#[tokio::test]
async fn a_namespace_admin_cannot_migrate_to_a_server_of_its_choosing() {
    let f = start();
    // A server that would notice a connection attempt.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let f = &f;
    let migrate = |to: String| {
        let req = f.request(
            "alice",
            apb::MigrateRequest {
                name: "alpha".into(),
                action: "start".into(),
                to,
                ..Default::default()
            },
        );
        async move { f.admin().await.migrate(req).await }
    };
    for (to, field) in [
        (
            format!("{{kind: postgres, options: {{url: 'postgres://u@{addr}/x'}}}}"),
            "migration.to.options.url",
        ),
        (
            format!("{{kind: redis, mode: remote, pattern: {{address: '{addr}'}}}}"),
            "migration.to.mode",
        ),
        (
            "{kind: nosuch, mode: process}".to_string(),
            "migration.to.mode",
        ),
        (
            "{kind: memstore, mode: process}".to_string(),
            "migration.to.mode",
        ),
    ] {
        let status = migrate(to.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{to}: {status:?}");
        assert!(
            status.message().contains(&format!("`{field}`")),
            "{to}: {}",
            status.message()
        );
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the proxy connected to a server a namespace admin named"
    );
    // The target text is bounded like any YAML.
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let status = migrate(deep).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("limit of 32 levels"),
        "{}",
        status.message()
    );
    // A private default placement is the namespace admin's to choose.
    let req = f.request(
        "alice",
        apb::MigrateRequest {
            name: "alpha".into(),
            action: "start".into(),
            to: "{kind: memstore}".into(),
            force: true,
            ..Default::default()
        },
    );
    let ok = f.admin().await.migrate(req).await.unwrap();
    assert_eq!(ok.into_inner().phase, "dual-write");
}
