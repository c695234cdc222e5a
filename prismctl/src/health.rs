//! `prismctl health`: the standard `grpc.health.v1.Health/Check`.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

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

/// The result of `prismctl health`.
#[derive(Debug, Serialize)]
struct HealthReport {
    /// True when every checked service is `SERVING`.
    serving: bool,
    services: Vec<ServiceHealth>,
}

impl HealthReport {
    fn new(services: Vec<ServiceHealth>) -> Self {
        let serving = services.iter().all(|s| s.status == SERVING);
        Self { serving, services }
    }
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
pub async fn run(addr: &str, format: OutputFormat) -> Result<ExitCode> {
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
    let report = HealthReport::new(services);
    output::print(format, &report)?;
    if report.serving {
        return Ok(ExitCode::SUCCESS);
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
