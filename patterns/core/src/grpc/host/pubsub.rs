//! The PubSub backend protocol of a pattern
//! (`prism.pattern.v1.PubSubBackend`): each RPC is one trait call.

use std::sync::Arc;

use prism_proto::pattern::v1 as wire;
use prism_proto::pattern::v1::pub_sub_backend_server::PubSubBackend as Service;
use tonic::{Request, Response, Status};

use super::Host;
use crate::error::BackendError;
use crate::grpc::wire as conv;
use crate::pubsub::{DAL, PubSubBackend};

pub(super) struct HostPubSub(pub(super) Arc<Host>);

fn non_empty(field: &str, value: &str) -> Result<(), BackendError> {
    if value.is_empty() {
        return Err(BackendError::InvalidArgument(format!(
            "{field} must not be empty"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Service for HostPubSub {
    async fn publish(
        &self,
        request: Request<wire::PsPublishRequest>,
    ) -> Result<Response<wire::PsPublishResponse>, Status> {
        let (backend, _guard) =
            self.0
                .enter_as::<dyn PubSubBackend, _>(&request, &request.get_ref().namespace, DAL)?;
        let req = request.into_inner();
        self.0
            .run(async move {
                non_empty("topic", &req.topic)?;
                let messages = req.messages.into_iter().map(conv::message).collect();
                let message_ids = backend.publish(&req.topic, messages).await?;
                Ok(wire::PsPublishResponse { message_ids })
            })
            .await
    }

    async fn pull(
        &self,
        request: Request<wire::PsPullRequest>,
    ) -> Result<Response<wire::PsPullResponse>, Status> {
        let (backend, _guard) =
            self.0
                .enter_as::<dyn PubSubBackend, _>(&request, &request.get_ref().namespace, DAL)?;
        let req = request.into_inner();
        self.0
            .run(async move {
                let (sub, max, wait) = conv::pull(req)?;
                let deliveries = backend.pull(&sub, max, wait).await?;
                Ok(wire::PsPullResponse {
                    deliveries: deliveries.into_iter().map(conv::delivery_to_wire).collect(),
                })
            })
            .await
    }

    async fn ack(
        &self,
        request: Request<wire::PsAckRequest>,
    ) -> Result<Response<wire::PsCount>, Status> {
        let (backend, _guard) =
            self.0
                .enter_as::<dyn PubSubBackend, _>(&request, &request.get_ref().namespace, DAL)?;
        let req = request.into_inner();
        self.0
            .run(async move {
                let count = backend.ack(&req.topic, &req.group, &req.ack_ids).await?;
                Ok(wire::PsCount { count })
            })
            .await
    }

    async fn nack(
        &self,
        request: Request<wire::PsAckRequest>,
    ) -> Result<Response<wire::PsCount>, Status> {
        let (backend, _guard) =
            self.0
                .enter_as::<dyn PubSubBackend, _>(&request, &request.get_ref().namespace, DAL)?;
        let req = request.into_inner();
        self.0
            .run(async move {
                let count = backend.nack(&req.topic, &req.group, &req.ack_ids).await?;
                Ok(wire::PsCount { count })
            })
            .await
    }
}
