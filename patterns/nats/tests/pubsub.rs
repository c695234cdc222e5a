//! The PubSub acceptance suite against the NATS server on this machine
//! (127.0.0.1:4222; override with PRISM_TEST_NATS_URL). Each test has its
//! own namespace, so its own stream (`PRISMTEST_<ns>`, subjects
//! `prismtest.<ns>.>`), and tests run in parallel.
//!
//! Every case runs twice: `embedded::` (the backend linked into the test)
//! and `process::` (each backend its own `prism-pattern-nats` process,
//! reached over the pattern protocol).

fn url() -> String {
    std::env::var("PRISM_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

fn options() -> serde_json::Value {
    serde_json::json!({
        "url": url(),
        "stream_prefix": "PRISMTEST",
        "subject_prefix": "prismtest",
        "max_age_secs": 3600,
    })
}

mod embedded {
    pattern_core::pubsub_acceptance_suite!(
        mode = "embedded",
        pattern_nats::NatsFactory,
        super::options()
    );
}

mod process {
    pattern_core::pubsub_acceptance_suite!(
        mode = "process",
        pattern_core::acceptance::ProcessFactory::pubsub(
            pattern_nats::NatsFactory,
            env!("CARGO_BIN_EXE_prism-pattern-nats"),
        ),
        super::options()
    );
}

/// The suite's streams expire their messages after an hour but stay; this
/// removes test streams (`PRISMTEST_acc-...`) of runs that started over an
/// hour ago, so repeated runs do not pile streams up on the server.
#[tokio::test]
async fn stale_acceptance_streams_are_removed() {
    use tokio_stream::StreamExt;
    const HOUR_MS: u64 = 60 * 60 * 1000;
    let client = async_nats::connect(url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let now = pattern_core::Clock::now_ms(&pattern_core::SystemClock);
    // Namespaces are `acc-<test>-<pid>-<started ms>-<n>`, encoded with
    // `-` kept.
    let started = |name: &str| -> Option<u64> {
        let ns = name.strip_prefix("PRISMTEST_acc-")?;
        ns.rsplit('-').nth(1)?.parse().ok()
    };
    let names: Vec<String> = js
        .stream_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    for name in names {
        if started(&name).is_some_and(|s| s + HOUR_MS < now) {
            js.delete_stream(&name).await.unwrap();
        }
    }
    // The names of this run's streams parse, so they will be removed later.
    assert_eq!(
        started("PRISMTEST_acc-x-1-1700000000000-3"),
        Some(1700000000000)
    );
}
