//! PII masking by kind. A caller without `pii:read` receives every field
//! annotated `(prism.options.v1.pii)` masked: string fields keep a hint
//! (the e-mail's first letter and domain, the last digits of a card), other
//! types are cleared. Fields the schema does not declare are dropped, since
//! nobody can say whether they hold personal data; for the same reason a
//! `google.protobuf.Any` is masked through the message it holds, or emptied
//! when the schema does not define that message's type.

use std::collections::HashMap;

use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value,
};

use super::{field_options, join};

/// The kinds of personal data (`prism.options.v1.PiiKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Name,
    Phone,
    Ssn,
    Address,
    IpAddress,
    CreditCard,
    DateOfBirth,
    /// Annotated with a kind this proxy does not know: masked entirely.
    Other,
}

impl PiiKind {
    /// From the enum value name, e.g. `PII_KIND_EMAIL`.
    pub fn from_enum_name(name: &str) -> Option<PiiKind> {
        Some(match name.trim_start_matches("PII_KIND_") {
            "UNSPECIFIED" => return None,
            "EMAIL" => PiiKind::Email,
            "NAME" => PiiKind::Name,
            "PHONE" => PiiKind::Phone,
            "SSN" => PiiKind::Ssn,
            "ADDRESS" => PiiKind::Address,
            "IP_ADDRESS" => PiiKind::IpAddress,
            "CREDIT_CARD" => PiiKind::CreditCard,
            "DATE_OF_BIRTH" => PiiKind::DateOfBirth,
            _ => PiiKind::Other,
        })
    }

    /// Masks one string of this kind.
    pub fn mask(self, s: &str) -> String {
        if s.is_empty() {
            return String::new();
        }
        match self {
            PiiKind::Email => match s.rsplit_once('@') {
                Some((local, domain)) if !local.is_empty() => {
                    let first: String = local.chars().take(1).collect();
                    format!("{first}***@{domain}")
                }
                _ => "***".to_string(),
            },
            PiiKind::Name => {
                let first: String = s
                    .trim()
                    .chars()
                    .take(1)
                    .flat_map(char::to_uppercase)
                    .collect();
                if first.is_empty() {
                    String::new()
                } else {
                    format!("{first}.")
                }
            }
            PiiKind::Phone => keep_last_digits(s, 2),
            PiiKind::CreditCard => keep_last_digits(s, 4),
            PiiKind::Ssn => {
                let digits: Vec<char> = s.chars().filter(char::is_ascii_digit).collect();
                if digits.len() >= 4 {
                    let last: String = digits[digits.len() - 4..].iter().collect();
                    format!("***-**-{last}")
                } else {
                    "***-**-****".to_string()
                }
            }
            PiiKind::IpAddress => match s.trim().parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(v4)) => format!("{}.*.*.*", v4.octets()[0]),
                Ok(std::net::IpAddr::V6(v6)) => format!("{:x}:*", v6.segments()[0]),
                Err(_) => "***".to_string(),
            },
            PiiKind::DateOfBirth => {
                let year: String = s.chars().take(4).collect();
                if year.len() == 4 && year.chars().all(|c| c.is_ascii_digit()) {
                    format!("{year}-**-**")
                } else {
                    "***".to_string()
                }
            }
            PiiKind::Address | PiiKind::Other => "***".to_string(),
        }
    }
}

/// Replaces every digit but the last `keep` with `*`; other characters
/// (spaces, dashes, `+`) stay so the shape is recognisable. A value with
/// too few digits is masked entirely.
fn keep_last_digits(s: &str, keep: usize) -> String {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    if digits <= keep {
        return s.chars().map(|_| '*').collect();
    }
    let mut seen = 0;
    s.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen > digits - keep { c } else { '*' }
            } else if c.is_alphabetic() {
                '*'
            } else {
                c
            }
        })
        .collect()
}

/// What masking did to a value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MaskOutcome {
    /// The bytes to return instead of the stored value; `None` when the
    /// stored value can be returned as is.
    pub replacement: Option<Vec<u8>>,
    /// The value no longer decodes as the schema's message, so it cannot be
    /// masked: it is withheld (returned empty).
    pub withheld: bool,
    /// Paths of the PII fields that were present and masked.
    pub masked_fields: Vec<String>,
}

impl MaskOutcome {
    pub(super) fn unchanged() -> Self {
        MaskOutcome::default()
    }

    pub(super) fn withheld() -> Self {
        MaskOutcome {
            replacement: Some(Vec::new()),
            withheld: true,
            masked_fields: Vec::new(),
        }
    }

    pub(super) fn masked(value: Vec<u8>, fields: Vec<String>) -> Self {
        MaskOutcome {
            replacement: Some(value),
            withheld: false,
            masked_fields: fields,
        }
    }
}

/// The PII kind of every annotated field reachable from the namespace's
/// message, keyed by the field's full name, computed once per schema.
#[derive(Clone, Debug, Default)]
pub(super) struct MaskPlan {
    pii: HashMap<String, PiiKind>,
    /// Message types that contain PII somewhere below them.
    carriers: std::collections::HashSet<String>,
}

fn nested_type(field: &prost_reflect::FieldDescriptor) -> Option<MessageDescriptor> {
    match field.kind() {
        Kind::Message(m) if field.is_map() => {
            m.map_entry_value_field().kind().as_message().cloned()
        }
        Kind::Message(m) => Some(m),
        _ => None,
    }
}

/// The well-known message that holds a message of any type.
const ANY: &str = "google.protobuf.Any";

/// The most `google.protobuf.Any` values nested in one another that are
/// masked through; deeper ones are emptied. Each is decoded on its own, so
/// without a limit a value of nested Anys would recurse as deep as its
/// size allows.
const MAX_ANY_DEPTH: usize = 8;

impl MaskPlan {
    pub(super) fn build(pool: &DescriptorPool) -> MaskPlan {
        // Every message type of the schema's files: an `Any` may hold any
        // of them, not only the types reachable from the root.
        let types: Vec<MessageDescriptor> = pool.all_messages().collect();
        let mut plan = MaskPlan::default();
        for t in &types {
            for field in t.fields() {
                if let Some(kind) = field_options(pool, &field).pii {
                    plan.pii.insert(field.full_name().to_string(), kind);
                    plan.carriers.insert(t.full_name().to_string());
                }
            }
        }
        // An `Any` may hold a type with PII (or one nobody can classify).
        if !plan.carriers.is_empty() {
            plan.carriers.insert(ANY.to_string());
        }
        // A type carries PII when one of its message fields does.
        loop {
            let before = plan.carriers.len();
            for t in &types {
                if t.fields()
                    .any(|f| nested_type(&f).is_some_and(|n| plan.carriers.contains(n.full_name())))
                {
                    plan.carriers.insert(t.full_name().to_string());
                }
            }
            if plan.carriers.len() == before {
                break;
            }
        }
        plan
    }

    pub(super) fn has_pii(&self, message: &MessageDescriptor) -> bool {
        self.carriers.contains(message.full_name())
    }

    /// Masks `message` in place; pushes the paths of masked fields.
    pub(super) fn mask(&self, message: &mut DynamicMessage, path: &str, out: &mut Vec<String>) {
        self.mask_at(message, path, out, 0);
    }

    /// [`MaskPlan::mask`] inside `anys` nested `Any` values.
    fn mask_at(
        &self,
        message: &mut DynamicMessage,
        path: &str,
        out: &mut Vec<String>,
        anys: usize,
    ) {
        // Undeclared fields cannot be classified: drop them.
        message.take_unknown_fields().for_each(drop);
        if message.descriptor().full_name() == ANY {
            self.mask_any(message, path, out, anys + 1);
            return;
        }
        let mut clear = Vec::new();
        for (field, value) in message.fields_mut() {
            let child = join(path, field.name());
            if let Some(kind) = self.pii.get(field.full_name()).copied() {
                let list = if field.is_list() || field.is_map() {
                    "[]"
                } else {
                    ""
                };
                out.push(format!("{child}{list}"));
                if !mask_strings(kind, value) {
                    clear.push(field);
                }
                continue;
            }
            match value {
                Value::Message(m) => self.mask_at(m, &child, out, anys),
                Value::List(items) => {
                    for m in items.iter_mut().filter_map(Value::as_message_mut) {
                        self.mask_at(m, &format!("{child}[]"), out, anys);
                    }
                }
                Value::Map(entries) => {
                    for m in entries.values_mut().filter_map(Value::as_message_mut) {
                        self.mask_at(m, &format!("{child}[]"), out, anys);
                    }
                }
                _ => {}
            }
        }
        for field in clear {
            message.clear_field(&field);
        }
        out.dedup();
    }

    /// Masks the message an `Any` holds, when the schema's files define its
    /// type. An `Any` whose type they do not define (or that does not
    /// decode, or nests past [`MAX_ANY_DEPTH`]) is emptied: nobody can say
    /// whether it holds personal data.
    fn mask_any(&self, any: &mut DynamicMessage, path: &str, out: &mut Vec<String>, anys: usize) {
        let type_url = any
            .get_field_by_name("type_url")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let value = any
            .get_field_by_name("value")
            .and_then(|v| v.as_bytes().cloned())
            .unwrap_or_default();
        if type_url.is_empty() && value.is_empty() {
            return;
        }
        let pool = any.descriptor().parent_pool().clone();
        let held = (anys <= MAX_ANY_DEPTH)
            .then(|| type_url.rsplit('/').next())
            .flatten()
            .and_then(|name| pool.get_message_by_name(name))
            .and_then(|d| DynamicMessage::decode(d, value.as_ref()).ok());
        match held {
            Some(mut held) => {
                self.mask_at(&mut held, path, out, anys);
                any.set_field_by_name("value", Value::Bytes(held.encode_to_vec().into()));
            }
            None => {
                any.clear_field_by_name("type_url");
                any.clear_field_by_name("value");
                out.push(path.to_string());
            }
        }
    }
}

/// Masks a string, a list of strings or a map with string values in place.
/// Returns false for any other type (the caller clears the field).
fn mask_strings(kind: PiiKind, value: &mut Value) -> bool {
    match value {
        Value::String(s) => {
            *s = kind.mask(s);
            true
        }
        Value::List(items) if items.iter().all(|v| matches!(v, Value::String(_))) => {
            for item in items.iter_mut() {
                if let Value::String(s) = item {
                    *s = kind.mask(s);
                }
            }
            true
        }
        Value::Map(entries) if entries.values().all(|v| matches!(v, Value::String(_))) => {
            for item in entries.values_mut() {
                if let Value::String(s) = item {
                    *s = kind.mask(s);
                }
            }
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::PiiKind::*;

    #[test]
    fn each_kind_masks_as_documented() {
        let cases = [
            (Email, "jane.doe@example.com", "j***@example.com"),
            (Email, "not-an-email", "***"),
            (Name, "jane Doe", "J."),
            (Phone, "+1 415 555 0142", "+* *** *** **42"),
            (Phone, "42", "**"),
            (Ssn, "123-45-6789", "***-**-6789"),
            (Ssn, "12", "***-**-****"),
            (Address, "1 Main St, Springfield", "***"),
            (IpAddress, "203.0.113.7", "203.*.*.*"),
            (IpAddress, "2001:db8::1", "2001:*"),
            (IpAddress, "somewhere", "***"),
            (CreditCard, "4111 1111 1111 1234", "**** **** **** 1234"),
            (CreditCard, "4111-1111-1111-1234", "****-****-****-1234"),
            (DateOfBirth, "1990-04-17", "1990-**-**"),
            (DateOfBirth, "April 17", "***"),
            (Other, "anything", "***"),
        ];
        for (kind, input, want) in cases {
            assert_eq!(kind.mask(input), want, "{kind:?} of {input:?}");
            assert_eq!(kind.mask(""), "", "{kind:?} of an empty string");
        }
    }

    #[test]
    fn a_masked_value_never_contains_the_clear_digits_it_hides() {
        let card = "4111111111119876";
        let masked = CreditCard.mask(card);
        assert!(!masked.contains("41111111"), "{masked}");
        assert!(masked.ends_with("9876"), "{masked}");
    }
}
