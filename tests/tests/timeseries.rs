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

/// A proxy serving one TimeSeries namespace whose file says `body` after
/// its name; returns the namespace name, the temporary directory and the
/// proxy.
fn proxy_with(prefix: &str, body: &str) -> (String, tempfile::TempDir, ProxyProcess) {
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
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
    .unwrap();
    std::fs::write(
        ns_dir.join(format!("{name}.yaml")),
        format!("name: {name}\ndal: timeseries\n{body}"),
    )
    .unwrap();
    let config = dir.path().join("prism.yaml").display().to_string();
    let proxy = ProxyProcess::start_with(&dir.path().join("data"), &["--config", &config]);
    (name, dir, proxy)
}

/// `prismctl ts write` of one event of series `cpu`; its JSON answer.
fn write(
    addr: std::net::SocketAddr,
    name: &str,
    id: &str,
    time: &str,
    host: &str,
    payload: &str,
) -> serde_json::Value {
    let out = ok(prismctl(
        addr,
        &[
            "ts",
            "write",
            "--namespace",
            name,
            "--series",
            "cpu",
            "--event-id",
            id,
            "--time",
            time,
            "--tag",
            &format!("host={host}"),
            "--payload",
            payload,
            "-o",
            "json",
        ],
    ));
    serde_json::from_str(&out).unwrap()
}

/// `prismctl ts tail` of series `cpu` from the past, stopping after
/// `limit` events: waits until it reports catching up (a note holding
/// `caught_up`), lets `live` write more, and returns the tailed events.
fn tail_around(
    addr: std::net::SocketAddr,
    dir: &std::path::Path,
    name: &str,
    limit: usize,
    caught_up: &str,
    live: impl FnOnce(),
) -> Vec<serde_json::Value> {
    let mut tail = Command::new(binary("prismctl"))
        .args(["--addr", &format!("http://{addr}")])
        .args([
            "ts",
            "tail",
            "--namespace",
            name,
            "--series",
            "cpu",
            "--from",
            "2026-11-23T00:00:00Z",
            "--limit",
            &limit.to_string(),
            "-o",
            "json",
        ])
        .env("PRISM_CONFIG_DIR", dir.join("no-config"))
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
    let note = heard
        .recv_timeout(Duration::from_secs(30))
        .expect("the tail reports catching up");
    assert!(note.contains(caught_up), "{note}");
    live();
    let out = tail.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The shared scenario: two stored events (the second write of e1 is
/// counted a duplicate), then a tail from the past that catches up and
/// follows a live and a late event; returns the tailed events.
fn write_then_tail(
    addr: std::net::SocketAddr,
    dir: &std::path::Path,
    name: &str,
) -> Vec<serde_json::Value> {
    let write = |id: &str, time: &str, host: &str, payload: &str| {
        write(addr, name, id, time, host, payload)
    };
    let first = write("e1", "2026-11-23T10:00:00Z", "web-1", "load 0.5");
    assert_eq!(
        (first["written"].as_u64(), first["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
    let again = write("e1", "2026-11-23T10:00:00Z", "web-1", "load 0.5");
    assert_eq!(
        (again["written"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    write("e2", "2026-11-23T10:00:01Z", "web-2", "load 0.7");
    let tailed = tail_around(addr, dir, name, 4, "caught up (2 stored events", || {
        write("live", "now", "web-1", "live one");
        write("late", "2026-11-23T09:00:00Z", "web-1", "late one");
    });
    assert_eq!(
        event_ids(&tailed),
        ["e1", "e2", "live", "late"],
        "catch-up, then live in the order written, no repeat of e1"
    );
    assert_sequences_grow(&tailed);
    assert_eq!(tailed[2]["payload"], "live one");
    tailed
}

/// `prismctl ts read` of series `cpu` with `extra` flags; the events.
fn read(addr: std::net::SocketAddr, name: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec![
        "ts",
        "read",
        "--namespace",
        name,
        "--series",
        "cpu",
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let out: serde_json::Value = serde_json::from_str(&ok(prismctl(addr, &args))).unwrap();
    out["events"].as_array().unwrap().to_vec()
}

fn event_ids(events: &[serde_json::Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect()
}

fn assert_sequences_grow(events: &[serde_json::Value]) {
    let sequences: Vec<_> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
}

#[test]
fn timeseries_on_postgres_through_prismctl_and_readable_with_psql() {
    let (name, dir, proxy) = proxy_with(
        "ts-e2e",
        &format!(
            "backend:\n  kind: postgres\n  options:\n    url: {}\n    schema: {SCHEMA}\ntimeseries:\n  retention: 7d\n  bucket: 1h\n",
            postgres_url()
        ),
    );
    let addr = proxy.grpc;
    write_then_tail(addr, dir.path(), &name);

    let newest = read(addr, &name, &["--newest-first", "--page-size-bytes", "1"]);
    assert_eq!(
        event_ids(&newest),
        ["live", "e2", "e1", "late"],
        "newest first, across one-event pages"
    );
    let filtered = read(addr, &name, &["--tag", "host=web-1"]);
    assert_eq!(event_ids(&filtered), ["late", "e1", "live"]);
    assert_eq!(filtered[1]["payload"], "load 0.5");

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

/// The same namespace with its PostgreSQL backend in a pattern process
/// (`backend.mode: process`): the proxy runs `prism-pattern-postgres`, and
/// writes, one-event pages, filters and a tail that catches up then
/// follows behave exactly as embedded; the rows are in PostgreSQL.
#[test]
fn timeseries_in_a_pattern_process_writes_pages_and_tails() {
    let (name, dir, proxy) = proxy_with(
        "ts-proc",
        &format!(
            "backend:\n  kind: postgres\n  mode: process\n  options:\n    url: {}\n    schema: {SCHEMA}\ntimeseries:\n  retention: 7d\n  bucket: 1h\n",
            postgres_url()
        ),
    );
    let pgrep = Command::new("pgrep")
        .args([
            "-P",
            &proxy.child.id().to_string(),
            "-f",
            "prism-pattern-postgres",
        ])
        .output()
        .expect("running pgrep");
    assert_eq!(
        String::from_utf8_lossy(&pgrep.stdout)
            .split_whitespace()
            .count(),
        1,
        "one pattern process serves the namespace"
    );
    let addr = proxy.grpc;
    write_then_tail(addr, dir.path(), &name);
    let newest = read(addr, &name, &["--newest-first", "--page-size-bytes", "1"]);
    assert_eq!(event_ids(&newest), ["live", "e2", "e1", "late"]);
    let filtered = read(addr, &name, &["--tag", "host=web-1"]);
    assert_eq!(event_ids(&filtered), ["late", "e1", "live"]);
    let count = psql(&format!(
        "SELECT count(*) FROM {SCHEMA}.ts_namespaces WHERE namespace = '{name}'"
    ));
    assert_eq!(
        count.trim(),
        "1",
        "the pattern registered the namespace's table"
    );
    drop(proxy);
}

/// A namespace with `timeseries.log` of kind kafka: writes are stored in
/// SQLite and appended to the topic, Tail reads the topic, and a plain
/// Kafka client reads the events.
#[test]
fn timeseries_with_a_kafka_log_tails_the_topic() {
    let topic = format!(
        "prism-ts-log-e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let (name, dir, proxy) = proxy_with(
        "ts-log",
        &format!(
            "backend:\n  kind: sqlite\ntimeseries:\n  log:\n    kind: kafka\n    options:\n      brokers: 127.0.0.1:9092\n      topic: {topic}\n      partitions: 2\n"
        ),
    );
    let addr = proxy.grpc;
    // The retried write of e1 is stored once and appended twice; the tail
    // reads the topic and drops the repeat.
    write_then_tail(addr, dir.path(), &name);

    // Reads are served by the store.
    let stored = read(addr, &name, &[]);
    assert_eq!(event_ids(&stored), ["late", "e1", "e2", "live"]);

    // The topic with a plain Kafka client, from the beginning.
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut partitions = rdkafka::TopicPartitionList::new();
    for p in 0..2 {
        partitions
            .add_partition_offset(&topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&partitions).unwrap();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while records.len() < 5 && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_secs(1)) {
            let m = m.unwrap();
            let id = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "prism-event-id"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).to_string());
            records.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                id.unwrap_or_default(),
            ));
        }
    }
    let ids: Vec<_> = records.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["e1", "e1", "e2", "live", "late"], "{records:?}");
    assert!(records.iter().all(|(key, _)| key == "cpu"), "{records:?}");
    drop(proxy);
}
