//! A store in memory: the embedded default's demo namespaces and
//! configurations built in code. Changes made through the admin API last
//! until the proxy stops; point `namespaces.dir` at a directory to keep
//! them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use super::{ConfigStore, StoreError, StoredNamespace};

#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    last: u64,
    items: BTreeMap<String, StoredNamespace>,
}

impl MemoryStore {
    /// A store holding `seed` (`(name, yaml, source)`), versions 1, 2, ...
    /// in order.
    pub fn new(seed: impl IntoIterator<Item = (String, String, String)>) -> Self {
        let mut inner = Inner::default();
        for (name, yaml, source) in seed {
            inner.last += 1;
            inner.items.insert(
                name.clone(),
                StoredNamespace {
                    name,
                    yaml,
                    version: inner.last,
                    source,
                },
            );
        }
        MemoryStore {
            inner: Mutex::new(inner),
            changed: watch::channel(0).0,
        }
    }

    fn check(inner: &Inner, name: &str, expected: Option<u64>) -> Result<(), StoreError> {
        let actual = inner.items.get(name).map_or(0, |n| n.version);
        match expected {
            Some(expected) if expected != actual => Err(StoreError::VersionMismatch {
                name: name.to_string(),
                expected,
                actual,
            }),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl ConfigStore for MemoryStore {
    fn describe(&self) -> String {
        "memory (changes last until the proxy stops)".to_string()
    }

    async fn list(&self) -> Result<Vec<StoredNamespace>, StoreError> {
        Ok(self
            .inner
            .lock()
            .expect("memory store lock")
            .items
            .values()
            .cloned()
            .collect())
    }

    async fn put(
        &self,
        name: &str,
        yaml: &str,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        let version = {
            let mut inner = self.inner.lock().expect("memory store lock");
            Self::check(&inner, name, expected_version)?;
            inner.last += 1;
            let version = inner.last;
            inner.items.insert(
                name.to_string(),
                StoredNamespace {
                    name: name.to_string(),
                    yaml: yaml.to_string(),
                    version,
                    source: format!("memory key {name}"),
                },
            );
            version
        };
        self.changed.send_replace(version);
        Ok(version)
    }

    async fn delete(&self, name: &str, expected_version: Option<u64>) -> Result<u64, StoreError> {
        let version = {
            let mut inner = self.inner.lock().expect("memory store lock");
            Self::check(&inner, name, expected_version)?;
            if inner.items.remove(name).is_none() {
                return Err(StoreError::NotFound {
                    name: name.to_string(),
                });
            }
            inner.last += 1;
            inner.last
        };
        self.changed.send_replace(version);
        Ok(version)
    }

    async fn watch(&self) -> Result<mpsc::Receiver<()>, StoreError> {
        let (tx, rx) = mpsc::channel(1);
        let mut changed = self.changed.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    c = changed.changed() => if c.is_err() { return },
                    () = tx.closed() => return,
                }
                if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                    return;
                }
            }
        });
        Ok(rx)
    }
}
