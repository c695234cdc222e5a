//! Page tokens (`page_token` of KeyValue Get/Scan and TimeSeries Read): a
//! client sends back the `next_page_token` it was given, or anything else.
//!
//! The bytes are decoded three ways: as the token text; as a token body
//! with a valid checksum added (the checksum is not a secret: a client can
//! compute it, so the decoding behind it must hold on its own); and as a
//! cursor to encode and decode again. Checks: no panic; a token is refused
//! with `InvalidPageToken` or decodes to a cursor that encodes back to the
//! same token; a token never decodes for another request; every cursor
//! survives a round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pattern_core::error::BackendError;
use pattern_core::keyvalue::Selection;
use pattern_core::paging::{Cursor, request_fingerprint};
use prism_fuzz::{hex, page_token_checksum};

/// The request the tokens continue: a Scan of `user-1` in `orders`.
fn request() -> u64 {
    request_fingerprint("orders", "keyvalue.Scan", "user-1", &Selection::All)
}

fn check(token: &str, request: u64) {
    match Cursor::decode(token, request) {
        Ok(cursor) => {
            assert_eq!(
                cursor.encode(request),
                token.to_ascii_lowercase(),
                "a token that decodes is the encoding of its cursor"
            );
            assert!(
                Cursor::decode(token, request ^ 1).is_err(),
                "a token decodes for another request"
            );
        }
        Err(BackendError::InvalidPageToken(_)) => {}
        Err(other) => panic!("a bad token is refused as another error: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let request = request();
    if let Ok(token) = std::str::from_utf8(data) {
        check(token, request);
    }
    // A forged body: version 1, this request, then the fuzzer's bytes.
    let mut body = vec![1u8];
    body.extend_from_slice(&request.to_le_bytes());
    body.extend_from_slice(data);
    let sum = page_token_checksum(&body);
    body.extend_from_slice(&sum.to_le_bytes());
    check(&hex(&body), request);
    // A cursor made of the bytes.
    let (head, key) = data.split_at(data.len().min(8));
    let mut snapshot = [0u8; 8];
    snapshot[..head.len()].copy_from_slice(head);
    let (id, key) = key.split_at(key.len() / 2);
    let cursor = Cursor {
        after_id: String::from_utf8_lossy(id).into_owned(),
        after_key: key.to_vec(),
        snapshot: u64::from_le_bytes(snapshot),
    };
    let token = cursor.encode(request);
    assert_eq!(
        Cursor::decode(&token, request).expect("a cursor round trips"),
        cursor
    );
});
