//! Choosing a backend from needs, and saying why none fits.

use pattern_core::needs::NeedsProfile;

use super::capabilities::Verdict;
use super::{BackendCatalog, Durability, EffectiveNeed, Need, Needs, Rejected, Scope, Selection};
use crate::config::{BackendMode, BackendSpec, Dal};

/// Why no backend fits: the field under the namespace (`needs.write_rps`
/// for one need nothing meets, `needs` for needs that conflict) and the
/// explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedsError {
    pub field: String,
    pub message: String,
}

/// How every candidate fares against every need.
struct Assessment<'a> {
    cap: &'a NeedsProfile,
    configured: bool,
    /// Per effective need, in order: the backend's verdict.
    verdicts: Vec<Result<String, String>>,
}

impl Assessment<'_> {
    fn meets(&self, i: usize) -> bool {
        self.verdicts[i].is_ok()
    }

    fn meets_all(&self) -> bool {
        self.verdicts.iter().all(Result::is_ok)
    }

    fn failures(&self, needs: &[EffectiveNeed]) -> Vec<String> {
        needs
            .iter()
            .zip(&self.verdicts)
            .filter_map(|(need, v)| v.as_ref().err().map(|why| format!("{need}: {why}")))
            .collect()
    }
}

/// The preference order, for messages.
fn order(profiles: &[NeedsProfile]) -> String {
    profiles
        .iter()
        .map(|c| c.kind)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the backend of `dal` for `needs` among its in-process kinds and
/// the external stores configured in `catalog`: the first, in the
/// preference order of the kinds' needs profiles (from their factories,
/// through the resolver), that meets every need. Returns the backend
/// (embedded, options from the catalog) and the reasons; or, when nothing
/// fits, which needs are to blame.
pub fn select(
    dal: Dal,
    needs: &Needs,
    catalog: &BackendCatalog,
) -> Result<(BackendSpec, Selection), NeedsError> {
    let effective = needs.effective();
    let profiles = crate::resolver::builtin().needs_profiles(dal);
    if profiles.is_empty() {
        return Err(NeedsError {
            field: "needs".into(),
            message: format!("no {dal} backend is registered in this proxy"),
        });
    }
    let assessed: Vec<Assessment> = profiles
        .iter()
        .map(|cap| Assessment {
            cap,
            configured: !cap.external || catalog.has(cap.kind),
            verdicts: effective.iter().map(|n| cap.check(&n.need)).collect(),
        })
        .collect();
    let Some(chosen) = assessed.iter().find(|a| a.configured && a.meets_all()) else {
        return Err(explain_conflict(&effective, &assessed, catalog));
    };
    let kind = chosen.cap.kind;
    let mut reasons: Vec<String> = effective
        .iter()
        .zip(&chosen.verdicts)
        .filter_map(|(need, v)| v.as_ref().ok().map(|why| format!("{need}: {why}")))
        .collect();
    reasons.push(format!(
        "{kind} is the first backend in the preference order ({}) that meets every need",
        order(&profiles)
    ));
    if chosen.cap.external {
        reasons.push(format!(
            "connection settings come from `backends.{kind}` in {}",
            catalog.file()
        ));
    }
    let rejected = assessed
        .iter()
        .filter(|a| a.cap.kind != kind)
        .map(|a| {
            let mut why = Vec::new();
            if !a.configured {
                why.push(format!(
                    "not a candidate: {} configures no `backends.{}`",
                    catalog.file(),
                    a.cap.kind
                ));
            }
            why.extend(a.failures(&effective));
            if why.is_empty() {
                why.push(format!(
                    "meets every need, but {kind} comes first in the preference order ({})",
                    order(&profiles)
                ));
            }
            Rejected {
                kind: a.cap.kind,
                reasons: why,
            }
        })
        .collect();
    let spec = BackendSpec {
        kind: kind.to_string(),
        mode: BackendMode::Embedded,
        options: catalog.options(kind),
        pattern: None,
    };
    Ok((
        spec,
        Selection {
            needs: effective,
            kind,
            reasons,
            rejected,
            settings_from: chosen.cap.external.then(|| catalog.file().to_string()),
        },
    ))
}

/// What an operator can do about a need.
fn advice(need: &Need) -> String {
    match need {
        Need::Consistency(_) => "accept `consistency: eventual`".into(),
        Need::Durability(Durability::Durable) => {
            "accept `durability: restart` or `durability: none`".into()
        }
        Need::Durability(_) => "accept `durability: none`".into(),
        Need::Scope(Scope::Shared) => {
            "use `scope: local` if only one proxy serves the namespace".into()
        }
        Need::Scope(Scope::Local) => "relax `scope`".into(),
        Need::ReadRps(_) => "lower `read_rps` (or split the data over several namespaces)".into(),
        Need::WriteRps(_) => "lower `write_rps` (or split the data over several namespaces)".into(),
        Need::P99LatencyMs(_) => "raise `p99_latency_ms`".into(),
        Need::RetentionDays(_) => "drop `retention_days`".into(),
        Need::DataSize(_) => "lower `data_size` (or split the data over several namespaces)".into(),
    }
}

/// A hint naming external stores that would `meet` (the need, or every
/// need) if configured.
fn unconfigured_hint(fit: Vec<&str>, meet: &str, catalog: &BackendCatalog) -> String {
    if fit.is_empty() {
        return String::new();
    }
    let adds: Vec<String> = fit.iter().map(|k| format!("`backends.{k}`")).collect();
    format!(
        " ({} would meet {meet} but {} not configured: add {} to {})",
        fit.join(" or "),
        if fit.len() == 1 { "is" } else { "are" },
        adds.join(" or "),
        catalog.file()
    )
}

fn explain_conflict(
    needs: &[EffectiveNeed],
    assessed: &[Assessment],
    catalog: &BackendCatalog,
) -> NeedsError {
    let configured: Vec<&Assessment> = assessed.iter().filter(|a| a.configured).collect();

    // One need that no configured backend meets on its own.
    let singles: Vec<usize> = (0..needs.len())
        .filter(|&i| !configured.iter().any(|a| a.meets(i)))
        .collect();
    if let Some(&first) = singles.first() {
        let parts: Vec<String> = singles
            .iter()
            .map(|&i| {
                let why: Vec<String> = configured
                    .iter()
                    .filter_map(|a| a.verdicts[i].as_ref().err().cloned())
                    .collect();
                let fit = assessed
                    .iter()
                    .filter(|a| !a.configured && a.meets(i))
                    .map(|a| a.cap.kind)
                    .collect();
                format!(
                    "{} cannot be met by any configured backend: {}; {}{}",
                    needs[i],
                    why.join("; "),
                    advice(&needs[i].need),
                    unconfigured_hint(fit, "it", catalog)
                )
            })
            .collect();
        return NeedsError {
            field: format!("needs.{}", needs[first].need.field()),
            message: parts.join(". Also: "),
        };
    }

    let hint = unconfigured_hint(
        assessed
            .iter()
            .filter(|a| !a.configured && a.meets_all())
            .map(|a| a.cap.kind)
            .collect(),
        "every need",
        catalog,
    );

    // Two needs that each can be met, but not together.
    for i in 0..needs.len() {
        for j in i + 1..needs.len() {
            if configured.iter().any(|a| a.meets(i) && a.meets(j)) {
                continue;
            }
            let meeting_a: Vec<&&Assessment> = configured.iter().filter(|a| a.meets(i)).collect();
            let kinds: Vec<&str> = meeting_a.iter().map(|a| a.cap.kind).collect();
            let why: Vec<String> = meeting_a
                .iter()
                .filter_map(|a| a.verdicts[j].as_ref().err().cloned())
                .collect();
            return NeedsError {
                field: "needs".into(),
                message: format!(
                    "{} and {} conflict: the backends that meet {} ({}) fail {}: {}; {}, or {}{}",
                    needs[i],
                    needs[j],
                    needs[i],
                    kinds.join(", "),
                    needs[j],
                    why.join("; "),
                    advice(&needs[j].need),
                    advice(&needs[i].need),
                    hint
                ),
            };
        }
    }

    // Three or more needs that conflict only together.
    let parts: Vec<String> = configured
        .iter()
        .map(|a| {
            let failed: Vec<String> = needs
                .iter()
                .enumerate()
                .filter(|(i, _)| !a.meets(*i))
                .map(|(_, n)| n.to_string())
                .collect();
            format!("{} fails {}", a.cap.kind, failed.join(" and "))
        })
        .collect();
    NeedsError {
        field: "needs".into(),
        message: format!(
            "no configured backend meets these needs together, though every two of them can \
             be met: {}; relax one of the needs named{}",
            parts.join("; "),
            hint
        ),
    }
}
