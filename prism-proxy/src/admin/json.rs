//! The protobuf JSON mapping of the admin API's messages, and the one
//! mapping from a gRPC status to an HTTP answer.
//!
//! A prost message is transcoded through its descriptor (from
//! [`prism_proto::FILE_DESCRIPTOR_SET`]) into a [`DynamicMessage`] and
//! serialized with prost-reflect's serde support, so field names are the
//! canonical lowerCamelCase JSON names, 64-bit integers are strings and
//! every field is present (defaults included: the UI never has to guess).
//! Requests take the same form; unknown fields and keys sent twice are
//! refused.

use std::sync::OnceLock;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};
use tonic::{Code, Status};

/// A prost message of the admin API with its fully qualified protobuf name.
pub trait AdminMessage: prost::Message + Default {
    /// e.g. `prism.admin.v1.WhoAmIResponse`.
    const NAME: &'static str;
}

macro_rules! admin_messages {
    ($($ty:ident),* $(,)?) => {
        $(impl AdminMessage for prism_proto::admin::v1::$ty {
            const NAME: &'static str = concat!("prism.admin.v1.", stringify!($ty));
        })*
    };
}

admin_messages!(
    GetStatusRequest,
    GetStatusResponse,
    ExplainNamespaceRequest,
    ExplainNamespaceResponse,
    WhoAmIRequest,
    WhoAmIResponse,
    TailAuditRequest,
    AuditRecord,
    ListNamespacesRequest,
    ListNamespacesResponse,
    GetNamespaceRequest,
    NamespaceInfo,
    ApplyNamespaceRequest,
    ApplyNamespaceResponse,
    DeleteNamespaceRequest,
    DeleteNamespaceResponse,
    ReloadRequest,
    ReloadResponse,
    GetMigrationRequest,
    MigrationStatus,
    MigrateRequest,
    MigrateResponse,
);

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(prism_proto::FILE_DESCRIPTOR_SET)
            .expect("prism-proto's descriptor set decodes (it is generated at build time)")
    })
}

fn descriptor<M: AdminMessage>() -> Result<MessageDescriptor, Status> {
    pool().get_message_by_name(M::NAME).ok_or_else(|| {
        Status::internal(format!(
            "message {} is not in prism-proto's descriptor set; rebuild prism-proto",
            M::NAME
        ))
    })
}

/// The protobuf JSON form of `message`.
pub fn to_json<M: AdminMessage>(message: &M) -> Result<serde_json::Value, Status> {
    let dynamic = DynamicMessage::decode(descriptor::<M>()?, message.encode_to_vec().as_slice())
        .map_err(|e| Status::internal(format!("transcoding {} to JSON: {e}", M::NAME)))?;
    let options = SerializeOptions::new().skip_default_fields(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| Status::internal(format!("serializing {} as JSON: {e}", M::NAME)))
}

/// Parses a request message from its protobuf JSON form; an empty body is
/// the empty message.
pub fn from_json<M: AdminMessage>(body: &[u8]) -> Result<M, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(M::default());
    }
    let descriptor = descriptor::<M>()?;
    // A key twice would be read differently by parsers that keep the
    // first; unknown keys are refused below, by name (bodies are not PII).
    if let Some(problem) = crate::schema::json_value::check_keys(&descriptor, body, true) {
        return Err(Status::invalid_argument(format!(
            "the request body is not a valid {} in JSON: {problem}",
            M::NAME
        )));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let dynamic = DynamicMessage::deserialize_with_options(
        descriptor,
        &mut deserializer,
        &DeserializeOptions::new(),
    )
    .and_then(|m| deserializer.end().map(|()| m))
    .map_err(|e| {
        Status::invalid_argument(format!(
            "the request body is not a valid {} in JSON: {e}; send e.g. {}",
            M::NAME,
            example::<M>()
        ))
    })?;
    M::decode(dynamic.encode_to_vec().as_slice())
        .map_err(|e| Status::internal(format!("transcoding {} from JSON: {e}", M::NAME)))
}

/// The JSON of the empty message, listing every field.
fn example<M: AdminMessage>() -> String {
    to_json(&M::default())
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "{}".to_string())
}

/// The HTTP status answering a gRPC status code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        // An `expected_version` that does not match: the change was made
        // against another version.
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        // The client went away (nginx's 499).
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The canonical name of a gRPC code, e.g. `NOT_FOUND`.
pub fn code_name(code: Code) -> &'static str {
    crate::audit::code_name(code)
}

/// `{"code": "NOT_FOUND", "message": "..."}`.
pub fn error_body(status: &Status) -> serde_json::Value {
    serde_json::json!({ "code": code_name(status.code()), "message": status.message() })
}

/// A JSON response with the given HTTP status.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// A failed admin call answered over HTTP.
#[derive(Debug)]
pub struct ApiError(pub Status);

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError(status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(http_status(self.0.code()), &error_body(&self.0));
        if self.0.code() == Code::Unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"prism\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use prism_proto::admin::v1 as pb;

    use super::*;

    #[test]
    fn messages_use_the_protobuf_json_names_and_keep_defaults() {
        let json = to_json(&pb::ApplyNamespaceResponse {
            name: "orders".into(),
            version: 3,
            dry_run: true,
            errors: vec![pb::FieldError {
                field: "backend.kind".into(),
                message: "unknown kind".into(),
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(json["name"], "orders");
        assert_eq!(json["version"], "3", "64-bit integers are strings");
        assert_eq!(json["dryRun"], true);
        assert_eq!(json["created"], false, "defaults are present");
        assert_eq!(json["diff"], "");
        assert_eq!(json["errors"][0]["field"], "backend.kind");
    }

    #[test]
    fn requests_parse_from_json_and_refuse_unknown_fields() {
        let req: pb::ApplyNamespaceRequest =
            from_json(br#"{"yaml": "name: a\n", "dryRun": true, "expectedVersion": "0"}"#).unwrap();
        assert_eq!(req.yaml, "name: a\n");
        assert!(req.dry_run);
        assert_eq!(req.expected_version, Some(0));
        let empty: pb::ReloadRequest = from_json(b"  ").unwrap();
        assert_eq!(empty, pb::ReloadRequest {});
        let err =
            from_json::<pb::ApplyNamespaceRequest>(br#"{"yaml": "a", "yaml": "b"}"#).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("duplicate key (at field `yaml`)"),
            "{}",
            err.message()
        );
        let err = from_json::<pb::ApplyNamespaceRequest>(br#"{"yml": "x"}"#).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("yml"), "{}", err.message());
        assert!(err.message().contains("\"dryRun\""), "{}", err.message());
    }

    #[test]
    fn grpc_codes_map_to_http_statuses() {
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let body = error_body(&Status::not_found("namespace 'x' not found"));
        assert_eq!(body["code"], "NOT_FOUND");
        assert_eq!(body["message"], "namespace 'x' not found");
    }
}
