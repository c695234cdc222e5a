//! The top-level modules of `prism-proxy` form a graph by their `crate::`
//! references; this test keeps it acyclic (ADR-021). A module may use a
//! module below it, never one that (directly or not) uses it back.
//!
//! Leaves: `permission` (what a policy grants) depends on nothing in the
//! crate; `config` knows no principals and no policy evaluation; `metrics`
//! knows no module whose metrics it renders.
//!
//! The graph is read by [`pattern_core::module_graph`], which pattern-core's
//! own layering test uses too.

use std::collections::BTreeSet;
use std::path::Path;

use pattern_core::module_graph::{self, Graph};

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

/// The crate's graph without `allowed`, each of which must still exist
/// (remove an entry once its edge is gone).
fn graph_without(allowed: &[(&str, &str)]) -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    module_graph::without(module_graph::graph(&src), allowed)
}

#[test]
fn the_module_graph_is_acyclic_but_for_the_listed_edges() {
    module_graph::assert_acyclic(&graph_without(ALLOWED));
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
