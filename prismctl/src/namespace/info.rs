//! `prismctl namespace list` and `prismctl namespace get`.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use prism_proto::admin::v1::{
    GetNamespaceRequest, ListNamespacesRequest, ListNamespacesResponse, NamespaceInfo,
};

use super::Client;
use crate::output::{self, OutputFormat, Report, Table};
use crate::progress::Spinner;
use crate::status::{BackendView, PatternView};

/// One row of `namespace list`.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct NamespaceRow {
    name: String,
    dal: String,
    version: u64,
    backend: String,
    mode: String,
    healthy: bool,
    /// Why the backend is unhealthy; empty when healthy.
    health_detail: String,
    description: String,
    source: String,
    applied_at: String,
}

/// The result of `namespace list`.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct NamespaceList {
    /// Where the proxy stores namespaces.
    store: String,
    namespaces: Vec<NamespaceRow>,
}

impl From<ListNamespacesResponse> for NamespaceList {
    fn from(r: ListNamespacesResponse) -> Self {
        let namespaces = r
            .namespaces
            .into_iter()
            .map(|ns| {
                let status = ns.status.unwrap_or_default();
                NamespaceRow {
                    name: ns.name,
                    dal: ns.dal,
                    version: ns.version,
                    backend: status.backend_kind,
                    mode: status.mode,
                    healthy: status.healthy,
                    health_detail: status.health_detail,
                    description: ns.description,
                    source: ns.source,
                    applied_at: ns.applied_at,
                }
            })
            .collect();
        NamespaceList {
            store: r.store,
            namespaces,
        }
    }
}

impl Report for NamespaceList {
    fn table(&self) -> Table {
        let mut table = Table::new(vec![
            "NAME", "DAL", "VERSION", "BACKEND", "MODE", "HEALTH", "APPLIED",
        ]);
        for ns in &self.namespaces {
            table.push(vec![
                ns.name.clone(),
                ns.dal.clone(),
                ns.version.to_string(),
                ns.backend.clone(),
                ns.mode.clone(),
                health_cell(ns.healthy, &ns.health_detail),
                dash(&ns.applied_at),
            ]);
        }
        table
    }
}

fn health_cell(healthy: bool, detail: &str) -> String {
    if healthy {
        "ok".to_owned()
    } else if detail.is_empty() {
        "unhealthy".to_owned()
    } else {
        format!("unhealthy: {detail}")
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// `policy` of a namespace.
#[derive(Debug, Serialize, PartialEq, Eq, Default)]
struct PolicyView {
    /// False when the namespace has no policy.
    defined: bool,
    read: Vec<String>,
    write: Vec<String>,
    admin: Vec<String>,
    pii_read: Vec<String>,
}

/// One schema field.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct FieldView {
    path: String,
    #[serde(rename = "type")]
    type_name: String,
    /// The PII kind; empty when not PII.
    pii: String,
    index: String,
    access_audit: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct SchemaView {
    message: String,
    encoding: String,
    proto: String,
    fields: Vec<FieldView>,
}

/// The result of `namespace get` (its JSON form; `-o yaml` prints the
/// namespace's own YAML instead).
#[derive(Debug, Serialize, PartialEq, Eq)]
struct NamespaceView {
    name: String,
    dal: String,
    description: String,
    version: u64,
    source: String,
    applied_at: String,
    /// True when the YAML names the backend; false when it was chosen
    /// from `needs`.
    explicit_backend: bool,
    status: BackendView,
    pattern: Option<PatternView>,
    policy: PolicyView,
    limits: BTreeMap<String, u64>,
    schema: Option<SchemaView>,
    /// The YAML as applied.
    yaml: String,
}

impl From<NamespaceInfo> for NamespaceView {
    fn from(ns: NamespaceInfo) -> Self {
        let status = ns.status.unwrap_or_default();
        let pattern = PatternView::of(&status);
        let policy = ns.policy.map_or_else(PolicyView::default, |p| PolicyView {
            defined: p.defined,
            read: p.read,
            write: p.write,
            admin: p.admin,
            pii_read: p.pii_read,
        });
        let schema = ns.schema.map(|s| SchemaView {
            message: s.message,
            encoding: s.encoding,
            proto: s.proto,
            fields: s
                .fields
                .into_iter()
                .map(|f| FieldView {
                    path: f.path,
                    type_name: f.r#type,
                    pii: f.pii,
                    index: f.index,
                    access_audit: f.access_audit,
                })
                .collect(),
        });
        NamespaceView {
            name: ns.name,
            dal: ns.dal,
            description: ns.description,
            version: ns.version,
            source: ns.source,
            applied_at: ns.applied_at,
            explicit_backend: ns.explicit_backend,
            status: BackendView::from(status),
            pattern,
            policy,
            limits: ns.limits.into_iter().collect(),
            schema,
            yaml: ns.yaml,
        }
    }
}

impl NamespaceView {
    /// The readable summary printed in table mode.
    fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        let line = |out: &mut dyn Write, label: &str, value: &str| {
            writeln!(out, "{:<13}{value}", format!("{label}:"))
        };
        line(out, "Name", &self.name)?;
        line(out, "DAL", &self.dal)?;
        if !self.description.is_empty() {
            line(out, "Description", &self.description)?;
        }
        line(out, "Version", &self.version.to_string())?;
        line(out, "Applied", &dash(&self.applied_at))?;
        line(out, "Source", &dash(&self.source))?;
        let chosen = if self.explicit_backend {
            "named in the YAML".to_owned()
        } else {
            format!(
                "chosen from needs (`prismctl namespace explain {}` says why)",
                self.name
            )
        };
        let backend = format!("{} ({}), {chosen}", self.status.backend, self.status.mode);
        line(out, "Backend", &backend)?;
        line(
            out,
            "Health",
            &health_cell(self.status.healthy, &self.status.detail),
        )?;
        if let Some(p) = &self.pattern {
            line(out, "Pattern", &p.summary())?;
        }
        if self.policy.defined {
            let mut first = true;
            for (name, who) in [
                ("read", &self.policy.read),
                ("write", &self.policy.write),
                ("admin", &self.policy.admin),
                ("pii_read", &self.policy.pii_read),
            ] {
                let label = if first { "Policy" } else { "" };
                let value = format!("{name}: {}", dash(&who.join(", ")));
                if first {
                    line(out, label, &value)?;
                } else {
                    writeln!(out, "{:<13}{value}", "")?;
                }
                first = false;
            }
        } else {
            line(
                out,
                "Policy",
                "none (everything allowed without authentication, nothing with it)",
            )?;
        }
        if !self.limits.is_empty() {
            let limits: Vec<String> = self
                .limits
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            line(out, "Limits", &limits.join(", "))?;
        }
        match &self.schema {
            None => line(out, "Schema", "none")?,
            Some(schema) => {
                let mut what = format!("{} ({}", schema.message, schema.encoding);
                if !schema.proto.is_empty() {
                    what.push_str(&format!(", {}", schema.proto));
                }
                what.push(')');
                line(out, "Schema", &what)?;
                if !schema.fields.is_empty() {
                    writeln!(out)?;
                    let mut table = Table::new(vec!["FIELD", "TYPE", "PII", "INDEX", "AUDITED"]);
                    for f in &schema.fields {
                        table.push(vec![
                            f.path.clone(),
                            f.type_name.clone(),
                            dash(&f.pii),
                            dash(&f.index),
                            if f.access_audit { "yes" } else { "no" }.to_owned(),
                        ]);
                    }
                    table.write_to(out)?;
                }
            }
        }
        Ok(())
    }
}

/// `namespace list`.
pub async fn list(client: &mut Client, format: OutputFormat) -> Result<()> {
    let spinner = Spinner::start("listing namespaces (checking backend health)");
    let response = client.list_namespaces(ListNamespacesRequest {}).await;
    spinner.finish();
    let list = NamespaceList::from(response?.into_inner());
    output::print(format, &list)?;
    if format == OutputFormat::Table && !list.store.is_empty() {
        println!("\nstore: {}", list.store);
    }
    Ok(())
}

/// `namespace get NAME`.
pub async fn get(client: &mut Client, name: String, format: OutputFormat) -> Result<()> {
    let spinner = Spinner::start(format!("reading namespace {name}"));
    let response = client.get_namespace(GetNamespaceRequest { name }).await;
    spinner.finish();
    let view = NamespaceView::from(response?.into_inner());
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Table => view.write_text(&mut out)?,
        OutputFormat::Json => output::print_document(&mut out, format, &view)?,
        // The namespace as applied, so that `get -o yaml > f; edit f;
        // apply -f f` round-trips.
        OutputFormat::Yaml => {
            out.write_all(view.yaml.as_bytes())?;
            if !view.yaml.ends_with('\n') {
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_proto::admin::v1::{
        NamespaceStatus, PatternStatus, PolicyInfo, SchemaField, SchemaInfo,
    };

    fn info() -> NamespaceInfo {
        NamespaceInfo {
            name: "users".into(),
            dal: "keyvalue".into(),
            description: "User profiles".into(),
            version: 3,
            yaml: "name: users\n".into(),
            source: "ns/users.yaml".into(),
            applied_at: "2026-11-23T20:00:00Z".into(),
            status: Some(NamespaceStatus {
                name: "users".into(),
                dal: "keyvalue".into(),
                backend_kind: "sqlite".into(),
                mode: "process".into(),
                capabilities: vec!["ttl".into()],
                healthy: false,
                health_detail: "disk full".into(),
                pattern: Some(PatternStatus {
                    endpoint: "127.0.0.1:9".into(),
                    state: "serving".into(),
                    restarts: 2,
                    pid: 42,
                    last_error: String::new(),
                }),
            }),
            explicit_backend: true,
            schema: Some(SchemaInfo {
                message: "acme.User".into(),
                encoding: "protobuf".into(),
                proto: "user.proto".into(),
                fields: vec![SchemaField {
                    path: "email".into(),
                    r#type: "string".into(),
                    pii: "email".into(),
                    index: String::new(),
                    access_audit: true,
                }],
            }),
            policy: Some(PolicyInfo {
                defined: true,
                read: vec!["group:support".into()],
                write: vec![],
                admin: vec!["alice".into()],
                pii_read: vec![],
            }),
            limits: [("max_value_bytes".to_string(), 1024)]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn get_prints_a_readable_summary() {
        let mut out = Vec::new();
        NamespaceView::from(info()).write_text(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Name:        users\n\
             DAL:         keyvalue\n\
             Description: User profiles\n\
             Version:     3\n\
             Applied:     2026-11-23T20:00:00Z\n\
             Source:      ns/users.yaml\n\
             Backend:     sqlite (process), named in the YAML\n\
             Health:      unhealthy: disk full\n\
             Pattern:     serving at 127.0.0.1:9, pid 42, 2 restarts\n\
             Policy:      read: group:support\n\
             \x20            write: -\n\
             \x20            admin: alice\n\
             \x20            pii_read: -\n\
             Limits:      max_value_bytes=1024\n\
             Schema:      acme.User (protobuf, user.proto)\n\
             \n\
             FIELD  TYPE    PII    INDEX  AUDITED\n\
             email  string  email  -      yes\n"
        );
    }

    #[test]
    fn get_json_keeps_the_yaml_and_every_section() {
        let json = serde_json::to_value(NamespaceView::from(info())).unwrap();
        assert_eq!(json["yaml"], "name: users\n");
        assert_eq!(json["status"]["backend"], "sqlite");
        assert_eq!(json["pattern"]["pid"], 42);
        assert_eq!(json["schema"]["fields"][0]["type"], "string");
        assert_eq!(json["limits"]["max_value_bytes"], 1024);
    }

    #[test]
    fn list_rows_show_health_and_version() {
        let list = NamespaceList::from(ListNamespacesResponse {
            namespaces: vec![info()],
            store: "directory ns".into(),
        });
        let mut out = Vec::new();
        list.table().write_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert_eq!(
            row,
            "users  keyvalue  3        sqlite   process  unhealthy: disk full  2026-11-23T20:00:00Z"
        );
    }
}
