//! Malformed gRPC requests, refused on the gRPC listener before or
//! instead of their service, each with the audit record every call gets:
//!
//! * a `content-type` other than `application/grpc` (optionally with
//!   `+subtype` or parameters) is answered HTTP 415 with `grpc-status`
//!   INVALID_ARGUMENT, as the gRPC spec asks and grpc-go does, and never
//!   reaches a service;
//! * a request message that does not decode (e.g. invalid UTF-8 in a
//!   string field) comes back from the service marked by
//!   [`prism_proto::codec`]; it is answered INVALID_ARGUMENT naming the
//!   field, instead of the codec's INTERNAL;
//! * a request message larger than `listeners.max_message_bytes` (which
//!   tonic refuses with OUT_OF_RANGE before decoding it) is answered
//!   RESOURCE_EXHAUSTED, as the gRPC status code guide asks, with the
//!   limit and the received size in bytes.
//!
//! The record names the caller and the method; the namespace is unknown
//! (`_invalid`), so it follows the `drop` policy like any call naming no
//! namespace. A tower layer, inside [`crate::auth::AuthLayer`] so that the
//! caller is known.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use prism_proto::codec::{MALFORMED_KEY, MALFORMED_PREFIX};
use prost::Message;
use tonic::Status;
use tonic::codegen::http;

use crate::audit::{ANONYMOUS, AuditLog, MalformedCall};
use crate::auth::Principal;

/// The DAL (or `admin`) that audit records name for calls of proto
/// `package`, if its calls are audited: every registered DAL's package
/// and the admin API.
fn audited(package: &str) -> Option<&'static str> {
    if package == "prism.admin.v1" {
        return Some("admin");
    }
    crate::dal::DALS
        .iter()
        .find(|d| d.package() == package)
        .map(|d| d.name())
}

/// `/package.Service/Method` of every audited method → (DAL, method).
fn methods() -> &'static HashMap<String, (&'static str, &'static str)> {
    static METHODS: OnceLock<HashMap<String, (&'static str, &'static str)>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let set = prost_types::FileDescriptorSet::decode(prism_proto::FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor set decodes");
        let mut methods = HashMap::new();
        for file in set.file {
            let package = file.package();
            let Some(dal) = audited(package) else {
                continue;
            };
            for service in &file.service {
                for method in &service.method {
                    // Leaked once: a few dozen names, used as metric labels.
                    let name: &'static str = Box::leak(method.name().to_string().into_boxed_str());
                    methods.insert(format!("/{package}.{}/{name}", service.name()), (dal, name));
                }
            }
        }
        methods
    })
}

/// Whether `headers` say gRPC: `application/grpc`, alone or followed by
/// `+subtype` or `;parameters`.
fn is_grpc(headers: &http::HeaderMap) -> bool {
    const GRPC: &str = "application/grpc";
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    value
        .get(..GRPC.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(GRPC))
        && matches!(value.as_bytes().get(GRPC.len()), None | Some(b'+' | b';'))
}

/// Refuses malformed requests; see the module documentation.
#[derive(Clone)]
pub struct MalformedLayer(pub Arc<AuditLog>);

impl<S> tower_layer::Layer<S> for MalformedLayer {
    type Service = MalformedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MalformedService {
            inner,
            audit: self.0.clone(),
        }
    }
}

/// A service wrapped by [`MalformedLayer`].
#[derive(Clone)]
pub struct MalformedService<S> {
    inner: S,
    audit: Arc<AuditLog>,
}

/// What the record of a refused call needs, taken before the request
/// goes to the service.
struct Caller {
    started: Instant,
    uri: http::Uri,
    principal: Option<String>,
    traceparent: Option<http::HeaderValue>,
    request_id: Option<http::HeaderValue>,
}

impl Caller {
    fn of<B>(request: &http::Request<B>) -> Self {
        let headers = request.headers();
        Caller {
            started: Instant::now(),
            uri: request.uri().clone(),
            principal: request
                .extensions()
                .get::<Principal>()
                .map(|p| p.subject.clone()),
            traceparent: headers.get("traceparent").cloned(),
            request_id: headers.get("x-request-id").cloned(),
        }
    }

    /// Writes the call's audit record and counts it with `code`, when the
    /// method is an audited one.
    fn record(self, audit: &AuditLog, code: tonic::Code, why: &'static str) {
        let Some(&(dal, method)) = methods().get(self.uri.path()) else {
            return;
        };
        fn text(v: &Option<http::HeaderValue>) -> Option<&str> {
            v.as_ref().and_then(|v| v.to_str().ok())
        }
        audit.malformed_call(MalformedCall {
            principal: self.principal.as_deref().unwrap_or(ANONYMOUS),
            dal,
            method,
            traceparent: text(&self.traceparent),
            x_request_id: text(&self.request_id),
            code,
            started: self.started,
        });
        crate::metrics::record_request(
            crate::metrics::UNKNOWN_NAMESPACE,
            method,
            code,
            self.started.elapsed(),
        );
        tracing::debug!(dal, method, why, "call refused: malformed request");
    }
}

/// HTTP 415 with INVALID_ARGUMENT.
fn wrong_content_type<R: Default>() -> http::Response<R> {
    let mut response = Status::invalid_argument(
        "malformed request: content-type must be application/grpc (optionally +proto); this \
         listener serves gRPC only",
    )
    .into_http();
    *response.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
    response
}

/// INVALID_ARGUMENT with the decoding error of the marked response.
fn undecodable<R: Default>(headers: &http::HeaderMap) -> http::Response<R> {
    let status = Status::from_header_map(headers);
    let detail = status
        .as_ref()
        .map(|s| {
            s.message()
                .strip_prefix(MALFORMED_PREFIX)
                .unwrap_or(s.message())
        })
        .unwrap_or("the request message could not be decoded");
    Status::invalid_argument(format!("malformed request: {detail}; nothing was done")).into_http()
}

/// How tonic's status for a request message over the decoding limit
/// starts; the sizes follow (`found N bytes, the limit is: M bytes`).
const TOO_LARGE_PREFIX: &str = "Error, decoded message length too large";

/// The (received, limit) sizes in bytes of a response that refuses a
/// request message over the decoding limit; `None` for any other
/// response. A size tonic did not state comes back as `None`.
fn too_large(headers: &http::HeaderMap) -> Option<(Option<u64>, Option<u64>)> {
    let status = Status::from_header_map(headers)?;
    if status.code() != tonic::Code::OutOfRange {
        return None;
    }
    let rest = status.message().strip_prefix(TOO_LARGE_PREFIX)?;
    // The first number after `after`, e.g. `found 123 bytes` → 123.
    let number_after = |after: &str| -> Option<u64> {
        let (_, tail) = rest.split_once(after)?;
        let digits: String = tail
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some((number_after("found"), number_after("limit is:")))
}

/// RESOURCE_EXHAUSTED naming the limit (and the received size when
/// known) and what to do.
fn oversize<R: Default>(found: Option<u64>, limit: Option<u64>) -> http::Response<R> {
    let received = found.map_or_else(
        || "the request message".to_string(),
        |n| format!("the request message of {n} bytes"),
    );
    let limit = limit.map_or_else(
        || "the listener's limit".to_string(),
        |n| format!("the listener's limit of {n} bytes"),
    );
    Status::resource_exhausted(format!(
        "{received} is over {limit} (listeners.max_message_bytes in prism.yaml); nothing was \
         done; split the batch into smaller calls or send smaller values"
    ))
    .into_http()
}

impl<S, B, R> tower_service::Service<http::Request<B>> for MalformedService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let caller = Caller::of(&request);
        let audit = self.audit.clone();
        if !is_grpc(request.headers()) {
            return Box::pin(async move {
                caller.record(&audit, tonic::Code::InvalidArgument, "content_type");
                Ok(wrong_content_type())
            });
        }
        // The clone is not ready; call the instance that was polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            if response.headers().contains_key(MALFORMED_KEY) {
                caller.record(&audit, tonic::Code::InvalidArgument, "decode");
                return Ok(undecodable(response.headers()));
            }
            if let Some((found, limit)) = too_large(response.headers()) {
                caller.record(&audit, tonic::Code::ResourceExhausted, "too_large");
                return Ok(oversize(found, limit));
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::TailFilter;
    use crate::config::AuditConfig;
    use tower_service::Service;

    #[test]
    fn grpc_content_types_are_told_apart() {
        let check = |ct: Option<&str>| {
            let mut headers = http::HeaderMap::new();
            if let Some(ct) = ct {
                headers.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
            }
            is_grpc(&headers)
        };
        assert!(check(Some("application/grpc")));
        assert!(check(Some("application/grpc+proto")));
        assert!(check(Some("Application/GRPC;charset=utf-8")));
        assert!(!check(Some("application/json")));
        assert!(!check(Some("application/grpc-web")));
        assert!(!check(Some("application/gr")));
        assert!(!check(None));
    }

    #[test]
    fn every_data_and_admin_method_is_known_and_pattern_methods_are_not() {
        let m = methods();
        assert_eq!(
            m.get("/prism.keyvalue.v1.KeyValueService/Put"),
            Some(&("keyvalue", "Put"))
        );
        assert_eq!(
            m.get("/prism.pubsub.v1.PubSubService/Subscribe"),
            Some(&("pubsub", "Subscribe"))
        );
        assert!(m.keys().any(|p| p.starts_with("/prism.timeseries.v1.")));
        assert!(m.keys().any(|p| p.starts_with("/prism.admin.v1.")));
        assert!(!m.keys().any(|p| p.starts_with("/prism.pattern.")));
    }

    /// Answers every call with `response`.
    #[derive(Clone)]
    struct Answer(fn() -> http::Response<tonic::body::Body>);

    impl Service<http::Request<()>> for Answer {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::ready(Ok((self.0)()))
        }
    }

    fn undecoded() -> http::Response<tonic::body::Body> {
        let error =
            prism_proto::keyvalue::v1::PutRequest::decode(&[0x0a, 0x01, 0xff][..]).unwrap_err();
        prism_proto::codec::malformed(&error).into_http()
    }

    fn too_big() -> http::Response<tonic::body::Body> {
        Status::out_of_range(
            "Error, decoded message length too large: found 70000 bytes, the limit is: 65536 bytes",
        )
        .into_http()
    }

    fn out_of_range() -> http::Response<tonic::body::Body> {
        Status::out_of_range("page_token is past the end").into_http()
    }

    fn request(content_type: &str) -> http::Request<()> {
        let mut request = http::Request::builder()
            .uri("/prism.keyvalue.v1.KeyValueService/Put")
            .header(http::header::CONTENT_TYPE, content_type)
            .header("x-request-id", "req-malformed")
            .body(())
            .unwrap();
        let mut alice = Principal::anonymous();
        alice.subject = "alice".into();
        request.extensions_mut().insert(alice);
        request
    }

    #[tokio::test]
    async fn undecodable_and_non_grpc_requests_are_invalid_argument_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::start(&AuditConfig::default(), dir.path())
            .await
            .unwrap();
        let (_, follow) = audit.tail().snapshot(&TailFilter::default(), 0);
        let mut follow = follow.unwrap();
        let mut service =
            tower_layer::Layer::layer(&MalformedLayer(audit.clone()), Answer(undecoded));

        let response = service.call(request("application/grpc")).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert!(!response.headers().contains_key(MALFORMED_KEY));
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().starts_with(
                "malformed request: failed to decode Protobuf message: PutRequest.namespace"
            ),
            "{}",
            status.message()
        );
        let record = follow.recv().await.unwrap();
        assert_eq!(
            (
                record.principal.as_str(),
                record.dal.as_str(),
                record.method.as_str()
            ),
            ("alice", "keyvalue", "Put")
        );
        assert_eq!(record.status, "INVALID_ARGUMENT");
        assert_eq!(record.namespace, crate::audit::INVALID_NAMESPACE);
        assert_eq!(record.trace_id, "req-malformed");

        let response = service.call(request("application/json")).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("content-type"),
            "{}",
            status.message()
        );
        let record = follow.recv().await.unwrap();
        assert_eq!(record.method, "Put");
        assert_eq!(record.status, "INVALID_ARGUMENT");
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_resource_exhausted_naming_the_sizes_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::start(&AuditConfig::default(), dir.path())
            .await
            .unwrap();
        let (_, follow) = audit.tail().snapshot(&TailFilter::default(), 0);
        let mut follow = follow.unwrap();
        let mut service =
            tower_layer::Layer::layer(&MalformedLayer(audit.clone()), Answer(too_big));
        let response = service.call(request("application/grpc")).await.unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "the request message of 70000 bytes is over the listener's limit of 65536 bytes \
             (listeners.max_message_bytes in prism.yaml); nothing was done; split the batch \
             into smaller calls or send smaller values"
        );
        let record = follow.recv().await.unwrap();
        assert_eq!(record.status, "RESOURCE_EXHAUSTED");
        assert_eq!(record.method, "Put");

        // Any other OUT_OF_RANGE is the service's answer and passes as it is.
        let mut service =
            tower_layer::Layer::layer(&MalformedLayer(audit.clone()), Answer(out_of_range));
        let response = service.call(request("application/grpc")).await.unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::OutOfRange);
        assert_eq!(status.message(), "page_token is past the end");
    }

    #[test]
    fn sizes_tonic_does_not_state_are_left_out() {
        let mut headers = http::HeaderMap::new();
        Status::out_of_range(TOO_LARGE_PREFIX)
            .add_header(&mut headers)
            .unwrap();
        assert_eq!(too_large(&headers), Some((None, None)));
        let response: http::Response<()> = oversize(None, None);
        let status = Status::from_header_map(response.headers()).unwrap();
        assert!(
            status
                .message()
                .starts_with("the request message is over the listener's limit ("),
            "{}",
            status.message()
        );
    }
}
