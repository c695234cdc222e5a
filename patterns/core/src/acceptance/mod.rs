//! The acceptance suite every backend runs against its real engine.
//!
//! A backend crate runs the whole suite with one macro call in its tests:
//!
//! ```ignore
//! pattern_core::keyvalue_acceptance_suite!(MyFactory, serde_json::json!({}));
//! ```
//!
//! Each test opens a fresh backend for a namespace of its own (unique name,
//! own data directory), so tests and backends run in parallel. Tests that
//! need a capability the backend does not declare check that the backend
//! refuses cleanly instead.

pub mod fixtures;
pub mod keyvalue;
mod process;
pub mod pubsub;
mod report;
pub mod timeseries;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use process::ProcessFactory;
pub use report::{CaseReport, CaseSubject};
pub use timeseries::TimeSeriesHarness;

use crate::OpenContext;
use crate::capabilities::Capabilities;
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::keyvalue::{KeyValueBackend, KeyValueFactory};

/// Opens backends for acceptance tests.
pub struct Harness {
    factory: Arc<dyn KeyValueFactory>,
    options: serde_json::Value,
    dir: tempfile::TempDir,
    mode: &'static str,
    /// What the last opened backend declared, for the report.
    claimed: Mutex<Option<Capabilities>>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Harness {
    /// A harness opening backends with `factory` and `options`.
    pub fn new(factory: Arc<dyn KeyValueFactory>, options: serde_json::Value) -> Self {
        Harness {
            factory,
            options,
            dir: tempfile::tempdir().expect("creating a temporary data directory"),
            mode: "embedded",
            claimed: Mutex::new(None),
        }
    }

    /// This harness, reporting its runs under `mode` (`embedded` or
    /// `process`).
    pub fn with_mode(mut self, mode: &'static str) -> Self {
        self.mode = mode;
        self
    }

    /// The backend kind under test.
    pub fn backend_kind(&self) -> &'static str {
        self.factory.kind()
    }

    /// `embedded` or `process`.
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// The capabilities the last opened backend declared.
    pub fn claimed(&self) -> Option<Capabilities> {
        *self.claimed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A unique namespace name for one test: unique within the process
    /// (a counter) and across runs (process id and start time), so
    /// backends that keep data between runs never see an old namespace.
    pub fn unique_namespace(test: &str) -> String {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let started = SystemClock.now_ms();
        format!("acc-{test}-{}-{started}-{n}", std::process::id())
    }

    /// Opens a backend for a fresh namespace with the system clock.
    pub async fn open(&self, test: &str) -> Arc<dyn KeyValueBackend> {
        self.open_with_clock(test, Arc::new(SystemClock)).await
    }

    /// Opens a backend for a fresh namespace with a manual clock.
    pub async fn open_manual(&self, test: &str) -> (Arc<dyn KeyValueBackend>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::starting_now());
        (self.open_with_clock(test, clock.clone()).await, clock)
    }

    async fn open_with_clock(&self, test: &str, clock: Arc<dyn Clock>) -> Arc<dyn KeyValueBackend> {
        let ctx = OpenContext::new(Self::unique_namespace(test), self.dir.path(), clock)
            .with_options(self.options.clone());
        let backend = self
            .factory
            .open(ctx)
            .await
            .unwrap_or_else(|e| panic!("opening the backend: {e}"));
        *self.claimed.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend.capabilities());
        backend
    }
}

/// Runs the whole KeyValue acceptance suite: one `#[tokio::test]` per case.
/// `$factory` is a value implementing [`KeyValueFactory`], `$options` the
/// backend options as a `serde_json::Value`; `mode = "process"` labels the
/// run in reports (default `embedded`), and any attributes given first
/// (such as `#[ignore = "..."]`) apply to every case. The calling crate
/// needs `tokio` (with `macros` and `rt-multi-thread`) as a dependency.
///
/// With `PRISM_ACCEPTANCE_REPORT` set to a file, every case appends one
/// JSON line to it (see [`CaseReport`]); the parallel acceptance runner in
/// `tooling/` builds its backend × capability matrix from them.
#[macro_export]
macro_rules! keyvalue_acceptance_suite {
    ($(#[$attr:meta])* mode = $mode:literal, $factory:expr, $options:expr) => {
        $crate::keyvalue_acceptance_suite!(@cases [$(#[$attr])*] $mode, $factory, $options;
            put_get_roundtrip,
            selections,
            delete_selections,
            paging_by_bytes,
            oversized_item_pages_alone,
            scan_pages,
            ttl_expiry,
            conditional_writes,
            idempotency_tokens,
            mutate_atomicity,
            concurrent_writers,
            unicode_and_binary_keys,
            empty_and_large_values,
            snapshot_scan,
            versions_survive_deletes
        );
    };
    ($(#[$attr:meta])* $factory:expr, $options:expr) => {
        $crate::keyvalue_acceptance_suite!($(#[$attr])* mode = "embedded", $factory, $options);
    };
    (@cases $attrs:tt $mode:literal, $factory:expr, $options:expr; $($case:ident),* $(,)?) => {
        $(
            $crate::keyvalue_acceptance_suite!(@case $attrs $mode, $factory, $options, $case);
        )*
    };
    (@case [$($attr:tt)*] $mode:literal, $factory:expr, $options:expr, $case:ident) => {
        $($attr)*
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let harness = $crate::acceptance::Harness::new(
                ::std::sync::Arc::new($factory),
                $options,
            )
            .with_mode($mode);
            let report = $crate::acceptance::CaseReport::start(
                &harness,
                "keyvalue",
                stringify!($case),
                $crate::acceptance::keyvalue::case_capability(stringify!($case)),
            );
            $crate::acceptance::keyvalue::$case(&harness).await;
            report.passed();
        }
    };
}
