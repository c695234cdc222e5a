//! `prismctl pubsub`: publish messages and subscribe to a topic of the
//! PubSub DAL.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use prism_proto::pubsub::v1::pub_sub_service_client::PubSubServiceClient;
use prism_proto::pubsub::v1::{
    AckRequest, Message, PublishMessage, PublishRequest, StartAt, SubscribeRequest,
    subscribe_response,
};
use serde::Serialize;

use crate::connect;
use crate::output::{self, OutputFormat, Report, Table, TextOrHex};
use crate::ts::{parse_tag, print_streamed};
use crate::when;

const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum PubSubCommand {
    /// Publish one message, or one per line of stdin, and print their ids.
    Publish(PublishArgs),
    /// Receive a topic's messages as a member of a consumer group, acking
    /// each once printed, until interrupted (or --limit).
    Subscribe(SubscribeArgs),
}

#[derive(Debug, Args)]
pub struct TopicArgs {
    /// The namespace, as configured in the proxy.
    #[arg(long)]
    pub namespace: String,
    /// The topic within the namespace.
    #[arg(long)]
    pub topic: String,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub topic: TopicArgs,
    #[command(flatten)]
    pub body: BodyArgs,
    /// Messages with the same key are delivered in order (on backends with
    /// the ordering_key capability).
    #[arg(long)]
    pub ordering_key: Option<String>,
    /// An attribute, NAME=VALUE; repeat for more.
    #[arg(long = "attr", value_name = "NAME=VALUE", value_parser = parse_tag)]
    pub attributes: Vec<(String, String)>,
}

/// Where the message body comes from.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BodyArgs {
    /// The message, as UTF-8 text.
    #[arg(long)]
    pub message: Option<String>,
    /// Read the message, as raw bytes, from this file.
    #[arg(long, value_name = "PATH")]
    pub message_file: Option<PathBuf>,
    /// Publish each line of stdin as one message, in one batch.
    #[arg(long)]
    pub lines: bool,
}

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    #[command(flatten)]
    pub topic: TopicArgs,
    /// The consumer group; consumers of one group share its messages.
    #[arg(long)]
    pub group: String,
    /// Redeliver a message not acked within this (e.g. 30s). Default: the
    /// namespace's.
    #[arg(long, value_parser = crate::ttl::parse_ttl)]
    pub ack_deadline: Option<Duration>,
    /// Deliveries before a message is dead-lettered. Default: the
    /// namespace's.
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// A new group starts from the earliest retained message (default:
    /// only messages published after it is created).
    #[arg(long)]
    pub earliest: bool,
    /// Do not acknowledge: messages are delivered again after the ack
    /// deadline (to inspect a topic without consuming it).
    #[arg(long)]
    pub no_ack: bool,
    /// Stop after printing N messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

pub async fn run(
    command: PubSubCommand,
    addr: &connect::Target,
    format: OutputFormat,
) -> Result<()> {
    match command {
        PubSubCommand::Publish(args) => {
            let request = publish_request(args)?;
            let report = publish(client(addr).await?, request).await?;
            output::print(format, &report)
        }
        PubSubCommand::Subscribe(args) => subscribe(client(addr).await?, args, format).await,
    }
}

async fn client(addr: &connect::Target) -> Result<PubSubServiceClient<connect::Conn>> {
    let channel = connect::connect(addr).await?;
    Ok(PubSubServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES))
}

fn publish_request(args: PublishArgs) -> Result<PublishRequest> {
    let payloads: Vec<Vec<u8>> = match (args.body.message, args.body.message_file, args.body.lines)
    {
        (Some(text), _, _) => vec![text.into_bytes()],
        (None, Some(path), _) => vec![
            std::fs::read(&path)
                .with_context(|| format!("reading --message-file {}", path.display()))?,
        ],
        (None, None, true) => io::stdin()
            .lock()
            .lines()
            .map(|l| l.map(String::into_bytes))
            .collect::<io::Result<_>>()
            .context("reading messages from stdin")?,
        (None, None, false) => bail!("one of --message, --message-file or --lines is required"),
    };
    if payloads.is_empty() {
        bail!("stdin held no line to publish");
    }
    let attributes: std::collections::HashMap<_, _> = args.attributes.into_iter().collect();
    Ok(PublishRequest {
        namespace: args.topic.namespace,
        topic: args.topic.topic,
        messages: payloads
            .into_iter()
            .map(|payload| PublishMessage {
                ordering_key: args.ordering_key.clone().unwrap_or_default(),
                attributes: attributes.clone(),
                payload,
            })
            .collect(),
    })
}

/// The result of `pubsub publish`.
#[derive(Debug, Serialize)]
struct PublishReport {
    message_ids: Vec<String>,
}

impl Report for PublishReport {
    fn table(&self) -> Table {
        let mut table = Table::new(vec!["MESSAGE_ID"]);
        for id in &self.message_ids {
            table.push(vec![id.clone()]);
        }
        table
    }
}

async fn publish(
    mut client: PubSubServiceClient<connect::Conn>,
    request: PublishRequest,
) -> Result<PublishReport> {
    let response = client.publish(request).await?.into_inner();
    Ok(PublishReport {
        message_ids: response.message_ids,
    })
}

/// One delivered message as printed.
#[derive(Debug, Serialize)]
struct MessageView {
    message_id: String,
    attempt: u32,
    publish_time: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    ordering_key: String,
    attributes: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_hex: Option<String>,
}

impl MessageView {
    fn new(m: &Message) -> Self {
        let payload = TextOrHex::new(&m.payload);
        MessageView {
            message_id: m.message_id.clone(),
            attempt: m.attempt,
            publish_time: m
                .publish_time
                .as_ref()
                .map(when::render)
                .unwrap_or_default(),
            ordering_key: m.ordering_key.clone(),
            attributes: m.attributes.clone().into_iter().collect(),
            payload: payload.text,
            payload_hex: payload.hex,
        }
    }

    const HEADER: [&'static str; 5] = [
        "MESSAGE_ID",
        "ATTEMPT",
        "PUBLISHED",
        "ATTRIBUTES",
        "PAYLOAD",
    ];

    fn row(&self) -> Vec<String> {
        let attributes = self
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let payload = TextOrHex {
            text: self.payload.clone(),
            hex: self.payload_hex.clone(),
        };
        vec![
            self.message_id.clone(),
            self.attempt.to_string(),
            self.publish_time.clone(),
            if attributes.is_empty() {
                "-".into()
            } else {
                attributes
            },
            payload.cell(),
        ]
    }
}

async fn subscribe(
    mut client: PubSubServiceClient<connect::Conn>,
    args: SubscribeArgs,
    format: OutputFormat,
) -> Result<()> {
    let namespace = args.topic.namespace.clone();
    let topic = args.topic.topic.clone();
    let mut stream = client
        .subscribe(SubscribeRequest {
            namespace: namespace.clone(),
            topic: topic.clone(),
            group: args.group.clone(),
            ack_deadline_seconds: args
                .ack_deadline
                .map_or(0, |d| d.as_secs().clamp(1, u64::from(u32::MAX)) as u32),
            max_attempts: args.max_attempts.unwrap_or(0),
            start_at: if args.earliest {
                StartAt::Earliest
            } else {
                StartAt::Latest
            } as i32,
        })
        .await?
        .into_inner();
    let mut out = io::stdout().lock();
    let mut printed = 0u64;
    while let Some(item) = stream.message().await? {
        match item.item {
            Some(subscribe_response::Item::Subscribed(s)) => {
                eprintln!(
                    "prismctl: subscribed to {topic} in group {} as {} (ack deadline {}s, \
                     dead letter after {} attempts)",
                    args.group, s.consumer, s.ack_deadline_seconds, s.max_attempts
                );
                if format == OutputFormat::Table {
                    writeln!(out, "{}", MessageView::HEADER.join("  "))?;
                    out.flush()?;
                }
            }
            Some(subscribe_response::Item::Message(m)) => {
                let view = MessageView::new(&m);
                print_streamed(&mut out, format, view.row(), &view)?;
                if !args.no_ack {
                    client
                        .ack(AckRequest {
                            namespace: namespace.clone(),
                            topic: topic.clone(),
                            group: args.group.clone(),
                            ack_ids: vec![m.ack_id],
                        })
                        .await
                        .context("acknowledging a printed message")?;
                }
                printed += 1;
                if args.limit.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
            }
            None => {}
        }
    }
    bail!(
        "the proxy ended the subscription (is it shutting down?); run the command again to resume"
    )
}
