//! The node's ops feeds: the latest `stats` sample (a watch channel) and the audit records as
//! they are written (a broadcast channel), and each room actor's counters. Room actors and
//! services publish here; the ops stream ([`super`]) reads.

use crate::domain::records::NewAudit;
use crossroom_protocol::ops::{AuditRecord, Stats};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast, watch};

/// Audit records an ops stream may fall behind by before it is told it skipped some.
const AUDIT_BACKLOG: usize = 1024;

/// The node's ops feeds.
pub struct OpsFeed {
    audit: broadcast::Sender<Arc<AuditRecord>>,
    stats: watch::Sender<Arc<Stats>>,
    started: Instant,
}

impl Default for OpsFeed {
    fn default() -> Self {
        OpsFeed {
            audit: broadcast::channel(AUDIT_BACKLOG).0,
            stats: watch::channel(Arc::new(Stats::default())).0,
            started: Instant::now(),
        }
    }
}

impl OpsFeed {
    /// Publish an audit record that was just written.
    pub fn publish(&self, a: &NewAudit) {
        if self.audit.receiver_count() == 0 {
            return;
        }
        let record = AuditRecord {
            ts: a.ts,
            room: a.room.clone(),
            actor: a.actor.clone(),
            action: a.action.clone(),
            detail: serde_json::from_str(&a.detail).unwrap_or(serde_json::Value::Null),
            companies: a.companies.clone(),
        };
        // No receiver left in between: nobody to tell.
        let _ = self.audit.send(Arc::new(record));
    }

    /// Replace the latest sample (the sampler, every second).
    pub fn set_stats(&self, stats: Stats) {
        self.stats.send_replace(Arc::new(stats));
    }

    /// Every sample from now on.
    pub fn watch_stats(&self) -> watch::Receiver<Arc<Stats>> {
        self.stats.subscribe()
    }

    /// Every audit record published from now on.
    pub fn watch_audit(&self) -> broadcast::Receiver<Arc<AuditRecord>> {
        self.audit.subscribe()
    }

    /// How long this node has been up.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The latest sample.
    pub fn latest(&self) -> Arc<Stats> {
        self.stats.borrow().clone()
    }
}

/// A room actor's counters, read by the sampler.
#[derive(Default)]
pub struct RoomStats {
    pub entries: AtomicU64,
    pub subscribers: AtomicU64,
}
