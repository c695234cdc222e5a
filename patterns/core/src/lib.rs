//! The Prism pattern SDK.
//!
//! A *backend* stores a DAL's data in one engine (memstore, SQLite, ...).
//! This crate defines, per DAL, the one async trait every backend implements
//! and the capabilities it declares, the factory through which the proxy's
//! resolver opens a backend from configuration, the shared pieces every
//! backend needs (page tokens, request fingerprints, a clock; each DAL's
//! page cursor lives in its DAL's module), and — behind the `acceptance`
//! feature — the acceptance suite every backend runs.

#![forbid(unsafe_code)]

pub mod backend;
pub mod background;
pub mod capabilities;
pub mod clock;
pub mod deadline;
pub mod error;
pub mod idempotency;
pub mod keyvalue;
pub mod needs;
pub mod paging;
pub mod placement;
pub mod pubsub;
pub mod timeseries;

#[cfg(feature = "acceptance")]
pub mod acceptance;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(any(test, feature = "module-graph"))]
pub mod module_graph;

pub use backend::{Backend, Factory, OpenContext};
pub use capabilities::{Capabilities, Capability};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{BackendError, bounded, display_key, quote, status};
pub use idempotency::{Fingerprint, IdempotencyKey};
pub use keyvalue::{
    Cursor, Item, KeyValueBackend, KeyValueFactory, Mutation, MutationOutcome, Page, PageRequest,
    PutItem, ScanEntry, Selection, WriteOutcome,
};
