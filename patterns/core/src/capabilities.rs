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
}

impl Capability {
    /// Every capability, in a stable order (used for tables and matrices).
    pub const ALL: [Capability; 7] = [
        Capability::Ttl,
        Capability::Scan,
        Capability::ConditionalWrite,
        Capability::Transactions,
        Capability::SnapshotReads,
        Capability::Idempotency,
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
