//! The one error type of every backend, and its mapping to gRPC status codes.
//!
//! Messages say what was wrong and what to do; they never include values
//! (which may hold PII). Keys appear only in errors returned to the caller
//! who sent them, never in logs.

use crate::capabilities::Capability;

/// An error from a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),

    /// A conditional write found a different version than it expected.
    /// `current` is 0 when the key does not exist.
    #[error("{}", version_mismatch_message(.key, *.expected, *.current))]
    VersionMismatch {
        key: String,
        expected: u64,
        current: u64,
    },

    /// The backend lacks a capability the call needs.
    #[error(
        "backend '{backend}' does not have the '{capability}' capability this call needs; \
         use a namespace whose backend declares it"
    )]
    Unsupported {
        backend: String,
        capability: Capability,
    },

    /// An idempotency token was reused for a different request.
    #[error(
        "idempotency token '{0}' was already used for a different request; \
         use a new token for each distinct request"
    )]
    IdempotencyConflict(String),

    /// A page token that does not decode or belongs to another request.
    #[error(
        "invalid page_token: {0}; pass the next_page_token of the previous page unchanged, \
         or an empty page_token to start from the beginning"
    )]
    InvalidPageToken(String),

    /// A page token whose snapshot is no longer retained.
    #[error("page_token has expired: {0}; start again with an empty page_token")]
    PageTokenExpired(String),

    /// The backend cannot be reached; the call may be retried.
    #[error("backend unavailable: {0}")]
    Unavailable(String),

    /// The backend's options are invalid, or the backend cannot be opened
    /// with them; raised when configuration is checked or the backend opens.
    #[error("{0}")]
    Config(String),

    /// A bug or an unexpected condition inside the backend.
    #[error("internal backend error: {0}")]
    Internal(String),

    /// A status a pattern process answered with, passed on unchanged.
    #[error("{message}")]
    Status { code: tonic::Code, message: String },
}

fn version_mismatch_message(key: &str, expected: u64, current: u64) -> String {
    let now = if current == 0 {
        "does not exist".to_string()
    } else {
        format!("is at version {current}")
    };
    let wanted = if expected == 0 {
        "expected it not to exist".to_string()
    } else {
        format!("expected version {expected}")
    };
    format!(
        "conditional write failed: key {key} {now}, but the write {wanted}; \
         nothing was written; read the item again and retry with its current version"
    )
}

impl BackendError {
    /// The gRPC status code for this error. This is the one mapping from
    /// backend errors to status codes.
    pub fn code(&self) -> tonic::Code {
        match self {
            BackendError::InvalidArgument(_)
            | BackendError::IdempotencyConflict(_)
            | BackendError::InvalidPageToken(_) => tonic::Code::InvalidArgument,
            BackendError::VersionMismatch { .. }
            | BackendError::Unsupported { .. }
            | BackendError::PageTokenExpired(_) => tonic::Code::FailedPrecondition,
            BackendError::Unavailable(_) => tonic::Code::Unavailable,
            BackendError::Config(_) | BackendError::Internal(_) => tonic::Code::Internal,
            BackendError::Status { code, .. } => *code,
        }
    }

    /// Shorthand for an [`BackendError::Unsupported`] error.
    pub fn unsupported(backend: &str, capability: Capability) -> Self {
        BackendError::Unsupported {
            backend: backend.to_string(),
            capability,
        }
    }
}

impl From<BackendError> for tonic::Status {
    fn from(err: BackendError) -> Self {
        status(err.code(), err.to_string())
    }
}

/// The longest status message sent, in bytes: far below the 8 KiB of
/// metadata a standard gRPC client accepts, so the caller sees the real
/// error, never a metadata-size failure.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

/// A status with `message` cut to [`MAX_STATUS_MESSAGE_BYTES`] (at a
/// character boundary, the full length named): the last bound on what an
/// answer echoes, behind [`quote`] at each place that quotes input.
pub fn status(code: tonic::Code, message: String) -> tonic::Status {
    if message.len() <= MAX_STATUS_MESSAGE_BYTES {
        return tonic::Status::new(code, message);
    }
    let mut end = MAX_STATUS_MESSAGE_BYTES - 32;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    tonic::Status::new(
        code,
        format!(
            "{}… (message of {} bytes cut)",
            &message[..end],
            message.len()
        ),
    )
}

/// The most characters of caller-supplied text an error message quotes.
pub const QUOTE_MAX_CHARS: usize = 64;

/// Caller-supplied text (a name, a key id, a subject) for an error
/// message: in single quotes, control characters escaped, and cut after
/// [`QUOTE_MAX_CHARS`] characters with the full length named, e.g.
/// `'aaaa…' (100000 bytes)`, so an answer never echoes unbounded input.
pub fn quote(text: &str) -> String {
    let (shown, cut) = head(text);
    if cut {
        format!("'{shown}…' ({} bytes)", text.len())
    } else {
        format!("'{shown}'")
    }
}

/// [`quote`] without the quotes, for text that brings its own (a JSON
/// value): `"aaaa…" (100000 bytes)`.
pub fn bounded(text: &str) -> String {
    let (shown, cut) = head(text);
    if cut {
        format!("{shown}… ({} bytes)", text.len())
    } else {
        shown
    }
}

/// The first [`QUOTE_MAX_CHARS`] characters of `text`, control characters
/// escaped, and whether more followed.
fn head(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len().min(QUOTE_MAX_CHARS * 2));
    let mut chars = text.chars();
    for c in chars.by_ref().take(QUOTE_MAX_CHARS) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    (out, chars.next().is_some())
}

/// Renders a key for an error message: quoted text when it is printable
/// UTF-8, otherwise `0x` and hex. Long keys are shortened.
pub fn display_key(key: &[u8]) -> String {
    const MAX: usize = 64;
    match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(char::is_control) => {
            if s.chars().count() > MAX {
                let head: String = s.chars().take(MAX).collect();
                format!("{head:?}...")
            } else {
                format!("{s:?}")
            }
        }
        _ => {
            let mut out = String::from("0x");
            for b in key.iter().take(MAX) {
                out.push_str(&format!("{b:02x}"));
            }
            if key.len() > MAX {
                out.push_str("...");
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_messages_are_bounded() {
        let s = super::status(tonic::Code::InvalidArgument, "é".repeat(5000));
        assert!(
            s.message().len() <= super::MAX_STATUS_MESSAGE_BYTES,
            "{}",
            s.message().len()
        );
        assert!(s.message().ends_with("(message of 10000 bytes cut)"));
        let short = super::status(tonic::Code::NotFound, "short".into());
        assert_eq!(short.message(), "short");
    }

    #[test]
    fn quote_bounds_long_text_and_escapes_controls() {
        assert_eq!(super::quote("orders"), "'orders'");
        assert_eq!(super::quote("a\nb"), "'a\\nb'");
        let long = "x".repeat(100_000);
        let q = super::quote(&long);
        assert!(q.len() < 100, "{q}");
        assert!(q.ends_with("…' (100000 bytes)"), "{q}");
        let exact = "y".repeat(super::QUOTE_MAX_CHARS);
        assert_eq!(super::quote(&exact), format!("'{exact}'"));
    }

    use super::*;

    #[test]
    fn keys_render_readably() {
        assert_eq!(display_key(b"user:1"), "\"user:1\"");
        assert_eq!(display_key(&[0, 255]), "0x00ff");
    }

    #[test]
    fn version_mismatch_says_the_current_version() {
        let err = BackendError::VersionMismatch {
            key: display_key(b"k"),
            expected: 3,
            current: 5,
        };
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(
            status.message().contains("is at version 5"),
            "{}",
            status.message()
        );
        assert!(status.message().contains("expected version 3"));
    }
}
