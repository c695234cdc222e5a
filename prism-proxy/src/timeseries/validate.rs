//! Checks of TimeSeries requests against one namespace's limits and schema.

use std::collections::{BTreeMap, HashMap};

use pattern_core::timeseries::Event;
use prism_proto::timeseries::v1 as pb;

use crate::error::ProxyError;
use crate::kv::validate::Check;
use crate::registry::Namespace;

/// Most tags one event may carry.
pub const MAX_TAGS: usize = 64;

/// Checks requests against one TimeSeries namespace.
pub struct TsCheck<'a>(pub &'a Namespace);

impl TsCheck<'_> {
    fn name(&self) -> &str {
        &self.0.config.name
    }

    fn over(&self, field: &str, actual: usize, limit: &str, value: usize) -> ProxyError {
        ProxyError::invalid(format!(
            "{field} is {actual} bytes, over the limit {limit} = {value} of namespace '{}'; \
             send less, or raise the limit in the namespace's configuration",
            self.name()
        ))
    }

    /// 1 to `max_items_per_call` entries.
    pub fn count(&self, field: &str, n: usize) -> Result<(), ProxyError> {
        Check(self.0).count(field, n)
    }

    /// A series id: non-empty, within `max_id_bytes`.
    pub fn series(&self, field: &str, id: &str) -> Result<(), ProxyError> {
        self.id(field, id, "name the series, e.g. cpu.web-1")
    }

    fn id(&self, field: &str, id: &str, hint: &str) -> Result<(), ProxyError> {
        if id.is_empty() {
            return Err(ProxyError::invalid(format!(
                "{field} must not be empty; {hint}"
            )));
        }
        let max = self.0.config.limits.max_id_bytes;
        if id.len() > max {
            return Err(self.over(field, id.len(), "max_id_bytes", max));
        }
        Ok(())
    }

    /// Tags: at most [`MAX_TAGS`], names non-empty, names and values within
    /// `max_key_bytes`.
    pub fn tags(
        &self,
        field: &str,
        tags: &HashMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ProxyError> {
        if tags.len() > MAX_TAGS {
            return Err(ProxyError::invalid(format!(
                "{field} holds {} tags; at most {MAX_TAGS} are allowed",
                tags.len()
            )));
        }
        let max = self.0.config.limits.max_key_bytes;
        for (k, v) in tags {
            if k.is_empty() {
                return Err(ProxyError::invalid(format!(
                    "{field} has a tag with an empty name; name every tag"
                )));
            }
            if k.len() > max {
                return Err(self.over(
                    &format!("{field} name {}", pattern_core::quote(k)),
                    k.len(),
                    "max_key_bytes",
                    max,
                ));
            }
            if v.len() > max {
                return Err(self.over(
                    &format!("{field}[{}]", pattern_core::quote(k)),
                    v.len(),
                    "max_key_bytes",
                    max,
                ));
            }
        }
        Ok(tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// One event of a Write.
    pub fn event(&self, field: &str, e: pb::Event) -> Result<Event, ProxyError> {
        self.series(&format!("{field}.series_id"), &e.series_id)?;
        self.id(
            &format!("{field}.event_id"),
            &e.event_id,
            "give every event an id unique within its series and time (e.g. a UUID), so a \
             retried write is recognised",
        )?;
        let time = e.event_time.as_ref().ok_or_else(|| {
            ProxyError::invalid(format!(
                "{field}.event_time is required; set it to when the event happened"
            ))
        })?;
        let time_us = micros(&format!("{field}.event_time"), time)?;
        let tags = self.tags(&format!("{field}.tags"), &e.tags)?;
        // Refused when written (what is stored stays readable).
        no_nul(&format!("{field}.series_id"), &e.series_id)?;
        no_nul(&format!("{field}.event_id"), &e.event_id)?;
        for (k, v) in &tags {
            no_nul(&format!("{field}.tags name"), k)?;
            no_nul(&format!("{field}.tags[{k}]"), v)?;
        }
        let max = self.0.config.limits.max_value_bytes;
        if e.payload.len() > max {
            return Err(self.over(
                &format!("{field}.payload"),
                e.payload.len(),
                "max_value_bytes",
                max,
            ));
        }
        if let Some(schema) = &self.0.config.compiled_schema {
            schema.validate(&e.payload).map_err(|why| {
                ProxyError::invalid(format!(
                    "{field}.payload is not a valid {}: {why}",
                    schema.message_name()
                ))
            })?;
        }
        Ok(Event {
            series_id: e.series_id,
            time_us,
            event_id: e.event_id,
            tags,
            payload: e.payload,
        })
    }
}

/// A timestamp in microseconds; sub-microsecond digits are refused (not
/// rounded), so a retried write keeps its identity.
pub fn micros(field: &str, t: &prost_types::Timestamp) -> Result<i64, ProxyError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(ProxyError::invalid(format!(
            "{field} has nanos {}, outside 0..999999999",
            t.nanos
        )));
    }
    if t.nanos % 1000 != 0 {
        return Err(ProxyError::invalid(format!(
            "{field} has sub-microsecond precision ({} ns); Prism keeps microseconds, so round \
             it to a whole microsecond before writing",
            t.nanos
        )));
    }
    t.seconds
        .checked_mul(1_000_000)
        .and_then(|us| us.checked_add(i64::from(t.nanos / 1000)))
        .ok_or_else(|| ProxyError::invalid(format!("{field} is out of range")))
}

/// A timestamp from microseconds.
pub fn timestamp(time_us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time_us.div_euclid(1_000_000),
        nanos: (time_us.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// Text stored as text (series and event ids, tags) holds no NUL: some
/// backends (PostgreSQL) cannot store it, and a namespace must be able to
/// move to any of them.
fn no_nul(field: &str, text: &str) -> Result<(), ProxyError> {
    if text.contains('\0') {
        return Err(ProxyError::invalid(format!(
            "{field} contains a NUL character (U+0000), which Prism does not store in ids and \
             tags; remove it (binary data belongs in the payload)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_and_refuse_nanoseconds() {
        for us in [0, 1, 1_700_000_000_123_456, -1, -1_000_001] {
            assert_eq!(micros("t", &timestamp(us)).unwrap(), us);
        }
        let e = micros(
            "t",
            &prost_types::Timestamp {
                seconds: 1,
                nanos: 1500,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("sub-microsecond"), "{e}");
        let e = micros(
            "t",
            &prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }
}
