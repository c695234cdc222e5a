//! What the audit record of one call needs from its request (taken before
//! the request is consumed) and from its response.

use std::time::{Instant, SystemTime};

use prism_proto::keyvalue::v1 as pb;
use tonic::Request;

use super::record::{TraceIds, request_id, trace_id_from_traceparent};

/// Most ids, and most keys, one record lists; the rest is cut and the
/// record marked `truncated`.
pub const MAX_TARGETS: usize = 256;

/// The principal of calls made without authentication.
pub const ANONYMOUS: &str = "anonymous";

/// The PII fields a call returned, filled by the service while it serves
/// the call (the service knows what it masked).
pub type PiiSlot = std::sync::Arc<std::sync::Mutex<Vec<super::PiiField>>>;

/// The ids and keys a call named or returned, in clear text until the
/// record is built (then hashed unless the namespace allows clear text).
/// Never leaves the call's task in clear form.
#[derive(Debug, Default)]
pub struct Targets {
    pub ids: Vec<String>,
    pub keys: Vec<Vec<u8>>,
    pub selection: Option<&'static str>,
    pub truncated: bool,
}

impl Targets {
    pub fn id(&mut self, id: &str) {
        if self.ids.iter().any(|i| i == id) {
            return;
        }
        if self.ids.len() >= MAX_TARGETS {
            self.truncated = true;
        } else {
            self.ids.push(id.to_string());
        }
    }

    pub fn key(&mut self, key: &[u8]) {
        if self.keys.iter().any(|k| k == key) {
            return;
        }
        if self.keys.len() >= MAX_TARGETS {
            self.truncated = true;
        } else {
            self.keys.push(key.to_vec());
        }
    }

    fn selection(&mut self, selection: Option<&pb::KeySelection>) {
        use pb::key_selection::Selection;
        let kind = match selection.and_then(|s| s.selection.as_ref()) {
            None | Some(Selection::All(_)) => "all",
            Some(Selection::Keys(list)) => {
                for key in &list.keys {
                    self.key(key);
                }
                "keys"
            }
            Some(Selection::Range(_)) => "range",
            Some(Selection::Prefix(_)) => "prefix",
        };
        // A Mutate may select differently per mutation; keep the first.
        self.selection.get_or_insert(kind);
    }
}

/// A request whose audit record lists ids and keys.
pub trait AuditedRequest: Sync {
    /// The namespace the request names.
    fn namespace(&self) -> &str;
    /// Adds the ids and keys the request names.
    fn targets(&self, _targets: &mut Targets) {}
}

/// A response whose audit record lists the ids and keys it returned.
pub trait AuditedResponse: Sync {
    /// Adds the ids and keys the response returns.
    fn targets(&self, _targets: &mut Targets) {}
}

impl AuditedRequest for pb::PutRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn targets(&self, t: &mut Targets) {
        t.id(&self.id);
        for item in &self.items {
            t.key(&item.key);
        }
    }
}

impl AuditedRequest for pb::GetRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn targets(&self, t: &mut Targets) {
        t.id(&self.id);
        t.selection(self.selection.as_ref());
    }
}

impl AuditedRequest for pb::DeleteRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn targets(&self, t: &mut Targets) {
        t.id(&self.id);
        t.selection(self.selection.as_ref());
    }
}

impl AuditedRequest for pb::ScanRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl AuditedRequest for pb::MutateRequest {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn targets(&self, t: &mut Targets) {
        for m in &self.mutations {
            t.id(&m.id);
            match &m.op {
                Some(pb::mutation::Op::Put(item)) => t.key(&item.key),
                Some(pb::mutation::Op::Delete(sel)) => t.selection(Some(sel)),
                None => {}
            }
        }
    }
}

impl AuditedResponse for pb::PutResponse {}
impl AuditedResponse for pb::DeleteResponse {}
impl AuditedResponse for pb::MutateResponse {}

impl AuditedResponse for pb::GetResponse {
    fn targets(&self, t: &mut Targets) {
        for item in &self.items {
            t.key(&item.key);
        }
    }
}

impl AuditedResponse for pb::ScanResponse {
    fn targets(&self, t: &mut Targets) {
        for record in &self.records {
            t.id(&record.id);
            for item in &record.items {
                t.key(&item.key);
            }
        }
    }
}

/// A call's trace id: from its `traceparent` header, else its
/// `x-request-id`, else generated.
pub fn trace_id(
    traceparent: Option<&str>,
    x_request_id: Option<&str>,
    trace_ids: &TraceIds,
) -> String {
    traceparent
        .and_then(trace_id_from_traceparent)
        .or_else(|| x_request_id.and_then(request_id))
        .map_or_else(|| trace_ids.generate(), str::to_string)
}

/// One call being served: what its audit record will say, gathered when
/// the call arrives. [`super::AuditLog::finish`] completes and submits it.
#[derive(Debug)]
pub struct Call {
    pub method: &'static str,
    pub namespace: String,
    pub principal: String,
    pub trace_id: String,
    pub targets: Targets,
    /// The PII fields returned, and whether masked.
    pub pii: PiiSlot,
    pub(super) time: SystemTime,
    pub(super) started: Instant,
}

impl Call {
    /// Captures `request`'s namespace, ids, keys, principal and trace id.
    pub fn start<R: AuditedRequest>(
        method: &'static str,
        request: &Request<R>,
        trace_ids: &TraceIds,
    ) -> Call {
        let started = Instant::now();
        let meta = request.metadata();
        let header = |name: &str| meta.get(name).and_then(|v| v.to_str().ok());
        let trace_id = trace_id(header("traceparent"), header("x-request-id"), trace_ids);
        let principal = request
            .extensions()
            .get::<crate::auth::Principal>()
            .map_or_else(|| ANONYMOUS.to_string(), |p| p.subject.clone());
        let mut targets = Targets::default();
        request.get_ref().targets(&mut targets);
        Call {
            method,
            namespace: request.get_ref().namespace().to_string(),
            principal,
            trace_id,
            targets,
            pii: PiiSlot::default(),
            time: SystemTime::now(),
            started,
        }
    }

    /// The namespace as the call named it.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_deduplicated_and_capped() {
        let mut t = Targets::default();
        for i in 0..MAX_TARGETS + 10 {
            t.id(&format!("id-{i}"));
            t.id("id-0");
        }
        assert_eq!(t.ids.len(), MAX_TARGETS);
        assert!(t.truncated);
    }

    #[test]
    fn a_call_takes_trace_id_and_principal_from_the_request() {
        let ids = TraceIds::new();
        let mut request = Request::new(pb::GetRequest {
            namespace: "orders".into(),
            id: "o-1".into(),
            selection: Some(pb::KeySelection {
                selection: Some(pb::key_selection::Selection::Keys(pb::KeyList {
                    keys: vec![b"a".to_vec(), b"b".to_vec()],
                })),
            }),
            ..Default::default()
        });
        request.metadata_mut().insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let mut alice = crate::auth::Principal::anonymous();
        alice.subject = "alice".into();
        request.extensions_mut().insert(alice);
        let call = Call::start("Get", &request, &ids);
        assert_eq!(call.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(call.principal, "alice");
        assert_eq!(call.namespace(), "orders");
        assert_eq!(call.targets.ids, ["o-1"]);
        assert_eq!(call.targets.keys, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(call.targets.selection, Some("keys"));

        let mut request = Request::new(pb::ScanRequest::default());
        request
            .metadata_mut()
            .insert("x-request-id", "req-7".parse().unwrap());
        let call = Call::start("Scan", &request, &ids);
        assert_eq!(call.trace_id, "req-7");
        assert_eq!(call.principal, ANONYMOUS);
        let generated = Call::start("Scan", &Request::new(pb::ScanRequest::default()), &ids);
        assert_eq!(generated.trace_id.len(), 32);
    }
}
