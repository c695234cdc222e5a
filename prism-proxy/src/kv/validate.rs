//! Request validation against a namespace's limits and its backend's
//! capabilities. Every error names the field or limit, its value, and what
//! to do; nothing reaches the backend until the whole request is valid.

use std::time::Duration;

use pattern_core::{Capability, PutItem, Selection, display_key};
use prism_proto::keyvalue::v1 as pb;

use crate::error::ProxyError;
use crate::registry::Namespace;

/// Longest idempotency token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 256;

/// Longest TTL accepted: 100 years.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Refuses an empty namespace name before any lookup.
pub fn namespace_name(name: &str) -> Result<(), ProxyError> {
    if name.is_empty() {
        return Err(ProxyError::invalid(
            "namespace must not be empty; set it to the name of a configured namespace",
        ));
    }
    Ok(())
}

/// Refuses a call that names the same thing twice (as DynamoDB does):
/// `names` yields each entry's field (e.g. `items[3].key`) and identity;
/// the error names both fields, never the identity itself.
pub fn no_repeats<K: std::hash::Hash + Eq>(
    what: &str,
    names: impl IntoIterator<Item = (String, K)>,
) -> Result<(), ProxyError> {
    let mut seen: std::collections::HashMap<K, String> = std::collections::HashMap::new();
    for (field, identity) in names {
        if let Some(first) = seen.get(&identity) {
            return Err(ProxyError::invalid(format!(
                "{field} repeats {first}: one call names each {what} once; merge the two \
                 entries (nothing was done)"
            )));
        }
        seen.insert(identity, field);
    }
    Ok(())
}

/// Checks requests against one namespace.
pub struct Check<'a>(pub &'a Namespace);

impl Check<'_> {
    fn name(&self) -> &str {
        &self.0.config.name
    }

    fn limit(&self, what: &str, actual: usize, limit: &str, value: usize) -> ProxyError {
        ProxyError::invalid(format!(
            "{what} is {actual} bytes, over the limit {limit} = {value} of namespace '{}'; \
             send less, or raise the limit in the namespace's configuration",
            self.name()
        ))
    }

    /// The record id: non-empty and within `max_id_bytes`.
    pub fn id(&self, field: &str, id: &str) -> Result<(), ProxyError> {
        if id.is_empty() {
            return Err(ProxyError::invalid(format!(
                "{field} must not be empty; every item belongs to a record id"
            )));
        }
        let max = self.0.config.limits.max_id_bytes;
        if id.len() > max {
            return Err(self.limit(field, id.len(), "max_id_bytes", max));
        }
        Ok(())
    }

    /// A key: non-empty and within `max_key_bytes`.
    pub fn key(&self, field: &str, key: &[u8]) -> Result<(), ProxyError> {
        if key.is_empty() {
            return Err(ProxyError::invalid(format!("{field} must not be empty")));
        }
        let max = self.0.config.limits.max_key_bytes;
        if key.len() > max {
            return Err(self.limit(field, key.len(), "max_key_bytes", max));
        }
        Ok(())
    }

    /// A count of items, keys or mutations: 1 to `max_items_per_call`.
    pub fn count(&self, field: &str, n: usize) -> Result<(), ProxyError> {
        if n == 0 {
            return Err(ProxyError::invalid(format!(
                "{field} must hold at least one entry"
            )));
        }
        let max = self.0.config.limits.max_items_per_call;
        if n > max {
            return Err(ProxyError::invalid(format!(
                "{field} holds {n} entries, over the limit max_items_per_call = {max} of \
                 namespace '{}'; split the call",
                self.name()
            )));
        }
        Ok(())
    }

    /// Whether the backend has `cap`; FAILED_PRECONDITION naming it if not.
    pub fn capability(&self, cap: Capability, needed_for: &str) -> Result<(), ProxyError> {
        if self.0.capabilities.has(cap) {
            return Ok(());
        }
        Err(ProxyError::FailedPrecondition(format!(
            "{needed_for} needs the '{cap}' capability, which backend '{}' of namespace '{}' \
             does not have; use a namespace whose backend declares it",
            self.0.backend.kind(),
            self.name()
        )))
    }

    /// One item of a Put or Mutate.
    pub fn put_item(&self, field: &str, item: pb::PutItem) -> Result<PutItem, ProxyError> {
        self.key(&format!("{field}.key"), &item.key)?;
        let max = self.0.config.limits.max_value_bytes;
        if item.value.len() > max {
            return Err(self.limit(
                &format!("{field}.value (key {})", display_key(&item.key)),
                item.value.len(),
                "max_value_bytes",
                max,
            ));
        }
        if let Some(schema) = &self.0.config.compiled_schema {
            schema.validate(&item.value).map_err(|e| {
                ProxyError::invalid(format!(
                    "{field}.value (key {}): {e}; nothing was written",
                    display_key(&item.key)
                ))
            })?;
        }
        let ttl = match item.ttl {
            None => None,
            Some(d) => {
                let ttl = crate::duration::non_negative(&format!("{field}.ttl"), &d)?;
                if ttl.is_zero() {
                    return Err(ProxyError::invalid(format!(
                        "{field}.ttl must be positive; leave it unset for an item that never \
                         expires"
                    )));
                }
                self.capability(Capability::Ttl, &format!("{field}.ttl"))?;
                if ttl > MAX_TTL {
                    return Err(ProxyError::invalid(format!(
                        "{field}.ttl is over the maximum of 100 years; leave it unset for an \
                         item that never expires"
                    )));
                }
                Some(ttl)
            }
        };
        if item.expected_version.is_some() {
            self.capability(
                Capability::ConditionalWrite,
                &format!("{field}.expected_version"),
            )?;
        }
        Ok(PutItem {
            key: item.key,
            value: item.value,
            ttl,
            expected_version: item.expected_version,
        })
    }

    /// A Get or Delete selection: key counts and sizes, range order.
    pub fn selection(&self, field: &str, sel: &Selection) -> Result<(), ProxyError> {
        match sel {
            Selection::All => Ok(()),
            Selection::Keys(keys) => {
                self.count(&format!("{field}.keys"), keys.len())?;
                for (i, key) in keys.iter().enumerate() {
                    self.key(&format!("{field}.keys[{i}]"), key)?;
                }
                no_repeats(
                    "key",
                    keys.iter()
                        .enumerate()
                        .map(|(i, key)| (format!("{field}.keys[{i}]"), key.as_slice())),
                )
            }
            Selection::Range { start, end } => {
                if let Some(end) = end
                    && end <= start
                {
                    return Err(ProxyError::invalid(format!(
                        "{field}.range.end must be greater than start, or empty for no upper bound"
                    )));
                }
                Ok(())
            }
            Selection::Prefix(p) if p.is_empty() => Err(ProxyError::invalid(format!(
                "{field}.prefix must not be empty; leave the selection unset to select every key"
            ))),
            Selection::Prefix(_) => Ok(()),
        }
    }

    /// The page budget: 0 means the namespace default.
    pub fn page_size(&self, requested: u32) -> Result<usize, ProxyError> {
        let limits = &self.0.config.limits;
        match requested as usize {
            0 => Ok(limits.default_page_size_bytes),
            n if n > limits.max_page_size_bytes => Err(ProxyError::invalid(format!(
                "page_size_bytes is {n}, over the limit max_page_size_bytes = {} of namespace \
                 '{}'; ask for a smaller page",
                limits.max_page_size_bytes,
                self.name()
            ))),
            n => Ok(n),
        }
    }

    /// An idempotency token: empty means none.
    pub fn token(&self, token: String) -> Result<Option<String>, ProxyError> {
        if token.is_empty() {
            return Ok(None);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ProxyError::invalid(format!(
                "idempotency_token is {} bytes; at most {MAX_TOKEN_BYTES} are allowed",
                token.len()
            )));
        }
        self.capability(Capability::Idempotency, "idempotency_token")?;
        Ok(Some(token))
    }
}
