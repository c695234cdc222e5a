//! An RPC declared as data: which DAL and method it is, the permission it
//! needs, which request fields its audit record lists, and which response
//! fields carry stored values (masked for a caller without `pii:read`).
//!
//! A declaration is typed by its request and response (or stream item), so
//! the pipeline can only run an RPC whose request says what it audits
//! ([`AuditedRequest`]) and whose response says how it is masked
//! ([`Masked`]): leaving either out does not compile. What the declaration
//! states in words (field paths) is checked against the proto descriptors
//! by a test that enumerates every registered RPC (`pipeline/tests.rs`), so
//! a new bytes field in a response that nobody classified fails CI.

use std::marker::PhantomData;

use super::Reveal;
use crate::audit::{AuditedRequest, AuditedResponse, Targets};
use crate::config::Dal;
use crate::permission::Permission;

/// A response (or stream item) whose stored values the pipeline masks on
/// the way out.
pub trait Masked {
    /// The paths of the fields holding stored values, in the response's
    /// proto (`items[].value`: field `value` of every element of the
    /// repeated field `items`). Empty for a response that returns none.
    const VALUES: &'static [&'static str];

    /// Masks every value of [`Masked::VALUES`] through `reveal`
    /// ([`Reveal::returned`] on each).
    fn mask(&mut self, reveal: &mut Reveal);
}

/// Implements [`Masked`] for responses that return no stored value.
#[macro_export]
macro_rules! no_values {
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::pipeline::Masked for $t {
            const VALUES: &'static [&'static str] = &[];
            fn mask(&mut self, _: &mut $crate::pipeline::Reveal) {}
        }
    )+};
}

/// An item of a server stream (Tail, Subscribe).
pub trait StreamItem: Masked + Send + 'static {
    /// Whether the item is a delivered event or message (counted in
    /// `prism_stream_items_total`), not a marker.
    fn delivers(&self) -> bool;
}

/// One RPC of a DAL: `Req` is its request, `Resp` its response, or the
/// item of its stream.
pub struct Rpc<Req, Resp> {
    /// The DAL whose namespaces it serves.
    pub dal: Dal,
    /// The gRPC service, e.g. `prism.keyvalue.v1.KeyValueService`.
    pub service: &'static str,
    /// The method, as in metrics and audit records, e.g. `Put`.
    pub method: &'static str,
    /// The permission a caller needs on the namespace.
    pub permission: Permission,
    /// The request fields the audit record lists as targets (ids, keys),
    /// as paths in the request's proto.
    pub audits: &'static [&'static str],
    /// The bytes fields of the response that are not stored values (keys,
    /// ids): listed so that every bytes field is classified.
    pub not_values: &'static [&'static str],
    /// For a server stream: the method of the record written when it ends
    /// (`TailEnd`) and what the stream is called in messages (`tail`).
    pub stream: Option<StreamEnd>,
    _types: PhantomData<fn(Req) -> Resp>,
}

/// What a streaming RPC's end is recorded and reported as.
#[derive(Debug, Clone, Copy)]
pub struct StreamEnd {
    /// The audit method of the closing record, e.g. `TailEnd`.
    pub method: &'static str,
    /// The stream in messages, e.g. `tail`, `subscription`.
    pub noun: &'static str,
}

impl<Req: AuditedRequest, Resp: Masked + AuditedResponse> Rpc<Req, Resp> {
    /// A unary RPC.
    pub const fn unary(
        dal: Dal,
        service: &'static str,
        method: &'static str,
        permission: Permission,
        audits: &'static [&'static str],
        not_values: &'static [&'static str],
    ) -> Self {
        Rpc {
            dal,
            service,
            method,
            permission,
            audits,
            not_values,
            stream: None,
            _types: PhantomData,
        }
    }
}

impl<Req: AuditedRequest, Item: StreamItem> Rpc<Req, Item> {
    /// A server-streaming RPC whose items are `Item`.
    #[allow(clippy::too_many_arguments)]
    pub const fn streaming(
        dal: Dal,
        service: &'static str,
        method: &'static str,
        permission: Permission,
        audits: &'static [&'static str],
        not_values: &'static [&'static str],
        end: StreamEnd,
    ) -> Self {
        Rpc {
            dal,
            service,
            method,
            permission,
            audits,
            not_values,
            stream: Some(end),
            _types: PhantomData,
        }
    }
}

/// A declaration seen without its types, for the test that enumerates
/// every registered RPC.
pub trait Declared: Sync {
    fn dal(&self) -> Dal;
    fn service(&self) -> &'static str;
    fn method(&self) -> &'static str;
    fn permission(&self) -> Permission;
    fn audits(&self) -> &'static [&'static str];
    fn values(&self) -> &'static [&'static str];
    fn not_values(&self) -> &'static [&'static str];
    fn stream(&self) -> Option<StreamEnd>;
    /// Decodes `request` as the RPC's request: the namespace and targets
    /// its audit record would list.
    fn audited(&self, request: &[u8]) -> Result<(String, Targets), prost::DecodeError>;
    /// Decodes `response` as the RPC's response (or stream item), masks
    /// it through `reveal` as the pipeline would, and encodes it again.
    fn masked(&self, response: &[u8], reveal: &mut Reveal) -> Result<Vec<u8>, prost::DecodeError>;
}

impl<Req, Resp> Declared for Rpc<Req, Resp>
where
    Req: AuditedRequest + prost::Message + Default,
    Resp: Masked + prost::Message + Default,
{
    fn dal(&self) -> Dal {
        self.dal
    }
    fn service(&self) -> &'static str {
        self.service
    }
    fn method(&self) -> &'static str {
        self.method
    }
    fn permission(&self) -> Permission {
        self.permission
    }
    fn audits(&self) -> &'static [&'static str] {
        self.audits
    }
    fn values(&self) -> &'static [&'static str] {
        Resp::VALUES
    }
    fn not_values(&self) -> &'static [&'static str] {
        self.not_values
    }
    fn stream(&self) -> Option<StreamEnd> {
        self.stream
    }
    fn audited(&self, request: &[u8]) -> Result<(String, Targets), prost::DecodeError> {
        let request = Req::decode(request)?;
        let mut targets = Targets::default();
        request.targets(&mut targets);
        Ok((request.namespace().to_string(), targets))
    }
    fn masked(&self, response: &[u8], reveal: &mut Reveal) -> Result<Vec<u8>, prost::DecodeError> {
        let mut response = Resp::decode(response)?;
        response.mask(reveal);
        Ok(response.encode_to_vec())
    }
}
