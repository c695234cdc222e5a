//! Writes through the backend, then reads the key layout documented in
//! ADR-006 and docs-cms/configuration.md with a plain Redis connection, by
//! the literal key names the documents give.

use std::sync::Arc;
use std::time::Duration;

use pattern_core::acceptance::Harness;
use pattern_core::{Clock, Factory, IdempotencyKey, ManualClock, OpenContext, PutItem, Selection};
use redis::aio::MultiplexedConnection;

fn url() -> String {
    std::env::var("PRISM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

async fn raw() -> MultiplexedConnection {
    redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connecting to the test redis")
}

async fn get(conn: &mut MultiplexedConnection, key: &[u8]) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

async fn zrange(conn: &mut MultiplexedConnection, key: &[u8]) -> Vec<(Vec<u8>, f64)> {
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .unwrap()
}

async fn command_i64(conn: &mut MultiplexedConnection, cmd: &str, key: &[u8]) -> i64 {
    redis::cmd(cmd).arg(key).query_async(conn).await.unwrap()
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_layout() {
    let ns = Harness::unique_namespace("layout");
    let clock = Arc::new(ManualClock::starting_now());
    let ctx = OpenContext::new(ns.clone(), std::env::temp_dir(), clock.clone());
    let options = serde_json::json!({ "url": url(), "key_prefix": "prism-test" });
    let b = pattern_redis::RedisFactory
        .open(ctx.with_options(options))
        .await
        .unwrap();

    // An id holding ':' and a binary key, a TTL item, an idempotent write.
    let items = vec![
        PutItem::new("name", "ada"),
        PutItem::new(vec![0u8, b':', 0xff], "bin"),
    ];
    let token = IdempotencyKey::for_put("tok-1".into(), "user:1", &items);
    let fingerprint = token.fingerprint;
    let v = b
        .put("user:1", items, Some(token))
        .await
        .unwrap()
        .versions();
    let now = clock.now_ms();
    let vt = b
        .put(
            "user:1",
            vec![PutItem::new("session", "s").with_ttl(Duration::from_secs(60))],
            None,
        )
        .await
        .unwrap()
        .versions()[0];
    b.put("a", vec![PutItem::new("k", "")], None).await.unwrap();

    let base = format!("prism-test:{{{ns}}}:").into_bytes();
    let base = base.as_slice();
    let mut conn = raw().await;

    // Items: `<base>item:<len(id)>:<id>:<key>` = `<version>:<expires_at_ms>:<value>`.
    let name = get(&mut conn, &key(&[base, b"item:6:user:1:name"])).await;
    assert_eq!(name, Some(format!("{}:0:ada", v[0]).into_bytes()));
    let bin = get(
        &mut conn,
        &key(&[base, b"item:6:user:1:", &[0, b':', 0xff]]),
    )
    .await;
    assert_eq!(bin, Some(format!("{}:0:bin", v[1]).into_bytes()));
    assert_eq!(
        get(&mut conn, &key(&[base, b"item:1:a:k"])).await,
        Some(format!("{}:0:", v[1] + 2).into_bytes()),
        "an empty value"
    );
    assert_eq!(
        command_i64(&mut conn, "PTTL", &key(&[base, b"item:6:user:1:name"])).await,
        -1,
        "no TTL: no Redis expiry"
    );
    // A TTL item carries its expiry, and Redis expires it then (PXAT).
    let expires = now + 60_000;
    let session_key = key(&[base, b"item:6:user:1:session"]);
    assert_eq!(
        get(&mut conn, &session_key).await,
        Some(format!("{vt}:{expires}:s").into_bytes())
    );
    assert_eq!(
        command_i64(&mut conn, "PEXPIRETIME", &session_key).await,
        expires as i64
    );

    // The keys of an id, bytewise, all scores 0.
    let index = zrange(&mut conn, &key(&[base, b"keys:user:1"])).await;
    let want: Vec<(Vec<u8>, f64)> = vec![
        (vec![0, b':', 0xff], 0.0),
        (b"name".to_vec(), 0.0),
        (b"session".to_vec(), 0.0),
    ];
    assert_eq!(index, want);
    // The ids, bytewise.
    let ids = zrange(&mut conn, &key(&[base, b"ids"])).await;
    assert_eq!(ids, vec![(b"a".to_vec(), 0.0), (b"user:1".to_vec(), 0.0)]);
    // TTL items by expiry.
    let expiry = zrange(&mut conn, &key(&[base, b"expiry"])).await;
    assert_eq!(expiry, vec![(b"6:user:1:session".to_vec(), expires as f64)]);
    // The version counter.
    assert_eq!(
        get(&mut conn, &key(&[base, b"version"])).await,
        Some(b"4".to_vec())
    );
    // The idempotency record: `<fingerprint>|<outcomes>`, kept 24 h.
    let record_key = key(&[base, b"idem:tok-1"]);
    assert_eq!(
        get(&mut conn, &record_key).await,
        Some(format!("{fingerprint}|v{},v{}", v[0], v[1]).into_bytes())
    );
    let ttl = command_i64(&mut conn, "PTTL", &record_key).await;
    assert!(ttl > 86_000_000 && ttl <= 86_400_000, "{ttl}");

    // Deleting every key of an id removes its index and its id.
    assert_eq!(b.delete("user:1", &Selection::All).await.unwrap(), 3);
    assert_eq!(
        get(&mut conn, &key(&[base, b"item:6:user:1:name"])).await,
        None
    );
    assert!(
        zrange(&mut conn, &key(&[base, b"keys:user:1"]))
            .await
            .is_empty()
    );
    assert!(zrange(&mut conn, &key(&[base, b"expiry"])).await.is_empty());
    assert_eq!(
        zrange(&mut conn, &key(&[base, b"ids"])).await,
        vec![(b"a".to_vec(), 0.0)]
    );

    // Clean up this test's namespace.
    let mut pattern = base.to_vec();
    pattern.push(b'*');
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}
