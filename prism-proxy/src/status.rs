//! `prism.admin.v1.AdminService`: what the proxy serves and the state of
//! every namespace's backend and pattern process.

use std::sync::Arc;
use std::time::Duration;

use prism_proto::admin::v1 as pb;
use prism_proto::admin::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};

use crate::registry::{Namespace, Registry};

/// The admin gRPC service.
pub struct AdminApi {
    registry: Arc<Registry>,
}

impl AdminApi {
    pub fn new(registry: Arc<Registry>) -> Self {
        AdminApi { registry }
    }
}

async fn namespace_status(ns: &Namespace) -> pb::NamespaceStatus {
    let health = tokio::time::timeout(Duration::from_secs(2), ns.backend.health()).await;
    let (healthy, health_detail) = match health {
        Ok(Ok(())) => (true, String::new()),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (false, "backend health check timed out after 2s".to_string()),
    };
    let pattern = ns.endpoint.as_ref().map(|endpoint| {
        let mut p = pb::PatternStatus {
            endpoint: endpoint.clone(),
            ..Default::default()
        };
        if let Some(process) = &ns.pattern {
            let s = process.status();
            p.state = s.state.name().to_string();
            p.restarts = s.restarts;
            p.pid = s.pid.unwrap_or(0);
            p.last_error = s.last_error.unwrap_or_default();
        }
        p
    });
    pb::NamespaceStatus {
        name: ns.config.name.clone(),
        dal: ns.config.dal.name().to_string(),
        backend_kind: ns.backend.kind().to_string(),
        mode: ns.config.backend.mode.name().to_string(),
        capabilities: ns
            .capabilities
            .names()
            .into_iter()
            .map(String::from)
            .collect(),
        healthy,
        health_detail,
        pattern,
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let mut namespaces = Vec::new();
        for ns in self.registry.list() {
            namespaces.push(namespace_status(&ns).await);
        }
        Ok(Response::new(pb::GetStatusResponse { namespaces }))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let principal = request
            .extensions()
            .get::<crate::auth::Principal>()
            .cloned()
            .ok_or_else(|| Status::internal("no principal on the request: auth layer missing"))?;
        Ok(Response::new(pb::WhoAmIResponse {
            subject: principal.subject,
            groups: principal.groups,
            scopes: principal.scopes,
            method: principal.method.name().to_string(),
            expires_at_unix_secs: principal
                .expires_at
                .and_then(|e| i64::try_from(e).ok())
                .unwrap_or(0),
        }))
    }
}
