//! `prism.admin.v1.AdminService`: what the proxy serves, the state of
//! every namespace's backend and pattern process, and the audit tail.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prism_proto::admin::v1 as pb;
use prism_proto::admin::v1::admin_service_server::AdminService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, AuditRecord, TailFilter};
use crate::registry::{Namespace, Registry};

/// The admin gRPC service.
pub struct AdminApi {
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
}

impl AdminApi {
    pub fn new(registry: Arc<Registry>, audit: Arc<AuditLog>) -> Self {
        AdminApi { registry, audit }
    }
}

/// Recent records sent by `TailAudit` when the request sets no limit.
const DEFAULT_TAIL: u32 = 100;

fn to_pb(r: &AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        time: r.time.clone(),
        principal: r.principal.clone(),
        namespace: r.namespace.clone(),
        dal: r.dal.clone(),
        method: r.method.clone(),
        ids: r.ids.clone(),
        keys: r.keys.clone(),
        selection: r.selection.clone().unwrap_or_default(),
        truncated: r.truncated,
        pii_fields: r
            .pii_fields
            .iter()
            .map(|p| pb::PiiField {
                field: p.field.clone(),
                masked: p.masked,
            })
            .collect(),
        status: r.status.clone(),
        latency_us: r.latency_us,
        trace_id: r.trace_id.clone(),
    }
}

type TailStream = Pin<Box<dyn Stream<Item = Result<pb::AuditRecord, Status>> + Send>>;

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
    type TailAuditStream = TailStream;

    async fn tail_audit(
        &self,
        request: Request<pb::TailAuditRequest>,
    ) -> Result<Response<Self::TailAuditStream>, Status> {
        let req = request.into_inner();
        let filter = TailFilter {
            namespace: req.namespace,
            principal: req.principal,
            status: req.status,
        };
        if !filter.status.is_empty() && !crate::audit::is_code_name(&filter.status) {
            return Err(Status::invalid_argument(format!(
                "status '{}' is not a gRPC status name; use e.g. OK, NOT_FOUND, \
                 INVALID_ARGUMENT, UNAVAILABLE",
                filter.status
            )));
        }
        let limit = req.limit.unwrap_or(DEFAULT_TAIL) as usize;
        let (recent, follower) = self.audit.tail().snapshot(&filter, limit);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let follow = req.follow;
        tokio::spawn(async move {
            for record in recent {
                if tx.send(Ok(to_pb(&record))).await.is_err() {
                    return;
                }
            }
            let (true, Some(mut follower)) = (follow, follower) else {
                return;
            };
            loop {
                let next = tokio::select! {
                    next = follower.recv() => next,
                    () = tx.closed() => return,
                };
                match next {
                    Ok(record) if filter.matches(&record) => {
                        if tx.send(Ok(to_pb(&record))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "audit tail follower fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

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
}
