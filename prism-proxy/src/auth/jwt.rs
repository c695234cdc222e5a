//! Verifying JWT bearer tokens and mapping their claims to a [`Principal`].

use std::collections::HashSet;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jwks::Jwks;
use super::{AuthError, AuthMethod, Principal, SetupError};
use crate::config::JwtConfig;

/// Verifies tokens against the configured issuer, audience and keys.
#[derive(Debug)]
pub struct JwtVerifier {
    issuer: String,
    audience: String,
    leeway_secs: u64,
    groups_claim: String,
    jwks: Option<Jwks>,
    hs256: Option<DecodingKey>,
}

impl JwtVerifier {
    /// Reads the HS256 secret (warning that it is for local development)
    /// and loads the JWKS.
    pub async fn new(config: &JwtConfig) -> Result<Self, SetupError> {
        let hs256 = match &config.hs256_secret_file {
            Some(path) => {
                let secret = std::fs::read(path).map_err(|e| {
                    SetupError(format!(
                        "auth.jwt.hs256_secret_file {}: cannot read: {e}",
                        path.display()
                    ))
                })?;
                let secret = secret.trim_ascii();
                if secret.len() < 32 {
                    return Err(SetupError(format!(
                        "auth.jwt.hs256_secret_file {}: the secret is {} bytes; use at least 32 \
                         random bytes",
                        path.display(),
                        secret.len()
                    )));
                }
                tracing::warn!(
                    file = %path.display(),
                    "HS256 tokens with a shared secret are accepted: for local development only; \
                     use jwks_file or jwks_url in production"
                );
                Some(DecodingKey::from_secret(secret))
            }
            None => None,
        };
        let jwks = match &config.jwks {
            Some(location) => Some(
                Jwks::load(location.clone())
                    .await
                    .map_err(|e| SetupError(format!("auth.jwt JWKS {location}: {e}")))?,
            ),
            None => None,
        };
        Ok(JwtVerifier {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_secs: config.leeway_secs,
            groups_claim: config.groups_claim.clone(),
            jwks,
            hs256,
        })
    }

    /// Verifies `token` and returns its principal, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let (key, key_name) = match header.alg {
            Algorithm::HS256 => match &self.hs256 {
                Some(key) => (key.clone(), "the HS256 secret".to_string()),
                None => return Err(AuthError::UnsupportedAlgorithm("HS256".into())),
            },
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384 => match &self.jwks {
                Some(jwks) => (
                    jwks.key(header.kid.as_deref()).await?,
                    header.kid.clone().unwrap_or_default(),
                ),
                None => return Err(AuthError::UnsupportedAlgorithm(format!("{:?}", header.alg))),
            },
            other => return Err(AuthError::UnsupportedAlgorithm(format!("{other:?}"))),
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation.required_spec_claims =
            HashSet::from(["exp", "iss", "aud", "sub"].map(String::from));
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| self.explain(e.kind(), token, &key_name))?;
        self.principal(&data.claims)
    }

    /// Turns a verification error into the reason given to the caller.
    fn explain(&self, kind: &ErrorKind, token: &str, key_name: &str) -> AuthError {
        // Only reached after the signature verified (or for errors that do
        // not depend on it), so reading the claims to explain is safe.
        let claims = || {
            jsonwebtoken::dangerous::insecure_decode_claims::<Map<String, Value>>(token)
                .unwrap_or_default()
        };
        let now = jsonwebtoken::get_current_timestamp();
        match kind {
            ErrorKind::InvalidSignature => AuthError::BadSignature(key_name.to_string()),
            ErrorKind::ExpiredSignature => AuthError::Expired {
                exp: claims().get("exp").and_then(Value::as_u64).unwrap_or(0),
                now,
            },
            ErrorKind::ImmatureSignature => AuthError::NotYetValid {
                nbf: claims().get("nbf").and_then(Value::as_u64).unwrap_or(0),
                now,
            },
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer {
                got: claims()
                    .get("iss")
                    .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
                    .unwrap_or_default(),
                expected: self.issuer.clone(),
            },
            ErrorKind::InvalidAudience => AuthError::WrongAudience {
                got: claims()
                    .get("aud")
                    .map(Value::to_string)
                    .unwrap_or_default(),
                expected: self.audience.clone(),
            },
            ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
            ErrorKind::InvalidClaimFormat(c) => AuthError::BadClaim(c.clone()),
            ErrorKind::InvalidAlgorithm => AuthError::Malformed(
                "the token's algorithm does not match its key's type".to_string(),
            ),
            other => AuthError::Malformed(format!("{other:?}")),
        }
    }

    /// Maps verified claims to a principal (see [`Principal`]).
    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => return Err(AuthError::MissingClaim("sub".into())),
            Some(_) => return Err(AuthError::BadClaim("sub".into())),
        };
        let groups = strings(claims.get(&self.groups_claim), false)
            .ok_or_else(|| AuthError::BadClaim(self.groups_claim.clone()))?;
        let mut scopes = strings(claims.get("scope"), true)
            .ok_or_else(|| AuthError::BadClaim("scope".into()))?;
        for s in
            strings(claims.get("scp"), true).ok_or_else(|| AuthError::BadClaim("scp".into()))?
        {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        Ok(Principal {
            subject,
            groups,
            scopes,
            method: AuthMethod::Jwt,
            expires_at: claims.get("exp").and_then(Value::as_u64),
        })
    }
}

/// An absent claim, a string (split on spaces when `split`) or an array of
/// strings; `None` for any other shape.
fn strings(value: Option<&Value>, split: bool) -> Option<Vec<String>> {
    match value {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(s)) if split => Some(s.split_whitespace().map(String::from).collect()),
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(items)) => items.iter().map(|v| v.as_str().map(String::from)).collect(),
        Some(_) => None,
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
