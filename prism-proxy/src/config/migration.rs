//! `migration:` — a namespace moving from its `backend` to another one
//! (ADR-016). The section is written by `prismctl migrate` and the admin
//! API; every proxy serving the namespace follows its `phase`.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::namespace::{BackendMode, BackendSpec, NamespaceConfig};

/// The phases of a migration, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationPhase {
    /// Writes go to `backend` (the primary) and to `migration.to`.
    #[default]
    DualWrite,
    /// As dual-write, and existing data is copied to `migration.to`.
    Backfill,
    /// As backfill done, and a sample of reads is compared.
    ShadowRead,
    /// `migration.to` serves; `backend` still receives every write.
    Promoted,
}

impl MigrationPhase {
    pub const ALL: [MigrationPhase; 4] = [
        MigrationPhase::DualWrite,
        MigrationPhase::Backfill,
        MigrationPhase::ShadowRead,
        MigrationPhase::Promoted,
    ];

    /// The name in YAML and messages.
    pub fn name(self) -> &'static str {
        match self {
            MigrationPhase::DualWrite => "dual-write",
            MigrationPhase::Backfill => "backfill",
            MigrationPhase::ShadowRead => "shadow-read",
            MigrationPhase::Promoted => "promoted",
        }
    }

    /// The phase after this one (`None` after `promoted`: finalize).
    pub fn next(self) -> Option<MigrationPhase> {
        let i = Self::ALL.iter().position(|p| *p == self)?;
        Self::ALL.get(i + 1).copied()
    }

    /// The phase before this one (`None` before `dual-write`: abort).
    pub fn previous(self) -> Option<MigrationPhase> {
        let i = Self::ALL.iter().position(|p| *p == self)?;
        i.checked_sub(1).map(|i| Self::ALL[i])
    }
}

/// The default share of reads compared in `shadow-read`.
pub const DEFAULT_READ_SAMPLE: f64 = 0.05;

/// A namespace's migration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MigrationConfig {
    /// The backend the namespace moves to.
    pub to: BackendSpec,
    /// Where the migration is; entered explicitly. Default `dual-write`.
    #[serde(default)]
    pub phase: MigrationPhase,
    /// In `shadow-read`, the share of reads also served by the shadow and
    /// compared, 0 to 1. Default 0.05.
    #[serde(default = "default_read_sample")]
    pub read_sample: f64,
    /// Backfill speed limit, items per second. Unset: as fast as the
    /// backends go.
    #[serde(default)]
    pub backfill_rate: Option<u32>,
    /// Which migration this is, written by `start`: a proxy's saved
    /// backfill checkpoint and state belong to one migration, and one of
    /// an earlier migration of the namespace is not resumed.
    #[serde(default)]
    pub id: Option<String>,
}

fn default_read_sample() -> f64 {
    DEFAULT_READ_SAMPLE
}

impl MigrationConfig {
    /// Checks the section against its namespace.
    pub(super) fn validate(&self, ns: &NamespaceConfig, file: &str) -> Result<(), ConfigError> {
        if let crate::dal::Migration::Refused(why) = ns.dal.module().migration {
            return Err(ConfigError::new(
                file,
                "migration",
                format!("cannot be stated: {why}; remove the section"),
            ));
        }
        if self.to.kind.is_empty() {
            return Err(ConfigError::new(
                file,
                "migration.to.kind",
                "is empty; name the backend to migrate to: memstore, sqlite, postgres or redis",
            ));
        }
        super::namespace::check_kind(&self.to.kind)
            .map_err(|e| ConfigError::new(file, "migration.to.kind", e))?;
        if self.to.mode != BackendMode::Embedded && !ns.dal.module().pattern_modes {
            return Err(ConfigError::new(
                file,
                "migration.to.mode",
                format!(
                    "is {}, but {} backends run linked into the proxy; remove migration.to.mode",
                    self.to.mode.name(),
                    ns.dal.name()
                ),
            ));
        }
        // The target's mode and pattern settings, checked as a backend's.
        let mut as_backend = ns.clone();
        as_backend.backend = self.to.clone();
        as_backend.migration = None;
        as_backend
            .validate_mode(file)
            .map_err(|e| e.renamed("backend", "migration.to"))?;
        if self.to.kind == ns.backend.kind {
            return Err(ConfigError::new(
                file,
                "migration.to",
                format!(
                    "is the same kind as backend ({}); migrate between two kinds of backend \
                     (two {} backends of one namespace would share its storage)",
                    self.to.kind, self.to.kind
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.read_sample) {
            return Err(ConfigError::new(
                file,
                "migration.read_sample",
                format!(
                    "is {}; give the share of reads to compare, from 0 to 1 (e.g. 0.05)",
                    self.read_sample
                ),
            ));
        }
        if self.backfill_rate == Some(0) {
            return Err(ConfigError::new(
                file,
                "migration.backfill_rate",
                "is 0; give items per second (at least 1), or leave it unset for no limit",
            ));
        }
        Ok(())
    }
}
