//! What a backend can do. The proxy reads a backend's [`Capabilities`] to
//! refuse, with a clear error, the calls a backend cannot serve, and the
//! acceptance suite reads them to decide which tests apply.

use std::fmt;

/// One capability a backend may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Items may carry a time to live; expired items are never returned.
    Ttl,
    /// Every id of a namespace can be listed (the Scan RPC).
    Scan,
    /// A write can be made conditional on an item's current version.
    ConditionalWrite,
    /// Several writes across ids apply atomically (the Mutate RPC).
    Transactions,
    /// All pages of one Get or Scan read the same consistent snapshot.
    SnapshotReads,
    /// Idempotency tokens are remembered, so a retried write applies once.
    Idempotency,
    /// An acknowledged write survives a crash of the process.
    Durable,
    /// TimeSeries: events older than the namespace's retention are removed
    /// by whole time buckets (no row-by-row deletes).
    Retention,
    /// PubSub: messages with the same ordering key are delivered to a group
    /// in publish order.
    OrderingKey,
    /// PubSub: a new consumer group can start from the earliest retained
    /// message instead of only new ones.
    Replay,
    /// PubSub: consumers of one group share the messages (each message goes
    /// to one consumer of the group); groups each get every message.
    ConsumerGroups,
    /// PubSub: a message delivered `max_attempts` times without an ack is
    /// moved to the topic's dead-letter topic.
    DeadLetter,
}

impl Capability {
    /// Every capability, in a stable order (used for tables and matrices).
    pub const ALL: [Capability; 12] = [
        Capability::Ttl,
        Capability::Scan,
        Capability::ConditionalWrite,
        Capability::Transactions,
        Capability::SnapshotReads,
        Capability::Idempotency,
        Capability::Durable,
        Capability::Retention,
        Capability::OrderingKey,
        Capability::Replay,
        Capability::ConsumerGroups,
        Capability::DeadLetter,
    ];

    /// The capabilities a KeyValue backend may declare, in matrix order.
    pub const KEYVALUE: [Capability; 7] = [
        Capability::Ttl,
        Capability::Scan,
        Capability::ConditionalWrite,
        Capability::Transactions,
        Capability::SnapshotReads,
        Capability::Idempotency,
        Capability::Durable,
    ];

    /// The capabilities a TimeSeries backend may declare.
    pub const TIMESERIES: [Capability; 3] =
        [Capability::Retention, Capability::Durable, Capability::Scan];

    /// The capabilities a PubSub backend may declare.
    pub const PUBSUB: [Capability; 5] = [
        Capability::OrderingKey,
        Capability::Replay,
        Capability::ConsumerGroups,
        Capability::DeadLetter,
        Capability::Durable,
    ];

    /// The capability called `name` (as written by [`Capability::name`]).
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The capability's name as used in configuration and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Ttl => "ttl",
            Capability::Scan => "scan",
            Capability::ConditionalWrite => "conditional_write",
            Capability::Transactions => "transactions",
            Capability::SnapshotReads => "snapshot_reads",
            Capability::Idempotency => "idempotency",
            Capability::Durable => "durable",
            Capability::Retention => "retention",
            Capability::OrderingKey => "ordering_key",
            Capability::Replay => "replay",
            Capability::ConsumerGroups => "consumer_groups",
            Capability::DeadLetter => "dead_letter",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of capabilities a backend declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    bits: u16,
}

impl Capabilities {
    /// No capabilities.
    pub const fn none() -> Self {
        Capabilities { bits: 0 }
    }

    /// These capabilities plus `cap`.
    pub const fn with(self, cap: Capability) -> Self {
        Capabilities {
            bits: self.bits | (1 << cap as u16),
        }
    }

    /// Whether `cap` is declared.
    pub const fn has(self, cap: Capability) -> bool {
        self.bits & (1 << cap as u16) != 0
    }

    /// The declared capabilities, in [`Capability::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL.into_iter().filter(move |c| self.has(*c))
    }

    /// The declared capabilities' names, in [`Capability::ALL`] order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Capability::name).collect()
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Capabilities::none(), Capabilities::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_query() {
        let caps: Capabilities = [Capability::Ttl, Capability::Transactions]
            .into_iter()
            .collect();
        assert!(caps.has(Capability::Ttl));
        assert!(caps.has(Capability::Transactions));
        assert!(!caps.has(Capability::Scan));
        assert_eq!(caps.names(), vec!["ttl", "transactions"]);
        for cap in Capability::ALL {
            assert_eq!(Capability::from_name(cap.name()), Some(cap));
        }
        assert_eq!(Capability::from_name("teleport"), None);
    }
}
