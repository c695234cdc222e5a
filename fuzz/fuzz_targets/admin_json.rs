//! The JSON bodies of the admin HTTP API (`/admin/v1/...`): every request
//! message is parsed from the same bytes with `admin::json::from_json`, the
//! handlers' one entry point. An ApplyNamespace body's `yaml` is then
//! parsed as the handler does once the caller may apply it.
//!
//! Checks: no panic; a body is either parsed or refused with
//! INVALID_ARGUMENT (never INTERNAL: a JSON form the descriptor accepts
//! must transcode to the prost message); a parsed message serializes to
//! JSON that parses back to the same message (the same protobuf bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_proto::admin::v1 as pb;
use prism_proxy::admin::json::{AdminMessage, from_json, to_json};
use prism_proxy::config::{BackendCatalog, NamespaceConfig};
use tonic::Code;

fn check<M: AdminMessage + std::fmt::Debug>(body: &[u8]) -> Option<M> {
    match from_json::<M>(body) {
        Ok(message) => {
            let json = to_json(&message).expect("a parsed message serializes to JSON");
            let again: M = from_json(json.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{}: its own JSON {json} is refused: {e:?}", M::NAME));
            // Compared encoded: a NaN `read_sample` is not equal to itself.
            assert_eq!(
                again.encode_to_vec(),
                message.encode_to_vec(),
                "{}: JSON round trip of {message:?}",
                M::NAME
            );
            Some(message)
        }
        Err(status) => {
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{}: {status:?}",
                M::NAME
            );
            None
        }
    }
}

fuzz_target!(|body: &[u8]| {
    if let Some(apply) = check::<pb::ApplyNamespaceRequest>(body) {
        let _ = NamespaceConfig::parse_unloaded("admin", &apply.yaml, &BackendCatalog::default());
    }
    check::<pb::MigrateRequest>(body);
    check::<pb::DeleteNamespaceRequest>(body);
    check::<pb::GetNamespaceRequest>(body);
    check::<pb::ListNamespacesRequest>(body);
    check::<pb::ExplainNamespaceRequest>(body);
    check::<pb::GetMigrationRequest>(body);
    check::<pb::GetStatusRequest>(body);
    check::<pb::TailAuditRequest>(body);
    check::<pb::ReloadRequest>(body);
    check::<pb::WhoAmIRequest>(body);
});
