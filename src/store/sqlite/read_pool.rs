//! The read side of the embedded store: a few threads, each with its own read-only connection to
//! the SQLite file (WAL lets them read while the writer commits), taking jobs from one queue.
//!
//! Not tokio's blocking pool: that pool starts a thread for every job that finds none idle, so a
//! burst of connections (each one looks up its token's user) started one thread per concurrent
//! lookup — 60 and more on a two-core machine, each with its stack and its own connection and
//! page cache — and every lookup paid a switch to a fresh thread and back. Here at most
//! [`READ_THREADS`] threads exist; one that finishes a job takes the next from the queue without
//! sleeping, so a burst is served by threads that stay running, and a thread is woken only when
//! one is asleep and work arrives. The threads are `SCHED_BATCH` ([`crate::store::batch_scheduling`]):
//! a wake-up does not preempt the async worker that queued the read.

use crate::store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Most read threads (and read connections). Reads are short and mostly served from the
/// kernel's page cache, so more threads than cores only help while a read waits for the disk;
/// a few spare ones keep a heavy query (a long calendar range) from holding up the lookups
/// behind it.
pub const READ_THREADS: usize = 4;

/// SQLite's page cache per read connection, in KiB. The pages are in the kernel's page cache
/// anyway; each connection keeps its own copy of what it read.
const READ_CACHE_KIB: i64 = 256;

/// A read, given the thread's connection (or why there is none).
type Job = Box<dyn FnOnce(StoreResult<&Connection>) + Send>;

/// The read threads of one SQLite file.
pub struct ReadPool {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    state: Mutex<State>,
    work: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Threads waiting for work.
    idle: usize,
    /// Threads started (they never stop before the pool does).
    threads: usize,
    closed: bool,
}

impl ReadPool {
    pub fn new(path: &Path) -> ReadPool {
        ReadPool {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                state: Mutex::new(State::default()),
                work: Condvar::new(),
            }),
        }
    }

    /// Run `f` on a read connection and wait for its answer (without blocking this thread).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (done, answer) = oneshot::channel();
        self.push(Box::new(move |conn| {
            // The caller may have stopped waiting; nothing to do then.
            let _ = done.send(conn.and_then(f));
        }))?;
        // A read that panicked dropped `done`: the caller gets an error, the thread lives on.
        answer
            .await
            .map_err(|_| StoreError::backend("a read failed (see the log)"))?
    }

    fn push(&self, job: Job) -> StoreResult<()> {
        let mut s = self.shared.lock();
        if s.closed {
            return Err(StoreError::Closed);
        }
        s.jobs.push_back(job);
        if s.idle > 0 {
            self.shared.work.notify_one();
        } else if s.threads < READ_THREADS {
            let shared = self.shared.clone();
            let started = std::thread::Builder::new()
                .name("sqlite-reader".into())
                .spawn(move || read_loop(&shared));
            match started {
                Ok(_) => s.threads += 1,
                // None could be started: the job waits for one that exists, or fails now.
                Err(e) if s.threads == 0 => {
                    s.jobs.clear();
                    return Err(StoreError::backend(e));
                }
                Err(_) => {}
            }
        }
        Ok(())
    }
}

impl Drop for ReadPool {
    /// The threads finish what is queued and stop.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A job never runs under the lock, so a poisoned lock holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next job, or `None` once the pool is closed and the queue empty.
    fn next(&self) -> Option<Job> {
        let mut s = self.lock();
        loop {
            if let Some(job) = s.jobs.pop_front() {
                return Some(job);
            }
            if s.closed {
                return None;
            }
            s.idle += 1;
            s = self.work.wait(s).unwrap_or_else(|p| p.into_inner());
            s.idle -= 1;
        }
    }
}

fn read_loop(shared: &Shared) {
    crate::store::batch_scheduling();
    let mut conn: Option<Connection> = None;
    while let Some(job) = shared.next() {
        let c = match conn.take().map_or_else(|| open(&shared.path), Ok) {
            Ok(c) => c,
            Err(e) => {
                job(Err(e));
                continue;
            }
        };
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| job(Ok(&c))));
        if ran.is_ok() {
            conn = Some(c);
        } else {
            // A statement may be left mid-step: start the next read on a fresh connection.
            conn = None;
        }
    }
}

fn open(path: &Path) -> StoreResult<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    c.pragma_update(None, "cache_size", -READ_CACHE_KIB)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> (tempfile::TempDir, ReadPool) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("db.sqlite");
        let c = Connection::open(&path).expect("open");
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (7);",
        )
        .expect("schema");
        (dir, ReadPool::new(&path))
    }

    #[tokio::test]
    async fn many_concurrent_reads_are_served_by_at_most_the_pool_s_threads() {
        let (_dir, pool) = pool();
        let pool = Arc::new(pool);
        let reads = (0..200).map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(|c| Ok(c.query_row("SELECT v FROM t", [], |r| r.get::<_, i64>(0))?))
                    .await
            })
        });
        for r in futures_util::future::join_all(reads).await {
            assert_eq!(r.expect("task").expect("read"), 7);
        }
        let threads = pool.shared.lock().threads;
        assert!((1..=READ_THREADS).contains(&threads), "{threads} threads");
    }

    #[tokio::test]
    async fn a_read_that_panics_fails_alone_and_the_pool_goes_on() {
        let (_dir, pool) = pool();
        let failed = pool.run::<()>(|_| panic!("a bug in a read")).await;
        assert!(failed.is_err());
        let v = pool
            .run(|c| Ok(c.query_row("SELECT v FROM t", [], |r| r.get::<_, i64>(0))?))
            .await;
        assert_eq!(v.expect("read"), 7);
    }

    #[tokio::test]
    async fn a_closed_pool_refuses_reads() {
        let (_dir, pool) = pool();
        pool.shared.lock().closed = true;
        assert!(matches!(
            pool.run(|_| Ok(())).await,
            Err(StoreError::Closed)
        ));
    }
}
