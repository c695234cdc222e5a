use super::*;
use crate::config::{ConfigError, NamespaceConfig, ProxyConfig};

fn catalog() -> BackendCatalog {
    BackendCatalog {
        postgres: Some(PostgresStore {
            url: "postgres://app:pw@127.0.0.1:5432/test".into(),
            schema: Some("prism_needs".into()),
            pool_size: Some(4),
        }),
        redis: Some(RedisStore {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: None,
        }),
        nats: None,
        kafka: None,
        source: "etc/prism.yaml".into(),
    }
}

fn only_redis() -> BackendCatalog {
    BackendCatalog {
        postgres: None,
        ..catalog()
    }
}

/// Parses a namespace whose body after `dal` is `needs`.
fn with_needs(needs: &str, catalog: &BackendCatalog) -> Result<NamespaceConfig, ConfigError> {
    NamespaceConfig::parse_with(
        "ns/x.yaml",
        &format!("name: x\ndal: keyvalue\nneeds:\n{needs}"),
        catalog,
    )
}

fn chosen(needs: &str, catalog: &BackendCatalog) -> (String, Selection) {
    let ns = with_needs(needs, catalog).unwrap_or_else(|e| panic!("{e}"));
    (ns.backend.kind.clone(), ns.selection.expect("a selection"))
}

fn reasons_of(selection: &Selection, kind: &str) -> String {
    selection
        .rejected
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("{kind} not among the rejected"))
        .reasons
        .join(" | ")
}

#[test]
fn a_cache_goes_to_memstore() {
    let (kind, s) = chosen(
        "  durability: none\n  read_rps: 15000\n  p99_latency_ms: 5\n",
        &catalog(),
    );
    assert_eq!(kind, "memstore");
    let why = s.reasons.join(" | ");
    assert!(why.contains("`durability: none`"), "{why}");
    assert!(
        why.contains("`read_rps: 15000`: memstore sustains about 20000 reads/s"),
        "{why}"
    );
    assert!(
        why.contains("first backend in the preference order"),
        "{why}"
    );
    // sqlite's and postgres's p99 and read rates are too high/low.
    assert!(reasons_of(&s, "sqlite").contains("`read_rps: 15000`"));
    assert!(reasons_of(&s, "postgres").contains("`p99_latency_ms: 5`"));
    // redis is fast enough to answer, not to sustain the reads.
    assert!(reasons_of(&s, "redis").contains("redis sustains about 5000 reads/s"));
}

#[test]
fn a_small_durable_local_namespace_goes_to_sqlite() {
    let (kind, s) = chosen(
        "  durability: durable\n  data_size: 20GiB\n  write_rps: 1000\n",
        &BackendCatalog::default(),
    );
    assert_eq!(kind, "sqlite");
    let memstore = reasons_of(&s, "memstore");
    assert!(memstore.contains("`durability: durable`"), "{memstore}");
    assert!(
        memstore.contains("`data_size: 20GiB`: memstore holds up to 1GiB"),
        "{memstore}"
    );
    let postgres = reasons_of(&s, "postgres");
    assert!(
        postgres.starts_with("not a candidate: prism.yaml configures no `backends.postgres`"),
        "{postgres}"
    );
    assert!(postgres.contains("`write_rps: 1000`"), "{postgres}");
    assert!(s.settings_from.is_none());
    let ns = with_needs("  data_size: 1GB\n", &BackendCatalog::default()).unwrap();
    assert_eq!(ns.backend.options, serde_json::json!({}));
}

#[test]
fn a_shared_durable_namespace_goes_to_postgres_with_the_catalog_settings() {
    let ns = with_needs(
        "  scope: shared\n  write_rps: 200\n  retention_days: 30\n",
        &catalog(),
    )
    .unwrap();
    assert_eq!(ns.backend.kind, "postgres");
    assert_eq!(ns.backend.mode, crate::config::BackendMode::Embedded);
    assert_eq!(
        ns.backend.options,
        serde_json::json!({
            "url": "postgres://app:pw@127.0.0.1:5432/test",
            "schema": "prism_needs",
            "pool_size": 4,
        })
    );
    let s = ns.selection.unwrap();
    let why = s.reasons.join(" | ");
    assert!(
        why.contains("`scope: shared`: postgres is a shared store"),
        "{why}"
    );
    assert!(why.contains("`durability: durable` (default)"), "{why}");
    assert!(
        why.contains("`backends.postgres` in etc/prism.yaml"),
        "{why}"
    );
    assert_eq!(s.settings_from.as_deref(), Some("etc/prism.yaml"));
    assert!(reasons_of(&s, "sqlite").contains("`scope: shared`: sqlite is local to one proxy"));
    let redis = reasons_of(&s, "redis");
    assert!(redis.contains("`durability: durable` (default)"), "{redis}");
    assert!(redis.contains("`retention_days: 30`"), "{redis}");
}

#[test]
fn a_fast_shared_volatile_namespace_goes_to_redis() {
    let (kind, s) = chosen(
        "  scope: shared\n  durability: none\n  write_rps: 3000\n",
        &catalog(),
    );
    assert_eq!(kind, "redis");
    let why = s.reasons.join(" | ");
    assert!(
        why.contains("`write_rps: 3000`: redis sustains about 4000 writes/s"),
        "{why}"
    );
    let postgres = reasons_of(&s, "postgres");
    assert!(
        postgres.contains("`write_rps: 3000`: postgres sustains about 500 writes/s per namespace (writes of one namespace serialize"),
        "{postgres}"
    );
    assert!(reasons_of(&s, "memstore").contains("`scope: shared`"));
}

#[test]
fn restart_durability_takes_sqlite_locally_and_redis_when_shared() {
    let (kind, _) = chosen("  durability: restart\n", &catalog());
    assert_eq!(kind, "sqlite");
    let (kind, s) = chosen("  durability: restart\n  scope: shared\n", &catalog());
    assert_eq!(kind, "redis");
    assert!(
        reasons_of(&s, "postgres").contains("meets every need, but redis comes first"),
        "{s:?}"
    );
}

#[test]
fn defaults_are_strong_durable_and_local() {
    let (kind, s) = chosen("  {}\n", &catalog());
    assert_eq!(kind, "sqlite");
    let shown: Vec<String> = s.needs.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "`consistency: strong` (default)",
            "`durability: durable` (default)",
            "`scope: local` (default)"
        ]
    );
    let (_, s) = chosen("  durability: none\n  write_rps: 10\n", &catalog());
    assert!(!s.needs[1].defaulted);
    assert_eq!(s.needs[3].need, Need::WriteRps(10));
}

#[test]
fn a_need_nothing_meets_is_named_alone() {
    let err = with_needs("  durability: none\n  write_rps: 50000\n", &catalog()).unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.field.as_str()),
        ("ns/x.yaml", "needs.write_rps")
    );
    assert!(
        err.message
            .starts_with("`write_rps: 50000` cannot be met by any configured backend"),
        "{err}"
    );
    assert!(
        err.message
            .contains("memstore sustains about 18000 writes/s"),
        "{err}"
    );
    assert!(err.message.contains("lower `write_rps`"), "{err}");
    assert!(!err.message.contains("conflict"), "{err}");
}

#[test]
fn a_need_only_an_unconfigured_store_meets_says_what_to_configure() {
    let err = with_needs("  scope: shared\n", &BackendCatalog::default()).unwrap_err();
    assert_eq!(err.field, "needs.scope");
    assert!(
        err.message.contains("sqlite is local to one proxy"),
        "{err}"
    );
    assert!(
        err.message.contains("redis or postgres would meet it but are not configured: add `backends.redis` or `backends.postgres` to prism.yaml"),
        "{err}"
    );
}

#[test]
fn two_needs_that_conflict_are_named_together() {
    let err = with_needs("  write_rps: 10000\n", &catalog()).unwrap_err();
    assert_eq!(err.field, "needs");
    assert!(
        err.message.starts_with(
            "`durability: durable` (default) and `write_rps: 10000` conflict: the backends that \
             meet `durability: durable` (default) (sqlite, postgres) fail `write_rps: 10000`"
        ),
        "{err}"
    );
    assert!(
        err.message.contains("sqlite sustains about 3500 writes/s"),
        "{err}"
    );
    assert!(
        err.message.contains("lower `write_rps`")
            && err.message.contains("accept `durability: restart`"),
        "{err}"
    );

    // Only redis configured: shared + durable conflict, and postgres would fit.
    let err = with_needs("  scope: shared\n  durability: durable\n", &only_redis()).unwrap_err();
    assert_eq!(err.field, "needs");
    assert!(
        err.message
            .contains("`durability: durable` and `scope: shared` conflict"),
        "{err}"
    );
    assert!(
        err.message.contains("postgres would meet every need but is not configured: add `backends.postgres` to etc/prism.yaml"),
        "{err}"
    );
}

#[test]
fn needs_that_conflict_only_all_together_are_listed_per_backend() {
    let err = with_needs("  scope: shared\n  p99_latency_ms: 50\n", &catalog()).unwrap_err();
    assert_eq!(err.field, "needs");
    assert!(
        err.message.contains("every two of them can be met"),
        "{err}"
    );
    assert!(
        err.message.contains("postgres fails `p99_latency_ms: 50`")
            && err
                .message
                .contains("redis fails `durability: durable` (default)")
            && err.message.contains("sqlite fails `scope: shared`"),
        "{err}"
    );
}

#[test]
fn retention_needs_data_that_outlives_restarts() {
    let (kind, s) = chosen("  durability: none\n  retention_days: 7\n", &catalog());
    assert_eq!(kind, "sqlite");
    assert!(reasons_of(&s, "memstore").contains("cannot promise to keep items for days"));
    let (kind, _) = chosen("  durability: none\n  retention_days: 0\n", &catalog());
    assert_eq!(kind, "memstore");
}

#[test]
fn backend_and_needs_are_exclusive() {
    let both = NamespaceConfig::parse(
        "ns/x.yaml",
        "name: x\ndal: keyvalue\nbackend: {kind: sqlite}\nneeds: {durability: none}\n",
    )
    .unwrap_err();
    assert_eq!(both.field, "needs");
    assert!(
        both.message
            .contains("either `backend` or `needs`, not both"),
        "{both}"
    );
    let neither = NamespaceConfig::parse("ns/x.yaml", "name: x\ndal: keyvalue\n").unwrap_err();
    assert_eq!(neither.field, "backend");
    assert!(
        neither
            .message
            .contains("is required unless the namespace states `needs`"),
        "{neither}"
    );
    let empty = NamespaceConfig::parse(
        "ns/x.yaml",
        "name: x\ndal: keyvalue\nbackend: {kind: ''}\nneeds: {}\n",
    )
    .unwrap_err();
    assert_eq!(empty.field, "backend");
    assert!(empty.message.contains("`kind` is empty"), "{empty}");
}

#[test]
fn needs_are_parsed_strictly() {
    let cases = [
        (
            "  durability: forever\n",
            "needs.durability",
            "`none`, `restart`",
        ),
        ("  write_rps: lots\n", "needs.write_rps", "invalid type"),
        ("  write_rps: -5\n", "needs.write_rps", "expected u64"),
        ("  writes_per_sec: 5\n", "needs.writes_per_sec", "write_rps"),
        ("  data_size: 20 gigs\n", "needs.data_size", "such as 20GiB"),
        ("  data_size: 20\n", "needs.data_size", "has no unit"),
        ("  scope: global\n", "needs.scope", "`local`"),
    ];
    for (needs, field, says) in cases {
        let err = with_needs(needs, &catalog()).unwrap_err();
        assert_eq!(err.field, field, "{needs}: {err}");
        assert!(err.message.contains(says), "{needs}: {err}");
    }
}

#[test]
fn data_sizes_parse_and_print() {
    assert_eq!(DataSize::parse("20GiB"), Ok(DataSize(20 << 30)));
    assert_eq!(DataSize::parse("500 MB"), Ok(DataSize(500_000_000)));
    assert_eq!(DataSize::parse("1tib"), Ok(DataSize(1 << 40)));
    assert_eq!(DataSize::parse("7B"), Ok(DataSize(7)));
    assert!(DataSize::parse("GiB").is_err());
    assert!(DataSize::parse("1.5GiB").is_err());
    assert!(
        DataSize::parse("99999999999TiB")
            .unwrap_err()
            .contains("too large")
    );
    assert_eq!(format_size(1 << 30), "1GiB");
    assert_eq!(format_size(20_000_000_000), "20GB");
    assert_eq!(format_size(1500), "1500B");
    assert_eq!(DataSize(3 << 20).to_string(), "3MiB");
}

#[test]
fn prism_yaml_backends_feed_the_selection() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ns")).unwrap();
    std::fs::write(
        dir.path().join("prism.yaml"),
        "namespaces: {dir: ns}\nbackends:\n  redis:\n    url: redis://127.0.0.1:6379\n    key_prefix: fleet\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ns/a.yaml"),
        "name: a\ndal: keyvalue\nneeds: {scope: shared, durability: restart}\n",
    )
    .unwrap();
    let cfg = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap();
    let ns = &cfg.namespaces[0];
    assert_eq!(ns.backend.kind, "redis");
    assert_eq!(ns.backend.options["key_prefix"], "fleet");
    assert!(cfg.backends.redis.is_some());
    let settings = ns
        .selection
        .as_ref()
        .unwrap()
        .settings_from
        .clone()
        .unwrap();
    assert!(settings.ends_with("prism.yaml"), "{settings}");

    std::fs::write(
        dir.path().join("prism.yaml"),
        "namespaces: {dir: ns}\nbackends:\n  redis:\n    uri: redis://127.0.0.1:6379\n",
    )
    .unwrap();
    let err = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap_err();
    assert_eq!(err.field, "backends.redis.uri");
    assert!(
        err.message.contains("unknown field `uri`, expected"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("prism.yaml"),
        "namespaces: {dir: ns}\nbackends:\n  mongo: {url: x}\n",
    )
    .unwrap();
    let err = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap_err();
    assert!(
        err.message.contains("postgres") && err.message.contains("redis"),
        "{err}"
    );
}

#[test]
fn bad_catalog_settings_are_blamed_on_prism_yaml() {
    let mut bad = catalog();
    bad.postgres.as_mut().unwrap().url = "not a url".into();
    let ns = with_needs("  scope: shared\n", &bad).unwrap();
    let err = crate::resolver::Resolver::builtin().check(&ns).unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.field.as_str()),
        ("etc/prism.yaml", "backends.postgres")
    );
    assert!(
        err.message
            .contains("namespace 'x' was placed on postgres by its needs"),
        "{err}"
    );
}

#[test]
fn selection_is_deterministic() {
    let a = with_needs("  scope: shared\n  durability: none\n", &catalog()).unwrap();
    let b = with_needs("  scope: shared\n  durability: none\n", &catalog()).unwrap();
    assert_eq!(a, b);
    let kinds: Vec<&str> = crate::resolver::builtin()
        .needs_profiles(crate::dal::KEYVALUE)
        .iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds, ["memstore", "sqlite", "redis", "postgres"]);
}
