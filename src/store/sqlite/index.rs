//! The search index of the embedded store (M6): each visible message's analyzed text
//! ([`crate::domain::search::index_text`]) and each shared thing's (notes, events, tasks, folder
//! and file names, [`crate::domain::search::item_text`]) in FTS5 tables, kept in a file of their
//! own beside the database (`crossroom.search.db`) by a thread of their own.
//!
//! Why a file and a thread of its own: FTS5's work per entry (terms hashed, a segment written and
//! merged at each commit) doubled the single writer thread's time per post, and every post waits
//! for that thread. (Run `SCHED_IDLE` instead, the index thread starved under load, the bounded
//! queue, [`INDEX_QUEUE`], filled, and the writer waited on it: 0.13× the posts.) Here the writer only notes what its batch changes for the index
//! ([`later`]) and, once the batch has committed, hands that over ([`IndexFeed`]); the index
//! thread applies it in its own transactions, on its own connection. A search first waits until
//! everything committed before it has been applied ([`Applied`]), so it never misses what was
//! acknowledged before it was asked — and it checks every hit against the log and the asker's
//! memberships as they are in its own read, so a recall, a removal or a deletion takes effect
//! at once even while the index still holds the entry.
//!
//! The index is derived: a new or lost file, or one a crash left behind, is rebuilt from the
//! database in the background ([`Backfill`]), saying so in the log; search finds entries as they
//! are done.
//!
//! `message_index` holds the text and the room's scope token (so that a search looks only at the
//! asker's rooms); `message_rows` says which entry each index row is. A row's key is
//! time-ordered (the post's ms, then bits of the room and seq), so newest first is the index's
//! own descending order, also for entries indexed after the fact.

use super::rows::{event_from_row, sql_seq, EVENT_COLUMNS};
use crate::domain::search::{index_text, item_text};
use crate::store::{StoreError, StoreResult};
use crossroom_protocol::{Event, EventBody, Item, RoomId};
use rusqlite::{params, Connection, OptionalExtension};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Entries indexed per backfill transaction.
const BACKFILL_BATCH: usize = 500;

/// Committed batches that may wait for the index thread: past this the writer waits for it
/// (the index lags the log by at most this many batches).
const INDEX_QUEUE: usize = 256;

/// The index file's tables.
const SCHEMA: &str = include_str!("index.sql");

/// The index file beside the database at `db`.
pub(super) fn index_path(db: &Path) -> PathBuf {
    db.with_extension("search.db")
}

/// Remove the index beside the database at `db` (it is rebuilt): a database restored from a
/// backup is older than any index left beside it.
pub(super) fn discard(db: &Path) {
    let path = index_path(db);
    for suffix in ["", "-wal", "-shm"] {
        let mut f = path.clone().into_os_string();
        f.push(suffix);
        // Absent is as good as removed.
        let _ = std::fs::remove_file(f);
    }
}

/// Open a connection to the index file (creating it), ready for the index's writes.
fn open_index(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    // Owner only, as the database (the index holds the words of every message); SQLite gives
    // its WAL and shared-memory files the same mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(StoreError::backend)?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Derived data, rebuilt after a crash: no fsync per commit.
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Attach the index file as `s` to a read connection (once).
pub(super) fn attach(conn: &Connection, path: &Path) -> StoreResult<()> {
    let attached: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_database_list WHERE name = 's')",
        [],
        |r| r.get(0),
    )?;
    if !attached {
        let p = path
            .to_str()
            .ok_or_else(|| StoreError::backend("index path is not UTF-8"))?;
        conn.execute("ATTACH DATABASE ?1 AS s", [p])?;
    }
    Ok(())
}

thread_local! {
    /// Index writes the writer's batch made, waiting for its commit ([`take`]).
    static PENDING: RefCell<Vec<Op>> = const { RefCell::new(Vec::new()) };
}

/// One index write, applied by the index thread.
pub(super) type Op = Box<dyn FnOnce(&Connection) -> StoreResult<()> + Send>;

/// Note an index write the entry being written makes, for after its batch commits.
fn later(op: impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static) {
    PENDING.with(|p| p.borrow_mut().push(Box::new(op)));
}

/// Where this thread's notes stand (taken before a job, to undo it).
pub(super) fn mark() -> usize {
    PENDING.with(|p| p.borrow().len())
}

/// Drop the notes made since `mark` (their job was rolled back).
pub(super) fn forget_since(mark: usize) {
    PENDING.with(|p| p.borrow_mut().truncate(mark));
}

/// This thread's notes, in order (the batch is about to commit).
pub(super) fn take() -> Vec<Op> {
    PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()))
}

/// How far the index is: batches handed to it, and applied by it (told to waiters).
#[derive(Default)]
pub(super) struct Applied {
    handed: AtomicU64,
    applied: AtomicU64,
    moved: tokio::sync::Notify,
}

impl Applied {
    /// Wait until every batch handed over before now is applied (at most a few seconds: a
    /// search after that answers from the index as it is).
    pub(super) async fn caught_up(&self) {
        let want = self.handed.load(Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            // Registered before the check, so an advance between the two is not missed.
            let moved = self.moved.notified();
            if self.applied.load(Ordering::Acquire) >= want {
                return;
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                tracing::warn!("search index is behind; answering from it as it is");
                return;
            }
        }
    }

    /// `n` more batches are applied (or given up on).
    fn advance(&self, n: u64) {
        self.applied.fetch_add(n, Ordering::AcqRel);
        self.moved.notify_waiters();
    }
}

/// The writer's side: hands each committed batch's index writes to the index thread.
pub(super) struct IndexFeed {
    tx: std::sync::mpsc::SyncSender<Vec<Op>>,
    applied: Arc<Applied>,
}

impl IndexFeed {
    /// Hand over a committed batch's writes (nothing when it made none).
    pub(super) fn send(&self, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        self.applied.handed.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(ops).is_err() {
            // The index thread is gone (it logged why): count the batch as applied, so that no
            // search waits for it; the next start rebuilds what is missing.
            self.applied.advance(1);
        }
    }
}

/// The index thread and its backfill.
pub(super) struct SearchIndex {
    pub(super) path: PathBuf,
    pub(super) applied: Arc<Applied>,
    thread: Option<std::thread::JoinHandle<()>>,
    backfill: Option<Backfill>,
}

impl SearchIndex {
    /// Open the index beside the database at `db` and start its thread; and its backfill, if
    /// the file is new or a crash left it behind. Returns the writer's feed with it.
    pub(super) fn start(db: &Path) -> StoreResult<(SearchIndex, IndexFeed)> {
        let path = index_path(db);
        let conn = open_index(&path)?;
        let clean: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'clean'", [], |r| {
                r.get(0)
            })
            .optional()?;
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('clean', 0)
             ON CONFLICT (key) DO UPDATE SET value = 0",
            [],
        )?;
        let backfill = if clean == Some(1) {
            None
        } else {
            Some(Backfill::start(db, &path, clean.is_none())?)
        };
        let applied = Arc::new(Applied::default());
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Op>>(INDEX_QUEUE);
        let done = applied.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-index".into())
            .spawn(move || index_loop(conn, rx, &done))
            .map_err(StoreError::backend)?;
        let feed = IndexFeed {
            tx,
            applied: applied.clone(),
        };
        Ok((
            SearchIndex {
                path,
                applied,
                thread: Some(thread),
                backfill,
            },
            feed,
        ))
    }

    /// Stop the backfill, let the thread apply what it was given (the writer is gone, so
    /// nothing more comes) and mark the file clean.
    pub(super) fn stop(&mut self) {
        if let Some(mut b) = self.backfill.take() {
            b.stop();
        }
        if let Some(t) = self.thread.take() {
            // A panic of that thread has been reported by the panic hook; the file then stays
            // unclean and is rebuilt at the next start.
            let _ = t.join();
        }
    }
}

/// Apply each batch as it comes — all that waits, in one transaction — until the writer is
/// gone; then mark the file clean (when every batch applied).
fn index_loop(conn: Connection, rx: std::sync::mpsc::Receiver<Vec<Op>>, applied: &Applied) {
    crate::store::batch_scheduling();
    let mut clean = true;
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let n = batches.len() as u64;
        let run = || -> StoreResult<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            for op in batches.into_iter().flatten() {
                if let Err(e) = op(&conn) {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
            conn.execute_batch("COMMIT")?;
            Ok(())
        };
        if let Err(e) = run() {
            clean = false;
            tracing::error!(error = %e, "search index: a batch was not applied; the index is rebuilt at the next start");
        }
        applied.advance(n);
    }
    if clean {
        if let Err(e) = conn.execute("UPDATE meta SET value = 1 WHERE key = 'clean'", []) {
            tracing::error!(error = %e, "search index: cannot record a clean stop");
        }
    }
}

/// Put a committed message into the index (nothing for any other entry, or a recalled one).
/// `live`: just committed, and handed over in commit order — its key is above every key so
/// far, so that newest first is commit order even within one millisecond; a backfilled entry
/// keeps its time's place.
pub(super) fn index_message(event: &Event, live: bool) {
    if matches!(
        &event.body,
        EventBody::Message {
            recalled: false,
            ..
        }
    ) {
        let event = event.clone();
        later(move |conn| write_message(conn, &event, live));
    }
}

fn write_message(conn: &Connection, event: &Event, live: bool) -> StoreResult<()> {
    let EventBody::Message {
        text,
        attachments,
        recalled: false,
        ..
    } = &event.body
    else {
        return Ok(());
    };
    // Once (a backfill and the writer may both have it).
    let known = conn
        .prepare_cached("SELECT 1 FROM message_rows WHERE room = ?1 AND seq = ?2")?
        .query_row(params![event.room.0, sql_seq(event.seq)], |_| Ok(()))
        .optional()?;
    if known.is_some() {
        return Ok(());
    }
    let mut key = first_key(event.seq, event.ts);
    if live {
        let top: Option<i64> = conn
            .prepare_cached("SELECT MAX(id) FROM message_rows")?
            .query_row([], |r| r.get(0))?;
        key = key.max(top.map_or(0, |t| t + 1));
    }
    let key = free_key(conn, "message_rows", key)?;
    conn.prepare_cached("INSERT INTO message_index (rowid, text, scope) VALUES (?1, ?2, ?3)")?
        .execute(params![key, index_text(text), scope_token(&event.room)])?;
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

fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The token that stands for `room` in the index's `scope` column.
pub(super) fn scope_token(room: &RoomId) -> String {
    format!("k{:x}", fnv(room.0.bytes()))
}

/// The key an entry is indexed under (if free): its time in ms, then the low 20 bits of its seq,
/// so that keys sort as the entries' times do — and a room's entries of one millisecond as
/// their seqs do. (Another room's entry of the same ms and low bits takes the next free key.)
fn first_key(seq: u64, ts: i64) -> i64 {
    (ts.max(0) << 20) | (seq & 0xF_FFFF) as i64
}

/// Keep a shared thing's entry in the item index as `item` now is (`None`: gone); its text is
/// indexed again only when it changed (a like or a read leaves a note's text as it was).
pub(super) fn index_item(room: &RoomId, id: u64, item: Option<&Item>) {
    let (room, item) = (room.clone(), item.cloned());
    later(move |conn| write_item(conn, &room, id, item.as_ref()));
}

fn write_item(conn: &Connection, room: &RoomId, id: u64, item: Option<&Item>) -> StoreResult<()> {
    let found = item.and_then(item_text);
    let digest = found
        .as_ref()
        .map(|(kind, _, text)| fnv(kind.bytes().chain([0]).chain(text.bytes())) as i64);
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
    let key = free_key(conn, "item_rows", first_key(id, crate::clock::now_ms()))?;
    conn.prepare_cached("INSERT INTO item_index (rowid, text, scope) VALUES (?1, ?2, ?3)")?
        .execute(params![key, index_text(&text), scope_token(room)])?;
    conn.prepare_cached(
        "INSERT INTO item_rows (id, room, item, kind, digest) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![key, room.0, sql_seq(id), kind, digest])?;
    Ok(())
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

/// Take a message out of the index (recalled, M1).
pub(super) fn unindex_message(room: &RoomId, seq: u64) {
    let room = room.clone();
    later(move |conn| {
        let key: Option<i64> = conn
            .prepare_cached("DELETE FROM message_rows WHERE room = ?1 AND seq = ?2 RETURNING id")?
            .query_row(params![room.0, sql_seq(seq)], |r| r.get(0))
            .optional()?;
        if let Some(key) = key {
            conn.prepare_cached("DELETE FROM message_index WHERE rowid = ?1")?
                .execute(params![key])?;
        }
        Ok(())
    });
}

/// Take a deleted room's messages and shared things out of the index (G16).
pub(super) fn unindex_room(room: &RoomId) {
    let room = room.clone();
    later(move |conn| {
        for (index, rows) in [
            ("item_index", "item_rows"),
            ("message_index", "message_rows"),
        ] {
            conn.prepare_cached(&format!(
                "DELETE FROM {index} WHERE rowid IN (SELECT id FROM {rows} WHERE room = ?1)"
            ))?
            .execute(params![room.0])?;
            conn.prepare_cached(&format!("DELETE FROM {rows} WHERE room = ?1"))?
                .execute(params![room.0])?;
        }
        Ok(())
    });
}

/// Indexing what the database holds and the index does not — a new index file, or one a crash
/// left behind — on a thread of its own, reading the database on its own connection and
/// writing the index in batches; every batch skips what is indexed already, so running again
/// after a stop is safe.
pub(super) struct Backfill {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backfill {
    fn start(db: &Path, index: &Path, new: bool) -> StoreResult<Backfill> {
        let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let writes = open_index(index)?;
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-index-backfill".into())
            .spawn(move || {
                crate::store::batch_scheduling();
                if let Err(e) = backfill(&conn, &writes, &halt, new) {
                    tracing::error!(error = %e, "indexing for search failed; it is done again at the next start");
                }
            })
            .map_err(StoreError::backend)?;
        Ok(Backfill {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop after the batch in hand, and wait for it.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panic of that thread has been reported by the panic hook; nothing is left to do.
            let _ = t.join();
        }
    }
}

fn backfill(db: &Connection, index: &Connection, stop: &AtomicBool, new: bool) -> StoreResult<()> {
    let total: i64 = db.query_row(
        "SELECT COUNT(*) FROM events WHERE kind = 'message'",
        [],
        |r| r.get(0),
    )?;
    tracing::info!(
        messages = total,
        "{}: indexing the messages and shared things for search in the background; search finds them as they are done",
        if new {
            "no search index yet"
        } else {
            "the search index was not closed cleanly"
        }
    );
    let mut after = (String::new(), 0i64);
    let messages = in_batches(index, stop, || {
        let events: Vec<Event> = db
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} WHERE e.kind = 'message' AND (e.room, e.seq) > (?1, ?2)
                 ORDER BY e.room, e.seq LIMIT ?3"
            ))?
            .query_map(
                params![after.0, after.1, BACKFILL_BATCH as i64],
                event_from_row,
            )?
            .collect::<Result<_, _>>()?;
        for e in &events {
            index_message(e, false);
        }
        if let Some(e) = events.last() {
            after = (e.room.0.clone(), e.seq as i64);
        }
        Ok(events.len())
    })?;
    let mut after = (String::new(), 0i64);
    let items = in_batches(index, stop, || {
        let rows: Vec<(String, i64, String)> = db
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
            index_item(&RoomId(room.clone()), *id as u64, Some(&item));
        }
        if let Some((room, id, _)) = rows.last() {
            after = (room.clone(), *id);
        }
        Ok(rows.len())
    })?;
    let (Some(messages), Some(items)) = (messages, items) else {
        tracing::info!(
            "indexing for search paused by the stop; it is done again at the next start"
        );
        return Ok(());
    };
    tracing::info!(
        messages,
        items,
        "the messages and shared things are indexed for search"
    );
    Ok(())
}

/// Run `batch` — which notes index writes — and apply what it noted in a transaction of the
/// index's, until it reads nothing more; how many entries it read in all, or `None` if `stop`
/// came first.
fn in_batches(
    index: &Connection,
    stop: &AtomicBool,
    mut batch: impl FnMut() -> StoreResult<usize>,
) -> StoreResult<Option<usize>> {
    let mut done = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let n = match batch() {
            Ok(n) => n,
            Err(e) => {
                forget_since(0);
                return Err(e);
            }
        };
        if n == 0 {
            return Ok(Some(done));
        }
        index.execute_batch("BEGIN IMMEDIATE")?;
        for op in take() {
            if let Err(e) = op(index) {
                let _ = index.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        index.execute_batch("COMMIT")?;
        done += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_times_then_seqs_do() {
        assert!(first_key(9, 1_000) < first_key(1, 1_001));
        assert!(first_key(1, 1_000) < first_key(2, 1_000));
    }

    #[test]
    fn scope_tokens_are_one_word() {
        let t = scope_token(&RoomId::from("r_abc-1"));
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()), "{t}");
    }
}
