//! `prismctl namespace apply` and `prismctl namespace delete`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tonic::{Code, Status};

use prism_proto::admin::v1::{
    ApplyNamespaceRequest, ApplyNamespaceResponse, DeleteNamespaceRequest,
};

use super::Client;
use crate::output::{self, OutputFormat};
use crate::progress::Spinner;

/// Reads the YAML to apply from `path`, or from stdin when it is `-`.
pub fn read_yaml(path: &Path) -> Result<String> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the namespace YAML from standard input")?;
        text
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the namespace file {}", path.display()))?
    };
    if text.trim().is_empty() {
        let from = if path == Path::new("-") {
            "standard input".to_owned()
        } else {
            path.display().to_string()
        };
        bail!(
            "{from} is empty; expected a namespace YAML (see `prismctl namespace get NAME -o yaml`)"
        );
    }
    Ok(text)
}

/// A field error of a dry run.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct FieldErrorView {
    /// Dotted path, e.g. `backend.kind`; empty for the whole file.
    field: String,
    message: String,
}

impl FieldErrorView {
    fn line(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// The result of `namespace apply`.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct ApplyView {
    name: String,
    /// `created`, `updated` or `unchanged` (for a dry run: what applying
    /// would do).
    result: &'static str,
    /// The new version; for a dry run, the version now serving (0: none).
    version: u64,
    dry_run: bool,
    /// Unified diff from the serving YAML to the applied one.
    diff: String,
    /// Dry run only: what is wrong with the YAML.
    errors: Vec<FieldErrorView>,
}

impl From<ApplyNamespaceResponse> for ApplyView {
    fn from(r: ApplyNamespaceResponse) -> Self {
        let result = if r.created {
            "created"
        } else if r.changed {
            "updated"
        } else {
            "unchanged"
        };
        ApplyView {
            name: r.name,
            result,
            version: r.version,
            dry_run: r.dry_run,
            diff: r.diff,
            errors: r
                .errors
                .into_iter()
                .map(|e| FieldErrorView {
                    field: e.field,
                    message: e.message,
                })
                .collect(),
        }
    }
}

impl ApplyView {
    fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        let name = &self.name;
        if self.dry_run {
            let would = match self.result {
                "created" => "would be created".to_owned(),
                "updated" => format!("would be updated from version {}", self.version),
                _ => format!("is unchanged (version {})", self.version),
            };
            if self.errors.is_empty() {
                writeln!(
                    out,
                    "dry run: namespace {name} {would}; nothing was changed"
                )?;
            } else {
                let n = self.errors.len();
                let errors = if n == 1 { "error" } else { "errors" };
                writeln!(
                    out,
                    "dry run: namespace {name} is invalid ({n} {errors}); nothing was changed"
                )?;
            }
        } else {
            writeln!(
                out,
                "namespace {name} {} (version {})",
                self.result, self.version
            )?;
        }
        if !self.diff.is_empty() {
            write!(out, "{}", self.diff)?;
            if !self.diff.ends_with('\n') {
                writeln!(out)?;
            }
        }
        if !self.errors.is_empty() {
            writeln!(out, "errors:")?;
            for error in &self.errors {
                writeln!(out, "  {}", error.line())?;
            }
        }
        Ok(())
    }
}

/// `namespace apply -f FILE`. Exits 1 when a dry run finds errors.
pub async fn apply(
    client: &mut Client,
    yaml: String,
    dry_run: bool,
    expected_version: Option<u64>,
    format: OutputFormat,
) -> Result<ExitCode> {
    let spinner = Spinner::start(if dry_run {
        "validating the namespace (dry run)"
    } else {
        "applying the namespace (validating and opening its backend)"
    });
    let response = client
        .apply_namespace(ApplyNamespaceRequest {
            yaml: yaml.clone(),
            dry_run,
            expected_version,
        })
        .await;
    spinner.finish();
    let response = match response {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == Code::InvalidArgument && !dry_run => {
            return Err(field_errors(client, yaml, status).await.into());
        }
        Err(status) => return Err(status.into()),
    };
    let view = ApplyView::from(response);
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Table => view.write_text(&mut out)?,
        _ => output::print_document(&mut out, format, &view)?,
    }
    out.flush()?;
    if view.errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: the namespace YAML is invalid (see errors: above); fix it and run the dry run \
         again"
    );
    Ok(ExitCode::FAILURE)
}

/// An apply refused as invalid, with the field errors one per line: a
/// dry run of the same YAML gives them as fields. Falls back to the
/// proxy's own message when the dry run does not.
async fn field_errors(client: &mut Client, yaml: String, refused: Status) -> Status {
    let dry_run = ApplyNamespaceRequest {
        yaml,
        dry_run: true,
        expected_version: None,
    };
    let errors = match client.apply_namespace(dry_run).await {
        Ok(r) => r.into_inner().errors,
        Err(_) => return refused,
    };
    if errors.is_empty() {
        return refused;
    }
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            FieldErrorView {
                field: e.field,
                message: e.message,
            }
            .line()
        })
        .collect();
    Status::invalid_argument(format!(
        "the namespace YAML is invalid; nothing was changed and the previous version keeps \
         serving:\n{}",
        lines.join("\n")
    ))
}

/// The result of `namespace delete`.
#[derive(Debug, Serialize)]
struct DeleteView {
    name: String,
    deleted: bool,
    /// The version the deletion was recorded as.
    version: u64,
}

/// `namespace delete NAME`.
pub async fn delete(
    client: &mut Client,
    name: String,
    expected_version: Option<u64>,
    format: OutputFormat,
) -> Result<()> {
    let spinner = Spinner::start(format!(
        "deleting namespace {name}: draining calls in flight"
    ));
    let response = client
        .delete_namespace(DeleteNamespaceRequest {
            name,
            expected_version,
        })
        .await;
    spinner.finish();
    let r = response?.into_inner();
    let view = DeleteView {
        name: r.name,
        deleted: true,
        version: r.version,
    };
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Table => writeln!(
            out,
            "namespace {} deleted (version {}): calls in flight were drained and its backend \
             closed; stored data is kept",
            view.name, view.version
        )?,
        _ => output::print_document(&mut out, format, &view)?,
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_proto::admin::v1::FieldError;

    fn response() -> ApplyNamespaceResponse {
        ApplyNamespaceResponse {
            name: "orders".into(),
            version: 4,
            created: false,
            changed: true,
            diff: "--- serving\n+++ applied\n-a: 1\n+a: 2\n".into(),
            dry_run: false,
            errors: vec![],
        }
    }

    fn text(view: &ApplyView) -> String {
        let mut out = Vec::new();
        view.write_text(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn apply_says_what_happened_and_shows_the_diff() {
        assert_eq!(
            text(&ApplyView::from(response())),
            "namespace orders updated (version 4)\n--- serving\n+++ applied\n-a: 1\n+a: 2\n"
        );
        let created = ApplyNamespaceResponse {
            created: true,
            version: 1,
            diff: "+a: 1".into(),
            ..response()
        };
        assert_eq!(
            text(&ApplyView::from(created)),
            "namespace orders created (version 1)\n+a: 1\n"
        );
        let same = ApplyNamespaceResponse {
            changed: false,
            diff: String::new(),
            ..response()
        };
        assert_eq!(
            text(&ApplyView::from(same)),
            "namespace orders unchanged (version 4)\n"
        );
    }

    #[test]
    fn a_dry_run_lists_field_errors_one_per_line() {
        let dry = ApplyNamespaceResponse {
            dry_run: true,
            diff: String::new(),
            errors: vec![
                FieldError {
                    field: "backend.kind".into(),
                    message: "unknown backend 'nosuch'".into(),
                },
                FieldError {
                    field: String::new(),
                    message: "not YAML".into(),
                },
            ],
            ..response()
        };
        let view = ApplyView::from(dry);
        assert_eq!(
            text(&view),
            "dry run: namespace orders is invalid (2 errors); nothing was changed\n\
             errors:\n  backend.kind: unknown backend 'nosuch'\n  not YAML\n"
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["errors"][0]["field"], "backend.kind");
        assert_eq!(json["dry_run"], true);
        let valid = ApplyNamespaceResponse {
            dry_run: true,
            diff: String::new(),
            ..response()
        };
        assert_eq!(
            text(&ApplyView::from(valid)),
            "dry run: namespace orders would be updated from version 4; nothing was changed\n"
        );
    }

    #[test]
    fn empty_or_missing_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("prismctl-apply-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.yaml");
        std::fs::write(&empty, "\n").unwrap();
        let err = read_yaml(&empty).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        let err = format!("{:#}", read_yaml(&dir.join("missing.yaml")).unwrap_err());
        assert!(err.contains("reading the namespace file"), "{err}");
        let ok = dir.join("ok.yaml");
        std::fs::write(&ok, "name: x\n").unwrap();
        assert_eq!(read_yaml(&ok).unwrap(), "name: x\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
