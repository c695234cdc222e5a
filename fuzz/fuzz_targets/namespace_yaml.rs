//! Namespace YAML, as a namespace admin sends it to ApplyNamespace (gRPC
//! or `PUT /admin/v1/namespaces/{name}`) and as namespace files are read.
//!
//! The text goes through the same entry point as an applied namespace,
//! `NamespaceConfig::parse_unloaded` (size and depth bounds, then serde,
//! `needs` placement, validation, policy), with the default catalog and
//! with one that offers Postgres and Redis. Checks: no panic; text over
//! the bounds is refused; text within them really nests no deeper than
//! the bound (the bound is measured without parsing, so the target parses
//! the text as any YAML and measures the tree); a namespace that parses is
//! valid by the rules it was checked against and parses again to the same
//! value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_proxy::config::{
    BackendCatalog, MAX_YAML_DEPTH, NamespaceConfig, check_yaml_bounds, validate_name,
};
use yaml_serde::Value;

/// How deeply a YAML value nests: a scalar 0, a sequence or mapping one
/// more than its deepest key or item.
fn depth(value: &Value) -> usize {
    match value {
        Value::Sequence(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Mapping(map) => {
            1 + map
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        Value::Tagged(tagged) => depth(&tagged.value),
        _ => 0,
    }
}

/// Text the bounds let through nests at most about as deep as they say.
/// The bound counts brackets, indentation and `- ` markers; a single-pair
/// mapping inside a flow sequence (`[a: [b: c]]`) adds a level it does not
/// see, hence the factor 2. Anchors are left out: an alias repeats a node
/// deeper in the tree without the parser nesting any deeper.
fn check_depth(text: &str) {
    if text.contains('&') {
        return;
    }
    match yaml_serde::from_str::<Value>(text) {
        Ok(value) => {
            let d = depth(&value);
            assert!(
                d <= 2 * MAX_YAML_DEPTH + 2,
                "text within the bounds nests {d} levels deep"
            );
        }
        Err(e) => assert!(
            !e.to_string().contains("recursion limit exceeded"),
            "text within the bounds nests past the parser's recursion limit: {e}"
        ),
    }
}

/// A backend kind can never be a path: 1 to 32 of `[a-z0-9_-]`, starting
/// with a letter (the rule `backend.kind` is parsed with).
fn is_kind(kind: &str) -> bool {
    (1..=32).contains(&kind.len())
        && kind.starts_with(|c: char| c.is_ascii_lowercase())
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
}

fn catalogs() -> &'static [BackendCatalog; 2] {
    static CATALOGS: std::sync::OnceLock<[BackendCatalog; 2]> = std::sync::OnceLock::new();
    CATALOGS.get_or_init(|| {
        let stores: BackendCatalog = serde_json::from_value(serde_json::json!({
            "postgres": { "url": "postgres://prism@127.0.0.1:5432/prism", "pool_size": 4 },
            "redis": { "url": "redis://127.0.0.1:6379/0", "key_prefix": "fuzz" },
        }))
        .expect("a catalog with both external stores");
        [BackendCatalog::default(), stores]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let bounded = check_yaml_bounds(text).is_ok();
    if bounded {
        check_depth(text);
    }
    for catalog in catalogs() {
        let Ok(ns) = NamespaceConfig::parse_unloaded("fuzz.yaml", text, catalog) else {
            continue;
        };
        assert!(bounded, "text over the size or depth bounds was parsed");
        assert!(validate_name(&ns.name).is_ok(), "name {:?}", ns.name);
        assert!(is_kind(&ns.backend.kind), "kind {:?}", ns.backend.kind);
        assert_eq!(
            ns.needs.is_some(),
            ns.selection.is_some(),
            "a namespace with needs has its backend chosen, one without does not"
        );
        let l = &ns.limits;
        assert!(l.default_page_size_bytes <= l.max_page_size_bytes);
        assert!(l.max_key_bytes > 0 && l.max_value_bytes > 0 && l.max_items_per_call > 0);
        assert_eq!(ns.yaml, text);
        let again = NamespaceConfig::parse_unloaded("fuzz.yaml", &ns.yaml, catalog)
            .expect("a namespace that parsed parses again");
        assert_eq!(again, ns, "parsing is deterministic");
    }
});
