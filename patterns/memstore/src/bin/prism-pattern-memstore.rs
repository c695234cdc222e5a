//! `prism-pattern-memstore`: the memstore KeyValue backend as a Prism pattern
//! process (see `pattern_core::grpc::host`).

fn main() -> std::process::ExitCode {
    pattern_core::grpc::host::main(pattern_memstore::MemstoreFactory)
}
