//! The TimeSeries acceptance suite on the memstore backend.

pattern_core::timeseries_acceptance_suite!(
    mode = "embedded",
    pattern_memstore::timeseries::MemTimeSeriesFactory,
    serde_json::json!({})
);
