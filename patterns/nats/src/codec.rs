//! Message attributes and ordering keys as NATS headers.
//!
//! NATS header names are ASCII tokens and values one line of text, while
//! Prism attributes are any UTF-8; so an attribute `k = v` travels as the
//! header `Prism-Attr-<pct(k)>: <pct(v)>`, where `pct` keeps ASCII letters,
//! digits and `-_.~` (and, in values, every printable ASCII character but
//! `%`) and writes other bytes as `%HH`. The ordering key travels as
//! `Prism-Ordering-Key: <pct(key)>`. A plain NATS client sees readable
//! headers for ordinary names and values.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use pattern_core::BackendError;

/// Header prefix of an attribute.
pub const ATTR_PREFIX: &str = "Prism-Attr-";
/// Header holding the ordering key.
pub const ORDERING_KEY: &str = "Prism-Ordering-Key";

fn pct(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn value_byte(b: u8) -> bool {
    (b.is_ascii_graphic() || b == b' ') && b != b'%'
}

fn unpct(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The headers carrying `attributes` and `ordering_key`.
pub fn to_headers(
    ordering_key: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<HeaderMap, BackendError> {
    let mut headers = HeaderMap::new();
    if !ordering_key.is_empty() {
        headers.insert(ORDERING_KEY, pct(ordering_key, value_byte).as_str());
    }
    for (k, v) in attributes {
        if k.is_empty() {
            return Err(BackendError::InvalidArgument(
                "attribute names must not be empty".into(),
            ));
        }
        let name = format!("{ATTR_PREFIX}{}", pct(k, name_byte));
        let name: async_nats::header::HeaderName = name.parse().map_err(|_| {
            BackendError::InvalidArgument(format!("attribute name {k:?} cannot be sent"))
        })?;
        headers.insert(name, pct(v, value_byte).as_str());
    }
    Ok(headers)
}

/// The ordering key and attributes read back from `headers`; headers not
/// written by Prism are ignored, so are ones that do not decode.
pub fn from_headers(headers: Option<&HeaderMap>) -> (String, BTreeMap<String, String>) {
    let mut attributes = BTreeMap::new();
    let mut ordering_key = String::new();
    let Some(headers) = headers else {
        return (ordering_key, attributes);
    };
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        let Some(value) = values.first().map(|v| v.as_str()) else {
            continue;
        };
        if name == ORDERING_KEY {
            ordering_key = unpct(value).unwrap_or_default();
        } else if let Some(k) = name.strip_prefix(ATTR_PREFIX)
            && let (Some(k), Some(v)) = (unpct(k), unpct(value))
        {
            attributes.insert(k, v);
        }
    }
    (ordering_key, attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let attrs = BTreeMap::from([
            ("n".to_string(), "1".to_string()),
            ("ünï".to_string(), "cödé ✓\r\nx: 100%".to_string()),
            ("Mixed-Case".to_string(), "".to_string()),
        ]);
        let headers = to_headers("key ✓", &attrs).unwrap();
        let (key, back) = from_headers(Some(&headers));
        assert_eq!(key, "key ✓");
        assert_eq!(back, attrs);
    }
}
