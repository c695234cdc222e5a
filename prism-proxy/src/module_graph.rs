//! The top-level modules of `prism-proxy` form a graph by their `crate::`
//! references; this test keeps it acyclic (ADR-021). A module may use a
//! module below it, never one that (directly or not) uses it back.
//!
//! Leaves: `permission` (what a policy grants) depends on nothing in the
//! crate; `config` knows no principals and no policy evaluation; `metrics`
//! knows no module whose metrics it renders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Edges that still close a cycle and are left for later, each with why.
/// The test fails once an edge here disappears, so the list only shrinks.
const ALLOWED: &[(&str, &str)] = &[
    // `ProxyConfig::resolver()` builds the backend resolver from the
    // configuration; the resolver reads configuration back.
    ("config", "resolver"),
    // The resolver finds pattern binaries with the registry's lookup; the
    // registry resolves backends.
    ("resolver", "registry"),
    // The error type maps a limit's rejection to a status; limits return
    // errors.
    ("error", "limits"),
];

/// A graph of top-level module → the top-level modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The graph of the crate whose sources are in `src`: every `crate::`
/// reference (outside `//` comments) of a file under a top-level module
/// names an edge. Tests are left out (files `tests.rs` and `*_tests.rs`,
/// and everything after a file's first `#[cfg(test)]`): a test may reach
/// across layers. `lib.rs` and `main.rs` are the roots, not modules.
fn graph(src: &Path) -> Graph {
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
fn references(code: &str) -> Vec<&str> {
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
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
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

/// The crate's graph without `allowed`, each of which must still exist
/// (remove an entry once its edge is gone).
fn graph_without(allowed: &[(&str, &str)]) -> Graph {
    let mut graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    for (from, to) in allowed {
        assert!(
            graph.get_mut(*from).is_some_and(|e| e.remove(*to)),
            "{from} → {to} is allowed but no longer exists; remove it from ALLOWED"
        );
    }
    graph
}

#[test]
fn references_are_read_from_paths_and_groups() {
    let code =
        "use crate::a::B;\nuse crate::{c, d::{E, f::G}, h};\nlet x = my_crate::z; crate::i::j();";
    assert_eq!(references(code), ["a", "c", "d", "h", "i"]);
}

#[test]
fn the_module_graph_is_acyclic_but_for_the_listed_edges() {
    let graph = graph_without(ALLOWED);
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "module cycle: {}; make the lower module not name the upper one (ADR-021)",
            cycle.join(" → ")
        );
    }
}

#[test]
fn leaves_stay_leaves() {
    let graph = graph_without(&[]);
    assert_eq!(graph["permission"], BTreeSet::new(), "permission is a leaf");
    for (from, not) in [
        ("config", "policy"),
        ("config", "auth"),
        ("metrics", "audit"),
        ("auth", "policy"),
    ] {
        assert!(!graph[from].contains(not), "{from} must not use {not}");
    }
}
