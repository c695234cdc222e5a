//! The call pipeline every DAL plugs into.
//!
//! Every unary and server-streaming call of every DAL runs the same steps,
//! in this order, here and nowhere else:
//!
//! 1. the caller (the principal the authentication layer attached);
//! 2. the audit call, with the targets its request declares
//!    ([`crate::audit::AuditedRequest`]);
//! 3. the namespace lookup, the caller's permission on it (the one its
//!    [`Rpc`] declares) and the DAL check — in that order, so a caller
//!    learns nothing about a namespace it holds no permission on;
//! 4. the namespace's limits ([`crate::limits`]: rate, calls in flight,
//!    the backend's circuit breaker), then the operation under the call's
//!    deadline: one async function per RPC, given the namespace and the
//!    request; its outcome feeds the breaker;
//! 5. PII masking of what it returns ([`Masked`]), for a caller without
//!    `pii:read`, and what the audit record says of it;
//! 6. metrics, the log line of a failure, the audit record (waited for
//!    under the namespace's `block` policy) and the mapping of the error to
//!    its gRPC status ([`ProxyError`] → [`Status`]).
//!
//! A server stream (Tail, Subscribe) opens through steps 1–4 (its opening
//! is one audited call), then [`stream`] forwards what the operation's
//! [`stream::Source`] yields — masking each item — and ends it in one
//! place: the client went away, the source ended or failed, or the
//! namespace's backend was released (the client reopens on the version
//! serving); then the closing audit record.
//!
//! A DAL's service is a list of [`Rpc`] declarations and one line per
//! tonic handler: `self.pipeline.unary(&PUT, request, put).await`.

mod reveal;
mod rpc;
pub mod stream;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

pub use reveal::Reveal;
pub use rpc::{Declared, Masked, Rpc, StreamEnd, StreamItem};

use crate::audit::{self, AuditLog, AuditedRequest, AuditedResponse};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::metrics;
use crate::permission::Permission;
use crate::policy;
use crate::registry::{Namespace, Registry};

/// Runs every call of every DAL (see the module documentation).
#[derive(Clone)]
pub struct Pipeline {
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    /// Whether callers are authenticated; decides what a namespace without
    /// a policy allows (see [`crate::policy`]).
    auth_enabled: bool,
}

/// Every RPC the proxy serves, per DAL: what the test that enumerates the
/// declarations walks.
pub fn registered() -> Vec<&'static dyn Declared> {
    [
        crate::kv::RPCS,
        crate::timeseries::RPCS,
        crate::pubsub::RPCS,
    ]
    .into_iter()
    .flatten()
    .copied()
    .collect()
}

impl Pipeline {
    pub fn new(registry: Arc<Registry>, audit: Arc<AuditLog>) -> Self {
        Pipeline {
            registry,
            audit,
            auth_enabled: false,
        }
    }

    /// Sets whether authentication is enabled on the listener.
    pub fn with_auth_enabled(mut self, enabled: bool) -> Self {
        self.auth_enabled = enabled;
        self
    }

    /// The namespaces served.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The audit log calls are recorded in.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Runs a unary call of `rpc`: `op` does the work on the namespace the
    /// request names, once the caller may; the pipeline does the rest.
    pub async fn unary<Req, Resp, Op, Fut>(
        &self,
        rpc: &'static Rpc<Req, Resp>,
        request: Request<Req>,
        op: Op,
    ) -> Result<Response<Resp>, Status>
    where
        Req: AuditedRequest + Send,
        Resp: Masked + AuditedResponse + Send,
        Op: FnOnce(Arc<Namespace>, Req) -> Fut + Send,
        Fut: Future<Output = Result<Resp, ProxyError>> + Send,
    {
        let principal = caller(&request);
        let call = self.audit.call(rpc.method, &request);
        let pii = call.pii.clone();
        let (metadata, _, req) = request.into_parts();
        self.observe(rpc.dal.name(), call, async {
            let ns = self.admit(rpc, req.namespace(), &principal)?;
            let mut response = limited(&ns, &principal, &metadata, op(ns.clone(), req)).await?;
            if !Resp::VALUES.is_empty() {
                let mut reveal = self.reveal(&ns, &principal);
                response.mask(&mut reveal);
                reveal.report(&pii);
            }
            Ok(response)
        })
        .await
    }

    /// Opens a server stream of `rpc`: `open` validates the request and
    /// opens the source on the namespace; the pipeline records the opening,
    /// then forwards the source's items ([`stream`]).
    pub async fn stream<Req, Item, Op, Fut, Src>(
        &self,
        rpc: &'static Rpc<Req, Item>,
        request: Request<Req>,
        open: Op,
    ) -> Result<Response<stream::ItemStream<Item>>, Status>
    where
        Req: AuditedRequest + Send,
        Item: StreamItem,
        Op: FnOnce(Arc<Namespace>, Req) -> Fut + Send,
        Fut: Future<Output = Result<Src, ProxyError>> + Send,
        Src: stream::Source<Item = Item>,
    {
        let end = rpc.stream.expect("a streaming RPC declares its end");
        let principal = caller(&request);
        let call = self.audit.call(rpc.method, &request);
        let end_call = self.audit.call(end.method, &request);
        let (metadata, _, req) = request.into_parts();
        let opened = self
            .observe(rpc.dal.name(), call, async {
                let ns = self.admit(rpc, req.namespace(), &principal)?;
                // Limits bound the opening, not the stream's life.
                let source = limited(&ns, &principal, &metadata, open(ns.clone(), req)).await?;
                Ok(stream::Opened { ns, source })
            })
            .await?
            .into_inner();
        let reveal = self.reveal(&opened.ns, &principal);
        Ok(Response::new(stream::forward(
            self.clone(),
            rpc,
            opened,
            reveal,
            end_call,
        )))
    }

    /// Steps 3 of the pipeline: the namespace, the caller's permission on
    /// it, and that it serves the RPC's DAL.
    fn admit<Req, Resp>(
        &self,
        rpc: &Rpc<Req, Resp>,
        name: &str,
        principal: &Principal,
    ) -> Result<Arc<Namespace>, ProxyError> {
        let ns = self.authorized(name, principal, rpc.permission)?;
        if ns.config.dal != rpc.dal {
            return Err(crate::backend::wrong_dal(
                &ns.config.name,
                ns.config.dal,
                rpc.dal,
            ));
        }
        Ok(ns)
    }

    /// The namespace `name`, if `principal` holds some permission on it;
    /// else NOT_FOUND, exactly as for a namespace that does not exist,
    /// listing only the namespaces the caller may use. A namespace without
    /// any policy is the exception: nobody may use it, and the caller is
    /// told it has no policy (PERMISSION_DENIED), which is what its
    /// operator needs to hear.
    pub fn namespace(
        &self,
        name: &str,
        principal: &Principal,
    ) -> Result<Arc<Namespace>, ProxyError> {
        crate::kv::validate::namespace_name(name)?;
        self.registry.lookup_as(name, |ns| {
            let policy = ns.config.policy.as_ref();
            policy.is_none()
                || Permission::ALL
                    .into_iter()
                    .any(|p| policy::allows(policy, self.auth_enabled, principal, p))
        })
    }

    /// Looks the namespace up and checks that `principal` holds
    /// `permission` on it.
    pub fn authorized(
        &self,
        name: &str,
        principal: &Principal,
        permission: Permission,
    ) -> Result<Arc<Namespace>, ProxyError> {
        let ns = self.namespace(name, principal)?;
        let policy = ns.config.policy.as_ref();
        if !policy::allows(policy, self.auth_enabled, principal, permission) {
            return Err(ProxyError::PermissionDenied {
                namespace: ns.config.name.clone(),
                permission,
                subject: principal.subject.clone(),
                has_policy: policy.is_some(),
            });
        }
        Ok(ns)
    }

    /// How values leave this namespace for `principal`: in clear, or with
    /// PII masked.
    pub fn reveal(&self, ns: &Namespace, principal: &Principal) -> Reveal {
        let schema = ns.config.compiled_schema.clone().filter(|s| s.has_pii());
        let clear = schema.is_none()
            || policy::allows(
                ns.config.policy.as_ref(),
                self.auth_enabled,
                principal,
                Permission::PiiRead,
            );
        Reveal {
            schema,
            clear,
            masked_fields: Vec::new(),
            returned: false,
        }
    }

    /// Writes the closing audit record of a stream that ended with `code`;
    /// under the namespace's `drop` or `block` policy alike it never fails
    /// the stream, which has already ended, but a record that cannot be
    /// written is logged.
    async fn record_stream_end(
        &self,
        dal: &'static str,
        call: audit::Call,
        ns: &Namespace,
        code: tonic::Code,
    ) {
        let method = call.method;
        if let Err(e) = self
            .audit
            .finish(call, dal, Some(&ns.config.audit), code, None)
            .await
        {
            tracing::warn!(namespace = %ns.config.name, method, error = %e, "no audit record for the end of a stream");
        }
    }

    /// Step 6: runs one call's body, recording its outcome and latency per
    /// namespace, method and status, and writing the call's audit record
    /// (waiting for it under the namespace's `block` policy; if the record
    /// cannot be written the call fails with UNAVAILABLE).
    async fn observe<T: AuditedResponse>(
        &self,
        dal: &'static str,
        call: audit::Call,
        body: impl Future<Output = Result<T, ProxyError>>,
    ) -> Result<Response<T>, Status> {
        let method = call.method;
        let start = Instant::now();
        let result = body.await;
        let mut code = result
            .as_ref()
            .map_or_else(ProxyError::code, |_| tonic::Code::Ok);
        // Unknown names are not used as labels: they would grow without bound.
        let ns = self.registry.lookup(call.namespace()).ok();
        let label = ns
            .as_ref()
            .map_or(metrics::UNKNOWN_NAMESPACE, |ns| ns.config.name.as_str());
        let audited = self
            .audit
            .finish(
                call,
                dal,
                ns.as_ref().map(|ns| &ns.config.audit),
                code,
                result.as_ref().ok().map(|r| r as &dyn AuditedResponse),
            )
            .await;
        if let Err(e) = audited {
            code = tonic::Code::Unavailable;
            metrics::record_request(label, method, code, start.elapsed());
            tracing::warn!(namespace = label, method, error = %e, "call refused: no audit record");
            return Err(e.into());
        }
        metrics::record_request(label, method, code, start.elapsed());
        if let Err(e) = &result
            && matches!(code, tonic::Code::Internal | tonic::Code::Unavailable)
        {
            tracing::warn!(namespace = label, method, code = ?code, error = %e, "request failed");
        }
        result.map(Response::new).map_err(Status::from)
    }
}

/// The caller, as the authentication layer recorded it.
pub fn caller<T>(request: &Request<T>) -> Principal {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::anonymous)
}

/// Step 5 and the operation: admits the call under `ns`'s limits (or
/// refuses it), runs `operation` under its deadline, and tells the breaker
/// how it ended. An operation that failed because the deadline passed
/// meanwhile (a pattern process gives up at the same moment) answers as a
/// deadline, not as the backend's failure.
async fn limited<T>(
    ns: &Namespace,
    principal: &Principal,
    metadata: &tonic::metadata::MetadataMap,
    operation: impl Future<Output = Result<T, ProxyError>>,
) -> Result<T, ProxyError> {
    let mut admission = ns.limits.admit(&principal.subject, metadata)?;
    let result = match admission.run(operation).await {
        Ok(Err(failed)) => match admission.failed_past_deadline() {
            Some(expired) => Err(expired.into()),
            None => Err(failed),
        },
        Ok(done) => done,
        Err(expired) => Err(expired.into()),
    };
    admission.finish(
        result
            .as_ref()
            .map_or_else(ProxyError::code, |_| tonic::Code::Ok),
    );
    result
}
