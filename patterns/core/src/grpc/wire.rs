//! Conversions between the backend protocol of TimeSeries and PubSub
//! patterns (`prism.pattern.v1.TimeSeriesBackend`, `PubSubBackend`) and
//! the backend traits' types, in both directions: a pattern host turns
//! requests into trait calls, a [`PatternBackend`](super::remote::PatternBackend)
//! turns trait calls into requests.

use std::time::Duration;

use prism_proto::pattern::v1 as wire;

use crate::error::BackendError;
use crate::pubsub::{Delivery, OutgoingMessage, StartAt, Subscription};
use crate::timeseries::{
    Event, EventKey, EventPage, Order, ReadQuery, StoredEvent, TailQuery, WriteSummary,
};

/// An event on the wire.
pub fn event_to_wire(e: &Event) -> wire::TsEvent {
    wire::TsEvent {
        series_id: e.series_id.clone(),
        time_us: e.time_us,
        event_id: e.event_id.clone(),
        tags: e.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        payload: e.payload.clone(),
    }
}

/// An event from the wire.
pub fn event(e: wire::TsEvent) -> Event {
    Event {
        series_id: e.series_id,
        time_us: e.time_us,
        event_id: e.event_id,
        tags: e.tags.into_iter().collect(),
        payload: e.payload,
    }
}

/// A stored event on the wire.
pub fn stored_to_wire(e: StoredEvent) -> wire::TsStoredEvent {
    wire::TsStoredEvent {
        event: Some(event_to_wire(&e.event)),
        sequence: e.sequence,
    }
}

/// Stored events from the wire; an entry without its event breaks the
/// protocol.
pub fn stored(events: Vec<wire::TsStoredEvent>) -> Result<Vec<StoredEvent>, &'static str> {
    events
        .into_iter()
        .map(|e| {
            Ok(StoredEvent {
                event: event(e.event.ok_or("returned a stored event without its event")?),
                sequence: e.sequence,
            })
        })
        .collect()
}

/// An event key on the wire.
pub fn key_to_wire(key: &EventKey) -> wire::TsEventKey {
    wire::TsEventKey {
        series_id: key.0.clone(),
        time_us: key.1,
        event_id: key.2.clone(),
    }
}

/// An event key from the wire.
pub fn key(key: wire::TsEventKey) -> EventKey {
    (key.series_id, key.time_us, key.event_id)
}

/// A Read page's position on the wire (no series).
fn position_to_wire(after: &(i64, String)) -> wire::TsEventKey {
    wire::TsEventKey {
        series_id: String::new(),
        time_us: after.0,
        event_id: after.1.clone(),
    }
}

/// A ranged read on the wire.
pub fn read_to_wire(namespace: &str, q: &ReadQuery) -> wire::TsReadRequest {
    wire::TsReadRequest {
        namespace: namespace.to_string(),
        series_id: q.series_id.clone(),
        start_us: q.start_us,
        end_us: q.end_us,
        tags: q.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        newest_first: q.order == Order::NewestFirst,
        budget_bytes: q.budget_bytes as u64,
        after: q.after.as_ref().map(position_to_wire),
    }
}

/// A ranged read from the wire.
pub fn read(r: wire::TsReadRequest) -> ReadQuery {
    ReadQuery {
        series_id: r.series_id,
        start_us: r.start_us,
        end_us: r.end_us,
        tags: r.tags.into_iter().collect(),
        order: if r.newest_first {
            Order::NewestFirst
        } else {
            Order::OldestFirst
        },
        budget_bytes: usize::try_from(r.budget_bytes).unwrap_or(usize::MAX).max(1),
        after: r.after.map(|k| (k.time_us, k.event_id)),
    }
}

/// A page on the wire.
pub fn page_to_wire(page: EventPage) -> wire::TsReadResponse {
    wire::TsReadResponse {
        events: page.events.into_iter().map(stored_to_wire).collect(),
        next: page.next.as_ref().map(position_to_wire),
    }
}

/// A page from the wire.
pub fn page(r: wire::TsReadResponse) -> Result<EventPage, &'static str> {
    Ok(EventPage {
        events: stored(r.events)?,
        next: r.next.map(|k| (k.time_us, k.event_id)),
    })
}

/// A write's summary on the wire.
pub fn summary_to_wire(s: WriteSummary, high_sequence: u64) -> wire::TsWriteResponse {
    wire::TsWriteResponse {
        written: s.written,
        duplicates: s.duplicates,
        high_sequence,
    }
}

/// Checks a batch of stored events answered for a `read_since` after
/// `after` with `limit`: at most `limit`, sequences strictly increasing and
/// above `after`. A pattern that breaks this would make a tail loop.
pub fn check_since(events: &[StoredEvent], after: u64, limit: usize) -> Result<(), &'static str> {
    if events.len() > limit {
        return Err("answered more events than asked for");
    }
    let mut last = after;
    for e in events {
        if e.sequence <= last {
            return Err("answered sequences that do not increase past the one asked after");
        }
        last = e.sequence;
    }
    Ok(())
}

/// Checks a scan's answer: at most `limit` events, in strictly increasing
/// identity order after `after`, none with a sequence above `up_to`. A
/// pattern that breaks this would make a backfill loop.
pub fn check_scan(
    events: &[StoredEvent],
    after: Option<&EventKey>,
    up_to: u64,
    limit: usize,
) -> Result<(), &'static str> {
    if events.len() > limit {
        return Err("answered more events than asked for");
    }
    let mut last: Option<EventKey> = after.cloned();
    for e in events {
        if e.sequence > up_to {
            return Err("answered an event written after the scan began");
        }
        let key = e.event.key();
        if last.as_ref().is_some_and(|l| key <= *l) {
            return Err("answered events out of identity order");
        }
        last = Some(key);
    }
    Ok(())
}

/// A tail's selection on the wire.
pub fn since_to_wire(
    namespace: &str,
    q: &TailQuery,
    after_sequence: u64,
    limit: usize,
) -> wire::TsReadSinceRequest {
    wire::TsReadSinceRequest {
        namespace: namespace.to_string(),
        series_id: q.series_id.clone(),
        from_us: q.from_us,
        tags: q.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        after_sequence,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
    }
}

/// A tail's selection from the wire.
pub fn since(r: &wire::TsReadSinceRequest) -> TailQuery {
    TailQuery {
        series_id: r.series_id.clone(),
        from_us: r.from_us,
        tags: r.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

/// A message to publish on the wire.
pub fn message_to_wire(m: &OutgoingMessage) -> wire::PsMessage {
    wire::PsMessage {
        ordering_key: m.ordering_key.clone(),
        attributes: m
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        payload: m.payload.clone(),
    }
}

/// A message to publish from the wire.
pub fn message(m: wire::PsMessage) -> OutgoingMessage {
    OutgoingMessage {
        ordering_key: m.ordering_key,
        attributes: m.attributes.into_iter().collect(),
        payload: m.payload,
    }
}

/// A pull on the wire.
pub fn pull_to_wire(
    namespace: &str,
    sub: &Subscription,
    max: usize,
    wait: Duration,
) -> wire::PsPullRequest {
    wire::PsPullRequest {
        namespace: namespace.to_string(),
        topic: sub.topic.clone(),
        group: sub.group.clone(),
        consumer: sub.consumer.clone(),
        ack_deadline_ms: u64::try_from(sub.ack_deadline.as_millis()).unwrap_or(u64::MAX),
        max_attempts: sub.max_attempts,
        start_earliest: sub.start_at == StartAt::Earliest,
        max: u32::try_from(max).unwrap_or(u32::MAX),
        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The most deliveries one pull returns, whatever it asks.
pub const MAX_PULL: usize = 10_000;
/// The longest a pull waits, whatever it asks: 5 minutes.
const MAX_PULL_WAIT_MS: u64 = 5 * 60 * 1000;
/// The longest ack deadline, whatever a pull asks: 24 hours.
const MAX_ACK_DEADLINE_MS: u64 = 24 * 60 * 60 * 1000;

/// A pull from the wire: the subscription, how many, how long to wait
/// (each clamped to a sane bound).
pub fn pull(r: wire::PsPullRequest) -> Result<(Subscription, usize, Duration), BackendError> {
    if r.topic.is_empty() || r.group.is_empty() || r.consumer.is_empty() {
        return Err(BackendError::InvalidArgument(
            "a pull names its topic, group and consumer".into(),
        ));
    }
    Ok((
        Subscription {
            topic: r.topic,
            group: r.group,
            consumer: r.consumer,
            ack_deadline: Duration::from_millis(r.ack_deadline_ms.clamp(1, MAX_ACK_DEADLINE_MS)),
            max_attempts: r.max_attempts.max(1),
            start_at: if r.start_earliest {
                StartAt::Earliest
            } else {
                StartAt::Latest
            },
        },
        usize::try_from(r.max)
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_PULL),
        Duration::from_millis(r.wait_ms.min(MAX_PULL_WAIT_MS)),
    ))
}

/// A delivery on the wire.
pub fn delivery_to_wire(d: Delivery) -> wire::PsDelivery {
    wire::PsDelivery {
        message_id: d.message_id,
        ack_id: d.ack_id,
        ordering_key: d.ordering_key,
        attributes: d.attributes.into_iter().collect(),
        payload: d.payload,
        publish_time_us: d.publish_time_us,
        attempt: d.attempt,
    }
}

/// A delivery from the wire.
pub fn delivery(d: wire::PsDelivery) -> Delivery {
    Delivery {
        message_id: d.message_id,
        ack_id: d.ack_id,
        ordering_key: d.ordering_key,
        attributes: d.attributes.into_iter().collect(),
        payload: d.payload,
        publish_time_us: d.publish_time_us,
        attempt: d.attempt,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_read_survives_the_wire() {
        let q = ReadQuery {
            series_id: "s".into(),
            start_us: Some(-5),
            end_us: None,
            tags: BTreeMap::from([("a".into(), "1".into())]),
            order: Order::NewestFirst,
            budget_bytes: 77,
            after: Some((9, "e".into())),
        };
        let back = read(read_to_wire("ns", &q));
        assert_eq!(
            (back.series_id, back.start_us, back.end_us, back.tags),
            (q.series_id, q.start_us, q.end_us, q.tags)
        );
        assert_eq!(
            (back.order, back.budget_bytes, back.after),
            (q.order, 77, q.after)
        );
    }

    #[test]
    fn a_pull_survives_the_wire_and_a_bad_one_is_refused() {
        let sub = Subscription {
            topic: "t".into(),
            group: "g".into(),
            consumer: "c".into(),
            ack_deadline: Duration::from_millis(1500),
            max_attempts: 3,
            start_at: StartAt::Earliest,
        };
        let (back, max, wait) = pull(pull_to_wire("ns", &sub, 10, Duration::from_millis(250)))
            .expect("a full pull decodes");
        assert_eq!((back, max, wait), (sub, 10, Duration::from_millis(250)));
        let mut bad = pull_to_wire("ns", &sub_without_group(), 1, Duration::ZERO);
        bad.group.clear();
        assert!(matches!(pull(bad), Err(BackendError::InvalidArgument(_))));
    }

    fn sub_without_group() -> Subscription {
        Subscription {
            topic: "t".into(),
            group: String::new(),
            consumer: "c".into(),
            ack_deadline: Duration::from_secs(1),
            max_attempts: 1,
            start_at: StartAt::Latest,
        }
    }

    fn at(series: &str, time_us: i64, sequence: u64) -> StoredEvent {
        StoredEvent {
            event: Event {
                series_id: series.into(),
                time_us,
                event_id: "e".into(),
                tags: BTreeMap::new(),
                payload: Vec::new(),
            },
            sequence,
        }
    }

    #[test]
    fn answers_that_would_make_a_tail_or_a_backfill_loop_are_refused() {
        let ok = [at("s", 1, 5), at("s", 2, 7)];
        assert!(check_since(&ok, 4, 2).is_ok());
        assert!(check_since(&ok, 5, 2).is_err(), "not above `after`");
        assert!(check_since(&ok, 4, 1).is_err(), "more than asked");
        assert!(check_since(&[at("s", 1, 5), at("s", 2, 5)], 0, 9).is_err());
        assert!(check_scan(&ok, None, 7, 2).is_ok());
        assert!(check_scan(&ok, None, 6, 2).is_err(), "above up_to");
        let after = ("s".to_string(), 1, "e".to_string());
        assert!(
            check_scan(&ok, Some(&after), 9, 2).is_err(),
            "does not advance"
        );
        assert!(check_scan(&[at("s", 2, 1), at("s", 1, 2)], None, 9, 2).is_err());
    }

    #[test]
    fn a_pull_is_clamped() {
        let mut r = pull_to_wire("ns", &sub_without_group(), 1, Duration::ZERO);
        r.group = "g".into();
        r.max = u32::MAX;
        r.wait_ms = u64::MAX;
        r.ack_deadline_ms = u64::MAX;
        let (sub, max, wait) = pull(r).expect("a full pull decodes");
        assert_eq!(max, MAX_PULL);
        assert!(
            wait <= Duration::from_secs(300) && sub.ack_deadline <= Duration::from_secs(86_400)
        );
    }

    #[test]
    fn a_stored_event_without_its_event_breaks_the_protocol() {
        let broken = vec![wire::TsStoredEvent {
            event: None,
            sequence: 1,
        }];
        assert!(stored(broken).is_err());
    }
}
