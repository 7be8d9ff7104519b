//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Writes go to a single writer thread through a bounded queue. The writer takes every job that
//! is waiting (up to [`MAX_BATCH`]), runs each in its own savepoint inside one transaction and
//! commits once — group commit: one fsync for the whole batch — and only then answers each job.
//! A job that fails rolls back its own savepoint and leaves the rest of the batch alone.
//!
//! Reads run on a few read threads, each with its own connection ([`super::readers`]); WAL lets
//! them proceed while the writer commits.
//!
//! This process is the only writer of the file, so room actors number their entries themselves
//! and deliver them before they commit ([`Store::sole_writer`]). Each run has an id, kept in
//! `meta` while it runs and every room it writes is marked with (`room_heads.run`); a run that
//! did not end cleanly leaves its id behind, and the next open moves every room it marked to a
//! new epoch: what subscribers were shown of a tail that never reached the disk is never
//! resumed as if it had (D1).

use super::readers::ReadPool;
use super::{
    Appended, AuditEntry, CommitTicket, FileRecord, Invite, MembershipRow, NewAudit, NewEntry,
    NewRoom, Reservation, RoomRecord, Store, StoreError, StoreResult,
};
use crate::domain::directory::{
    patch_settings, Company, CompanySettings, SettingsPatch, User, UserChange, UserKind,
};
use crate::domain::projection::{self, ItemChange, Membership};
use async_trait::async_trait;
use crossroom_protocol::{CompanyId, Event, EventBody, Features, Item, RoomId, RoomKind, UserId};
use futures_util::FutureExt;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};

/// Most jobs committed in one transaction. Large enough to amortise the fsync across a burst,
/// small enough that the first job of a batch does not wait long for the last.
const MAX_BATCH: usize = 512;

/// Capacity of the writer's queue (jobs). When full, writers wait: that is the back-pressure
/// that keeps a burst from growing memory without bound.
const WRITE_QUEUE: usize = 8192;

/// What a job hands back after running: called with the outcome of the batch's commit.
type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A write job: runs inside the batch transaction.
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

pub struct SqliteStore {
    /// This run's id, marked on every room it writes.
    run: i64,
    /// `None` once closed.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: ReadPool,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS companies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    settings TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    self_registered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    company TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    kind TEXT NOT NULL,
    active INTEGER NOT NULL,
    external_granted INTEGER NOT NULL,
    tokens_valid_after INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS users_company ON users(company);
CREATE TABLE IF NOT EXISTS contacts (
    owner TEXT NOT NULL,
    contact TEXT NOT NULL,
    PRIMARY KEY (owner, contact)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rooms (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    owner_company TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    features TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    head INTEGER NOT NULL,
    -- The seq of the last entry that was not a message (appends are conditional on it).
    version INTEGER NOT NULL DEFAULT 0,
    converted_from TEXT,
    -- A deleted group keeps its row (ids are never reused) and nothing else (G16).
    deleted INTEGER NOT NULL DEFAULT 0,
    invite_token TEXT UNIQUE,
    invite_expires INTEGER,
    invite_barred TEXT NOT NULL DEFAULT '[]',
    image TEXT
);
CREATE INDEX IF NOT EXISTS rooms_owner ON rooms(owner_company, kind);
CREATE TABLE IF NOT EXISTS room_members (
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    is_member INTEGER NOT NULL,
    is_master INTEGER NOT NULL,
    last_read INTEGER NOT NULL DEFAULT 0,
    -- The seq of the entry that (last) made them a member: they see the log from there.
    joined_seq INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS room_members_user ON room_members(user);
-- Each room's head (the seq of its last entry), apart from the wide `rooms` row: a post
-- rewrites it, and a narrow table keeps the pages a commit of posts in many rooms dirties few
-- (schema 6; `rooms.head` is no longer read or written).
-- `run`: the run that last wrote the room (schema 7): an unclean stop moves the rooms its run
-- wrote to a new epoch.
CREATE TABLE IF NOT EXISTS room_heads (
    room TEXT PRIMARY KEY,
    head INTEGER NOT NULL,
    run INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- `run`: the id of the run that has the file open, 0 once it closed cleanly (schema 7).
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    author TEXT NOT NULL,
    kind TEXT NOT NULL,
    client_msg_id TEXT,
    body BLOB NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_idempotency
    ON events(room, author, client_msg_id) WHERE client_msg_id IS NOT NULL;
-- Stored files (G17): their bytes count against the owner company's shared storage.
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    company TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- M1: 1 for a message attachment; `claim` is the client id of the post that took it (or
    -- the removal's mark), `settled` 1 once the sweep saw that post committed.
    attachment INTEGER NOT NULL DEFAULT 0,
    claim TEXT,
    settled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS files_room ON files(room);
CREATE INDEX IF NOT EXISTS files_unsettled ON files(created_at)
    WHERE attachment = 1 AND settled = 0;
CREATE INDEX IF NOT EXISTS files_company ON files(company);
-- Current state of feature items (notes, calendar events, tasks, folders, files): a projection
-- of the log kept by room::features::apply.
CREATE TABLE IF NOT EXISTS items (
    room TEXT NOT NULL,
    id INTEGER NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
-- Bytes in use (and reserved by uploads in progress) per company.
CREATE TABLE IF NOT EXISTS storage (
    company TEXT PRIMARY KEY,
    used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    room TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_companies (
    company TEXT NOT NULL,
    audit INTEGER NOT NULL,
    PRIMARY KEY (company, audit)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_companies_by_record ON audit_companies (audit);
"#;

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 7;

impl SqliteStore {
    /// Open (or create) the database file at `path`.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        SqliteStore::open_with(path, TestFaults::default())
    }

    /// [`SqliteStore::open`], with the test knobs `faults`.
    pub fn open_with(path: &Path, faults: TestFaults) -> StoreResult<SqliteStore> {
        let conn = Connection::open(path)?;
        // Owner only; SQLite gives the WAL and shared-memory files the database's mode.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(StoreError::backend)?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::backend(format!(
                "{} was written by a newer crossroom (schema {version}, this build knows {SCHEMA_VERSION})",
                path.display()
            )));
        }
        if version == 1 {
            // Schema 2 added the rooms' state version.
            conn.execute_batch("ALTER TABLE rooms ADD COLUMN version INTEGER NOT NULL DEFAULT 0")?;
        }
        if (1..=2).contains(&version) {
            // Schema 3 added who an invitation link no longer admits.
            conn.execute_batch(
                "ALTER TABLE rooms ADD COLUMN invite_barred TEXT NOT NULL DEFAULT '[]'",
            )?;
        }
        if (1..=3).contains(&version) {
            // Schema 4 marked the companies made by a sign-up.
            conn.execute_batch(
                "ALTER TABLE companies ADD COLUMN self_registered INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        if (1..=4).contains(&version) {
            // Schema 5 told attachments apart, with their claims (M1). Earlier files are not
            // attachments any more: a post can no longer take one uploaded before the upgrade.
            conn.execute_batch(
                "ALTER TABLE files ADD COLUMN attachment INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE files ADD COLUMN claim TEXT;
                 ALTER TABLE files ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        if version == 6 {
            // Schema 7 marks the rooms each run writes.
            conn.execute_batch("ALTER TABLE room_heads ADD COLUMN run INTEGER NOT NULL DEFAULT 0")?;
        }
        conn.execute_batch(SCHEMA)?;
        if (1..=5).contains(&version) {
            // Schema 6 moved the heads to their own narrow table.
            conn.execute_batch(
                "INSERT OR IGNORE INTO room_heads (room, head) SELECT id, head FROM rooms",
            )?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        // This process alone writes the file: no upload is in flight, so what `used` holds
        // beyond the recorded files is reservations a crash (or kill) left behind.
        let total = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.query_row("SELECT COALESCE(SUM(used), 0) FROM storage", [], |r| {
                r.get(0)
            })
        };
        let before = total(&conn)?;
        conn.execute_batch(
            "UPDATE storage SET used = (SELECT COALESCE(SUM(size), 0) FROM files \
             WHERE files.company = storage.company)",
        )?;
        let given_back = before - total(&conn)?;
        if given_back != 0 {
            tracing::warn!(
                bytes = given_back,
                "storage reservations a crash left were given back"
            );
        }
        let run = begin_run(&conn)?;
        let (tx, rx) = mpsc::channel::<Job>(WRITE_QUEUE);
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(conn, rx, faults))
            .map_err(StoreError::backend)?;
        Ok(SqliteStore {
            run,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: ReadPool::new(path),
        })
    }

    fn sender(&self) -> StoreResult<mpsc::Sender<Job>> {
        self.jobs
            .lock()
            .map_err(|_| StoreError::backend("writer lock poisoned"))?
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Queue `f` for the writer; returns when it holds its place in line, with a receiver for
    /// its result after commit.
    async fn enqueue<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<oneshot::Receiver<StoreResult<T>>> {
        let (done, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn: &Connection| {
            let outcome = in_savepoint(conn, f);
            Box::new(move |commit: StoreResult<()>| {
                // The caller may have stopped waiting (its task ended); nothing to do then.
                let _ = done.send(commit.and(outcome));
            })
        });
        self.sender()?
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Run `f` in a write transaction and wait for its durable commit.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let rx = self.enqueue(f).await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Run `f` on a read connection, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.readers.run(f).await
    }
}

/// Test knobs: stand-ins for a disk's worst moments, set from the environment by the server
/// (`CROSSROOM_TEST_COMMIT_STALL_MS`, `CROSSROOM_TEST_COMMIT_FAIL_FILE`).
#[derive(Clone, Debug, Default)]
pub struct TestFaults {
    /// Every commit is held back this long before it is made.
    pub commit_stall: std::time::Duration,
    /// While this file exists, every commit fails (the batch is rolled back), as on a full or
    /// failing disk.
    pub commit_fail_file: Option<PathBuf>,
}

impl TestFaults {
    fn commits_fail(&self) -> bool {
        self.commit_fail_file.as_ref().is_some_and(|f| f.exists())
    }
}

/// Run `f` in a savepoint: on error its writes are undone and the batch goes on.
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let out = f(conn);
    if out.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    out
}

/// Write a consistent snapshot of the database at `db` into the new file `dest` (SQLite's
/// `VACUUM INTO`, safe while a server writes `db`), owner-only, marked as a backup so that the
/// server started on it says it is starting from a backup rather than from a crash.
pub fn snapshot_into(db: &Path, dest: &Path) -> StoreResult<()> {
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let dest_str = dest
        .to_str()
        .ok_or_else(|| StoreError::backend(format!("{}: not UTF-8", dest.display())))?;
    conn.execute("VACUUM INTO ?1", [dest_str])?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
            .map_err(StoreError::backend)?;
    }
    let copy = Connection::open(dest)?;
    copy.execute(
        "INSERT INTO meta (key, value) VALUES ('backup_taken_at', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![crate::clock::now_secs()],
    )?;
    Ok(())
}

/// Begin a run: after an unclean stop (the last run's id is still in `meta`), move every room
/// that run wrote to a new epoch; then record this run's id. A database that is a backup
/// ([`snapshot_into`]) was copied mid-run too, and is treated alike — clients may have seen
/// entries newer than the copy — but is logged as the restore it is, not as a crash.
fn begin_run(conn: &Connection) -> StoreResult<i64> {
    let last: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'run'", [], |r| r.get(0))
        .optional()?;
    let backup_taken_at: Option<i64> = conn
        .query_row(
            "DELETE FROM meta WHERE key = 'backup_taken_at' RETURNING value",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(taken_at) = backup_taken_at {
        let moved = match last.filter(|r| *r != 0) {
            Some(last) => move_run_epochs(conn, last)?,
            None => 0,
        };
        tracing::info!(
            taken_at,
            rooms = moved,
            "starting from a backup (crossroom backup): the rooms its run had written go on \
             under new epochs, so clients that saw later entries reset and reload"
        );
    } else if let Some(last) = last.filter(|r| *r != 0) {
        let moved = move_run_epochs(conn, last)?;
        tracing::warn!(
            rooms = moved,
            "the last run did not stop cleanly: the rooms it wrote go on under new epochs (clients reset)"
        );
    }
    let run = (crate::random::epoch() as i64).max(1);
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('run', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![run],
    )?;
    Ok(run)
}

/// Move every room the run `run` wrote to a new epoch; how many.
fn move_run_epochs(conn: &Connection, run: i64) -> StoreResult<usize> {
    let rooms: Vec<String> = conn
        .prepare("SELECT room FROM room_heads WHERE run = ?1")?
        .query_map(params![run], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for room in &rooms {
        conn.execute(
            "UPDATE rooms SET epoch = ?2 WHERE id = ?1",
            params![room, crate::random::epoch() as i64],
        )?;
    }
    Ok(rooms.len())
}

/// Run the write jobs until every sender is gone; then, if every commit of the run succeeded,
/// record that it ended cleanly (every entry an actor delivered is stored).
fn write_loop(conn: Connection, mut rx: mpsc::Receiver<Job>, faults: TestFaults) {
    super::batch_scheduling();
    let mut clean = true;
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "sqlite: cannot begin a write transaction; failing the batch");
            // Dropping the jobs drops their reply channels: each waiter sees the store failed.
            batch.clear();
            clean = false;
            continue;
        }
        let completions: Vec<Completion> = batch.drain(..).map(|job| job(&conn)).collect();
        if !faults.commit_stall.is_zero() {
            std::thread::sleep(faults.commit_stall);
        }
        let commit = if faults.commits_fail() {
            Err(StoreError::backend("test knob: the commit failed"))
        } else {
            conn.execute_batch("COMMIT").map_err(StoreError::from)
        };
        if let Err(e) = &commit {
            clean = false;
            tracing::error!(error = %e, "sqlite: commit failed");
            // Leave no half-open transaction behind; if rollback fails too the next BEGIN says so.
            let _ = conn.execute_batch("ROLLBACK");
        }
        for c in completions {
            c(commit.clone());
        }
    }
    if clean {
        if let Err(e) = conn.execute("UPDATE meta SET value = 0 WHERE key = 'run'", []) {
            tracing::error!(error = %e, "sqlite: cannot record a clean stop");
        }
    }
    tracing::debug!(clean, "sqlite writer stopped");
}

/// A seq as SQLite's signed integer; seqs past `i64::MAX` (only "no bound" sentinels) clamp.
fn sql_seq(seq: u64) -> i64 {
    seq.min(i64::MAX as u64) as i64
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

fn kind_str(k: RoomKind) -> &'static str {
    match k {
        RoomKind::Room => "room",
        RoomKind::Group => "group",
    }
}

fn kind_from(s: &str) -> RoomKind {
    if s == "group" {
        RoomKind::Group
    } else {
        RoomKind::Room
    }
}

fn encode_body(b: &EventBody) -> StoreResult<Vec<u8>> {
    rmp_serde::to_vec_named(b).map_err(StoreError::backend)
}

fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(StoreError::backend)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Map an `events` row (room, seq, ts, author, body, epoch) to an [`Event`].
fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let body: Vec<u8> = row.get(4)?;
    let body: EventBody = rmp_serde::from_slice(&body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(Event {
        room: RoomId(row.get(0)?),
        seq: row.get::<_, i64>(1)? as u64,
        ts: row.get(2)?,
        author: UserId(row.get(3)?),
        epoch: row.get::<_, i64>(5)? as u64,
        body,
    })
}

const EVENT_COLUMNS: &str =
    "e.room, e.seq, e.ts, e.author, e.body, r.epoch FROM events e JOIN rooms r ON r.id = e.room";

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let kind: String = row.get(4)?;
    Ok(User {
        id: UserId(row.get(0)?),
        company: CompanyId(row.get(1)?),
        name: row.get(2)?,
        email: row.get(3)?,
        kind: if kind == "line" {
            UserKind::Line
        } else {
            UserKind::Works
        },
        active: row.get(5)?,
        external_granted: row.get(6)?,
        tokens_valid_after: row.get(7)?,
    })
}

const USER_COLUMNS: &str =
    "id, company, name, email, kind, active, external_granted, tokens_valid_after FROM users";

fn company_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Company> {
    let settings: String = row.get(2)?;
    Ok(Company {
        id: CompanyId(row.get(0)?),
        name: row.get(1)?,
        settings: from_json(&settings)?,
        self_registered: row.get(3)?,
    })
}

/// Append one entry inside the writer's transaction.
fn append_one(
    conn: &Connection,
    run: i64,
    room: &RoomId,
    entry: &NewEntry,
) -> StoreResult<Appended> {
    if let Some(cmid) = entry.client_msg_id() {
        let existing = conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} WHERE e.room = ?1 AND e.author = ?2 AND e.client_msg_id = ?3"
            ))?
            .query_row(params![room.0, entry.author.0, cmid], event_from_row)
            .optional()?;
        if let Some(event) = existing {
            return Ok(Appended {
                event,
                duplicate: true,
            });
        }
    }
    let (head, epoch): (i64, i64) = conn
        .prepare_cached(
            "SELECT h.head, r.epoch FROM rooms r JOIN room_heads h ON h.room = r.id WHERE r.id = ?1",
        )?
        .query_row(params![room.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("room {room}")))?;
    let seq = head + 1;
    conn.prepare_cached(
        "INSERT INTO events (room, seq, ts, author, kind, client_msg_id, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        room.0,
        seq,
        entry.ts,
        entry.author.0,
        entry.body.kind(),
        entry.client_msg_id(),
        encode_body(&entry.body)?
    ])?;
    conn.prepare_cached("UPDATE room_heads SET head = ?2, run = ?3 WHERE room = ?1")?
        .execute(params![room.0, seq, run])?;
    if super::moves_version(&entry.body) {
        conn.prepare_cached("UPDATE rooms SET version = ?2 WHERE id = ?1")?
            .execute(params![room.0, seq])?;
    }
    let event = Event {
        room: room.clone(),
        epoch: epoch as u64,
        seq: seq as u64,
        ts: entry.ts,
        author: entry.author.clone(),
        body: entry.body.clone(),
    };
    project(conn, &event)?;
    Ok(Appended {
        event,
        duplicate: false,
    })
}

/// Persist what [`projection::project`] computes for a committed entry, in the entry's
/// transaction: the room's row, the membership rows it changed, the item it changes, the message
/// it recalls, the files it frees, its audit record.
fn project(conn: &Connection, event: &Event) -> StoreResult<()> {
    let room = &event.room;
    let p = if crate::domain::records::changes_room(&event.body) {
        let mut record =
            load_room(conn, room)?.ok_or_else(|| StoreError::NotFound(format!("room {room}")))?;
        let p = projection::project(&mut record, event);
        save_room_row(conn, &record)?;
        p
    } else {
        projection::content(event)
    };
    for m in &p.members {
        save_membership(conn, room, m)?;
    }
    match p.item {
        ItemChange::None => {}
        ItemChange::Apply(id) => {
            let next = crate::domain::features::apply(load_item(conn, room, id)?, event);
            save_item(conn, room, id, next.as_ref())?;
        }
        ItemChange::Purge(root) => {
            let (gone, files) = projection::purge(&all_items(conn, room)?, root);
            for id in gone {
                save_item(conn, room, id, None)?;
            }
            for f in &files {
                delete_file_row(conn, f)?;
            }
        }
    }
    if let Some(seq) = p.recall {
        recall(conn, room, seq)?;
    }
    for f in &p.freed {
        delete_file_row(conn, f)?;
    }
    if let Some(audit) = &p.audit {
        write_audit(conn, audit)?;
    }
    Ok(())
}

/// The room's own row as projected (head and version are written with each entry).
fn save_room_row(conn: &Connection, r: &RoomRecord) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE rooms SET kind = ?2, name = ?3, description = ?4, owner_company = ?5,
                          features = ?6, image = ?7, converted_from = ?8
          WHERE id = ?1",
    )?
    .execute(params![
        r.id.0,
        kind_str(r.kind),
        r.name,
        r.description,
        r.owner_company.0,
        json(&r.features)?,
        r.image,
        r.converted_from.as_ref().map(|c| c.0.clone()),
    ])?;
    Ok(())
}

/// One user's standing in a room, as projected.
fn save_membership(conn: &Connection, room: &RoomId, m: &Membership) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO room_members (room, user, is_member, is_master, joined_seq)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (room, user) DO UPDATE SET
             is_member = excluded.is_member,
             is_master = excluded.is_master,
             joined_seq = excluded.joined_seq",
    )?
    .execute(params![
        room.0,
        m.user.0,
        m.member,
        m.master,
        sql_seq(m.since.unwrap_or(0))
    ])?;
    Ok(())
}

/// A room as stored (not deleted): its row and its members.
fn load_room(conn: &Connection, id: &RoomId) -> StoreResult<Option<RoomRecord>> {
    let row = conn
        .prepare_cached(
            "SELECT kind, name, description, owner_company, created_by, created_at,
                    features, epoch, (SELECT head FROM room_heads WHERE room = rooms.id),
                    converted_from, image, version
               FROM rooms WHERE id = ?1 AND deleted = 0",
        )?
        .query_row(params![id.0], |r| {
            let kind: String = r.get(0)?;
            let features: String = r.get(6)?;
            Ok(RoomRecord {
                id: id.clone(),
                kind: kind_from(&kind),
                name: r.get(1)?,
                description: r.get(2)?,
                owner_company: CompanyId(r.get(3)?),
                created_by: UserId(r.get(4)?),
                created_at: r.get(5)?,
                features: from_json::<Features>(&features)?,
                epoch: r.get::<_, i64>(7)? as u64,
                head: r.get::<_, i64>(8)? as u64,
                converted_from: r.get::<_, Option<String>>(9)?.map(RoomId),
                image: r.get(10)?,
                version: r.get::<_, i64>(11)? as u64,
                masters: Vec::new(),
                members: Vec::new(),
                member_since: Default::default(),
            })
        })
        .optional()?;
    let Some(mut room) = row else { return Ok(None) };
    let mut st = conn.prepare_cached(
        "SELECT user, is_member, is_master, joined_seq FROM room_members
          WHERE room = ?1 ORDER BY user",
    )?;
    let rows = st.query_map(params![id.0], |r| {
        Ok((
            UserId(r.get(0)?),
            r.get::<_, bool>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, i64>(3)? as u64,
        ))
    })?;
    for row in rows {
        let (u, member, master, joined) = row?;
        if member {
            room.member_since.insert(u.clone(), joined);
            room.members.push(u.clone());
        }
        if master {
            room.masters.push(u);
        }
    }
    Ok(Some(room))
}

fn load_item(conn: &Connection, room: &RoomId, id: u64) -> StoreResult<Option<Item>> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM items WHERE room = ?1 AND id = ?2")?
        .query_row(params![room.0, sql_seq(id)], |r| r.get(0))
        .optional()?;
    state
        .map(|s| serde_json::from_str(&s).map_err(StoreError::backend))
        .transpose()
}

fn save_item(conn: &Connection, room: &RoomId, id: u64, item: Option<&Item>) -> StoreResult<()> {
    match item {
        Some(it) => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO items (room, id, state) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![room.0, sql_seq(id), json(it)?])?;
        }
        None => {
            conn.prepare_cached("DELETE FROM items WHERE room = ?1 AND id = ?2")?
                .execute(params![room.0, sql_seq(id)])?;
        }
    }
    Ok(())
}

fn all_items(conn: &Connection, room: &RoomId) -> StoreResult<Vec<Item>> {
    let mut st = conn.prepare_cached("SELECT state FROM items WHERE room = ?1 ORDER BY id")?;
    let rows = st.query_map(params![room.0], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for s in rows {
        out.push(serde_json::from_str(&s?).map_err(StoreError::backend)?);
    }
    Ok(out)
}

/// M1: rewrite a recalled message as [`projection::recalled`] says, freeing its attachments.
fn recall(conn: &Connection, room: &RoomId, seq: u64) -> StoreResult<()> {
    let body: Option<Vec<u8>> = conn
        .prepare_cached("SELECT body FROM events WHERE room = ?1 AND seq = ?2")?
        .query_row(params![room.0, sql_seq(seq)], |r| r.get(0))
        .optional()?;
    let Some(body) = body else { return Ok(()) };
    let body: EventBody = rmp_serde::from_slice(&body).map_err(StoreError::backend)?;
    if let Some((placeholder, freed)) = projection::recalled(body) {
        for f in &freed {
            delete_file_row(conn, f)?;
        }
        conn.prepare_cached("UPDATE events SET body = ?3 WHERE room = ?1 AND seq = ?2")?
            .execute(params![room.0, sql_seq(seq), encode_body(&placeholder)?])?;
    }
    Ok(())
}

/// A file record's columns, as [`file_from_row`] reads them.
const FILE_COLUMNS: &str =
    "id, room, company, size, sha256, name, content_type, created_by, created_at, attachment";

fn file_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        id: r.get(0)?,
        room: RoomId(r.get(1)?),
        company: CompanyId(r.get(2)?),
        size: r.get::<_, i64>(3)? as u64,
        sha256: r.get(4)?,
        name: r.get(5)?,
        content_type: r.get(6)?,
        created_by: UserId(r.get(7)?),
        created_at: r.get(8)?,
        attachment: r.get(9)?,
    })
}

/// Forget a file and give its bytes back to its company's storage.
fn delete_file_row(conn: &Connection, id: &str) -> StoreResult<()> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT company, size FROM files WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((company, size)) = row {
        conn.prepare_cached("DELETE FROM files WHERE id = ?1")?
            .execute(params![id])?;
        release(conn, &company, size as u64)?;
    }
    Ok(())
}

fn release(conn: &Connection, company: &str, bytes: u64) -> StoreResult<()> {
    conn.prepare_cached("UPDATE storage SET used = max(0, used - ?2) WHERE company = ?1")?
        .execute(params![company, sql_seq(bytes)])?;
    Ok(())
}

fn write_audit(conn: &Connection, a: &NewAudit) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO audit (ts, room, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![a.ts, a.room.0, a.actor.0, a.action, a.detail])?;
    let id = conn.last_insert_rowid();
    let mut st = conn
        .prepare_cached("INSERT OR IGNORE INTO audit_companies (company, audit) VALUES (?1, ?2)")?;
    for c in &a.companies {
        st.execute(params![c.0, id])?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_company(&self, company: &Company, admin_key_hash: &str) -> StoreResult<()> {
        let c = company.clone();
        let settings = json(&c.settings)?;
        let hash = admin_key_hash.to_owned();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO companies (id, name, settings, key_hash, self_registered) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![c.id.0, c.name, settings, hash, c.self_registered],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists(format!("company {}", c.id))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn company(&self, id: &CompanyId) -> StoreResult<Option<Company>> {
        let id = id.clone();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, name, settings, self_registered FROM companies WHERE id = ?1",
                )?
                .query_row(params![id.0], company_from_row)
                .optional()?)
        })
        .await
    }

    async fn companies(&self) -> StoreResult<Vec<Company>> {
        self.read(|conn| {
            let mut st = conn.prepare_cached(
                "SELECT id, name, settings, self_registered FROM companies ORDER BY id",
            )?;
            let rows = st.query_map([], company_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn company_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<CompanyId>> {
        let h = key_hash.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id FROM companies WHERE key_hash = ?1")?
                .query_row(params![h], |r| Ok(CompanyId(r.get(0)?)))
                .optional()?)
        })
        .await
    }

    async fn set_admin_key(&self, id: &CompanyId, key_hash: &str) -> StoreResult<()> {
        let (id, h) = (id.clone(), key_hash.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached("UPDATE companies SET key_hash = ?2 WHERE id = ?1")?
                .execute(params![id.0, h])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("company {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn delete_company(&self, id: &CompanyId) -> StoreResult<()> {
        let id = id.clone();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM companies WHERE id = ?1")?
                .execute(params![id.0])?;
            Ok(())
        })
        .await
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<()> {
        let id = id.clone();
        self.write(move |conn| {
            // One write batch, one transaction.
            conn.prepare_cached("DELETE FROM users WHERE id = ?1")?
                .execute(params![id.0])?;
            conn.prepare_cached("DELETE FROM contacts WHERE owner = ?1 OR contact = ?1")?
                .execute(params![id.0])?;
            Ok(())
        })
        .await
    }

    async fn change_settings(
        &self,
        id: &CompanyId,
        patch: &SettingsPatch,
    ) -> StoreResult<(CompanySettings, CompanySettings)> {
        let (id, patch) = (id.clone(), patch.clone());
        // One writer thread: this read-modify-write is atomic with every other write.
        self.write(move |conn| {
            let raw: Option<String> = conn
                .prepare_cached("SELECT settings FROM companies WHERE id = ?1")?
                .query_row(params![id.0], |r| r.get(0))
                .optional()?;
            let raw = raw.ok_or_else(|| StoreError::NotFound(format!("company {id}")))?;
            let before: CompanySettings = from_json(&raw)?;
            let after = patch_settings(&before, &patch).map_err(StoreError::backend)?;
            conn.execute(
                "UPDATE companies SET settings = ?2 WHERE id = ?1",
                params![id.0, json(&after)?],
            )?;
            Ok((before, after))
        })
        .await
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let u = user.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO users (id, company, name, email, kind, active, external_granted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    u.id.0,
                    u.company.0,
                    u.name,
                    u.email,
                    u.kind.as_str(),
                    u.active,
                    u.external_granted
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists(format!("user {}", u.id))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn user(&self, id: &UserId) -> StoreResult<Option<User>> {
        let id = id.clone();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {USER_COLUMNS} WHERE id = ?1"))?
                .query_row(params![id.0], user_from_row)
                .optional()?)
        })
        .await
    }

    async fn users(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        let ids = ids.to_vec();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!("SELECT {USER_COLUMNS} WHERE id = ?1"))?;
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(u) = st.query_row(params![id.0], user_from_row).optional()? {
                    out.push(u);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn users_of(&self, company: &CompanyId) -> StoreResult<Vec<User>> {
        let c = company.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} WHERE company = ?1 ORDER BY id"
            ))?;
            let rows = st.query_map(params![c.0], user_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn change_user(&self, id: &UserId, change: &UserChange) -> StoreResult<(User, User)> {
        let (id, change) = (id.clone(), change.clone());
        // One writer thread: this read-modify-write is atomic with every other write.
        self.write(move |conn| {
            let before = conn
                .prepare_cached(&format!("SELECT {USER_COLUMNS} WHERE id = ?1"))?
                .query_row(params![id.0], user_from_row)
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
            let u = change.apply(&before);
            conn.execute(
                "UPDATE users SET name = ?2, email = ?3, active = ?4, external_granted = ?5,
                                  tokens_valid_after = ?6
                 WHERE id = ?1",
                params![
                    u.id.0,
                    u.name,
                    u.email,
                    u.active,
                    u.external_granted,
                    u.tokens_valid_after
                ],
            )?;
            Ok((before, u))
        })
        .await
    }

    async fn add_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()> {
        let (o, c) = (owner.clone(), contact.clone());
        self.write(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO contacts (owner, contact) VALUES (?1, ?2)",
                params![o.0, c.0],
            )?;
            Ok(())
        })
        .await
    }

    async fn remove_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()> {
        let (o, c) = (owner.clone(), contact.clone());
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM contacts WHERE owner = ?1 AND contact = ?2",
                params![o.0, c.0],
            )?;
            Ok(())
        })
        .await
    }

    async fn contacts(&self, owner: &UserId) -> StoreResult<Vec<UserId>> {
        let o = owner.clone();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached("SELECT contact FROM contacts WHERE owner = ?1 ORDER BY contact")?;
            let rows = st.query_map(params![o.0], |r| Ok(UserId(r.get(0)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn create_room(&self, room: &NewRoom) -> StoreResult<Event> {
        let r = room.clone();
        let features = json(&r.features)?;
        let run = self.run;
        self.write(move |conn| {
            // G20, in the insert's transaction: concurrent creations cannot both see room.
            if let Some(max) = r.max_owned_groups {
                let owned: i64 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM rooms
                          WHERE owner_company = ?1 AND kind = 'group' AND deleted = 0",
                    )?
                    .query_row(params![r.owner_company.0], |row| row.get(0))?;
                if owned as u64 >= max {
                    return Err(StoreError::LimitReached(
                        crate::domain::rules::group_limit_message(max),
                    ));
                }
            }
            conn.execute(
                "INSERT INTO rooms (id, kind, name, description, owner_company, created_by,
                                    created_at, features, epoch, head)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)",
                params![
                    r.id.0,
                    kind_str(r.kind),
                    r.name,
                    r.description,
                    r.owner_company.0,
                    r.created_by.0,
                    r.created_at,
                    features,
                    r.epoch as i64
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists(format!("room {}", r.id))
                } else {
                    e.into()
                }
            })?;
            conn.prepare_cached("INSERT INTO room_heads (room, head) VALUES (?1, 0)")?
                .execute(params![r.id.0])?;
            // Its members, masters and audit record come from projecting its first entry.
            let created = append_one(conn, run, &r.id, &r.first_entry())?;
            Ok(created.event)
        })
        .await
    }

    async fn room(&self, id: &RoomId) -> StoreResult<Option<RoomRecord>> {
        let id = id.clone();
        self.read(move |conn| load_room(conn, &id)).await
    }

    async fn append(
        &self,
        room: &RoomId,
        entries: Vec<NewEntry>,
        expect: Option<u64>,
    ) -> StoreResult<CommitTicket> {
        let room = room.clone();
        let run = self.run;
        let rx = self
            .enqueue(move |conn| {
                if let Some(expected) = expect {
                    let version: Option<i64> = conn
                        .prepare_cached("SELECT version FROM rooms WHERE id = ?1 AND deleted = 0")?
                        .query_row(params![room.0], |r| r.get(0))
                        .optional()?;
                    match version {
                        None => return Err(StoreError::NotFound(format!("room {room}"))),
                        Some(v) if v as u64 != expected => return Err(StoreError::Conflict),
                        Some(_) => {}
                    }
                }
                entries
                    .iter()
                    .map(|e| append_one(conn, run, &room, e))
                    .collect::<StoreResult<Vec<_>>>()
            })
            .await?;
        Ok(async move { rx.await.map_err(|_| StoreError::Closed)? }.boxed())
    }

    async fn read_range(
        &self,
        room: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let room = room.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} WHERE e.room = ?1 AND e.seq > ?2 AND e.seq <= ?3
                 ORDER BY e.seq LIMIT ?4"
            ))?;
            let rows = st.query_map(
                params![room.0, sql_seq(after), sql_seq(upto), limit as i64],
                event_from_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn read_before(
        &self,
        room: &RoomId,
        from: u64,
        before: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let room = room.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} WHERE e.room = ?1 AND e.seq >= ?2 AND e.seq < ?3
                 ORDER BY e.seq DESC LIMIT ?4"
            ))?;
            let rows = st.query_map(
                params![room.0, sql_seq(from), sql_seq(before), limit as i64],
                event_from_row,
            )?;
            let mut out: Vec<Event> = rows.collect::<Result<_, _>>()?;
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn rooms_of(&self, user: &UserId) -> StoreResult<Vec<MembershipRow>> {
        let u = user.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT r.id, r.kind, r.name, r.epoch,
                        (SELECT head FROM room_heads h WHERE h.room = r.id), m.last_read,
                        (SELECT count(*) FROM events e
                          WHERE m.is_member = 1 AND e.room = r.id AND e.seq > m.last_read
                            AND e.kind = 'message' AND e.author != m.user),
                        m.is_member, m.is_master
                   FROM room_members m JOIN rooms r ON r.id = m.room
                  WHERE m.user = ?1 AND (m.is_member = 1 OR m.is_master = 1) AND r.deleted = 0
                  ORDER BY r.id",
            )?;
            let rows = st.query_map(params![u.0], |r| {
                let kind: String = r.get(1)?;
                Ok(MembershipRow {
                    room: RoomId(r.get(0)?),
                    kind: kind_from(&kind),
                    name: r.get(2)?,
                    epoch: r.get::<_, i64>(3)? as u64,
                    head: r.get::<_, i64>(4)? as u64,
                    last_read: r.get::<_, i64>(5)? as u64,
                    unread: r.get::<_, i64>(6)? as u64,
                    member: r.get(7)?,
                    master: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn set_read_marker(&self, room: &RoomId, user: &UserId, seq: u64) -> StoreResult<()> {
        let (r, u) = (room.clone(), user.clone());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE room_members SET last_read = max(last_read, ?3) WHERE room = ?1 AND user = ?2",
            )?
            .execute(params![r.0, u.0, sql_seq(seq)])?;
            Ok(())
        })
        .await
    }

    async fn groups_of(&self, user: &UserId) -> StoreResult<Vec<RoomId>> {
        let u = user.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT r.id FROM room_members m JOIN rooms r ON r.id = m.room
                  WHERE m.user = ?1 AND (m.is_member = 1 OR m.is_master = 1)
                    AND r.kind = 'group' AND r.deleted = 0 ORDER BY r.id",
            )?;
            let rows = st.query_map(params![u.0], |r| Ok(RoomId(r.get(0)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn count_owned_groups(&self, company: &CompanyId) -> StoreResult<u64> {
        let c = company.clone();
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached(
                    "SELECT count(*) FROM rooms WHERE owner_company = ?1 AND kind = 'group' AND deleted = 0",
                )?
                .query_row(params![c.0], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    async fn owned_groups(&self, company: &CompanyId) -> StoreResult<Vec<RoomId>> {
        let c = company.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT id FROM rooms WHERE owner_company = ?1 AND kind = 'group' AND deleted = 0
                  ORDER BY id",
            )?;
            let rows = st.query_map(params![c.0], |r| Ok(RoomId(r.get(0)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_room(&self, room: &RoomId, audit: NewAudit) -> StoreResult<Vec<String>> {
        let r = room.clone();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE rooms SET deleted = 1, name = '', description = '', invite_token = NULL,
                                      invite_expires = NULL WHERE id = ?1 AND deleted = 0",
                )?
                .execute(params![r.0])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("room {r}")));
            }
            conn.prepare_cached("DELETE FROM events WHERE room = ?1")?
                .execute(params![r.0])?;
            conn.prepare_cached("DELETE FROM items WHERE room = ?1")?
                .execute(params![r.0])?;
            conn.prepare_cached("DELETE FROM room_members WHERE room = ?1")?
                .execute(params![r.0])?;
            let files: Vec<String> = conn
                .prepare_cached("SELECT id FROM files WHERE room = ?1")?
                .query_map(params![r.0], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for f in &files {
                delete_file_row(conn, f)?;
            }
            write_audit(conn, &audit)?;
            Ok(files)
        })
        .await
    }

    async fn reserve_storage(
        &self,
        company: &CompanyId,
        bytes: u64,
        quota: u64,
        _lease: std::time::Duration,
    ) -> StoreResult<Option<Reservation>> {
        // Held in `used` itself: this process alone writes the file, and its start gives back
        // whatever a killed one held.
        let c = company.clone();
        self.write(move |conn| {
            conn.prepare_cached("INSERT OR IGNORE INTO storage (company, used) VALUES (?1, 0)")?
                .execute(params![c.0])?;
            let n = conn
                .prepare_cached(
                    "UPDATE storage SET used = used + ?2 WHERE company = ?1 AND used + ?2 <= ?3",
                )?
                .execute(params![c.0, sql_seq(bytes), sql_seq(quota)])?;
            Ok((n == 1).then(|| Reservation {
                company: c,
                bytes,
                id: String::new(),
            }))
        })
        .await
    }

    async fn renew_reservation(
        &self,
        _held: &Reservation,
        _lease: std::time::Duration,
    ) -> StoreResult<bool> {
        Ok(true)
    }

    async fn release_storage(&self, held: &Reservation) -> StoreResult<()> {
        let (c, bytes) = (held.company.clone(), held.bytes);
        self.write(move |conn| release(conn, &c.0, bytes)).await
    }

    async fn storage_used(&self, company: &CompanyId) -> StoreResult<u64> {
        let c = company.clone();
        self.read(move |conn| {
            let used: Option<i64> = conn
                .prepare_cached("SELECT used FROM storage WHERE company = ?1")?
                .query_row(params![c.0], |r| r.get(0))
                .optional()?;
            Ok(used.unwrap_or(0) as u64)
        })
        .await
    }

    async fn add_file(&self, file: &FileRecord, _held: &Reservation) -> StoreResult<()> {
        // The reserved bytes are in `used` already: they are the file's now.
        let f = file.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO files (id, room, company, size, sha256, name, content_type, created_by, created_at, attachment)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                f.id,
                f.room.0,
                f.company.0,
                sql_seq(f.size),
                f.sha256,
                f.name,
                f.content_type,
                f.created_by.0,
                f.created_at,
                f.attachment
            ])?;
            Ok(())
        })
        .await
    }

    async fn delete_file(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| delete_file_row(conn, &id)).await
    }

    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        let id = id.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ?1"))?
                .query_row(params![id], file_from_row)
                .optional()?)
        })
        .await
    }

    async fn claim_file(&self, id: &str, claim: Option<&str>) -> StoreResult<Option<String>> {
        let (id, claim) = (id.to_owned(), claim.map(str::to_owned));
        self.write(move |conn| {
            if let Some(c) = &claim {
                conn.prepare_cached("UPDATE files SET claim = ?2 WHERE id = ?1 AND claim IS NULL")?
                    .execute(params![id, c])?;
            }
            Ok(conn
                .prepare_cached("SELECT claim FROM files WHERE id = ?1")?
                .query_row(params![id], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .flatten())
        })
        .await
    }

    async fn unsettled_attachments(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(FileRecord, Option<String>)>> {
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {FILE_COLUMNS}, claim FROM files
                  WHERE attachment = 1 AND settled = 0 AND created_at < ?1
                  ORDER BY created_at LIMIT ?2"
            ))?;
            let rows = st.query_map(params![before_ms, limit as i64], |r| {
                Ok((file_from_row(r)?, r.get::<_, Option<String>>(10)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn settle_file(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE files SET settled = 1 WHERE id = ?1")?
                .execute(params![id])?;
            Ok(())
        })
        .await
    }

    async fn posted_message(
        &self,
        room: &RoomId,
        author: &UserId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Event>> {
        let (room, author, cmid) = (room.0.clone(), author.0.clone(), client_msg_id.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} WHERE e.room = ?1 AND e.author = ?2 AND e.client_msg_id = ?3"
                ))?
                .query_row(params![room, author, cmid], event_from_row)
                .optional()?)
        })
        .await
    }

    fn sole_writer(&self) -> bool {
        true
    }

    async fn move_epoch(&self, room: &RoomId, epoch: u64) -> StoreResult<()> {
        let room = room.clone();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE rooms SET epoch = ?2 WHERE id = ?1")?
                .execute(params![room.0, epoch as i64])?;
            Ok(())
        })
        .await
    }

    async fn set_invite(
        &self,
        room: &RoomId,
        invite: Option<Invite>,
        audit: NewAudit,
    ) -> StoreResult<()> {
        let r = room.clone();
        self.write(move |conn| {
            let (token, expires, barred) = match &invite {
                Some(i) => (Some(i.token.clone()), i.expires_at, json(&i.barred)?),
                None => (None, None, "[]".to_owned()),
            };
            let n = conn
                .prepare_cached(
                    "UPDATE rooms SET invite_token = ?2, invite_expires = ?3, invite_barred = ?4
                      WHERE id = ?1 AND deleted = 0",
                )?
                .execute(params![r.0, token, expires, barred])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("room {r}")));
            }
            write_audit(conn, &audit)
        })
        .await
    }

    async fn invite_of(&self, room: &RoomId) -> StoreResult<Option<Invite>> {
        let r = room.clone();
        self.read(move |conn| {
            let row: Option<(Option<String>, Option<i64>, String)> = conn
                .prepare_cached(
                    "SELECT invite_token, invite_expires, invite_barred FROM rooms
                      WHERE id = ?1 AND deleted = 0",
                )?
                .query_row(params![r.0], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            let Some((Some(token), expires_at, barred)) = row else {
                return Ok(None);
            };
            Ok(Some(Invite {
                token,
                expires_at,
                barred: from_json(&barred)?,
            }))
        })
        .await
    }

    async fn room_by_invite(&self, token: &str) -> StoreResult<Option<(RoomId, Invite)>> {
        let t = token.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, invite_expires, invite_barred FROM rooms
                      WHERE invite_token = ?1 AND deleted = 0",
                )?
                .query_row(params![t], |row| {
                    let barred: String = row.get(2)?;
                    Ok((
                        RoomId(row.get(0)?),
                        Invite {
                            token: t.clone(),
                            expires_at: row.get(1)?,
                            barred: from_json(&barred)?,
                        },
                    ))
                })
                .optional()?)
        })
        .await
    }

    async fn audit(
        &self,
        company: Option<&CompanyId>,
        room: Option<&RoomId>,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<AuditEntry>> {
        let c = company.map(|c| c.0.clone());
        let room = room.cloned();
        self.read(move |conn| {
            // One company: through its index. Every company: the records themselves.
            let mut st = conn.prepare_cached(match c {
                Some(_) => {
                    "SELECT a.id, a.ts, a.room, a.actor, a.action, a.detail,
                            (SELECT group_concat(company, ' ') FROM audit_companies WHERE audit = a.id)
                       FROM audit_companies ac JOIN audit a ON a.id = ac.audit
                      WHERE ac.company = ?1 AND ac.audit < ?2 AND (?3 IS NULL OR a.room = ?3)
                      ORDER BY ac.audit DESC LIMIT ?4"
                }
                None => {
                    "SELECT a.id, a.ts, a.room, a.actor, a.action, a.detail,
                            (SELECT group_concat(company, ' ') FROM audit_companies WHERE audit = a.id)
                       FROM audit a
                      WHERE ?1 IS NULL AND a.id < ?2 AND (?3 IS NULL OR a.room = ?3)
                      ORDER BY a.id DESC LIMIT ?4"
                }
            })?;
            let rows = st.query_map(
                params![
                    c,
                    sql_seq(before.unwrap_or(u64::MAX)),
                    room.map(|r| r.0),
                    limit as i64
                ],
                |r| {
                    let detail: String = r.get(5)?;
                    let companies: Option<String> = r.get(6)?;
                    Ok(AuditEntry {
                        id: r.get::<_, i64>(0)? as u64,
                        ts: r.get(1)?,
                        room: RoomId(r.get(2)?),
                        actor: UserId(r.get(3)?),
                        action: r.get(4)?,
                        detail: from_json(&detail)?,
                        companies: companies
                            .unwrap_or_default()
                            .split_whitespace()
                            .map(|c| CompanyId(c.to_owned()))
                            .collect(),
                    })
                },
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn items(&self, room: &RoomId) -> StoreResult<Vec<Item>> {
        let r = room.clone();
        self.read(move |conn| all_items(conn, &r)).await
    }

    async fn item(&self, room: &RoomId, id: u64) -> StoreResult<Option<Item>> {
        let r = room.clone();
        self.read(move |conn| load_item(conn, &r, id)).await
    }

    async fn item_count(&self, room: &RoomId) -> StoreResult<u64> {
        let r = room.clone();
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM items WHERE room = ?1")?
                .query_row(params![r.0], |row| row.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    async fn event_at(&self, room: &RoomId, seq: u64) -> StoreResult<Option<Event>> {
        let r = room.clone();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} WHERE e.room = ?1 AND e.seq = ?2"
                ))?
                .query_row(params![r.0, sql_seq(seq)], event_from_row)
                .optional()?)
        })
        .await
    }

    async fn read_note(&self, room: &RoomId, note: u64, user: &UserId) -> StoreResult<Option<u64>> {
        let (r, u) = (room.clone(), user.clone());
        self.write(move |conn| {
            let Some(Item::Note(mut n)) = load_item(conn, &r, note)? else {
                return Ok(None);
            };
            n.readers.insert(u);
            let count = n.readers.len() as u64;
            save_item(conn, &r, note, Some(&Item::Note(n)))?;
            Ok(Some(count))
        })
        .await
    }

    async fn readers(&self, room: &RoomId, seq: u64, except: &UserId) -> StoreResult<Vec<UserId>> {
        let (r, x) = (room.clone(), except.clone());
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT user FROM room_members
                  WHERE room = ?1 AND is_member = 1 AND last_read >= ?2 AND user != ?3 ORDER BY user",
            )?;
            let rows = st.query_map(params![r.0, sql_seq(seq), x.0], |row| Ok(UserId(row.get(0)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn restore_room(
        &self,
        _room: &RoomRecord,
        _epoch: u64,
        _notice: NewEntry,
    ) -> StoreResult<bool> {
        // One file, one transaction log: a room is never lost while the database is there.
        Ok(false)
    }

    async fn close(&self) {
        // Dropping the sender lets the writer finish what is queued and stop.
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            // Joining blocks; do it off the async threads.
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}
