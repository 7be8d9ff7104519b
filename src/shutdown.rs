//! Graceful shutdown: one signal that every part listens to, a count of live connections so
//! the server can drain them under a deadline, and the tracker of every task the server spawns,
//! so that shutdown waits for room actors, requests in flight and store work before the store
//! closes.
//!
//! Two kinds of task: work that ends by itself ([`Shutdown::spawn`]: a request, a room actor, a
//! commit), and background loops that run until the node stops ([`Shutdown::spawn_background`]:
//! the bus listener, the probe, the sweep, the ops sampler), cancelled by
//! [`Shutdown::stop_background`] once the connections are gone.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Cloneable shutdown signal, the tracker of live connections and of spawned tasks.
#[derive(Clone)]
pub struct Shutdown {
    /// Set first: the node says it is not ready (`/readyz` 503) and takes no new sessions, while
    /// the ones it holds go on for `drain_delay_secs` so that a load balancer sees it leave.
    draining: CancellationToken,
    signal: CancellationToken,
    background: CancellationToken,
    tasks: TaskTracker,
    live: Arc<Live>,
}

struct Live {
    count: AtomicUsize,
    changed: Notify,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            draining: CancellationToken::new(),
            signal: CancellationToken::new(),
            background: CancellationToken::new(),
            tasks: TaskTracker::new(),
            live: Arc::new(Live {
                count: AtomicUsize::new(0),
                changed: Notify::new(),
            }),
        }
    }

    /// Start shutting down (idempotent): draining, then closing.
    pub fn trigger(&self) {
        self.draining.cancel();
        self.signal.cancel();
    }

    /// Stop taking sessions and say so on `/readyz`; the held ones stay until [`Self::trigger`].
    pub fn drain(&self) {
        self.draining.cancel();
    }

    /// Whether the node is draining or shutting down: not ready, no new sessions.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    pub fn is_triggered(&self) -> bool {
        self.signal.is_cancelled()
    }

    /// Resolves once shutdown has been triggered.
    pub async fn triggered(&self) {
        self.signal.cancelled().await;
    }

    /// Spawn work that ends by itself; shutdown waits for it ([`Shutdown::tasks_finished`]).
    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(work)
    }

    /// Spawn a loop that runs until [`Shutdown::stop_background`]; tracked like any task.
    pub fn spawn_background<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.background.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = work => {}
                _ = stop.cancelled() => {}
            }
        });
    }

    /// End the background loops (after the connections drained).
    pub fn stop_background(&self) {
        self.background.cancel();
    }

    /// Resolves when every tracked task has ended; no task may be spawned after it is called.
    pub async fn tasks_finished(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Tracked tasks still running.
    pub fn tasks_running(&self) -> usize {
        self.tasks.len()
    }

    /// Count a live connection until the guard is dropped.
    pub fn track(&self) -> LiveGuard {
        self.live.count.fetch_add(1, Ordering::AcqRel);
        LiveGuard {
            live: self.live.clone(),
        }
    }

    pub fn live_connections(&self) -> usize {
        self.live.count.load(Ordering::Acquire)
    }

    /// Resolves when no tracked connection is left.
    pub async fn drained(&self) {
        loop {
            let notified = self.live.changed.notified();
            if self.live_connections() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Decrements the live count when dropped.
pub struct LiveGuard {
    live: Arc<Live>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.live.count.fetch_sub(1, Ordering::AcqRel);
        self.live.changed.notify_waiters();
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn os_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drained_waits_for_every_guard() {
        let s = Shutdown::new();
        s.drained().await;
        let g1 = s.track();
        let g2 = s.track();
        assert_eq!(s.live_connections(), 2);
        drop(g1);
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.drained().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(g2);
        waiter.await.expect("drained");
    }

    #[tokio::test]
    async fn tasks_finished_waits_for_work_and_stops_background_loops() {
        let s = Shutdown::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        s.spawn(async move {
            let _ = rx.await;
        });
        s.spawn_background(std::future::pending());
        assert_eq!(s.tasks_running(), 2);
        s.stop_background();
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.tasks_finished().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the work is still running");
        let _ = tx.send(());
        waiter.await.expect("finished");
        assert_eq!(s.tasks_running(), 0);
    }

    #[tokio::test]
    async fn trigger_is_seen_by_late_listeners() {
        let s = Shutdown::new();
        s.trigger();
        s.triggered().await;
        assert!(s.is_triggered());
    }
}
