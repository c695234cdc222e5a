//! Conversions between the KeyValue protos and the backend trait's types.

use pattern_core::{Item, MutationOutcome, ScanEntry, Selection};
use prism_proto::keyvalue::v1 as pb;

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

/// Milliseconds since the Unix epoch as a protobuf timestamp.
pub fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
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
    fn scan_entries_group_by_id() {
        let records = records(vec![entry("a", "1"), entry("a", "2"), entry("b", "1")]);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].items.len(), 2);
        assert_eq!(records[1].id, "b");
        let ts = records[1].items[0].expires_at.unwrap();
        assert_eq!((ts.seconds, ts.nanos), (1, 500_000_000));
    }

    #[test]
    fn empty_range_end_is_unbounded() {
        let sel = selection(Some(pb::KeySelection {
            selection: Some(pb::key_selection::Selection::Range(pb::KeyRange {
                start: b"a".to_vec(),
                end: vec![],
            })),
        }));
        assert_eq!(
            sel,
            Selection::Range {
                start: b"a".to_vec(),
                end: None
            }
        );
        assert_eq!(selection(None), Selection::All);
    }
}
