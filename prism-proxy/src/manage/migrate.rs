//! The migration's operator steps (ADR-016): each one rewrites the
//! namespace's `migration:` section (and, at the end, `backend:`) and
//! applies it through [`Manager::apply`], after a pre-flight check. The
//! phase then reaches every proxy through the config store.

use std::sync::Arc;

use serde::Serialize;

use super::{ApplyOutcome, ManageError, Manager};

use crate::config::{BackendSpec, MigrationPhase};
use crate::migration::{Checkpoint, MismatchSample, now_ms};
use crate::registry::Namespace;

/// An operator step.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrateAction {
    /// Begins a migration to `to` in `dual-write`.
    Start {
        /// The target backend section, as YAML or JSON.
        to: String,
        read_sample: Option<f64>,
        backfill_rate: Option<u32>,
    },
    /// Enters the next phase.
    Advance,
    /// Returns to the previous phase (from `dual-write`: as abort).
    Rollback,
    /// Ends the migration; the source is the only backend again.
    Abort,
    /// Ends the migration from `promoted`; the target is the only backend.
    Finalize,
}

impl MigrateAction {
    pub fn name(&self) -> &'static str {
        match self {
            MigrateAction::Start { .. } => "start",
            MigrateAction::Advance => "advance",
            MigrateAction::Rollback => "rollback",
            MigrateAction::Abort => "abort",
            MigrateAction::Finalize => "finalize",
        }
    }
}

/// Where a migration is, as this proxy sees it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrationStatus {
    pub namespace: String,
    /// The namespace version serving.
    pub version: u64,
    /// Empty when no migration is in progress.
    pub phase: String,
    pub source: String,
    pub target: String,
    pub read_sample: f64,
    pub backfill_rate: Option<u32>,
    pub shadow_writes: u64,
    pub shadow_failures: u64,
    pub repairs_queued: u64,
    pub repaired: u64,
    pub reads_compared: u64,
    pub mismatches: u64,
    pub mismatch_samples: Vec<MismatchSample>,
    pub backfill: Option<BackfillProgress>,
    pub backfill_error: Option<String>,
    /// What blocks the next step (`advance`), empty when nothing does.
    pub blockers: Vec<String>,
}

/// The backfill's progress.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillProgress {
    pub items: u64,
    pub bytes: u64,
    pub total_items: Option<u64>,
    /// Items per second since the backfill (this run of it) began.
    pub items_per_second: f64,
    /// Seconds left at that rate, when the total is known.
    pub eta_seconds: Option<f64>,
    pub finished: bool,
}

fn progress_of(cp: &Checkpoint, now_ms: u64) -> BackfillProgress {
    BackfillProgress {
        items: cp.items,
        bytes: cp.bytes,
        total_items: cp.total,
        items_per_second: cp.items_per_second(now_ms),
        eta_seconds: cp.eta_seconds(now_ms),
        finished: cp.finished_ms.is_some(),
    }
}

/// The status of `ns`'s migration in this proxy.
pub async fn status_of(ns: &Namespace) -> Result<MigrationStatus, ManageError> {
    let mut status = MigrationStatus {
        namespace: ns.config.name.clone(),
        version: ns.version,
        source: ns.config.backend.kind.clone(),
        ..MigrationStatus::default()
    };
    let (Some(config), Some(m)) = (&ns.config.migration, &ns.migration) else {
        return Ok(status);
    };
    let shared = &m.shared;
    let c = &shared.counters;
    status.phase = config.phase.name().to_string();
    status.target = config.to.kind.clone();
    status.read_sample = config.read_sample;
    status.backfill_rate = config.backfill_rate;
    status.shadow_writes = c.shadow_writes.get();
    status.shadow_failures = c.shadow_failures.get();
    status.repaired = c.repaired.get();
    status.reads_compared = c.compared.get();
    status.mismatches = c.mismatches.get();
    status.mismatch_samples = shared.mismatch_samples();
    status.repairs_queued = shared.queued().await.map_err(ManageError::Refused)?;
    status.backfill = shared
        .progress()
        .await
        .map_err(ManageError::Refused)?
        .map(|cp| progress_of(&cp, now_ms()));
    status.backfill_error = shared.backfill_error();
    status.blockers = blockers(config.phase, &status);
    Ok(status)
}

/// What stops `advance` from `phase`.
fn blockers(phase: MigrationPhase, s: &MigrationStatus) -> Vec<String> {
    let mut out = Vec::new();
    if s.repairs_queued > 0 && phase >= MigrationPhase::Backfill {
        out.push(format!(
            "{} repair(s) wait in the queue (ids or events whose shadow write failed); wait for the queue \
             to drain",
            s.repairs_queued
        ));
    }
    match phase {
        MigrationPhase::Backfill if !s.backfill.as_ref().is_some_and(|b| b.finished) => {
            out.push(
                "the backfill has not finished; wait for it (migrate status shows its progress)"
                    .into(),
            );
        }
        MigrationPhase::ShadowRead if s.mismatches > 0 => out.push(format!(
            "{} shadow read(s) differed from the primary; find the cause (the samples list \
             hashed ids), roll back to backfill to copy again, or force",
            s.mismatches
        )),
        MigrationPhase::Promoted => {
            out.push("promoted is the last phase: finalize to keep the target, or roll back".into())
        }
        _ => {}
    }
    out
}

/// A new migration's id: the start time and a random part.
fn new_migration_id() -> String {
    let mut random = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    format!("{}-{}", now_ms(), u32::from_be_bytes(random))
}

/// `yaml` with `section` set (or removed when `None`). Only that top-level
/// section's lines change, so the operator's comments and layout elsewhere
/// survive; when that edit would not give the same document as a full
/// rewrite (an unusual layout), the whole file is rewritten instead.
fn with_section(
    yaml: &str,
    section: &str,
    value: Option<yaml_serde::Value>,
) -> Result<String, ManageError> {
    let mut doc: yaml_serde::Value = yaml_serde::from_str(yaml)
        .map_err(|e| ManageError::Refused(format!("the stored YAML does not parse: {e}")))?;
    let map = doc
        .as_mapping_mut()
        .ok_or_else(|| ManageError::Refused("the stored YAML is not a mapping".into()))?;
    let key = yaml_serde::Value::String(section.to_string());
    match value.clone() {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
    if let Some(edited) = edit_section(yaml, section, value)
        && yaml_serde::from_str::<yaml_serde::Value>(&edited).is_ok_and(|d| d == doc)
    {
        return Ok(edited);
    }
    yaml_serde::to_string(&doc)
        .map_err(|e| ManageError::Refused(format!("writing the namespace YAML: {e}")))
}

/// `yaml` with the lines of its top-level `section` replaced by `value`
/// (appended when absent, removed when `None`), every other line as it
/// was. A section runs from its `section:` line to the next line that
/// starts in the first column (a key, a comment or a document marker).
fn edit_section(yaml: &str, section: &str, value: Option<yaml_serde::Value>) -> Option<String> {
    let block = match value {
        Some(v) => {
            let mut m = yaml_serde::Mapping::new();
            m.insert(section.into(), v);
            let text = yaml_serde::to_string(&yaml_serde::Value::Mapping(m)).ok()?;
            text.strip_prefix("---\n").unwrap_or(&text).to_string()
        }
        None => String::new(),
    };
    // Lines keep their own endings; the new block takes the file's.
    let block = if yaml.contains("\r\n") {
        block.replace('\n', "\r\n")
    } else {
        block
    };
    let lines: Vec<&str> = yaml.split_inclusive('\n').collect();
    let text = |l: &str| l.trim_end_matches(['\r', '\n']).to_string();
    let head = format!("{section}:");
    let starts_column = |l: &str| !text(l).is_empty() && !l.starts_with([' ', '\t']);
    let out = match lines.iter().position(|l| l.starts_with(&head)) {
        Some(i) => {
            let mut end = lines[i + 1..]
                .iter()
                .position(|l| starts_column(l))
                .map_or(lines.len(), |p| i + 1 + p);
            // Blank lines before the next section stay.
            while end > i + 1 && text(lines[end - 1]).trim().is_empty() {
                end -= 1;
            }
            format!("{}{block}{}", lines[..i].concat(), lines[end..].concat())
        }
        None if yaml.is_empty() || yaml.ends_with('\n') => format!("{yaml}{block}"),
        None => format!("{yaml}\n{block}"),
    };
    Some(out)
}

fn section_of(yaml: &str, section: &str) -> Option<yaml_serde::Value> {
    let doc: yaml_serde::Value = yaml_serde::from_str(yaml).ok()?;
    doc.get(section).cloned()
}

/// The result of a step.
#[derive(Debug, Clone)]
pub struct MigrateOutcome {
    pub apply: ApplyOutcome,
    /// The phase after the step; empty when the migration ended.
    pub phase: String,
    /// What was overridden by `force`.
    pub forced: Vec<String>,
}

impl Manager {
    /// The migration status of namespace `name`.
    pub async fn migration_status(&self, name: &str) -> Result<MigrationStatus, ManageError> {
        let ns = self
            .registry
            .get(name)
            .ok_or_else(|| ManageError::NotFound(name.to_string()))?;
        status_of(&ns).await
    }

    /// Carries out `action` on namespace `name`, after its pre-flight
    /// check (`force` overrides a failed check and says so).
    pub async fn migrate(
        &self,
        name: &str,
        action: MigrateAction,
        force: bool,
        principal: &str,
        authority: super::Authority,
    ) -> Result<MigrateOutcome, ManageError> {
        let ns: Arc<Namespace> = self
            .registry
            .get(name)
            .ok_or_else(|| ManageError::NotFound(name.to_string()))?;
        let yaml = ns.config.yaml.clone();
        let mut forced = Vec::new();
        let mut check = |problems: Vec<String>| -> Result<(), ManageError> {
            if problems.is_empty() {
                return Ok(());
            }
            if force {
                forced.extend(problems);
                return Ok(());
            }
            Err(ManageError::Refused(format!(
                "{} of '{name}' refused: {}; pass --force to do it anyway",
                action.name(),
                problems.join("; ")
            )))
        };
        let current = ns.config.migration.clone();
        let (new_yaml, phase) = match (&action, &current) {
            (MigrateAction::Start { .. }, Some(m)) => {
                return Err(ManageError::Refused(format!(
                    "'{name}' is already migrating to {} (phase {}); finish or abort it first",
                    m.to.kind,
                    m.phase.name()
                )));
            }
            (
                MigrateAction::Start {
                    to,
                    read_sample,
                    backfill_rate,
                },
                None,
            ) => {
                match ns.config.dal.module().migration {
                    crate::dal::Migration::Supported { capability: None } => {}
                    crate::dal::Migration::Supported {
                        capability: Some(c),
                    } if ns.capabilities.has(c) => {}
                    crate::dal::Migration::Supported {
                        capability: Some(c),
                    } => {
                        return Err(ManageError::Refused(format!(
                            "'{name}' is served by {}, which cannot list its data (it lacks \
                             the {} capability), so its data cannot be copied; nothing was \
                             changed",
                            ns.config.backend.kind,
                            c.name()
                        )));
                    }
                    crate::dal::Migration::Refused(why) => {
                        return Err(ManageError::Refused(format!(
                            "'{name}' cannot migrate: {why}; nothing was changed"
                        )));
                    }
                }
                crate::config::check_yaml_bounds(to)
                    .map_err(|e| ManageError::BadRequest(format!("the target backend: {e}")))?;
                let to: yaml_serde::Value = yaml_serde::from_str(to).map_err(|e| {
                    ManageError::BadRequest(format!(
                        "the target backend does not parse ({e}); give a backend section, e.g. \
                         {{kind: postgres, options: {{url: ...}}}}"
                    ))
                })?;
                let spec: BackendSpec = yaml_serde::from_value(to.clone())
                    .map_err(|e| ManageError::BadRequest(format!("the target backend: {e}")))?;
                let mut section = yaml_serde::Mapping::new();
                section.insert("to".into(), to);
                section.insert("phase".into(), MigrationPhase::DualWrite.name().into());
                section.insert("id".into(), new_migration_id().into());
                if let Some(s) = read_sample {
                    section.insert("read_sample".into(), (*s).into());
                }
                if let Some(r) = backfill_rate {
                    section.insert("backfill_rate".into(), u64::from(*r).into());
                }
                let new_yaml = with_section(&yaml, "migration", Some(section.into()))?;
                // The section is checked (a precise error for a bad target,
                // and a namespace admin's target against what the operator
                // chose) before the target is opened for the capability
                // check.
                self.parse_as(&ns.config.source, &new_yaml, authority, Some(&ns))
                    .await
                    .map_err(|e| match e {
                        Ok(denied) => ManageError::Denied(format!(
                            "{denied}; principal {} administers this namespace only",
                            pattern_core::quote(principal)
                        )),
                        Err(invalid) => ManageError::Invalid(vec![invalid]),
                    })?;
                let lost = self.capabilities_lost(&ns, &spec).await?;
                if !lost.is_empty() {
                    check(vec![format!(
                        "backend '{}' lacks capabilities '{name}' has now ({}); calls that need \
                         them would fail after promotion",
                        spec.kind,
                        lost.join(", ")
                    )])?;
                }
                // What an earlier migration of this name left in this
                // proxy's queue is stale now.
                if let Some(q) = self.migration_queue()? {
                    q.clear(name).await.map_err(ManageError::Refused)?;
                }
                (new_yaml, MigrationPhase::DualWrite.name().to_string())
            }
            (_, None) => {
                return Err(ManageError::Refused(format!(
                    "'{name}' is not migrating; start a migration first (prismctl migrate start)"
                )));
            }
            (MigrateAction::Advance, Some(m)) => {
                let status = status_of(&ns).await?;
                check(blockers(m.phase, &status))?;
                let Some(next) = m.phase.next() else {
                    return Err(ManageError::Refused(
                        "promoted is the last phase: finalize to keep the target, or roll back"
                            .into(),
                    ));
                };
                (self.with_phase(&yaml, next)?, next.name().to_string())
            }
            (MigrateAction::Rollback, Some(m)) => match m.phase.previous() {
                Some(previous) => (
                    self.with_phase(&yaml, previous)?,
                    previous.name().to_string(),
                ),
                None => (with_section(&yaml, "migration", None)?, String::new()),
            },
            (MigrateAction::Abort, Some(_)) => {
                (with_section(&yaml, "migration", None)?, String::new())
            }
            (MigrateAction::Finalize, Some(m)) => {
                if m.phase != MigrationPhase::Promoted {
                    check(vec![format!(
                        "the migration is in {}, not promoted: the target has not served yet",
                        m.phase.name()
                    )])?;
                }
                let status = status_of(&ns).await?;
                if status.repairs_queued > 0 {
                    check(vec![format!(
                        "{} repair(s) of the source still wait in the queue",
                        status.repairs_queued
                    )])?;
                }
                let to = section_of(&yaml, "migration")
                    .and_then(|m| m.get("to").cloned())
                    .ok_or_else(|| ManageError::Refused("migration.to is missing".into()))?;
                let yaml = with_section(&yaml, "backend", Some(to))?;
                (with_section(&yaml, "migration", None)?, String::new())
            }
        };
        let apply = self
            .apply(&new_yaml, false, Some(ns.version), principal, authority)
            .await?;
        if phase.is_empty()
            && let Some(q) = self.migration_queue()?
        {
            q.clear(name).await.map_err(ManageError::Refused)?;
        }
        tracing::info!(
            namespace = %name,
            action = action.name(),
            phase = %phase,
            version = apply.version,
            forced = ?forced,
            "migration step applied"
        );
        Ok(MigrateOutcome {
            apply,
            phase,
            forced,
        })
    }

    fn with_phase(&self, yaml: &str, phase: MigrationPhase) -> Result<String, ManageError> {
        let mut section = section_of(yaml, "migration")
            .ok_or_else(|| ManageError::Refused("the stored YAML has no migration".into()))?;
        let map = section
            .as_mapping_mut()
            .ok_or_else(|| ManageError::Refused("migration is not a mapping".into()))?;
        map.insert("phase".into(), phase.name().into());
        with_section(yaml, "migration", Some(section))
    }

    /// The capabilities `ns`'s backend has that the backend `spec` would
    /// not: the target is opened (and closed again) to ask it.
    async fn capabilities_lost(
        &self,
        ns: &Namespace,
        spec: &BackendSpec,
    ) -> Result<Vec<&'static str>, ManageError> {
        let mut target_config = ns.config.clone();
        target_config.backend = spec.clone();
        target_config.migration = None;
        let (target, _, _) = crate::registry::open_backend(
            &target_config,
            &self.resolver,
            &self.data_dir,
            self.clock.clone(),
        )
        .await
        .map_err(|e| ManageError::Refused(format!("the target backend cannot be opened: {e}")))?;
        let theirs = target.capabilities().names();
        let _ = target.close().await;
        Ok(ns
            .capabilities
            .names()
            .into_iter()
            .filter(|c| !theirs.contains(c))
            .collect())
    }

    fn migration_queue(&self) -> Result<Option<Arc<crate::migration::RepairQueue>>, ManageError> {
        crate::migration::queue_for(&self.data_dir)
            .map(Some)
            .map_err(ManageError::Refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# Orders of the shop.\nname: orders\ndal: keyvalue\n\n# Where the data lives today.\nbackend:\n  kind: sqlite   # one file\n# Who may call.\npolicy:\n  readers: [shop]\n";

    fn value(yaml: &str) -> yaml_serde::Value {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn a_step_keeps_the_comments_of_the_file() {
        let started = with_section(
            FILE,
            "migration",
            Some(value("to: {kind: postgres}\nphase: dual-write")),
        )
        .unwrap();
        for comment in [
            "# Orders of the shop.",
            "# Where the data lives today.",
            "# one file",
            "# Who may call.",
        ] {
            assert!(started.contains(comment), "{comment} lost:\n{started}");
        }
        assert!(
            started.ends_with("migration:\n  to:\n    kind: postgres\n  phase: dual-write\n"),
            "{started}"
        );
        let advanced = with_section(
            &started,
            "migration",
            Some(value("to: {kind: postgres}\nphase: backfill")),
        )
        .unwrap();
        assert!(
            advanced.contains("phase: backfill") && !advanced.contains("dual-write"),
            "{advanced}"
        );
        // Finalize: the backend section becomes the target, the migration goes.
        let moved = with_section(&advanced, "backend", Some(value("kind: postgres"))).unwrap();
        let done = with_section(&moved, "migration", None).unwrap();
        assert_eq!(
            done,
            "# Orders of the shop.\nname: orders\ndal: keyvalue\n\n# Where the data lives today.\nbackend:\n  kind: postgres\n# Who may call.\npolicy:\n  readers: [shop]\n"
        );
        let parsed: yaml_serde::Value = value(&done);
        assert_eq!(parsed["backend"]["kind"], "postgres");
    }

    #[test]
    fn line_endings_and_blank_lines_stay() {
        let crlf =
            "name: orders\r\nmigration:\r\n  to: {kind: redis}\r\n\r\n# after\r\npolicy: {}\r\n";
        let out = with_section(crlf, "migration", Some(value("to: {kind: postgres}"))).unwrap();
        assert_eq!(
            out,
            "name: orders\r\nmigration:\r\n  to:\r\n    kind: postgres\r\n\r\n# after\r\npolicy: {}\r\n"
        );
        let removed = with_section(&out, "migration", None).unwrap();
        assert_eq!(removed, "name: orders\r\n\r\n# after\r\npolicy: {}\r\n");
    }

    #[test]
    fn an_unusual_layout_is_rewritten_whole() {
        // A flow mapping for the whole file: no top-level lines to edit.
        let flow = "{name: orders, dal: keyvalue, backend: {kind: sqlite}}\n";
        let out = with_section(flow, "migration", Some(value("to: {kind: redis}"))).unwrap();
        let parsed = value(&out);
        assert_eq!(parsed["migration"]["to"]["kind"], "redis");
        assert_eq!(parsed["backend"]["kind"], "sqlite");
    }
}
