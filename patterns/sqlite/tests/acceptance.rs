//! The KeyValue acceptance suite on SQLite: embedded (the backend
//! linked into the test) and through the process boundary (each test's
//! backend is its own `prism-pattern-sqlite` process on a Unix socket).

mod embedded {
    #[allow(unused_imports)]
    use super::*;
    pattern_core::keyvalue_acceptance_suite!(
        mode = "embedded",
        pattern_sqlite::SqliteFactory,
        serde_json::json!({})
    );
}

mod process {
    #[allow(unused_imports)]
    use super::*;
    pattern_core::keyvalue_acceptance_suite!(
        mode = "process",
        pattern_core::acceptance::ProcessFactory::new(
            pattern_sqlite::SqliteFactory,
            env!("CARGO_BIN_EXE_prism-pattern-sqlite"),
        ),
        serde_json::json!({})
    );
}
