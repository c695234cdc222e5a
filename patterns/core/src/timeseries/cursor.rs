//! TimeSeries Read's page cursor: where the next page starts, as the
//! (event time, event id) of the last event returned. Its own type and
//! token body, framed by [`crate::paging`]; not a KeyValue cursor.

use crate::error::BackendError;
use crate::idempotency::Fingerprint;
use crate::paging::{self, TokenReader, TokenWriter, invalid};

/// Where the next page of a Read starts: strictly after this event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadCursor {
    /// The last event's time, in microseconds since the Unix epoch.
    pub after_time_us: i64,
    /// The last event's id.
    pub after_event_id: String,
}

/// A tag that keeps a Read token from decoding as any other DAL's body.
const KIND: &[u8] = b"ts.read";

impl ReadCursor {
    /// Encodes the cursor as an opaque token bound to `request` (see
    /// [`read_fingerprint`]).
    pub fn encode(&self, request: u64) -> String {
        let mut w = TokenWriter::default();
        w.chunk(KIND);
        w.u64(self.after_time_us as u64);
        w.chunk(self.after_event_id.as_bytes());
        paging::encode_token(request, &w.0)
    }

    /// Decodes a token made by [`ReadCursor::encode`] for the same
    /// `request`.
    pub fn decode(token: &str, request: u64) -> Result<ReadCursor, BackendError> {
        let body = paging::decode_token(token, request, 4 + KIND.len() + 8 + 4)?;
        let mut r = TokenReader::new(&body);
        if r.chunk() != Some(KIND) {
            return Err(invalid("it was not issued by a TimeSeries Read"));
        }
        let after_time_us = r.u64().ok_or_else(|| invalid("it is truncated"))? as i64;
        let id = r.chunk().ok_or_else(|| invalid("it is truncated"))?;
        let after_event_id =
            String::from_utf8(id.to_vec()).map_err(|_| invalid("it holds an invalid event id"))?;
        if !r.is_done() {
            return Err(invalid("it has trailing bytes"));
        }
        Ok(ReadCursor {
            after_time_us,
            after_event_id,
        })
    }
}

/// The fingerprint a Read page token is bound to: the namespace and a
/// description of the query (series, range, tags, order) that does not
/// change between pages.
pub fn read_fingerprint(namespace: &str, query: &str) -> u64 {
    let mut fp = Fingerprint::new("timeseries.read.page");
    fp.str(namespace);
    fp.str(query);
    fp.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_cursors_roundtrip_and_bind_to_their_query() {
        let c = ReadCursor {
            after_time_us: -5,
            after_event_id: "e-1".into(),
        };
        let request = read_fingerprint("ns", "series-a");
        assert_eq!(ReadCursor::decode(&c.encode(request), request).unwrap(), c);
        let other = read_fingerprint("ns", "series-b");
        assert!(ReadCursor::decode(&c.encode(request), other).is_err());
    }

    use crate::keyvalue::{self, Cursor, Selection};

    fn refused<T: std::fmt::Debug>(decoded: Result<T, BackendError>) -> String {
        match decoded {
            Err(BackendError::InvalidPageToken(why)) => why,
            other => panic!("expected InvalidPageToken, got {other:?}"),
        }
    }

    #[test]
    fn a_keyvalue_token_is_not_a_read_token() {
        // As the proxy binds them: the fingerprints differ.
        let scan = keyvalue::request_fingerprint("ns", "Scan", "", &Selection::All);
        let read = read_fingerprint("ns", "series-a");
        let cursor = Cursor {
            after_id: "series-a".into(),
            after_key: 5i64.to_be_bytes().to_vec(),
            snapshot: 0,
        };
        refused(ReadCursor::decode(&cursor.encode(scan), read));
        // Bound to the same request, the body still tells them apart.
        for snapshot in [0, 7, u64::MAX] {
            let kv = Cursor {
                snapshot,
                ..cursor.clone()
            };
            let why = refused(ReadCursor::decode(&kv.encode(read), read));
            assert!(why.contains("not issued by a TimeSeries Read"), "{why}");
        }
        refused(ReadCursor::decode(&Cursor::default().encode(read), read));
    }

    #[test]
    fn a_read_token_is_not_a_keyvalue_token() {
        let scan = keyvalue::request_fingerprint("ns", "Scan", "", &Selection::All);
        let read = read_fingerprint("ns", "series-a");
        for (time, id) in [(0, ""), (-5, "e-1"), (i64::MAX, "an-event-id")] {
            let c = ReadCursor {
                after_time_us: time,
                after_event_id: id.into(),
            };
            refused(Cursor::decode(&c.encode(read), scan));
            // Bound to the same request, the body does not decode either.
            refused(Cursor::decode(&c.encode(scan), scan));
        }
    }
}
