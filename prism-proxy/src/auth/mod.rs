//! Authentication: who is calling.
//!
//! Every gRPC call passes through [`AuthLayer`], which puts a [`Principal`]
//! into the request's extensions (`request.extensions().get::<Principal>()`)
//! or answers `UNAUTHENTICATED` with the reason. Authorization (which
//! principal may read or write which namespace) builds on `Principal`.
//!
//! How a principal is found, when `auth.enabled` is true:
//!
//! 1. An `authorization: Bearer <jwt>` header wins. The token must be signed
//!    by a key from the configured JWKS (RS256/ES256, chosen by `kid`) or,
//!    for local development, the HS256 secret; `iss` must equal
//!    `auth.jwt.issuer`, `aud` must contain `auth.jwt.audience`, and `exp`
//!    must be in the future (`nbf`, when present, in the past), give or take
//!    `auth.jwt.leeway_secs`.
//! 2. Otherwise a client certificate verified against
//!    `auth.tls.client_ca_file` (mTLS); its subject common name (CN) is the
//!    principal.
//! 3. Otherwise the call is refused.
//!
//! The gRPC health service (`grpc.health.v1.Health`) never needs
//! credentials, so load balancers can probe it. With `auth.enabled` false
//! every call carries [`Principal::anonymous`].

mod cert;
mod fetch;
mod jwks;
mod jwt;
mod layer;
mod tls;

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tonic::codegen::http;

use crate::config::AuthConfig;

pub use jwt::JwtVerifier;
pub use layer::{AuthLayer, AuthService};
pub use tls::server_tls;

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A verified JWT bearer token.
    Jwt,
    /// A client certificate verified during the TLS handshake.
    ClientCert,
    /// Nothing: authentication is disabled, or the call reached a service
    /// that needs no credentials (gRPC health).
    Anonymous,
}

impl AuthMethod {
    /// `jwt`, `client_cert` or `anonymous`.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ClientCert => "client_cert",
            AuthMethod::Anonymous => "anonymous",
        }
    }
}

/// The authenticated caller of one request.
///
/// Claims mapping for [`AuthMethod::Jwt`]:
/// - `subject` ← `sub` (required);
/// - `groups` ← the claim named by `auth.jwt.groups_claim` (default
///   `groups`): an array of strings, or one string;
/// - `scopes` ← `scope` (a space-separated string, OAuth 2.0 style) and/or
///   `scp` (an array of strings, or a space-separated string);
/// - `expires_at` ← `exp`, Unix seconds.
///
/// For [`AuthMethod::ClientCert`], `subject` is the certificate subject's
/// common name (CN), `groups` and `scopes` are empty and `expires_at` is
/// `None`. For [`AuthMethod::Anonymous`] the subject is `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    pub method: AuthMethod,
    /// When the credential stops being valid, Unix seconds (tokens only).
    pub expires_at: Option<u64>,
}

impl Principal {
    /// The principal of every call when authentication is disabled.
    pub fn anonymous() -> Self {
        Principal {
            subject: "anonymous".to_string(),
            groups: Vec::new(),
            scopes: Vec::new(),
            method: AuthMethod::Anonymous,
            expires_at: None,
        }
    }
}

/// Why a call was not authenticated. Every message says what is wrong and,
/// where it helps, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: {0}")]
    NoCredentials(String),
    #[error("the authorization header is not `Bearer <token>`; send `authorization: Bearer <jwt>`")]
    NotBearer,
    #[error("bearer tokens are not accepted here: auth.jwt is not configured on the proxy")]
    TokensNotAccepted,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error(
        "token algorithm {0} is not accepted; use RS256 or ES256 keys from the issuer's JWKS \
         (HS256 only when auth.jwt.hs256_secret_file is set)"
    )]
    UnsupportedAlgorithm(String),
    #[error(
        "token has no key id (kid) and the JWKS holds more than one key; the issuer must \
         set kid"
    )]
    MissingKeyId,
    #[error(
        "unknown key id {}: not in the JWKS from {location} (known: {known})",
        pattern_core::quote(.kid)
    )]
    UnknownKeyId {
        kid: String,
        location: String,
        known: String,
    },
    #[error(
        "bad token signature: it does not verify with key {}",
        pattern_core::quote(.0)
    )]
    BadSignature(String),
    #[error("token expired at {exp} (Unix seconds; now {now}); get a new one, e.g. prismctl login")]
    Expired { exp: u64, now: u64 },
    #[error("token not valid before {nbf} (Unix seconds; now {now})")]
    NotYetValid { nbf: u64, now: u64 },
    #[error(
        "wrong issuer: token `iss` is {}, the proxy trusts '{expected}'",
        pattern_core::quote(.got)
    )]
    WrongIssuer { got: String, expected: String },
    #[error(
        "wrong audience: token `aud` is {}, the proxy requires '{expected}'",
        pattern_core::bounded(.got)
    )]
    WrongAudience { got: String, expected: String },
    #[error("token is missing the required `{0}` claim")]
    MissingClaim(String),
    #[error("token claim `{0}` has the wrong type")]
    BadClaim(String),
    #[error("client certificate has no subject common name (CN) to use as the principal")]
    CertWithoutCommonName,
    #[error("cannot load the issuer's keys (JWKS from {location}): {reason}")]
    JwksUnavailable { location: String, reason: String },
}

impl AuthError {
    /// The gRPC status code: `UNAVAILABLE` when the proxy cannot load the
    /// issuer's keys (retry later), `UNAUTHENTICATED` otherwise.
    pub fn code(&self) -> tonic::Code {
        match self {
            AuthError::JwksUnavailable { .. } => tonic::Code::Unavailable,
            _ => tonic::Code::Unauthenticated,
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        pattern_core::status(e.code(), e.to_string())
    }
}

/// Why authentication could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// Decides the [`Principal`] of each call from the proxy's `auth` config.
#[derive(Debug)]
pub struct Authenticator {
    enabled: bool,
    jwt: Option<JwtVerifier>,
    client_certs: bool,
}

impl Authenticator {
    /// Builds the authenticator: reads the HS256 secret and loads the JWKS
    /// (a JWKS URL that cannot be fetched now is retried on the first
    /// token, with a warning).
    pub async fn new(config: &AuthConfig) -> Result<Arc<Self>, SetupError> {
        let jwt = match (&config.jwt, config.enabled) {
            (Some(j), true) => Some(JwtVerifier::new(j).await?),
            _ => None,
        };
        Ok(Arc::new(Authenticator {
            enabled: config.enabled,
            jwt,
            client_certs: config
                .tls
                .as_ref()
                .is_some_and(|t| t.client_ca_file.is_some()),
        }))
    }

    /// An authenticator that lets every call in as anonymous.
    pub fn disabled() -> Arc<Self> {
        Arc::new(Authenticator {
            enabled: false,
            jwt: None,
            client_certs: false,
        })
    }

    /// Whether calls must authenticate.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The principal of a call with these headers and (verified) client
    /// certificates, or why there is none.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer_certs: Option<&[CertificateDer<'static>]>,
    ) -> Result<Principal, AuthError> {
        if !self.enabled {
            return Ok(Principal::anonymous());
        }
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| AuthError::NotBearer)?.trim();
            let token = match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                _ => return Err(AuthError::NotBearer),
            };
            return match &self.jwt {
                Some(verifier) => verifier.verify(token).await,
                None => Err(AuthError::TokensNotAccepted),
            };
        }
        if self.client_certs
            && let Some(cert) = peer_certs.and_then(|c| c.first())
        {
            let subject =
                cert::common_name(cert.as_ref()).ok_or(AuthError::CertWithoutCommonName)?;
            return Ok(Principal {
                subject,
                groups: Vec::new(),
                scopes: Vec::new(),
                method: AuthMethod::ClientCert,
                expires_at: None,
            });
        }
        let hint = match (self.jwt.is_some(), self.client_certs) {
            (true, true) => {
                "send `authorization: Bearer <token>` (prismctl login or --token) or connect with \
                 a client certificate"
            }
            (true, false) => "send `authorization: Bearer <token>` (prismctl login or --token)",
            _ => "connect with a client certificate signed by the proxy's client CA",
        };
        Err(AuthError::NoCredentials(hint.to_string()))
    }
}

/// Services that need no credentials even when auth is enabled.
pub fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(v) = authorization {
            h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    fn certs_only() -> Authenticator {
        Authenticator {
            enabled: true,
            jwt: None,
            client_certs: true,
        }
    }

    #[tokio::test]
    async fn disabled_means_anonymous_whatever_is_sent() {
        let auth = Authenticator::disabled();
        for h in [headers(None), headers(Some("Bearer garbage"))] {
            assert_eq!(
                auth.authenticate(&h, None).await.unwrap(),
                Principal::anonymous()
            );
        }
        assert_eq!(Principal::anonymous().subject, "anonymous");
    }

    #[tokio::test]
    async fn missing_or_odd_credentials_are_explained() {
        let auth = certs_only();
        let err = auth.authenticate(&headers(None), None).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.to_string().starts_with("no credentials"), "{err}");
        assert!(err.to_string().contains("client certificate"), "{err}");
        let err = auth
            .authenticate(&headers(Some("Basic YTpi")), None)
            .await
            .unwrap_err();
        assert_eq!(err, AuthError::NotBearer);
        let err = auth
            .authenticate(&headers(Some("Bearer x.y.z")), None)
            .await
            .unwrap_err();
        assert_eq!(err, AuthError::TokensNotAccepted);
    }

    #[tokio::test]
    async fn a_certificate_cn_is_the_principal() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "svc-billing");
        let der = CertificateDer::from(params.self_signed(&key).unwrap().der().to_vec());
        let p = certs_only()
            .authenticate(&headers(None), Some(std::slice::from_ref(&der)))
            .await
            .unwrap();
        assert_eq!(p.subject, "svc-billing");
        assert_eq!(p.method, AuthMethod::ClientCert);
        assert!(p.groups.is_empty() && p.scopes.is_empty() && p.expires_at.is_none());
    }

    #[test]
    fn only_health_is_public() {
        assert!(is_public("/grpc.health.v1.Health/Check"));
        assert!(is_public("/grpc.health.v1.Health/Watch"));
        assert!(!is_public("/prism.keyvalue.v1.KeyValueService/Get"));
        assert!(!is_public("/prism.admin.v1.AdminService/WhoAmI"));
        assert!(!is_public(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!is_public(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
    }
}
