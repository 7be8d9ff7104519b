//! The Lua scripts that make each of a room's operations one atomic step on its shard, kept as
//! `.lua` files beside this one (`scripts/`) and loaded with `include_str!`. Each constant's doc
//! says its KEYS, ARGV and reply; [`Scripts`] holds the ones invoked by hash (`EVALSHA`, loaded
//! on first use).

use crate::store::{StoreError, StoreResult};
use ::redis::{Script, Value};

/// Start a room's log at seq 1 unless its state exists (in use, or a deleted room's tombstone):
/// creation, and restoring a lost room. KEYS: state, meta, log. ARGV: epoch, meta, first entry.
pub(super) const START: &str = include_str!("scripts/start.lua");

/// One line of a user's room list. KEYS: state, meta, reads, msgs, the user's msgs. ARGV: user.
/// Returns head, epoch, deleted, version, meta, the read marker, messages after it, and the
/// user's own among them.
pub(super) const ROOM_OF: &str = include_str!("scripts/room_of.lua");

/// A batch of posts to one room, in order. KEYS: state, log, cmid, msgs. ARGV: expected state
/// version ('' = any), publish command ('' = the caller publishes after replication), channel,
/// count, then per post: cmid field, entry, the author's msgs key. Returns {-1} (gone), {-2}
/// (the state version moved), or {epoch, then per post its new seq, or minus the seq of the
/// post it repeats, then — when the caller publishes — the server's run id}.
pub(super) const POSTS: &str = include_str!("scripts/posts.lua");

/// A projected append. KEYS: state, log, meta, items, cmid, msgs. ARGV: expected head, new head,
/// meta (or ''), expected state version ('' = any), new state version, publish command, channel,
/// then counted groups: log writes (seq, entry; new ones are published), item writes (id, expected old or '', new or '' to delete), cmid writes
/// (field, seq), message indexes (seq, author msgs key). Returns 1, or -1 (gone), -2 (head
/// moved), -3 (an item changed), -4 (the state version moved).
pub(super) const PROJECTED: &str = include_str!("scripts/projected.lua");

/// Compare-and-set a string key. KEYS: key. ARGV: old, new.
pub(super) const CAS_STRING: &str = include_str!("scripts/cas_string.lua");

/// Compare-and-set one hash field ('' = absent). KEYS: hash. ARGV: field, old, new.
pub(super) const CAS_FIELD: &str = include_str!("scripts/cas_field.lua");

/// Reserve within a count (G20's groups of a company). KEYS: the count. ARGV: how many, the
/// most. Returns 1 (taken), 0 (past the most), or -1: the count is `closed` (its company is
/// being deleted, A2).
pub(super) const RESERVE: &str = include_str!("scripts/reserve.lua");

/// A company's storage (G17): `used` counts its recorded files; uploads in progress hold leases
/// (ids in a sorted set by expiry, their bytes in a hash, in `used`'s slot) that lapse unless
/// renewed, on Redis's clock. KEYS: used, lease expiries, lease bytes. ARGV[1] the operation:
/// - `reserve` id bytes quota ttl_ms → 1 if used + live leases + bytes fit in quota (leased), 0;
/// - `renew` id ttl_ms → 1, or 0 when the lease lapsed;
/// - `commit` id bytes → the lease's bytes become the file's (also when it lapsed);
/// - `release` id → the lease is given back;
/// - `used` → used + live leases.
pub(super) const STORAGE: &str = include_str!("scripts/storage.lua");

/// Give back, never below zero; a `closed` count stays closed. KEYS: used. ARGV: how many.
pub(super) const RELEASE: &str = include_str!("scripts/release.lua");

/// Count one more, if counting has started (and the count is not `closed`). KEYS: the count.
pub(super) const COUNT_IN: &str = include_str!("scripts/count_in.lua");

/// Move a read marker forward. KEYS: reads. ARGV: user, seq.
pub(super) const READ_MARKER: &str = include_str!("scripts/read_marker.lua");

/// Delete a room for good, keeping the state hash as a tombstone. KEYS: state, the audit outbox
/// (kept; ARGV[1], the deletion's record, goes into it), then the keys to delete. Returns 0 when
/// it did not exist.
pub(super) const DELETE: &str = include_str!("scripts/delete.lua");

/// Set or clear a room's invitation, its audit record into the room's outbox. KEYS: state,
/// invite, audit outbox. ARGV: invite JSON or '', the outbox item.
pub(super) const SET_INVITE: &str = include_str!("scripts/set_invite.lua");

pub(super) struct Scripts {
    pub(super) start: Script,
    pub(super) cas_string: Script,
    pub(super) projected: Script,
    pub(super) cas_field: Script,
    pub(super) reserve: Script,
    pub(super) release: Script,
    pub(super) storage: Script,
    pub(super) read_marker: Script,
    pub(super) delete: Script,
    pub(super) set_invite: Script,
    pub(super) count_in: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            start: Script::new(START),
            cas_string: Script::new(CAS_STRING),
            projected: Script::new(PROJECTED),
            cas_field: Script::new(CAS_FIELD),
            reserve: Script::new(RESERVE),
            release: Script::new(RELEASE),
            storage: Script::new(STORAGE),
            read_marker: Script::new(READ_MARKER),
            delete: Script::new(DELETE),
            set_invite: Script::new(SET_INVITE),
            count_in: Script::new(COUNT_IN),
        }
    }
}

// ---- what the scripts answer ----------------------------------------------------------------

/// A `POSTS` reply: the epoch and each post's seq (negative: a repeat of that seq); a trailing
/// run id is left out.
pub(super) fn posts_outcome(reply: &[Value]) -> StoreResult<(u64, Vec<i64>)> {
    match reply.first() {
        Some(Value::Int(-2)) => return Err(StoreError::Conflict),
        Some(Value::Int(_)) | None => return Err(StoreError::NotFound("room".into())),
        _ => {}
    }
    let epoch = text_of(&reply[0])
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| StoreError::backend("POSTS: no epoch"))?;
    let seqs = reply[1..]
        .iter()
        .filter(|v| !matches!(v, Value::BulkString(_) | Value::SimpleString(_)))
        .map(|v| match v {
            Value::Int(i) => Ok(*i),
            _ => Err(StoreError::backend("POSTS: not a seq")),
        })
        .collect::<StoreResult<Vec<i64>>>()?;
    Ok((epoch, seqs))
}

/// A `PROJECTED` reply: its outcome, and the server's run id when the caller publishes.
pub(super) fn projected_outcome(v: &Value) -> (i64, String) {
    match v {
        Value::Int(i) => (*i, String::new()),
        Value::Array(v) => (
            match v.first() {
                Some(Value::Int(i)) => *i,
                _ => 0,
            },
            v.get(1).and_then(text_of_bulk).unwrap_or_default(),
        ),
        _ => (0, String::new()),
    }
}

/// A bulk string only (not an integer).
pub(super) fn text_of_bulk(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

pub(super) fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(super) fn collect_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Map(kv) => kv.iter().for_each(|(_, v)| collect_texts(v, out)),
        Value::Array(vs) => vs.iter().for_each(|v| collect_texts(v, out)),
        v => out.extend(text_of(v)),
    }
}
