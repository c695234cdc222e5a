use std::path::Path;

use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn embedded_default_has_the_demo_namespaces() {
    let cfg = ProxyConfig::embedded_default().unwrap();
    let names: Vec<_> = cfg.namespaces.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["demo-mem", "demo-sqlite"]);
    assert_eq!(cfg.listeners.grpc.to_string(), "127.0.0.1:8980");
    assert_eq!(cfg.listeners.admin.to_string(), "127.0.0.1:8981");
    assert_eq!(cfg.data_dir, Path::new("./data"));
    assert_eq!(cfg.namespaces[1].backend.kind, "sqlite");
}

#[test]
fn unknown_field_names_file_field_and_allowed_fields() {
    let err = NamespaceConfig::parse(
        "ns/orders.yaml",
        "name: orders\ndal: keyvalue\nbackend:\n  kind: memstore\nlimits:\n  max_value_byte: 10\n",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("ns/orders.yaml: field `limits"), "{msg}");
    assert!(msg.contains("unknown field `max_value_byte`"), "{msg}");
    assert!(
        msg.contains("max_value_bytes"),
        "lists what is allowed: {msg}"
    );
}

#[test]
fn mistyped_field_is_reported() {
    let err = NamespaceConfig::parse(
        "x.yaml",
        "name: x\ndal: keyvalue\nbackend:\n  kind: memstore\nlimits:\n  max_key_bytes: lots\n",
    )
    .unwrap_err();
    assert_eq!(err.field, "limits.max_key_bytes");
    assert!(err.message.contains("invalid type"), "{err}");
}

#[test]
fn unknown_dal_lists_the_known_ones() {
    let err = NamespaceConfig::parse(
        "x.yaml",
        "name: x\ndal: graphs\nbackend:\n  kind: memstore\n",
    )
    .unwrap_err();
    assert_eq!(err.field, "dal");
    assert!(err.message.contains("keyvalue"), "{err}");
}

#[test]
fn bad_name_and_limits_are_refused() {
    let err = NamespaceConfig::parse(
        "x.yaml",
        "name: Bad Name\ndal: keyvalue\nbackend: {kind: memstore}\n",
    )
    .unwrap_err();
    assert_eq!(err.field, "name");
    let err = NamespaceConfig::parse(
        "x.yaml",
        "name: x\ndal: keyvalue\nbackend: {kind: memstore}\nlimits: {default_page_size_bytes: 10, max_page_size_bytes: 5}\n",
    )
    .unwrap_err();
    assert_eq!(err.field, "limits.default_page_size_bytes");
}

#[test]
fn loads_a_directory_and_resolves_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ns")).unwrap();
    write(
        dir.path(),
        "prism.yaml",
        "listeners:\n  grpc: 127.0.0.1:7000\n  admin: 127.0.0.1:7001\nnamespaces:\n  dir: ns\ndata_dir: state\n",
    );
    write(
        &dir.path().join("ns"),
        "a.yaml",
        "name: a\ndal: keyvalue\nbackend:\n  kind: memstore\n",
    );
    write(
        &dir.path().join("ns"),
        "b.yml",
        "name: b\ndal: keyvalue\nbackend:\n  kind: sqlite\n  options:\n    synchronous: normal\n",
    );
    write(&dir.path().join("ns"), "README.md", "not a namespace");
    let cfg = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap();
    assert_eq!(cfg.namespaces.len(), 2);
    assert_eq!(cfg.data_dir, dir.path().join("state"));
    assert_eq!(cfg.listeners.grpc.port(), 7000);
    assert_eq!(cfg.namespaces[1].backend.options["synchronous"], "normal");
}

#[test]
fn duplicate_namespace_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        "name: same\ndal: keyvalue\nbackend: {kind: memstore}\n",
    );
    write(
        dir.path(),
        "b.yaml",
        "name: same\ndal: keyvalue\nbackend: {kind: memstore}\n",
    );
    let err = load_namespace_dir(dir.path(), &BackendCatalog::default()).unwrap_err();
    assert!(err.message.contains("already defined"), "{err}");
    assert!(err.file.ends_with("b.yaml"));
}

#[test]
fn unknown_top_level_field_in_prism_yaml() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "prism.yaml", "listener:\n  grpc: 127.0.0.1:1\n");
    let err = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap_err();
    assert!(err.message.contains("unknown field `listener`"), "{err}");
    assert!(err.message.contains("listeners"), "{err}");
}

#[test]
fn prism_yaml_must_name_an_existing_namespace_dir() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "prism.yaml", "data_dir: state\n");
    let err = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap_err();
    assert_eq!(err.field, "namespaces.dir");
    assert!(err.message.contains("required"), "{err}");
    write(dir.path(), "prism.yaml", "namespaces:\n  dir: missing\n");
    let err = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap_err();
    assert!(err.file.ends_with("prism.yaml"));
    assert_eq!(err.field, "namespaces.dir");
    assert!(err.message.contains("is not a directory"), "{err}");
}

#[test]
fn type_errors_name_the_field_once() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "prism.yaml", "listeners:\n  grpc: nowhere\n");
    let err = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap_err();
    assert_eq!(err.field, "listeners.grpc");
    assert_eq!(
        err.to_string().matches("listeners.grpc").count(),
        1,
        "{err}"
    );
}

#[test]
fn backend_options_are_checked_with_the_config() {
    let resolver = crate::resolver::Resolver::builtin();
    let ns = NamespaceConfig::parse(
        "ns/a.yaml",
        "name: a\ndal: keyvalue\nbackend:\n  kind: sqlite\n  options:\n    readers: many\n",
    )
    .unwrap();
    let err = resolver.check(&ns).unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.field.as_str()),
        ("ns/a.yaml", "backend.options")
    );
    assert!(err.message.contains("`readers`"), "{err}");
    let ns = NamespaceConfig::parse(
        "ns/b.yaml",
        "name: b\ndal: keyvalue\nbackend:\n  kind: mongo\n",
    )
    .unwrap();
    let err = resolver.check(&ns).unwrap_err();
    assert_eq!(err.field, "backend.kind");
    assert!(
        err.message
            .contains("known kinds: memstore, postgres, redis, sqlite"),
        "{err}"
    );
}

#[test]
fn schema_and_policy_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.proto"), crate::schema::tests::PROFILE).unwrap();
    let file = dir.path().join("ns.yaml").display().to_string();
    let parse = |extra: &str| {
        NamespaceConfig::parse(
            &file,
            &format!("name: profiles\ndal: keyvalue\nbackend:\n  kind: memstore\n{extra}"),
        )
    };
    let err =
        parse("schema:\n  proto: p.proto\n  message: acme.users.v1.UserProfile\n").unwrap_err();
    assert_eq!(err.field, "backend.kind");
    assert!(
        err.message.contains("asks for backend \"postgres\""),
        "{err}"
    );
    let err = parse("schema:\n  proto: nope.proto\n  message: a.B\n").unwrap_err();
    assert_eq!(err.field, "schema");
    assert!(err.message.contains("nope.proto does not exist"), "{err}");
    let err = parse("schema:\n  proto: p.proto\n  message: acme.users.v1.Order\n  encoding: xml\n")
        .unwrap_err();
    assert_eq!(err.field, "schema.encoding");
    std::fs::write(
        dir.path().join("q.proto"),
        crate::schema::tests::PROFILE
            .replace("option (prism.options.v1.backend) = \"postgres\";", ""),
    )
    .unwrap();
    let err = parse(
        "schema:\n  proto: q.proto\n  message: acme.users.v1.UserProfile\naudit:\n  policy: drop\n",
    )
    .unwrap_err();
    assert_eq!(err.field, "audit.policy");
    assert!(err.message.contains("`ssn`"), "{err}");
    assert!(err.message.contains("access_audit"), "{err}");
    parse("schema:\n  proto: q.proto\n  message: acme.users.v1.UserProfile\naudit:\n  policy: block\n")
        .unwrap();
    let err = parse("policy:\n  read: [\"alice\"]\n").unwrap_err();
    assert_eq!(err.field, "policy.read[0]");
    let ok = parse(
        "schema:\n  proto: p.proto\n  message: acme.users.v1.Order\npolicy:\n  read: [\"*\"]\n",
    )
    .unwrap();
    assert_eq!(
        ok.compiled_schema.unwrap().message_name(),
        "acme.users.v1.Order"
    );
}

#[test]
fn the_profiles_example_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/profiles");
    let namespaces = load_namespace_dir(&dir, &Default::default()).unwrap();
    assert_eq!(namespaces.len(), 1);
    let schema = namespaces[0].compiled_schema.as_ref().unwrap();
    assert_eq!(schema.message_name(), "acme.users.v1.UserProfile");
    assert!(schema.has_pii());
}

fn load_with_audit(audit: &str) -> Result<ProxyConfig, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ns")).unwrap();
    write(
        dir.path(),
        "prism.yaml",
        &format!("namespaces:\n  dir: ns\naudit:\n{audit}"),
    );
    ProxyConfig::load(&dir.path().join("prism.yaml"))
}

#[test]
fn audit_defaults_to_a_file_under_the_data_dir_and_block() {
    let cfg = ProxyConfig::embedded_default().unwrap();
    let SinkConfig::File(file) = &cfg.audit.sink else {
        panic!("file sink by default")
    };
    assert_eq!(
        file.path(Path::new("/d")),
        Path::new("/d/audit/audit.jsonl")
    );
    assert_eq!(
        cfg.audit.hash_key_path(Path::new("/d")),
        Path::new("/d/audit/hash.key")
    );
    assert_eq!(file.keep, 10);
    assert_eq!(cfg.namespaces[0].audit.policy, AuditPolicy::Block);
    assert!(!cfg.namespaces[0].audit.clear_keys);
}

#[test]
fn audit_settings_are_strict_and_name_the_field() {
    let cfg = load_with_audit("  sink: nats\n  nats:\n    subject_prefix: a.b\n").unwrap();
    assert!(matches!(&cfg.audit.sink, SinkConfig::Nats(n) if n.subject_prefix == "a.b"));

    let err = load_with_audit("  file:\n    max_byte: 10\n").unwrap_err();
    assert!(err.field.starts_with("audit.file"), "{err}");
    assert!(err.message.contains("unknown field `max_byte`"), "{err}");
    let err = load_with_audit("  sink: nats\n  file: {keep: 2}\n").unwrap_err();
    assert_eq!(err.field, "audit.file");
    assert!(err.message.contains("only to audit.sink file"), "{err}");
    let err = load_with_audit("  sink: nats\n").unwrap_err();
    assert_eq!(err.field, "audit.nats");
    let err = load_with_audit("  sink: nats\n  nats: {subject_prefix: 'a.*'}\n").unwrap_err();
    assert_eq!(err.field, "audit.nats.subject_prefix");
    let err = load_with_audit("  file: {keep: 0}\n").unwrap_err();
    assert_eq!(err.field, "audit.file.keep");
    let err = load_with_audit("  sink: kafka\n").unwrap_err();
    assert_eq!(err.field, "audit.sink");
    assert!(
        err.message.contains("file") && err.message.contains("nats"),
        "{err}"
    );
}

#[test]
fn namespace_audit_policy_is_checked() {
    let ns = NamespaceConfig::parse(
        "x.yaml",
        "name: x\ndal: keyvalue\nbackend: {kind: memstore}\naudit: {policy: drop, clear_keys: true}\n",
    )
    .unwrap();
    assert_eq!(ns.audit.policy, AuditPolicy::Drop);
    assert!(ns.audit.clear_keys);
    let err = NamespaceConfig::parse(
        "x.yaml",
        "name: x\ndal: keyvalue\nbackend: {kind: memstore}\naudit: {policy: sometimes}\n",
    )
    .unwrap_err();
    assert_eq!(err.field, "audit.policy");
    assert!(
        err.message.contains("block") && err.message.contains("drop"),
        "{err}"
    );
}

#[test]
fn a_shared_store_replaces_the_directory_and_exactly_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "prism.yaml",
        "namespaces:\n  store:\n    postgres:\n      url: postgres://p@db/prism\n",
    );
    let config = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap();
    assert_eq!(
        config.store,
        StoreSpec::Postgres {
            url: "postgres://p@db/prism".into(),
            table: "prism_config.namespaces".into()
        }
    );
    assert!(config.namespaces.is_empty() && config.store.is_shared());
    assert_eq!(config.schema_dir, dir.path());

    write(
        dir.path(),
        "prism.yaml",
        "namespaces:\n  store:\n    nats: {url: 'nats://h:4222'}\n    postgres: {url: 'postgres://db'}\n",
    );
    let err = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap_err();
    assert_eq!(err.field, "namespaces.store");
    assert!(err.message.contains("exactly one"), "{err}");

    std::fs::create_dir(dir.path().join("ns")).unwrap();
    write(
        dir.path(),
        "prism.yaml",
        "namespaces:\n  dir: ns\n  store:\n    nats: {url: 'nats://h:4222'}\n",
    );
    let err = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap_err();
    assert!(err.message.contains("not both"), "{err}");

    write(
        dir.path(),
        "prism.yaml",
        "namespaces: {dir: ns}\nauth: {admins: ['group:ops', 'ops']}\n",
    );
    let err = ProxyConfig::load(&dir.path().join("prism.yaml")).unwrap_err();
    assert_eq!(err.field, "auth.admins[1]");
}
