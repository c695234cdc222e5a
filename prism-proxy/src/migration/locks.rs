//! Striped per-id locks: the writes of one id through this proxy, and the
//! repairs of it, run one at a time.

use std::hash::BuildHasher;

use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 4096;

pub struct IdLocks {
    stripes: Vec<Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for IdLocks {
    fn default() -> Self {
        IdLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: Default::default(),
        }
    }
}

impl IdLocks {
    fn stripe(&self, id: &str) -> usize {
        (self.hasher.hash_one(id) as usize) % STRIPES
    }

    /// Locks `id`.
    pub async fn lock(&self, id: &str) -> MutexGuard<'_, ()> {
        self.stripes[self.stripe(id)].lock().await
    }

    /// Locks every id of `ids`, in stripe order (no deadlock between two
    /// callers locking overlapping sets).
    pub async fn lock_all<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = ids.map(|id| self.stripe(id)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.stripes[s].lock().await);
        }
        guards
    }
}
