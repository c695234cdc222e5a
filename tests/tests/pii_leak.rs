//! PII never reaches logs or audit records. Known personal data is seeded
//! into namespaces typed by an annotated schema, on every kind of path the
//! KeyValue DAL has (embedded memstore, embedded Redis, SQLite as a pattern
//! process; protobuf and JSON values), and driven through every RPC,
//! including the failing ones (a wrong-typed value, a failed condition, a
//! replayed idempotency token). The proxy runs with debug logging. Then the
//! whole log and every audit file are searched for the seeded values, and
//! every response a caller without `pii:read` received is checked too.

use prism_proto::keyvalue::v1 as pb;
use prism_tests::{ProxyProcess, free_addr};
use tonic::Code;

const PROTO: &str = r#"
syntax = "proto3";
package acme.users.v1;
import "prism/options/v1/options.proto";

message Address {
  string street = 1 [(prism.options.v1.pii) = PII_KIND_ADDRESS];
  string country = 2;
}

message UserProfile {
  string user_id = 1 [(prism.options.v1.index) = INDEX_KIND_PRIMARY];
  string email = 2 [(prism.options.v1.pii) = PII_KIND_EMAIL];
  string full_name = 3 [(prism.options.v1.pii) = PII_KIND_NAME];
  repeated string phones = 4 [(prism.options.v1.pii) = PII_KIND_PHONE];
  string ssn = 5 [(prism.options.v1.pii) = PII_KIND_SSN];
  Address home = 6;
  string card = 7 [(prism.options.v1.pii) = PII_KIND_CREDIT_CARD];
  string ip = 8 [(prism.options.v1.pii) = PII_KIND_IP_ADDRESS];
  string born = 9 [(prism.options.v1.pii) = PII_KIND_DATE_OF_BIRTH];
  string plan = 10;
}
"#;

/// The seeded personal data: unique to this run so a match cannot come
/// from anywhere else.
struct Seeds {
    email: String,
    name: String,
    phone: String,
    ssn: String,
    street: String,
    card: String,
    ip: String,
    born: String,
}

impl Seeds {
    fn new() -> Seeds {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            % 1_000_000;
        Seeds {
            email: format!("quinta.leak{n}@example.org"),
            name: format!("Quinta Leakwell{n}"),
            phone: format!("+31 6 {n:06} 17"),
            ssn: format!("{:03}-{:02}-{:04}", 100 + n % 800, n % 97, 1000 + n % 9000),
            street: format!("{n} Seedling Lane"),
            card: format!("4000 {:04} {:04} 4242", n % 10_000, (n / 7) % 10_000),
            ip: format!("198.51.{}.{}", n % 250, (n / 250) % 250),
            born: format!("19{:02}-0{}-1{}", 50 + n % 49, 1 + n % 9, n % 10),
        }
    }

    /// Every value, and the distinctive parts a partial leak would show.
    fn needles(&self) -> Vec<String> {
        let mut out = vec![
            self.email.clone(),
            self.email.split('@').next().unwrap().to_string(),
            self.name.clone(),
            self.name.split(' ').nth(1).unwrap().to_string(),
            self.phone.clone(),
            self.ssn.clone(),
            self.street.clone(),
            self.card.clone(),
            self.ip.clone(),
            self.born.clone(),
        ];
        // The card without spaces, in case something normalised it.
        out.push(self.card.replace(' ', ""));
        out
    }

    fn json(&self, user: &str) -> String {
        serde_json::json!({
            "userId": user,
            "email": self.email,
            "fullName": self.name,
            "phones": [self.phone],
            "ssn": self.ssn,
            "home": {"street": self.street, "country": "NL"},
            "card": self.card,
            "ip": self.ip,
            "born": self.born,
            "plan": "gold",
        })
        .to_string()
    }
}

/// Protobuf encoding of the seeded profile, written by hand (field number,
/// wire type 2, length, bytes) so the test depends on nothing but the
/// schema text above.
fn protobuf(seeds: &Seeds, user: &str) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        let mut len = bytes.len();
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(bytes);
    }
    let mut home = Vec::new();
    field(&mut home, 1, seeds.street.as_bytes());
    field(&mut home, 2, b"NL");
    let mut out = Vec::new();
    field(&mut out, 1, user.as_bytes());
    field(&mut out, 2, seeds.email.as_bytes());
    field(&mut out, 3, seeds.name.as_bytes());
    field(&mut out, 4, seeds.phone.as_bytes());
    field(&mut out, 5, seeds.ssn.as_bytes());
    field(&mut out, 6, &home);
    field(&mut out, 7, seeds.card.as_bytes());
    field(&mut out, 8, seeds.ip.as_bytes());
    field(&mut out, 9, seeds.born.as_bytes());
    field(&mut out, 10, b"gold");
    out
}

fn item(key: &str, value: Vec<u8>) -> pb::PutItem {
    pb::PutItem {
        key: key.as_bytes().to_vec(),
        value,
        ttl: None,
        expected_version: None,
    }
}

/// Drives every RPC against `namespace`; returns every response body the
/// caller saw (debug-printed) and every error message.
async fn traffic(proxy: &ProxyProcess, namespace: &str, good: Vec<u8>, bad: Vec<u8>) -> String {
    let mut kv = proxy.kv_client().await;
    let mut seen = String::new();
    let put = |items: Vec<pb::PutItem>, token: &str| pb::PutRequest {
        namespace: namespace.into(),
        id: "people".into(),
        items,
        idempotency_token: token.into(),
    };
    // Put, then the same Put replayed with its idempotency token.
    for _ in 0..2 {
        let r = kv
            .put(put(vec![item("u-1", good.clone())], "seed-1"))
            .await
            .unwrap();
        seen.push_str(&format!("{r:?}"));
    }
    // A wrong-typed value carrying PII: refused, and the error must not echo it.
    let err = kv
        .put(put(vec![item("u-bad", bad.clone())], ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{namespace}: {err:?}");
    seen.push_str(err.message());
    // A failed condition.
    let mut conditional = item("u-1", good.clone());
    conditional.expected_version = Some(999_999);
    let err = kv.put(put(vec![conditional], "")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{namespace}: {err:?}");
    seen.push_str(err.message());
    // Reads.
    let got = kv
        .get(pb::GetRequest {
            namespace: namespace.into(),
            id: "people".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.items.len(), 1, "{namespace}");
    assert_ne!(
        got.items[0].value, good,
        "{namespace}: the value came back masked"
    );
    seen.push_str(&String::from_utf8_lossy(&got.items[0].value));
    let scanned = kv
        .scan(pb::ScanRequest {
            namespace: namespace.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for record in &scanned.records {
        for i in &record.items {
            seen.push_str(&String::from_utf8_lossy(&i.value));
        }
    }
    // Mutate: a put and a delete in one transaction, then one refused.
    let mutation = |key: &str, value: Vec<u8>| pb::Mutation {
        id: "people".into(),
        op: Some(pb::mutation::Op::Put(item(key, value))),
    };
    let r = kv
        .mutate(pb::MutateRequest {
            namespace: namespace.into(),
            mutations: vec![
                mutation("u-2", good.clone()),
                pb::Mutation {
                    id: "people".into(),
                    op: Some(pb::mutation::Op::Delete(pb::KeySelection {
                        selection: Some(pb::key_selection::Selection::Keys(pb::KeyList {
                            // Another key: one call names each key once.
                            keys: vec![b"u-1".to_vec()],
                        })),
                    })),
                },
            ],
            idempotency_token: String::new(),
        })
        .await
        .unwrap();
    seen.push_str(&format!("{r:?}"));
    let err = kv
        .mutate(pb::MutateRequest {
            namespace: namespace.into(),
            mutations: vec![mutation("u-3", good.clone()), mutation("u-4", bad)],
            idempotency_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{namespace}: {err:?}");
    seen.push_str(err.message());
    // Delete everything this test wrote.
    let r = kv
        .delete(pb::DeleteRequest {
            namespace: namespace.into(),
            id: "people".into(),
            selection: None,
        })
        .await
        .unwrap();
    seen.push_str(&format!("{r:?}"));
    seen
}

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_pii_never_reaches_logs_audit_or_masked_responses() {
    let seeds = Seeds::new();
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    std::fs::write(ns_dir.join("profile.proto"), PROTO).unwrap();
    std::fs::write(
        dir.path().join("prism.yaml"),
        format!(
            "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n",
            free_addr(),
            free_addr()
        ),
    )
    .unwrap();
    let redis_url = std::env::var("PRISM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_string());
    let prefix = format!("prism-test-pii-{}", std::process::id());
    let schema = |encoding: &str| {
        format!(
            "schema:\n  proto: profile.proto\n  message: acme.users.v1.UserProfile\n  \
             encoding: {encoding}\npolicy:\n  read: [\"*\"]\n  write: [\"*\"]\n"
        )
    };
    let namespaces = [
        ("pii-mem", "  kind: memstore\n".to_string(), "protobuf"),
        (
            "pii-redis",
            format!("  kind: redis\n  options:\n    url: {redis_url}\n    key_prefix: {prefix}\n"),
            "protobuf",
        ),
        (
            "pii-sqlite",
            "  kind: sqlite\n  mode: process\n  options:\n    path: pii.db\n".to_string(),
            "json",
        ),
    ];
    for (name, backend, encoding) in &namespaces {
        std::fs::write(
            ns_dir.join(format!("{name}.yaml")),
            format!(
                "name: {name}\ndal: keyvalue\nbackend:\n{backend}{}",
                schema(encoding)
            ),
        )
        .unwrap();
    }
    let config = dir.path().join("prism.yaml").display().to_string();
    let data = dir.path().join("data");
    let proxy = ProxyProcess::start_with_env(
        &data,
        &["--config", &config],
        &[("RUST_LOG", "debug,prism_proxy=trace,pattern_core=trace")],
    );

    let mut seen = String::new();
    for (name, _, encoding) in &namespaces {
        let (good, bad) = if *encoding == "json" {
            (
                seeds.json("u-1").into_bytes(),
                // The email where a nested message belongs.
                format!(r#"{{"home": "{}", "ssn": "{}"}}"#, seeds.email, seeds.ssn).into_bytes(),
            )
        } else {
            let mut bad = protobuf(&seeds, "u-1");
            // A field number the schema does not declare, carrying the SSN.
            bad.extend_from_slice(&[0xaa, 0x01, seeds.ssn.len() as u8]);
            bad.extend_from_slice(seeds.ssn.as_bytes());
            (protobuf(&seeds, "u-1"), bad)
        };
        seen.push_str(&traffic(&proxy, name, good, bad).await);
    }
    let status = proxy.terminate();
    assert!(status.success(), "proxy exit: {status}");

    let mut files = Vec::new();
    files_under(&data, &mut files);
    let mut searched = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // The backends' own files hold the data by design; logs and audit
        // records must not.
        let is_log = name.ends_with(".log");
        let is_audit = name.contains("audit");
        if !(is_log || is_audit) {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).to_string();
        assert!(!text.is_empty() || is_audit, "{} is empty", path.display());
        for needle in seeds.needles() {
            assert!(
                !text.contains(&needle),
                "{} contains seeded PII {needle:?}",
                path.display()
            );
        }
        searched.push(name);
    }
    assert!(
        searched.iter().any(|n| n.ends_with(".log")),
        "the proxy log was searched: {files:?}"
    );
    assert!(
        searched
            .iter()
            .any(|n| n.starts_with("audit") && n.contains(".jsonl")),
        "the audit file was searched: {files:?}"
    );
    for needle in seeds.needles() {
        assert!(
            !seen.contains(&needle),
            "a caller without pii:read received {needle:?}"
        );
    }
    // The masked responses still carried the non-PII data.
    assert!(seen.contains("gold"));
}
