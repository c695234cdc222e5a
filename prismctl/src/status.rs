//! `prismctl backend status` and `prismctl pattern list`, both from
//! `prism.admin.v1.AdminService/GetStatus`: each namespace's backend and
//! its health, and the pattern processes the proxy supervises or calls.

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;

use prism_proto::admin::v1::{GetStatusRequest, NamespaceStatus};

use crate::connect;
use crate::namespace;
use crate::output::{self, OutputFormat, Report, Table};
use crate::progress::Spinner;

#[derive(Debug, Subcommand)]
pub enum BackendCommand {
    /// Every namespace's backend: kind, mode (embedded, process or
    /// remote), and whether its health check passes (run on each call).
    Status,
}

#[derive(Debug, Subcommand)]
pub enum PatternCommand {
    /// The namespaces served by a pattern process (`process` mode, which
    /// the proxy supervises, or `remote`): endpoint, state, restarts, pid
    /// and the last error.
    List,
}

/// One namespace's backend.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct BackendView {
    pub namespace: String,
    pub dal: String,
    /// The backend kind, e.g. `postgres`.
    pub backend: String,
    /// `embedded`, `process` or `remote`.
    pub mode: String,
    pub capabilities: Vec<String>,
    pub healthy: bool,
    /// Why the health check failed; empty when healthy.
    pub detail: String,
}

impl From<NamespaceStatus> for BackendView {
    fn from(s: NamespaceStatus) -> Self {
        BackendView {
            namespace: s.name,
            dal: s.dal,
            backend: s.backend_kind,
            mode: s.mode,
            capabilities: s.capabilities,
            healthy: s.healthy,
            detail: s.health_detail,
        }
    }
}

/// One namespace's pattern process.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PatternView {
    pub namespace: String,
    /// `process` or `remote`.
    pub mode: String,
    pub endpoint: String,
    /// `process` mode: starting, serving, degraded, restarting, stopping
    /// or stopped; empty for `remote`.
    pub state: String,
    pub restarts: u64,
    /// 0 when no process runs.
    pub pid: u32,
    pub last_error: String,
}

impl PatternView {
    /// The pattern of a namespace served by one.
    pub fn of(s: &NamespaceStatus) -> Option<Self> {
        let p = s.pattern.as_ref()?;
        Some(PatternView {
            namespace: s.name.clone(),
            mode: s.mode.clone(),
            endpoint: p.endpoint.clone(),
            state: p.state.clone(),
            restarts: p.restarts,
            pid: p.pid,
            last_error: p.last_error.clone(),
        })
    }

    /// One line, e.g. `serving at 127.0.0.1:9, pid 42, 2 restarts`.
    pub fn summary(&self) -> String {
        let state = if self.state.is_empty() {
            "remote"
        } else {
            &self.state
        };
        let mut text = format!("{state} at {}", self.endpoint);
        if self.pid != 0 {
            text.push_str(&format!(", pid {}", self.pid));
        }
        if self.mode == "process" {
            text.push_str(&format!(", {} restarts", self.restarts));
        }
        if !self.last_error.is_empty() {
            text.push_str(&format!(", last error: {}", self.last_error));
        }
        text
    }
}

#[derive(Debug, Serialize)]
struct Backends {
    namespaces: Vec<BackendView>,
}

impl Report for Backends {
    fn table(&self) -> Table {
        let mut table = Table::new(vec![
            "NAMESPACE",
            "DAL",
            "BACKEND",
            "MODE",
            "HEALTHY",
            "DETAIL",
        ]);
        for b in &self.namespaces {
            table.push(vec![
                b.namespace.clone(),
                b.dal.clone(),
                b.backend.clone(),
                b.mode.clone(),
                if b.healthy { "yes" } else { "no" }.to_owned(),
                if b.detail.is_empty() {
                    "-".to_owned()
                } else {
                    b.detail.clone()
                },
            ]);
        }
        table
    }
}

#[derive(Debug, Serialize)]
struct Patterns {
    patterns: Vec<PatternView>,
}

impl Report for Patterns {
    fn table(&self) -> Table {
        let mut table = Table::new(vec![
            "NAMESPACE",
            "MODE",
            "ENDPOINT",
            "STATE",
            "RESTARTS",
            "PID",
            "LAST ERROR",
        ]);
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        for p in &self.patterns {
            table.push(vec![
                p.namespace.clone(),
                p.mode.clone(),
                p.endpoint.clone(),
                dash(&p.state),
                p.restarts.to_string(),
                if p.pid == 0 {
                    "-".to_owned()
                } else {
                    p.pid.to_string()
                },
                dash(&p.last_error),
            ]);
        }
        table
    }
}

async fn status(target: &connect::Target) -> Result<Vec<NamespaceStatus>> {
    let mut client = namespace::client(target).await?;
    let spinner = Spinner::start("checking backend health");
    let response = client.get_status(GetStatusRequest {}).await;
    spinner.finish();
    Ok(response?.into_inner().namespaces)
}

/// `backend status`.
pub async fn backend(
    command: BackendCommand,
    target: &connect::Target,
    format: OutputFormat,
) -> Result<()> {
    let BackendCommand::Status = command;
    let namespaces = status(target).await?;
    output::print(
        format,
        &Backends {
            namespaces: namespaces.into_iter().map(BackendView::from).collect(),
        },
    )
}

/// `pattern list`.
pub async fn pattern(
    command: PatternCommand,
    target: &connect::Target,
    format: OutputFormat,
) -> Result<()> {
    let PatternCommand::List = command;
    let namespaces = status(target).await?;
    let patterns = namespaces.iter().filter_map(PatternView::of).collect();
    output::print(format, &Patterns { patterns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_proto::admin::v1::PatternStatus;

    fn status(name: &str, pattern: Option<PatternStatus>) -> NamespaceStatus {
        NamespaceStatus {
            name: name.into(),
            dal: "keyvalue".into(),
            backend_kind: "memstore".into(),
            mode: if pattern.is_some() {
                "process"
            } else {
                "embedded"
            }
            .into(),
            capabilities: vec![],
            healthy: true,
            health_detail: String::new(),
            pattern,
        }
    }

    #[test]
    fn only_pattern_namespaces_are_listed() {
        let all = [
            status("a", None),
            status(
                "b",
                Some(PatternStatus {
                    endpoint: "127.0.0.1:7".into(),
                    state: "restarting".into(),
                    restarts: 3,
                    pid: 0,
                    last_error: "exited with 1".into(),
                }),
            ),
        ];
        let patterns = Patterns {
            patterns: all.iter().filter_map(PatternView::of).collect(),
        };
        let mut out = Vec::new();
        patterns.table().write_to(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAMESPACE  MODE     ENDPOINT     STATE       RESTARTS  PID  LAST ERROR\n\
             b          process  127.0.0.1:7  restarting  3         -    exited with 1\n"
        );
        assert_eq!(
            patterns.patterns[0].summary(),
            "restarting at 127.0.0.1:7, 3 restarts, last error: exited with 1"
        );
    }

    #[test]
    fn backend_rows_say_healthy_or_why_not() {
        let mut sick = status("s", None);
        sick.healthy = false;
        sick.health_detail = "connection refused".into();
        let backends = Backends {
            namespaces: vec![
                BackendView::from(status("a", None)),
                BackendView::from(sick),
            ],
        };
        let mut out = Vec::new();
        backends.table().write_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("a          keyvalue  memstore  embedded  yes      -"),
            "{text}"
        );
        assert!(text.contains("no       connection refused"), "{text}");
    }
}
