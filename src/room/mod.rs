//! Rooms: general rooms (R1) and external groups (G1–G20).
//!
//! - [`actor`]: one task per active room per node, owning the room's state and subscribers;
//!   every command for a room goes through it ([`RoomCommand`]).
//! - [`create`]: creating rooms — before a room exists there is no actor to ask.

pub mod actor;
pub mod admin;
pub mod context;
pub mod create;
pub mod files;
pub mod handle;
pub mod invite;
pub mod lookup;
pub mod policy;
pub mod query;
pub mod registry;
pub mod reply;

pub use crate::domain::rules::{Actor, Change};
use crate::outbound::SessionId;
pub use reply::RoomReply;

/// Where a room command's answer goes: a [`RoomReply`], made a frame at the session edge.
pub type Reply = crate::outbound::Reply<RoomReply>;
use crossroom_protocol::{Position, UserId};

/// What a room actor is asked to do. Every command carries the [`Reply`] to answer through,
/// which is the requesting session's own outbound queue: the actor never waits for a client.
pub enum RoomCommand {
    /// Start delivering the room's events to the session; replay after `since` first (D1).
    Subscribe {
        session: SessionId,
        user: UserId,
        since: Option<Position>,
        /// Also push who of the members is online (M3).
        presence: bool,
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
        /// Ids of files the user uploaded to this room as attachments.
        attachments: Vec<String>,
        mentions: Vec<UserId>,
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
    /// The room's details, for members and masters (G8).
    Get { user: UserId, reply: Reply },
    /// A membership or settings change, decided by [`crate::domain::rules::decide`] and written to the log.
    Change {
        actor: Actor,
        change: Change,
        reply: Reply,
    },
    /// Delete the group and all its data (G16).
    Delete { actor: Actor, reply: Reply },
    /// Manage the group's invitation link (G14).
    Invite {
        actor: Actor,
        op: InviteOp,
        reply: Reply,
    },
    /// A room-feature write (notes, calendar, tasks, folder, recall), by a member.
    Act {
        user: UserId,
        action: crossroom_protocol::Action,
        reply: Reply,
    },
    /// A room-feature question, by a member.
    Query {
        user: UserId,
        query: crossroom_protocol::Query,
        reply: Reply,
    },
    /// Cluster mode: an entry another node committed, from the bus.
    Remote(crossroom_protocol::Event),
    /// Cluster mode: `user` is typing, said on another node (M3).
    RemoteTyping { user: UserId },
    /// The periodic reconciliation found these members (with their companies) without external
    /// permission: remove them (reason `policy`).
    Repair(Vec<(UserId, crossroom_protocol::CompanyId)>),
    /// Cluster mode: another node deleted the room (G16). The actor forgets it, and only then
    /// tells `notify`'s sessions here `room_deleted` — so a request they send after it finds the
    /// room gone.
    Deleted {
        notify: Option<(UserId, crossroom_protocol::ServerFrame)>,
    },
    /// Cluster mode: read the log for entries this node has not seen (after a resubscription,
    /// and periodically).
    CatchUp,
    /// Cluster mode: the node's periodic sweep read the log's head (`None`: the room is gone).
    /// An actor with subscribers that is behind it, or on another epoch, catches up.
    Sweep(Option<crossroom_protocol::Position>),
    /// A file the user uploaded into the room's folder (F1): record it in the log.
    AddFile {
        user: UserId,
        folder: Option<u64>,
        file: crate::store::FileRecord,
        reply: Reply,
    },
}

impl RoomCommand {
    /// Whether deciding this command may append to the log.
    pub fn decides(&self) -> bool {
        matches!(
            self,
            RoomCommand::Post { .. }
                | RoomCommand::Change { .. }
                | RoomCommand::Act { .. }
                | RoomCommand::AddFile { .. }
        )
    }

    /// The reply this command carries, if any.
    pub fn into_reply(self) -> Option<Reply> {
        match self {
            RoomCommand::Unsubscribe { reply, .. } => reply,
            RoomCommand::Remote(_)
            | RoomCommand::RemoteTyping { .. }
            | RoomCommand::CatchUp
            | RoomCommand::Sweep(_)
            | RoomCommand::Repair(_)
            | RoomCommand::Deleted { .. } => None,
            RoomCommand::Subscribe { reply, .. }
            | RoomCommand::Post { reply, .. }
            | RoomCommand::History { reply, .. }
            | RoomCommand::MarkRead { reply, .. }
            | RoomCommand::Typing { reply, .. }
            | RoomCommand::Get { reply, .. }
            | RoomCommand::Change { reply, .. }
            | RoomCommand::Delete { reply, .. }
            | RoomCommand::Invite { reply, .. }
            | RoomCommand::Act { reply, .. }
            | RoomCommand::Query { reply, .. }
            | RoomCommand::AddFile { reply, .. } => Some(reply),
        }
    }
}

/// What to do with a group's invitation link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteOp {
    /// Make a new link (replacing any old one), valid for the seconds given or forever.
    Create {
        expires_in_secs: Option<u64>,
    },
    Get,
    Revoke,
}

/// A room as its members see it.
pub fn info(r: &crate::store::RoomRecord) -> crossroom_protocol::RoomInfo {
    crossroom_protocol::RoomInfo {
        id: r.id.clone(),
        kind: r.kind,
        name: r.name.clone(),
        description: r.description.clone(),
        owner_company: r.owner_company.clone(),
        created_by: r.created_by.clone(),
        created_at: r.created_at,
        masters: r.masters.clone(),
        members: r.members.clone(),
        features: r.features,
        epoch: r.epoch,
        head: r.head,
        converted_from: r.converted_from.clone(),
        image: r.image.clone(),
        people: Default::default(),
    }
}
