//! TimeSeries through the real proxy and prismctl, on PostgreSQL: writes are
//! idempotent, reads page and filter, a tail started in the past catches up
//! and then follows, and the events are readable with psql.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use prism_tests::{ProxyProcess, binary, free_addr, prismctl};

fn postgres_url() -> String {
    std::env::var("PRISM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

const SCHEMA: &str = "prism_ts_e2e";

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "prismctl failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args([&postgres_url(), "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn timeseries_on_postgres_through_prismctl_and_readable_with_psql() {
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let name = format!("ts-e2e-{}-{now}", std::process::id());
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
        ns_dir.join(format!("{name}.yaml")),
        format!(
            "name: {name}\ndal: timeseries\nbackend:\n  kind: postgres\n  options:\n    url: {}\n    schema: {SCHEMA}\ntimeseries:\n  retention: 7d\n  bucket: 1h\n",
            postgres_url()
        ),
    )
    .unwrap();
    let config = dir.path().join("prism.yaml").display().to_string();
    let proxy = ProxyProcess::start_with(&dir.path().join("data"), &["--config", &config]);
    let addr = proxy.grpc;

    // Two stored events; the second write of e1 is recognised.
    let write = |id: &str, age: &str, host: &str, payload: &str| {
        ok(prismctl(
            addr,
            &[
                "ts",
                "write",
                "--namespace",
                &name,
                "--series",
                "cpu",
                "--event-id",
                id,
                "--time",
                age,
                "--tag",
                &format!("host={host}"),
                "--payload",
                payload,
                "-o",
                "json",
            ],
        ))
    };
    let first: serde_json::Value =
        serde_json::from_str(&write("e1", "2026-11-23T10:00:00Z", "web-1", "load 0.5")).unwrap();
    assert_eq!(
        (first["written"].as_u64(), first["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
    let again: serde_json::Value =
        serde_json::from_str(&write("e1", "2026-11-23T10:00:00Z", "web-1", "load 0.5")).unwrap();
    assert_eq!(
        (again["written"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    write("e2", "2026-11-23T10:00:01Z", "web-2", "load 0.7");

    let read: serde_json::Value = serde_json::from_str(&ok(prismctl(
        addr,
        &[
            "ts",
            "read",
            "--namespace",
            &name,
            "--series",
            "cpu",
            "--newest-first",
            "--page-size-bytes",
            "1",
            "-o",
            "json",
        ],
    )))
    .unwrap();
    let ids: Vec<_> = read["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["e2", "e1"], "newest first, across one-event pages");
    let filtered: serde_json::Value = serde_json::from_str(&ok(prismctl(
        addr,
        &[
            "ts",
            "read",
            "--namespace",
            &name,
            "--series",
            "cpu",
            "--tag",
            "host=web-1",
            "-o",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(filtered["events"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["events"][0]["payload"], "load 0.5");

    // A tail from the past: the two stored events, then live ones.
    let mut tail = Command::new(binary("prismctl"))
        .args(["--addr", &format!("http://{addr}")])
        .args([
            "ts",
            "tail",
            "--namespace",
            &name,
            "--series",
            "cpu",
            "--from",
            "2026-11-23T00:00:00Z",
            "--limit",
            "4",
            "-o",
            "json",
        ])
        .env("PRISM_CONFIG_DIR", dir.path().join("no-config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (said, heard) = mpsc::channel();
    let stderr = tail.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = said.send(line);
        }
    });
    let caught_up = heard
        .recv_timeout(Duration::from_secs(20))
        .expect("the tail reports catching up");
    assert!(
        caught_up.contains("caught up (2 stored events"),
        "{caught_up}"
    );
    write("live", "now", "web-1", "live one");
    write("late", "2026-11-23T09:00:00Z", "web-1", "late one");
    let out = tail.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tailed: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<_> = tailed
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["e1", "e2", "live", "late"],
        "catch-up, then live in commit order"
    );
    let sequences: Vec<_> = tailed
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");

    // The same events with PostgreSQL's own tool.
    let table = psql(&format!(
        "SELECT table_name FROM {SCHEMA}.ts_namespaces WHERE namespace = '{name}'"
    ));
    let rows = psql(&format!(
        "SELECT event_id || ' ' || convert_from(payload, 'UTF8') || ' ' || (tags->>'host') FROM {SCHEMA}.\"{}\" ORDER BY sequence",
        table.trim()
    ));
    assert_eq!(
        rows.lines().collect::<Vec<_>>(),
        [
            "e1 load 0.5 web-1",
            "e2 load 0.7 web-2",
            "live live one web-1",
            "late late one web-1"
        ]
    );
    drop(proxy);
}
