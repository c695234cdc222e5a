use std::path::Path;

use super::*;
use crate::config::NamespaceConfig;
use crate::config::needs::BackendCatalog;

#[test]
fn every_dal_has_a_unique_name_a_descriptor_and_backends_with_profiles() {
    let resolver = crate::resolver::builtin();
    for (i, dal) in DALS.iter().enumerate() {
        assert!(
            DALS[..i].iter().all(|d| d.name() != dal.name()),
            "{dal} is registered twice"
        );
        assert_eq!(Dal::by_name(dal.name()), Some(*dal));
        assert!(dal.module().service.starts_with("prism."), "{dal}");
        let kinds = resolver.kinds_of(*dal);
        assert!(!kinds.is_empty(), "{dal} has no backend kinds");
        let profiles = resolver.needs_profiles(*dal);
        let mut profiled: Vec<&str> = profiles.iter().map(|p| p.kind).collect();
        profiled.sort_unstable();
        assert_eq!(profiled, kinds, "{dal}: one needs profile per kind");
        for pair in profiles.windows(2) {
            assert!(
                pair[0].preference != pair[1].preference,
                "{dal}: {} and {} share a preference rank",
                pair[0].kind,
                pair[1].kind
            );
        }
    }
}

#[test]
fn the_dal_field_parses_the_registered_names_and_lists_them_for_others() {
    for dal in DALS {
        let parsed: Dal = yaml_serde::from_str(dal.name()).unwrap();
        assert_eq!(parsed, dal);
    }
    let err = NamespaceConfig::parse(
        "ns/x.yaml",
        "name: x\ndal: graph\nbackend: {kind: memstore}\n",
    )
    .unwrap_err();
    assert!(
        err.message.contains("unknown DAL 'graph'")
            && err.message.contains("keyvalue, timeseries, pubsub"),
        "{err}"
    );
}

fn with_needs(dal: &str, needs: &str, catalog: &BackendCatalog) -> Result<NamespaceConfig, String> {
    NamespaceConfig::parse_with(
        "ns/x.yaml",
        &format!("name: x\ndal: {dal}\nneeds:\n{needs}"),
        catalog,
    )
    .map_err(|e| e.to_string())
}

#[test]
fn needs_pick_a_backend_for_every_dal() {
    let none = BackendCatalog::default();
    let ts = with_needs("timeseries", "  durability: durable\n", &none).unwrap();
    assert_eq!(ts.backend.kind, "sqlite");
    let ts = with_needs("timeseries", "  durability: none\n", &none).unwrap();
    assert_eq!(ts.backend.kind, "memstore");

    let nats: BackendCatalog =
        yaml_serde::from_str("nats: {url: \"nats://127.0.0.1:4222\"}\n").unwrap();
    let ps = with_needs("pubsub", "  durability: restart\n  scope: shared\n", &nats).unwrap();
    assert_eq!(ps.backend.kind, "nats");
    assert_eq!(ps.backend.options["url"], "nats://127.0.0.1:4222");
    assert_eq!(
        crate::resolver::builtin().check(&ps),
        Ok(()),
        "the catalog's options are the backend's"
    );
    let selection = ps.selection.unwrap();
    assert!(
        selection
            .reasons
            .iter()
            .any(|r| r.contains("backends.nats"))
    );
}

#[test]
fn an_unsatisfiable_need_names_the_kinds_of_the_dal_from_the_resolver() {
    let none = BackendCatalog::default();
    // No PubSub store is configured: every kind is external.
    let err = with_needs("pubsub", "  durability: restart\n", &none).unwrap_err();
    let kinds = crate::resolver::builtin().kinds_of(PUBSUB);
    for kind in &kinds {
        assert!(err.contains(kind), "{kind} missing from: {err}");
    }
    // No TimeSeries backend holds 2 TiB.
    let postgres: BackendCatalog =
        yaml_serde::from_str("postgres: {url: \"postgres://127.0.0.1/test\"}\n").unwrap();
    let err = with_needs("timeseries", "  data_size: 2TiB\n", &postgres).unwrap_err();
    for kind in crate::resolver::builtin().kinds_of(TIMESERIES) {
        assert!(err.contains(kind), "{kind} missing from: {err}");
    }
}

/// The proxy's source files outside the DAL registration (this module)
/// and the DALs' own modules.
fn shared_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let own: Vec<&str> = DALS
        .iter()
        .map(|d| match d.name() {
            n if n == KEYVALUE.name() => "kv",
            n => n,
        })
        .collect();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let top = rel
                .split('/')
                .next()
                .unwrap_or_default()
                .trim_end_matches(".rs");
            if top == "dal" || own.contains(&top) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if rel.ends_with(".rs") && !rel.ends_with("tests.rs") && !rel.contains("/tests/")
            {
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out
}

/// The code of `text` before its `#[cfg(test)]` module, without comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_shared_code_matches_over_the_dals_or_names_one() {
    let mut found = Vec::new();
    for (file, text) in shared_sources() {
        let code = code(&text);
        for dal in DALS {
            let literal = format!("\"{}\"", dal.name());
            if code.contains(&literal) {
                found.push(format!("{file}: the string {literal}"));
            }
        }
        for (i, line) in code.lines().enumerate() {
            let arm = line.trim_start();
            if arm.starts_with("dal::") && arm.contains("=>") {
                found.push(format!("{file}:{}: a match arm over DALs: {arm}", i + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "DAL-specific code outside src/dal and the DALs' modules (see \
         docs-cms/adding-a-dal.md):\n{}",
        found.join("\n")
    );
}
