//! Checks of PubSub requests against one namespace's limits and schema.

use pattern_core::pubsub::OutgoingMessage;
use prism_proto::pubsub::v1 as pb;

use crate::error::ProxyError;
use crate::kv::validate::Check;
use crate::registry::Namespace;

/// Longest topic or group name.
pub const MAX_NAME_BYTES: usize = 200;
/// Most attributes one message may carry.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest ack deadline a subscriber may ask for.
pub const MAX_ACK_DEADLINE_SECS: u32 = 600;
/// Most deliveries a subscriber may allow before dead-lettering.
pub const MAX_ATTEMPTS: u32 = 1000;
/// Longest ack id.
pub const MAX_ACK_ID_BYTES: usize = 512;

/// Checks requests against one PubSub namespace.
pub struct PsCheck<'a>(pub &'a Namespace);

/// A topic or group name: 1 to 200 letters, digits, `.`, `-`, `_`, not
/// starting with `.` (backends map names onto subjects, keys and topics).
fn name(field: &str, what: &str, value: &str) -> Result<(), ProxyError> {
    if value.is_empty() {
        return Err(ProxyError::invalid(format!(
            "{field} must not be empty; name the {what}, e.g. orders.created"
        )));
    }
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if value.len() > MAX_NAME_BYTES
        || !ok_chars
        || value.starts_with('.')
        || value.ends_with('.')
        || value.contains("..")
    {
        return Err(ProxyError::invalid(format!(
            "{field} {} is not a valid {what} name; use 1 to {MAX_NAME_BYTES} ASCII \
             letters, digits, '.', '-' or '_', with no leading, trailing or doubled '.'",
            pattern_core::quote(value)
        )));
    }
    Ok(())
}

impl PsCheck<'_> {
    fn over(&self, field: &str, actual: usize, limit: &str, value: usize) -> ProxyError {
        ProxyError::invalid(format!(
            "{field} is {actual} bytes, over the limit {limit} = {value} of namespace '{}'; \
             send less, or raise the limit in the namespace's configuration",
            self.0.config.name
        ))
    }

    pub fn topic(&self, field: &str, topic: &str) -> Result<(), ProxyError> {
        name(field, "topic", topic)
    }

    pub fn group(&self, field: &str, group: &str) -> Result<(), ProxyError> {
        name(field, "consumer group", group)
    }

    /// 1 to `max_items_per_call` entries.
    pub fn count(&self, field: &str, n: usize) -> Result<(), ProxyError> {
        Check(self.0).count(field, n)
    }

    /// The topic, group and ack ids of an Ack or Nack.
    pub fn acks(&self, topic: &str, group: &str, ack_ids: &[String]) -> Result<(), ProxyError> {
        self.topic("topic", topic)?;
        self.group("group", group)?;
        self.count("ack_ids", ack_ids.len())?;
        for (i, id) in ack_ids.iter().enumerate() {
            if id.is_empty() || id.len() > MAX_ACK_ID_BYTES {
                return Err(ProxyError::invalid(format!(
                    "ack_ids[{i}] is not an ack id this namespace issued; pass the ack_id of a \
                     delivered message unchanged"
                )));
            }
        }
        crate::kv::validate::no_repeats(
            "ack id",
            ack_ids
                .iter()
                .enumerate()
                .map(|(i, id)| (format!("ack_ids[{i}]"), id.as_str())),
        )
    }

    /// One message of a Publish.
    pub fn message(
        &self,
        field: &str,
        m: pb::PublishMessage,
    ) -> Result<OutgoingMessage, ProxyError> {
        let limits = &self.0.config.limits;
        if m.ordering_key.len() > limits.max_key_bytes {
            return Err(self.over(
                &format!("{field}.ordering_key"),
                m.ordering_key.len(),
                "max_key_bytes",
                limits.max_key_bytes,
            ));
        }
        if m.attributes.len() > MAX_ATTRIBUTES {
            return Err(ProxyError::invalid(format!(
                "{field}.attributes holds {} entries; at most {MAX_ATTRIBUTES} are allowed",
                m.attributes.len()
            )));
        }
        for (k, v) in &m.attributes {
            if k.is_empty() {
                return Err(ProxyError::invalid(format!(
                    "{field}.attributes has an empty name; name every attribute"
                )));
            }
            if k.starts_with("prism-") {
                return Err(ProxyError::invalid(format!(
                    "{field}.attributes name {} is reserved: names starting with 'prism-' \
                     are set by Prism (e.g. on dead-lettered messages); rename it",
                    pattern_core::quote(k)
                )));
            }
            if k.len() + v.len() > limits.max_key_bytes {
                return Err(self.over(
                    &format!("{field}.attributes[{}]", pattern_core::quote(k)),
                    k.len() + v.len(),
                    "max_key_bytes",
                    limits.max_key_bytes,
                ));
            }
        }
        if m.payload.len() > limits.max_value_bytes {
            return Err(self.over(
                &format!("{field}.payload"),
                m.payload.len(),
                "max_value_bytes",
                limits.max_value_bytes,
            ));
        }
        if let Some(schema) = &self.0.config.compiled_schema {
            schema.validate(&m.payload).map_err(|why| {
                ProxyError::invalid(format!(
                    "{field}.payload is not a valid {}: {why}",
                    schema.message_name()
                ))
            })?;
        }
        Ok(OutgoingMessage {
            ordering_key: m.ordering_key,
            attributes: m.attributes.into_iter().collect(),
            payload: m.payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_and_group_names() {
        for ok in ["orders", "orders.created", "a-b_c.9", "orders.dlq"] {
            name("topic", "topic", ok).unwrap();
        }
        for bad in ["", ".x", "x.", "a..b", "a b", "a/b", "ä", &"x".repeat(201)] {
            let e = name("topic", "topic", bad).unwrap_err().to_string();
            assert!(e.contains("topic"), "{bad}: {e}");
        }
    }
}
