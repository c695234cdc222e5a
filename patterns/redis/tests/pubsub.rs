//! The PubSub acceptance suite against the Redis on this machine
//! (127.0.0.1:6379; override with PRISM_TEST_REDIS_URL). Each test has its
//! own namespace, so its own streams (`prism-test:{acc-...}:topic:<topic>`);
//! the stale-key cleanup in `tests/acceptance.rs` removes them later.
//!
//! Every case runs twice: `embedded::` (the backend linked into the test)
//! and `process::` (each backend its own `prism-pattern-redis` process,
//! reached over the pattern protocol).

fn options() -> serde_json::Value {
    let url = std::env::var("PRISM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    serde_json::json!({ "url": url, "key_prefix": "prism-test" })
}

mod embedded {
    pattern_core::pubsub_acceptance_suite!(
        mode = "embedded",
        pattern_redis::RedisPubSubFactory,
        super::options()
    );
}

mod process {
    pattern_core::pubsub_acceptance_suite!(
        mode = "process",
        pattern_core::acceptance::ProcessFactory::pubsub(
            pattern_redis::RedisPubSubFactory,
            env!("CARGO_BIN_EXE_prism-pattern-redis"),
        ),
        super::options()
    );
}
