//! Typed calls on a [`Client`]: one method per request, answering what the reply carries or the
//! server's refusal — `client.delete_group(&room).await` is `Ok(())` or
//! `Err(CallError::Refused { code: ErrorCode::Forbidden, .. })`. The frames themselves stay
//! reachable through [`Client::request`] for the tests that must send something odd.

use crate::client::{Client, ClientError};
use crate::error::ErrorCode;
use crate::frame::{
    ClientFrame, Event, Features, FeaturesPatch, ItemHit, LeftOut, MessageHit, Position, RoomInfo,
    RoomSummary, ServerFrame, UserInfo,
};
use crate::ids::{RoomId, UserId};
use crate::items::{Action, Query, QueryResult};

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server answered `error`.
    #[error("refused: {code:?}: {message}")]
    Refused { code: ErrorCode, message: String },
    /// The connection failed, or no reply came in time.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A reply of another type than the request's.
    #[error("unexpected reply: {0:?}")]
    Unexpected(Box<ServerFrame>),
}

impl CallError {
    /// The error code, when the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CallError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub type CallResult<T> = Result<T, CallError>;

/// `posted`: where a post was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    pub room: RoomId,
    pub epoch: u64,
    pub seq: u64,
    pub ts: i64,
    pub duplicate: bool,
}

/// `changed`: the log entry a change was stored as, and who was left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    pub room: RoomId,
    pub epoch: u64,
    pub seq: u64,
    pub left_out: Vec<LeftOut>,
}

/// `subscribed`: live from `head`, after `replayed` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscribed {
    pub epoch: u64,
    pub head: u64,
    pub replayed: u64,
}

/// `history`: one page, oldest first.
#[derive(Clone, Debug)]
pub struct HistoryPage {
    pub epoch: u64,
    pub events: Vec<Event>,
    pub has_more: bool,
}

/// `room_created`.
#[derive(Clone, Debug)]
pub struct Created {
    pub room: RoomInfo,
    pub left_out: Vec<LeftOut>,
}

/// `invite`: the group's link, if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteLink {
    pub token: Option<String>,
    pub url: Option<String>,
    pub expires_at: Option<i64>,
}

/// A group as `create_group` asks for it; `GroupSpec::new(name)` is a group of its creator
/// alone, who is a member.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub name: String,
    pub description: String,
    pub members: Vec<UserId>,
    pub masters: Vec<UserId>,
    pub add_self_as_member: bool,
    pub features: Option<Features>,
}

impl GroupSpec {
    pub fn new(name: impl Into<String>) -> GroupSpec {
        GroupSpec {
            name: name.into(),
            description: String::new(),
            members: Vec::new(),
            masters: Vec::new(),
            add_self_as_member: true,
            features: None,
        }
    }

    pub fn members(mut self, members: &[&UserId]) -> GroupSpec {
        self.members = members.iter().map(|u| (*u).clone()).collect();
        self
    }

    pub fn masters(mut self, masters: &[&UserId]) -> GroupSpec {
        self.masters = masters.iter().map(|u| (*u).clone()).collect();
        self
    }

    /// The creator manages the group without being a member (G1).
    pub fn managed_only(mut self) -> GroupSpec {
        self.add_self_as_member = false;
        self
    }

    pub fn features(mut self, features: Features) -> GroupSpec {
        self.features = Some(features);
        self
    }
}

/// What `update_group` changes; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct GroupUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub features: Option<FeaturesPatch>,
}

/// A reply that is not the one expected: the server's refusal, or an unexpected frame.
fn other(f: ServerFrame) -> CallError {
    match f {
        ServerFrame::Error { code, message, .. } => CallError::Refused { code, message },
        f => CallError::Unexpected(Box::new(f)),
    }
}

/// Binds the reply of `$call` to `$pat` and evaluates `$out`, or fails with [`other`].
macro_rules! expect_reply {
    ($self:ident, $frame:expr, $pat:pat => $out:expr) => {
        match $self.request($frame).await? {
            $pat => Ok($out),
            f => Err(other(f)),
        }
    };
}

fn ids(users: &[&UserId]) -> Vec<UserId> {
    users.iter().map(|u| (*u).clone()).collect()
}

fn changed(f: ServerFrame) -> CallResult<Changed> {
    match f {
        ServerFrame::Changed {
            room,
            epoch,
            seq,
            left_out,
            ..
        } => Ok(Changed {
            room,
            epoch,
            seq,
            left_out,
        }),
        f => Err(other(f)),
    }
}

fn done(f: ServerFrame) -> CallResult<()> {
    match f {
        ServerFrame::Ok { .. } => Ok(()),
        f => Err(other(f)),
    }
}

fn invite(f: ServerFrame) -> CallResult<InviteLink> {
    match f {
        ServerFrame::Invite {
            token,
            url,
            expires_at,
            ..
        } => Ok(InviteLink {
            token,
            url,
            expires_at,
        }),
        f => Err(other(f)),
    }
}

impl Client {
    /// Any request; an `error` reply is [`CallError::Refused`].
    pub async fn call(&mut self, frame: ClientFrame) -> CallResult<ServerFrame> {
        match self.request(frame).await? {
            ServerFrame::Error { code, message, .. } => Err(CallError::Refused { code, message }),
            f => Ok(f),
        }
    }

    /// A request answered `changed`.
    pub async fn change(&mut self, frame: ClientFrame) -> CallResult<Changed> {
        changed(self.request(frame).await?)
    }

    /// A request answered `ok`.
    pub async fn done(&mut self, frame: ClientFrame) -> CallResult<()> {
        done(self.request(frame).await?)
    }

    /// `ping`: the server's clock, in ms.
    pub async fn ping(&mut self) -> CallResult<i64> {
        expect_reply!(self, ClientFrame::Ping { id: 0 }, ServerFrame::Pong { ts, .. } => ts)
    }

    pub async fn create_group(&mut self, spec: GroupSpec) -> CallResult<Created> {
        let frame = ClientFrame::CreateGroup {
            id: 0,
            name: spec.name,
            description: spec.description,
            members: spec.members,
            masters: spec.masters,
            add_self_as_member: spec.add_self_as_member,
            features: spec.features,
        };
        expect_reply!(self, frame,
            ServerFrame::RoomCreated { room, left_out, .. } => Created { room, left_out })
    }

    pub async fn create_room(&mut self, name: &str, members: &[&UserId]) -> CallResult<Created> {
        let frame = ClientFrame::CreateRoom {
            id: 0,
            name: name.into(),
            members: ids(members),
        };
        expect_reply!(self, frame,
            ServerFrame::RoomCreated { room, left_out, .. } => Created { room, left_out })
    }

    pub async fn list_rooms(&mut self) -> CallResult<Vec<RoomSummary>> {
        expect_reply!(self, ClientFrame::ListRooms { id: 0 }, ServerFrame::Rooms { rooms, .. } => rooms)
    }

    pub async fn subscribe(
        &mut self,
        room: &RoomId,
        since: Option<Position>,
        presence: bool,
    ) -> CallResult<Subscribed> {
        let frame = ClientFrame::Subscribe {
            id: 0,
            room: room.clone(),
            since,
            presence,
        };
        expect_reply!(self, frame, ServerFrame::Subscribed { epoch, head, replayed, .. } =>
            Subscribed { epoch, head, replayed })
    }

    pub async fn unsubscribe(&mut self, room: &RoomId) -> CallResult<()> {
        let room = room.clone();
        self.done(ClientFrame::Unsubscribe { id: 0, room }).await
    }

    /// A plain text post.
    pub async fn post(
        &mut self,
        room: &RoomId,
        client_msg_id: &str,
        text: &str,
    ) -> CallResult<Posted> {
        let frame = ClientFrame::Post {
            id: 0,
            room: room.clone(),
            client_msg_id: client_msg_id.into(),
            text: text.into(),
            attachments: Vec::new(),
            mentions: Vec::new(),
        };
        self.posted(frame).await
    }

    /// A `post` frame as given (attachments, mentions).
    pub async fn posted(&mut self, frame: ClientFrame) -> CallResult<Posted> {
        expect_reply!(self, frame,
            ServerFrame::Posted { room, epoch, seq, ts, duplicate, .. } =>
                Posted { room, epoch, seq, ts, duplicate })
    }

    pub async fn history(
        &mut self,
        room: &RoomId,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> CallResult<HistoryPage> {
        let frame = ClientFrame::History {
            id: 0,
            room: room.clone(),
            before,
            limit,
        };
        expect_reply!(self, frame, ServerFrame::History { epoch, events, has_more, .. } =>
            HistoryPage { epoch, events, has_more })
    }

    pub async fn mark_read(&mut self, room: &RoomId, seq: u64) -> CallResult<()> {
        let room = room.clone();
        self.done(ClientFrame::MarkRead { id: 0, room, seq }).await
    }

    pub async fn typing(&mut self, room: &RoomId) -> CallResult<()> {
        let room = room.clone();
        self.done(ClientFrame::Typing { id: 0, room }).await
    }

    pub async fn get_room(&mut self, room: &RoomId) -> CallResult<RoomInfo> {
        let frame = ClientFrame::GetRoom {
            id: 0,
            room: room.clone(),
        };
        expect_reply!(self, frame, ServerFrame::Room { room, .. } => room)
    }

    pub async fn add_members(&mut self, room: &RoomId, users: &[&UserId]) -> CallResult<Changed> {
        let (room, users) = (room.clone(), ids(users));
        self.change(ClientFrame::AddMembers { id: 0, room, users })
            .await
    }

    pub async fn remove_member(&mut self, room: &RoomId, user: &UserId) -> CallResult<Changed> {
        let (room, user) = (room.clone(), user.clone());
        self.change(ClientFrame::RemoveMember { id: 0, room, user })
            .await
    }

    pub async fn add_masters(&mut self, room: &RoomId, users: &[&UserId]) -> CallResult<Changed> {
        let (room, users) = (room.clone(), ids(users));
        self.change(ClientFrame::AddMasters { id: 0, room, users })
            .await
    }

    pub async fn remove_master(&mut self, room: &RoomId, user: &UserId) -> CallResult<Changed> {
        let (room, user) = (room.clone(), user.clone());
        self.change(ClientFrame::RemoveMaster { id: 0, room, user })
            .await
    }

    pub async fn update_group(
        &mut self,
        room: &RoomId,
        update: GroupUpdate,
    ) -> CallResult<Changed> {
        let frame = ClientFrame::UpdateGroup {
            id: 0,
            room: room.clone(),
            name: update.name,
            description: update.description,
            features: update.features,
        };
        self.change(frame).await
    }

    pub async fn leave(&mut self, room: &RoomId) -> CallResult<Changed> {
        let room = room.clone();
        self.change(ClientFrame::Leave { id: 0, room }).await
    }

    pub async fn convert_room(&mut self, room: &RoomId, name: &str) -> CallResult<Changed> {
        let (room, name) = (room.clone(), name.to_owned());
        self.change(ClientFrame::ConvertRoom { id: 0, room, name })
            .await
    }

    pub async fn delete_group(&mut self, room: &RoomId) -> CallResult<()> {
        let room = room.clone();
        self.done(ClientFrame::DeleteGroup { id: 0, room }).await
    }

    /// `search`: the rooms and the contacts that match.
    pub async fn search(
        &mut self,
        query: &str,
        limit: Option<u32>,
    ) -> CallResult<(Vec<RoomSummary>, Vec<UserInfo>)> {
        let frame = ClientFrame::Search {
            id: 0,
            query: query.into(),
            limit,
        };
        expect_reply!(self, frame,
            ServerFrame::SearchResults { rooms, contacts, .. } => (rooms, contacts))
    }

    pub async fn list_contacts(&mut self) -> CallResult<Vec<UserInfo>> {
        expect_reply!(self, ClientFrame::ListContacts { id: 0 },
            ServerFrame::Contacts { contacts, .. } => contacts)
    }

    pub async fn add_contact(&mut self, user: &UserId) -> CallResult<()> {
        let user = user.clone();
        self.done(ClientFrame::AddContact { id: 0, user }).await
    }

    pub async fn remove_contact(&mut self, user: &UserId) -> CallResult<()> {
        let user = user.clone();
        self.done(ClientFrame::RemoveContact { id: 0, user }).await
    }

    pub async fn create_invite(
        &mut self,
        room: &RoomId,
        expires_in_secs: Option<u64>,
    ) -> CallResult<InviteLink> {
        let room = room.clone();
        invite(
            self.request(ClientFrame::CreateInvite {
                id: 0,
                room,
                expires_in_secs,
            })
            .await?,
        )
    }

    pub async fn get_invite(&mut self, room: &RoomId) -> CallResult<InviteLink> {
        let room = room.clone();
        invite(self.request(ClientFrame::GetInvite { id: 0, room }).await?)
    }

    pub async fn revoke_invite(&mut self, room: &RoomId) -> CallResult<()> {
        let room = room.clone();
        self.done(ClientFrame::RevokeInvite { id: 0, room }).await
    }

    pub async fn join_by_invite(&mut self, token: &str) -> CallResult<Changed> {
        let token = token.to_owned();
        self.change(ClientFrame::JoinByInvite { id: 0, token })
            .await
    }

    pub async fn send_invites(&mut self, room: &RoomId, emails: &[&str]) -> CallResult<()> {
        let room = room.clone();
        let emails = emails.iter().map(|e| (*e).to_owned()).collect();
        self.done(ClientFrame::SendInvites {
            id: 0,
            room,
            emails,
        })
        .await
    }

    /// A room-feature write (`act`).
    pub async fn act(&mut self, room: &RoomId, action: Action) -> CallResult<Changed> {
        let room = room.clone();
        self.change(ClientFrame::Act {
            id: 0,
            room,
            action,
        })
        .await
    }

    /// `search_messages`: one page of hits, newest first, and the next page's cursor.
    pub async fn search_messages(
        &mut self,
        query: &str,
        tz: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> CallResult<(Vec<MessageHit>, Option<String>)> {
        let frame = ClientFrame::SearchMessages {
            id: 0,
            query: query.into(),
            tz: tz.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
            limit,
        };
        expect_reply!(self, frame, ServerFrame::MessageResults { results, next, .. } => (results, next))
    }

    /// `search_items`: one page of the shared things found, and the next page's cursor.
    pub async fn search_items(
        &mut self,
        query: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> CallResult<(Vec<ItemHit>, Option<String>)> {
        let frame = ClientFrame::SearchItems {
            id: 0,
            query: query.into(),
            cursor: cursor.map(str::to_owned),
            limit,
        };
        expect_reply!(self, frame, ServerFrame::ItemResults { results, next, .. } => (results, next))
    }

    /// A room-feature question (`query`).
    pub async fn query(&mut self, room: &RoomId, query: Query) -> CallResult<QueryResult> {
        let frame = ClientFrame::Query {
            id: 0,
            room: room.clone(),
            query,
        };
        expect_reply!(self, frame, ServerFrame::QueryResult { result, .. } => result)
    }
}
