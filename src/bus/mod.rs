//! The bus: how a node hears what other nodes did. One trait, [`Bus`], with two
//! implementations chosen at start:
//!
//! - [`LocalBus`] for one node: every session and every room actor is here, so there is nothing
//!   to tell anyone;
//! - [`redis::RedisBus`] for cluster mode: room events over Redis pub/sub, node notices (pushes
//!   to a user's sessions, closes, a liveness probe).
//!
//! What arrives from other nodes goes to an [`Inbox`], which the node's composition root
//! implements (room events to room actors, pushes and closes to live sessions). The bus knows
//! neither rooms nor sessions: the arrows point down.

pub mod redis;

use crate::outbound::CloseRequest;
use crossroom_protocol::ops::{AuditRecord, Stats};
use crossroom_protocol::{Event, RoomId, ServerFrame, UserId};
use std::sync::Arc;

/// A shared bus.
pub type SharedBus = Arc<dyn Bus>;

/// What a node tells the others, and whether it can hear them.
pub trait Bus: Send + Sync + 'static {
    /// Whether other nodes share this node's store: then a room's state may move under an
    /// actor's feet, and actors catch up from the log before refusing or deciding a change.
    fn is_cluster(&self) -> bool;
    /// False while the node may not be hearing the others (its subscription stalled).
    fn is_healthy(&self) -> bool;
    /// Receive `room`'s events (this node has an actor for it).
    fn subscribe(&self, room: &RoomId);
    fn unsubscribe(&self, room: &RoomId);
    /// Push `frame` to `user`'s sessions on the other nodes.
    fn push(&self, user: &UserId, frame: &ServerFrame);
    /// Close `user`'s sessions on the other nodes.
    fn close_sessions(&self, user: &UserId, code: u16);
    /// `user`'s first session opened on this node (`online`), or their last one closed (M3).
    fn presence(&self, user: &UserId, online: bool);
    /// Everyone with a live session on this node, replacing what the others knew of it.
    fn presence_snapshot(&self, users: Vec<UserId>);
    /// `user` is typing in `room` (M3): to that room's actors on the other nodes.
    fn typing(&self, room: &RoomId, user: &UserId);
    /// This node's latest ops sample, for the other nodes' dashboards.
    fn ops_stats(&self, stats: &Stats);
    /// An audit record this node committed, for the other nodes' dashboards.
    fn ops_audit(&self, record: &AuditRecord);
}

/// What another node said about presence (M3).
pub enum PresenceSaid {
    /// The node is alive (its probe came).
    Alive,
    /// `user`'s first session opened there.
    Online(UserId),
    /// `user`'s last session there closed.
    Offline(UserId),
    /// Everyone online there now.
    Snapshot(Vec<UserId>),
    /// The node (new, or hearing again) asks every node for its snapshot.
    Ask,
}

/// Where what the other nodes say is delivered on this one.
pub trait Inbox: Send + Sync + 'static {
    /// A room event committed by another node.
    fn room_event(&self, event: Event);
    /// The room's events may have been missed (a (re)subscription): read the log.
    fn room_catch_up(&self, room: &RoomId);
    /// A frame for `user`'s sessions on this node.
    fn push_local(&self, user: &UserId, frame: &ServerFrame);
    /// Close `user`'s sessions on this node.
    fn close_local(&self, user: &UserId, req: CloseRequest);
    /// Presence news from node `node`.
    fn presence(&self, node: &str, said: PresenceSaid);
    /// `user` is typing in `room`, said on another node.
    fn room_typing(&self, room: &RoomId, user: UserId);
    /// Another node's latest ops sample.
    fn node_stats(&self, stats: Stats);
    /// An audit record another node committed.
    fn node_audit(&self, record: AuditRecord);
    /// The node hears the others again after a gap in which notices may have been lost: check
    /// the local sessions against the directory, and catch every room up from its log.
    fn bus_recovered(&self);
}

/// The bus of a single node: nobody else to tell, nothing to hear.
pub struct LocalBus;

impl Bus for LocalBus {
    fn is_cluster(&self) -> bool {
        false
    }
    fn is_healthy(&self) -> bool {
        true
    }
    fn subscribe(&self, _room: &RoomId) {}
    fn unsubscribe(&self, _room: &RoomId) {}
    fn push(&self, _user: &UserId, _frame: &ServerFrame) {}
    fn close_sessions(&self, _user: &UserId, _code: u16) {}
    fn presence(&self, _user: &UserId, _online: bool) {}
    fn presence_snapshot(&self, _users: Vec<UserId>) {}
    fn typing(&self, _room: &RoomId, _user: &UserId) {}
    fn ops_stats(&self, _stats: &Stats) {}
    fn ops_audit(&self, _record: &AuditRecord) {}
}
