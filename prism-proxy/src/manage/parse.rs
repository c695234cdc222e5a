//! Parsing a namespace YAML for the [`Manager`]: as an operator's, or as a
//! namespace admin's checked against the operator-owned settings
//! ([`authority`]) before any file is read or anything opened; off the
//! threads that serve calls.

use super::{Authority, Manager, authority};
use crate::config::{ConfigError, NamespaceConfig};
use crate::registry::Namespace;

impl Manager {
    /// Parses and checks a namespace YAML as an operator's (nothing is
    /// opened).
    pub(super) async fn parse(
        &self,
        source: &str,
        yaml: &str,
    ) -> Result<NamespaceConfig, ConfigError> {
        self.parse_as(source, yaml, Authority::Operator, None)
            .await
            .map_err(|e| match e {
                Ok(denied) => ConfigError::new(source, "", denied),
                Err(invalid) => invalid,
            })
    }

    /// Parses `yaml` as applied by a principal of `authority`: a namespace
    /// admin's text is checked against the operator-owned settings of the
    /// version serving (`current`) before any file is read or anything is
    /// opened. `Err(Ok(denied))` is a refusal, `Err(Err(e))` an invalid
    /// text. Parsing and schema compiling run on the blocking pool, never
    /// on the threads that serve calls.
    pub(super) async fn parse_as(
        &self,
        source: &str,
        yaml: &str,
        authority: Authority,
        current: Option<&Namespace>,
    ) -> Result<NamespaceConfig, Result<String, ConfigError>> {
        let (owned_source, owned_yaml, catalog) =
            (source.to_string(), yaml.to_string(), self.catalog.clone());
        let config = off_workers(source, move || {
            NamespaceConfig::parse_unloaded(&owned_source, &owned_yaml, &catalog)
        })
        .await
        .map_err(Err)?;
        if authority == Authority::NamespaceAdmin {
            if current.is_none() {
                return Err(Ok(format!(
                    "{source}: only an operator (auth.admins in prism.yaml) creates namespaces"
                )));
            }
            authority::check_namespace_admin(
                &config,
                current.map(|c| &c.config),
                &self.catalog,
                &self.resolver,
            )
            .map_err(|denied| Ok(format!("{source}: {denied}")))?;
        }
        let base = self.schema_base(&config.source);
        let mut config = config;
        let config = off_workers(source, move || {
            config.load_schema(&base)?;
            Ok(config)
        })
        .await
        .map_err(Err)?;
        self.resolver.check(&config).map_err(Err)?;
        let others: Vec<_> = self.registry.list();
        self.resolver
            .check_files(&config, others.iter().map(|n| &n.config))
            .map_err(Err)?;
        Ok(config)
    }
}

/// Runs a parse on the blocking pool (YAML parsing and schema compiling
/// are bounded but not free, and must not hold up the threads that serve
/// calls); a parse that panicked is an error about `source`.
async fn off_workers<T: Send + 'static>(
    source: &str,
    parse: impl FnOnce() -> Result<T, ConfigError> + Send + 'static,
) -> Result<T, ConfigError> {
    tokio::task::spawn_blocking(parse)
        .await
        .unwrap_or_else(|e| {
            Err(ConfigError::new(
                source,
                "",
                format!("parsing failed unexpectedly: {e}"),
            ))
        })
}
