//! How the admin API describes a namespace: its status (backend health,
//! pattern process), its full description for ListNamespaces and
//! GetNamespace, and the explanation of its backend, with secrets redacted.

use std::time::Duration;

use prism_proto::admin::v1 as pb;

use crate::config::NamespaceConfig;
use crate::registry::Namespace;

pub(super) async fn namespace_status(ns: &Namespace) -> pb::NamespaceStatus {
    let health = tokio::time::timeout(Duration::from_secs(2), ns.backend.health()).await;
    let (healthy, health_detail) = match health {
        Ok(Ok(())) => (true, String::new()),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (false, "backend health check timed out after 2s".to_string()),
    };
    let pattern = ns.endpoint.as_ref().map(|endpoint| {
        let mut p = pb::PatternStatus {
            endpoint: endpoint.clone(),
            ..Default::default()
        };
        if let Some(process) = &ns.pattern {
            let s = process.status();
            p.state = s.state.name().to_string();
            p.restarts = s.restarts;
            p.pid = s.pid.unwrap_or(0);
            p.last_error = s.last_error.unwrap_or_default();
        }
        p
    });
    pb::NamespaceStatus {
        name: ns.config.name.clone(),
        dal: ns.config.dal.name().to_string(),
        backend_kind: ns.backend.kind().to_string(),
        mode: ns.config.backend.mode.name().to_string(),
        capabilities: ns
            .capabilities
            .names()
            .into_iter()
            .map(String::from)
            .collect(),
        healthy,
        health_detail,
        pattern,
    }
}

/// One namespace for ListNamespaces and GetNamespace.
pub(super) async fn namespace_info(ns: &Namespace) -> pb::NamespaceInfo {
    let c = &ns.config;
    let limits = limits_info(&c.limits);
    pb::NamespaceInfo {
        name: c.name.clone(),
        dal: c.dal.name().to_string(),
        description: c.description.clone(),
        version: ns.version,
        yaml: redact_urls_in(&c.yaml),
        source: c.source.clone(),
        applied_at: crate::audit::rfc3339_millis(ns.applied_at),
        status: Some(namespace_status(ns).await),
        explicit_backend: c.selection.is_none(),
        schema: c.compiled_schema.as_deref().map(schema_info),
        policy: Some(match &c.policy {
            Some(p) => pb::PolicyInfo {
                defined: true,
                read: p.read.clone(),
                write: p.write.clone(),
                admin: p.admin.clone(),
                pii_read: p.pii_read.clone(),
            },
            None => pb::PolicyInfo::default(),
        }),
        limits,
    }
}

/// The limits in effect, by their dotted field names under `limits`
/// (0 for a call limit that is off; a rate's `burst` only when the rate
/// is on, as its effective value).
fn limits_info(l: &crate::config::Limits) -> std::collections::HashMap<String, u64> {
    let mut out: std::collections::HashMap<String, u64> = [
        ("max_key_bytes", l.max_key_bytes as u64),
        ("max_id_bytes", l.max_id_bytes as u64),
        ("max_value_bytes", l.max_value_bytes as u64),
        ("max_items_per_call", l.max_items_per_call as u64),
        ("default_page_size_bytes", l.default_page_size_bytes as u64),
        ("max_page_size_bytes", l.max_page_size_bytes as u64),
        ("rate.calls_per_second", u64::from(l.rate.calls_per_second)),
        (
            "rate.per_principal.calls_per_second",
            u64::from(l.rate.per_principal.calls_per_second),
        ),
        ("max_in_flight", l.max_in_flight as u64),
        ("deadline.default_ms", l.deadline.default_ms()),
        ("deadline.max_ms", l.deadline.max_ms),
        ("breaker.failures", u64::from(l.breaker.failures)),
        ("breaker.cool_down_ms", l.breaker.cool_down_ms),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(b) = l.rate.namespace_bucket() {
        out.insert("rate.burst".into(), u64::from(b.burst));
    }
    if let Some(b) = l.rate.principal_bucket() {
        out.insert("rate.per_principal.burst".into(), u64::from(b.burst));
        out.insert(
            "rate.per_principal.max_principals".into(),
            l.rate.per_principal.max_principals as u64,
        );
    }
    out
}

/// Every field of the schema's message (nested messages flattened to
/// dotted paths, three levels deep), with its annotations.
fn schema_info(schema: &crate::schema::Schema) -> pb::SchemaInfo {
    use prost_reflect::Kind;
    fn walk(
        message: &prost_reflect::MessageDescriptor,
        prefix: &str,
        depth: usize,
        annotated: &std::collections::HashMap<&str, &crate::schema::FieldAnnotation>,
        out: &mut Vec<pb::SchemaField>,
    ) {
        for field in message.fields() {
            let path = if prefix.is_empty() {
                field.name().to_string()
            } else {
                format!("{prefix}.{}", field.name())
            };
            let kind = field.kind();
            let mut type_name = match &kind {
                Kind::Message(m) => m.full_name().to_string(),
                Kind::Enum(e) => e.full_name().to_string(),
                other => format!("{other:?}").to_lowercase(),
            };
            if field.is_list() {
                type_name = format!("repeated {type_name}");
            } else if field.is_map() {
                type_name = "map".to_string();
            }
            let a = annotated.get(path.as_str());
            out.push(pb::SchemaField {
                path: path.clone(),
                r#type: type_name,
                pii: a
                    .and_then(|a| a.pii)
                    .map(|k| format!("{k:?}").to_lowercase())
                    .unwrap_or_default(),
                index: a.and_then(|a| a.index.clone()).unwrap_or_default(),
                access_audit: a.is_some_and(|a| a.access_audit),
            });
            if let Kind::Message(m) = kind
                && depth < 3
                && !field.is_map()
            {
                walk(&m, &path, depth + 1, annotated, out);
            }
        }
    }
    let annotated = schema
        .fields()
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    let mut fields = Vec::new();
    walk(schema.descriptor(), "", 0, &annotated, &mut fields);
    pb::SchemaInfo {
        message: schema.message_name().to_string(),
        encoding: schema.encoding().name().to_string(),
        proto: schema.source().display().to_string(),
        fields,
    }
}

/// `text` with the password of every `scheme://user:password@` URL
/// replaced by `***`.
fn redact_urls_in(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|word| {
            let trimmed = word.trim_end();
            let quoted = trimmed.trim_matches(|c| c == '"' || c == '\'');
            if quoted.contains("://") {
                word.replacen(quoted, &redact_url(quoted), 1)
            } else {
                word.to_string()
            }
        })
        .collect()
}

/// The explanation of one namespace's backend.
pub fn explain(config: &NamespaceConfig) -> pb::ExplainNamespaceResponse {
    let backend = &config.backend;
    let options = match &backend.options {
        serde_json::Value::Object(map) => {
            map.iter().map(|(k, v)| (k.clone(), redact(k, v))).collect()
        }
        _ => Default::default(),
    };
    let mut out = pb::ExplainNamespaceResponse {
        name: config.name.clone(),
        backend_kind: backend.kind.clone(),
        mode: backend.mode.name().to_string(),
        options,
        explicit: config.selection.is_none(),
        source: config.source.clone(),
        ..Default::default()
    };
    match &config.selection {
        Some(selection) => {
            out.needs = selection
                .needs
                .iter()
                .map(|n| pb::NeedValue {
                    name: n.need.field().to_string(),
                    value: n.need.value(),
                    defaulted: n.defaulted,
                })
                .collect();
            out.reasons = selection.reasons.clone();
            out.rejected = selection
                .rejected
                .iter()
                .map(|r| pb::RejectedBackend {
                    kind: r.kind.to_string(),
                    reasons: r.reasons.clone(),
                })
                .collect();
        }
        None => {
            out.reasons = vec![format!(
                "the backend is configured explicitly in {} (`backend.kind: {}`, mode {}); \
                 no selection was made",
                config.source,
                backend.kind,
                backend.mode.name()
            )];
        }
    }
    out
}

/// An option value for display: strings as written, others as JSON; a
/// password in a URL, and the value of a key naming a secret, as `***`.
fn redact(key: &str, value: &serde_json::Value) -> String {
    let key = key.to_ascii_lowercase();
    if ["password", "secret", "token"]
        .iter()
        .any(|s| key.contains(s))
    {
        return "***".to_string();
    }
    match value {
        serde_json::Value::String(s) => redact_url(s),
        other => other.to_string(),
    }
}

/// `scheme://user:password@host/...` with the password replaced by `***`;
/// anything else unchanged.
fn redact_url(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_string();
    };
    let rest = &text[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return text.to_string();
    };
    let Some(colon) = authority[..at].find(':') else {
        return text.to_string();
    };
    format!(
        "{}{}***{}",
        &text[..start],
        &authority[..=colon],
        &text[start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db:5432/prism?sslmode=disable"),
            "postgres://app:***@db:5432/prism?sslmode=disable"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(redact_url("no url here"), "no url here");
        assert_eq!(
            redact_url("http://host/path@with:colon"),
            "http://host/path@with:colon"
        );
        assert_eq!(redact("password", &"x".into()), "***");
        assert_eq!(redact("pool_size", &8.into()), "8");
    }

    #[test]
    fn an_explicit_backend_says_so_and_names_the_file() {
        let ns = NamespaceConfig::parse(
            "ns/orders.yaml",
            "name: orders\ndal: keyvalue\nbackend:\n  kind: postgres\n  options:\n    url: postgres://app:pw@db/prism\n",
        )
        .unwrap();
        let out = explain(&ns);
        assert!(out.explicit);
        assert_eq!(out.backend_kind, "postgres");
        assert_eq!(out.options["url"], "postgres://app:***@db/prism");
        assert!(
            out.reasons[0].contains("explicitly in ns/orders.yaml"),
            "{:?}",
            out.reasons
        );
        assert!(out.needs.is_empty() && out.rejected.is_empty());
    }
}

#[cfg(test)]
mod limits_tests {
    use super::*;

    #[test]
    fn call_limits_are_listed_by_dotted_name() {
        let ns = NamespaceConfig::parse(
            "ns/orders.yaml",
            "name: orders\ndal: keyvalue\nbackend: {kind: memstore}\nlimits:\n  rate: \
             {calls_per_second: 50}\n  max_in_flight: 64\n",
        )
        .unwrap();
        let l = limits_info(&ns.limits);
        assert_eq!(l["max_key_bytes"], 1024);
        assert_eq!(l["rate.calls_per_second"], 50);
        assert_eq!(l["rate.burst"], 50, "the effective burst");
        assert_eq!(l["rate.per_principal.calls_per_second"], 0);
        assert!(!l.contains_key("rate.per_principal.burst"));
        assert_eq!(l["max_in_flight"], 64);
        assert_eq!(l["deadline.default_ms"], 30_000);
        assert_eq!(l["deadline.max_ms"], 300_000);
        assert_eq!(l["breaker.failures"], 20);
        assert_eq!(l["breaker.cool_down_ms"], 5_000);
    }
}
