//! KeyValue's page cursor and the request fingerprint its tokens are
//! bound to, framed by [`crate::paging`].

use crate::error::BackendError;
use crate::idempotency::Fingerprint;
use crate::keyvalue::{Page, Selection};
use crate::paging::{self, TokenReader, TokenWriter, invalid};

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
        let mut w = TokenWriter(Vec::with_capacity(
            16 + self.after_id.len() + self.after_key.len(),
        ));
        w.u64(self.snapshot);
        w.chunk(self.after_id.as_bytes());
        w.chunk(&self.after_key);
        paging::encode_token(request, &w.0)
    }

    /// Decodes a token made by [`Cursor::encode`] for the same `request`.
    pub fn decode(token: &str, request: u64) -> Result<Cursor, BackendError> {
        let body = paging::decode_token(token, request, 8 + 4 + 4)?;
        let mut r = TokenReader::new(&body);
        let snapshot = r.u64().ok_or_else(|| invalid("it is truncated"))?;
        let after_id = r.chunk().ok_or_else(|| invalid("it is truncated"))?;
        let after_id =
            String::from_utf8(after_id.to_vec()).map_err(|_| invalid("it holds an invalid id"))?;
        let after_key = r
            .chunk()
            .ok_or_else(|| invalid("it is truncated"))?
            .to_vec();
        if !r.is_done() {
            return Err(invalid("it has trailing bytes"));
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

/// Fills a page from `entries`; see [`paging::fill_page`].
pub fn fill_page<T, E>(
    entries: impl IntoIterator<Item = Result<T, E>>,
    budget: usize,
    size: impl Fn(&T) -> usize,
    cursor_of: impl Fn(&T) -> Cursor,
) -> Result<Page<T>, E> {
    let (items, next) = paging::fill_page(entries, budget, size, cursor_of)?;
    Ok(Page { items, next })
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
        assert!(Cursor::decode(&token, 8).is_err());
    }

    #[test]
    fn the_token_format_is_unchanged() {
        // Tokens issued before paging was split from KeyValue still decode.
        let c = Cursor {
            after_id: "a".into(),
            after_key: vec![9],
            snapshot: 3,
        };
        assert_eq!(
            c.encode(1),
            "0101000000000000000300000000000000010000006101000000091da4780b"
        );
    }
}
