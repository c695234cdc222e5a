//! `prism-pattern-redis`: the redis backends (KeyValue, PubSub) as a Prism pattern process
//! (see `pattern_core::grpc::host`).

use pattern_core::grpc::host::{self, Hosted};

fn main() -> std::process::ExitCode {
    host::main([
        Hosted::keyvalue(pattern_redis::RedisFactory),
        Hosted::pubsub(pattern_redis::RedisPubSubFactory),
    ])
}
