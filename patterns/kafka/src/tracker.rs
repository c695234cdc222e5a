//! The in-memory delivery state of one consumer group on one topic: which
//! fetched messages are waiting, in flight (delivered, not yet acked) or
//! being dead-lettered, how often each was delivered, and which offset may
//! be committed. Pure bookkeeping, no I/O: the consumer task feeds it
//! fetched messages and rebalances, pulls take deliveries from it, acks
//! and nacks update it.
//!
//! Committed offsets follow the *contiguous acknowledged prefix*: a
//! partition's commit position is its lowest offset not yet acknowledged
//! (or, when every fetched message is acknowledged, the offset after the
//! last fetched one). A crash therefore redelivers every unacknowledged
//! message and possibly some acknowledged ones after it, never loses one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A fetched message, as kept until it is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMessage {
    pub ordering_key: String,
    pub attributes: BTreeMap<String, String>,
    pub payload: Vec<u8>,
    /// The Kafka record timestamp, in milliseconds since the epoch.
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for delivery (new, nacked).
    Ready,
    /// Delivered; due for redelivery at `due_ms`.
    InFlight { due_ms: u64 },
    /// Being published to the dead-letter topic.
    DeadLettering,
}

#[derive(Debug)]
struct Entry {
    message: Arc<StoredMessage>,
    /// Deliveries so far.
    attempts: u32,
    /// The number of the latest delivery (0: none yet).
    delivery: u64,
    state: State,
    /// Fetch order across partitions, to interleave partitions fairly.
    arrival: u64,
}

#[derive(Debug, Default)]
struct Partition {
    entries: BTreeMap<i64, Entry>,
    /// The offset after the last fetched message; None before the first.
    next_fetch: Option<i64>,
    /// The last commit position handed out by [`Tracker::commit_positions`].
    committed: Option<i64>,
}

impl Partition {
    fn position(&self) -> Option<i64> {
        self.entries.keys().next().copied().or(self.next_fetch)
    }
}

/// One message handed to a consumer by [`Tracker::take`].
#[derive(Debug, Clone)]
pub(crate) struct Taken {
    pub partition: i32,
    pub offset: i64,
    pub delivery: u64,
    /// Deliveries including this one.
    pub attempts: u32,
    pub message: Arc<StoredMessage>,
}

/// What one [`Tracker::take`] produced.
#[derive(Debug, Default)]
pub(crate) struct TakeOutcome {
    /// Deliveries to return, in delivery order.
    pub deliveries: Vec<Taken>,
    /// Messages out of attempts, to publish to the dead-letter topic and
    /// then [`Tracker::finish_dead_letter`].
    pub dead_letters: Vec<Taken>,
}

/// The delivery state of one group on one topic, for the partitions this
/// backend currently owns.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    partitions: HashMap<i32, Partition>,
    next_arrival: u64,
    buffered: usize,
}

impl Tracker {
    /// Messages held (waiting, in flight or being dead-lettered).
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// The group assigned `partition` to this backend.
    pub fn assign(&mut self, partition: i32) {
        self.partitions.entry(partition).or_default();
    }

    /// The group took `partition` away: its messages are forgotten (another
    /// member will deliver them from the committed offset, attempt 1).
    pub fn revoke(&mut self, partition: i32) {
        if let Some(p) = self.partitions.remove(&partition) {
            self.buffered -= p.entries.len();
        }
    }

    /// Adds a fetched message. Returns false (and keeps nothing) when the
    /// partition is not assigned or the offset was already fetched.
    pub fn insert(&mut self, partition: i32, offset: i64, message: StoredMessage) -> bool {
        let Some(p) = self.partitions.get_mut(&partition) else {
            return false;
        };
        if p.next_fetch.is_some_and(|next| offset < next) {
            return false;
        }
        p.next_fetch = Some(offset + 1);
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        p.entries.insert(
            offset,
            Entry {
                message: Arc::new(message),
                attempts: 0,
                delivery: 0,
                state: State::Ready,
                arrival,
            },
        );
        self.buffered += 1;
        true
    }

    /// Up to `max` deliveries due at `now_ms` (waiting messages and
    /// in-flight ones past their deadline), each partition in offset order,
    /// partitions interleaved by timestamp then fetch order. A due message
    /// already delivered `max_attempts` times is returned as a dead letter
    /// instead. Each delivery gets a number from `next_delivery` and is due
    /// again at `now_ms + ack_deadline_ms`.
    pub fn take(
        &mut self,
        now_ms: u64,
        max: usize,
        ack_deadline_ms: u64,
        max_attempts: u32,
        mut next_delivery: impl FnMut() -> u64,
    ) -> TakeOutcome {
        let mut out = TakeOutcome::default();
        // Per partition, the due offsets in order (at most `max` each).
        let mut queues: Vec<(i32, std::collections::VecDeque<i64>)> = Vec::new();
        let mut ids: Vec<i32> = self.partitions.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let p = self.partitions.get_mut(&id).expect("listed partition");
            let mut due = std::collections::VecDeque::new();
            for (&offset, entry) in p.entries.iter_mut() {
                if due.len() >= max {
                    break;
                }
                let ready = match entry.state {
                    State::Ready => true,
                    State::InFlight { due_ms } => due_ms <= now_ms,
                    State::DeadLettering => false,
                };
                if !ready {
                    continue;
                }
                if entry.attempts >= max_attempts {
                    entry.state = State::DeadLettering;
                    out.dead_letters.push(Taken {
                        partition: id,
                        offset,
                        delivery: entry.delivery,
                        attempts: entry.attempts,
                        message: entry.message.clone(),
                    });
                } else {
                    due.push_back(offset);
                }
            }
            if !due.is_empty() {
                queues.push((id, due));
            }
        }
        while out.deliveries.len() < max {
            // The partition whose next message is oldest.
            let mut best: Option<(usize, (i64, u64))> = None;
            for (i, (id, q)) in queues.iter().enumerate() {
                if let Some(offset) = q.front() {
                    let e = &self.partitions[id].entries[offset];
                    let rank = (e.message.timestamp_ms, e.arrival);
                    if best.is_none_or(|(_, r)| rank < r) {
                        best = Some((i, rank));
                    }
                }
            }
            let Some((i, _)) = best else { break };
            let (id, q) = &mut queues[i];
            let offset = q.pop_front().expect("non-empty queue");
            let entry = self
                .partitions
                .get_mut(id)
                .and_then(|p| p.entries.get_mut(&offset))
                .expect("queued entry");
            entry.attempts += 1;
            entry.delivery = next_delivery();
            entry.state = State::InFlight {
                due_ms: now_ms.saturating_add(ack_deadline_ms),
            };
            out.deliveries.push(Taken {
                partition: *id,
                offset,
                delivery: entry.delivery,
                attempts: entry.attempts,
                message: entry.message.clone(),
            });
        }
        out
    }

    /// The earliest time an in-flight message falls due, if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.partitions
            .values()
            .flat_map(|p| p.entries.values())
            .filter_map(|e| match e.state {
                State::InFlight { due_ms } => Some(due_ms),
                _ => None,
            })
            .min()
    }

    /// The in-flight entry of delivery `delivery` at `partition`/`offset`.
    fn outstanding(&mut self, partition: i32, offset: i64, delivery: u64) -> Option<&mut Entry> {
        self.partitions
            .get_mut(&partition)?
            .entries
            .get_mut(&offset)
            .filter(|e| e.delivery == delivery && matches!(e.state, State::InFlight { .. }))
    }

    /// Acknowledges a delivery; false when it is not outstanding (acked
    /// already, redelivered since, or its partition was revoked).
    pub fn ack(&mut self, partition: i32, offset: i64, delivery: u64) -> bool {
        if self.outstanding(partition, offset, delivery).is_none() {
            return false;
        }
        self.remove(partition, offset);
        true
    }

    /// Makes an outstanding delivery due at once; false when it is not
    /// outstanding.
    pub fn nack(&mut self, partition: i32, offset: i64, delivery: u64) -> bool {
        match self.outstanding(partition, offset, delivery) {
            Some(entry) => {
                entry.state = State::Ready;
                true
            }
            None => false,
        }
    }

    /// A dead letter was published: the message is done.
    pub fn finish_dead_letter(&mut self, partition: i32, offset: i64, delivery: u64) {
        let dead = self
            .partitions
            .get(&partition)
            .and_then(|p| p.entries.get(&offset))
            .is_some_and(|e| e.delivery == delivery && e.state == State::DeadLettering);
        if dead {
            self.remove(partition, offset);
        }
    }

    /// Publishing a dead letter failed: the message waits to be tried again.
    pub fn abort_dead_letter(&mut self, partition: i32, offset: i64, delivery: u64) {
        if let Some(e) = self
            .partitions
            .get_mut(&partition)
            .and_then(|p| p.entries.get_mut(&offset))
            .filter(|e| e.delivery == delivery && e.state == State::DeadLettering)
        {
            e.state = State::Ready;
        }
    }

    fn remove(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&partition)
            && p.entries.remove(&offset).is_some()
        {
            self.buffered -= 1;
        }
    }

    /// Every owned partition's commit position.
    pub fn all_positions(&self) -> Vec<(i32, i64)> {
        let mut out: Vec<_> = self
            .partitions
            .iter()
            .filter_map(|(&id, p)| p.position().map(|pos| (id, pos)))
            .collect();
        out.sort_unstable();
        out
    }

    /// The commit positions that moved since the last call, for the given
    /// partitions (all when `only` is None), marked as committed.
    pub fn commit_positions(&mut self, only: Option<&[i32]>) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&id, p) in self.partitions.iter_mut() {
            if only.is_some_and(|o| !o.contains(&id)) {
                continue;
            }
            if let Some(pos) = p.position()
                && p.committed.is_none_or(|c| pos > c)
            {
                p.committed = Some(pos);
                out.push((id, pos));
            }
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ts: i64) -> StoredMessage {
        StoredMessage {
            ordering_key: String::new(),
            attributes: BTreeMap::new(),
            payload: vec![],
            timestamp_ms: ts,
        }
    }

    fn counter() -> impl FnMut() -> u64 {
        let mut n = 0;
        move || {
            n += 1;
            n
        }
    }

    #[test]
    fn commits_only_the_acknowledged_prefix() {
        let mut t = Tracker::default();
        t.assign(0);
        for off in 10..13 {
            assert!(t.insert(0, off, msg(1)));
        }
        assert!(!t.insert(0, 11, msg(1)), "an offset is kept once");
        let mut next = counter();
        let got = t.take(0, 10, 1000, 5, &mut next);
        assert_eq!(got.deliveries.len(), 3);
        let d: Vec<_> = got
            .deliveries
            .iter()
            .map(|d| (d.offset, d.delivery))
            .collect();
        // Ack 11 and 12: 10 is still outstanding, so the position stays 10.
        assert!(t.ack(0, d[1].0, d[1].1));
        assert!(t.ack(0, d[2].0, d[2].1));
        assert_eq!(t.commit_positions(None), vec![(0, 10)]);
        assert_eq!(t.commit_positions(None), vec![], "unchanged");
        assert!(t.ack(0, d[0].0, d[0].1));
        assert!(!t.ack(0, d[0].0, d[0].1), "a second ack counts 0");
        assert_eq!(t.commit_positions(None), vec![(0, 13)]);
        assert_eq!(t.buffered(), 0);
    }

    #[test]
    fn redelivers_after_the_deadline_and_dead_letters_after_max_attempts() {
        let mut t = Tracker::default();
        t.assign(0);
        t.insert(0, 0, msg(1));
        let mut next = counter();
        let first = t.take(0, 10, 100, 2, &mut next);
        assert_eq!(first.deliveries[0].attempts, 1);
        assert!(t.take(99, 10, 100, 2, &mut next).deliveries.is_empty());
        assert_eq!(t.next_due_ms(), Some(100));
        let second = t.take(100, 10, 100, 2, &mut next);
        assert_eq!(second.deliveries[0].attempts, 2);
        assert!(
            !t.ack(0, 0, first.deliveries[0].delivery),
            "an ack of a delivery redelivered since counts 0"
        );
        assert!(t.nack(0, 0, second.deliveries[0].delivery));
        let third = t.take(100, 10, 100, 2, &mut next);
        assert!(third.deliveries.is_empty());
        assert_eq!(third.dead_letters.len(), 1);
        assert!(t.take(1000, 10, 100, 2, &mut next).dead_letters.is_empty());
        assert_eq!(t.commit_positions(None), vec![(0, 0)]);
        let d = &third.dead_letters[0];
        t.finish_dead_letter(d.partition, d.offset, d.delivery);
        assert_eq!(t.commit_positions(None), vec![(0, 1)]);
    }

    #[test]
    fn keeps_partition_order_and_interleaves_by_time() {
        let mut t = Tracker::default();
        t.assign(0);
        t.assign(1);
        t.insert(1, 0, msg(5));
        t.insert(0, 0, msg(10));
        t.insert(0, 1, msg(3)); // an older timestamp later in partition 0
        t.insert(1, 1, msg(20));
        let got = t.take(0, 10, 100, 5, counter());
        let order: Vec<_> = got
            .deliveries
            .iter()
            .map(|d| (d.partition, d.offset))
            .collect();
        assert_eq!(order, vec![(1, 0), (0, 0), (0, 1), (1, 1)]);
    }

    #[test]
    fn revoke_forgets_and_refuses_late_fetches() {
        let mut t = Tracker::default();
        t.assign(2);
        t.insert(2, 0, msg(1));
        let got = t.take(0, 10, 100, 5, counter());
        t.revoke(2);
        assert_eq!(t.buffered(), 0);
        assert!(!t.ack(2, 0, got.deliveries[0].delivery));
        assert!(!t.insert(2, 1, msg(1)));
    }
}
