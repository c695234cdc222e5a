//! A backend that claims `ttl` but never expires anything: memstore behind
//! `BrokenTtlClaim`. Its ttl case must fail; the acceptance runner
//! (`tooling/acceptance.py --include-broken-fixture`) runs it with
//! `--ignored` to prove that a false capability claim fails the matrix.

mod embedded {
    pattern_core::keyvalue_acceptance_suite!(
        #[ignore = "a deliberately broken fixture for the acceptance runner"]
        mode = "embedded",
        pattern_core::acceptance::fixtures::BrokenTtlClaim(pattern_memstore::MemstoreFactory),
        serde_json::json!({})
    );
}
