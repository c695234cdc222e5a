//! Runs an acceptance suite through the process boundary: every backend
//! opened is a pattern process started from the backend's pattern binary.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::OpenContext;
use crate::error::BackendError;
use crate::grpc::process::PatternSpec;
use crate::grpc::remote::PatternBackend;
use crate::keyvalue::{KeyValueBackend, KeyValueFactory};
use crate::pubsub::{PubSubBackend, PubSubFactory};
use crate::timeseries::{TimeSeriesBackend, TimeSeriesFactory, TimeSeriesSettings};

/// A factory that opens each backend as its own pattern process, running
/// `binary` (the backend's `prism-pattern-<kind>`). Options are checked by
/// the wrapped factory, as the proxy does. A KeyValue process gets the
/// test's clock with every call (`--test-clock`), so TTL cases can move
/// time; the TimeSeries and PubSub suites run on the system clock.
pub struct ProcessFactory<B: ?Sized + crate::Backend = dyn KeyValueBackend> {
    inner: Arc<dyn crate::Factory<Backend = B>>,
    binary: PathBuf,
    dal: &'static str,
    as_dal: fn(Arc<PatternBackend>) -> Arc<B>,
}

impl ProcessFactory {
    /// KeyValue backends of `inner`'s kind, each in a process of `binary`.
    pub fn new(inner: impl KeyValueFactory, binary: impl Into<PathBuf>) -> Self {
        ProcessFactory {
            inner: Arc::new(inner),
            binary: binary.into(),
            dal: crate::keyvalue::DAL,
            as_dal: |b| b,
        }
    }

    /// TimeSeries backends of `inner`'s kind, each in a process of
    /// `binary`.
    pub fn timeseries(
        inner: impl TimeSeriesFactory,
        binary: impl Into<PathBuf>,
    ) -> ProcessFactory<dyn TimeSeriesBackend> {
        ProcessFactory {
            inner: Arc::new(inner),
            binary: binary.into(),
            dal: crate::timeseries::DAL,
            as_dal: |b| b,
        }
    }

    /// PubSub backends of `inner`'s kind, each in a process of `binary`.
    pub fn pubsub(
        inner: impl PubSubFactory,
        binary: impl Into<PathBuf>,
    ) -> ProcessFactory<dyn PubSubBackend> {
        ProcessFactory {
            inner: Arc::new(inner),
            binary: binary.into(),
            dal: crate::pubsub::DAL,
            as_dal: |b| b,
        }
    }
}

#[async_trait]
impl<B: ?Sized + crate::Backend + 'static> crate::Factory for ProcessFactory<B> {
    type Backend = B;

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn needs_profile(&self) -> crate::needs::NeedsProfile {
        self.inner.needs_profile()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        self.inner.check_options(options)
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<B>, BackendError> {
        let mut spec = PatternSpec::new(&ctx.namespace, self.inner.kind(), &self.binary);
        spec.dal = self.dal.to_string();
        if let Some(settings) = ctx.settings::<TimeSeriesSettings>() {
            spec.settings = serde_json::json!({ "bucket_ms": u64::try_from(settings.bucket.as_millis()).unwrap_or(u64::MAX).max(1) });
        }
        spec.options = ctx.options;
        spec.data_dir = ctx.data_dir;
        if self.dal == crate::keyvalue::DAL {
            spec.test_clock = Some(ctx.clock);
        }
        Ok((self.as_dal)(Arc::new(PatternBackend::start(spec).await?)))
    }
}
