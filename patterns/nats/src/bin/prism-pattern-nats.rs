//! `prism-pattern-nats`: the nats backends (PubSub) as a Prism pattern process
//! (see `pattern_core::grpc::host`).

use pattern_core::grpc::host::{self, Hosted};

fn main() -> std::process::ExitCode {
    host::main([Hosted::pubsub(pattern_nats::NatsFactory)])
}
