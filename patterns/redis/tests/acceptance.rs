//! The KeyValue acceptance suite against the Redis on this machine
//! (127.0.0.1:6379; override with PRISM_TEST_REDIS_URL). Each test has its
//! own namespace (so its own hash tag and keys), so tests run in parallel.
//! Keys are under the `prism-test` prefix; remove them with
//! `redis-cli --scan --pattern 'prism-test:*' | xargs -r redis-cli del`.

fn options() -> serde_json::Value {
    let url = std::env::var("PRISM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    serde_json::json!({ "url": url, "key_prefix": "prism-test" })
}

mod embedded {
    pattern_core::keyvalue_acceptance_suite!(
        mode = "embedded",
        pattern_redis::RedisFactory,
        super::options()
    );
}

mod process {
    pattern_core::keyvalue_acceptance_suite!(
        mode = "process",
        pattern_core::acceptance::ProcessFactory::new(
            pattern_redis::RedisFactory,
            env!("CARGO_BIN_EXE_prism-pattern-redis"),
        ),
        super::options()
    );
}

/// The suite leaves its namespaces' keys behind (the harness has no
/// teardown); this removes those of runs that started over an hour ago, so
/// repeated runs do not fill the test Redis. Only `prism-test:{acc-...}`
/// keys are touched.
#[tokio::test]
async fn stale_acceptance_keys_are_removed() {
    const HOUR_MS: u64 = 60 * 60 * 1000;
    let client = redis::Client::open(
        std::env::var("PRISM_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string()),
    )
    .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let now = pattern_core::Clock::now_ms(&pattern_core::SystemClock);
    // Namespaces are `acc-<test>-<pid>-<started ms>-<n>`.
    let started = |key: &[u8]| -> Option<u64> {
        let key = key.strip_prefix(b"prism-test:{acc-")?;
        let end = key.iter().position(|b| *b == b'}')?;
        let ns = std::str::from_utf8(&key[..end]).ok()?;
        ns.rsplit('-').nth(1)?.parse().ok()
    };
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("prism-test:{acc-*")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        let stale: Vec<&Vec<u8>> = keys
            .iter()
            .filter(|k| started(k).is_some_and(|s| s + HOUR_MS < now))
            .collect();
        if !stale.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(stale)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}
