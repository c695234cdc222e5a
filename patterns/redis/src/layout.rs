//! Where a namespace's data lives in Redis: key names and the encoding of a
//! stored item. The Lua scripts build the same names (see `lua/prelude.lua`);
//! `tests/layout.rs` checks both against the documented layout
//! (ADR-006, `docs-cms/adr/006-redis-data-model.md`).
//!
//! Every key of a namespace starts with `<prefix>:{<namespace>}:`, so all of
//! them share one Redis Cluster hash tag (one slot) and one script may touch
//! any of them:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<base>version` | string | the namespace's version counter (INCR) |
//! | `<base>ids` | sorted set | every id with items; all scores 0, members the ids |
//! | `<base>keys:<id>` | sorted set | the keys of one id; all scores 0, members the keys |
//! | `<base>item:<member>` | string | one item: `<version>:<expires_at_ms>:<value>` |
//! | `<base>expiry` | sorted set | TTL items: score `expires_at_ms`, member `<member>` |
//! | `<base>idem:<token>` | string | an idempotency record: `<fingerprint>\|<outcomes>` |
//!
//! where `<member>` is `<byte length of id>:<id>:<key>`, which makes the
//! (id, key) pair unambiguous whatever bytes either holds.

/// The largest expiry stored, 9999-12-31T23:59:59.999Z in ms: far inside
/// both Redis's and Lua's (double) exact integer range.
pub const MAX_EXPIRES_AT_MS: u64 = 253_402_300_799_999;

/// The key names of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    base: Vec<u8>,
}

impl Layout {
    /// The layout of `namespace` under `prefix`. Neither may contain `{` or
    /// `}` (checked by the options and by `open`).
    pub fn new(prefix: &str, namespace: &str) -> Self {
        Layout {
            base: format!("{prefix}:{{{namespace}}}:").into_bytes(),
        }
    }

    /// `<prefix>:{<namespace>}:`, the start of every key of the namespace.
    pub fn base(&self) -> &[u8] {
        &self.base
    }

    fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let len = self.base.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&self.base);
        for part in parts {
            out.extend_from_slice(part);
        }
        out
    }

    /// The version counter.
    pub fn version_key(&self) -> Vec<u8> {
        self.key(&[b"version"])
    }

    /// The sorted set of ids.
    pub fn ids_key(&self) -> Vec<u8> {
        self.key(&[b"ids"])
    }

    /// The sorted set of TTL items by expiry.
    pub fn expiry_key(&self) -> Vec<u8> {
        self.key(&[b"expiry"])
    }

    /// The sorted set of the keys of `id`.
    pub fn index_key(&self, id: &str) -> Vec<u8> {
        self.key(&[b"keys:", id.as_bytes()])
    }

    /// The string holding item `key` of `id`.
    pub fn item_key(&self, id: &str, key: &[u8]) -> Vec<u8> {
        self.key(&[b"item:", &member(id, key)])
    }

    /// The idempotency record of `token`.
    pub fn idempotency_key(&self, token: &str) -> Vec<u8> {
        self.key(&[b"idem:", token.as_bytes()])
    }
}

/// `<byte length of id>:<id>:<key>`: names an item within its namespace.
pub fn member(id: &str, key: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:{id}:", id.len()).into_bytes();
    out.extend_from_slice(key);
    out
}

/// Splits a [`member`] back into id and key.
pub fn parse_member(member: &[u8]) -> Option<(&str, &[u8])> {
    let colon = member.iter().position(|b| *b == b':')?;
    let len: usize = std::str::from_utf8(&member[..colon]).ok()?.parse().ok()?;
    let id_end = (colon + 1).checked_add(len)?;
    let id = std::str::from_utf8(member.get(colon + 1..id_end)?).ok()?;
    if member.get(id_end) != Some(&b':') {
        return None;
    }
    Some((id, &member[id_end + 1..]))
}

/// A stored item: `<version>:<expires_at_ms, 0 = never>:<value>`. The
/// scripts write it; this mirrors them for tests and documentation.
pub fn encode_item(version: u64, expires_at_ms: Option<u64>, value: &[u8]) -> Vec<u8> {
    let mut out = format!("{version}:{}:", expires_at_ms.unwrap_or(0)).into_bytes();
    out.extend_from_slice(value);
    out
}

/// The header of a stored item: version, expiry, and where the value starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemHeader {
    pub version: u64,
    pub expires_at_ms: Option<u64>,
    pub value_start: usize,
}

/// Reads the header of what [`encode_item`] wrote; `None` if it is not an
/// item.
pub fn decode_item(raw: &[u8]) -> Option<ItemHeader> {
    let number = |bytes: &[u8]| -> Option<u64> {
        if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(bytes).ok()?.parse().ok()
    };
    let first = raw.iter().position(|b| *b == b':')?;
    let second = first + 1 + raw[first + 1..].iter().position(|b| *b == b':')?;
    let version = number(&raw[..first])?;
    let expires = number(&raw[first + 1..second])?;
    Some(ItemHeader {
        version,
        expires_at_ms: (expires != 0).then_some(expires),
        value_start: second + 1,
    })
}

/// The ZRANGEBYLEX lower bound of a read starting at `start`, or strictly
/// after `after` when that is later.
pub fn lex_lower(start: &[u8], after: Option<&[u8]>) -> Vec<u8> {
    match after {
        Some(after) if after >= start => lex(b'(', after),
        _ => lex(b'[', start),
    }
}

/// The ZRANGEBYLEX upper bound of a read ending before `end` (`+`:
/// unbounded).
pub fn lex_upper(end: Option<&[u8]>) -> Vec<u8> {
    match end {
        Some(end) => lex(b'(', end),
        None => b"+".to_vec(),
    }
}

fn lex(bracket: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(bracket);
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_share_the_namespace_hash_tag() {
        let l = Layout::new("prism", "orders");
        assert_eq!(l.base(), b"prism:{orders}:");
        assert_eq!(l.version_key(), b"prism:{orders}:version");
        assert_eq!(l.ids_key(), b"prism:{orders}:ids");
        assert_eq!(l.expiry_key(), b"prism:{orders}:expiry");
        assert_eq!(l.index_key("user:1"), b"prism:{orders}:keys:user:1");
        assert_eq!(
            l.item_key("user:1", b"name"),
            b"prism:{orders}:item:6:user:1:name"
        );
        assert_eq!(l.idempotency_key("t-1"), b"prism:{orders}:idem:t-1");
    }

    #[test]
    fn members_are_unambiguous() {
        // Ids and keys holding the separator do not collide.
        let a = member("a:1", b"b");
        let b = member("a", b"1:b");
        assert_ne!(a, b);
        assert_eq!(parse_member(&a), Some(("a:1", &b"b"[..])));
        assert_eq!(parse_member(&b), Some(("a", &b"1:b"[..])));
        let unicode = member("пользователь-🔑", &[0, 0xff, b':']);
        assert_eq!(
            parse_member(&unicode),
            Some(("пользователь-🔑", &[0, 0xff, b':'][..]))
        );
        assert_eq!(parse_member(b"x:ab"), None);
        assert_eq!(parse_member(b"5:ab:c"), None);
        assert_eq!(parse_member(b"1:ab"), None, "no separator after the id");
    }

    #[test]
    fn items_roundtrip() {
        let raw = encode_item(12, None, b"ada");
        assert_eq!(raw, b"12:0:ada");
        let h = decode_item(&raw).unwrap();
        assert_eq!((h.version, h.expires_at_ms), (12, None));
        assert_eq!(&raw[h.value_start..], b"ada");
        // Values may hold the separator, or be empty.
        let raw = encode_item(7, Some(1_700_000_000_000), b"a:b:");
        let h = decode_item(&raw).unwrap();
        assert_eq!(h.expires_at_ms, Some(1_700_000_000_000));
        assert_eq!(&raw[h.value_start..], b"a:b:");
        let raw = encode_item(1, None, b"");
        assert_eq!(&raw[decode_item(&raw).unwrap().value_start..], b"");
        for bad in [&b""[..], b"12", b"12:0", b"x:0:v", b":0:v", b"1:-1:v"] {
            assert_eq!(decode_item(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lex_bounds() {
        assert_eq!(lex_lower(b"", None), b"[");
        assert_eq!(lex_lower(b"b", Some(b"a")), b"[b", "cursor before start");
        assert_eq!(lex_lower(b"b", Some(b"b")), b"(b");
        assert_eq!(lex_lower(b"b", Some(&[b'c', 0])), [b'(', b'c', 0]);
        assert_eq!(lex_upper(None), b"+");
        assert_eq!(lex_upper(Some(b"z")), b"(z");
    }
}
