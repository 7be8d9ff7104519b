//! The writer thread: takes every job that is waiting (up to [`MAX_BATCH`]), runs each in
//! its own savepoint inside one transaction and commits once (group commit), hands what the batch
//! changes for the search index to the index's thread ([`index::IndexFeed`]), then answers each
//! job; and the test knobs that stand in for a slow or failing disk.

use super::index;
use crate::store::{StoreError, StoreResult};
use rusqlite::Connection;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// Most jobs committed in one transaction. Large enough to amortise the fsync across a burst,
/// small enough that the first job of a batch does not wait long for the last.
pub(super) const MAX_BATCH: usize = 512;

/// Capacity of the writer's queue (jobs). When full, writers wait: that is the back-pressure
/// that keeps a burst from growing memory without bound.
pub(super) const WRITE_QUEUE: usize = 8192;

/// What a job hands back after running: called with the outcome of the batch's commit.
pub(super) type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;

/// A write job: runs inside the batch transaction.
pub(super) type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

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
pub(super) fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let queued = index::mark();
    let out = f(conn);
    if out.is_err() {
        index::forget_since(queued);
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    out
}

/// Run the write jobs until every sender is gone; then, if every commit of the run succeeded,
/// record that it ended cleanly (every entry an actor delivered is stored).
pub(super) fn write_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    faults: TestFaults,
    index: index::IndexFeed,
) {
    crate::store::batch_scheduling();
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
        // What the batch changes for the search index goes to it once the batch has committed.
        let for_index = index::take();
        let commit = if faults.commits_fail() {
            Err(StoreError::backend("test knob: the commit failed"))
        } else {
            conn.execute_batch("COMMIT").map_err(StoreError::from)
        };
        if commit.is_ok() {
            index.send(for_index);
        }
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
