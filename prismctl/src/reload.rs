//! `prismctl reload`: `prism.admin.v1.AdminService/Reload` makes the proxy
//! re-read its config store now and apply what changed.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use prism_proto::admin::v1::{ReloadRequest, ReloadResponse};

use crate::connect;
use crate::namespace;
use crate::output::{self, OutputFormat, Report, Table};
use crate::progress::Spinner;

/// A change the proxy refused; the previous version keeps serving.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct RejectedView {
    namespace: String,
    source: String,
    field: String,
    message: String,
}

/// The result of `prismctl reload`.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct ReloadView {
    /// Namespaces created or changed.
    applied: Vec<String>,
    /// Namespaces no longer in the store.
    removed: Vec<String>,
    rejected: Vec<RejectedView>,
}

impl From<ReloadResponse> for ReloadView {
    fn from(r: ReloadResponse) -> Self {
        ReloadView {
            applied: r.applied,
            removed: r.removed,
            rejected: r
                .rejected
                .into_iter()
                .map(|c| RejectedView {
                    namespace: c.namespace,
                    source: c.source,
                    field: c.field,
                    message: c.message,
                })
                .collect(),
        }
    }
}

impl Report for ReloadView {
    fn table(&self) -> Table {
        let mut table = Table::new(vec!["NAMESPACE", "CHANGE", "DETAIL"]);
        for name in &self.applied {
            table.push(vec![name.clone(), "applied".into(), "-".into()]);
        }
        for name in &self.removed {
            table.push(vec![name.clone(), "removed".into(), "-".into()]);
        }
        for r in &self.rejected {
            let field = if r.field.is_empty() {
                String::new()
            } else {
                format!("{}: ", r.field)
            };
            table.push(vec![
                r.namespace.clone(),
                "rejected".into(),
                format!(
                    "{}{field}{} (previous version keeps serving)",
                    source(r),
                    r.message
                ),
            ]);
        }
        table
    }
}

fn source(r: &RejectedView) -> String {
    if r.source.is_empty() {
        String::new()
    } else {
        format!("{}: ", r.source)
    }
}

/// Asks the proxy to reload; exits 1 when it rejected a change.
pub async fn run(target: &connect::Target, format: OutputFormat) -> Result<ExitCode> {
    let mut client = namespace::client(target).await?;
    let spinner = Spinner::start("reloading namespaces from the config store");
    let response = client.reload(ReloadRequest {}).await;
    spinner.finish();
    let view = ReloadView::from(response?.into_inner());
    let nothing = view.applied.is_empty() && view.removed.is_empty() && view.rejected.is_empty();
    if nothing && format == OutputFormat::Table {
        println!("nothing changed: the proxy already serves what the config store holds");
    } else {
        output::print(format, &view)?;
    }
    if view.rejected.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: {} change(s) rejected; fix them in the config store (or with `prismctl \
         namespace apply --dry-run`) and reload again",
        view.rejected.len()
    );
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_proto::admin::v1::RejectedChange;

    #[test]
    fn rejected_changes_say_where_and_why() {
        let view = ReloadView::from(ReloadResponse {
            applied: vec!["a".into()],
            removed: vec!["b".into()],
            rejected: vec![RejectedChange {
                namespace: "c".into(),
                source: "ns/c.yaml".into(),
                field: "backend.kind".into(),
                message: "unknown".into(),
            }],
        });
        let mut out = Vec::new();
        view.table().write_to(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAMESPACE  CHANGE    DETAIL\n\
             a          applied   -\n\
             b          removed   -\n\
             c          rejected  ns/c.yaml: backend.kind: unknown (previous version keeps serving)\n"
        );
    }
}
