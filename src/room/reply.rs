//! What a room actor answers: domain values ([`RoomReply`]), turned into frames only at the
//! session edge ([`Answer`]); callers that are not sessions get them typed through the
//! registry's methods ([`crate::room::registry::Rooms::change`] and the others).

use crate::outbound::Answer;
use crossroom_protocol::{Event, LeftOut, QueryResult, RoomId, RoomInfo, ServerFrame};

/// A room change or feature action, committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    pub room: RoomId,
    pub epoch: u64,
    /// The seq of the (first) entry it wrote; the head when it wrote nothing.
    pub seq: u64,
    /// Who was left out, and why (G5–G7).
    pub left_out: Vec<LeftOut>,
}

/// A group's invitation link (G14), if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteLink {
    pub room: RoomId,
    pub token: Option<String>,
    pub url: Option<String>,
    pub expires_at: Option<i64>,
}

/// Every answer of a room actor.
#[derive(Clone, Debug, PartialEq)]
pub enum RoomReply {
    /// Done; nothing to tell.
    Done,
    /// A message, durably stored (D2).
    Posted {
        room: RoomId,
        epoch: u64,
        seq: u64,
        ts: i64,
        duplicate: bool,
    },
    /// Subscribed, after replaying `replayed` events.
    Subscribed {
        room: RoomId,
        epoch: u64,
        head: u64,
        replayed: u64,
    },
    /// A page of the log.
    History {
        room: RoomId,
        epoch: u64,
        events: Vec<Event>,
        has_more: bool,
    },
    /// The room's details.
    Room(Box<RoomInfo>),
    Changed(Changed),
    Invite(InviteLink),
    Query {
        room: RoomId,
        result: QueryResult,
    },
}

impl Answer for RoomReply {
    fn into_frame(self, id: u32) -> ServerFrame {
        match self {
            RoomReply::Done => ServerFrame::Ok { id },
            RoomReply::Posted {
                room,
                epoch,
                seq,
                ts,
                duplicate,
            } => ServerFrame::Posted {
                id,
                room,
                epoch,
                seq,
                ts,
                duplicate,
            },
            RoomReply::Subscribed {
                room,
                epoch,
                head,
                replayed,
            } => ServerFrame::Subscribed {
                id,
                room,
                epoch,
                head,
                replayed,
            },
            RoomReply::History {
                room,
                epoch,
                events,
                has_more,
            } => ServerFrame::History {
                id,
                room,
                epoch,
                events,
                has_more,
            },
            RoomReply::Room(room) => ServerFrame::Room { id, room: *room },
            RoomReply::Changed(c) => ServerFrame::Changed {
                id,
                room: c.room,
                epoch: c.epoch,
                seq: c.seq,
                left_out: c.left_out,
            },
            RoomReply::Invite(i) => ServerFrame::Invite {
                id,
                room: i.room,
                token: i.token,
                url: i.url,
                expires_at: i.expires_at,
            },
            RoomReply::Query { room, result } => ServerFrame::QueryResult { id, room, result },
        }
    }
}
