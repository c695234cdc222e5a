//! Page tokens (`page_token` of KeyValue Get/Scan and TimeSeries Read): a
//! client sends back the `next_page_token` it was given, or anything else.
//!
//! The bytes are decoded, as a KeyValue cursor and as a TimeSeries Read
//! cursor, three ways: as the token text; as a token body with a valid
//! checksum added (the checksum is not a secret: a client can compute it,
//! so the decoding behind it must hold on its own); and as a cursor to
//! encode and decode again. Checks: no panic; a token is refused with
//! `InvalidPageToken` or decodes to a cursor that encodes back to the same
//! token; a token never decodes for another request; every cursor
//! survives a round trip, and its token does not decode as the other DAL's
//! cursor even when bound to the same request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pattern_core::error::BackendError;
use pattern_core::keyvalue::{Cursor, Selection, request_fingerprint};
use pattern_core::timeseries::{ReadCursor, read_fingerprint};
use prism_fuzz::{hex, page_token_checksum};

/// The KeyValue request the tokens continue: a Scan of `user-1` in `orders`.
fn scan() -> u64 {
    request_fingerprint("orders", "keyvalue.Scan", "user-1", &Selection::All)
}

/// The TimeSeries request the tokens continue: a Read of `series-1`.
fn read() -> u64 {
    read_fingerprint("orders", "series-1")
}

/// A page cursor of one DAL, as the fuzz target sees it.
trait PageCursor: Sized {
    fn decode(token: &str, request: u64) -> Result<Self, BackendError>;
    fn encode(&self, request: u64) -> String;
}

impl PageCursor for Cursor {
    fn decode(token: &str, request: u64) -> Result<Self, BackendError> {
        Cursor::decode(token, request)
    }
    fn encode(&self, request: u64) -> String {
        Cursor::encode(self, request)
    }
}

impl PageCursor for ReadCursor {
    fn decode(token: &str, request: u64) -> Result<Self, BackendError> {
        ReadCursor::decode(token, request)
    }
    fn encode(&self, request: u64) -> String {
        ReadCursor::encode(self, request)
    }
}

/// Checks `token` as a `C` bound to `request`: refused, or decoded to a
/// cursor that encodes back to it and refused for any other request.
fn check<C: PageCursor>(token: &str, request: u64) {
    match C::decode(token, request) {
        Ok(cursor) => {
            assert_eq!(
                cursor.encode(request),
                token.to_ascii_lowercase(),
                "a token that decodes is the encoding of its cursor"
            );
            assert!(
                C::decode(token, request ^ 1).is_err(),
                "a token decodes for another request"
            );
        }
        Err(BackendError::InvalidPageToken(_)) => {}
        Err(other) => panic!("a bad token is refused as another error: {other:?}"),
    }
}

/// Checks `token` as both DALs' cursors, bound to either DAL's request.
fn check_both(token: &str) {
    for request in [scan(), read()] {
        check::<Cursor>(token, request);
        check::<ReadCursor>(token, request);
    }
}

/// `data` framed as a token body bound to `request` with a valid checksum.
fn forged(request: u64, data: &[u8]) -> String {
    // Version 1, the request, then the fuzzer's bytes.
    let mut body = vec![1u8];
    body.extend_from_slice(&request.to_le_bytes());
    body.extend_from_slice(data);
    let sum = page_token_checksum(&body);
    body.extend_from_slice(&sum.to_le_bytes());
    hex(&body)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        check_both(token);
    }
    check_both(&forged(scan(), data));
    check_both(&forged(read(), data));
    // Cursors made of the bytes.
    let (head, key) = data.split_at(data.len().min(8));
    let mut number = [0u8; 8];
    number[..head.len()].copy_from_slice(head);
    let (id, key) = key.split_at(key.len() / 2);
    let cursor = Cursor {
        after_id: String::from_utf8_lossy(id).into_owned(),
        after_key: key.to_vec(),
        snapshot: u64::from_le_bytes(number),
    };
    let token = cursor.encode(scan());
    assert_eq!(
        Cursor::decode(&token, scan()).expect("a cursor round trips"),
        cursor
    );
    assert!(
        ReadCursor::decode(&token, scan()).is_err(),
        "a KeyValue token read as a Read one"
    );
    let cursor = ReadCursor {
        after_time_us: i64::from_le_bytes(number),
        after_event_id: String::from_utf8_lossy(key).into_owned(),
    };
    let token = cursor.encode(read());
    assert_eq!(
        ReadCursor::decode(&token, read()).expect("a Read cursor round trips"),
        cursor
    );
    assert!(
        Cursor::decode(&token, read()).is_err(),
        "a Read token read as a KeyValue one"
    );
});
