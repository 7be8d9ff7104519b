//! Rooms: general rooms (R1) and external groups (G1–G20).
//!
//! - [`actor`]: one task per active room per node, owning the room's state and subscribers;
//!   every command for a room goes through it ([`RoomCommand`]).
//! - [`rules`]: the pure decisions (who may post, who may join), unit-tested.
//! - [`create`]: creating rooms — before a room exists there is no actor to ask.

pub mod actor;
pub mod create;
pub mod rules;

use crate::connection::{Reply, SessionId};
use crossroom_protocol::{Position, UserId};

/// What a room actor is asked to do. Every command carries the [`Reply`] to answer through,
/// which is the requesting session's own outbound queue: the actor never waits for a client.
pub enum RoomCommand {
    /// Start delivering the room's events to the session; replay after `since` first (D1).
    Subscribe {
        session: SessionId,
        user: UserId,
        since: Option<Position>,
        reply: Reply,
    },
    /// Stop delivering to the session (`reply` is `None` when the session is gone).
    Unsubscribe {
        session: SessionId,
        reply: Option<Reply>,
    },
    /// Append a message (M1), acknowledge after the durable commit (D2), then fan out.
    Post {
        user: UserId,
        client_msg_id: String,
        text: String,
        reply: Reply,
    },
    /// A page of the log.
    History {
        user: UserId,
        before: Option<u64>,
        limit: Option<u32>,
        reply: Reply,
    },
    /// Move the user's read marker (M2).
    MarkRead {
        user: UserId,
        seq: u64,
        reply: Reply,
    },
    /// Relay "typing" to the other subscribers (M3).
    Typing {
        user: UserId,
        session: SessionId,
        reply: Reply,
    },
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
