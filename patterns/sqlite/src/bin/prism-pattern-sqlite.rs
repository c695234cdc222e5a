//! `prism-pattern-sqlite`: the sqlite backends (KeyValue, TimeSeries) as a Prism pattern process
//! (see `pattern_core::grpc::host`).

use pattern_core::grpc::host::{self, Hosted};

fn main() -> std::process::ExitCode {
    host::main([
        Hosted::keyvalue(pattern_sqlite::SqliteFactory),
        Hosted::timeseries(pattern_sqlite::SqliteTimeSeriesFactory),
    ])
}
