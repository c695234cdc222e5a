//! How a need is checked against a backend kind's [`NeedsProfile`], which
//! the kind's factory declares (`pattern_core::Factory::needs_profile`).

use pattern_core::needs::NeedsProfile;

use super::{Consistency, Need, Scope, format_size};

/// A backend kind's verdict on one need.
pub trait Verdict {
    /// Whether this backend meets `need`; either way a sentence saying
    /// why, starting with the backend's name.
    fn check(&self, need: &Need) -> Result<String, String>;
}

impl Verdict for NeedsProfile {
    fn check(&self, need: &Need) -> Result<String, String> {
        let kind = self.kind;
        let verdict = |ok: bool, text: String| if ok { Ok(text) } else { Err(text) };
        match *need {
            Need::Consistency(want) => {
                let text = match self.consistency {
                    Consistency::Strong => {
                        format!(
                            "{kind} is strongly consistent: a read sees every acknowledged write"
                        )
                    }
                    Consistency::Eventual => {
                        format!("{kind} is eventually consistent: a read may miss recent writes")
                    }
                };
                verdict(self.consistency >= want, text)
            }
            Need::Durability(want) => verdict(
                self.durability >= want,
                format!(
                    "{kind} {} (durability {})",
                    self.durability_note,
                    self.durability.name()
                ),
            ),
            Need::Scope(Scope::Shared) => match self.scope {
                Scope::Shared => Ok(format!(
                    "{kind} is a shared store every proxy of the fleet reaches"
                )),
                Scope::Local => Err(format!(
                    "{kind} is local to one proxy; other proxies of the fleet would not see its data"
                )),
            },
            Need::Scope(Scope::Local) => Ok(match self.scope {
                Scope::Local => format!("{kind} is local to this proxy, which is all it needs"),
                Scope::Shared => format!("{kind} is shared, which also serves a single proxy"),
            }),
            Need::ReadRps(want) => verdict(
                self.read_rps >= want,
                format!(
                    "{kind} sustains about {} reads/s per namespace",
                    self.read_rps
                ),
            ),
            Need::WriteRps(want) => verdict(
                self.write_rps >= want,
                format!(
                    "{kind} sustains about {} writes/s per namespace{}",
                    self.write_rps, self.write_note
                ),
            ),
            Need::P99LatencyMs(want) => verdict(
                self.p99_ms <= want,
                format!("{kind} answers with a p99 of about {} ms", self.p99_ms),
            ),
            Need::RetentionDays(0) => Ok(format!("{kind}: no retention is required")),
            Need::RetentionDays(_) => {
                if self.keeps_for_days {
                    Ok(format!(
                        "{kind} keeps items on disk until they are deleted or expire"
                    ))
                } else {
                    Err(format!(
                        "{kind} cannot promise to keep items for days: {}",
                        self.durability_note
                    ))
                }
            }
            Need::DataSize(size) => verdict(
                self.max_data_bytes >= size.0,
                format!(
                    "{kind} holds up to {} per namespace ({})",
                    format_size(self.max_data_bytes),
                    self.data_note
                ),
            ),
        }
    }
}
