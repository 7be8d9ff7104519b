//! The node's ops feeds: the latest `stats` sample (a watch channel) and the audit records as
//! they are written (a broadcast channel), and each room actor's counters. Room actors and
//! services publish here; the ops stream ([`super`]) reads.
//!
//! In cluster mode the feeds are the cluster's: each node sends its samples and the audit
//! records it commits to the others over the bus, so a dashboard connected to any node sees
//! every node's figures (and their sums) and every audit record.

use crate::bus::SharedBus;
use crate::domain::records::NewAudit;
use crossroom_protocol::ops::{AuditRecord, Cluster, NodeFigures, Stats};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// A node whose sample is older than this is left out of the cluster's figures.
const PEER_SILENCE: Duration = Duration::from_secs(3);

/// Audit records an ops stream may fall behind by before it is told it skipped some.
const AUDIT_BACKLOG: usize = 1024;

/// The node's ops feeds.
pub struct OpsFeed {
    audit: broadcast::Sender<Arc<AuditRecord>>,
    stats: watch::Sender<Arc<Stats>>,
    started: Instant,
    /// Cluster mode: the bus to the other nodes.
    cluster: Option<SharedBus>,
    /// The other nodes' latest samples, and when each came.
    peers: Mutex<HashMap<String, (Instant, Stats)>>,
}

impl OpsFeed {
    /// The feeds of a node; `cluster`: the bus to share them with the other nodes.
    pub fn new(cluster: Option<SharedBus>) -> OpsFeed {
        OpsFeed {
            audit: broadcast::channel(AUDIT_BACKLOG).0,
            stats: watch::channel(Arc::new(Stats::default())).0,
            started: Instant::now(),
            cluster,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Publish an audit record that was just written: here, and to the other nodes.
    pub fn publish(&self, a: &NewAudit) {
        if self.audit.receiver_count() == 0 && self.cluster.is_none() {
            return;
        }
        let record = AuditRecord {
            id: None,
            names: Default::default(),
            ts: a.ts,
            room: a.room.clone(),
            actor: a.actor.clone(),
            action: a.action.clone(),
            detail: serde_json::from_str(&a.detail).unwrap_or(serde_json::Value::Null),
            companies: a.companies.clone(),
        };
        if let Some(bus) = &self.cluster {
            bus.ops_audit(&record);
        }
        self.publish_here(record);
    }

    /// Publish an audit record to this node's streams (one another node committed).
    pub fn publish_here(&self, record: AuditRecord) {
        // No receiver (left): nobody to tell.
        let _ = self.audit.send(Arc::new(record));
    }

    /// Another node's latest sample.
    pub fn heard(&self, stats: Stats) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.retain(|_, (at, _)| at.elapsed() < PEER_SILENCE);
            peers.insert(stats.node.clone(), (Instant::now(), stats));
        }
    }

    /// Replace the latest sample (the sampler, every second); in cluster mode, send it to the
    /// other nodes and add the cluster's figures to it.
    pub fn set_stats(&self, mut stats: Stats) {
        if let Some(bus) = &self.cluster {
            bus.ops_stats(&stats);
            let mut nodes = vec![NodeFigures::of(&stats)];
            if let Ok(peers) = self.peers.lock() {
                nodes.extend(
                    peers
                        .values()
                        .filter(|(at, _)| at.elapsed() < PEER_SILENCE)
                        .map(|(_, s)| NodeFigures::of(s)),
                );
            }
            nodes.sort_by(|a, b| a.node.cmp(&b.node));
            stats.cluster = Some(Box::new(Cluster {
                total: NodeFigures::sum(&nodes),
                nodes,
            }));
        }
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
