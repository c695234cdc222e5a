//! Where a backend keeps a namespace's data, as its factory declares it.
//!
//! Some backend options decide where a namespace's data lives (a file, a
//! table schema, a key prefix) or which server the backend connects to (a
//! URL, brokers). Those are the operator's to set, not a namespace
//! admin's (ADR-017): each factory names them in `placement_options`, and
//! the proxy refuses a namespace admin's change to any of them. Files a
//! backend keeps under the data directory are named by `data_files`, so
//! the proxy can keep one namespace's files its own.

use std::path::{Component, Path};

use crate::BackendError;

/// In `placement_options`: every option is a placement option (the
/// default for a factory that does not say).
pub const ALL_OPTIONS: &str = "*";

/// Checks that `path`, a backend's file option, stays inside the data
/// directory: relative, with no `..`, root or drive component. The error
/// names the option and says what is allowed.
pub fn check_data_path(kind: &str, option: &str, path: &Path) -> Result<(), BackendError> {
    let inside = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)));
    if inside {
        return Ok(());
    }
    Err(BackendError::Config(format!(
        "{kind} backend option `{option}` must be a relative path inside the data directory \
         (no `..`, not absolute), e.g. orders.db; the operator chooses the data directory \
         with data_dir in prism.yaml"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_data_directory_pass() {
        for ok in ["orders.db", "./orders.db", "sub/dir/orders.db"] {
            assert!(
                check_data_path("sqlite", "path", Path::new(ok)).is_ok(),
                "{ok}"
            );
        }
        for bad in ["/etc/passwd", "../other.db", "sub/../../x.db", "", "."] {
            let e = check_data_path("sqlite", "path", Path::new(bad)).unwrap_err();
            assert!(
                e.to_string().contains("inside the data directory"),
                "{bad}: {e}"
            );
        }
    }
}
