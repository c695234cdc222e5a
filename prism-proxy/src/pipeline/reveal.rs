//! PII masking of the values a call returns, and what the audit record
//! says of it.

use std::sync::Arc;

use crate::audit::{PiiField, PiiSlot};
use crate::schema::Schema;

/// Applies PII masking to the values of one response.
pub struct Reveal {
    pub(super) schema: Option<Arc<Schema>>,
    pub(super) clear: bool,
    /// PII fields masked in this response, for the audit record.
    pub(super) masked_fields: Vec<String>,
    /// Whether any value was returned.
    pub(super) returned: bool,
}

impl Reveal {
    pub fn value(&mut self, value: &mut Vec<u8>) {
        let Some(schema) = self.schema.as_ref().filter(|_| !self.clear) else {
            return;
        };
        let out = schema.mask(value);
        if out.withheld {
            tracing::warn!(
                message_type = schema.message_name(),
                "a stored value no longer decodes as the namespace's schema; withheld from a \
                 caller without pii:read"
            );
        }
        if let Some(replacement) = out.replacement {
            *value = replacement;
        }
        for field in out.masked_fields {
            if !self.masked_fields.contains(&field) {
                self.masked_fields.push(field);
            }
        }
    }

    /// Masks one returned value and notes that a value was returned.
    pub fn returned(&mut self, value: &mut Vec<u8>) {
        self.value(value);
        self.returned |= !value.is_empty();
    }

    /// Tells the audit record which PII fields the caller received and
    /// whether masked: the masked ones, or (in clear) every PII field the
    /// schema declares, once any value was returned.
    pub fn report(self, slot: &PiiSlot) {
        let Some(schema) = &self.schema else {
            return;
        };
        let fields: Vec<PiiField> = if self.clear {
            if !self.returned {
                return;
            }
            schema
                .fields()
                .iter()
                .filter(|f| f.pii.is_some())
                .map(|f| PiiField {
                    field: f.path.clone(),
                    masked: false,
                })
                .collect()
        } else {
            self.masked_fields
                .into_iter()
                .map(|field| PiiField {
                    field,
                    masked: true,
                })
                .collect()
        };
        slot.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(fields);
    }
}
