//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Writes go to a single writer thread through a bounded queue. The writer takes every job that
//! is waiting (up to [`MAX_BATCH`]), runs each in its own savepoint inside one transaction and
//! commits once — group commit: one fsync for the whole batch — and only then answers each job.
//! A job that fails rolls back its own savepoint and leaves the rest of the batch alone.
//!
//! Reads run on a few read threads, each with its own connection ([`read_pool`]); WAL lets
//! them proceed while the writer commits.
//!
//! This process is the only writer of the file, so room actors number their entries themselves
//! and deliver them before they commit ([`RoomLogStore::sole_writer`]). Each run has an id, kept in
//! `meta` while it runs and every room it numbers is marked with ([`RoomLogStore::mark_numbered`],
//! `room_heads.run`) before its first entry is delivered ahead of its commit; a run that
//! did not end cleanly leaves its id behind, and the next open moves every room it marked to a
//! new epoch: what subscribers were shown of a tail that never reached the disk is never
//! resumed as if it had (D1).
//!
//! ## Files
//! One file per concern, the same names as the Redis store's: `directory`, `log`,
//! `memberships`, `items`, `files`, `invites`, `audit`, `search` (each implements its trait of
//! [`crate::store`]); `index` (the search index: its own file and thread, fed by each committed
//! batch, and its background backfill); `writer` (the writer thread); `schema` (with `schema.sql`), `rows` (row
//! mappers) and `read_pool` (the read threads).

mod audit;
mod directory;
mod files;
mod index;
mod invites;
mod items;
mod log;
mod memberships;
mod read_pool;
mod rows;
mod schema;
mod search;
mod writer;

use read_pool::ReadPool;
pub use schema::snapshot_into;
pub use writer::TestFaults;
use writer::{in_savepoint, write_loop, Job, WRITE_QUEUE};

use super::{
    Appended, AuditEntry, AuditStore, CommitTicket, DirectoryStore, FileRecord, FileStore, Invite,
    InviteStore, ItemStore, MembershipRow, MembershipStore, NewAudit, NewEntry, NewRoom,
    Reservation, RoomLogStore, RoomRecord, Store, StoreError, StoreResult,
};
use crate::domain::directory::{
    patch_settings, Company, CompanySettings, SettingsPatch, User, UserChange,
};
use crate::domain::projection::{self, ItemChange, Membership};
use async_trait::async_trait;
use crossroom_protocol::{CompanyId, Event, EventBody, Features, Item, RoomId, UserId};
use futures_util::FutureExt;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};

pub struct SqliteStore {
    /// This run's id, marked on every room whose entries it numbers and delivers early.
    run: i64,
    /// `None` once closed.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: ReadPool,
    /// The search index: its thread (stopped at close), its file, how far it is.
    index: Mutex<Option<index::SearchIndex>>,
    index_path: std::path::PathBuf,
    indexed: std::sync::Arc<index::Applied>,
}

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
        schema::migrate(&conn, path)?;
        let (run, restored) = schema::begin_run(&conn)?;
        if restored {
            // An index newer than the restored log would point at seqs that new entries reuse.
            index::discard(path);
        }
        let (search_index, feed) = index::SearchIndex::start(path)?;
        let (index_path, indexed) = (search_index.path.clone(), search_index.applied.clone());
        let (tx, rx) = mpsc::channel::<Job>(WRITE_QUEUE);
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(conn, rx, faults, feed))
            .map_err(StoreError::backend)?;
        Ok(SqliteStore {
            run,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: ReadPool::new(path),
            index: Mutex::new(Some(search_index)),
            index_path,
            indexed,
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

#[async_trait]
impl Store for SqliteStore {
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
        // The writer is gone: the index applies what it was given, and stops.
        let search_index = self.index.lock().ok().and_then(|mut i| i.take());
        if let Some(mut i) = search_index {
            // The thread was stopped either way: a join error would only repeat its panic.
            let _ = tokio::task::spawn_blocking(move || i.stop()).await;
        }
    }
}
