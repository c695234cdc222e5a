//! Per-namespace authorization: which principals may read, write,
//! administer a namespace, and see its PII in clear.
//!
//! ```yaml
//! policy:
//!   read:     ["group:support", "scope:profiles.read"]
//!   write:    ["user:svc-profiles"]
//!   admin:    ["group:platform"]
//!   pii_read: ["group:support-tier2"]
//! ```
//!
//! An entry is `*` (every caller), `user:<subject>`, `group:<group>` or
//! `scope:<scope>`. Permissions are independent: `write` does not imply
//! `read`, and nothing but `pii_read` reveals PII.
//!
//! A namespace without a `policy` section follows the proxy: with
//! authentication enabled it denies everything (default deny); with
//! authentication disabled (the local embedded default) it allows
//! everything, PII included.

use crate::auth::Principal;
pub use crate::config::{PolicyConfig, validate_entries};
pub use crate::permission::Permission;

/// Whether `principal` holds `permission` under `policy`.
pub fn allows(
    policy: Option<&PolicyConfig>,
    auth_enabled: bool,
    principal: &Principal,
    permission: Permission,
) -> bool {
    let Some(policy) = policy else {
        return !auth_enabled;
    };
    matches_any(policy.entries(permission), principal)
}

/// Whether any of `entries` (policy entries: `*`, `user:`, `group:`,
/// `scope:`) names `principal`.
pub fn matches_any(entries: &[String], principal: &Principal) -> bool {
    entries.iter().any(|entry| {
        if entry == "*" {
            return true;
        }
        match entry.split_once(':') {
            Some(("user", s)) => principal.subject == s,
            Some(("group", g)) => principal.groups.iter().any(|x| x == g),
            Some(("scope", s)) => principal.scopes.iter().any(|x| x == s),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthMethod;

    fn alice() -> Principal {
        Principal {
            subject: "alice".into(),
            groups: vec!["support".into()],
            scopes: vec!["profiles.read".into()],
            method: AuthMethod::Jwt,
            expires_at: None,
        }
    }

    #[test]
    fn entries_match_subject_group_scope_or_anyone() {
        let p = |read: &[&str]| PolicyConfig {
            read: read.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        for (entries, want) in [
            (&["user:alice"][..], true),
            (&["user:bob"][..], false),
            (&["group:support"][..], true),
            (&["group:platform"][..], false),
            (&["scope:profiles.read"][..], true),
            (&["scope:profiles.write"][..], false),
            (&["*"][..], true),
            (&[][..], false),
        ] {
            assert_eq!(
                allows(Some(&p(entries)), true, &alice(), Permission::Read),
                want,
                "{entries:?}"
            );
        }
    }

    #[test]
    fn permissions_are_independent() {
        let policy = PolicyConfig {
            write: vec!["user:alice".into()],
            ..Default::default()
        };
        assert!(allows(Some(&policy), true, &alice(), Permission::Write));
        for p in [Permission::Read, Permission::Admin, Permission::PiiRead] {
            assert!(!allows(Some(&policy), true, &alice(), p), "{p:?}");
        }
    }

    #[test]
    fn no_policy_denies_with_auth_and_allows_without() {
        for p in [Permission::Read, Permission::PiiRead] {
            assert!(!allows(None, true, &alice(), p));
            assert!(allows(None, false, &Principal::anonymous(), p));
        }
        // A declared policy applies even with authentication disabled.
        let policy = PolicyConfig {
            read: vec!["*".into()],
            ..Default::default()
        };
        assert!(allows(
            Some(&policy),
            false,
            &Principal::anonymous(),
            Permission::Read
        ));
        assert!(!allows(
            Some(&policy),
            false,
            &Principal::anonymous(),
            Permission::PiiRead
        ));
    }

    #[test]
    fn malformed_entries_are_named() {
        let policy = PolicyConfig {
            pii_read: vec!["group:ok".into(), "alice".into()],
            ..Default::default()
        };
        let (field, message) = policy.validate().unwrap_err();
        assert_eq!(field, "policy.pii_read[1]");
        assert!(
            message.contains("\"alice\" is not a policy entry"),
            "{message}"
        );
        for bad in ["user:", "group: x", "role:admin"] {
            let policy = PolicyConfig {
                read: vec![bad.into()],
                ..Default::default()
            };
            assert!(policy.validate().is_err(), "{bad}");
        }
    }
}
