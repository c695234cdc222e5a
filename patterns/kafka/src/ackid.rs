//! Ack ids: the token a client sends back to acknowledge one delivery.
//!
//! Form: `k1:<session>:<partition>:<offset>:<delivery>` — `session` names
//! the backend instance that made the delivery (16 lowercase hex digits,
//! random per open backend), `partition` and `offset` the Kafka position
//! of the message, `delivery` the delivery's number (unique within the
//! session, so an ack of an older delivery of the same message is
//! recognised as stale). Ack ids come from clients, so parsing is strict:
//! the only accepted text is exactly what [`AckId::encode`] writes.

use pattern_core::BackendError;

/// The longest ack id [`AckId::encode`] writes (2 + 1 + 16 + 1 + 10 + 1 +
/// 19 + 1 + 20).
const MAX_LEN: usize = 71;

/// A parsed ack id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckId {
    pub session: u64,
    pub partition: i32,
    pub offset: i64,
    pub delivery: u64,
}

impl AckId {
    /// The ack id's text.
    pub fn encode(&self) -> String {
        format!(
            "k1:{:016x}:{}:{}:{}",
            self.session, self.partition, self.offset, self.delivery
        )
    }

    /// Parses `text`, refusing anything [`AckId::encode`] would not write.
    pub fn parse(text: &str) -> Result<AckId, BackendError> {
        let invalid = || {
            let shown: String = text.chars().take(MAX_LEN).collect();
            BackendError::InvalidArgument(format!(
                "ack_id {shown:?} is not an ack id of the kafka backend; \
                 pass the ack_id of a delivery unchanged"
            ))
        };
        if text.len() > MAX_LEN {
            return Err(invalid());
        }
        let mut parts = text.split(':');
        let (Some("k1"), Some(session), Some(partition), Some(offset), Some(delivery), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(invalid());
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if session.len() != 16
            || !session
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            || !digits(partition)
            || !digits(offset)
            || !digits(delivery)
        {
            return Err(invalid());
        }
        let id = AckId {
            session: u64::from_str_radix(session, 16).map_err(|_| invalid())?,
            partition: partition.parse().map_err(|_| invalid())?,
            offset: offset.parse().map_err(|_| invalid())?,
            delivery: delivery.parse().map_err(|_| invalid())?,
        };
        // Canonical form only: no leading zeros, nothing that re-encodes
        // differently.
        if id.encode() != text || id.delivery == 0 {
            return Err(invalid());
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id = AckId {
            session: 0x0123_4567_89ab_cdef,
            partition: 2,
            offset: 41,
            delivery: 7,
        };
        assert_eq!(id.encode(), "k1:0123456789abcdef:2:41:7");
        assert_eq!(AckId::parse(&id.encode()).unwrap(), id);
        let max = AckId {
            session: u64::MAX,
            partition: i32::MAX,
            offset: i64::MAX,
            delivery: u64::MAX,
        };
        assert_eq!(max.encode().len(), MAX_LEN);
        assert_eq!(AckId::parse(&max.encode()).unwrap(), max);
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "k1",
            "k2:0123456789abcdef:2:41:7",
            "k1:0123456789ABCDEF:2:41:7",
            "k1:0123456789abcde:2:41:7",
            "k1:0123456789abcdef:-2:41:7",
            "k1:0123456789abcdef:+2:41:7",
            "k1:0123456789abcdef:02:41:7",
            "k1:0123456789abcdef:2:41:0",
            "k1:0123456789abcdef:2:41",
            "k1:0123456789abcdef:2:41:7:",
            "k1:0123456789abcdef:2:41:7:8",
            "k1:0123456789abcdef:2147483648:41:7",
            "k1:0123456789abcdef:2: 41:7",
            "k1:0123456789abcdef:2:٤١:7",
            "k1:0123456789abcdef:2:41:99999999999999999999999",
        ] {
            let err = AckId::parse(bad).unwrap_err();
            assert!(
                matches!(err, BackendError::InvalidArgument(_)),
                "{bad:?}: {err:?}"
            );
        }
    }
}
