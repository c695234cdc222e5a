//! The graph of a crate's top-level modules by their `crate::` references,
//! for the tests that keep Prism's crates free of module cycles (ADR-021):
//! a module may use a module below it, never one that (directly or not)
//! uses it back. Built only for tests: pattern-core's own (below) and, with
//! the `module-graph` feature, prism-proxy's (`prism-proxy/src/module_graph.rs`).
//!
//! pattern-core's layering: `paging` (page tokens) and `idempotency`
//! (request fingerprints) are leaves that know no DAL; each DAL
//! (`keyvalue`, `timeseries`, `pubsub`) owns its cursor and fingerprints
//! and uses them, never the other way round.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A graph of top-level module → the top-level modules it names.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The graph of the crate whose sources are in `src`: every `crate::`
/// reference (outside `//` comments) of a file under a top-level module
/// names an edge. Tests are left out (files `tests.rs` and `*_tests.rs`,
/// and everything after a file's first `#[cfg(test)]`): a test may reach
/// across layers. `lib.rs` and `main.rs` are the roots, not modules.
pub fn graph(src: &Path) -> Graph {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("reading src/") {
        let path = entry.expect("a src/ entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir()
            || (path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main")
        {
            modules.insert(name, path);
        }
    }
    let mut graph = Graph::new();
    for (name, path) in &modules {
        let mut files = vec![path.clone()];
        let edges = graph.entry(name.clone()).or_default();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("reading a module directory") {
                    files.push(entry.expect("a module entry").path());
                }
                continue;
            }
            let stem = path.file_stem().unwrap().to_string_lossy();
            if path.extension().is_none_or(|e| e != "rs")
                || stem == "tests"
                || stem.ends_with("_tests")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("reading a source file");
            let text = text.split("#[cfg(test)]").next().unwrap_or("");
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            for target in references(&code) {
                if target != name && modules.contains_key(target) {
                    edges.insert(target.to_string());
                }
            }
        }
    }
    graph
}

/// The top-level names after each `crate::` in `code`, in `crate::a::b`
/// and `crate::{a, b::{c, d}}` alike.
pub fn references(code: &str) -> Vec<&str> {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("crate::") {
        let at = from + found;
        from = at + "crate::".len();
        if at > 0 && ident(bytes[at - 1]) {
            continue;
        }
        let word = |start: usize| {
            let end = (start..bytes.len())
                .find(|&i| !ident(bytes[i]))
                .unwrap_or(bytes.len());
            (&code[start..end], end)
        };
        if bytes.get(from) != Some(&b'{') {
            out.push(word(from).0);
            continue;
        }
        let (mut depth, mut expect_name, mut i) = (0, true, from);
        while i < bytes.len() {
            match bytes[i] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                b',' if depth == 1 => expect_name = true,
                c if c.is_ascii_whitespace() => {}
                c if depth == 1 && expect_name && ident(c) => {
                    let (name, end) = word(i);
                    out.push(name);
                    expect_name = false;
                    i = end;
                    continue;
                }
                _ if depth == 1 => expect_name = false,
                _ => {}
            }
            i += 1;
        }
        from = i;
    }
    out
}

/// A cycle of `graph` as the path `a → b → … → a`, if there is one.
pub fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit<'g>(
        graph: &'g Graph,
        node: &'g str,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

/// `graph` without the `allowed` edges, each of which must still exist:
/// panics naming an allowed edge that has gone, so that an allow-list of
/// edges left for later only shrinks.
pub fn without(mut graph: Graph, allowed: &[(&str, &str)]) -> Graph {
    for (from, to) in allowed {
        assert!(
            graph.get_mut(*from).is_some_and(|e| e.remove(*to)),
            "{from} → {to} is allowed but no longer exists; remove it from ALLOWED"
        );
    }
    graph
}

/// Panics naming a cycle of `graph`, if it has one.
pub fn assert_acyclic(graph: &Graph) {
    if let Some(cycle) = find_cycle(graph) {
        panic!(
            "module cycle: {}; make the lower module not name the upper one (ADR-021)",
            cycle.join(" → ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pattern-core's graph.
    fn pattern_core() -> Graph {
        graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
    }

    #[test]
    fn references_are_read_from_paths_and_groups() {
        let code = "use crate::a::B;\nuse crate::{c, d::{E, f::G}, h};\nlet x = my_crate::z; \
                    crate::i::j();";
        assert_eq!(references(code), ["a", "c", "d", "h", "i"]);
    }

    #[test]
    fn cycles_are_found_and_allowed_edges_must_exist() {
        let mut g = Graph::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("a".into());
        assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "a"]);
        let g = without(g, &[("b", "a")]);
        assert_eq!(find_cycle(&g), None);
        let gone = std::panic::catch_unwind(|| without(g, &[("b", "a")]));
        assert!(gone.is_err(), "an allowed edge that has gone is reported");
    }

    #[test]
    fn the_module_graph_is_acyclic() {
        assert_acyclic(&pattern_core());
    }

    #[test]
    fn paging_and_idempotency_know_no_dal() {
        let graph = pattern_core();
        for leaf in ["paging", "idempotency"] {
            for dal in ["keyvalue", "timeseries", "pubsub"] {
                assert!(
                    !graph[leaf].contains(dal),
                    "{leaf} must not use {dal}: a DAL's cursor or fingerprint belongs in \
                     the DAL's module"
                );
            }
        }
        let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(graph["idempotency"], names(&[]), "idempotency is a leaf");
        assert!(
            graph["paging"].is_subset(&names(&["error", "idempotency"])),
            "paging uses only error and idempotency, not {:?}",
            graph["paging"]
        );
    }
}
