//! Paging by byte budget, with opaque page tokens; nothing here knows a
//! DAL.
//!
//! A page token is a DAL's cursor bytes, framed: a format version, the
//! fingerprint of the request it continues, the body, and a checksum, in
//! hex. So a corrupted token, or one reused on another request, is refused
//! with a clear error instead of returning the wrong data. Each DAL owns
//! its cursor type and its body (KeyValue's
//! [`crate::keyvalue::Cursor`], TimeSeries'
//! [`crate::timeseries::ReadCursor`]).

use crate::error::BackendError;
use crate::idempotency::Fingerprint;

const TOKEN_VERSION: u8 = 1;

/// The error of a token that is not what it claims to be.
pub fn invalid(why: &str) -> BackendError {
    BackendError::InvalidPageToken(why.to_string())
}

/// Frames `body` as a token bound to `request`, a fingerprint of the
/// request it continues.
pub fn encode_token(request: u64, body: &[u8]) -> String {
    let mut buf = Vec::with_capacity(1 + 8 + body.len() + 4);
    buf.push(TOKEN_VERSION);
    buf.extend_from_slice(&request.to_le_bytes());
    buf.extend_from_slice(body);
    let sum = checksum(&buf);
    buf.extend_from_slice(&sum.to_le_bytes());
    hex_encode(&buf)
}

/// The body of a token made by [`encode_token`] for the same `request`;
/// the body must be at least `min_body` bytes long.
pub fn decode_token(token: &str, request: u64, min_body: usize) -> Result<Vec<u8>, BackendError> {
    let buf = hex_decode(token).ok_or_else(|| invalid("it is not a token this server issued"))?;
    if buf.len() < 1 + 8 + min_body + 4 {
        return Err(invalid("it is truncated"));
    }
    let (framed, sum) = buf.split_at(buf.len() - 4);
    if checksum(framed).to_le_bytes() != sum {
        return Err(invalid("its checksum does not match (was it modified?)"));
    }
    let mut r = TokenReader::new(framed);
    if r.u8() != Some(TOKEN_VERSION) {
        return Err(invalid("it was issued by an incompatible server version"));
    }
    if r.u64() != Some(request) {
        return Err(invalid(
            "it belongs to a different request (namespace, id or selection)",
        ));
    }
    Ok(framed[r.pos..].to_vec())
}

/// Writes a token body: numbers little-endian, byte strings
/// length-prefixed.
#[derive(Debug, Default)]
pub struct TokenWriter(pub Vec<u8>);

impl TokenWriter {
    /// Adds a number.
    pub fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    /// Adds a byte string.
    pub fn chunk(&mut self, bytes: &[u8]) {
        self.0
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.0.extend_from_slice(bytes);
    }
}

/// Fills a page from `entries` (in order, each possibly an error) up to
/// `budget` bytes as measured by `size`. Stops at the first entry that does
/// not fit and returns the cursor after the last entry taken (`cursor_of`);
/// returns no cursor when `entries` ran out. Reads at most one entry past
/// the page.
pub fn fill_page<T, C, E>(
    entries: impl IntoIterator<Item = Result<T, E>>,
    budget: usize,
    size: impl Fn(&T) -> usize,
    cursor_of: impl Fn(&T) -> C,
) -> Result<(Vec<T>, Option<C>), E> {
    let mut fill = PageFill::new(budget);
    let mut items = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !fill.admit(size(&entry)) {
            let next = items.last().map(&cursor_of);
            return Ok((items, next));
        }
        items.push(entry);
    }
    Ok((items, None))
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

/// Reads a token body back.
pub struct TokenReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> TokenReader<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        TokenReader { buf, pos: 0 }
    }

    /// Whether every byte was read.
    pub fn is_done(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    /// A byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    /// A number.
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    /// A byte string.
    pub fn chunk(&mut self) -> Option<&'a [u8]> {
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
    fn bodies_roundtrip_and_bind_to_their_request() {
        let mut w = TokenWriter::default();
        w.u64(42);
        w.chunk(b"abc");
        let token = encode_token(7, &w.0);
        let body = decode_token(&token, 7, 0).unwrap();
        let mut r = TokenReader::new(&body);
        assert_eq!((r.u64(), r.chunk()), (Some(42), Some(&b"abc"[..])));
        assert!(r.is_done());
        let err = decode_token(&token, 8, 0).unwrap_err();
        assert!(err.to_string().contains("different request"), "{err}");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let token = encode_token(7, &[0; 16]);
        for bad in ["zz", "abc", "", &token[..token.len() - 2]] {
            let err = decode_token(bad, 7, 16).unwrap_err();
            assert!(
                matches!(err, BackendError::InvalidPageToken(_)),
                "{bad}: {err}"
            );
        }
        let mut flipped = token.clone().into_bytes();
        flipped[4] = if flipped[4] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(decode_token(&flipped, 7, 16).is_err());
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
