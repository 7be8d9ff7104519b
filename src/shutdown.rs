//! Graceful shutdown: one signal that every part listens to, and a count of live connections
//! so the server can drain them under a deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Cloneable shutdown signal plus the tracker of live connections.
#[derive(Clone)]
pub struct Shutdown {
    signal: Arc<watch::Sender<bool>>,
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
        let (tx, _) = watch::channel(false);
        Shutdown {
            signal: Arc::new(tx),
            live: Arc::new(Live {
                count: AtomicUsize::new(0),
                changed: Notify::new(),
            }),
        }
    }

    /// Start shutting down (idempotent).
    pub fn trigger(&self) {
        self.signal.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once shutdown has been triggered.
    pub async fn triggered(&self) {
        let mut rx = self.signal.subscribe();
        // The sender lives as long as `self`; an error cannot happen while we borrow it.
        let _ = rx.wait_for(|t| *t).await;
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
    async fn trigger_is_seen_by_late_listeners() {
        let s = Shutdown::new();
        s.trigger();
        s.triggered().await;
        assert!(s.is_triggered());
    }
}
