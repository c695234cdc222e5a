//! The gRPC listener's connection limits against the real proxy binary:
//! a cap on open connections (clients beyond it get a clear, fast
//! refusal while served clients keep being served), a handshake timeout
//! for connections that never show they speak HTTP/2, a per-connection
//! stream limit and HTTP/2 keepalive.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use prism_proto::keyvalue::v1 as pb;
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_tests::{ProxyProcess, http_get, wait_until};
use tonic::Code;
use tonic::transport::Endpoint;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A proxy whose `prism.yaml` sets `listeners` to `listeners` (YAML lines
/// indented by two spaces) and serves one memstore namespace, whose name
/// is returned.
fn start(dir: &Path, listeners: &str) -> (ProxyProcess, String) {
    let name = format!(
        "limits-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    );
    let ns = dir.join("namespaces");
    std::fs::create_dir_all(&ns).unwrap();
    std::fs::write(
        ns.join(format!("{name}.yaml")),
        format!("name: {name}\ndal: keyvalue\nbackend:\n  kind: memstore\n"),
    )
    .unwrap();
    let config = dir.join("prism.yaml");
    std::fs::write(
        &config,
        format!("listeners:\n{listeners}namespaces:\n  dir: namespaces\n"),
    )
    .unwrap();
    let proxy = ProxyProcess::start_with(
        &dir.join("data"),
        &["--config", &config.display().to_string()],
    );
    (proxy, name)
}

/// The value of the metric line starting with `series ` (name and labels
/// exactly as rendered), if any.
fn metric(proxy: &ProxyProcess, series: &str) -> Option<f64> {
    let (_, body) = http_get(proxy.admin, "/metrics").ok()?;
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn put(namespace: &str, id: &str) -> pb::PutRequest {
    pb::PutRequest {
        namespace: namespace.into(),
        id: id.into(),
        items: vec![pb::PutItem {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ttl: None,
            expected_version: None,
        }],
        idempotency_token: String::new(),
    }
}

fn get(namespace: &str, id: &str) -> pb::GetRequest {
    pb::GetRequest {
        namespace: namespace.into(),
        id: id.into(),
        ..Default::default()
    }
}

/// Reads what the server sends until it closes, within `within`.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection within {within:?}: {e}"),
    }
    got
}

/// One HTTP/2 frame: (type, flags, payload).
fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, u8, Vec<u8>)> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header)?;
    let len =
        (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok((header[3], header[4], payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_cap_new_clients_are_refused_quickly_and_served_ones_keep_going() {
    const CAP: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, ns) = start(
        dir.path(),
        &format!("  max_connections: {CAP}\n  handshake_timeout_ms: 120000\n"),
    );
    let mut served = proxy.kv_client().await;
    served.put(put(&ns, "before")).await.unwrap();

    // Fill the cap with connections that never handshake, then hold more.
    let holders: Vec<TcpStream> = (1..CAP)
        .map(|_| TcpStream::connect(proxy.grpc).unwrap())
        .collect();
    wait_until("every slot taken", || {
        metric(&proxy, "prism_connections_open") == Some(CAP as f64)
    });
    let mut over: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(proxy.grpc).unwrap())
        .collect();

    // A new gRPC client gets UNAVAILABLE naming the limit, at once.
    let started = Instant::now();
    let channel = Endpoint::from_shared(proxy.grpc_url())
        .unwrap()
        .connect_lazy();
    let err = KeyValueServiceClient::new(channel)
        .get(get(&ns, "before"))
        .await
        .unwrap_err();
    let refused_in = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("connection limit reached"),
        "{}",
        err.message()
    );
    assert!(
        refused_in < Duration::from_secs(1),
        "refusal took {refused_in:?}"
    );
    println!("refused a new client at the cap in {refused_in:?}");

    // Raw connections beyond the cap are answered (HTTP/2 GOAWAY with the
    // reason) and closed.
    for stream in &mut over {
        let got = read_until_closed(stream, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("connection limit reached"), "{text:?}");
    }

    // The served client, the admin listener and writes keep working.
    for i in 0..20 {
        served.put(put(&ns, &format!("during-{i}"))).await.unwrap();
    }
    let items = served
        .get(get(&ns, "during-19"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(items.items.len(), 1);
    assert_eq!(http_get(proxy.admin, "/healthz").unwrap().0, 200);
    assert!(metric(&proxy, "prism_connections_refused_total").unwrap() >= 21.0);
    assert_eq!(metric(&proxy, "prism_connections_open"), Some(CAP as f64));
    let log = proxy.log();
    assert_eq!(
        log.matches("grpc connection limit reached").count(),
        1,
        "one log line per 10 s:\n{log}"
    );

    // Slots come back when connections close.
    drop(holders);
    drop(over);
    wait_until("slots released", || {
        metric(&proxy, "prism_connections_open") == Some(1.0)
    });
    let mut fresh = proxy.kv_client().await;
    fresh.get(get(&ns, "before")).await.unwrap();
}

#[tokio::test]
async fn connections_that_never_finish_their_handshake_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, ns) = start(dir.path(), "  handshake_timeout_ms: 500\n");

    let started = Instant::now();
    let mut silent = TcpStream::connect(proxy.grpc).unwrap();
    let mut half = TcpStream::connect(proxy.grpc).unwrap();
    half.write_all(&PREFACE[..10]).unwrap();
    let mut not_http2 = TcpStream::connect(proxy.grpc).unwrap();
    not_http2
        .write_all(b"GET / HTTP/1.1\r\nHost: prism\r\n\r\n")
        .unwrap();

    assert!(read_until_closed(&mut not_http2, Duration::from_secs(10)).is_empty());
    assert!(read_until_closed(&mut silent, Duration::from_secs(10)).is_empty());
    assert!(read_until_closed(&mut half, Duration::from_secs(10)).is_empty());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450), "closed after {took:?}");
    println!("silent connections closed after {took:?}");

    // A client that does handshake is served.
    let mut kv = proxy.kv_client().await;
    kv.put(put(&ns, "ok")).await.unwrap();
    wait_until("handshake failures counted", || {
        metric(
            &proxy,
            "prism_connection_handshakes_failed_total{reason=\"timeout\"}",
        ) == Some(2.0)
            && metric(
                &proxy,
                "prism_connection_handshakes_failed_total{reason=\"not_http2\"}",
            ) == Some(1.0)
    });
}

#[test]
fn the_server_limits_streams_per_connection_and_pings_silent_peers_away() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, _) = start(
        dir.path(),
        "  max_concurrent_streams: 7\n  http2_keepalive_interval_ms: 200\n  \
         http2_keepalive_timeout_ms: 300\n",
    );
    let mut conn = TcpStream::connect(proxy.grpc).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(PREFACE).unwrap();
    conn.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap(); // empty SETTINGS

    let (kind, flags, settings) = read_frame(&mut conn).unwrap();
    assert_eq!((kind, flags), (4, 0), "the server's preface is SETTINGS");
    let max_streams = settings.chunks(6).find_map(|entry| {
        (u16::from_be_bytes([entry[0], entry[1]]) == 0x3)
            .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
    });
    assert_eq!(max_streams, Some(7), "SETTINGS_MAX_CONCURRENT_STREAMS");

    // This client never answers: the server pings, then closes.
    let started = Instant::now();
    let pinged = loop {
        match read_frame(&mut conn) {
            Ok((6, 0, _)) => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    assert!(pinged, "no PING within 10 s");
    read_until_closed(&mut conn, Duration::from_secs(10));
    let took = started.elapsed();
    println!("an unresponsive peer was pinged and closed after {took:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
}
