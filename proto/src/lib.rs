//! Prism's protobuf APIs. The `.proto` files under `proto/prism/` are the
//! source of truth; this crate holds the Rust code generated from them.

#![forbid(unsafe_code)]
#![allow(clippy::doc_overindented_list_items, clippy::large_enum_variant)]

/// The encoded `FileDescriptorSet` of every Prism proto, for gRPC server
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/prism_descriptor.bin"));

pub mod codec;

pub mod keyvalue {
    /// `prism.keyvalue.v1`: the KeyValue DAL.
    pub mod v1 {
        tonic::include_proto!("prism.keyvalue.v1");
    }
}

pub mod timeseries {
    /// `prism.timeseries.v1`: the TimeSeries DAL.
    pub mod v1 {
        tonic::include_proto!("prism.timeseries.v1");
    }
}

pub mod pubsub {
    /// `prism.pubsub.v1`: the PubSub DAL.
    pub mod v1 {
        tonic::include_proto!("prism.pubsub.v1");
    }
}

pub mod pattern {
    /// `prism.pattern.v1`: the lifecycle protocol between the proxy and a
    /// pattern process.
    pub mod v1 {
        tonic::include_proto!("prism.pattern.v1");
    }
}

pub mod admin {
    /// `prism.admin.v1`: the admin API.
    pub mod v1 {
        tonic::include_proto!("prism.admin.v1");
    }
}

pub mod options {
    /// `prism.options.v1`: the schema annotations (`pii`, `index`,
    /// `consistency`, ...) an application puts on the message that types a
    /// namespace's values.
    pub mod v1 {
        tonic::include_proto!("prism.options.v1");

        /// The source of `prism/options/v1/options.proto`, which the proxy
        /// provides to every schema it compiles under that import path.
        pub const OPTIONS_PROTO: &str = include_str!("../prism/options/v1/options.proto");
        /// The import path schemas use for [`OPTIONS_PROTO`].
        pub const OPTIONS_PROTO_PATH: &str = "prism/options/v1/options.proto";
    }
}
