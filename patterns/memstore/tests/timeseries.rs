//! The TimeSeries acceptance suite on the memstore backend.
//!
//! Every case runs twice: `embedded::` (the backend linked into the test)
//! and `process::` (each backend its own `prism-pattern-memstore` process,
//! reached over the pattern protocol).

mod embedded {
    pattern_core::timeseries_acceptance_suite!(
        mode = "embedded",
        pattern_memstore::timeseries::MemTimeSeriesFactory,
        serde_json::json!({})
    );
}

mod process {
    pattern_core::timeseries_acceptance_suite!(
        mode = "process",
        pattern_core::acceptance::ProcessFactory::timeseries(
            pattern_memstore::timeseries::MemTimeSeriesFactory,
            env!("CARGO_BIN_EXE_prism-pattern-memstore"),
        ),
        serde_json::json!({})
    );
}
