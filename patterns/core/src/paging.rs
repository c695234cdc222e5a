//! Paging by byte budget, with opaque page tokens.
//!
//! A backend returns a [`Cursor`] with a page that is not the last; the proxy
//! encodes it into the `next_page_token` string and decodes the token of the
//! next request back into a cursor. A token is bound to the request it came
//! from (by a fingerprint of namespace, id and selection), checksummed, and
//! versioned, so a corrupted token or one reused on another request is
//! refused with a clear error instead of returning the wrong data.

use crate::error::BackendError;
use crate::idempotency::Fingerprint;
use crate::keyvalue::{Page, Selection};

const TOKEN_VERSION: u8 = 1;

/// Where the next page starts: strictly after (`after_id`, `after_key`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// The last id returned (Scan); empty for Get.
    pub after_id: String,
    /// The last key returned.
    pub after_key: Vec<u8>,
    /// The snapshot version the first page read, for backends with
    /// snapshot reads; 0 otherwise.
    pub snapshot: u64,
}

impl Cursor {
    /// Encodes the cursor as an opaque token bound to `request`, a
    /// fingerprint of the request it continues.
    pub fn encode(&self, request: u64) -> String {
        let mut buf = Vec::with_capacity(32 + self.after_id.len() + self.after_key.len());
        buf.push(TOKEN_VERSION);
        buf.extend_from_slice(&request.to_le_bytes());
        buf.extend_from_slice(&self.snapshot.to_le_bytes());
        buf.extend_from_slice(&(self.after_id.len() as u32).to_le_bytes());
        buf.extend_from_slice(self.after_id.as_bytes());
        buf.extend_from_slice(&(self.after_key.len() as u32).to_le_bytes());
        buf.extend_from_slice(&self.after_key);
        let sum = checksum(&buf);
        buf.extend_from_slice(&sum.to_le_bytes());
        hex_encode(&buf)
    }

    /// Decodes a token made by [`Cursor::encode`] for the same `request`.
    pub fn decode(token: &str, request: u64) -> Result<Cursor, BackendError> {
        let bad = |why: &str| BackendError::InvalidPageToken(why.to_string());
        let buf = hex_decode(token).ok_or_else(|| bad("it is not a token this server issued"))?;
        if buf.len() < 1 + 8 + 8 + 4 + 4 + 4 {
            return Err(bad("it is truncated"));
        }
        let (body, sum) = buf.split_at(buf.len() - 4);
        if checksum(body).to_le_bytes() != sum {
            return Err(bad("its checksum does not match (was it modified?)"));
        }
        let mut r = Reader { buf: body, pos: 0 };
        if r.u8() != Some(TOKEN_VERSION) {
            return Err(bad("it was issued by an incompatible server version"));
        }
        if r.u64() != Some(request) {
            return Err(bad(
                "it belongs to a different request (namespace, id or selection)",
            ));
        }
        let snapshot = r.u64().ok_or_else(|| bad("it is truncated"))?;
        let after_id = r.chunk().ok_or_else(|| bad("it is truncated"))?;
        let after_id =
            String::from_utf8(after_id.to_vec()).map_err(|_| bad("it holds an invalid id"))?;
        let after_key = r.chunk().ok_or_else(|| bad("it is truncated"))?.to_vec();
        if r.pos != body.len() {
            return Err(bad("it has trailing bytes"));
        }
        Ok(Cursor {
            after_id,
            after_key,
            snapshot,
        })
    }
}

/// The fingerprint a page token is bound to: the request's namespace, RPC,
/// id and selection, but not the page size (which may change between pages).
pub fn request_fingerprint(namespace: &str, rpc: &str, id: &str, selection: &Selection) -> u64 {
    let mut fp = Fingerprint::new("page");
    fp.str(namespace);
    fp.str(rpc);
    fp.str(id);
    fp.selection(selection);
    fp.finish()
}

/// Fills a page from `entries` (in order, each possibly an error) up to
/// `budget` bytes as measured by `size`. Stops at the first entry that does
/// not fit and returns the cursor after the last entry taken (`cursor_of`);
/// returns no cursor when `entries` ran out. Reads at most one entry past
/// the page.
pub fn fill_page<T, E>(
    entries: impl IntoIterator<Item = Result<T, E>>,
    budget: usize,
    size: impl Fn(&T) -> usize,
    cursor_of: impl Fn(&T) -> Cursor,
) -> Result<Page<T>, E> {
    let mut fill = PageFill::new(budget);
    let mut items = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !fill.admit(size(&entry)) {
            let next = items.last().map(&cursor_of);
            return Ok(Page { items, next });
        }
        items.push(entry);
    }
    Ok(Page { items, next: None })
}

/// A page being filled up to a byte budget. The first item is always
/// accepted, so an item larger than the budget still makes progress.
#[derive(Debug)]
pub struct PageFill {
    budget: usize,
    used: usize,
    count: usize,
}

impl PageFill {
    /// A page with `budget` bytes (keys plus values).
    pub fn new(budget: usize) -> Self {
        PageFill {
            budget,
            used: 0,
            count: 0,
        }
    }

    /// Whether an item of `size` bytes fits; if so it is counted.
    pub fn admit(&mut self, size: usize) -> bool {
        if self.count > 0 && self.used.saturating_add(size) > self.budget {
            return false;
        }
        self.used = self.used.saturating_add(size);
        self.count += 1;
        true
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn chunk(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
        self.take(len as usize)
    }
}

fn checksum(bytes: &[u8]) -> u32 {
    let mut fp = Fingerprint::new("token");
    fp.bytes(bytes);
    let h = fp.finish();
    (h ^ (h >> 32)) as u32
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_roundtrips() {
        let c = Cursor {
            after_id: "user-1".into(),
            after_key: vec![0, 1, 255],
            snapshot: 42,
        };
        let token = c.encode(7);
        assert_eq!(Cursor::decode(&token, 7).unwrap(), c);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let token = Cursor::default().encode(7);
        for bad in ["zz", "abc", "", &token[..token.len() - 2]] {
            let err = Cursor::decode(bad, 7).unwrap_err();
            assert!(
                matches!(err, BackendError::InvalidPageToken(_)),
                "{bad}: {err}"
            );
        }
        let mut flipped = token.clone().into_bytes();
        flipped[4] = if flipped[4] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(Cursor::decode(&flipped, 7).is_err());
    }

    #[test]
    fn token_of_another_request_is_refused() {
        let token = Cursor::default().encode(7);
        let err = Cursor::decode(&token, 8).unwrap_err();
        assert!(err.to_string().contains("different request"), "{err}");
    }

    #[test]
    fn page_fill_admits_first_item_even_if_too_big() {
        let mut fill = PageFill::new(10);
        assert!(fill.admit(100));
        assert!(!fill.admit(1));
        let mut fill = PageFill::new(10);
        assert!(fill.admit(4));
        assert!(fill.admit(6));
        assert!(!fill.admit(1));
    }
}
