//! KeyValue's request fingerprints (for idempotency tokens and page
//! tokens) and the stored outcomes of idempotent writes.

use crate::idempotency::{Fingerprint, IdempotencyKey};
use crate::keyvalue::{Mutation, MutationOutcome, PutItem, Selection};

impl IdempotencyKey {
    /// The key of a Put of `items` under `id`.
    pub fn for_put(token: String, id: &str, items: &[PutItem]) -> Self {
        let mut fp = Fingerprint::new("put");
        fp.str(id);
        fp.put_items(items);
        IdempotencyKey {
            token,
            fingerprint: fp.finish(),
        }
    }

    /// The key of a Mutate of `mutations`.
    pub fn for_mutate(token: String, mutations: &[Mutation]) -> Self {
        let mut fp = Fingerprint::new("mutate");
        for m in mutations {
            match m {
                Mutation::Put { id, item } => {
                    fp.str("p");
                    fp.str(id);
                    fp.put_items(std::slice::from_ref(item));
                }
                Mutation::Delete { id, selection } => {
                    fp.str("d");
                    fp.str(id);
                    fp.selection(selection);
                }
            }
        }
        IdempotencyKey {
            token,
            fingerprint: fp.finish(),
        }
    }
}

/// KeyValue's fields, added to any [`Fingerprint`].
impl Fingerprint {
    /// Adds a Put's items.
    pub fn put_items(&mut self, items: &[PutItem]) {
        self.u64(items.len() as u64);
        for item in items {
            self.bytes(&item.key);
            self.bytes(&item.value);
            self.u64(item.ttl.map_or(u64::MAX, |t| t.as_millis() as u64));
            self.u64(item.expected_version.map_or(u64::MAX, |v| v));
        }
    }

    /// Adds a key selection.
    pub fn selection(&mut self, selection: &Selection) {
        match selection {
            Selection::All => self.str("all"),
            Selection::Keys(keys) => {
                self.str("keys");
                self.u64(keys.len() as u64);
                for k in keys {
                    self.bytes(k);
                }
            }
            Selection::Range { start, end } => {
                self.str("range");
                self.bytes(start);
                match end {
                    Some(end) => self.bytes(end),
                    None => self.str("unbounded"),
                }
            }
            Selection::Prefix(prefix) => {
                self.str("prefix");
                self.bytes(prefix);
            }
        }
    }
}

/// Encodes outcomes for storage: `v12,d3,...` (v = version, d = deleted).
pub fn encode_outcomes(outcomes: &[MutationOutcome]) -> String {
    outcomes
        .iter()
        .map(|o| match o {
            MutationOutcome::Version(v) => format!("v{v}"),
            MutationOutcome::Deleted(n) => format!("d{n}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Decodes what [`encode_outcomes`] wrote; `None` if it is corrupt.
pub fn decode_outcomes(s: &str) -> Option<Vec<MutationOutcome>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|part| {
            let (tag, n) = part.split_at_checked(1)?;
            let n: u64 = n.parse().ok()?;
            match tag {
                "v" => Some(MutationOutcome::Version(n)),
                "d" => Some(MutationOutcome::Deleted(n)),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, value: &str) -> PutItem {
        PutItem::new(key.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    #[test]
    fn same_request_same_fingerprint() {
        let a = IdempotencyKey::for_put("t".into(), "id", &[item("k", "v")]);
        let b = IdempotencyKey::for_put("t".into(), "id", &[item("k", "v")]);
        assert_eq!(a, b);
    }

    #[test]
    fn different_request_different_fingerprint() {
        let a = IdempotencyKey::for_put("t".into(), "id", &[item("k", "v")]);
        let b = IdempotencyKey::for_put("t".into(), "id", &[item("k", "w")]);
        let c = IdempotencyKey::for_put("t".into(), "id", &[item("kv", "")]);
        assert_ne!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
    }

    #[test]
    fn outcomes_roundtrip() {
        let outcomes = vec![MutationOutcome::Version(7), MutationOutcome::Deleted(0)];
        assert_eq!(decode_outcomes(&encode_outcomes(&outcomes)), Some(outcomes));
        assert_eq!(decode_outcomes(""), Some(vec![]));
        assert_eq!(decode_outcomes("x1"), None);
    }
}
