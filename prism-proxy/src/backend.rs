//! A namespace's open backend, whichever DAL it serves.

use std::sync::Arc;

use pattern_core::pubsub::PubSubBackend;
use pattern_core::timeseries::TimeSeriesBackend;
use pattern_core::{BackendError, Capabilities, KeyValueBackend};

use crate::config::Dal;
use crate::error::ProxyError;

/// The backend of one namespace: one trait object per DAL.
#[derive(Clone)]
pub enum DalBackend {
    KeyValue(Arc<dyn KeyValueBackend>),
    TimeSeries(Arc<dyn TimeSeriesBackend>),
    PubSub(Arc<dyn PubSubBackend>),
}

impl DalBackend {
    /// The backend kind, e.g. `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            DalBackend::KeyValue(b) => b.kind(),
            DalBackend::TimeSeries(b) => b.kind(),
            DalBackend::PubSub(b) => b.kind(),
        }
    }

    /// The DAL it serves.
    pub fn dal(&self) -> Dal {
        match self {
            DalBackend::KeyValue(_) => Dal::Keyvalue,
            DalBackend::TimeSeries(_) => Dal::Timeseries,
            DalBackend::PubSub(_) => Dal::Pubsub,
        }
    }

    /// What the backend declares.
    pub fn capabilities(&self) -> Capabilities {
        match self {
            DalBackend::KeyValue(b) => b.capabilities(),
            DalBackend::TimeSeries(b) => b.capabilities(),
            DalBackend::PubSub(b) => b.capabilities(),
        }
    }

    /// Whether the backend can serve (readiness).
    pub async fn health(&self) -> Result<(), BackendError> {
        match self {
            DalBackend::KeyValue(b) => b.health().await,
            DalBackend::TimeSeries(_) | DalBackend::PubSub(_) => Ok(()),
        }
    }

    /// Releases the backend.
    pub async fn close(&self) -> Result<(), BackendError> {
        match self {
            DalBackend::KeyValue(b) => b.close().await,
            DalBackend::TimeSeries(b) => b.close().await,
            DalBackend::PubSub(b) => b.close().await,
        }
    }

    /// Whether both are the same backend instance.
    pub fn same(&self, other: &DalBackend) -> bool {
        match (self, other) {
            (DalBackend::KeyValue(a), DalBackend::KeyValue(b)) => Arc::ptr_eq(a, b),
            (DalBackend::TimeSeries(a), DalBackend::TimeSeries(b)) => Arc::ptr_eq(a, b),
            (DalBackend::PubSub(a), DalBackend::PubSub(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The error of a call of one DAL on a namespace of another.
pub fn wrong_dal(namespace: &str, has: Dal, wanted: Dal) -> ProxyError {
    ProxyError::FailedPrecondition(format!(
        "namespace '{namespace}' serves the {} DAL, not {}; call the {} service for it, or use \
         a {} namespace",
        has.name(),
        wanted.name(),
        service_name(has),
        wanted.name()
    ))
}

fn service_name(dal: Dal) -> &'static str {
    match dal {
        Dal::Keyvalue => "prism.keyvalue.v1.KeyValueService",
        Dal::Timeseries => "prism.timeseries.v1.TimeSeriesService",
        Dal::Pubsub => "prism.pubsub.v1.PubSubService",
    }
}
