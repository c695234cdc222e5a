//! `prismctl migrate start|status|wait|advance|rollback|abort|finalize`:
//! moving a namespace to another backend while it serves (ADR-016), one
//! explicit step at a time, through `AdminService/Migrate` and
//! `GetMigration`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;

use prism_proto::admin::v1::{
    GetMigrationRequest, MigrateRequest, MigrateResponse, MigrationStatus,
};

use crate::connect;
use crate::namespace;
use crate::output::{self, OutputFormat, Report, Table};
use crate::progress::Spinner;

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Begin moving NAMESPACE to another backend: writes then go to both
    /// (phase dual-write).
    Start {
        namespace: String,
        /// The backend to move to, as YAML or JSON, e.g.
        /// '{kind: postgres, options: {url: postgres://db/prism}}'.
        #[arg(long, required_unless_present = "to_file")]
        to: Option<String>,
        /// Read the backend to move to from this file.
        #[arg(long, conflicts_with = "to")]
        to_file: Option<std::path::PathBuf>,
        /// In shadow-read, the share of reads compared (0 to 1; default 0.05).
        #[arg(long)]
        read_sample: Option<f64>,
        /// Backfill speed limit, items per second (default: no limit).
        #[arg(long)]
        backfill_rate: Option<u32>,
        #[command(flatten)]
        force: Force,
    },
    /// Show the migration: phase, shadow writes, repairs, backfill
    /// progress, compared reads, mismatches and what blocks the next step.
    Status { namespace: String },
    /// Wait until nothing blocks the next step (e.g. the backfill
    /// finished), showing progress on stderr.
    Wait {
        namespace: String,
        /// Give up after this many seconds (default 3600).
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Enter the next phase: dual-write -> backfill -> shadow-read ->
    /// promoted.
    Advance {
        namespace: String,
        #[command(flatten)]
        force: Force,
    },
    /// Go back one phase (from dual-write: end the migration).
    Rollback { namespace: String },
    /// End the migration: the original backend is the only one again.
    Abort { namespace: String },
    /// End the migration from promoted: the new backend is the only one.
    Finalize {
        namespace: String,
        #[command(flatten)]
        force: Force,
    },
}

#[derive(Debug, Args)]
pub struct Force {
    /// Do the step even when its pre-flight check fails (says what it
    /// overrode).
    #[arg(long)]
    force: bool,
}

/// The status as printed.
#[derive(Debug, Serialize)]
struct StatusView {
    namespace: String,
    version: u64,
    phase: String,
    source: String,
    target: String,
    shadow_writes: u64,
    shadow_failures: u64,
    repairs_queued: u64,
    repaired: u64,
    reads_compared: u64,
    mismatches: u64,
    mismatch_samples: Vec<SampleView>,
    backfill: Option<BackfillView>,
    backfill_error: String,
    blockers: Vec<String>,
}

#[derive(Debug, Serialize)]
struct SampleView {
    id: String,
    key: String,
    kind: String,
}

#[derive(Debug, Serialize)]
struct BackfillView {
    items: u64,
    bytes: u64,
    total_items: Option<u64>,
    items_per_second: f64,
    eta_seconds: Option<f64>,
    finished: bool,
}

impl From<MigrationStatus> for StatusView {
    fn from(s: MigrationStatus) -> Self {
        StatusView {
            namespace: s.namespace,
            version: s.version,
            phase: s.phase,
            source: s.source,
            target: s.target,
            shadow_writes: s.shadow_writes,
            shadow_failures: s.shadow_failures,
            repairs_queued: s.repairs_queued,
            repaired: s.repaired,
            reads_compared: s.reads_compared,
            mismatches: s.mismatches,
            mismatch_samples: s
                .mismatch_samples
                .into_iter()
                .map(|m| SampleView {
                    id: m.id,
                    key: m.key,
                    kind: m.kind,
                })
                .collect(),
            backfill: s.backfill.map(|b| BackfillView {
                items: b.items,
                bytes: b.bytes,
                total_items: b.total_items,
                items_per_second: b.items_per_second,
                eta_seconds: b.eta_seconds,
                finished: b.finished,
            }),
            backfill_error: s.backfill_error,
            blockers: s.blockers,
        }
    }
}

impl BackfillView {
    fn line(&self) -> String {
        let total = self
            .total_items
            .map_or_else(|| "?".to_string(), |t| t.to_string());
        let eta = match (self.finished, self.eta_seconds) {
            (true, _) => "done".to_string(),
            (false, Some(s)) => format!("ETA {s:.0}s"),
            (false, None) => "ETA unknown".to_string(),
        };
        format!(
            "{}/{total} items, {} bytes, {:.0} items/s, {eta}",
            self.items, self.bytes, self.items_per_second
        )
    }
}

impl Report for StatusView {
    fn table(&self) -> Table {
        let mut t = Table::new(vec!["FIELD", "VALUE"]);
        let mut row = |k: &str, v: String| t.push(vec![k.to_string(), v]);
        if self.phase.is_empty() {
            row("namespace", self.namespace.clone());
            row("phase", format!("not migrating (backend {})", self.source));
            return t;
        }
        row(
            "namespace",
            format!("{} (version {})", self.namespace, self.version),
        );
        row("phase", self.phase.clone());
        row("from -> to", format!("{} -> {}", self.source, self.target));
        row(
            "shadow writes",
            format!("{} ok, {} failed", self.shadow_writes, self.shadow_failures),
        );
        row(
            "repairs",
            format!("{} queued, {} done", self.repairs_queued, self.repaired),
        );
        row(
            "backfill",
            self.backfill
                .as_ref()
                .map_or_else(|| "not started".to_string(), BackfillView::line),
        );
        if !self.backfill_error.is_empty() {
            row("backfill error", self.backfill_error.clone());
        }
        row(
            "shadow reads",
            format!(
                "{} compared, {} mismatched",
                self.reads_compared, self.mismatches
            ),
        );
        for m in &self.mismatch_samples {
            row(
                "  mismatch",
                format!("{} id {} key {}", m.kind, m.id, m.key),
            );
        }
        row(
            "next step",
            if self.blockers.is_empty() {
                "ready (prismctl migrate advance)".to_string()
            } else {
                format!("blocked: {}", self.blockers.join("; "))
            },
        );
        t
    }
}

/// The result of a step, as printed.
#[derive(Debug, Serialize)]
struct StepView {
    namespace: String,
    version: u64,
    phase: String,
    forced: Vec<String>,
}

impl From<MigrateResponse> for StepView {
    fn from(r: MigrateResponse) -> Self {
        StepView {
            namespace: r.name,
            version: r.version,
            phase: r.phase,
            forced: r.forced,
        }
    }
}

impl Report for StepView {
    fn table(&self) -> Table {
        let mut t = Table::new(vec!["NAMESPACE", "VERSION", "PHASE"]);
        let phase = if self.phase.is_empty() {
            "migration ended".to_string()
        } else {
            self.phase.clone()
        };
        t.push(vec![
            self.namespace.clone(),
            self.version.to_string(),
            phase,
        ]);
        t
    }
}

pub async fn run(
    command: MigrateCommand,
    target: &connect::Target,
    format: OutputFormat,
) -> Result<()> {
    let mut client = namespace::client(target).await?;
    let (name, action, to, read_sample, backfill_rate, force) = match command {
        MigrateCommand::Status { namespace } => {
            let s = client
                .get_migration(GetMigrationRequest { name: namespace })
                .await?
                .into_inner();
            return output::print(format, &StatusView::from(s));
        }
        MigrateCommand::Wait { namespace, timeout } => {
            return wait(&mut client, namespace, Duration::from_secs(timeout), format).await;
        }
        MigrateCommand::Start {
            namespace,
            to,
            to_file,
            read_sample,
            backfill_rate,
            force,
        } => {
            let to = match (to, to_file) {
                (Some(to), _) => to,
                (None, Some(file)) => std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?,
                (None, None) => bail!("give the backend to move to with --to or --to-file"),
            };
            (
                namespace,
                "start",
                to,
                read_sample,
                backfill_rate,
                force.force,
            )
        }
        MigrateCommand::Advance { namespace, force } => {
            (namespace, "advance", String::new(), None, None, force.force)
        }
        MigrateCommand::Rollback { namespace } => {
            (namespace, "rollback", String::new(), None, None, false)
        }
        MigrateCommand::Abort { namespace } => {
            (namespace, "abort", String::new(), None, None, false)
        }
        MigrateCommand::Finalize { namespace, force } => (
            namespace,
            "finalize",
            String::new(),
            None,
            None,
            force.force,
        ),
    };
    let spinner = Spinner::start(format!("migrate {action} {name}"));
    let response = client
        .migrate(MigrateRequest {
            name,
            action: action.to_string(),
            to,
            read_sample,
            backfill_rate,
            force,
        })
        .await;
    spinner.finish();
    let view = StepView::from(response?.into_inner());
    for f in &view.forced {
        eprintln!("prismctl: warning: forced past: {f}");
    }
    output::print(format, &view)
}

/// Polls the status until nothing blocks the next step; prints progress
/// lines on stderr, then the status.
async fn wait(
    client: &mut namespace::Client,
    name: String,
    timeout: Duration,
    format: OutputFormat,
) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let s = StatusView::from(
            client
                .get_migration(GetMigrationRequest { name: name.clone() })
                .await?
                .into_inner(),
        );
        if s.phase.is_empty() {
            bail!("'{name}' is not migrating");
        }
        // `promoted` always lists finalize as its next step.
        if s.blockers.is_empty() || s.phase == "promoted" {
            return output::print(format, &s);
        }
        let line = match &s.backfill {
            Some(b) if !b.finished => format!("backfill: {}", b.line()),
            _ => format!("waiting: {}", s.blockers.join("; ")),
        };
        if line != last {
            eprintln!("prismctl: {line}");
            last = line;
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "'{name}' still blocked after {}s: {}",
                timeout.as_secs(),
                s.blockers.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
