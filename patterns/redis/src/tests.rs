//! Tests against the Redis on this machine (127.0.0.1:6379; override with
//! PRISM_TEST_REDIS_URL). Each test has its own namespace and removes its
//! keys at the end. The acceptance suite is in `tests/acceptance.rs`, the
//! documented key layout is checked in `tests/layout.rs`.

use std::process::{Child, Command, Stdio};

use pattern_core::acceptance::Harness;
use pattern_core::{Backend, Factory, ManualClock};

use super::*;

fn test_url() -> String {
    std::env::var("PRISM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn options() -> RedisOptions {
    RedisOptions::parse(serde_json::json!({ "url": test_url(), "key_prefix": "prism-test" }))
        .unwrap()
}

/// A backend without the background sweeper: these tests sweep when they
/// choose to.
async fn open(ns: &str, clock: Arc<dyn Clock>) -> RedisBackend {
    RedisBackend::open_with(ns, clock, &options(), false)
        .await
        .unwrap()
}

async fn raw_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(test_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connecting to the test redis")
}

/// Removes every key of a backend's namespace.
async fn cleanup(b: &RedisBackend) {
    let mut conn = raw_connection().await;
    let mut pattern = b.layout().base().to_vec();
    pattern.push(b'*');
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

async fn zset(conn: &mut redis::aio::MultiplexedConnection, key: Vec<u8>) -> Vec<Vec<u8>> {
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .unwrap()
}

async fn exists(conn: &mut redis::aio::MultiplexedConnection, key: Vec<u8>) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<u64>(conn)
        .await
        .unwrap()
        == 1
}

async fn keys_of(b: &RedisBackend, id: &str) -> Vec<Vec<u8>> {
    b.get(id, &Selection::All, PageRequest::first(1 << 20))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.key)
        .collect()
}

#[test]
fn options_are_checked() {
    let err = RedisOptions::parse(serde_json::json!({})).unwrap_err();
    assert!(err.to_string().contains("`url` is required"), "{err}");
    let err = RedisOptions::parse(serde_json::json!({"url": "http://x"})).unwrap_err();
    assert!(err.to_string().contains("`url` is invalid"), "{err}");
    let err =
        RedisOptions::parse(serde_json::json!({"url": test_url(), "prefix": "p"})).unwrap_err();
    assert!(err.to_string().contains("unknown field `prefix`"), "{err}");
    assert!(
        err.to_string().contains("key_prefix"),
        "names the allowed: {err}"
    );
    for bad in ["", "a{b", "a b", "x}"] {
        let err = RedisOptions::parse(serde_json::json!({"url": test_url(), "key_prefix": bad}))
            .unwrap_err();
        assert!(err.to_string().contains("`key_prefix`"), "{err}");
    }
    let ok = RedisOptions::parse(serde_json::json!({"url": "redis://127.0.0.1:6379/3"})).unwrap();
    assert_eq!(
        (ok.key_prefix.as_str(), ok.sweep_interval_ms),
        ("prism", 1000)
    );
    assert!(
        RedisFactory
            .check_options(&serde_json::json!({"url": test_url()}))
            .is_ok()
    );
}

/// Visibility follows the backend's clock; the sweeper then removes the
/// item and its index entries, although Redis has not expired it yet.
#[tokio::test]
async fn manual_clock_expiry_and_sweep() {
    let clock = Arc::new(ManualClock::starting_now());
    let ns = Harness::unique_namespace("unit-ttl");
    let b = open(&ns, clock.clone()).await;
    b.put(
        "id",
        vec![
            PutItem::new("short", "s").with_ttl(Duration::from_secs(10)),
            PutItem::new("forever", "f"),
        ],
        None,
    )
    .await
    .unwrap();
    b.put(
        "gone",
        vec![PutItem::new("k", "v").with_ttl(Duration::from_secs(5))],
        None,
    )
    .await
    .unwrap();
    let l = b.layout().clone();
    let mut conn = raw_connection().await;
    assert_eq!(zset(&mut conn, l.expiry_key()).await.len(), 2);
    clock.advance(Duration::from_secs(11));
    assert_eq!(keys_of(&b, "id").await, vec![b"forever".to_vec()]);
    assert!(keys_of(&b, "gone").await.is_empty());
    // Still in Redis: it expires them by its own clock, 10 s from now.
    assert!(exists(&mut conn, l.item_key("id", b"short")).await);
    let stats = b.sweep().await.unwrap();
    assert_eq!(
        stats,
        SweepStats {
            entries: 2,
            deleted: 2
        }
    );
    assert!(!exists(&mut conn, l.item_key("id", b"short")).await);
    assert_eq!(
        zset(&mut conn, l.index_key("id")).await,
        vec![b"forever".to_vec()]
    );
    assert!(zset(&mut conn, l.expiry_key()).await.is_empty());
    assert_eq!(
        zset(&mut conn, l.ids_key()).await,
        vec![b"id".to_vec()],
        "'gone' has no keys left"
    );
    assert_eq!(b.sweep().await.unwrap(), SweepStats::default());
    cleanup(&b).await;
}

/// When Redis reclaims an item itself, reads drop its index entries.
#[tokio::test]
async fn reads_prune_items_redis_reclaimed() {
    let ns = Harness::unique_namespace("unit-prune");
    let b = open(&ns, Arc::new(pattern_core::SystemClock)).await;
    let ttl = Duration::from_secs(3600);
    b.put(
        "a",
        vec![
            PutItem::new("k1", "1").with_ttl(ttl),
            PutItem::new("k2", "2"),
        ],
        None,
    )
    .await
    .unwrap();
    b.put("b", vec![PutItem::new("k", "1").with_ttl(ttl)], None)
        .await
        .unwrap();
    let l = b.layout().clone();
    let mut conn = raw_connection().await;
    // What Redis's expiry does at PXAT.
    let _: () = redis::cmd("DEL")
        .arg(l.item_key("a", b"k1"))
        .arg(l.item_key("b", b"k"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys_of(&b, "a").await, vec![b"k2".to_vec()]);
    assert_eq!(
        zset(&mut conn, l.index_key("a")).await,
        vec![b"k2".to_vec()]
    );
    let scanned = b.scan(PageRequest::first(1 << 20)).await.unwrap();
    assert_eq!(scanned.items.len(), 1);
    assert_eq!(zset(&mut conn, l.ids_key()).await, vec![b"a".to_vec()]);
    assert!(zset(&mut conn, l.expiry_key()).await.is_empty());
    cleanup(&b).await;
}

/// A read over many invisible members continues across script calls and
/// still returns the live item behind them on one page.
#[tokio::test]
async fn long_runs_of_expired_items_are_skipped() {
    let clock = Arc::new(ManualClock::starting_now());
    let ns = Harness::unique_namespace("unit-runs");
    let b = open(&ns, clock.clone()).await;
    let n = ops::EXAMINE_PER_CALL * 2 + 10;
    let items: Vec<PutItem> = (0..n)
        .map(|i| PutItem::new(format!("a{i:05}"), "x").with_ttl(Duration::from_secs(1)))
        .collect();
    b.put("id", items, None).await.unwrap();
    b.put("id", vec![PutItem::new("z", "live")], None)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));
    let page = b
        .get("id", &Selection::All, PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].key, b"z");
    assert!(page.next.is_none());
    let page = b.scan(PageRequest::first(10)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next.is_none());
    cleanup(&b).await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let port = free_port();
    let options = RedisOptions::parse(serde_json::json!({
        "url": format!("redis://127.0.0.1:{port}"),
    }))
    .unwrap();
    let err = RedisBackend::open("x", Arc::new(pattern_core::SystemClock), &options)
        .await
        .err()
        .expect("no server there");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")),
        "names the address: {msg}"
    );
    assert!(msg.contains("may be retried"), "{msg}");
}

/// A port nothing listens on (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server of this test's own, without persistence.
struct OwnServer(Child);

impl OwnServer {
    fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(OwnServer(child))
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Redis going away makes calls UNAVAILABLE; once it is back the same
/// backend serves again (reconnected, scripts reloaded after NOSCRIPT).
#[tokio::test]
async fn survives_a_redis_restart() {
    let port = free_port();
    let Some(server) = OwnServer::start(port) else {
        eprintln!("redis-server is not installed; skipping");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    wait_until("the test server answers", || async {
        match redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
        {
            Ok(mut c) => redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok(),
            Err(_) => false,
        }
    })
    .await;
    let options = RedisOptions::parse(serde_json::json!({ "url": url })).unwrap();
    let b = RedisBackend::open("restart", Arc::new(pattern_core::SystemClock), &options)
        .await
        .unwrap();
    b.put("id", vec![PutItem::new("k", "v")], None)
        .await
        .unwrap();
    b.health().await.unwrap();
    drop(server);
    let err = b
        .put("id", vec![PutItem::new("k", "secret-value")], None)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!err.to_string().contains("secret-value"), "{err}");
    let err = b.health().await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    let _server = OwnServer::start(port).expect("restarting redis-server");
    // The restarted server has lost data and scripts; the backend reconnects.
    let mut ok = false;
    for _ in 0..100 {
        if b.put("id", vec![PutItem::new("k", "again")], None)
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the backend serves again after the restart");
    b.health().await.unwrap();
    let page = b
        .get("id", &Selection::All, PageRequest::first(1024))
        .await
        .unwrap();
    assert_eq!(page.items[0].value, b"again");
}
