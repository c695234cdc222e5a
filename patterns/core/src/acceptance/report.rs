//! Machine-readable results of acceptance cases, for the parallel
//! acceptance runner (`tooling/acceptance.py`).
//!
//! With `PRISM_ACCEPTANCE_REPORT` naming a file, every case appends one JSON
//! line when it ends:
//!
//! ```json
//! {"suite":"keyvalue","backend":"redis","mode":"process","case":"ttl_expiry",
//!  "capability":"ttl","claimed":["ttl","scan"],"outcome":"passed","seconds":0.42}
//! ```
//!
//! `outcome` is `passed`, `failed` (the case panicked), or `not_applicable`
//! (the case's capability is not claimed, so it only checked that the
//! backend refuses cleanly). `claimed` is null when the case failed before
//! a backend opened.

use std::io::Write;
use std::time::Instant;

use crate::capabilities::{Capabilities, Capability};

/// The environment variable naming the report file.
pub const REPORT_ENV: &str = "PRISM_ACCEPTANCE_REPORT";

/// What a report line says about the run: implemented by every suite's
/// harness ([`super::Harness`], [`super::pubsub::PubSubHarness`]).
pub trait ReportSource {
    /// The backend kind under test.
    fn backend_kind(&self) -> &'static str;
    /// `embedded` or `process`.
    fn mode(&self) -> &'static str;
    /// The capabilities the last opened backend declared.
    fn claimed(&self) -> Option<Capabilities>;
}

impl ReportSource for super::Harness {
    fn backend_kind(&self) -> &'static str {
        super::Harness::backend_kind(self)
    }
    fn mode(&self) -> &'static str {
        super::Harness::mode(self)
    }
    fn claimed(&self) -> Option<Capabilities> {
        super::Harness::claimed(self)
    }
}

/// Records one case's outcome when dropped: `failed` unless
/// [`CaseReport::passed`] was called first.
pub struct CaseReport<'a> {
    harness: &'a dyn ReportSource,
    suite: &'static str,
    case: &'static str,
    capability: Option<Capability>,
    started: Instant,
    passed: bool,
}

impl<'a> CaseReport<'a> {
    /// Starts timing a case.
    pub fn start(
        harness: &'a dyn ReportSource,
        suite: &'static str,
        case: &'static str,
        capability: Option<Capability>,
    ) -> Self {
        CaseReport {
            harness,
            suite,
            case,
            capability,
            started: Instant::now(),
            passed: false,
        }
    }

    /// Marks the case as passed (or not applicable) and writes its line.
    pub fn passed(mut self) {
        self.passed = true;
    }

    fn outcome(&self) -> &'static str {
        if !self.passed {
            return "failed";
        }
        match (self.capability, self.harness.claimed()) {
            (Some(cap), Some(claimed)) if !claimed.has(cap) => "not_applicable",
            _ => "passed",
        }
    }

    fn line(&self) -> String {
        let claimed = self.harness.claimed().map(|c| c.names());
        let line = serde_json::json!({
            "suite": self.suite,
            "backend": self.harness.backend_kind(),
            "mode": self.harness.mode(),
            "case": self.case,
            "capability": self.capability.map(Capability::name),
            "claimed": claimed,
            "outcome": self.outcome(),
            "seconds": self.started.elapsed().as_secs_f64(),
        });
        format!("{line}\n")
    }
}

impl Drop for CaseReport<'_> {
    fn drop(&mut self) {
        let Some(path) = std::env::var_os(REPORT_ENV) else {
            return;
        };
        let line = self.line();
        // One write of one short line to a file opened for appending: lines
        // from parallel cases do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("cannot append to {}: {e}", path.to_string_lossy());
        }
    }
}
