//! `prismctl audit tail`: recent audit records from the proxy's memory,
//! and with `--follow` every new one as it is written
//! (`prism.admin.v1.AdminService/TailAudit`). One line per record: aligned
//! columns (`-o table`) or one JSON object per line (`-o json`).

use std::io::{self, Write};

use anyhow::Result;
use clap::{Args, Subcommand};
use prism_proto::admin::v1::admin_service_client::AdminServiceClient;
use prism_proto::admin::v1::{AuditRecord, TailAuditRequest};
use serde::Serialize;

use crate::connect;
use crate::output::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print recent audit records; with --follow, keep printing new ones.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Only records of this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only records of this principal.
    #[arg(long)]
    pub principal: Option<String>,
    /// Only records with this gRPC status, e.g. NOT_FOUND.
    #[arg(long)]
    pub status: Option<String>,
    /// Keep the stream open and print records as they are written (until
    /// interrupted or the proxy stops).
    #[arg(short, long)]
    pub follow: bool,
    /// How many recent records to print first (0: none).
    #[arg(short = 'n', long = "lines", default_value_t = 20, value_name = "N")]
    pub lines: u32,
}

/// A record as printed with `-o json`: the record's own fields.
#[derive(Debug, Serialize)]
struct RecordView<'a> {
    time: &'a str,
    principal: &'a str,
    namespace: &'a str,
    dal: &'a str,
    method: &'a str,
    ids: &'a [String],
    keys: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    selection: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    pii_fields: Vec<PiiView<'a>>,
    status: &'a str,
    latency_us: u64,
    trace_id: &'a str,
    /// Admin changes: the namespace version the change made.
    #[serde(skip_serializing_if = "is_zero")]
    config_version: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Serialize)]
struct PiiView<'a> {
    field: &'a str,
    masked: bool,
}

impl<'a> RecordView<'a> {
    fn new(r: &'a AuditRecord) -> Self {
        RecordView {
            time: &r.time,
            principal: &r.principal,
            namespace: &r.namespace,
            dal: &r.dal,
            method: &r.method,
            ids: &r.ids,
            keys: &r.keys,
            selection: &r.selection,
            truncated: r.truncated,
            pii_fields: r
                .pii_fields
                .iter()
                .map(|p| PiiView {
                    field: &p.field,
                    masked: p.masked,
                })
                .collect(),
            status: &r.status,
            latency_us: r.latency_us,
            trace_id: &r.trace_id,
            config_version: r.config_version,
        }
    }
}

/// Column widths of the table; a longer cell widens its line only.
const COLUMNS: [(&str, usize); 7] = [
    ("TIME", 24),
    ("PRINCIPAL", 12),
    ("NAMESPACE", 16),
    ("METHOD", 15),
    ("STATUS", 9),
    ("LATENCY", 9),
    ("IDS", 0),
];

fn table_line(cells: [&str; 7]) -> String {
    let mut line = String::new();
    for (i, ((_, width), cell)) in COLUMNS.iter().zip(cells).enumerate() {
        if i + 1 == COLUMNS.len() {
            line.push_str(cell);
        } else if i == 5 {
            line.push_str(&format!("{cell:>width$}  "));
        } else {
            line.push_str(&format!("{cell:<width$}  "));
        }
    }
    line.trim_end().to_owned()
}

fn header() -> String {
    table_line(COLUMNS.map(|(name, _)| name))
}

fn row(r: &AuditRecord) -> String {
    let latency = format!("{}us", r.latency_us);
    let mut ids = r.ids.join(",");
    if ids.is_empty() && r.config_version > 0 {
        // An admin change: the namespace version it made.
        ids = format!("version {}", r.config_version);
    }
    if ids.is_empty() {
        ids.push('-');
    }
    if r.truncated {
        ids.push_str(",...");
    }
    table_line([
        &r.time,
        &r.principal,
        &r.namespace,
        &r.method,
        &r.status,
        &latency,
        &ids,
    ])
}

/// Prints one record in `format`.
fn print(out: &mut impl Write, format: OutputFormat, r: &AuditRecord) -> io::Result<()> {
    match format {
        OutputFormat::Table => writeln!(out, "{}", row(r))?,
        OutputFormat::Json => {
            serde_json::to_writer(&mut *out, &RecordView::new(r))?;
            writeln!(out)?;
        }
        // One YAML document per record, so a followed stream stays valid.
        OutputFormat::Yaml => {
            let yaml = crate::output::to_yaml(&RecordView::new(r)).map_err(io::Error::other)?;
            write!(out, "---\n{yaml}")?;
        }
    }
    // With --follow a record must show as soon as it arrives.
    out.flush()
}

pub async fn run(
    command: AuditCommand,
    addr: &connect::Target,
    format: OutputFormat,
) -> Result<()> {
    let AuditCommand::Tail(args) = command;
    let mut client = AdminServiceClient::new(connect::connect(addr).await?);
    let request = TailAuditRequest {
        namespace: args.namespace.unwrap_or_default(),
        principal: args.principal.unwrap_or_default(),
        status: args.status.unwrap_or_default(),
        follow: args.follow,
        limit: Some(args.lines),
    };
    let mut stream = client.tail_audit(request).await?.into_inner();
    let mut out = io::stdout().lock();
    if matches!(format, OutputFormat::Table) {
        writeln!(out, "{}", header())?;
        out.flush()?;
    }
    while let Some(record) = stream.message().await? {
        print(&mut out, format, &record)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            time: "2026-11-23T17:07:08.123Z".into(),
            principal: "anonymous".into(),
            namespace: "orders".into(),
            dal: "keyvalue".into(),
            method: "Put".into(),
            ids: vec!["hmac:00112233445566778899aabbccddeeff".into()],
            keys: vec!["hmac:ffeeddccbbaa99887766554433221100".into()],
            selection: String::new(),
            truncated: false,
            pii_fields: vec![],
            status: "OK".into(),
            latency_us: 42,
            trace_id: "t-1".into(),
            config_version: 0,
        }
    }

    #[test]
    fn a_row_lines_up_with_the_header() {
        let header = header();
        let row = row(&record());
        assert!(header.starts_with("TIME "), "{header}");
        assert_eq!(header.find("NAMESPACE"), row.find("orders"));
        assert_eq!(header.find("IDS"), row.find("hmac:"));
        assert!(row.contains("    42us"), "latency right-aligned: {row}");
    }

    #[test]
    fn json_is_one_line_per_record() {
        let mut out = Vec::new();
        print(&mut out, OutputFormat::Json, &record()).unwrap();
        print(&mut out, OutputFormat::Json, &record()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let json: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(json["namespace"], "orders");
        assert_eq!(json["latency_us"], 42);
        assert!(json.get("selection").is_none());
    }
}
