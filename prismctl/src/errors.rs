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
        eprintln!("hint: {}", unreachable.hint);
    } else if let Some(status) = err.chain().find_map(|e| e.downcast_ref::<Status>()) {
        eprint!("{}", status_report(status));
    } else {
        eprintln!("error: {err:#}");
    }
    ExitCode::FAILURE
}

/// The error line (a multi-line message as one line per item, e.g. one
/// field error per line) and the hints saying what to do next.
pub fn status_report(status: &Status) -> String {
    let formatted = format_status(status);
    let mut lines = formatted.lines();
    let mut text = format!("error: {}\n", lines.next().unwrap_or_default());
    for line in lines.filter(|l| !l.trim().is_empty()) {
        text.push_str(&format!("  {}\n", line.trim_end()));
    }
    for hint in hints(status) {
        text.push_str(&format!("hint: {hint}\n"));
    }
    text
}

/// What to do next about a failed call.
fn hints(status: &Status) -> Vec<String> {
    let message = status.message();
    if message.contains("grpc-status header missing") {
        return vec![
            "something at this address answers HTTP but not gRPC: point --addr (or address: in \
             ~/.prism/config.yaml) at the proxy's gRPC listener (listeners.grpc, default port \
             8980), not its admin HTTP listener"
                .to_owned(),
        ];
    }
    match status.code() {
        Code::Unauthenticated => vec![
            "log in with `prismctl login --issuer URL --client-id ID`, pass --token (or \
             PRISM_TOKEN, or token: in ~/.prism/config.yaml), or use a client certificate \
             (--cert-file, --key-file)"
                .to_owned(),
        ],
        Code::PermissionDenied => {
            let permission = quoted_after(message, "lacks the '").unwrap_or("needed");
            vec![format!(
                "you lack the '{permission}' permission; an admin grants it in the namespace's \
                 policy (policy.{permission} in its YAML, see `prismctl namespace get NAME`) or, \
                 for every namespace, in auth.admins of prism.yaml; `prismctl whoami` shows who \
                 the proxy takes you for"
            )]
        }
        // Newer proxies name the command themselves; say it once.
        Code::NotFound if message.contains("namespace") && !message.contains("namespace list") => {
            vec!["`prismctl namespace list` shows the namespaces you can see".to_owned()]
        }
        Code::FailedPrecondition if message.contains("at version") => vec![
            "someone changed it since you read it: `prismctl namespace get NAME` shows the \
             current version; re-apply your change on top of it, or drop --expected-version"
                .to_owned(),
        ],
        Code::InvalidArgument if message.contains('\n') || message.contains("field") => vec![
            "fix the fields above; `prismctl namespace apply --dry-run -f FILE` checks a change \
             without applying it"
                .to_owned(),
        ],
        Code::Unimplemented => vec![
            "this proxy does not offer that call; upgrade prism-proxy to the version of prismctl"
                .to_owned(),
        ],
        _ => Vec::new(),
    }
}

/// The text between `prefix` and the next `'` in `message`.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let start = message.find(prefix)? + prefix.len();
    let rest = &message[start..];
    Some(&rest[..rest.find('\'')?])
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
    fn permission_denied_names_the_permission_and_who_grants_it() {
        let status = Status::permission_denied(
            "principal 'bob' lacks the 'admin' permission on namespace 'orders'",
        );
        let text = status_report(&status);
        assert!(
            text.starts_with("error: PERMISSION_DENIED (7): principal 'bob'"),
            "{text}"
        );
        assert!(
            text.contains("hint: you lack the 'admin' permission"),
            "{text}"
        );
        assert!(text.contains("policy.admin"), "{text}");
        assert!(text.contains("auth.admins"), "{text}");
    }

    #[test]
    fn multi_line_messages_show_one_item_per_line() {
        let status = Status::invalid_argument(
            "namespace YAML is invalid:\nbackend.kind: unknown backend 'nosuch'\nname: empty",
        );
        assert_eq!(
            status_report(&status),
            "error: INVALID_ARGUMENT (3): namespace YAML is invalid:\n\
             \x20 backend.kind: unknown backend 'nosuch'\n\
             \x20 name: empty\n\
             hint: fix the fields above; `prismctl namespace apply --dry-run -f FILE` checks a \
             change without applying it\n"
        );
    }

    #[test]
    fn stale_versions_and_unknown_namespaces_say_what_next() {
        let stale = status_report(&Status::failed_precondition(
            "namespace 'x' is at version 4, not 3; someone else changed it",
        ));
        assert!(stale.contains("prismctl namespace get"), "{stale}");
        let missing = status_report(&Status::not_found("namespace 'x' not found"));
        assert!(missing.contains("prismctl namespace list"), "{missing}");
        let named = status_report(&Status::not_found(
            "namespace 'x' does not exist; `prismctl namespace list` shows the namespaces served",
        ));
        assert_eq!(
            named.matches("prismctl namespace list").count(),
            1,
            "{named}"
        );
        let http = status_report(&Status::unimplemented(
            "grpc-status header missing, mapped from HTTP status code 404",
        ));
        assert!(http.contains("gRPC listener"), "{http}");
        let plain = status_report(&Status::internal("boom"));
        assert_eq!(plain, "error: INTERNAL (13): boom\n");
    }

    #[test]
    fn broken_pipes_are_not_failures() {
        let err = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(report(&err), ExitCode::SUCCESS);
    }
}
