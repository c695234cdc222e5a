//! Every registered RPC of every DAL, checked against the proto
//! descriptors: each method of each DAL service is declared exactly once,
//! with its permission; the request fields it audits are the ones its
//! audit record lists; and every bytes field of its response is either a
//! stored value that masking reaches, or declared not to be one.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use prost::bytes::Bytes;
use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value,
};

use super::*;
use crate::schema::ValueEncoding;

fn pool() -> DescriptorPool {
    DescriptorPool::decode(prism_proto::FILE_DESCRIPTOR_SET).unwrap()
}

/// The services the DALs serve: every service of the descriptor set in a
/// `prism.<dal>.v1` package.
fn dal_services(pool: &DescriptorPool) -> Vec<prost_reflect::ServiceDescriptor> {
    let dals: BTreeSet<&str> = registered().iter().map(|d| d.dal().name()).collect();
    pool.services()
        .filter(|s| {
            dals.iter()
                .any(|dal| s.package_name() == format!("prism.{dal}.v1"))
        })
        .collect()
}

#[test]
fn every_method_of_every_dal_service_is_declared_once() {
    let pool = pool();
    let services = dal_services(&pool);
    assert_eq!(
        services.len(),
        3,
        "the KeyValue, TimeSeries and PubSub services"
    );
    let mut declared: BTreeMap<(String, String), usize> = BTreeMap::new();
    for d in registered() {
        *declared
            .entry((d.service().to_string(), d.method().to_string()))
            .or_default() += 1;
    }
    for service in &services {
        for method in service.methods() {
            let n = declared
                .remove(&(service.full_name().to_string(), method.name().to_string()))
                .unwrap_or(0);
            assert_eq!(
                n,
                1,
                "{}/{} is declared {n} times; declare it once in its DAL's RPCS",
                service.full_name(),
                method.name()
            );
        }
    }
    assert!(
        declared.is_empty(),
        "declared RPCs that no service has: {declared:?}"
    );
}

#[test]
fn each_declaration_matches_its_method_and_permission() {
    let pool = pool();
    for d in registered() {
        let service = pool.get_service_by_name(d.service()).unwrap();
        let method = service.methods().find(|m| m.name() == d.method()).unwrap();
        assert_eq!(
            method.is_server_streaming(),
            d.stream().is_some(),
            "{}: streaming as in the proto",
            d.method()
        );
        assert!(!method.is_client_streaming(), "{}", d.method());
        assert!(
            service.package_name() == format!("prism.{}.v1", d.dal().name()),
            "{} is in its DAL's package",
            d.method()
        );
        // Reads need read, writes write; nothing on the data path needs admin.
        assert_ne!(d.permission(), Permission::Admin, "{}", d.method());
        assert_ne!(d.permission(), Permission::PiiRead, "{}", d.method());
        if let Some(end) = d.stream() {
            assert_eq!(end.method, format!("{}End", d.method()));
            assert!(!end.noun.is_empty());
        }
        // The request names its namespace.
        let namespace = method.input().get_field_by_name("namespace").unwrap();
        assert_eq!(namespace.kind(), Kind::String, "{}", d.method());
    }
}

/// A field path: `items[].key` is field `key` of an element of `items`.
fn segments(path: &str) -> Vec<(&str, bool)> {
    path.split('.')
        .map(|s| match s.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (s, false),
        })
        .collect()
}

/// Sets `path` of `message` to `leaf` (each repeated field on the way gets
/// one element); panics naming the path when it does not exist.
fn set_path(message: &mut DynamicMessage, path: &[(&str, bool)], leaf: Value, full: &str) {
    let (name, repeated) = path[0];
    let field = message
        .descriptor()
        .get_field_by_name(name)
        .unwrap_or_else(|| {
            panic!(
                "{full}: no field '{name}' in {}",
                message.descriptor().full_name()
            )
        });
    assert_eq!(
        field.is_list(),
        repeated,
        "{full}: mark repeated fields with []"
    );
    let value = if path.len() == 1 {
        leaf
    } else {
        let Kind::Message(inner) = field.kind() else {
            panic!("{full}: '{name}' is not a message");
        };
        let mut child = DynamicMessage::new(inner);
        set_path(&mut child, &path[1..], leaf, full);
        Value::Message(child)
    };
    message.set_field(
        &field,
        if repeated {
            Value::List(vec![value])
        } else {
            value
        },
    );
}

/// The value at `path` (the first element of each repeated field).
fn get_path(message: &DynamicMessage, path: &[(&str, bool)]) -> Value {
    let (name, repeated) = path[0];
    let mut value = message.get_field_by_name(name).unwrap().into_owned();
    if repeated {
        let Value::List(list) = value else { panic!() };
        value = list.into_iter().next().unwrap();
    }
    match (path.len(), value) {
        (1, v) => v,
        (_, Value::Message(child)) => get_path(&child, &path[1..]),
        (_, other) => panic!("{name} holds {other:?}"),
    }
}

/// Every bytes field reachable in `message` (not through google.protobuf
/// types or maps), as paths.
fn bytes_fields(message: &MessageDescriptor, prefix: &str, depth: usize, out: &mut Vec<String>) {
    assert!(depth < 8, "{prefix}: nested too deep");
    for field in message.fields() {
        if field.is_map() {
            continue;
        }
        let path = format!(
            "{prefix}{}{}",
            field.name(),
            if field.is_list() { "[]" } else { "" }
        );
        match field.kind() {
            Kind::Bytes => out.push(path),
            Kind::Message(inner) if !inner.full_name().starts_with("google.protobuf.") => {
                bytes_fields(&inner, &format!("{path}."), depth + 1, out);
            }
            _ => {}
        }
    }
}

#[test]
fn the_request_fields_declared_as_audited_reach_the_audit_record() {
    let pool = pool();
    for d in registered() {
        let method = pool
            .get_service_by_name(d.service())
            .unwrap()
            .methods()
            .find(|m| m.name() == d.method())
            .unwrap();
        for (i, path) in d.audits().iter().enumerate() {
            let marker = format!("audited-{i}");
            let segs = segments(path);
            let field = {
                // The leaf's kind decides the marker's type.
                let mut desc = method.input();
                let mut leaf = None;
                for (n, (name, _)) in segs.iter().enumerate() {
                    let f = desc
                        .get_field_by_name(name)
                        .unwrap_or_else(|| panic!("{}: {path}: no field '{name}'", d.method()));
                    if n + 1 < segs.len() {
                        let Kind::Message(inner) = f.kind() else {
                            panic!("{path}")
                        };
                        desc = inner;
                    } else {
                        leaf = Some(f);
                    }
                }
                leaf.unwrap()
            };
            let leaf = match field.kind() {
                Kind::String => Value::String(marker.clone()),
                Kind::Bytes => Value::Bytes(Bytes::from(marker.clone().into_bytes())),
                other => panic!("{}: {path} is {other:?}, not an id or key", d.method()),
            };
            let mut request = DynamicMessage::new(method.input());
            request.set_field_by_name("namespace", Value::String("ns".into()));
            set_path(&mut request, &segs, leaf, path);
            let (namespace, targets) = d.audited(&request.encode_to_vec()).unwrap();
            assert_eq!(namespace, "ns");
            let listed = targets.ids.contains(&marker)
                || targets.keys.iter().any(|k| k == marker.as_bytes());
            assert!(
                listed,
                "{}: {path} is declared audited but its audit record does not list it",
                d.method()
            );
        }
    }
}

#[test]
fn every_bytes_field_of_a_response_is_masked_or_declared_not_a_value() {
    let pool = pool();
    let (_dir, schema) =
        crate::schema::tests::load("acme.users.v1.UserProfile", ValueEncoding::Protobuf);
    assert!(schema.has_pii());
    let schema = Arc::new(schema);
    // Bytes that are no UserProfile: masking withholds them (empties them)
    // for a caller without pii:read.
    let not_a_profile = Bytes::from_static(&[0xff, 0xff, 0xff, 0x01]);
    for d in registered() {
        let method = pool
            .get_service_by_name(d.service())
            .unwrap()
            .methods()
            .find(|m| m.name() == d.method())
            .unwrap();
        let output = method.output();
        let mut found = Vec::new();
        bytes_fields(&output, "", 0, &mut found);
        let classified: BTreeSet<&str> = d.values().iter().chain(d.not_values()).copied().collect();
        let found_set: BTreeSet<&str> = found.iter().map(String::as_str).collect();
        assert_eq!(
            found_set,
            classified,
            "{}: every bytes field of {} is declared either a value (Masked::VALUES) or not \
             (not_values)",
            d.method(),
            output.full_name()
        );
        for path in &found {
            let segs = segments(path);
            let mut response = DynamicMessage::new(output.clone());
            set_path(
                &mut response,
                &segs,
                Value::Bytes(not_a_profile.clone()),
                path,
            );
            let mut reveal = Reveal {
                schema: Some(schema.clone()),
                clear: false,
                masked_fields: Vec::new(),
                returned: false,
            };
            let masked = d.masked(&response.encode_to_vec(), &mut reveal).unwrap();
            let masked = DynamicMessage::decode(output.clone(), masked.as_slice()).unwrap();
            let after = get_path(&masked, &segs);
            if d.values().contains(&path.as_str()) {
                assert_eq!(
                    after,
                    Value::Bytes(Bytes::new()),
                    "{}: {path} is declared a value but masking does not reach it",
                    d.method()
                );
            } else {
                assert_eq!(
                    after,
                    Value::Bytes(not_a_profile.clone()),
                    "{}: {path} is not a value but masking changed it",
                    d.method()
                );
            }
        }
    }
}
