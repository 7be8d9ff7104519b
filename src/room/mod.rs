//! Rooms: general rooms (R1) and external groups (G1–G20).
//!
//! - [`actor`]: one task per active room per node, owning the room's state and subscribers;
//!   every command for a room goes through it ([`RoomCommand`]).
//! - [`registry`]: the actors of this node, spawned on first use, and typed requests to them.
//!
//! Services that use the actors (creating rooms, policy removals, invitations) are in
//! [`crate::service`]; the HTTP routes in [`crate::http`].

pub mod actor;
pub mod context;
pub mod handle;
pub mod lookup;
pub mod query;
pub mod registry;
pub mod reply;

pub use crate::domain::rules::{Actor, Change};
use crate::outbound::SessionId;
pub use reply::RoomReply;

/// Where a room command's answer goes: a [`RoomReply`], made a frame at the session edge.
pub type Reply = crate::outbound::Reply<RoomReply>;
use crossroom_protocol::{Position, UserId};

/// What a room actor is asked to do: a request someone waits for the answer to, or a note the
/// node gives it (the cluster's hints, the reconciliation's repairs, a gone session).
pub enum RoomCommand {
    /// A request, answered through the [`Reply`] — the requesting session's own outbound
    /// queue, or a one-shot channel for a service: the actor never waits for a client.
    Ask(RoomRequest, Reply),
    /// A session is gone: stop delivering to it (nobody waits for an answer).
    Forget(SessionId),
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
}

/// A request to a room's actor, as it was asked for. The same value is kept beside an append
/// in flight, to be decided again if the append meets a conflict.
pub enum RoomRequest {
    /// Start delivering the room's events to the session; replay after `since` first (D1).
    Subscribe {
        session: SessionId,
        user: UserId,
        since: Option<Position>,
        /// Also push who of the members is online (M3).
        presence: bool,
    },
    /// Stop delivering to the session.
    Unsubscribe { session: SessionId },
    /// Append a message (M1), acknowledge after the durable commit (D2), then fan out.
    Post(PostRequest),
    /// A page of the log.
    History {
        user: UserId,
        before: Option<u64>,
        limit: Option<u32>,
    },
    /// Move the user's read marker (M2).
    MarkRead { user: UserId, seq: u64 },
    /// Relay "typing" to the other subscribers (M3).
    Typing { user: UserId, session: SessionId },
    /// The room's details, for members and masters (G8).
    Get { user: UserId },
    /// A membership or settings change, decided by [`crate::domain::rules::decide`] and written to the log.
    Change { actor: Actor, change: Change },
    /// Delete the group and all its data (G16).
    Delete { actor: Actor },
    /// Manage the group's invitation link (G14).
    Invite { actor: Actor, op: InviteOp },
    /// A room-feature write (notes, calendar, tasks, folder, recall), by a member.
    Act {
        user: UserId,
        action: crossroom_protocol::Action,
    },
    /// A room-feature question, by a member.
    Query {
        user: UserId,
        query: crossroom_protocol::Query,
    },
    /// A file the user uploaded into the room's folder (F1): record it in the log.
    AddFile {
        user: UserId,
        folder: Option<u64>,
        file: crate::store::FileRecord,
    },
}

/// A post as it was asked for.
pub struct PostRequest {
    pub user: UserId,
    pub client_msg_id: String,
    pub text: String,
    /// Ids of files the user uploaded to this room as attachments.
    pub attachments: Vec<String>,
    pub mentions: Vec<UserId>,
}

impl RoomRequest {
    /// Whether deciding this request may append to the log.
    pub fn decides(&self) -> bool {
        matches!(
            self,
            RoomRequest::Post(_)
                | RoomRequest::Change { .. }
                | RoomRequest::Act { .. }
                | RoomRequest::AddFile { .. }
        )
    }

    /// The user a request is made by as a member (or master) of the room; `None` for the
    /// requests decided by an [`Actor`] and for an unsubscription.
    pub fn member(&self) -> Option<&UserId> {
        match self {
            RoomRequest::Subscribe { user, .. }
            | RoomRequest::Post(PostRequest { user, .. })
            | RoomRequest::History { user, .. }
            | RoomRequest::MarkRead { user, .. }
            | RoomRequest::Typing { user, .. }
            | RoomRequest::Get { user }
            | RoomRequest::Act { user, .. }
            | RoomRequest::Query { user, .. }
            | RoomRequest::AddFile { user, .. } => Some(user),
            RoomRequest::Change { .. }
            | RoomRequest::Delete { .. }
            | RoomRequest::Invite { .. }
            | RoomRequest::Unsubscribe { .. } => None,
        }
    }
}

impl RoomCommand {
    /// The reply this command carries, if any.
    pub fn into_reply(self) -> Option<Reply> {
        match self {
            RoomCommand::Ask(_, reply) => Some(reply),
            _ => None,
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
