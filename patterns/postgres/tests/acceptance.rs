//! The KeyValue acceptance suite on PostgreSQL (127.0.0.1:5432, database `test`;
//! override with PRISM_TEST_POSTGRES_URL): embedded (the backend
//! linked into the test) and through the process boundary (each test's
//! backend is its own `prism-pattern-postgres` process on a Unix socket).

fn options() -> serde_json::Value {
    let url = std::env::var("PRISM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    serde_json::json!({ "url": url, "schema": "prism_acceptance" })
}

mod embedded {
    #[allow(unused_imports)]
    use super::*;
    pattern_core::keyvalue_acceptance_suite!(
        mode = "embedded",
        pattern_postgres::PostgresFactory,
        options()
    );
}

mod process {
    #[allow(unused_imports)]
    use super::*;
    pattern_core::keyvalue_acceptance_suite!(
        mode = "process",
        pattern_core::acceptance::ProcessFactory::new(
            pattern_postgres::PostgresFactory,
            env!("CARGO_BIN_EXE_prism-pattern-postgres"),
        ),
        options()
    );
}
