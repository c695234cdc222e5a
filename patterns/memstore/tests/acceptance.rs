//! The KeyValue acceptance suite on memstore: embedded (the backend
//! linked into the test) and through the process boundary (each test's
//! backend is its own `prism-pattern-memstore` process on a Unix socket).

mod embedded {
    #[allow(unused_imports)]
    use super::*;
    pattern_core::keyvalue_acceptance_suite!(
        mode = "embedded",
        pattern_memstore::MemstoreFactory,
        serde_json::json!({})
    );
}

mod process {
    #[allow(unused_imports)]
    use super::*;
    pattern_core::keyvalue_acceptance_suite!(
        mode = "process",
        pattern_core::acceptance::ProcessFactory::new(
            pattern_memstore::MemstoreFactory,
            env!("CARGO_BIN_EXE_prism-pattern-memstore"),
        ),
        serde_json::json!({})
    );
}
