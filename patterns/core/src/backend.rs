//! What every backend of every DAL is, and the one factory shape through
//! which the proxy's resolver opens any of them.
//!
//! A DAL's backend trait (`KeyValueBackend`, `TimeSeriesBackend`,
//! `PubSubBackend`, ...) extends [`Backend`]; a backend crate implements
//! [`Factory`] once per DAL it serves, with `type Backend` naming that DAL's
//! trait object.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::clock::Clock;
use crate::error::BackendError;
use crate::needs::NeedsProfile;

/// What every backend of every DAL offers the proxy.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The backend kind, as named in namespace configuration
    /// (`memstore`, `sqlite`, ...). Called for status output and errors.
    fn kind(&self) -> &'static str;

    /// The capabilities this backend declares. Called once when the
    /// namespace loads and by the proxy before calls that need one; must be
    /// constant for the backend's lifetime.
    fn capabilities(&self) -> Capabilities;

    /// Checks that the backend can serve, with a round trip to its store
    /// (a query, a ping); an in-process store answers from memory. Called
    /// by readiness probes and `prismctl health`; returns the store's error
    /// when it cannot be reached.
    async fn health(&self) -> Result<(), BackendError>;

    /// Flushes and releases resources; called once when the proxy shuts
    /// down, after in-flight calls have finished or the shutdown grace
    /// period has passed. Calls still running after that may fail.
    async fn close(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// What a factory gets to open a backend for one namespace.
#[derive(Clone)]
pub struct OpenContext {
    /// The namespace the backend serves.
    pub namespace: String,
    /// The proxy's data directory, for backends that keep files.
    pub data_dir: PathBuf,
    /// The clock for TTLs and retention.
    pub clock: Arc<dyn Clock>,
    /// The namespace's backend options, which
    /// [`Factory::check_options`] accepted.
    pub options: serde_json::Value,
    /// The DAL's own settings of the namespace (for TimeSeries, a
    /// `timeseries::TimeSeriesSettings`), read with
    /// [`OpenContext::settings`].
    settings: Option<Arc<dyn Any + Send + Sync>>,
}

impl fmt::Debug for OpenContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenContext")
            .field("namespace", &self.namespace)
            .field("data_dir", &self.data_dir)
            .field("options", &self.options)
            .field("settings", &self.settings.is_some())
            .finish_non_exhaustive()
    }
}

impl OpenContext {
    /// A context without options or DAL settings.
    pub fn new(
        namespace: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        OpenContext {
            namespace: namespace.into(),
            data_dir: data_dir.into(),
            clock,
            options: serde_json::Value::Null,
            settings: None,
        }
    }

    /// This context with the namespace's backend options.
    pub fn with_options(mut self, options: serde_json::Value) -> Self {
        self.options = options;
        self
    }

    /// This context with the DAL's settings of the namespace.
    pub fn with_settings<T: Any + Send + Sync>(mut self, settings: T) -> Self {
        self.settings = Some(Arc::new(settings));
        self
    }

    /// The DAL settings of type `T`, if the proxy gave some.
    pub fn settings<T: Any>(&self) -> Option<&T> {
        self.settings.as_deref().and_then(|s| s.downcast_ref())
    }
}

/// Opens backends of one kind for one DAL from configuration. The proxy's
/// resolver maps each (DAL, kind) to its factory; the pattern host serves
/// one factory as a pattern process.
#[async_trait]
pub trait Factory: Send + Sync + 'static {
    /// The DAL's backend trait object, e.g. `dyn KeyValueBackend`.
    type Backend: ?Sized + Backend;

    /// The kind this factory opens, as written in namespace configuration.
    fn kind(&self) -> &'static str;

    /// What a backend of this kind promises (consistency, durability,
    /// scope, rates, ...), against which `needs:` of a namespace are
    /// checked; called when a namespace that states needs loads.
    fn needs_profile(&self) -> NeedsProfile;

    /// Checks the namespace's backend `options` without opening anything;
    /// called when configuration is loaded, so a bad option stops start-up
    /// (or a `--check`) before any backend opens. Unknown fields must be
    /// refused with [`BackendError::Config`] naming the field and the
    /// allowed ones.
    fn check_options(&self, options: &serde_json::Value) -> Result<(), BackendError>;

    /// The option names that decide where a namespace's data lives or
    /// which server the backend connects to ([`crate::placement`]): only
    /// an operator may change them. Default: every option.
    fn placement_options(&self) -> &'static [&'static str] {
        &[crate::placement::ALL_OPTIONS]
    }

    /// Whether the placement options' defaults keep a namespace's data
    /// private to this proxy: no server is reached, and any file is the
    /// namespace's own. Only then may a namespace admin choose this kind
    /// with its placement options unset. Default: false.
    fn default_placement_is_private(&self) -> bool {
        false
    }

    /// The files, relative to the data directory, that a backend opened
    /// for `namespace` with `options` keeps; no other namespace may use
    /// them. Default: none.
    fn data_files(&self, namespace: &str, options: &serde_json::Value) -> Vec<PathBuf> {
        let _ = (namespace, options);
        Vec::new()
    }

    /// Opens a backend for `ctx.namespace` with `ctx.options`, which
    /// [`Factory::check_options`] accepted.
    async fn open(&self, ctx: OpenContext) -> Result<Arc<Self::Backend>, BackendError>;
}
