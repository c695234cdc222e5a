//! `prismctl namespace explain`: asks
//! `prism.admin.v1.AdminService/ExplainNamespace` which backend serves a
//! namespace and why.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use prism_proto::admin::v1::{ExplainNamespaceRequest, ExplainNamespaceResponse};

use super::Client;
use crate::output::{OutputFormat, Report, Table};

/// One need in effect.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct NeedView {
    name: String,
    value: String,
    /// True when the namespace file does not state it.
    defaulted: bool,
}

/// A backend that was not chosen.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct RejectedView {
    kind: String,
    reasons: Vec<String>,
}

/// The result of `prismctl namespace explain`.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct Explanation {
    namespace: String,
    backend: String,
    mode: String,
    /// True when the file names the backend; false when it was chosen
    /// from the file's needs.
    explicit: bool,
    /// The namespace file.
    source: String,
    /// Backend options, passwords redacted by the proxy.
    options: BTreeMap<String, String>,
    needs: Vec<NeedView>,
    reasons: Vec<String>,
    rejected: Vec<RejectedView>,
}

impl From<ExplainNamespaceResponse> for Explanation {
    fn from(r: ExplainNamespaceResponse) -> Self {
        Explanation {
            namespace: r.name,
            backend: r.backend_kind,
            mode: r.mode,
            explicit: r.explicit,
            source: r.source,
            options: r.options.into_iter().collect(),
            needs: r
                .needs
                .into_iter()
                .map(|n| NeedView {
                    name: n.name,
                    value: n.value,
                    defaulted: n.defaulted,
                })
                .collect(),
            reasons: r.reasons,
            rejected: r
                .rejected
                .into_iter()
                .map(|b| RejectedView {
                    kind: b.kind,
                    reasons: b.reasons,
                })
                .collect(),
        }
    }
}

impl Report for Explanation {
    /// The summary row; [`Explanation::write_text`] adds the details.
    fn table(&self) -> Table {
        let mut table = Table::new(vec!["NAMESPACE", "BACKEND", "MODE", "CHOSEN BY", "FILE"]);
        let chosen_by = if self.explicit {
            "explicit backend"
        } else {
            "needs"
        };
        table.push(vec![
            self.namespace.clone(),
            self.backend.clone(),
            self.mode.clone(),
            chosen_by.to_owned(),
            self.source.clone(),
        ]);
        table
    }
}

impl Explanation {
    /// The table form: the summary, then options, needs, reasons and the
    /// rejected backends, each under its own heading.
    fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        self.table().write_to(out)?;
        if !self.options.is_empty() {
            writeln!(out, "\nOPTIONS")?;
            for (key, value) in &self.options {
                writeln!(out, "  {key}: {value}")?;
            }
        }
        if !self.needs.is_empty() {
            writeln!(out)?;
            let mut needs = Table::new(vec!["NEED", "VALUE", "SOURCE"]);
            for need in &self.needs {
                let source = if need.defaulted { "default" } else { "stated" };
                needs.push(vec![need.name.clone(), need.value.clone(), source.into()]);
            }
            needs.write_to(out)?;
        }
        writeln!(out, "\nWHY {}", self.backend)?;
        for reason in &self.reasons {
            writeln!(out, "  - {reason}")?;
        }
        if !self.rejected.is_empty() {
            writeln!(out)?;
            let mut rejected = Table::new(vec!["REJECTED", "WHY"]);
            for backend in &self.rejected {
                for (i, reason) in backend.reasons.iter().enumerate() {
                    let kind = if i == 0 {
                        backend.kind.clone()
                    } else {
                        String::new()
                    };
                    rejected.push(vec![kind, reason.clone()]);
                }
            }
            rejected.write_to(out)?;
        }
        Ok(())
    }
}

/// `namespace explain NAME`.
pub async fn run(client: &mut Client, name: String, format: OutputFormat) -> Result<()> {
    let response = client
        .explain_namespace(ExplainNamespaceRequest { name })
        .await?
        .into_inner();
    let explanation = Explanation::from(response);
    match format {
        OutputFormat::Json | OutputFormat::Yaml => crate::output::print(format, &explanation)?,
        OutputFormat::Table => {
            let mut out = std::io::stdout().lock();
            explanation.write_text(&mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_proto::admin::v1::{NeedValue, RejectedBackend};

    fn response() -> ExplainNamespaceResponse {
        ExplainNamespaceResponse {
            name: "orders".into(),
            backend_kind: "sqlite".into(),
            mode: "embedded".into(),
            options: Default::default(),
            explicit: false,
            source: "ns/orders.yaml".into(),
            needs: vec![NeedValue {
                name: "durability".into(),
                value: "durable".into(),
                defaulted: true,
            }],
            reasons: vec!["`durability: durable` (default): sqlite writes a file".into()],
            rejected: vec![RejectedBackend {
                kind: "memstore".into(),
                reasons: vec!["first".into(), "second".into()],
            }],
        }
    }

    #[test]
    fn the_text_form_has_every_section() {
        let mut out = Vec::new();
        Explanation::from(response()).write_text(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAMESPACE  BACKEND  MODE      CHOSEN BY  FILE\n\
             orders     sqlite   embedded  needs      ns/orders.yaml\n\
             \n\
             NEED        VALUE    SOURCE\n\
             durability  durable  default\n\
             \n\
             WHY sqlite\n\
             \x20 - `durability: durable` (default): sqlite writes a file\n\
             \n\
             REJECTED  WHY\n\
             memstore  first\n\
             \x20         second\n"
        );
    }

    #[test]
    fn the_json_form_keeps_every_field() {
        let json = serde_json::to_value(Explanation::from(response())).unwrap();
        assert_eq!(json["backend"], "sqlite");
        assert_eq!(json["explicit"], false);
        assert_eq!(json["needs"][0]["defaulted"], true);
        assert_eq!(json["rejected"][0]["reasons"][1], "second");
    }
}
