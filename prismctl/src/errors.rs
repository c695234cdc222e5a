//! How a failed command is reported on stderr.

use std::io;
use std::process::ExitCode;

use tonic::{Code, Status};

use crate::connect::ProxyUnreachable;

/// Prints `err` to stderr and returns the exit code: 1 for every failure,
/// 0 when stdout was closed early (e.g. `prismctl kv scan | head`).
pub fn report(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    if let Some(unreachable) = err.downcast_ref::<ProxyUnreachable>() {
        eprintln!("error: {unreachable}");
        eprintln!(
            "hint: start the proxy with `cargo run --release -p prism-proxy`, \
             or point prismctl at it with --addr (or PRISM_ADDR)"
        );
    } else if let Some(status) = err.chain().find_map(|e| e.downcast_ref::<Status>()) {
        eprintln!("error: {}", format_status(status));
        if status.code() == Code::Unauthenticated {
            eprintln!(
                "hint: log in with `prismctl login --issuer URL --client-id ID`, pass --token \
                 (or PRISM_TOKEN), or use a client certificate (--cert-file, --key-file)"
            );
        }
    } else {
        eprintln!("error: {err:#}");
    }
    ExitCode::FAILURE
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// `<CODE_NAME> (<code number>): <message>`, e.g.
/// `NOT_FOUND (5): namespace 'x' not found; known: users`.
pub fn format_status(status: &Status) -> String {
    let code = status.code();
    let message = if status.message().is_empty() {
        code.description()
    } else {
        status.message()
    };
    format!("{} ({}): {message}", code_name(code), code as i32)
}

/// The canonical gRPC name of a status code, as the protos spell it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_status_with_name_and_number() {
        let status = Status::not_found("namespace 'x' not found; known: users");
        assert_eq!(
            format_status(&status),
            "NOT_FOUND (5): namespace 'x' not found; known: users"
        );
        let status = Status::failed_precondition("current version is 4");
        assert_eq!(
            format_status(&status),
            "FAILED_PRECONDITION (9): current version is 4"
        );
    }

    #[test]
    fn empty_message_falls_back_to_the_code_description() {
        let status = Status::new(Code::Unavailable, "");
        assert!(format_status(&status).starts_with("UNAVAILABLE (14): "));
        assert!(format_status(&status).len() > "UNAVAILABLE (14): ".len());
    }

    #[test]
    fn statuses_are_found_behind_context() {
        let err = anyhow::Error::new(Status::invalid_argument("bad")).context("kv get");
        let found = err.chain().find_map(|e| e.downcast_ref::<Status>());
        assert_eq!(found.map(Status::code), Some(Code::InvalidArgument));
    }

    #[test]
    fn broken_pipes_are_not_failures() {
        let err = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(report(&err), ExitCode::SUCCESS);
    }
}
