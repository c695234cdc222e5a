//! PubSub over a pattern: one RPC of `prism.pattern.v1.PubSubBackend` per
//! trait operation. A pull waits in the pattern: one without a deadline
//! of its own gets its wait plus [`PULL_SLACK`] as its gRPC deadline, so a
//! pattern that hangs cannot hold a subscriber forever.

use std::time::Duration;

use async_trait::async_trait;
use prism_proto::pattern::v1 as wire;
use prism_proto::pattern::v1::pub_sub_backend_client::PubSubBackendClient;
use tonic::transport::Channel;

use super::{Link, PatternBackend};
use crate::error::BackendError;
use crate::grpc::{MAX_MESSAGE_BYTES, wire as conv};
use crate::pubsub::{Delivery, OutgoingMessage, PubSubBackend, Subscription};

fn client(link: &Link) -> PubSubBackendClient<Channel> {
    PubSubBackendClient::new(link.channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn acks(link: &Link, topic: &str, group: &str, ack_ids: &[String]) -> wire::PsAckRequest {
    wire::PsAckRequest {
        namespace: link.namespace.clone(),
        topic: topic.to_string(),
        group: group.to_string(),
        ack_ids: ack_ids.to_vec(),
    }
}

#[async_trait]
impl PubSubBackend for PatternBackend {
    async fn publish(
        &self,
        topic: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<String>, BackendError> {
        let link = self.link()?;
        let request = wire::PsPublishRequest {
            namespace: link.namespace.clone(),
            topic: topic.to_string(),
            messages: messages.iter().map(conv::message_to_wire).collect(),
        };
        let reply = link
            .call(client(&link), request, |mut c, r| async move {
                c.publish(r).await
            })
            .await?;
        if reply.message_ids.len() != messages.len() {
            return Err(link.broken(&format!(
                "answered {} message ids for {} published messages",
                reply.message_ids.len(),
                messages.len()
            )));
        }
        Ok(reply.message_ids)
    }

    async fn pull(
        &self,
        sub: &Subscription,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BackendError> {
        let link = self.link()?;
        let request = conv::pull_to_wire(&link.namespace, sub, max, wait);
        let reply = link
            .call(client(&link), request, |mut c, mut r| async move {
                // A pull holds for up to `wait` by design; one that the
                // call's deadline does not bound gets that plus slack.
                r.set_timeout(crate::deadline::remaining().unwrap_or(wait + PULL_SLACK));
                c.pull(r).await
            })
            .await?;
        if reply.deliveries.len() > max {
            return Err(link.broken(&format!(
                "answered {} deliveries to a pull of at most {max}",
                reply.deliveries.len()
            )));
        }
        Ok(reply.deliveries.into_iter().map(conv::delivery).collect())
    }

    async fn ack(&self, topic: &str, group: &str, ack_ids: &[String]) -> Result<u32, BackendError> {
        let link = self.link()?;
        let request = acks(&link, topic, group, ack_ids);
        let reply = link
            .call(
                client(&link),
                request,
                |mut c, r| async move { c.ack(r).await },
            )
            .await?;
        Ok(reply.count)
    }

    async fn nack(
        &self,
        topic: &str,
        group: &str,
        ack_ids: &[String],
    ) -> Result<u32, BackendError> {
        let link = self.link()?;
        let request = acks(&link, topic, group, ack_ids);
        let reply = link
            .call(
                client(&link),
                request,
                |mut c, r| async move { c.nack(r).await },
            )
            .await?;
        Ok(reply.count)
    }
}

/// How much longer than its wait a pull without a deadline may take.
const PULL_SLACK: Duration = Duration::from_secs(10);
