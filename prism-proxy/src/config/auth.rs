//! `auth` in `prism.yaml`: who may call the gRPC listener, and TLS for it.
//!
//! ```yaml
//! auth:
//!   enabled: true
//!   jwt:
//!     issuer: https://login.example.com/
//!     audience: prism
//!     jwks_url: https://login.example.com/.well-known/jwks.json
//!     groups_claim: groups
//!   tls:
//!     cert_file: tls/server.pem
//!     key_file: tls/server.key
//!     client_ca_file: tls/clients-ca.pem
//! ```
//!
//! Relative paths are relative to the directory of `prism.yaml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// `auth` as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFile {
    /// Whether callers must authenticate. Default `false`: every call runs
    /// as the anonymous principal and the proxy warns loudly at start-up.
    pub enabled: bool,
    /// Bearer tokens (JWT) in the `authorization` metadata.
    pub jwt: Option<JwtFile>,
    /// TLS (and optionally client certificates) on the gRPC listener.
    pub tls: Option<TlsFile>,
    /// Who administers every namespace and may create new ones (policy
    /// entries: `user:`, `group:`, `scope:`, `*`). Default: nobody; each
    /// namespace's `policy.admin` still applies.
    pub admins: Vec<String>,
}

/// `auth.jwt` as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JwtFile {
    /// The trusted token issuer; a token's `iss` must equal it. Required.
    pub issuer: Option<String>,
    /// A token's `aud` must contain it. Required.
    pub audience: Option<String>,
    /// A JSON Web Key Set file with the issuer's RS256/ES256 keys.
    pub jwks_file: Option<PathBuf>,
    /// Where to fetch the JSON Web Key Set (`http://` or `https://`).
    pub jwks_url: Option<String>,
    /// A file holding a shared HS256 secret. Local development only.
    pub hs256_secret_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default 60.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The claim holding the caller's groups. Default `groups`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
}

fn default_leeway() -> u64 {
    60
}

fn default_groups_claim() -> String {
    "groups".to_string()
}

/// `auth.tls` as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// The listener's certificate chain (PEM). Required.
    pub cert_file: PathBuf,
    /// The listener's private key (PEM). Required.
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to. With
    /// it, a verified client certificate's subject CN is the principal when
    /// the call carries no bearer token.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse the TLS handshake without a client certificate. Default true
    /// when `client_ca_file` is set.
    pub require_client_cert: Option<bool>,
}

/// Where the issuer's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    File(PathBuf),
    Url(String),
}

impl std::fmt::Display for JwksLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksLocation::File(p) => write!(f, "{}", p.display()),
            JwksLocation::Url(u) => f.write_str(u),
        }
    }
}

/// Validated `auth.jwt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks: Option<JwksLocation>,
    pub hs256_secret_file: Option<PathBuf>,
    pub leeway_secs: u64,
    pub groups_claim: String,
}

/// Validated `auth.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub require_client_cert: bool,
}

/// Validated `auth`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthConfig {
    pub enabled: bool,
    pub jwt: Option<JwtConfig>,
    pub tls: Option<TlsConfig>,
    /// `auth.admins`: administrators of every namespace.
    pub admins: Vec<String>,
}

impl AuthFile {
    /// Checks the section and resolves its paths against `resolve`.
    pub fn validate(
        self,
        shown: &str,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> Result<AuthConfig, ConfigError> {
        let err = |field: &str, msg: String| ConfigError::new(shown, field, msg);
        let file = |field: &str, p: &Path| -> Result<PathBuf, ConfigError> {
            let path = resolve(p);
            if path.is_file() {
                Ok(path)
            } else {
                Err(err(
                    field,
                    format!(
                        "{} is not a readable file (relative paths are relative to this file)",
                        path.display()
                    ),
                ))
            }
        };
        let jwt = match self.jwt {
            None => None,
            Some(j) => {
                let issuer = j.issuer.filter(|s| !s.is_empty()).ok_or_else(|| {
                    err(
                        "auth.jwt.issuer",
                        "is required: the issuer URL every token's `iss` must equal".into(),
                    )
                })?;
                let audience = j.audience.filter(|s| !s.is_empty()).ok_or_else(|| {
                    err(
                        "auth.jwt.audience",
                        "is required: the value every token's `aud` must contain, e.g. prism"
                            .into(),
                    )
                })?;
                let jwks = match (j.jwks_file, j.jwks_url) {
                    (Some(_), Some(_)) => {
                        return Err(err(
                            "auth.jwt.jwks_url",
                            "set either jwks_file or jwks_url, not both".into(),
                        ));
                    }
                    (Some(p), None) => Some(JwksLocation::File(file("auth.jwt.jwks_file", &p)?)),
                    (None, Some(u)) => {
                        if !(u.starts_with("http://") || u.starts_with("https://")) {
                            return Err(err(
                                "auth.jwt.jwks_url",
                                format!("'{u}' must start with http:// or https://"),
                            ));
                        }
                        Some(JwksLocation::Url(u))
                    }
                    (None, None) => None,
                };
                let hs256_secret_file = j
                    .hs256_secret_file
                    .map(|p| file("auth.jwt.hs256_secret_file", &p))
                    .transpose()?;
                if jwks.is_none() && hs256_secret_file.is_none() {
                    return Err(err(
                        "auth.jwt",
                        "needs keys to verify tokens: set jwks_file or jwks_url (or \
                         hs256_secret_file for local development)"
                            .into(),
                    ));
                }
                if j.groups_claim.is_empty() {
                    return Err(err(
                        "auth.jwt.groups_claim",
                        "must not be empty; the default is `groups`".into(),
                    ));
                }
                Some(JwtConfig {
                    issuer,
                    audience,
                    jwks,
                    hs256_secret_file,
                    leeway_secs: j.leeway_secs,
                    groups_claim: j.groups_claim,
                })
            }
        };
        let tls = match self.tls {
            None => None,
            Some(t) => {
                let client_ca_file = t
                    .client_ca_file
                    .map(|p| file("auth.tls.client_ca_file", &p))
                    .transpose()?;
                let require_client_cert = t.require_client_cert.unwrap_or(client_ca_file.is_some());
                if require_client_cert && client_ca_file.is_none() {
                    return Err(err(
                        "auth.tls.require_client_cert",
                        "needs auth.tls.client_ca_file: the CA client certificates must chain to"
                            .into(),
                    ));
                }
                Some(TlsConfig {
                    cert_file: file("auth.tls.cert_file", &t.cert_file)?,
                    key_file: file("auth.tls.key_file", &t.key_file)?,
                    client_ca_file,
                    require_client_cert,
                })
            }
        };
        let client_certs = tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
        if self.enabled && jwt.is_none() && !client_certs {
            return Err(err(
                "auth.enabled",
                "is true but nothing can authenticate a caller: configure auth.jwt and/or \
                 auth.tls.client_ca_file"
                    .into(),
            ));
        }
        super::validate_entries("auth.admins", &self.admins)
            .map_err(|(field, message)| err(&field, message))?;
        Ok(AuthConfig {
            enabled: self.enabled,
            jwt,
            tls,
            admins: self.admins,
        })
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
