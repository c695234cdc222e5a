//! How Prism names map to JetStream names, and ack ids.
//!
//! * A namespace becomes one subject token and part of the stream name by
//!   [`encode_token`]: ASCII letters, digits and `-` stay, every other byte
//!   becomes `_HH` (hex). The encoding is injective, so distinct
//!   namespaces never share a stream.
//! * A topic is checked by [`check_topic`] and used as is after the
//!   namespace token: `<subject_prefix>.<ns>.<topic>`; its dots make
//!   subject tokens (`orders.dlq` is `prism.shop.orders.dlq`).
//! * A consumer group on a topic is the durable consumer
//!   `<enc(topic)>__<enc(group)>` (`__` never occurs inside an encoding).
//! * An ack id is the JetStream reply subject of the delivery
//!   (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer
//!   seq>.<timestamp>.<pending>`), checked by [`parse_ack_id`] against the
//!   stream and consumer it must belong to before anything is sent.

use pattern_core::BackendError;

/// Longest topic, group or consumer name accepted.
pub const MAX_NAME: usize = 200;

/// Encodes `s` into `[A-Za-z0-9_-]`, injectively.
pub fn encode_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// Checks a topic name: 1 to 200 of `[A-Za-z0-9_-.]`, dots only between
/// other characters.
pub fn check_topic(topic: &str) -> Result<(), BackendError> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_NAME
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && topic.split('.').all(|t| !t.is_empty());
    if ok {
        Ok(())
    } else {
        Err(BackendError::InvalidArgument(format!(
            "topic {topic:?} is invalid; use 1 to {MAX_NAME} letters, digits, '-', '_' or '.', \
             with no leading, trailing or doubled '.'"
        )))
    }
}

/// Checks a group or consumer name: 1 to 200 bytes without control
/// characters.
pub fn check_name(what: &str, name: &str) -> Result<(), BackendError> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(BackendError::InvalidArgument(format!(
            "{what} name {name:?} is invalid; use 1 to {MAX_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

/// The durable consumer name of `group` on `topic`.
pub fn consumer_name(topic: &str, group: &str) -> String {
    format!("{}__{}", encode_token(topic), encode_token(group))
}

/// What an ack id says about its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckInfo {
    /// The reply subject to answer (the ack id itself, checked).
    pub subject: String,
    /// How many times the message was delivered so far.
    pub delivered: u64,
    /// The message's stream sequence: its id.
    pub stream_sequence: u64,
    /// When the server stored the message, in nanoseconds since the epoch.
    pub timestamp_ns: i64,
}

fn invalid(why: &str) -> BackendError {
    BackendError::InvalidArgument(format!(
        "ack id is invalid: {why}; pass the ack_id of a delivery of this topic and group unchanged"
    ))
}

/// Parses an ack id (a `$JS.ACK` reply subject), checking that it names
/// `stream` and `consumer`. Accepts the 9-token form and the 11/12-token
/// form with domain and account hash.
pub fn parse_ack_id(ack_id: &str, stream: &str, consumer: &str) -> Result<AckInfo, BackendError> {
    if ack_id.len() > 1024 || !ack_id.is_ascii() {
        return Err(invalid("too long or not ASCII"));
    }
    let tokens: Vec<&str> = ack_id.split('.').collect();
    if tokens.len() < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
        return Err(invalid("not a delivery reply subject"));
    }
    let rest = match tokens.len() {
        9 => &tokens[2..],
        11 | 12 => &tokens[4..],
        _ => return Err(invalid("unexpected number of tokens")),
    };
    let name_ok = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !tokens[2..tokens.len() - 7].iter().all(|t| name_ok(t)) || !name_ok(rest[0]) {
        return Err(invalid("malformed token"));
    }
    if rest[0] != stream {
        return Err(invalid("it belongs to another namespace"));
    }
    if rest[1] != consumer {
        return Err(invalid("it belongs to another topic or group"));
    }
    let number = |t: &str| -> Result<u64, BackendError> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("malformed number"));
        }
        t.parse().map_err(|_| invalid("number out of range"))
    };
    let delivered = number(rest[2])?;
    let stream_sequence = number(rest[3])?;
    number(rest[4])?;
    let timestamp_ns = number(rest[5])? as i64;
    number(rest[6])?;
    if let Some(token) = rest.get(7)
        && !name_ok(token)
    {
        return Err(invalid("malformed token"));
    }
    Ok(AckInfo {
        subject: ack_id.to_string(),
        delivered,
        stream_sequence,
        timestamp_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_injective_and_subject_safe() {
        assert_eq!(encode_token("orders-1"), "orders-1");
        assert_eq!(encode_token("a.b"), "a_2Eb");
        assert_eq!(encode_token("a_2Eb"), "a_5F2Eb");
        assert_ne!(encode_token("a.b"), encode_token("a_2Eb"));
        assert_eq!(encode_token("ü"), "_C3_BC");
        // enc never contains "__" nor ends in '_', so the first "__" is the
        // separator and pairs stay distinct.
        assert_ne!(consumer_name("a_", "b"), consumer_name("a", "_b"));
        assert_eq!(consumer_name("a_", "_b"), "a_5F___5Fb");
    }

    #[test]
    fn topics_are_checked() {
        for ok in ["orders", "orders.dlq", "a-b_c.d1"] {
            check_topic(ok).unwrap();
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a*", "a>", "ü"] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ack_ids_are_checked_strictly() {
        let id = "$JS.ACK.PRISM_ns.t__g.2.17.5.1790230470084404000.0";
        let info = parse_ack_id(id, "PRISM_ns", "t__g").unwrap();
        assert_eq!((info.delivered, info.stream_sequence), (2, 17));
        let v2 = "$JS.ACK.dom.hash.PRISM_ns.t__g.2.17.5.1790230470084404000.0.tok";
        parse_ack_id(v2, "PRISM_ns", "t__g").unwrap();
        for bad in [
            "",
            "garbage",
            "$JS.ACK.PRISM_other.t__g.2.17.5.1.0",
            "$JS.ACK.PRISM_ns.t__h.2.17.5.1.0",
            "$JS.ACK.PRISM_ns.t__g.2.x.5.1.0",
            "$JS.ACK.PRISM_ns.t__g.2.17.5.1.0.extra",
            "$JS.ACK.PRISM_ns.t__g.2.17.5.1.*",
            "$JS.ACK.>",
            "$JS.API.PRISM_ns.t__g.2.17.5.1.0",
        ] {
            assert!(parse_ack_id(bad, "PRISM_ns", "t__g").is_err(), "{bad:?}");
        }
    }
}
