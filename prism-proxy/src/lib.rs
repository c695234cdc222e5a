//! The Prism data access gateway.
//!
//! A client's call flows: gRPC listener → DAL service (validation against
//! the namespace's limits) → namespace registry lookup → the namespace's
//! backend (a [`pattern_core::KeyValueBackend`]) → back, with metrics
//! recorded around every call. See `ARCHITECTURE.md` for where auth, PII
//! masking, audit and shadowing slot in.

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod config;
pub mod dal;
pub mod duration;
pub mod error;
pub mod inflight;
pub mod kv;
pub mod limits;
pub mod listener;
pub mod malformed;
pub mod manage;
pub mod metrics;
pub mod migration;
#[cfg(test)]
mod module_graph;
pub mod permission;
pub mod pipeline;
pub mod policy;
pub mod pubsub;
pub mod registry;
pub mod resolver;
pub mod retention;
pub mod schema;
pub mod server;
pub mod status;
pub mod store;
pub mod timeseries;

pub use config::ProxyConfig;
pub use server::{RunningProxy, StartError, start};
