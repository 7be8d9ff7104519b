//! The message search index in SQLite (M6): each visible message's analyzed text
//! ([`crate::domain::search::index_text`]) in an FTS5 table, written in the message's own commit
//! and removed in the commit that recalls it or deletes its room — the log and the index never
//! disagree, and a backup holds both.
//!
//! The group's shared things (M6: notes, events, tasks, folder and file names) are indexed the
//! same way in `item_index` / `item_rows`, as each one's current state, whenever its text changes.
//!
//! `message_index` holds the text and the room's scope token (`k` and the room's rowid, so that a
//! search looks only at the asker's rooms); `message_rows` says which entry each index row is.
//! An index row's key is time-ordered (the post's ms, then bits of the room and seq), so newest
//! first is the index's own descending order, also for messages indexed after the fact.
//!
//! A database from before the index (schema 8 and older) is indexed in the background
//! ([`Backfill`]), in batches, saying so in the log.

use super::rows::{event_from_row, sql_seq, EVENT_COLUMNS};
use crate::domain::search::{index_text, item_text};
use crate::store::{StoreError, StoreResult};
use crossroom_protocol::{Event, EventBody, Item, RoomId};
use rusqlite::{params, Connection, OptionalExtension};
use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Messages indexed per backfill transaction.
const BACKFILL_BATCH: usize = 500;

thread_local! {
    /// Index writes waiting for the end of the transaction they belong to ([`flush`]).
    static PENDING: RefCell<Vec<Op>> = const { RefCell::new(Vec::new()) };
}

/// One index write, run at [`flush`].
type Op = Box<dyn FnOnce(&Connection) -> StoreResult<()>>;

/// Queue an index write for the end of this thread's transaction. FTS5 writes its pending terms
/// to disk as a new segment at every savepoint — and the writer runs every job in one — so an
/// index written job by job cost a segment (and its merges) per post: 7× the writer's work.
/// Written once per transaction, just before its commit, the index still commits with the log.
fn later(op: impl FnOnce(&Connection) -> StoreResult<()> + 'static) {
    PENDING.with(|p| p.borrow_mut().push(Box::new(op)));
}

/// Where this thread's queue of index writes stands (taken before a job, to undo it).
pub(super) fn mark() -> usize {
    PENDING.with(|p| p.borrow().len())
}

/// Drop the index writes queued since `mark` (their job was rolled back).
pub(super) fn forget_since(mark: usize) {
    PENDING.with(|p| p.borrow_mut().truncate(mark));
}

/// Run this thread's queued index writes, in order, inside the transaction about to commit.
pub(super) fn flush(conn: &Connection) -> StoreResult<()> {
    let ops = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for op in ops {
        op(conn)?;
    }
    Ok(())
}

/// Put a committed message into the index (nothing for any other entry, or a recalled one),
/// at the end of the transaction.
pub(super) fn index_message(_conn: &Connection, event: &Event) -> StoreResult<()> {
    if matches!(
        &event.body,
        EventBody::Message {
            recalled: false,
            ..
        }
    ) {
        let event = event.clone();
        later(move |conn| write_message(conn, &event));
    }
    Ok(())
}

fn write_message(conn: &Connection, event: &Event) -> StoreResult<()> {
    let EventBody::Message {
        text,
        attachments,
        recalled: false,
        ..
    } = &event.body
    else {
        return Ok(());
    };
    let Some(scope) = room_scope(conn, &event.room)? else {
        return Ok(());
    };
    let key = free_key(
        conn,
        "message_rows",
        first_key(&event.room, event.seq, event.ts),
    )?;
    conn.prepare_cached("INSERT INTO message_index (rowid, text, scope) VALUES (?1, ?2, ?3)")?
        .execute(params![key, index_text(text), format!("k{scope}")])?;
    conn.prepare_cached(
        "INSERT INTO message_rows (id, room, seq, ts, author, files) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        key,
        event.room.0,
        sql_seq(event.seq),
        event.ts,
        event.author.0,
        attachments.len() as i64
    ])?;
    Ok(())
}

/// The key a message is indexed under (if free): its time in ms, then 20 bits of its room and
/// seq, so that keys sort as the messages' times do.
fn first_key(room: &RoomId, seq: u64, ts: i64) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.0.as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    (ts.max(0) << 20) | ((h ^ seq) & 0xF_FFFF) as i64
}

/// Keep a shared thing's entry in the item index as `item` now is (`None`: gone): its text is
/// indexed again only when it changed (a like or a read leaves a note's text as it was).
pub(super) fn index_item(
    conn: &Connection,
    room: &RoomId,
    id: u64,
    item: Option<&Item>,
) -> StoreResult<()> {
    let found = item.and_then(item_text);
    let digest = found
        .as_ref()
        .map(|(kind, _, text)| text_digest(kind, text));
    let old: Option<(i64, i64)> = conn
        .prepare_cached("SELECT id, digest FROM item_rows WHERE room = ?1 AND item = ?2")?
        .query_row(params![room.0, sql_seq(id)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let (Some((_, was)), Some(now)) = (old, digest) {
        if was == now {
            return Ok(());
        }
    }
    if let Some((key, _)) = old {
        conn.prepare_cached("DELETE FROM item_index WHERE rowid = ?1")?
            .execute(params![key])?;
        conn.prepare_cached("DELETE FROM item_rows WHERE id = ?1")?
            .execute(params![key])?;
    }
    let (Some((kind, _, text)), Some(digest)) = (found, digest) else {
        return Ok(());
    };
    let Some(scope) = room_scope(conn, room)? else {
        return Ok(());
    };
    let key = free_key(
        conn,
        "item_rows",
        first_key(room, id, crate::clock::now_ms()),
    )?;
    conn.prepare_cached("INSERT INTO item_index (rowid, text, scope) VALUES (?1, ?2, ?3)")?
        .execute(params![key, index_text(&text), format!("k{scope}")])?;
    conn.prepare_cached(
        "INSERT INTO item_rows (id, room, item, kind, digest) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![key, room.0, sql_seq(id), kind, digest])?;
    Ok(())
}

/// A digest of an item's searchable text (FNV-1a), to tell a change of text from any other.
fn text_digest(kind: &str, text: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kind.bytes().chain([0]).chain(text.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// The scope number of `room` (its rowid), if it exists.
fn room_scope(conn: &Connection, room: &RoomId) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT rowid FROM rooms WHERE id = ?1")?
        .query_row(params![room.0], |r| r.get(0))
        .optional()?)
}

/// `key`, or the next one not taken in `table`.
fn free_key(conn: &Connection, table: &str, mut key: i64) -> StoreResult<i64> {
    while conn
        .prepare_cached(&format!("SELECT 1 FROM {table} WHERE id = ?1"))?
        .query_row(params![key], |_| Ok(()))
        .optional()?
        .is_some()
    {
        key += 1;
    }
    Ok(key)
}

/// Take a message out of the index (recalled, M1), at the end of the transaction.
pub(super) fn unindex_message(_conn: &Connection, room: &RoomId, seq: u64) -> StoreResult<()> {
    let room = room.clone();
    later(move |conn| remove_message(conn, &room, seq));
    Ok(())
}

fn remove_message(conn: &Connection, room: &RoomId, seq: u64) -> StoreResult<()> {
    let key: Option<i64> = conn
        .prepare_cached("DELETE FROM message_rows WHERE room = ?1 AND seq = ?2 RETURNING id")?
        .query_row(params![room.0, sql_seq(seq)], |r| r.get(0))
        .optional()?;
    if let Some(key) = key {
        conn.prepare_cached("DELETE FROM message_index WHERE rowid = ?1")?
            .execute(params![key])?;
    }
    Ok(())
}

/// Take a deleted room's messages and shared things out of the index (G16), at the end of the
/// transaction.
pub(super) fn unindex_room(_conn: &Connection, room: &RoomId) -> StoreResult<()> {
    let room = room.clone();
    later(move |conn| remove_room(conn, &room));
    Ok(())
}

fn remove_room(conn: &Connection, room: &RoomId) -> StoreResult<()> {
    conn.prepare_cached(
        "DELETE FROM item_index WHERE rowid IN (SELECT id FROM item_rows WHERE room = ?1)",
    )?
    .execute(params![room.0])?;
    conn.prepare_cached("DELETE FROM item_rows WHERE room = ?1")?
        .execute(params![room.0])?;
    conn.prepare_cached(
        "DELETE FROM message_index WHERE rowid IN (SELECT id FROM message_rows WHERE room = ?1)",
    )?
    .execute(params![room.0])?;
    conn.prepare_cached("DELETE FROM message_rows WHERE room = ?1")?
        .execute(params![room.0])?;
    Ok(())
}

/// Indexing the messages of a database written before the index, on a thread of its own with
/// its own connection, in batches that each take the write lock briefly; every batch skips what
/// is indexed already (a post's own commit indexes it), so running again after a stop is safe.
/// Done, it records `meta.search_indexed = 1` and is never run again.
pub(super) struct Backfill {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backfill {
    /// Start it if the database at `path` is not wholly indexed yet.
    pub(super) fn start_if_needed(conn: &Connection, path: &Path) -> StoreResult<Option<Backfill>> {
        let done: Option<i64> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'search_indexed'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if done != Some(0) {
            return Ok(None);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-search-backfill".into())
            .spawn(move || {
                if let Err(e) = backfill(&conn, &halt) {
                    tracing::error!(error = %e, "indexing existing messages for search failed; it resumes at the next start");
                }
            })
            .map_err(StoreError::backend)?;
        Ok(Some(Backfill {
            stop,
            thread: Some(thread),
        }))
    }

    /// Stop after the batch in hand, and wait for it.
    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panic of that thread has been reported by the panic hook; nothing is left to do.
            let _ = t.join();
        }
    }
}

fn backfill(conn: &Connection, stop: &AtomicBool) -> StoreResult<()> {
    let total: i64 = conn.query_row(
        "SELECT COUNT(*) FROM events WHERE kind = 'message'",
        [],
        |r| r.get(0),
    )?;
    tracing::info!(
        messages = total,
        "indexing the existing messages and shared things for search in the background (this database predates the index); search finds them as they are done"
    );
    let mut after = (String::new(), 0i64);
    let messages = in_batches(conn, stop, |conn| {
        let events: Vec<Event> = conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} WHERE e.kind = 'message' AND (e.room, e.seq) > (?1, ?2)
                 AND NOT EXISTS (SELECT 1 FROM message_rows x WHERE x.room = e.room AND x.seq = e.seq)
                 ORDER BY e.room, e.seq LIMIT ?3"
            ))?
            .query_map(params![after.0, after.1, BACKFILL_BATCH as i64], event_from_row)?
            .collect::<Result<_, _>>()?;
        for e in &events {
            index_message(conn, e)?;
        }
        if let Some(e) = events.last() {
            after = (e.room.0.clone(), e.seq as i64);
        }
        Ok(events.len())
    })?;
    let mut after = (String::new(), 0i64);
    let items = in_batches(conn, stop, |conn| {
        let rows: Vec<(String, i64, String)> = conn
            .prepare_cached(
                "SELECT room, id, state FROM items WHERE (room, id) > (?1, ?2)
                 ORDER BY room, id LIMIT ?3",
            )?
            .query_map(params![after.0, after.1, BACKFILL_BATCH as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        for (room, id, state) in &rows {
            let item: Item = serde_json::from_str(state).map_err(StoreError::backend)?;
            index_item(conn, &RoomId(room.clone()), *id as u64, Some(&item))?;
        }
        if let Some((room, id, _)) = rows.last() {
            after = (room.clone(), *id);
        }
        Ok(rows.len())
    })?;
    let (Some(messages), Some(items)) = (messages, items) else {
        tracing::info!("indexing for search paused by the stop; it resumes at the next start");
        return Ok(());
    };
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('search_indexed', 1)
         ON CONFLICT (key) DO UPDATE SET value = 1",
        [],
    )?;
    tracing::info!(
        messages,
        items,
        "the existing messages and shared things are indexed for search"
    );
    Ok(())
}

/// Run `batch` in its own write transaction until it does nothing; how many it did in all, or
/// `None` if `stop` came first.
fn in_batches(
    conn: &Connection,
    stop: &AtomicBool,
    mut batch: impl FnMut(&Connection) -> StoreResult<usize>,
) -> StoreResult<Option<usize>> {
    let mut done = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        match batch(conn).and_then(|n| flush(conn).map(|()| n)) {
            Ok(0) => {
                conn.execute_batch("COMMIT")?;
                return Ok(Some(done));
            }
            Ok(n) => {
                conn.execute_batch("COMMIT")?;
                done += n;
            }
            Err(e) => {
                forget_since(0);
                conn.execute_batch("ROLLBACK")?;
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_times_do() {
        let r = RoomId::from("r_a");
        assert!(first_key(&r, 9, 1_000) < first_key(&r, 1, 1_001));
        assert_ne!(first_key(&r, 1, 5), first_key(&RoomId::from("r_b"), 1, 5));
    }
}
