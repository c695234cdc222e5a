//! The per-DAL sections of a namespace file: `timeseries:` and `pubsub:`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `timeseries:` — retention and bucketing of a TimeSeries namespace.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TimeSeriesSettings {
    /// Events older than this (by event time) are removed, a whole bucket
    /// at a time: an event goes at most one bucket after it passed
    /// retention. Unset: kept forever. E.g. `7d`, `36h`.
    #[serde(deserialize_with = "optional_duration")]
    pub retention: Option<Duration>,
    /// The width of a time bucket, the unit of storage and of retention
    /// (PostgreSQL: one partition per bucket). Default `1h`.
    #[serde(deserialize_with = "duration")]
    pub bucket: Duration,
    /// A durable log behind the namespace's tails: every write is also
    /// appended to it, and Tail reads it instead of the store. Unset: tails
    /// read the store.
    pub log: Option<LogSettings>,
}

impl Default for TimeSeriesSettings {
    fn default() -> Self {
        TimeSeriesSettings {
            retention: None,
            bucket: pattern_core::timeseries::DEFAULT_BUCKET,
            log: None,
        }
    }
}

/// `timeseries.log:` — the log behind a TimeSeries namespace's tails.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// The log kind; `kafka` is the one there is.
    pub kind: String,
    /// The kind's options (kafka: `brokers`, `topic`, `partitions`).
    #[serde(default)]
    pub options: serde_json::Value,
}

/// The log kinds a `timeseries.log` can name (none in a build without the
/// `kafka` feature).
#[cfg(feature = "kafka")]
pub const LOG_KINDS: &[&str] = &[pattern_kafka::KIND];
#[cfg(not(feature = "kafka"))]
pub const LOG_KINDS: &[&str] = &[];

impl LogSettings {
    /// Checks the kind and its options for namespace `namespace`.
    pub fn check(&self, namespace: &str) -> Result<(), String> {
        #[cfg(not(feature = "kafka"))]
        let _ = namespace;
        match self.kind.as_str() {
            #[cfg(feature = "kafka")]
            pattern_kafka::KIND => {
                pattern_kafka::KafkaLog::check_options(namespace, self.options.clone())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            other => Err(format!(
                "kind '{other}' is not a log kind; use one of: {}",
                LOG_KINDS.join(", ")
            )),
        }
    }

    /// Opens the log of namespace `namespace`.
    pub fn open(
        &self,
        namespace: &str,
    ) -> Result<std::sync::Arc<dyn pattern_core::timeseries::EventLog>, String> {
        self.check(namespace)?;
        open_log(namespace, self.options.clone())
    }
}

#[cfg(feature = "kafka")]
fn open_log(
    namespace: &str,
    options: serde_json::Value,
) -> Result<std::sync::Arc<dyn pattern_core::timeseries::EventLog>, String> {
    pattern_kafka::KafkaLog::open(namespace, options)
        .map(|log| std::sync::Arc::new(log) as _)
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "kafka"))]
fn open_log(
    _namespace: &str,
    _options: serde_json::Value,
) -> Result<std::sync::Arc<dyn pattern_core::timeseries::EventLog>, String> {
    Err("this proxy is built without the kafka feature; it has no log kinds".into())
}

/// `pubsub:` — the defaults of a PubSub namespace's subscriptions.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PubSubSettings {
    /// A delivery not acknowledged within this is delivered again, when the
    /// subscriber does not choose. Default `30s`.
    #[serde(deserialize_with = "duration")]
    pub ack_deadline: Duration,
    /// Deliveries before a message goes to the dead-letter topic, when the
    /// subscriber does not choose. Default 5.
    pub max_attempts: u32,
}

impl Default for PubSubSettings {
    fn default() -> Self {
        PubSubSettings {
            ack_deadline: pattern_core::pubsub::DEFAULT_ACK_DEADLINE,
            max_attempts: pattern_core::pubsub::DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// Parses `500ms`, `30s`, `15m`, `6h`, `7d` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || {
        format!(
            "'{text}' is not a duration; write a whole number with a unit: ms, s, m, h or d \
             (e.g. 30s, 15m, 7d)"
        )
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(bad)
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => Err(bad()),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(String),
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match DurationText::deserialize(d)? {
        DurationText::Seconds(s) => Ok(Duration::from_secs(s)),
        DurationText::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// Renders a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, factor) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s.is_multiple_of(factor) {
            return format!("{}{unit}", s / factor);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_render() {
        for (text, secs) in [
            ("30s", 30),
            ("15m", 900),
            ("6h", 21_600),
            ("7d", 604_800),
            ("45", 45),
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(d, Duration::from_secs(secs), "{text}");
        }
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(format_duration(Duration::from_secs(604_800)), "7d");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        for bad in ["", "7 weeks", "-3s", "1.5h", "3y"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("not a duration"), "{bad}: {e}");
        }
    }
}
