//! The codec of every generated Prism service and client: prost's
//! encoding, with a decoder whose error for a message that cannot be
//! decoded (invalid UTF-8 in a string field, a bad wire type, a truncated
//! field) quotes a bounded description, never the bytes, and carries the
//! [`MALFORMED_KEY`] marker in its metadata.
//!
//! The status code stays `INTERNAL`, the gRPC rule for a message that does
//! not parse: for a client that is right (the server sent a malformed
//! response). A server sees the marker on its own response and answers
//! `INVALID_ARGUMENT` instead, since there the caller sent a malformed
//! request (the proxy's `malformed` layer does that and writes the call's
//! audit record).

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::metadata::MetadataValue;
use tonic_prost::ProstEncoder;

/// Metadata key on the status of a message that could not be decoded.
pub const MALFORMED_KEY: &str = "prism-malformed-message";

/// How the message of such a status starts; the description follows.
pub const MALFORMED_PREFIX: &str = "malformed message: ";

/// Longest description such a status quotes, in bytes; longer ones are
/// cut and end with `…`.
pub const MAX_DETAIL_BYTES: usize = 200;

/// prost's codec with a marked, bounded decoding error.
#[derive(Debug, Clone)]
pub struct PrismCodec<T, U>(PhantomData<fn() -> (T, U)>);

impl<T, U> Default for PrismCodec<T, U> {
    fn default() -> Self {
        PrismCodec(PhantomData)
    }
}

impl<T, U> Codec for PrismCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = PrismDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        PrismDecoder(PhantomData)
    }
}

/// Decodes `U` with prost; see the module documentation for its errors.
#[derive(Debug, Clone)]
pub struct PrismDecoder<U>(PhantomData<fn() -> U>);

impl<U: Message + Default> Decoder for PrismDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| malformed(&e))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The marked status of a message that could not be decoded.
pub fn malformed(error: &prost::DecodeError) -> Status {
    let mut status = Status::internal(format!(
        "{MALFORMED_PREFIX}{}",
        bounded(&error.to_string(), MAX_DETAIL_BYTES)
    ));
    status
        .metadata_mut()
        .insert(MALFORMED_KEY, MetadataValue::from_static("decode"));
    status
}

/// `text` cut to at most `max` bytes (at a character boundary), marked
/// with `…` when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Named {
        #[prost(string, tag = "1")]
        name: String,
    }

    #[test]
    fn invalid_utf8_is_marked_and_names_the_field_not_the_bytes() {
        // Field 1, length-delimited, two bytes that are not UTF-8.
        let bytes = [0x0a, 0x02, 0xff, 0xfe];
        let error = Named::decode(&bytes[..]).unwrap_err();
        let status = malformed(&error);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().starts_with(MALFORMED_PREFIX));
        assert!(
            status.message().contains("Named.name"),
            "{}",
            status.message()
        );
        assert!(status.metadata().get(MALFORMED_KEY).is_some());
    }

    #[test]
    fn long_descriptions_are_cut_at_a_character_boundary() {
        let text = "é".repeat(300);
        let cut = bounded(&text, 201);
        assert!(cut.len() <= 201 + "…".len());
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short", 10), "short");
    }
}
