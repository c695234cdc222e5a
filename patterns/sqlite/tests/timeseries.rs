//! The TimeSeries acceptance suite on the sqlite backend (one file per
//! namespace in the harness's temporary data directory).
//!
//! Every case runs twice: `embedded::` (the backend linked into the test)
//! and `process::` (each backend its own `prism-pattern-sqlite` process,
//! reached over the pattern protocol).

mod embedded {
    pattern_core::timeseries_acceptance_suite!(
        mode = "embedded",
        pattern_sqlite::SqliteTimeSeriesFactory,
        serde_json::json!({})
    );
}

mod process {
    pattern_core::timeseries_acceptance_suite!(
        mode = "process",
        pattern_core::acceptance::ProcessFactory::timeseries(
            pattern_sqlite::SqliteTimeSeriesFactory,
            env!("CARGO_BIN_EXE_prism-pattern-sqlite"),
        ),
        serde_json::json!({})
    );
}
