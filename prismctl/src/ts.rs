//! `prismctl ts`: write, read and tail events of the TimeSeries DAL.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use prism_proto::timeseries::v1::time_series_service_client::TimeSeriesServiceClient;
use prism_proto::timeseries::v1::{
    Event, Order, ReadRequest, StoredEvent, TailRequest, WriteRequest, tail_response,
};
use serde::Serialize;

use crate::connect;
use crate::output::{self, OutputFormat, Report, Table, TextOrHex};
use crate::pages::Pages;
use crate::when;

/// The largest response the client accepts (a page holds at least one
/// event however large).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum TsCommand {
    /// Write one event (idempotent: the same series, time and event id
    /// writes nothing the second time).
    Write(WriteArgs),
    /// Read the events of one series in a time range, following every page.
    Read(ReadArgs),
    /// Print the events of one series from a point in time, then new ones
    /// as they are written, until interrupted (or --limit).
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub struct SeriesArgs {
    /// The namespace, as configured in the proxy.
    #[arg(long)]
    pub namespace: String,
    /// The series within the namespace.
    #[arg(long)]
    pub series: String,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub series: SeriesArgs,
    /// When the event happened: now, an age like -5m, or an RFC 3339 UTC
    /// time. Default: now.
    #[arg(long, value_parser = when::parse_time)]
    pub time: Option<i64>,
    /// The event's id, unique within its series and time. Default: one
    /// made from the time and the process id; give one to make a retried
    /// write recognisable.
    #[arg(long)]
    pub event_id: Option<String>,
    /// A tag, NAME=VALUE; repeat for more.
    #[arg(long = "tag", value_name = "NAME=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    #[command(flatten)]
    pub payload: PayloadArgs,
}

/// Where the payload comes from.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PayloadArgs {
    /// The payload, as UTF-8 text.
    #[arg(long)]
    pub payload: Option<String>,
    /// Read the payload, as raw bytes, from this file.
    #[arg(long, value_name = "PATH")]
    pub payload_file: Option<PathBuf>,
}

impl PayloadArgs {
    pub fn bytes(self) -> Result<Vec<u8>> {
        match (self.payload, self.payload_file) {
            (Some(text), _) => Ok(text.into_bytes()),
            (None, Some(path)) => std::fs::read(&path)
                .with_context(|| format!("reading --payload-file {}", path.display())),
            (None, None) => bail!("one of --payload or --payload-file is required"),
        }
    }
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub series: SeriesArgs,
    /// Start of the range (inclusive): now, an age like -1h, or an RFC 3339
    /// UTC time. Default: the beginning.
    #[arg(long, value_parser = when::parse_time)]
    pub start: Option<i64>,
    /// End of the range (exclusive). Default: no end.
    #[arg(long, value_parser = when::parse_time)]
    pub end: Option<i64>,
    /// Only events with this tag, NAME=VALUE; repeat for more (all must match).
    #[arg(long = "tag", value_name = "NAME=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// Newest events first (default: oldest first).
    #[arg(long)]
    pub newest_first: bool,
    /// Byte budget of one page; 0: the namespace default.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub page_size_bytes: u32,
    /// Stop after printing N events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub series: SeriesArgs,
    /// Print stored events from this time on first: an age like -10m, or an
    /// RFC 3339 UTC time. Default: only events written from now on.
    #[arg(long, value_parser = when::parse_time)]
    pub from: Option<i64>,
    /// Only events with this tag, NAME=VALUE; repeat for more.
    #[arg(long = "tag", value_name = "NAME=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// Stop after printing N events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// `NAME=VALUE`.
pub fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("'{text}' is not NAME=VALUE (e.g. host=web-1)")),
    }
}

fn tag_map(tags: Vec<(String, String)>) -> HashMap<String, String> {
    tags.into_iter().collect()
}

pub async fn run(command: TsCommand, addr: &connect::Target, format: OutputFormat) -> Result<()> {
    match command {
        TsCommand::Write(args) => {
            let request = write_request(args)?;
            let report = write(client(addr).await?, request).await?;
            output::print(format, &report)
        }
        TsCommand::Read(args) => output::print(format, &read(client(addr).await?, args).await?),
        TsCommand::Tail(args) => tail(client(addr).await?, args, format).await,
    }
}

async fn client(addr: &connect::Target) -> Result<TimeSeriesServiceClient<connect::Conn>> {
    let channel = connect::connect(addr).await?;
    Ok(TimeSeriesServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES))
}

fn write_request(args: WriteArgs) -> Result<WriteRequest> {
    let time_us = args.time.unwrap_or_else(when::now_us);
    let event_id = args
        .event_id
        .unwrap_or_else(|| format!("prismctl-{}-{time_us}", std::process::id()));
    Ok(WriteRequest {
        namespace: args.series.namespace,
        events: vec![Event {
            series_id: args.series.series,
            event_time: Some(when::timestamp(time_us)),
            event_id,
            tags: tag_map(args.tags),
            payload: args.payload.bytes()?,
        }],
    })
}

/// The result of `ts write`.
#[derive(Debug, Serialize)]
struct WriteReport {
    event_id: String,
    time: String,
    written: u32,
    duplicates: u32,
}

impl Report for WriteReport {
    fn table(&self) -> Table {
        let mut table = Table::new(vec!["EVENT_ID", "TIME", "WRITTEN", "DUPLICATES"]);
        table.push(vec![
            self.event_id.clone(),
            self.time.clone(),
            self.written.to_string(),
            self.duplicates.to_string(),
        ]);
        table
    }
}

async fn write(
    mut client: TimeSeriesServiceClient<connect::Conn>,
    request: WriteRequest,
) -> Result<WriteReport> {
    let event = request.events[0].clone();
    let response = client.write(request).await?.into_inner();
    Ok(WriteReport {
        event_id: event.event_id,
        time: event
            .event_time
            .as_ref()
            .map(when::render)
            .unwrap_or_default(),
        written: response.written,
        duplicates: response.duplicates,
    })
}

/// One event as printed.
#[derive(Debug, Serialize)]
pub struct EventView {
    series: String,
    time: String,
    event_id: String,
    sequence: u64,
    tags: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_hex: Option<String>,
}

impl EventView {
    fn new(stored: &StoredEvent) -> Self {
        let e = stored.event.clone().unwrap_or_default();
        let payload = TextOrHex::new(&e.payload);
        EventView {
            series: e.series_id,
            time: e.event_time.as_ref().map(when::render).unwrap_or_default(),
            event_id: e.event_id,
            sequence: stored.sequence,
            tags: e.tags.into_iter().collect(),
            payload: payload.text,
            payload_hex: payload.hex,
        }
    }

    const HEADER: [&'static str; 5] = ["TIME", "EVENT_ID", "SEQUENCE", "TAGS", "PAYLOAD"];

    fn row(&self) -> Vec<String> {
        let tags = self
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let payload = TextOrHex {
            text: self.payload.clone(),
            hex: self.payload_hex.clone(),
        };
        vec![
            self.time.clone(),
            self.event_id.clone(),
            self.sequence.to_string(),
            if tags.is_empty() { "-".into() } else { tags },
            payload.cell(),
        ]
    }
}

/// The events of `ts read`.
#[derive(Debug, Serialize)]
struct ReadReport {
    namespace: String,
    series: String,
    events: Vec<EventView>,
    /// True when --limit stopped the read before the end of the range.
    truncated: bool,
}

impl Report for ReadReport {
    fn table(&self) -> Table {
        let mut table = Table::new(EventView::HEADER.to_vec());
        for e in &self.events {
            table.push(e.row());
        }
        table
    }
}

async fn read(
    mut client: TimeSeriesServiceClient<connect::Conn>,
    args: ReadArgs,
) -> Result<ReadReport> {
    let limit = args
        .limit
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let tags = tag_map(args.tags);
    let mut events = Vec::new();
    let mut truncated = false;
    let mut pages = Pages::default();
    while let Some(page_token) = pages.next_token() {
        if events.len() >= limit {
            truncated = true;
            break;
        }
        let response = client
            .read(ReadRequest {
                namespace: args.series.namespace.clone(),
                series_id: args.series.series.clone(),
                start: args.start.map(when::timestamp),
                end: args.end.map(when::timestamp),
                tags: tags.clone(),
                order: if args.newest_first {
                    Order::NewestFirst
                } else {
                    Order::OldestFirst
                } as i32,
                page_size_bytes: args.page_size_bytes,
                page_token,
            })
            .await?
            .into_inner();
        for e in &response.events {
            if events.len() >= limit {
                truncated = true;
                break;
            }
            events.push(EventView::new(e));
        }
        pages.advance(response.next_page_token)?;
    }
    Ok(ReadReport {
        namespace: args.series.namespace,
        series: args.series.series,
        events,
        truncated,
    })
}

/// Prints one streamed item: a table row, a JSON line, or a YAML document.
pub fn print_streamed(
    out: &mut impl Write,
    format: OutputFormat,
    row: Vec<String>,
    view: &impl Serialize,
) -> Result<()> {
    match format {
        OutputFormat::Table => writeln!(out, "{}", row.join("  "))?,
        OutputFormat::Json => {
            serde_json::to_writer(&mut *out, view)?;
            writeln!(out)?;
        }
        OutputFormat::Yaml => write!(out, "---\n{}", output::to_yaml(view)?)?,
    }
    out.flush()?;
    Ok(())
}

async fn tail(
    mut client: TimeSeriesServiceClient<connect::Conn>,
    args: TailArgs,
    format: OutputFormat,
) -> Result<()> {
    let mut stream = client
        .tail(TailRequest {
            namespace: args.series.namespace,
            series_id: args.series.series,
            from: args.from.map(when::timestamp),
            tags: tag_map(args.tags),
        })
        .await?
        .into_inner();
    let mut out = io::stdout().lock();
    if format == OutputFormat::Table {
        writeln!(out, "{}", EventView::HEADER.join("  "))?;
        out.flush()?;
    }
    let mut printed = 0u64;
    while let Some(item) = stream.message().await? {
        match item.item {
            Some(tail_response::Item::Event(e)) => {
                let view = EventView::new(&e);
                print_streamed(&mut out, format, view.row(), &view)?;
                printed += 1;
                if args.limit.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
            }
            Some(tail_response::Item::CaughtUp(c)) => {
                eprintln!(
                    "prismctl: caught up ({printed} stored events, sequence {}); following new events",
                    c.sequence
                );
            }
            None => {}
        }
    }
    bail!("the proxy ended the tail (is it shutting down?); run the command again to resume")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse() {
        assert_eq!(
            parse_tag("host=web-1").unwrap(),
            ("host".into(), "web-1".into())
        );
        assert_eq!(
            parse_tag("empty=").unwrap(),
            ("empty".into(), String::new())
        );
        assert!(parse_tag("=x").is_err());
        assert!(parse_tag("novalue").is_err());
    }
}
