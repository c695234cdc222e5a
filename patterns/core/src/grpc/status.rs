//! Backend errors across the process boundary. A pattern answers with the
//! same status code and message as an embedded backend, and adds metadata
//! naming the error and its fields, so the proxy side rebuilds the same
//! [`BackendError`]. Patterns in other languages may leave the metadata
//! out; their statuses then pass through unchanged.

use tonic::Status;
use tonic::metadata::{BinaryMetadataValue, MetadataMap, MetadataValue};

use crate::capabilities::Capability;
use crate::error::BackendError;

const KIND: &str = "prism-error";
const DETAIL: &str = "prism-error-detail-bin";
const EXPECTED: &str = "prism-expected-version";
const CURRENT: &str = "prism-current-version";
const CAPABILITY: &str = "prism-capability";

/// FAILED_PRECONDITION for a data call that reached a pattern before
/// Initialize and Start; marked so a proxy attached to a restarted remote
/// pattern knows to initialize it again.
pub fn not_started(message: &'static str) -> Status {
    let mut status = Status::failed_precondition(message);
    status
        .metadata_mut()
        .insert(KIND, MetadataValue::from_static("not_started"));
    status
}

/// Whether a status is [`not_started`]'s.
pub fn is_not_started(status: &Status) -> bool {
    status
        .metadata()
        .get(KIND)
        .is_some_and(|v| v.as_bytes() == b"not_started")
}

/// A backend error as a status with its fields in metadata.
pub fn to_status(err: &BackendError) -> Status {
    let mut status = Status::new(err.code(), err.to_string());
    let md = status.metadata_mut();
    let (kind, detail) = match err {
        BackendError::InvalidArgument(s) => ("invalid_argument", s.as_str()),
        BackendError::VersionMismatch {
            key,
            expected,
            current,
        } => {
            insert_u64(md, EXPECTED, *expected);
            insert_u64(md, CURRENT, *current);
            ("version_mismatch", key.as_str())
        }
        BackendError::Unsupported {
            backend,
            capability,
        } => {
            md.insert(CAPABILITY, MetadataValue::from_static(capability.name()));
            ("unsupported", backend.as_str())
        }
        BackendError::IdempotencyConflict(s) => ("idempotency_conflict", s.as_str()),
        BackendError::InvalidPageToken(s) => ("invalid_page_token", s.as_str()),
        BackendError::PageTokenExpired(s) => ("page_token_expired", s.as_str()),
        BackendError::Unavailable(s) => ("unavailable", s.as_str()),
        BackendError::Config(s) => ("config", s.as_str()),
        BackendError::Internal(s) => ("internal", s.as_str()),
        BackendError::Status { .. } => return status,
    };
    md.insert(KIND, MetadataValue::from_static(kind));
    md.insert_bin(DETAIL, BinaryMetadataValue::from_bytes(detail.as_bytes()));
    status
}

fn insert_u64(md: &mut MetadataMap, key: &'static str, n: u64) {
    md.insert(
        key,
        n.to_string().parse().expect("digits are valid metadata"),
    );
}

fn get_u64(md: &MetadataMap, key: &str) -> Option<u64> {
    md.get(key)?.to_str().ok()?.parse().ok()
}

/// The backend error a pattern's status describes, if it says.
pub fn from_status(status: &Status) -> Option<BackendError> {
    let md = status.metadata();
    let kind = md.get(KIND)?.to_str().ok()?;
    let detail = md.get_bin(DETAIL)?.to_bytes().ok()?;
    let detail = String::from_utf8(detail.to_vec()).ok()?;
    Some(match kind {
        "invalid_argument" => BackendError::InvalidArgument(detail),
        "version_mismatch" => BackendError::VersionMismatch {
            key: detail,
            expected: get_u64(md, EXPECTED)?,
            current: get_u64(md, CURRENT)?,
        },
        "unsupported" => BackendError::Unsupported {
            backend: detail,
            capability: Capability::from_name(md.get(CAPABILITY)?.to_str().ok()?)?,
        },
        "idempotency_conflict" => BackendError::IdempotencyConflict(detail),
        "invalid_page_token" => BackendError::InvalidPageToken(detail),
        "page_token_expired" => BackendError::PageTokenExpired(detail),
        "unavailable" => BackendError::Unavailable(detail),
        "config" => BackendError::Config(detail),
        "internal" => BackendError::Internal(detail),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_the_boundary() {
        let errors = [
            BackendError::InvalidArgument("items[0].key must not be empty".into()),
            BackendError::VersionMismatch {
                key: "'ключ'".into(),
                expected: 0,
                current: 7,
            },
            BackendError::unsupported("memstore", Capability::Durable),
            BackendError::IdempotencyConflict("tok".into()),
            BackendError::InvalidPageToken("it is truncated".into()),
            BackendError::PageTokenExpired("snapshot 3 is gone".into()),
            BackendError::Unavailable("redis at 127.0.0.1:6379 refused".into()),
            BackendError::Config("bad".into()),
            BackendError::Internal("bug".into()),
        ];
        for err in errors {
            let status = to_status(&err);
            assert_eq!(status.code(), err.code());
            assert_eq!(status.message(), err.to_string());
            assert_eq!(from_status(&status), Some(err));
        }
        assert_eq!(from_status(&Status::internal("plain")), None);
    }
}
