//! The permissions a namespace's policy grants. A leaf: it depends on
//! nothing else in the crate, so configuration, errors and the pipeline
//! can all name a permission.

/// A permission on a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Read,
    Write,
    Admin,
    PiiRead,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 4] = [
        Permission::Read,
        Permission::Write,
        Permission::Admin,
        Permission::PiiRead,
    ];

    /// The permission's name in messages (`pii:read`).
    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
            Permission::PiiRead => "pii:read",
        }
    }

    /// The policy field that grants it.
    pub fn field(self) -> &'static str {
        match self {
            Permission::Read => "policy.read",
            Permission::Write => "policy.write",
            Permission::Admin => "policy.admin",
            Permission::PiiRead => "policy.pii_read",
        }
    }
}
