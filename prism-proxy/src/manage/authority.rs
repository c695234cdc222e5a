//! Who may change what in a namespace (ADR-017).
//!
//! A namespace admin (a principal in the namespace's `policy.admin`)
//! changes the namespace's data-plane settings: limits, policy, schema
//! message and encoding, audit policy, TimeSeries and PubSub settings, and
//! migration phases. Where the namespace's data lives, which programs the
//! proxy runs and which servers it connects to are the operator's: a
//! global admin (`auth.admins` of `prism.yaml`), the namespace files an
//! operator writes, or anyone while authentication is off. So a namespace
//! admin's apply may give a backend (the namespace's `backend` or a
//! migration's `to`) only a *placement* the operator already chose:
//!
//! - the one serving now (`backend` or `migration.to` of the current
//!   version), e.g. to tune `pool_size` or to promote a migration;
//! - a store of `backends:` in `prism.yaml`, with its options as the
//!   operator wrote them (what `needs:` picks from);
//! - a backend linked into the proxy with every placement option left at
//!   its default (memstore; SQLite in the namespace's own file).
//!
//! A placement is the backend's kind, mode, pattern binary and address,
//! and the options its factory names as placement options
//! ([`pattern_core::placement`]). Anything else is refused with
//! PERMISSION_DENIED naming the field, before anything is opened or run.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use crate::config::{BackendCatalog, BackendMode, BackendSpec, Dal, NamespaceConfig};
use crate::resolver::Resolver;

/// Who is applying a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// A global admin (`auth.admins`), an operator's file, a reload, or
    /// any caller while authentication is off.
    Operator,
    /// An admin of this one namespace (its `policy.admin`).
    NamespaceAdmin,
}

/// A namespace admin's change to a setting only an operator may make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The dotted field, e.g. `backend.options.path`.
    pub field: String,
    /// What the field decides, e.g. "where the namespace's data lives on disk".
    pub decides: &'static str,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "field `{}` decides {}, which only an operator may change (a principal in \
             auth.admins of prism.yaml, or the namespace's file); a namespace admin may keep \
             the value that serves, use a store from `backends:` of prism.yaml, or leave the \
             placement options at their defaults",
            self.field, self.decides
        )
    }
}

/// A backend's placement: what an operator decides about it.
#[derive(Debug, Clone, PartialEq)]
struct Placement {
    kind: String,
    mode: BackendMode,
    binary: Option<std::path::PathBuf>,
    address: Option<String>,
    /// The placement options that are set.
    options: BTreeMap<String, serde_json::Value>,
    /// Whether the kind's defaults keep data private to the proxy.
    private_default: bool,
}

impl Placement {
    fn of(resolver: &Resolver, dal: Dal, spec: &BackendSpec) -> Placement {
        let names = resolver.placement_options(dal, &spec.kind);
        let all = names.contains(&pattern_core::placement::ALL_OPTIONS);
        let options = spec
            .options
            .as_object()
            .map(|map| {
                map.iter()
                    .filter(|(k, _)| all || names.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let pattern = spec.pattern.clone().unwrap_or_default();
        Placement {
            kind: spec.kind.clone(),
            mode: spec.mode,
            binary: pattern.binary,
            address: pattern.address,
            options,
            private_default: resolver.default_is_private(dal, &spec.kind),
        }
    }

    /// Linked in, every placement option at a default that keeps the data
    /// private to the proxy (memstore; SQLite in the namespace's own file).
    fn is_default(&self) -> bool {
        self.private_default
            && self.mode == BackendMode::Embedded
            && self.binary.is_none()
            && self.address.is_none()
            && self.options.is_empty()
    }
}

/// What an option decides, for the refusal.
fn decides(option: &str) -> &'static str {
    match option {
        "path" => "where the namespace's data lives on disk",
        "url" | "brokers" | "address" => "which servers the proxy connects to",
        _ => "where the namespace's data lives",
    }
}

/// Checks that a namespace admin's `new` version of a namespace (whose
/// serving version is `current`) keeps every operator-owned setting
/// within what the operator chose.
pub fn check_namespace_admin(
    new: &NamespaceConfig,
    current: Option<&NamespaceConfig>,
    catalog: &BackendCatalog,
    resolver: &Resolver,
) -> Result<(), Denied> {
    let dal = new.dal;
    let mut allowed: Vec<Placement> = Vec::new();
    if let Some(current) = current.filter(|c| c.dal == dal) {
        allowed.push(Placement::of(resolver, dal, &current.backend));
        if let Some(m) = &current.migration {
            allowed.push(Placement::of(resolver, dal, &m.to));
        }
    }
    for kind in ["postgres", "redis"] {
        if catalog.has(kind) {
            let spec = BackendSpec {
                kind: kind.to_string(),
                mode: BackendMode::Embedded,
                options: catalog.options(kind),
                pattern: None,
            };
            allowed.push(Placement::of(resolver, dal, &spec));
        }
    }
    check_spec(
        "backend",
        &Placement::of(resolver, dal, &new.backend),
        &allowed,
    )?;
    if let Some(m) = &new.migration {
        check_spec(
            "migration.to",
            &Placement::of(resolver, dal, &m.to),
            &allowed,
        )?;
    }
    let log = |c: &NamespaceConfig| c.timeseries.as_ref().and_then(|t| t.log.clone());
    if let Some(new_log) = log(new)
        && current.and_then(log).as_ref() != Some(&new_log)
    {
        return Err(Denied {
            field: "timeseries.log".to_string(),
            decides: "which servers the proxy connects to",
        });
    }
    if let Some(schema) = &new.schema {
        let unchanged = current
            .and_then(|c| c.schema.as_ref())
            .is_some_and(|s| s.proto == schema.proto);
        if !unchanged && !inside(&schema.proto) {
            return Err(Denied {
                field: "schema.proto".to_string(),
                decides: "which files on the proxy's disk it reads (a namespace admin names a \
                          .proto inside the schema directory: a relative path without `..`)",
            });
        }
    }
    Ok(())
}

/// A relative path with no `..`, root or drive component.
fn inside(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Refuses `new` unless one of `allowed` (or the default placement) is
/// it, naming the first field that no allowed placement shares.
fn check_spec(prefix: &str, new: &Placement, allowed: &[Placement]) -> Result<(), Denied> {
    if new.is_default() || allowed.contains(new) {
        return Ok(());
    }
    let denied = |field: String, decides: &'static str| Err(Denied { field, decides });
    let same_kind: Vec<&Placement> = allowed.iter().filter(|a| a.kind == new.kind).collect();
    if new.mode != BackendMode::Embedded && !same_kind.iter().any(|a| a.mode == new.mode) {
        let decides = match new.mode {
            BackendMode::Remote => "which servers the proxy connects to",
            _ => "which programs the proxy runs",
        };
        return denied(format!("{prefix}.mode"), decides);
    }
    if new.binary.is_some() && !same_kind.iter().any(|a| a.binary == new.binary) {
        return denied(
            format!("{prefix}.pattern.binary"),
            "which programs the proxy runs",
        );
    }
    if new.address.is_some() && !same_kind.iter().any(|a| a.address == new.address) {
        return denied(
            format!("{prefix}.pattern.address"),
            "which servers the proxy connects to",
        );
    }
    for (name, value) in &new.options {
        if !same_kind.iter().any(|a| a.options.get(name) == Some(value)) {
            return denied(format!("{prefix}.options.{name}"), decides(name));
        }
    }
    if new.options.is_empty() {
        return denied(
            format!("{prefix}.kind"),
            "which servers the proxy connects to (this kind's defaults reach a server no \
             operator chose)",
        );
    }
    // Each part matches some allowed placement, but not one as a whole.
    let field = new.options.keys().next().map_or_else(
        || format!("{prefix}.kind"),
        |k| format!("{prefix}.options.{k}"),
    );
    let name = field.rsplit('.').next().unwrap_or_default().to_string();
    denied(field, decides(&name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamespaceConfig;

    fn ns(yaml: &str) -> NamespaceConfig {
        NamespaceConfig::parse("t.yaml", &format!("name: orders\ndal: keyvalue\n{yaml}")).unwrap()
    }

    fn check(new: &str, current: &str) -> Result<(), Denied> {
        let (new, current) = (ns(new), ns(current));
        check_namespace_admin(
            &new,
            Some(&current),
            &BackendCatalog::default(),
            &Resolver::builtin(),
        )
    }

    const SQLITE: &str = "backend:\n  kind: sqlite\n  options:\n    path: orders.db\n";

    #[test]
    fn tuning_the_serving_placement_is_allowed() {
        let tuned = "backend:\n  kind: sqlite\n  options:\n    path: orders.db\n    readers: 4\n";
        assert_eq!(check(tuned, SQLITE), Ok(()));
        assert_eq!(check("backend: {kind: memstore}\n", SQLITE), Ok(()));
        assert_eq!(check("backend: {kind: sqlite}\n", SQLITE), Ok(()));
    }

    #[test]
    fn defaults_that_reach_a_server_are_the_operators() {
        let parse = |yaml: &str| {
            NamespaceConfig::parse("t.yaml", &format!("name: q\ndal: pubsub\n{yaml}")).unwrap()
        };
        let current =
            parse("backend:\n  kind: redis\n  options:\n    url: redis://127.0.0.1:6379\n");
        for kind in ["kafka", "nats"] {
            let new = parse(&format!("backend:\n  kind: {kind}\n"));
            let e = check_namespace_admin(
                &new,
                Some(&current),
                &BackendCatalog::default(),
                &Resolver::builtin(),
            )
            .unwrap_err();
            assert_eq!(e.field, "backend.kind", "{kind}");
        }
    }

    #[test]
    fn placement_changes_name_the_field() {
        let other = "backend:\n  kind: sqlite\n  options:\n    path: billing.db\n";
        let e = check(other, SQLITE).unwrap_err();
        assert_eq!(e.field, "backend.options.path");
        assert!(e.to_string().contains("on disk"), "{e}");
        let process = "backend:\n  kind: sqlite\n  mode: process\n  pattern:\n    binary: /tmp/x\n";
        assert_eq!(check(process, SQLITE).unwrap_err().field, "backend.mode");
        let pg = "backend:\n  kind: postgres\n  options:\n    url: postgres://evil/x\n";
        let e = check(pg, SQLITE).unwrap_err();
        assert_eq!(e.field, "backend.options.url");
        assert!(e.to_string().contains("servers"), "{e}");
        let migration = format!(
            "{SQLITE}migration:\n  to:\n    kind: redis\n    options:\n      url: redis://10.0.0.1\n"
        );
        assert_eq!(
            check(&migration, SQLITE).unwrap_err().field,
            "migration.to.options.url"
        );
    }

    #[test]
    fn a_catalog_store_is_allowed() {
        let catalog = BackendCatalog {
            redis: Some(crate::config::needs::RedisStore {
                url: "redis://127.0.0.1:6379".into(),
                key_prefix: None,
            }),
            ..BackendCatalog::default()
        };
        let new = ns("backend:\n  kind: redis\n  options:\n    url: redis://127.0.0.1:6379\n");
        let current = ns(SQLITE);
        let r = check_namespace_admin(&new, Some(&current), &catalog, &Resolver::builtin());
        assert_eq!(r, Ok(()));
    }
}
