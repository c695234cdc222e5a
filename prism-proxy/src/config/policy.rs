//! `policy` in a namespace's YAML: its form and validation. How a policy
//! is applied to a caller lives in [`crate::policy`]; this module knows
//! nothing of principals.

use serde::Deserialize;

use crate::permission::Permission;

/// `policy` in a namespace's YAML.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub admin: Vec<String>,
    pub pii_read: Vec<String>,
}

impl PolicyConfig {
    /// The entries that grant `permission`.
    pub fn entries(&self, permission: Permission) -> &[String] {
        match permission {
            Permission::Read => &self.read,
            Permission::Write => &self.write,
            Permission::Admin => &self.admin,
            Permission::PiiRead => &self.pii_read,
        }
    }

    /// Checks every entry's form; the error names the field and index.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for permission in [
            Permission::Read,
            Permission::Write,
            Permission::Admin,
            Permission::PiiRead,
        ] {
            validate_entries(permission.field(), self.entries(permission))?;
        }
        Ok(())
    }
}

/// Checks the form of policy entries; the error names `field[i]`.
pub fn validate_entries(field: &str, entries: &[String]) -> Result<(), (String, String)> {
    for (i, entry) in entries.iter().enumerate() {
        let ok = entry == "*"
            || ["user:", "group:", "scope:"].iter().any(|prefix| {
                entry
                    .strip_prefix(prefix)
                    .is_some_and(|rest| !rest.is_empty() && rest.trim() == rest)
            });
        if !ok {
            return Err((
                format!("{field}[{i}]"),
                format!(
                    "{entry:?} is not a policy entry; use \"*\", \"user:<subject>\", \
                     \"group:<group>\" or \"scope:<scope>\""
                ),
            ));
        }
    }
    Ok(())
}
