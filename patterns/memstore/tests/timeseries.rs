//! The TimeSeries acceptance suite on the memstore backend.

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
