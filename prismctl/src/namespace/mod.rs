//! `prismctl namespace ...`: list, show, create or change, delete and
//! explain the proxy's namespaces through `prism.admin.v1.AdminService`.

mod apply;
mod explain;
mod info;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use prism_proto::admin::v1::admin_service_client::AdminServiceClient;

use crate::connect::{self, Conn};
use crate::output::OutputFormat;

/// An admin API client.
pub type Client = AdminServiceClient<Conn>;

#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// List the namespaces the proxy serves (with authentication: those you
    /// administer), with their version, backend and health.
    List,
    /// Show one namespace: version, backend and health, policy, limits and
    /// schema. `-o yaml` prints the namespace's YAML as applied, ready to
    /// edit and `apply -f` again.
    Get {
        /// The namespace.
        name: String,
    },
    /// Create or change a namespace from its YAML file. The proxy validates
    /// the change (parses it, chooses and opens the backend) before storing
    /// it; an invalid change is refused and the previous version keeps
    /// serving. Prints created/updated/unchanged, the version and the diff.
    Apply {
        /// The namespace YAML file; `-` reads standard input.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Only validate and show the diff; change nothing. Exits 1 when
        /// the YAML has errors.
        #[arg(long)]
        dry_run: bool,
        /// Refuse unless the namespace is at this version (0: it must not
        /// exist yet), so that concurrent edits do not overwrite each other.
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
    /// Stop serving a namespace: new calls get NOT_FOUND, calls in flight
    /// are drained (allowed to finish), then its backend is closed. Stored
    /// data is kept.
    Delete {
        /// The namespace.
        name: String,
        /// Refuse unless the namespace is at this version.
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
    /// Show which backend serves a namespace and why: the needs in effect,
    /// the reasons for the choice and why each other backend was rejected.
    Explain {
        /// The namespace.
        name: String,
    },
}

/// Connects to the proxy's admin API.
pub async fn client(target: &connect::Target) -> Result<Client> {
    Ok(AdminServiceClient::new(connect::connect(target).await?))
}

/// Runs a `namespace` subcommand and prints the result.
pub async fn run(
    command: NamespaceCommand,
    target: &connect::Target,
    format: OutputFormat,
) -> Result<ExitCode> {
    // Read the file before connecting, so that a missing file is reported
    // even when the proxy is down.
    let yaml = match &command {
        NamespaceCommand::Apply { file, .. } => Some(apply::read_yaml(file)?),
        _ => None,
    };
    let mut client = client(target).await?;
    match command {
        NamespaceCommand::List => info::list(&mut client, format).await?,
        NamespaceCommand::Get { name } => info::get(&mut client, name, format).await?,
        NamespaceCommand::Explain { name } => explain::run(&mut client, name, format).await?,
        NamespaceCommand::Apply {
            dry_run,
            expected_version,
            ..
        } => {
            let yaml = yaml.unwrap_or_default();
            return apply::apply(&mut client, yaml, dry_run, expected_version, format).await;
        }
        NamespaceCommand::Delete {
            name,
            expected_version,
        } => apply::delete(&mut client, name, expected_version, format).await?,
    }
    Ok(ExitCode::SUCCESS)
}
