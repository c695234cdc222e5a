//! Recent records in memory, and a broadcast of new ones, for
//! `AdminService/TailAudit` (`prismctl audit tail`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

use super::AuditRecord;

/// How many new records a slow follower may fall behind before it misses
/// some.
const FOLLOW_BUFFER: usize = 1024;

/// The ring of recent records and the broadcast of new ones.
pub struct Tail {
    capacity: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    ring: VecDeque<Arc<AuditRecord>>,
    /// `None` once closed: followers' streams end.
    tx: Option<broadcast::Sender<Arc<AuditRecord>>>,
}

/// Which records a tail wants; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    pub namespace: String,
    pub principal: String,
    /// A gRPC status name, matched without regard to case.
    pub status: String,
}

impl TailFilter {
    pub fn matches(&self, r: &AuditRecord) -> bool {
        (self.namespace.is_empty() || self.namespace == r.namespace)
            && (self.principal.is_empty() || self.principal == r.principal)
            && (self.status.is_empty() || self.status.eq_ignore_ascii_case(&r.status))
    }
}

impl Tail {
    /// Keeps the last `capacity` records.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(FOLLOW_BUFFER);
        Tail {
            capacity,
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(capacity.min(4096)),
                tx: Some(tx),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds written records.
    pub fn push(&self, records: impl IntoIterator<Item = Arc<AuditRecord>>) {
        let mut inner = self.lock();
        for record in records {
            if self.capacity > 0 {
                if inner.ring.len() == self.capacity {
                    inner.ring.pop_front();
                }
                inner.ring.push_back(record.clone());
            }
            if let Some(tx) = &inner.tx {
                // No follower: nothing to do.
                let _ = tx.send(record);
            }
        }
    }

    /// The last `limit` records matching `filter`, oldest first, and (if
    /// not closed) a receiver of every record pushed after them: taken
    /// together, nothing is missed or repeated.
    pub fn snapshot(
        &self,
        filter: &TailFilter,
        limit: usize,
    ) -> (
        Vec<Arc<AuditRecord>>,
        Option<broadcast::Receiver<Arc<AuditRecord>>>,
    ) {
        let inner = self.lock();
        let mut recent: Vec<_> = inner
            .ring
            .iter()
            .rev()
            .filter(|r| filter.matches(r))
            .take(limit)
            .cloned()
            .collect();
        recent.reverse();
        (recent, inner.tx.as_ref().map(broadcast::Sender::subscribe))
    }

    /// Ends every follower's stream; later records are still kept in the
    /// ring.
    pub fn close(&self) {
        self.lock().tx = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(namespace: &str, status: &str) -> Arc<AuditRecord> {
        Arc::new(AuditRecord {
            time: String::new(),
            principal: "anonymous".into(),
            namespace: namespace.into(),
            dal: "keyvalue".into(),
            method: "Get".into(),
            ids: vec![],
            keys: vec![],
            selection: None,
            truncated: false,
            pii_fields: vec![],
            status: status.into(),
            latency_us: 1,
            trace_id: String::new(),
            config_version: None,
        })
    }

    #[tokio::test]
    async fn snapshot_then_follow_misses_nothing() {
        let tail = Tail::new(3);
        tail.push(["a", "b", "a", "a", "b"].map(|n| record(n, "OK")));
        let filter = TailFilter {
            namespace: "a".into(),
            ..Default::default()
        };
        // Ring holds the last 3 (a, a, b); two of them match.
        let (recent, rx) = tail.snapshot(&filter, 10);
        assert_eq!(recent.len(), 2);
        let (last, _) = tail.snapshot(&filter, 1);
        assert_eq!(last.len(), 1);
        let mut rx = rx.unwrap();
        tail.push([record("a", "NOT_FOUND")]);
        let next = rx.recv().await.unwrap();
        assert_eq!(next.status, "NOT_FOUND");
        let by_status = TailFilter {
            status: "not_found".into(),
            ..Default::default()
        };
        assert!(by_status.matches(&next));
        tail.close();
        assert!(rx.recv().await.is_err(), "closed tails end followers");
        assert!(tail.snapshot(&filter, 1).1.is_none());
    }
}
