use std::sync::Arc;
use std::time::Duration;

use pattern_core::SystemClock;
use pattern_core::keyvalue::PutItem;

use super::*;
use crate::audit::{AuditLog, TailFilter};
use crate::config::AuditConfig;
use crate::store::DirStore;

const ORDERS: &str = "name: orders\ndal: keyvalue\nbackend:\n  kind: memstore\n";

struct Fixture {
    dir: tempfile::TempDir,
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    manager: Arc<Manager>,
}

/// A manager on a directory store holding `files` (`(file, yaml)`).
async fn fixture(files: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir(&ns_dir).unwrap();
    for (file, yaml) in files {
        std::fs::write(ns_dir.join(file), yaml).unwrap();
    }
    let registry = Arc::new(Registry::empty());
    let audit = AuditLog::start(&AuditConfig::default(), dir.path())
        .await
        .unwrap();
    let manager = Manager::new(ManagerSetup {
        store: Arc::new(DirStore::new(&ns_dir)),
        registry: registry.clone(),
        audit: audit.clone(),
        catalog: BackendCatalog::default(),
        resolver: Resolver::builtin(),
        data_dir: dir.path().to_path_buf(),
        schema_base: Some(ns_dir.clone()),
        clock: Arc::new(SystemClock),
        grace: Duration::from_secs(5),
    });
    let report = manager.load_initial().await.unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    Fixture {
        dir,
        registry,
        audit,
        manager,
    }
}

fn admin_records(audit: &AuditLog, namespace: &str) -> Vec<(String, String, String, Option<u64>)> {
    let filter = TailFilter {
        namespace: namespace.to_string(),
        principal: String::new(),
        status: String::new(),
    };
    audit
        .tail()
        .snapshot(&filter, 100)
        .0
        .iter()
        .filter(|r| r.dal == "admin")
        .map(|r| {
            (
                r.principal.clone(),
                r.method.clone(),
                r.status.clone(),
                r.config_version,
            )
        })
        .collect()
}

async fn put(ns: &Namespace, key: &str) {
    ns.kv()
        .unwrap()
        .put(
            "id",
            vec![PutItem {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                ttl: None,
                expected_version: None,
            }],
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn apply_creates_then_updates_keeping_the_backend_and_its_data() {
    let f = fixture(&[]).await;
    let created = f
        .manager
        .apply(ORDERS, false, Some(0), "alice", Authority::Operator)
        .await
        .unwrap();
    assert!(created.created && created.changed && created.version > 0);
    assert!(f.dir.path().join("namespaces/orders.yaml").is_file());
    let v1 = f.registry.get("orders").unwrap();
    put(&v1, "k").await;

    let changed = format!("{ORDERS}description: the orders\n");
    let dry = f
        .manager
        .apply(&changed, true, None, "alice", Authority::Operator)
        .await
        .unwrap();
    assert!(dry.dry_run && dry.changed && dry.errors.is_empty());
    assert!(
        dry.diff.contains("+description: the orders"),
        "{}",
        dry.diff
    );
    assert_eq!(dry.version, created.version, "a dry run changes nothing");
    assert_eq!(f.registry.get("orders").unwrap().version, created.version);

    let updated = f
        .manager
        .apply(&changed, false, None, "alice", Authority::Operator)
        .await
        .unwrap();
    assert!(!updated.created && updated.version > created.version);
    let v2 = f.registry.get("orders").unwrap();
    assert_eq!(v2.config.description, "the orders");
    assert!(v2.shares_backend(&v1), "only the description changed");
    let got = v2
        .kv()
        .unwrap()
        .get(
            "id",
            &pattern_core::keyvalue::Selection::All,
            pattern_core::keyvalue::PageRequest {
                budget_bytes: 1 << 20,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        got.items.len(),
        1,
        "the data written before the change is there"
    );

    let again = f
        .manager
        .apply(&changed, false, None, "alice", Authority::Operator)
        .await
        .unwrap();
    assert!(
        !again.changed && again.version == updated.version,
        "unchanged"
    );

    let records = admin_records(&f.audit, "orders");
    assert_eq!(
        records,
        [
            (
                "alice".into(),
                "ApplyNamespace".into(),
                "OK".into(),
                Some(created.version)
            ),
            (
                "alice".into(),
                "ApplyNamespace".into(),
                "OK".into(),
                Some(updated.version)
            ),
        ]
    );
}

#[tokio::test]
async fn an_invalid_change_is_rejected_and_the_previous_version_keeps_serving() {
    let f = fixture(&[("orders.yaml", ORDERS)]).await;
    let before = f.registry.get("orders").unwrap();
    let bad = "name: orders\ndal: keyvalue\nbackend:\n  kind: nosuch\n";
    let dry = f
        .manager
        .apply(bad, true, None, "bob", Authority::Operator)
        .await
        .unwrap();
    assert_eq!(dry.errors.len(), 1);
    assert_eq!(dry.errors[0].field, "backend.kind");
    assert!(
        dry.errors[0].message.contains("known kinds"),
        "{}",
        dry.errors[0]
    );
    let err = f
        .manager
        .apply(bad, false, None, "bob", Authority::Operator)
        .await
        .unwrap_err();
    assert!(matches!(err, ManageError::Invalid(_)), "{err}");
    let now = f.registry.get("orders").unwrap();
    assert!(Arc::ptr_eq(&now, &before), "still the same namespace");
    assert_eq!(
        std::fs::read_to_string(f.dir.path().join("namespaces/orders.yaml")).unwrap(),
        ORDERS,
        "the file is untouched"
    );
    let records = admin_records(&f.audit, "orders");
    assert_eq!(records.last().unwrap().2, "INVALID_ARGUMENT");

    // A stale expected version is refused and changes nothing.
    let err = f
        .manager
        .apply(
            &format!("{ORDERS}description: x\n"),
            false,
            Some(before.version + 10),
            "bob",
            Authority::Operator,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("someone else changed it"), "{err}");
    assert!(Arc::ptr_eq(&f.registry.get("orders").unwrap(), &before));
}

#[tokio::test]
async fn file_edits_are_picked_up_and_a_broken_file_is_reported_not_served() {
    let f = fixture(&[("orders.yaml", ORDERS)]).await;
    let path = f.dir.path().join("namespaces/orders.yaml");
    let v1 = f.registry.get("orders").unwrap().version;
    std::fs::write(&path, format!("{ORDERS}limits:\n  max_key_bytes: 64\n")).unwrap();
    let report = f.manager.reload().await.unwrap();
    assert_eq!(report.applied, ["orders"]);
    let v2 = f.registry.get("orders").unwrap();
    assert!(v2.version > v1);
    assert_eq!(v2.config.limits.max_key_bytes, 64);

    std::fs::write(
        &path,
        "name: orders\ndal: keyvalue\nbackend: {kind: memstore}\nlimits: {max_key_bytes: 0}\n",
    )
    .unwrap();
    let report = f.manager.reload().await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].1.field, "limits.max_key_bytes");
    assert_eq!(
        f.registry.get("orders").unwrap().version,
        v2.version,
        "v2 serves"
    );
    // Reported again on the next reload, not re-applied.
    assert_eq!(f.manager.reload().await.unwrap().rejected.len(), 1);
    let records = admin_records(&f.audit, "orders");
    assert_eq!(
        records.iter().filter(|r| r.2 == "INVALID_ARGUMENT").count(),
        1,
        "one record per rejected version: {records:?}"
    );

    std::fs::remove_file(&path).unwrap();
    let report = f.manager.reload().await.unwrap();
    assert_eq!(report.removed, ["orders"]);
    assert!(f.registry.get("orders").is_none());
    assert!(f.manager.rejected().is_empty());
}

#[tokio::test]
async fn delete_waits_for_calls_in_flight_then_closes_the_backend() {
    let f = fixture(&[("orders.yaml", ORDERS)]).await;
    let held = f.registry.get("orders").unwrap();
    let manager = f.manager.clone();
    let deleting = tokio::spawn(async move { manager.delete("orders", None, "carol").await });
    // New calls no longer find it while the held one still runs.
    tokio::time::timeout(Duration::from_secs(5), async {
        while f.registry.get("orders").is_some() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert!(
        !deleting.is_finished(),
        "delete waits for the call in flight"
    );
    put(&held, "late").await;
    drop(held);
    let version = deleting.await.unwrap().unwrap();
    assert!(version > 0);
    assert!(!f.dir.path().join("namespaces/orders.yaml").exists());
    let err = f.manager.delete("orders", None, "carol").await.unwrap_err();
    assert!(matches!(err, ManageError::NotFound(_)));
    let records = admin_records(&f.audit, "orders");
    assert_eq!(
        records,
        [
            (
                STORE_PRINCIPAL.into(),
                "LoadNamespace".into(),
                "OK".into(),
                Some(1)
            ),
            (
                "carol".into(),
                "DeleteNamespace".into(),
                "OK".into(),
                Some(version)
            ),
        ],
        "the load at start-up, then the delete"
    );
}

#[tokio::test]
async fn a_backend_change_opens_a_new_backend_and_closes_the_old_one_after_its_calls() {
    let f = fixture(&[("orders.yaml", ORDERS)]).await;
    let old = f.registry.get("orders").unwrap();
    let sqlite = "name: orders\ndal: keyvalue\nbackend:\n  kind: sqlite\n";
    f.manager
        .apply(sqlite, false, None, "dave", Authority::Operator)
        .await
        .unwrap();
    let new = f.registry.get("orders").unwrap();
    assert!(!new.shares_backend(&old));
    assert_eq!(new.backend.kind(), "sqlite");
    // The call holding the old namespace still completes on it.
    put(&old, "k").await;
}
