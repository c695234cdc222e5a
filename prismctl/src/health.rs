//! `prismctl health`: the standard `grpc.health.v1.Health/Check`, then
//! every namespace's backend and pattern process from
//! `prism.admin.v1.AdminService/GetStatus`.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use prism_proto::admin::v1::GetStatusRequest;
use prism_proto::admin::v1::admin_service_client::AdminServiceClient;

use crate::connect;
use crate::output::{self, OutputFormat, Report, Table};

/// The services checked: the server as a whole, then the KeyValue service.
const SERVICES: [&str; 2] = ["", "prism.keyvalue.v1.KeyValueService"];

/// The status of one checked service.
#[derive(Debug, Serialize)]
struct ServiceHealth {
    /// The checked service name; empty for the server as a whole.
    service: String,
    /// `SERVING`, `NOT_SERVING`, `UNKNOWN`, or `SERVICE_UNKNOWN` when the
    /// proxy does not know the service.
    status: &'static str,
}

/// One namespace's backend and pattern process.
#[derive(Debug, Serialize)]
struct NamespaceHealth {
    name: String,
    kind: String,
    mode: String,
    healthy: bool,
    /// Why the backend is not healthy.
    detail: String,
    /// The pattern process's state (`process` mode), e.g. `serving`.
    pattern_state: String,
    /// Times the proxy restarted the pattern process.
    restarts: u64,
    /// Why the pattern last died or is degraded.
    last_error: String,
}

/// The result of `prismctl health`.
#[derive(Debug, Serialize)]
struct HealthReport {
    /// True when every checked service is `SERVING` and every namespace's
    /// backend is healthy.
    serving: bool,
    services: Vec<ServiceHealth>,
    namespaces: Vec<NamespaceHealth>,
}

impl HealthReport {
    #[cfg(test)]
    fn new(services: Vec<ServiceHealth>) -> Self {
        Self::with_namespaces(services, Vec::new())
    }

    fn with_namespaces(services: Vec<ServiceHealth>, namespaces: Vec<NamespaceHealth>) -> Self {
        let serving =
            services.iter().all(|s| s.status == SERVING) && namespaces.iter().all(|n| n.healthy);
        Self {
            serving,
            services,
            namespaces,
        }
    }

    fn namespace_table(&self) -> Table {
        let mut table = Table::new(vec![
            "NAMESPACE",
            "BACKEND",
            "MODE",
            "PATTERN",
            "RESTARTS",
            "HEALTH",
        ]);
        for ns in &self.namespaces {
            let health = if ns.healthy {
                "ok".to_owned()
            } else {
                ns.detail.clone()
            };
            let pattern = if ns.pattern_state.is_empty() {
                "-".to_owned()
            } else {
                ns.pattern_state.clone()
            };
            let restarts = if ns.mode == "process" {
                ns.restarts.to_string()
            } else {
                "-".to_owned()
            };
            table.push(vec![
                ns.name.clone(),
                ns.kind.clone(),
                ns.mode.clone(),
                pattern,
                restarts,
                health,
            ]);
        }
        table
    }
}

async fn namespaces(addr: &connect::Target) -> Result<Vec<NamespaceHealth>> {
    let mut client = AdminServiceClient::new(connect::connect(addr).await?);
    let spinner = crate::progress::Spinner::start("checking backend health");
    let response = client.get_status(GetStatusRequest {}).await;
    spinner.finish();
    let status = match response {
        Ok(r) => r.into_inner(),
        // A proxy without the admin API: nothing more to show.
        Err(status) if status.code() == Code::Unimplemented => return Ok(Vec::new()),
        Err(status) => return Err(status.into()),
    };
    Ok(status
        .namespaces
        .into_iter()
        .map(|ns| {
            let pattern = ns.pattern.unwrap_or_default();
            NamespaceHealth {
                name: ns.name,
                kind: ns.backend_kind,
                mode: ns.mode,
                healthy: ns.healthy,
                detail: ns.health_detail,
                pattern_state: pattern.state,
                restarts: pattern.restarts,
                last_error: pattern.last_error,
            }
        })
        .collect())
}

const SERVING: &str = "SERVING";

impl Report for HealthReport {
    fn table(&self) -> Table {
        let mut table = Table::new(vec!["SERVICE", "STATUS"]);
        for service in &self.services {
            let name = if service.service.is_empty() {
                "(server)".to_owned()
            } else {
                service.service.clone()
            };
            table.push(vec![name, service.status.to_owned()]);
        }
        table
    }
}

/// Checks every service in [`SERVICES`], prints their status, and fails
/// unless all of them are serving.
pub async fn run(addr: &connect::Target, format: OutputFormat) -> Result<ExitCode> {
    let mut client = HealthClient::new(connect::connect(addr).await?);
    let mut services = Vec::new();
    for service in SERVICES {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        let status = match client.check(request).await {
            Ok(response) => response.into_inner().status().as_str_name(),
            // The health service answers NOT_FOUND for a service it does not know.
            Err(status) if status.code() == Code::NotFound => {
                ServingStatus::ServiceUnknown.as_str_name()
            }
            Err(status) => return Err(status.into()),
        };
        services.push(ServiceHealth {
            service: service.to_owned(),
            status,
        });
    }
    let report = HealthReport::with_namespaces(services, namespaces(addr).await?);
    output::print(format, &report)?;
    if matches!(format, OutputFormat::Table) && !report.namespaces.is_empty() {
        let mut out = std::io::stdout().lock();
        std::io::Write::write_all(&mut out, b"\n")?;
        report.namespace_table().write_to(&mut out)?;
    }
    if report.serving {
        return Ok(ExitCode::SUCCESS);
    }
    for ns in report.namespaces.iter().filter(|n| !n.healthy) {
        eprintln!("error: namespace {}: {}", ns.name, ns.detail);
    }
    for service in report.services.iter().filter(|s| s.status != SERVING) {
        let name = if service.service.is_empty() {
            "the server"
        } else {
            &service.service
        };
        eprintln!("error: {name} is {}", service.status);
    }
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(service: &str, status: ServingStatus) -> ServiceHealth {
        ServiceHealth {
            service: service.to_owned(),
            status: status.as_str_name(),
        }
    }

    #[test]
    fn serving_only_when_every_service_serves() {
        let all = HealthReport::new(vec![
            health("", ServingStatus::Serving),
            health(SERVICES[1], ServingStatus::Serving),
        ]);
        assert!(all.serving);
        let one_down = HealthReport::new(vec![
            health("", ServingStatus::Serving),
            health(SERVICES[1], ServingStatus::NotServing),
        ]);
        assert!(!one_down.serving);
        let unknown = HealthReport::new(vec![health(SERVICES[1], ServingStatus::ServiceUnknown)]);
        assert!(!unknown.serving);
    }

    #[test]
    fn the_server_row_is_named() {
        let report = HealthReport::new(vec![health("", ServingStatus::Serving)]);
        let mut out = Vec::new();
        report.table().write_to(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "SERVICE   STATUS\n(server)  SERVING\n"
        );
    }
}
