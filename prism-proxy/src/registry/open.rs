//! Opening a namespace's backend in its mode: linked into the proxy, a
//! supervised pattern process, or a remote pattern.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pattern_core::grpc::Endpoint;
use pattern_core::grpc::process::{Backoff, PatternProcess, PatternSpec, json_or_empty};
use pattern_core::grpc::remote::PatternBackend;
use pattern_core::{Clock, OpenContext};
use prism_proto::pattern::v1 as lc;

use crate::backend::DalBackend;
use crate::config::{BackendMode, NamespaceConfig};
use crate::resolver::Resolver;

/// An open backend with its pattern process and endpoint (in `process` and
/// `remote` modes).
pub(crate) type Opened = (DalBackend, Option<Arc<PatternProcess>>, Option<String>);

const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The pattern binary for `kind`: the configured one, else
/// `prism-pattern-<kind>` beside the running executable (or beside its
/// parent directory, for test binaries under `target/*/deps`), else the
/// bare name, found on `PATH`.
pub fn pattern_binary(kind: &str, configured: Option<&Path>) -> PathBuf {
    if let Some(binary) = configured {
        return binary.to_path_buf();
    }
    let name = format!("prism-pattern-{kind}");
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        for candidate in [dir.join(&name), dir.join("..").join(&name)] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(name)
}

/// Opens one namespace's backend (without the TimeSeries log), with its
/// pattern process and endpoint.
pub(crate) async fn open_backend(
    config: &NamespaceConfig,
    resolver: &Resolver,
    data_dir: &Path,
    clock: Arc<dyn Clock>,
) -> Result<Opened, String> {
    if config.backend.mode == BackendMode::Embedded {
        let ctx = OpenContext::new(config.name.clone(), data_dir, clock)
            .with_options(config.backend.options.clone());
        let b = DalBackend::open(config, resolver, ctx).await?;
        return Ok((b, None, None));
    }
    let (b, p, e) = open_pattern(config, resolver, data_dir).await?;
    Ok((DalBackend::from_pattern(config.dal, b)?, p, e))
}

/// Opens one namespace's backend as a pattern process (`mode: process`
/// or `remote`): a DAL whose descriptor allows pattern modes.
async fn open_pattern(
    config: &NamespaceConfig,
    resolver: &Resolver,
    data_dir: &Path,
) -> Result<
    (
        Arc<PatternBackend>,
        Option<Arc<PatternProcess>>,
        Option<String>,
    ),
    String,
> {
    let settings = DalBackend::pattern_settings(config);
    let backend = &config.backend;
    let pattern = backend.pattern.clone().unwrap_or_default();
    let start_timeout = pattern
        .start_timeout_secs
        .map_or(DEFAULT_START_TIMEOUT, Duration::from_secs);
    match backend.mode {
        BackendMode::Embedded => Err(format!(
            "backend.mode embedded is opened by the resolver, not as a pattern (namespace '{}')",
            config.name
        )),
        BackendMode::Process => {
            let binary = resolver
                .pattern_binary(&backend.kind, pattern.binary.as_deref())
                .map_err(|e| format!("backend.pattern.binary {e}"))?;
            let mut spec = PatternSpec::new(&config.name, &backend.kind, binary);
            spec.dal = config.dal.name().to_string();
            spec.options = backend.options.clone();
            spec.settings = settings;
            spec.data_dir = data_dir.to_path_buf();
            spec.start_timeout = start_timeout;
            if let Some(max) = pattern.max_restart_backoff_secs {
                spec.backoff = Backoff {
                    max: Duration::from_secs(max.max(1)),
                    ..Backoff::default()
                };
            }
            let endpoint = Endpoint::Unix(spec.socket.clone()).to_string();
            let b = PatternBackend::start(spec)
                .await
                .map_err(|e| e.to_string())?;
            let process = b.process().cloned();
            Ok((Arc::new(b), process, Some(endpoint)))
        }
        BackendMode::Remote => {
            let address = pattern.address.as_deref().unwrap_or_default();
            let endpoint = Endpoint::parse(address)?;
            let request = lc::InitializeRequest {
                namespace: config.name.clone(),
                dal: config.dal.name().to_string(),
                backend_kind: backend.kind.clone(),
                options_json: json_or_empty(&backend.options),
                data_dir: data_dir.display().to_string(),
                proxy_version: env!("CARGO_PKG_VERSION").to_string(),
                settings_json: json_or_empty(&settings),
            };
            let b = pattern_core::grpc::remote::attach(&endpoint, request, start_timeout)
                .await
                .map_err(|e| e.to_string())?;
            Ok((Arc::new(b), None, Some(endpoint.to_string())))
        }
    }
}
