//! The shared PubSub acceptance suite against the Kafka-protocol broker on
//! this machine (127.0.0.1:9092, started by `tooling/kafka-broker`; override
//! with PRISM_TEST_KAFKA_BROKERS). Each test has its own namespace, so its
//! own topics (`prism.<ns>.<topic>`).
//!
//! Every case runs twice: `embedded::` (the backend linked into the test)
//! and `process::` (each backend its own `prism-pattern-kafka` process,
//! reached over the pattern protocol).

fn options() -> serde_json::Value {
    let brokers =
        std::env::var("PRISM_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string());
    serde_json::json!({ "brokers": brokers })
}

mod embedded {
    pattern_core::pubsub_acceptance_suite!(
        mode = "embedded",
        pattern_kafka::KafkaFactory,
        super::options()
    );
}

mod process {
    pattern_core::pubsub_acceptance_suite!(
        mode = "process",
        pattern_core::acceptance::ProcessFactory::pubsub(
            pattern_kafka::KafkaFactory,
            env!("CARGO_BIN_EXE_prism-pattern-kafka"),
        ),
        super::options()
    );
}
