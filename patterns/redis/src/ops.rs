//! Each KeyValue operation as a call of one of the scripts.

use pattern_core::idempotency::IDEMPOTENCY_WINDOW;
use pattern_core::keyvalue::{KeySet, decode_outcomes};
use pattern_core::{
    BackendError, Cursor, IdempotencyKey, Item, Mutation, Page, PageRequest, ScanEntry, Selection,
    WriteOutcome,
};
use redis::ScriptInvocation;

use crate::Shared;
use crate::layout::{self, Layout, MAX_EXPIRES_AT_MS};
use crate::scripts::SCRIPTS;

/// How many index members one read call examines at most, so a read over
/// many expired items never blocks Redis for long; the read continues in
/// another call.
pub(crate) const EXAMINE_PER_CALL: usize = 4096;

/// Expiry entries one sweep call handles, and calls per sweep at most.
const SWEEP_BATCH: usize = 512;
const SWEEP_CALLS: usize = 16;

/// KEYS[1..3] and ARGV[1..2], which every script takes first.
fn invocation<'a>(script: &'a redis::Script, layout: &Layout, now: u64) -> ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    inv.key(layout.version_key())
        .key(layout.ids_key())
        .key(layout.expiry_key())
        .arg(layout.base())
        .arg(now);
    inv
}

/// Applies `mutations` atomically, with idempotency handling.
pub async fn write(
    shared: &Shared,
    mutations: Vec<Mutation>,
    idempotency: Option<IdempotencyKey>,
) -> Result<WriteOutcome, BackendError> {
    let now = shared.clock.now_ms();
    let mut inv = invocation(&SCRIPTS.write, &shared.layout, now);
    match &idempotency {
        Some(key) => {
            inv.key(shared.layout.idempotency_key(&key.token))
                .arg(key.fingerprint);
        }
        None => {
            inv.arg("");
        }
    }
    inv.arg(IDEMPOTENCY_WINDOW.as_millis() as u64);
    for m in &mutations {
        match m {
            Mutation::Put { id, item } => {
                let expires = item
                    .expires_at(now)
                    .map_or(0, |e| e.clamp(1, MAX_EXPIRES_AT_MS));
                inv.arg("p")
                    .arg(id.as_str())
                    .arg(item.key.as_slice())
                    .arg(item.value.as_slice())
                    .arg(expires);
                match item.expected_version {
                    Some(v) => inv.arg(v),
                    None => inv.arg(""),
                };
            }
            Mutation::Delete { id, selection } => match selection.key_set() {
                KeySet::Keys(keys) => {
                    inv.arg("k").arg(id.as_str()).arg(keys.len());
                    for key in &keys {
                        inv.arg(key.as_slice());
                    }
                }
                KeySet::Range { start, end } => {
                    inv.arg("r")
                        .arg(id.as_str())
                        .arg(start.as_slice())
                        .arg(if end.is_some() { "1" } else { "0" })
                        .arg(end.as_deref().unwrap_or_default());
                }
            },
        }
    }
    let reply: Vec<String> = shared.invoke(&inv).await?;
    let corrupt = || BackendError::Internal("unexpected reply from the redis write script".into());
    let outcomes = |s: Option<&String>| {
        decode_outcomes(s.map_or("", String::as_str)).ok_or_else(|| {
            BackendError::Internal("corrupt outcomes in a redis idempotency record".into())
        })
    };
    match reply.first().map(String::as_str) {
        Some("ok") => Ok(WriteOutcome {
            outcomes: outcomes(reply.get(1))?,
            replayed: false,
        }),
        Some("replay") => Ok(WriteOutcome {
            outcomes: outcomes(reply.get(1))?,
            replayed: true,
        }),
        Some("conflict") => Err(BackendError::IdempotencyConflict(
            idempotency.map(|k| k.token).unwrap_or_default(),
        )),
        Some("mismatch") => {
            let n: usize = reply
                .get(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(corrupt)?;
            let current: u64 = reply
                .get(2)
                .and_then(|s| s.parse().ok())
                .ok_or_else(corrupt)?;
            match n.checked_sub(1).and_then(|i| mutations.get(i)) {
                Some(Mutation::Put { item, .. }) => {
                    item.check_condition(|| Ok(current))?;
                    Err(corrupt())
                }
                _ => Err(corrupt()),
            }
        }
        _ => Err(corrupt()),
    }
}

/// How a read call ended.
enum ReadEnd {
    /// Nothing after the items returned.
    Done,
    /// The budget is used.
    Full,
    /// Examined enough; continue strictly after this (id, key).
    Resume(String, Vec<u8>),
}

/// One read call: the visible items as (id, item), and how it ended.
async fn read_call(
    shared: &Shared,
    inv: &ScriptInvocation<'_>,
) -> Result<(Vec<(String, Item)>, ReadEnd), BackendError> {
    let reply: Vec<Vec<u8>> = shared.invoke(inv).await?;
    let corrupt = |what: &str| {
        BackendError::Internal(format!(
            "{what} in the namespace's redis data; was it written by something else than Prism?"
        ))
    };
    if reply.len() < 3 || !(reply.len() - 3).is_multiple_of(3) {
        return Err(corrupt("unexpected reply from the read script"));
    }
    let mut parts = reply.into_iter();
    let status = parts.next().unwrap_or_default();
    let resume_id = parts.next().unwrap_or_default();
    let resume_key = parts.next().unwrap_or_default();
    let mut items = Vec::with_capacity(parts.len() / 3);
    while let (Some(id), Some(key), Some(mut raw)) = (parts.next(), parts.next(), parts.next()) {
        let id = String::from_utf8(id).map_err(|_| corrupt("an id that is not UTF-8"))?;
        let header =
            layout::decode_item(&raw).ok_or_else(|| corrupt("an item that does not decode"))?;
        raw.drain(..header.value_start);
        items.push((
            id,
            Item {
                key,
                value: raw,
                version: header.version,
                expires_at_ms: header.expires_at_ms,
            },
        ));
    }
    let end = match status.as_slice() {
        b"done" => ReadEnd::Done,
        b"full" => ReadEnd::Full,
        b"cap" => ReadEnd::Resume(
            String::from_utf8(resume_id).map_err(|_| corrupt("an id that is not UTF-8"))?,
            resume_key,
        ),
        _ => return Err(corrupt("unexpected reply from the read script")),
    };
    Ok((items, end))
}

/// The first script arguments of a read: budget and examine cap.
fn read_invocation<'a>(shared: &Shared, budget: usize) -> ScriptInvocation<'a> {
    let mut inv = invocation(&SCRIPTS.read, &shared.layout, shared.clock.now_ms());
    inv.arg(budget).arg(EXAMINE_PER_CALL);
    inv
}

/// One page of the live items of `id` that `selection` picks.
pub async fn get(
    shared: &Shared,
    id: &str,
    selection: &Selection,
    page: &PageRequest,
) -> Result<Page<Item>, BackendError> {
    let key_set = selection.key_set();
    let mut after = page.cursor.as_ref().map(|c| c.after_key.clone());
    loop {
        let mut inv = read_invocation(shared, page.budget_bytes);
        match &key_set {
            KeySet::Range { start, end } => {
                inv.arg("r")
                    .arg(id)
                    .arg(layout::lex_lower(start, after.as_deref()))
                    .arg(layout::lex_upper(end.as_deref()));
            }
            KeySet::Keys(keys) => {
                inv.arg("k").arg(id);
                for key in keys {
                    if after.as_ref().is_none_or(|a| key > a) {
                        inv.arg(key.as_slice());
                    }
                }
            }
        }
        let (entries, end) = read_call(shared, &inv).await?;
        let items: Vec<Item> = entries.into_iter().map(|(_, item)| item).collect();
        let next = match end {
            ReadEnd::Done => None,
            ReadEnd::Full => items.last().map(|i| get_cursor(&i.key)),
            ReadEnd::Resume(_, key) if items.is_empty() => {
                // Only invisible members so far: keep going, so a page has
                // an item whenever any remain.
                after = Some(key);
                continue;
            }
            ReadEnd::Resume(_, key) => Some(get_cursor(&key)),
        };
        return Ok(Page { items, next });
    }
}

fn get_cursor(key: &[u8]) -> Cursor {
    Cursor {
        after_id: String::new(),
        after_key: key.to_vec(),
        snapshot: 0,
    }
}

/// One page of every live item of the namespace in (id, key) order.
pub async fn scan(shared: &Shared, page: &PageRequest) -> Result<Page<ScanEntry>, BackendError> {
    let mut after = page
        .cursor
        .as_ref()
        .map(|c| (c.after_id.clone(), c.after_key.clone()));
    loop {
        let mut inv = read_invocation(shared, page.budget_bytes);
        inv.arg("s");
        match &after {
            Some((id, key)) => inv.arg("1").arg(id.as_str()).arg(key.as_slice()),
            None => inv.arg("0").arg("").arg(""),
        };
        let (entries, end) = read_call(shared, &inv).await?;
        let items: Vec<ScanEntry> = entries
            .into_iter()
            .map(|(id, item)| ScanEntry { id, item })
            .collect();
        let next = match end {
            ReadEnd::Done => None,
            ReadEnd::Full => items.last().map(|e| Cursor {
                after_id: e.id.clone(),
                after_key: e.item.key.clone(),
                snapshot: 0,
            }),
            ReadEnd::Resume(id, key) if items.is_empty() => {
                after = Some((id, key));
                continue;
            }
            ReadEnd::Resume(id, key) => Some(Cursor {
                after_id: id,
                after_key: key,
                snapshot: 0,
            }),
        };
        return Ok(Page { items, next });
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepStats {
    /// Expiry entries handled (items deleted here or already reclaimed by
    /// Redis, and entries of rewritten items put right).
    pub entries: u64,
    /// Expired items deleted by the sweep (not yet reclaimed by Redis).
    pub deleted: u64,
}

/// Removes items expired by the backend's clock, and the index entries of
/// items Redis already reclaimed.
pub async fn sweep(shared: &Shared) -> Result<SweepStats, BackendError> {
    let mut stats = SweepStats::default();
    for _ in 0..SWEEP_CALLS {
        let mut inv = invocation(&SCRIPTS.sweep, &shared.layout, shared.clock.now_ms());
        inv.arg(SWEEP_BATCH);
        let reply: (u64, u64) = shared.invoke(&inv).await?;
        stats.entries += reply.0;
        stats.deleted += reply.1;
        if reply.0 < SWEEP_BATCH as u64 {
            break;
        }
    }
    Ok(stats)
}
