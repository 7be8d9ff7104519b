//! The ops stream (`GET /v1/ops`): JSON text frames for dashboards, authenticated with the
//! operator key. Every second a [`Stats`] frame; every audit record as it is written.
//!
//! Separate from the chat frames on purpose: a dashboard never joins rooms, and a chat client
//! never sees another company's audit.

use crate::{CompanyId, ErrorCode, RoomId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a dashboard sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpsClientFrame {
    /// The operator key, when it could not go in an `Authorization: Bearer` header (browsers).
    Auth { token: String },
    /// Replace the audit filter: records involving any of `companies` (empty = all) whose
    /// `action` is one of `kinds` (empty = all).
    Filter {
        #[serde(default)]
        companies: Vec<CompanyId>,
        #[serde(default)]
        kinds: Vec<String>,
    },
    /// The stored audit records that match the filter in force, newest first: the `limit`
    /// (1–100, default 50) newest with an `id` below `before` (absent: the newest of all).
    /// Answered with [`OpsServerFrame::Backlog`].
    Backlog {
        #[serde(default)]
        before: Option<u64>,
        #[serde(default)]
        limit: Option<u32>,
    },
}

/// What the server sends on the ops stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OpsServerFrame {
    /// First frame once authenticated.
    Hello {
        /// This node's server version.
        version: String,
        /// How often `stats` frames come.
        interval_ms: u64,
        /// The audit filter in force.
        companies: Vec<CompanyId>,
        kinds: Vec<String>,
    },
    Stats(Stats),
    Audit(AuditRecord),
    /// The answer to [`OpsClientFrame::Backlog`]: records newest first, each with its `id`;
    /// `next` is the `before` of the following page (`null`: no older record matches).
    Backlog {
        records: Vec<AuditRecord>,
        next: Option<u64>,
    },
    /// The stream fell behind the audit feed and skipped `skipped` records (read them with
    /// `GET /v1/admin/audit`), or a frame was refused.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skipped: Option<u64>,
    },
}

/// One second of a node's life.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The node this sample is of (`node_name`; default its listening address).
    #[serde(default)]
    pub node: String,
    /// When this sample was taken, ms since the Unix epoch.
    pub ts: i64,
    pub uptime_secs: u64,
    /// Open WebSocket connections (chat and ops, authenticated or not).
    pub connections: u64,
    /// Authenticated chat sessions.
    pub sessions: u64,
    /// Rooms with a live actor on this node.
    pub rooms: u64,
    /// Authenticated sessions per company (companies with none are left out).
    pub sessions_by_company: BTreeMap<CompanyId, u64>,
    /// Counters since the node started.
    pub totals: Totals,
    /// The same counters, per second over the last interval.
    pub per_sec: Rates,
    /// Time from handing entries to the store to their commit, over the last interval.
    pub commit_ms: Percentiles,
    /// Time to queue one event to every subscriber of its room, over the last interval.
    pub fanout_ms: Percentiles,
    /// The busiest rooms of the last interval, busiest first (at most 10).
    pub busiest_rooms: Vec<RoomActivity>,
    /// Cluster mode: every node's latest figures (this one's included) and their sums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Box<Cluster>>,
}

/// The whole cluster as one node hears it: the nodes heard within the last 3 seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// The sums over `nodes` (`node` is empty).
    pub total: NodeFigures,
    /// One per node, by name.
    pub nodes: Vec<NodeFigures>,
}

/// One node's figures in [`Cluster`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeFigures {
    pub node: String,
    pub connections: u64,
    pub sessions: u64,
    pub rooms: u64,
    pub totals: Totals,
    pub per_sec: Rates,
}

impl NodeFigures {
    /// `s`'s own figures.
    pub fn of(s: &Stats) -> NodeFigures {
        NodeFigures {
            node: s.node.clone(),
            connections: s.connections,
            sessions: s.sessions,
            rooms: s.rooms,
            totals: s.totals.clone(),
            per_sec: s.per_sec.clone(),
        }
    }

    /// The sums of `nodes`.
    pub fn sum(nodes: &[NodeFigures]) -> NodeFigures {
        let mut t = NodeFigures::default();
        for n in nodes {
            t.connections += n.connections;
            t.sessions += n.sessions;
            t.rooms += n.rooms;
            let (a, b) = (&mut t.totals, &n.totals);
            a.frames_in += b.frames_in;
            a.frames_out += b.frames_out;
            a.deliveries += b.deliveries;
            a.messages += b.messages;
            a.entries += b.entries;
            a.queue_drops += b.queue_drops;
            a.slow_consumers += b.slow_consumers;
            let (a, b) = (&mut t.per_sec, &n.per_sec);
            a.frames_in += b.frames_in;
            a.frames_out += b.frames_out;
            a.deliveries += b.deliveries;
            a.messages += b.messages;
            a.entries += b.entries;
        }
        t
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub frames_in: u64,
    pub frames_out: u64,
    /// Events queued to subscribers (one per event per subscribed session).
    pub deliveries: u64,
    /// Messages committed.
    pub messages: u64,
    /// Log entries committed (messages, changes, feature entries).
    pub entries: u64,
    /// Frames not queued because their session was closing or over its queue budget.
    pub queue_drops: u64,
    /// Sessions closed as slow consumers (close 4000).
    pub slow_consumers: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub frames_in: f64,
    pub frames_out: f64,
    pub deliveries: f64,
    pub messages: f64,
    pub entries: f64,
}

/// Latency percentiles in milliseconds; `count` observations in the interval (0 = no data,
/// and the percentiles are 0).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomActivity {
    pub room: RoomId,
    /// The room's name, as the ops stream found it when sending (absent: unknown, or deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Log entries committed per second over the interval.
    pub events_per_sec: f64,
    /// Sessions of this node subscribed to the room.
    pub subscribers: u64,
}

/// An audit record (G19), as written to the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The record's id in the store: set in a `backlog` (records are paged by it), absent on a
    /// record pushed as it is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// ms since the Unix epoch.
    pub ts: i64,
    pub room: RoomId,
    /// A user, `#admin@<company>` or `#policy@<company>`.
    pub actor: UserId,
    /// `created`, `members_added`, `member_removed`, `masters_added`, `master_removed`,
    /// `group_updated`, `converted`, `deleted`, `invite_created`, `invite_revoked`.
    pub action: String,
    pub detail: serde_json::Value,
    /// Every company involved (each one's admins can read the record).
    pub companies: Vec<CompanyId>,
    /// Display names of the room and the users the record names (its `room`, `actor`, and the
    /// users in `detail`), as the ops stream found them when sending: id → name. Ids it could
    /// not resolve (a deleted room or user) are absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
}
