//! The proxy's errors and their one mapping to gRPC status codes (backend
//! errors map through [`pattern_core::BackendError::code`]).

use pattern_core::BackendError;

use crate::limits::LimitRejection;
use crate::permission::Permission;

/// An error answering a data API call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The request is malformed or exceeds a limit; the message names the
    /// field or limit and what to do.
    #[error("{0}")]
    InvalidArgument(String),

    /// The namespace does not exist.
    #[error(
        "namespace {} not found; {}",
        pattern_core::quote(.name),
        known_list(.known)
    )]
    NamespaceNotFound { name: String, known: Vec<String> },

    /// The call needs something the namespace's backend cannot do.
    #[error("{0}")]
    FailedPrecondition(String),

    /// The caller lacks a permission on the namespace.
    #[error("{}", permission_message(.namespace, .permission, .subject, *.has_policy))]
    PermissionDenied {
        namespace: String,
        permission: Permission,
        subject: String,
        /// Whether the namespace declares a policy at all.
        has_policy: bool,
    },

    #[error(transparent)]
    Backend(#[from] BackendError),

    /// A namespace's call limit (rate, in flight, deadline, breaker)
    /// refused the call; its status carries the retry hint.
    #[error(transparent)]
    Limit(#[from] LimitRejection),
}

fn permission_message(
    namespace: &str,
    permission: &Permission,
    subject: &str,
    has_policy: bool,
) -> String {
    if has_policy {
        format!(
            "principal {} lacks the '{}' permission on namespace '{namespace}'; an \
             operator can grant it in {} of the namespace's configuration",
            pattern_core::quote(subject),
            permission.name(),
            permission.field()
        )
    } else {
        format!(
            "principal {} lacks the '{}' permission on namespace '{namespace}': the \
             namespace has no policy, and with authentication enabled that denies everyone; an \
             operator can add a policy section ({}) to the namespace's configuration",
            pattern_core::quote(subject),
            permission.name(),
            permission.field()
        )
    }
}

/// The namespaces a caller may see, for a NOT_FOUND message (at most
/// [`KNOWN_SHOWN`] of them).
fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        return "no namespace is visible to this caller".to_string();
    }
    let mut out = format!(
        "known namespaces: {}",
        known
            .iter()
            .take(KNOWN_SHOWN)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if known.len() > KNOWN_SHOWN {
        out.push_str(&format!(" and {} more", known.len() - KNOWN_SHOWN));
    }
    out
}

/// The most namespace names a NOT_FOUND message lists.
pub const KNOWN_SHOWN: usize = 20;

impl ProxyError {
    /// The gRPC status code for this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            ProxyError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            ProxyError::NamespaceNotFound { .. } => tonic::Code::NotFound,
            ProxyError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            ProxyError::PermissionDenied { .. } => tonic::Code::PermissionDenied,
            ProxyError::Backend(e) => e.code(),
            ProxyError::Limit(e) => e.code(),
        }
    }

    /// Shorthand for an [`ProxyError::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        ProxyError::InvalidArgument(message.into())
    }
}

impl From<ProxyError> for tonic::Status {
    fn from(err: ProxyError) -> Self {
        match err {
            ProxyError::Limit(rejection) => rejection.to_status(),
            err => pattern_core::status(err.code(), err.to_string()),
        }
    }
}

/// The lowercase name of a status code, for metric labels.
pub fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_lists_known_namespaces() {
        let status = tonic::Status::from(ProxyError::NamespaceNotFound {
            name: "orders".into(),
            known: vec!["demo-mem".into(), "demo-sqlite".into()],
        });
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(
            status.message(),
            "namespace 'orders' not found; known namespaces: demo-mem, demo-sqlite"
        );
    }
}
