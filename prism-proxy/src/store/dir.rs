//! The embedded default store: a directory with one YAML file per
//! namespace.
//!
//! A namespace's name is the `name:` inside its file, whatever the file is
//! called; an apply through the admin API writes `<name>.yaml` (or the file
//! already holding that namespace), atomically. Versions are counted by
//! this proxy: each distinct content a file is seen with gets the next
//! number, so they start again at each start-up (a shared store keeps them).
//! Watching polls the directory's listing, sizes and modification times.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{ConfigStore, StoreError, StoredNamespace};

/// How often the directory is checked for changes.
const POLL: Duration = Duration::from_millis(300);

#[derive(Debug)]
pub struct DirStore {
    dir: PathBuf,
    state: Mutex<Versions>,
    /// Serializes puts and deletes against each other and against list.
    write: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Versions {
    next: u64,
    /// name → (content hash, version).
    seen: HashMap<String, (u64, u64)>,
}

impl Versions {
    fn version_of(&mut self, name: &str, hash: u64) -> u64 {
        if let Some((h, v)) = self.seen.get(name)
            && *h == hash
        {
            return *v;
        }
        self.next += 1;
        self.seen.insert(name.to_string(), (hash, self.next));
        self.next
    }

    fn removed(&mut self, name: &str) -> u64 {
        self.seen.remove(name);
        self.next += 1;
        self.next
    }
}

/// Just the name of a namespace file.
#[derive(Deserialize)]
struct NameOnly {
    name: Option<String>,
}

fn content_hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl DirStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirStore {
            dir: dir.into(),
            state: Mutex::new(Versions::default()),
            write: tokio::sync::Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn unavailable(&self, message: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            store: self.describe(),
            message: message.into(),
        }
    }

    /// The YAML files, sorted by path.
    fn files(&self) -> Result<Vec<PathBuf>, StoreError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| self.unavailable(format!("cannot read {}: {e}", self.dir.display())))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// name → (path, text) of every file; a name in two files is an error.
    fn scan(&self) -> Result<BTreeMap<String, (PathBuf, String)>, StoreError> {
        let mut out: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
        for path in self.files()? {
            let shown = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                // Removed between listing and reading.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::Invalid(format!("{shown}: cannot read: {e}"))),
            };
            // A file that does not parse keeps its file name as its key, so
            // the manager reports the YAML error for it.
            let name = yaml_serde::from_str::<NameOnly>(&text)
                .ok()
                .and_then(|n| n.name)
                .unwrap_or_else(|| {
                    path.file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
            if let Some((other, _)) = out.get(&name) {
                return Err(StoreError::Invalid(format!(
                    "{shown}: field `name`: namespace '{name}' is already defined in {}; \
                     remove one of the two files",
                    other.display()
                )));
            }
            out.insert(name, (path, text));
        }
        Ok(out)
    }

    /// A cheap fingerprint of the directory: names, sizes, mtimes.
    fn fingerprint(dir: &Path) -> u64 {
        let mut h = DefaultHasher::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut items: Vec<(PathBuf, u64, Option<SystemTime>)> = entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let meta = e.metadata().ok();
                    (
                        e.path(),
                        meta.as_ref().map_or(0, |m| m.len()),
                        meta.and_then(|m| m.modified().ok()),
                    )
                })
                .collect();
            items.sort();
            items.hash(&mut h);
        }
        h.finish()
    }

    fn current_version(&self, name: &str, scanned: &BTreeMap<String, (PathBuf, String)>) -> u64 {
        match scanned.get(name) {
            Some((_, text)) => self
                .state
                .lock()
                .expect("versions lock")
                .version_of(name, content_hash(text)),
            None => 0,
        }
    }

    fn check_expected(
        &self,
        name: &str,
        expected: Option<u64>,
        scanned: &BTreeMap<String, (PathBuf, String)>,
    ) -> Result<(), StoreError> {
        if let Some(expected) = expected {
            let actual = self.current_version(name, scanned);
            if actual != expected {
                return Err(StoreError::VersionMismatch {
                    name: name.to_string(),
                    expected,
                    actual,
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ConfigStore for DirStore {
    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    async fn list(&self) -> Result<Vec<StoredNamespace>, StoreError> {
        let _guard = self.write.lock().await;
        let scanned = self.scan()?;
        let mut state = self.state.lock().expect("versions lock");
        let gone: Vec<String> = state
            .seen
            .keys()
            .filter(|n| !scanned.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            state.removed(&name);
        }
        Ok(scanned
            .into_iter()
            .map(|(name, (path, yaml))| {
                let version = state.version_of(&name, content_hash(&yaml));
                StoredNamespace {
                    name,
                    yaml,
                    version,
                    source: path.display().to_string(),
                }
            })
            .collect())
    }

    async fn put(
        &self,
        name: &str,
        yaml: &str,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        let _guard = self.write.lock().await;
        let scanned = self.scan()?;
        self.check_expected(name, expected_version, &scanned)?;
        let path = scanned
            .get(name)
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| self.dir.join(format!("{name}.yaml")));
        let tmp = self.dir.join(format!(".{name}.yaml.tmp"));
        let write = std::fs::write(&tmp, yaml).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = write {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.unavailable(format!("cannot write {}: {e}", path.display())));
        }
        Ok(self
            .state
            .lock()
            .expect("versions lock")
            .version_of(name, content_hash(yaml)))
    }

    async fn delete(&self, name: &str, expected_version: Option<u64>) -> Result<u64, StoreError> {
        let _guard = self.write.lock().await;
        let scanned = self.scan()?;
        self.check_expected(name, expected_version, &scanned)?;
        let Some((path, _)) = scanned.get(name) else {
            return Err(StoreError::NotFound {
                name: name.to_string(),
            });
        };
        std::fs::remove_file(path)
            .map_err(|e| self.unavailable(format!("cannot remove {}: {e}", path.display())))?;
        Ok(self.state.lock().expect("versions lock").removed(name))
    }

    async fn watch(&self) -> Result<mpsc::Receiver<()>, StoreError> {
        let (tx, rx) = mpsc::channel(1);
        let dir = self.dir.clone();
        tokio::spawn(async move {
            let mut last = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || DirStore::fingerprint(&dir)
            })
            .await
            .unwrap_or(0);
            loop {
                tokio::time::sleep(POLL).await;
                let dir2 = dir.clone();
                let now = tokio::task::spawn_blocking(move || DirStore::fingerprint(&dir2))
                    .await
                    .unwrap_or(0);
                if now != last {
                    last = now;
                    match tx.try_send(()) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                        Err(mpsc::error::TrySendError::Closed(())) => return,
                    }
                } else if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_grow_with_each_change_and_files_are_found_by_inner_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.yaml"), "name: orders\ndal: keyvalue\n").unwrap();
        let store = DirStore::new(dir.path());
        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "orders");
        let v1 = listed[0].version;
        assert_eq!(
            store.list().await.unwrap()[0].version,
            v1,
            "unchanged: same version"
        );
        let v2 = store
            .put("orders", "name: orders\ndal: keyvalue\n# b\n", Some(v1))
            .await
            .unwrap();
        assert!(v2 > v1);
        // The existing file was rewritten; no second file appeared.
        assert!(!dir.path().join("orders.yaml").exists());
        let err = store.put("orders", "name: orders\n", Some(v1)).await;
        assert!(matches!(err, Err(StoreError::VersionMismatch { actual, .. }) if actual == v2));
        let err = store.put("fresh", "name: fresh\n", Some(1)).await;
        assert!(matches!(
            err,
            Err(StoreError::VersionMismatch { actual: 0, .. })
        ));
        let v3 = store.put("fresh", "name: fresh\n", Some(0)).await.unwrap();
        assert!(dir.path().join("fresh.yaml").exists());
        let v4 = store.delete("fresh", None).await.unwrap();
        assert!(v4 > v3 && v3 > v2);
        assert!(matches!(
            store.delete("fresh", None).await,
            Err(StoreError::NotFound { .. })
        ));
        let names: Vec<_> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["orders"]);
    }

    #[tokio::test]
    async fn a_name_in_two_files_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "name: dup\n").unwrap();
        std::fs::write(dir.path().join("b.yaml"), "name: dup\n").unwrap();
        let err = DirStore::new(dir.path())
            .list()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.yaml") && err.contains("b.yaml"), "{err}");
    }

    #[tokio::test]
    async fn an_edit_wakes_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path());
        let mut rx = store.watch().await.unwrap();
        // The watcher takes its first fingerprint before polling; keep
        // changing the directory until it reports one.
        let woke = tokio::time::timeout(Duration::from_secs(10), async {
            let mut i = 0;
            loop {
                i += 1;
                std::fs::write(dir.path().join("n.yaml"), format!("name: n{i}\n")).unwrap();
                if tokio::time::timeout(Duration::from_millis(500), rx.recv())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
        })
        .await;
        assert!(woke.is_ok(), "no change noticed within 10 s");
    }
}
