//! The DALs this proxy serves, as data: each DAL is one [`DalModule`]
//! descriptor, and [`DALS`] is the one list of them. Code that differs by
//! DAL asks the descriptor (its name, whether it migrates, whether its
//! backends are shared across versions, ...) instead of matching over a
//! closed set; `docs-cms/adding-a-dal.md` lists every place a new DAL
//! touches.

use std::any::TypeId;
use std::fmt;

use serde::{Deserialize, Deserializer};

mod keyvalue;
mod pubsub;
mod timeseries;

pub use keyvalue::KEYVALUE;
pub use pubsub::PUBSUB;
pub use timeseries::TIMESERIES;

/// Every DAL this proxy serves: the registration list. Adding a DAL adds
/// its descriptor here and nowhere else in the proxy's shared code.
pub const DALS: [Dal; 3] = [KEYVALUE, TIMESERIES, PUBSUB];

/// What the proxy's shared code knows about one DAL.
pub struct DalModule {
    /// The name in a namespace's `dal:` field and the pattern protocol,
    /// e.g. `keyvalue`.
    pub name: &'static str,
    /// The fully qualified gRPC service, for messages.
    pub service: &'static str,
    /// The DAL's backend trait object (`dyn KeyValueBackend`, ...): the
    /// resolver files factories under it.
    pub backend_type: fn() -> TypeId,
    /// Whether a namespace of this DAL may migrate (shadow traffic to a
    /// second backend, `migration:`).
    pub migration: Migration,
    /// Whether an open backend may be shared by the next version of the
    /// namespace when its backend section is unchanged.
    pub reusable: bool,
    /// Whether its backends may run as pattern processes (`mode: process`
    /// or `remote`); otherwise they are linked into the proxy.
    pub pattern_modes: bool,
    /// The YAML section of the namespace holding this DAL's own settings
    /// (`timeseries:`), if it has one.
    pub section: Option<&'static str>,
}

/// Whether a DAL's namespaces migrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// They migrate when the source backend declares `capability` (the
    /// backfill reads the source with it), if any.
    Supported {
        capability: Option<pattern_core::Capability>,
    },
    /// They do not; the reason, for messages.
    Refused(&'static str),
}

/// A DAL: a reference to its descriptor, compared by name.
#[derive(Clone, Copy)]
pub struct Dal(pub &'static DalModule);

impl Dal {
    /// The name as written in YAML, e.g. `keyvalue`.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The descriptor.
    pub fn module(self) -> &'static DalModule {
        self.0
    }

    /// The proto package of its service, e.g. `prism.keyvalue.v1`.
    pub fn package(self) -> &'static str {
        self.0
            .service
            .rsplit_once('.')
            .map_or(self.0.service, |(package, _)| package)
    }

    /// The [`TypeId`] of the DAL's backend trait object.
    pub fn backend_type(self) -> TypeId {
        (self.0.backend_type)()
    }

    /// The registered DAL named `name`.
    pub fn by_name(name: &str) -> Option<Dal> {
        DALS.into_iter().find(|d| d.name() == name)
    }

    /// The registered DAL names, for messages: `keyvalue, timeseries, pubsub`.
    pub fn names() -> String {
        DALS.map(|d| d.name()).join(", ")
    }
}

impl PartialEq for Dal {
    fn eq(&self, other: &Dal) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Dal {}

impl fmt::Debug for Dal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Dal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Dal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dal, D::Error> {
        let name = String::deserialize(d)?;
        Dal::by_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown DAL '{name}'; this proxy serves: {}",
                Dal::names()
            ))
        })
    }
}

#[cfg(test)]
mod tests;
