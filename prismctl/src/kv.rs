//! `prismctl kv`: put, get, delete and scan items of the KeyValue DAL.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use prism_proto::keyvalue::v1::key_value_service_client::KeyValueServiceClient;
use prism_proto::keyvalue::v1::{DeleteRequest, GetRequest, PutItem, PutRequest, ScanRequest};
use serde::Serialize;

use crate::connect;
use crate::output::{self, ItemView, OutputFormat, Report, Table};
use crate::pages::Pages;
use crate::selection::SelectionArgs;
use crate::ttl;

/// The largest response the client accepts. A page holds at least one item
/// however large, so this is well above the 4 MiB default.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Write one item and print the version assigned to it.
    Put(PutArgs),
    /// Read items of one id, following every page.
    Get(GetArgs),
    /// Delete items of one id and print how many were removed.
    Delete(DeleteArgs),
    /// Read every id of a namespace with its items, following every page.
    Scan(ScanArgs),
}

/// The record a command applies to.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The namespace, as configured in the proxy.
    #[arg(long)]
    pub namespace: String,
    /// The record id within the namespace.
    #[arg(long)]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// The item's key.
    #[arg(long)]
    pub key: String,
    #[command(flatten)]
    pub value: ValueArgs,
    /// Time to live, e.g. 30s, 5m, 1h30m, 250ms. Default: never expires.
    #[arg(long, value_parser = ttl::parse_ttl)]
    pub ttl: Option<Duration>,
    /// Write only if the key's current version is N; 0: only if it does not exist.
    #[arg(long, value_name = "N")]
    pub expected_version: Option<u64>,
    /// Apply a retried put only once; reusing a token returns the first result.
    #[arg(long, value_name = "TOKEN")]
    pub idempotency_token: Option<String>,
}

/// Where the value of a put comes from.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ValueArgs {
    /// The value, as UTF-8 text.
    #[arg(long)]
    pub value: Option<String>,
    /// Read the value, as raw bytes, from this file.
    #[arg(long, value_name = "PATH")]
    pub value_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Byte budget of one page; 0: the namespace default.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub page_size_bytes: u32,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The namespace, as configured in the proxy.
    #[arg(long)]
    pub namespace: String,
    /// Byte budget of one page; 0: the namespace default.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub page_size_bytes: u32,
    /// Stop after printing N items.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// Runs a `kv` subcommand against the proxy at `addr`.
pub async fn run(command: KvCommand, addr: &connect::Target, format: OutputFormat) -> Result<()> {
    match command {
        KvCommand::Put(args) => {
            // Read the value before connecting, so a bad path is reported first.
            let request = put_request(args)?;
            let report = put(client(addr).await?, request).await?;
            output::print(format, &report)
        }
        KvCommand::Get(args) => output::print(format, &get(client(addr).await?, args).await?),
        KvCommand::Delete(args) => output::print(format, &delete(client(addr).await?, args).await?),
        KvCommand::Scan(args) => output::print(format, &scan(client(addr).await?, args).await?),
    }
}

async fn client(addr: &connect::Target) -> Result<KeyValueServiceClient<connect::Conn>> {
    let channel = connect::connect(addr).await?;
    Ok(KeyValueServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES))
}

fn put_request(args: PutArgs) -> Result<PutRequest> {
    let value = match (args.value.value, args.value.value_file) {
        (Some(value), _) => value.into_bytes(),
        (None, Some(path)) => std::fs::read(&path)
            .with_context(|| format!("reading --value-file {}", path.display()))?,
        (None, None) => bail!("one of --value or --value-file is required"),
    };
    Ok(PutRequest {
        namespace: args.record.namespace,
        id: args.record.id,
        items: vec![PutItem {
            key: args.key.into_bytes(),
            value,
            ttl: args.ttl.map(ttl::to_proto),
            expected_version: args.expected_version,
        }],
        idempotency_token: args.idempotency_token.unwrap_or_default(),
    })
}

/// The result of `kv put`.
#[derive(Debug, Serialize)]
struct PutReport {
    version: u64,
    /// True when an earlier put with the same idempotency token wrote it.
    replayed: bool,
}

impl Report for PutReport {
    fn table(&self) -> Table {
        let mut table = Table::new(vec!["VERSION", "REPLAYED"]);
        table.push(vec![self.version.to_string(), self.replayed.to_string()]);
        table
    }
}

async fn put(
    mut client: KeyValueServiceClient<connect::Conn>,
    request: PutRequest,
) -> Result<PutReport> {
    let response = client.put(request).await?.into_inner();
    let Some(&version) = response.versions.first() else {
        bail!("the proxy acknowledged the put without a version");
    };
    Ok(PutReport {
        version,
        replayed: response.replayed,
    })
}

/// The items of one id, from `kv get`.
#[derive(Debug, Serialize)]
struct ItemsReport {
    namespace: String,
    id: String,
    items: Vec<ItemView>,
}

impl Report for ItemsReport {
    fn table(&self) -> Table {
        let mut table = Table::new(ItemView::header(false));
        for item in &self.items {
            table.push(item.row());
        }
        table
    }
}

async fn get(
    mut client: KeyValueServiceClient<connect::Conn>,
    args: GetArgs,
) -> Result<ItemsReport> {
    let selection = args.selection.to_selection();
    let mut items = Vec::new();
    let mut pages = Pages::default();
    while let Some(page_token) = pages.next_token() {
        let response = client
            .get(GetRequest {
                namespace: args.record.namespace.clone(),
                id: args.record.id.clone(),
                selection: Some(selection.clone()),
                page_size_bytes: args.page_size_bytes,
                page_token,
            })
            .await?
            .into_inner();
        items.extend(response.items.iter().map(|item| ItemView::new(None, item)));
        pages.advance(response.next_page_token)?;
    }
    Ok(ItemsReport {
        namespace: args.record.namespace,
        id: args.record.id,
        items,
    })
}

/// The result of `kv delete`.
#[derive(Debug, Serialize)]
struct DeleteReport {
    deleted: u64,
}

impl Report for DeleteReport {
    fn table(&self) -> Table {
        let mut table = Table::new(vec!["DELETED"]);
        table.push(vec![self.deleted.to_string()]);
        table
    }
}

async fn delete(
    mut client: KeyValueServiceClient<connect::Conn>,
    args: DeleteArgs,
) -> Result<DeleteReport> {
    let response = client
        .delete(DeleteRequest {
            namespace: args.record.namespace,
            id: args.record.id,
            selection: Some(args.selection.to_selection()),
        })
        .await?
        .into_inner();
    Ok(DeleteReport {
        deleted: response.deleted,
    })
}

/// The items of a namespace, from `kv scan`.
#[derive(Debug, Serialize)]
struct ScanReport {
    namespace: String,
    items: Vec<ItemView>,
    /// True when --limit stopped the scan before the end of the namespace.
    truncated: bool,
}

impl Report for ScanReport {
    fn table(&self) -> Table {
        let mut table = Table::new(ItemView::header(true));
        for item in &self.items {
            table.push(item.row());
        }
        table
    }
}

async fn scan(
    mut client: KeyValueServiceClient<connect::Conn>,
    args: ScanArgs,
) -> Result<ScanReport> {
    let limit = args
        .limit
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut items = Vec::new();
    let mut truncated = false;
    let mut pages = Pages::default();
    while let Some(page_token) = pages.next_token() {
        if items.len() >= limit {
            truncated = true;
            break;
        }
        let response = client
            .scan(ScanRequest {
                namespace: args.namespace.clone(),
                page_size_bytes: args.page_size_bytes,
                page_token,
            })
            .await?
            .into_inner();
        for record in &response.records {
            for item in &record.items {
                if items.len() >= limit {
                    truncated = true;
                    break;
                }
                items.push(ItemView::new(Some(&record.id), item));
            }
        }
        pages.advance(response.next_page_token)?;
    }
    Ok(ScanReport {
        namespace: args.namespace,
        items,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_args(value: ValueArgs) -> PutArgs {
        PutArgs {
            record: RecordArgs {
                namespace: "ns".into(),
                id: "r1".into(),
            },
            key: "k".into(),
            value,
            ttl: Some(Duration::from_millis(1_500)),
            expected_version: Some(0),
            idempotency_token: None,
        }
    }

    #[test]
    fn put_request_carries_every_flag() {
        let request = put_request(put_args(ValueArgs {
            value: Some("v".into()),
            value_file: None,
        }))
        .unwrap();
        assert_eq!(
            (request.namespace.as_str(), request.id.as_str()),
            ("ns", "r1")
        );
        assert_eq!(request.idempotency_token, "");
        let item = &request.items[0];
        assert_eq!(
            (item.key.as_slice(), item.value.as_slice()),
            (&b"k"[..], &b"v"[..])
        );
        assert_eq!(item.expected_version, Some(0));
        let ttl = item.ttl.expect("ttl");
        assert_eq!((ttl.seconds, ttl.nanos), (1, 500_000_000));
    }

    #[test]
    fn put_request_reads_raw_bytes_from_a_value_file() {
        let path = std::env::temp_dir().join(format!("prismctl-test-{}", std::process::id()));
        std::fs::write(&path, [0xde, 0xad, 0x00]).unwrap();
        let request = put_request(put_args(ValueArgs {
            value: None,
            value_file: Some(path.clone()),
        }));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(request.unwrap().items[0].value, [0xde, 0xad, 0x00]);

        let missing = put_request(put_args(ValueArgs {
            value: None,
            value_file: Some(path.clone()),
        }));
        assert!(format!("{:#}", missing.unwrap_err()).contains("reading --value-file"));
    }
}
