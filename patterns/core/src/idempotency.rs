//! Idempotency tokens and request fingerprints: a retried write carrying
//! the same token is applied once. Backends store, per token, a
//! fingerprint of the request and its outcome; a retry with the same
//! fingerprint replays the outcome, a reuse with a different fingerprint
//! is refused. Nothing here knows a DAL: each DAL fingerprints its own
//! requests (KeyValue's in [`crate::keyvalue`]).

use std::time::Duration;

/// How long a backend remembers an idempotency token.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// A token with the fingerprint of the request that carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The client's token.
    pub token: String,
    /// [`Fingerprint`] of the request.
    pub fingerprint: u64,
}

/// A stable 64-bit FNV-1a hash over length-prefixed fields. Stable across
/// processes and versions, so stored fingerprints stay comparable.
#[derive(Debug, Clone)]
pub struct Fingerprint(u64);

impl Fingerprint {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// A fingerprint seeded with a domain name, so equal fields under
    /// different domains hash differently.
    pub fn new(domain: &str) -> Self {
        let mut fp = Fingerprint(Self::OFFSET);
        fp.str(domain);
        fp
    }

    fn raw(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// Adds a byte string (length-prefixed).
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.raw(&(bytes.len() as u64).to_le_bytes());
        self.raw(bytes);
    }

    /// Adds a string (length-prefixed).
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// Adds a number.
    pub fn u64(&mut self, n: u64) {
        self.raw(&n.to_le_bytes());
    }

    /// The hash.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed_and_domains_apart() {
        let hash = |domain: &str, parts: &[&str]| {
            let mut fp = Fingerprint::new(domain);
            for p in parts {
                fp.str(p);
            }
            fp.finish()
        };
        assert_eq!(hash("d", &["ab", "c"]), hash("d", &["ab", "c"]));
        assert_ne!(hash("d", &["ab", "c"]), hash("d", &["a", "bc"]));
        assert_ne!(hash("d", &["x"]), hash("e", &["x"]));
    }
}
