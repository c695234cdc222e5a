//! The issuer's public keys (a JSON Web Key Set), cached. A token whose
//! `kid` is not in the cache makes the set be read again (the file, or the
//! URL), at most once per [`REFRESH_INTERVAL`], before it is refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwap;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;

use super::AuthError;
use super::fetch::Fetcher;
use crate::config::JwksLocation;

/// The least time between two reloads of the key set.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Keys by key id; keys without a `kid` are kept under "".
#[derive(Default)]
struct Keys(BTreeMap<String, DecodingKey>);

/// A cached, refreshable JWKS.
pub struct Jwks {
    location: JwksLocation,
    fetcher: Option<Fetcher>,
    keys: ArcSwap<Keys>,
    last_load: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("location", &self.location)
            .field("kids", &self.keys.load().0.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Parses a JWKS document; keys that cannot verify signatures are an error.
fn parse(bytes: &[u8]) -> Result<BTreeMap<String, DecodingKey>, String> {
    let set: JwkSet =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
    let mut keys = BTreeMap::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key '{kid}': {e}"))?;
        keys.insert(kid, key);
    }
    Ok(keys)
}

impl Jwks {
    /// Loads the set once. A file that cannot be read or parsed is an
    /// error; a URL that cannot be fetched is logged and retried later.
    pub async fn load(location: JwksLocation) -> Result<Self, String> {
        let fetcher = match &location {
            JwksLocation::Url(_) => Some(Fetcher::new()?),
            JwksLocation::File(_) => None,
        };
        let jwks = Jwks {
            location,
            fetcher,
            keys: ArcSwap::from_pointee(Keys::default()),
            last_load: tokio::sync::Mutex::new(None),
        };
        let mut last = jwks.last_load.lock().await;
        match jwks.read().await {
            Ok(keys) => jwks.keys.store(Arc::new(Keys(keys))),
            Err(e) if jwks.fetcher.is_some() => {
                tracing::warn!(jwks = %jwks.location, error = %e, "cannot fetch the JWKS; retrying on the first token");
            }
            Err(e) => return Err(e),
        }
        *last = Some(Instant::now());
        drop(last);
        Ok(jwks)
    }

    async fn read(&self) -> Result<BTreeMap<String, DecodingKey>, String> {
        let bytes = match (&self.location, &self.fetcher) {
            (JwksLocation::File(path), _) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read: {e}"))?,
            (JwksLocation::Url(url), Some(fetcher)) => fetcher.get(url).await?,
            (JwksLocation::Url(_), None) => return Err("no HTTP client".into()),
        };
        parse(&bytes)
    }

    fn lookup(&self, kid: Option<&str>) -> Result<Option<DecodingKey>, AuthError> {
        let keys = self.keys.load();
        match kid {
            Some(kid) => Ok(keys.0.get(kid).cloned()),
            None if keys.0.len() == 1 => Ok(keys.0.values().next().cloned()),
            None if keys.0.is_empty() => Ok(None),
            None => Err(AuthError::MissingKeyId),
        }
    }

    /// The key for `kid` (or the only key, when the token has no `kid`),
    /// reloading the set once if the key is unknown and the last reload is
    /// at least [`REFRESH_INTERVAL`] ago.
    pub async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.lookup(kid)? {
            return Ok(key);
        }
        let mut last = self.last_load.lock().await;
        // Another call may have reloaded while this one waited.
        if let Some(key) = self.lookup(kid)? {
            return Ok(key);
        }
        let due = last.is_none_or(|t| t.elapsed() >= REFRESH_INTERVAL);
        if due {
            *last = Some(Instant::now());
            match self.read().await {
                Ok(keys) => {
                    tracing::info!(jwks = %self.location, keys = keys.len(), "reloaded the JWKS");
                    self.keys.store(Arc::new(Keys(keys)));
                }
                Err(reason) => {
                    if self.keys.load().0.is_empty() {
                        return Err(AuthError::JwksUnavailable {
                            location: self.location.to_string(),
                            reason,
                        });
                    }
                    tracing::warn!(jwks = %self.location, error = %reason, "cannot reload the JWKS");
                }
            }
            if let Some(key) = self.lookup(kid)? {
                return Ok(key);
            }
        }
        let known: Vec<String> = self.keys.load().0.keys().cloned().collect();
        Err(AuthError::UnknownKeyId {
            kid: kid.unwrap_or("").to_string(),
            location: self.location.to_string(),
            known: if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            },
        })
    }
}
