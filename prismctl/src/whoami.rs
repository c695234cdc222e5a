//! `prismctl whoami`: the principal the proxy sees for this connection
//! (`prism.admin.v1.AdminService/WhoAmI`), and the cached login.

use anyhow::Result;
use prism_proto::admin::v1::WhoAmIRequest;
use prism_proto::admin::v1::admin_service_client::AdminServiceClient;
use serde::Serialize;

use crate::connect;
use crate::output::{self, OutputFormat, Report, Table};

/// The result of `prismctl whoami`.
#[derive(Debug, Serialize)]
struct WhoAmI {
    subject: String,
    /// `jwt`, `client_cert` or `anonymous`.
    method: String,
    groups: Vec<String>,
    scopes: Vec<String>,
    /// When the token expires, Unix seconds; absent without a token.
    expires_at: Option<i64>,
}

impl Report for WhoAmI {
    fn table(&self) -> Table {
        let mut table = Table::new(vec!["SUBJECT", "METHOD", "GROUPS", "SCOPES", "EXPIRES_AT"]);
        let none = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(",")
            }
        };
        table.push(vec![
            self.subject.clone(),
            self.method.clone(),
            none(&self.groups),
            none(&self.scopes),
            self.expires_at
                .map_or_else(|| "-".to_string(), |e| e.to_string()),
        ]);
        table
    }
}

/// Asks the proxy who this caller is and prints it.
pub async fn run(target: &connect::Target, format: OutputFormat) -> Result<()> {
    let mut client = AdminServiceClient::new(connect::connect(target).await?);
    let me = client.who_am_i(WhoAmIRequest {}).await?.into_inner();
    output::print(
        format,
        &WhoAmI {
            subject: me.subject,
            method: me.method,
            groups: me.groups,
            scopes: me.scopes,
            expires_at: Some(me.expires_at_unix_secs).filter(|e| *e > 0),
        },
    )
}
