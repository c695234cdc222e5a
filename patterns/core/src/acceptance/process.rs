//! Runs the acceptance suite through the process boundary: every backend
//! opened is a pattern process started from the backend's pattern binary.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::OpenContext;
use crate::error::BackendError;
use crate::grpc::process::{PatternSpec, ProcessBackend};
use crate::keyvalue::{KeyValueBackend, KeyValueFactory};

/// A factory that opens each backend as its own pattern process, running
/// `binary` (the backend's `prism-pattern-<kind>`). Options are checked by
/// the wrapped factory, as the proxy does. The process gets the test's
/// clock with every call (`--test-clock`), so TTL cases can move time.
pub struct ProcessFactory {
    inner: Arc<dyn KeyValueFactory>,
    binary: PathBuf,
}

impl ProcessFactory {
    pub fn new(inner: impl KeyValueFactory, binary: impl Into<PathBuf>) -> Self {
        ProcessFactory {
            inner: Arc::new(inner),
            binary: binary.into(),
        }
    }
}

#[async_trait]
impl crate::Factory for ProcessFactory {
    type Backend = dyn KeyValueBackend;

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn needs_profile(&self) -> crate::needs::NeedsProfile {
        self.inner.needs_profile()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError> {
        self.inner.check_options(options)
    }

    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError> {
        let mut spec = PatternSpec::new(&ctx.namespace, self.inner.kind(), &self.binary);
        spec.options = ctx.options;
        spec.data_dir = ctx.data_dir;
        spec.test_clock = Some(ctx.clock);
        Ok(Arc::new(ProcessBackend::start(spec).await?))
    }
}
