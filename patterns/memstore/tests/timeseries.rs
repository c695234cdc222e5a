//! The TimeSeries acceptance suite on the memstore backend.

mod embedded {
    pattern_core::timeseries_acceptance_suite!(
        mode = "embedded",
        pattern_memstore::timeseries::MemTimeSeriesFactory,
        serde_json::json!({})
    );
}
