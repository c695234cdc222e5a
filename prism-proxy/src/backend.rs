//! A namespace's open backend, whichever DAL it serves.

use std::sync::Arc;

use pattern_core::grpc::remote::PatternBackend;
use pattern_core::pubsub::PubSubBackend;
use pattern_core::timeseries::{TimeSeriesBackend, TimeSeriesSettings};
use pattern_core::{Backend, BackendError, Capabilities, KeyValueBackend, OpenContext};

use crate::config::NamespaceConfig;
use crate::dal::{self, Dal};
use crate::error::ProxyError;
use crate::resolver::Resolver;

/// The backend of one namespace: one trait object per DAL.
#[derive(Clone)]
pub enum DalBackend {
    KeyValue(Arc<dyn KeyValueBackend>),
    TimeSeries(Arc<dyn TimeSeriesBackend>),
    PubSub(Arc<dyn PubSubBackend>),
}

impl DalBackend {
    /// Opens `config`'s backend, linked into the proxy, from the factory
    /// the resolver holds for its DAL and kind; TimeSeries backends get
    /// the namespace's bucket.
    pub async fn open(
        config: &NamespaceConfig,
        resolver: &Resolver,
        ctx: OpenContext,
    ) -> Result<DalBackend, String> {
        let (dal, kind) = (config.dal, config.backend.kind.as_str());
        if dal == dal::KEYVALUE {
            return Ok(DalBackend::KeyValue(resolver.open(dal, kind, ctx).await?));
        }
        if dal == dal::TIMESERIES {
            let ctx = ctx.with_settings(TimeSeriesSettings {
                bucket: config.timeseries_settings().bucket,
            });
            return Ok(DalBackend::TimeSeries(resolver.open(dal, kind, ctx).await?));
        }
        if dal == dal::PUBSUB {
            return Ok(DalBackend::PubSub(resolver.open(dal, kind, ctx).await?));
        }
        Err(format!(
            "the {dal} DAL has no backend holder in this proxy; add it to DalBackend \
             (docs-cms/adding-a-dal.md)"
        ))
    }

    /// A backend served by a pattern (`mode: process` or `remote`), held
    /// as the trait of `dal`.
    pub fn from_pattern(dal: Dal, b: Arc<PatternBackend>) -> Result<DalBackend, String> {
        if dal == dal::KEYVALUE {
            return Ok(DalBackend::KeyValue(b));
        }
        if dal == dal::TIMESERIES {
            return Ok(DalBackend::TimeSeries(b));
        }
        if dal == dal::PUBSUB {
            return Ok(DalBackend::PubSub(b));
        }
        Err(format!(
            "the {dal} DAL has no backend holder in this proxy; add it to DalBackend \
             (docs-cms/adding-a-dal.md)"
        ))
    }

    /// The namespace's settings for its DAL as a pattern receives them
    /// (`InitializeRequest.settings_json`): TimeSeries sends its bucket.
    pub fn pattern_settings(config: &NamespaceConfig) -> serde_json::Value {
        if config.dal == dal::TIMESERIES {
            let bucket = config.timeseries_settings().bucket;
            return serde_json::json!({ "bucket_ms": u64::try_from(bucket.as_millis()).unwrap_or(u64::MAX).max(1) });
        }
        serde_json::Value::Null
    }

    /// The backend as the supertrait every DAL's backend extends.
    fn common(&self) -> &dyn Backend {
        match self {
            DalBackend::KeyValue(b) => b.as_ref(),
            DalBackend::TimeSeries(b) => b.as_ref(),
            DalBackend::PubSub(b) => b.as_ref(),
        }
    }

    /// The backend kind, e.g. `postgres`.
    pub fn kind(&self) -> &'static str {
        self.common().kind()
    }

    /// The DAL it serves.
    pub fn dal(&self) -> Dal {
        match self {
            DalBackend::KeyValue(_) => dal::KEYVALUE,
            DalBackend::TimeSeries(_) => dal::TIMESERIES,
            DalBackend::PubSub(_) => dal::PUBSUB,
        }
    }

    /// What the backend declares.
    pub fn capabilities(&self) -> Capabilities {
        self.common().capabilities()
    }

    /// Whether the backend can serve (readiness): a round trip to its
    /// store, whichever DAL it serves.
    pub async fn health(&self) -> Result<(), BackendError> {
        self.common().health().await
    }

    /// Releases the backend.
    pub async fn close(&self) -> Result<(), BackendError> {
        self.common().close().await
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
    dal.module().service
}
