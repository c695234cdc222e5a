//! `prism-pattern-memstore`: the memstore backends (KeyValue, TimeSeries) as a Prism pattern process
//! (see `pattern_core::grpc::host`).

use pattern_core::grpc::host::{self, Hosted};

fn main() -> std::process::ExitCode {
    host::main([
        Hosted::keyvalue(pattern_memstore::MemstoreFactory),
        Hosted::timeseries(pattern_memstore::timeseries::MemTimeSeriesFactory),
    ])
}
