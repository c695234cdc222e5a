//! Conversions between the KeyValue protos and the backend trait's types,
//! in both directions: the proxy and a pattern host turn requests into
//! trait calls; a remote backend turns trait calls back into requests.

use std::time::Duration;

use prism_proto::keyvalue::v1 as pb;

use crate::keyvalue::{Item, Mutation, MutationOutcome, PutItem, ScanEntry, Selection};

/// A proto selection as a backend selection; unset means every key.
pub fn selection(sel: Option<pb::KeySelection>) -> Selection {
    use pb::key_selection::Selection as S;
    match sel.and_then(|s| s.selection) {
        None | Some(S::All(_)) => Selection::All,
        Some(S::Keys(list)) => Selection::Keys(list.keys),
        Some(S::Range(r)) => Selection::Range {
            start: r.start,
            end: (!r.end.is_empty()).then_some(r.end),
        },
        Some(S::Prefix(p)) => Selection::Prefix(p),
    }
}

/// A backend selection as a proto selection.
pub fn selection_to_pb(sel: &Selection) -> pb::KeySelection {
    use pb::key_selection::Selection as S;
    pb::KeySelection {
        selection: Some(match sel {
            Selection::All => S::All(pb::AllKeys {}),
            Selection::Keys(keys) => S::Keys(pb::KeyList { keys: keys.clone() }),
            Selection::Range { start, end } => S::Range(pb::KeyRange {
                start: start.clone(),
                end: end.clone().unwrap_or_default(),
            }),
            Selection::Prefix(p) => S::Prefix(p.clone()),
        }),
    }
}

/// Milliseconds since the Unix epoch as a protobuf timestamp.
pub fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// A protobuf timestamp as milliseconds since the Unix epoch (0 for times
/// before the epoch).
pub fn timestamp_ms(ts: &prost_types::Timestamp) -> u64 {
    if ts.seconds < 0 {
        return 0;
    }
    (ts.seconds as u64) * 1000 + (ts.nanos.max(0) as u64) / 1_000_000
}

/// A stored item as a proto item.
pub fn item(item: Item) -> pb::Item {
    pb::Item {
        key: item.key,
        value: item.value,
        version: item.version,
        expires_at: item.expires_at_ms.map(timestamp),
    }
}

/// A proto item as a stored item.
pub fn item_from_pb(item: pb::Item) -> Item {
    Item {
        key: item.key,
        value: item.value,
        version: item.version,
        expires_at_ms: item.expires_at.as_ref().map(timestamp_ms),
    }
}

/// Scan entries grouped into records: consecutive entries of one id form
/// one record.
pub fn records(entries: Vec<ScanEntry>) -> Vec<pb::Record> {
    let mut out: Vec<pb::Record> = Vec::new();
    for entry in entries {
        match out.last_mut() {
            Some(record) if record.id == entry.id => record.items.push(item(entry.item)),
            _ => out.push(pb::Record {
                id: entry.id,
                items: vec![item(entry.item)],
            }),
        }
    }
    out
}

/// Proto records flattened into scan entries.
pub fn entries_from_records(records: Vec<pb::Record>) -> Vec<ScanEntry> {
    records
        .into_iter()
        .flat_map(|r| {
            let id = r.id;
            r.items.into_iter().map(move |i| ScanEntry {
                id: id.clone(),
                item: item_from_pb(i),
            })
        })
        .collect()
}

/// A write outcome as a proto mutation result.
pub fn outcome(outcome: MutationOutcome) -> pb::MutationResult {
    use pb::mutation_result::Outcome;
    pb::MutationResult {
        outcome: Some(match outcome {
            MutationOutcome::Version(v) => Outcome::Version(v),
            MutationOutcome::Deleted(n) => Outcome::Deleted(n),
        }),
    }
}

/// A proto mutation result as a write outcome; `None` if it is empty.
pub fn outcome_from_pb(result: pb::MutationResult) -> Option<MutationOutcome> {
    use pb::mutation_result::Outcome;
    Some(match result.outcome? {
        Outcome::Version(v) => MutationOutcome::Version(v),
        Outcome::Deleted(n) => MutationOutcome::Deleted(n),
    })
}

/// A proto TTL as a duration: unset is `None`; zero or negative is an
/// error saying so.
pub fn ttl(ttl: Option<prost_types::Duration>) -> Result<Option<Duration>, String> {
    match ttl {
        None => Ok(None),
        Some(d) if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) => {
            Err("must be positive; leave it unset for an item that never expires".into())
        }
        Some(d) => Ok(Some(Duration::new(d.seconds as u64, d.nanos as u32))),
    }
}

/// An item to write as a proto item.
pub fn put_item_to_pb(item: &PutItem) -> pb::PutItem {
    pb::PutItem {
        key: item.key.clone(),
        value: item.value.clone(),
        ttl: item.ttl.map(|d| prost_types::Duration {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }),
        expected_version: item.expected_version,
    }
}

/// A mutation as a proto mutation.
pub fn mutation_to_pb(m: &Mutation) -> pb::Mutation {
    match m {
        Mutation::Put { id, item } => pb::Mutation {
            id: id.clone(),
            op: Some(pb::mutation::Op::Put(put_item_to_pb(item))),
        },
        Mutation::Delete { id, selection } => pb::Mutation {
            id: id.clone(),
            op: Some(pb::mutation::Op::Delete(selection_to_pb(selection))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, key: &str) -> ScanEntry {
        ScanEntry {
            id: id.into(),
            item: Item {
                key: key.into(),
                value: vec![],
                version: 1,
                expires_at_ms: Some(1_500),
            },
        }
    }

    #[test]
    fn scan_entries_group_by_id_and_back() {
        let entries = vec![entry("a", "1"), entry("a", "2"), entry("b", "1")];
        let records = records(entries.clone());
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].items.len(), 2);
        assert_eq!(records[1].id, "b");
        let ts = records[1].items[0].expires_at.unwrap();
        assert_eq!((ts.seconds, ts.nanos), (1, 500_000_000));
        assert_eq!(entries_from_records(records), entries);
    }

    #[test]
    fn selections_round_trip() {
        for sel in [
            Selection::All,
            Selection::Keys(vec![b"a".to_vec(), b"b".to_vec()]),
            Selection::Range {
                start: b"a".to_vec(),
                end: None,
            },
            Selection::Range {
                start: vec![],
                end: Some(b"z".to_vec()),
            },
            Selection::Prefix(b"p".to_vec()),
        ] {
            assert_eq!(selection(Some(selection_to_pb(&sel))), sel);
        }
        assert_eq!(selection(None), Selection::All);
    }

    #[test]
    fn ttls_and_items_round_trip() {
        let item = PutItem::new("k", "v")
            .with_ttl(Duration::from_millis(1500))
            .if_version(3);
        let pb = put_item_to_pb(&item);
        assert_eq!(ttl(pb.ttl).unwrap(), item.ttl);
        assert_eq!(pb.expected_version, Some(3));
        assert!(
            ttl(Some(prost_types::Duration {
                seconds: 0,
                nanos: 0
            }))
            .is_err()
        );
        assert!(
            ttl(Some(prost_types::Duration {
                seconds: -1,
                nanos: 0
            }))
            .is_err()
        );
        let stored = Item {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            version: 9,
            expires_at_ms: Some(1_234_567),
        };
        assert_eq!(item_from_pb(super::item(stored.clone())), stored);
        for o in [MutationOutcome::Version(4), MutationOutcome::Deleted(2)] {
            assert_eq!(outcome_from_pb(outcome(o)), Some(o));
        }
    }
}
