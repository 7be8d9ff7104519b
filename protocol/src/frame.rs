//! Every frame of the protocol.
//!
//! Frames are maps with a `type` field naming the frame. Requests carry an `id` (a client-chosen
//! `u32`); every request gets exactly one reply frame naming the same `id` — its own reply type on
//! success, `error` on failure. Frames without an `id` are pushes: room events and notices.
//!
//! Room-log entries ([`Event`]) have the room's `epoch` and a `seq` that grows by one (rule D1).

use crate::error::ErrorCode;
use crate::ids::{CompanyId, RoomId, UserId};
use crate::items::{Action, CalendarFields, NoteFields, Query, QueryResult, TaskFields};
use serde::{Deserialize, Serialize};

/// A position in a room's log: what a client remembers to resume (rule D1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: u64,
    pub seq: u64,
}

/// Whether a room is a general room (R1) or an external group (G1–G20).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    /// A general multi-member room (R1).
    Room,
    /// An external group (G1–G20).
    Group,
}

/// The feature switches of an external group (G18), on by default, and its history setting
/// (`share_history`), off by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Features {
    pub message: bool,
    pub note: bool,
    pub event: bool,
    pub task: bool,
    pub folder: bool,
    pub notifications: bool,
    /// "Share previous conversations": members added while it is on see the log from its start;
    /// members added while it is off see it from their join (D4). Changing it moves nobody's
    /// point. Off by default.
    pub share_history: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            message: true,
            note: true,
            event: true,
            task: true,
            folder: true,
            notifications: true,
            share_history: false,
        }
    }
}

/// A change to some of a group's switches (`update_group`): the switches it names change, the
/// others keep their value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_history: Option<bool>,
}

impl FeaturesPatch {
    /// `current` with the named switches changed.
    pub fn apply(&self, current: Features) -> Features {
        Features {
            message: self.message.unwrap_or(current.message),
            note: self.note.unwrap_or(current.note),
            event: self.event.unwrap_or(current.event),
            task: self.task.unwrap_or(current.task),
            folder: self.folder.unwrap_or(current.folder),
            notifications: self.notifications.unwrap_or(current.notifications),
            share_history: self.share_history.unwrap_or(current.share_history),
        }
    }
}

impl From<Features> for FeaturesPatch {
    /// Every switch, as `f` has it.
    fn from(f: Features) -> Self {
        FeaturesPatch {
            message: Some(f.message),
            note: Some(f.note),
            event: Some(f.event),
            task: Some(f.task),
            folder: Some(f.folder),
            notifications: Some(f.notifications),
            share_history: Some(f.share_history),
        }
    }
}

/// Why a requested participant was left out of a new room (G5, G6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub user: UserId,
    /// `no_external_permission`, `line_user_not_allowed` or `not_found`.
    pub reason: ErrorCode,
}

/// The signed-in user, as told in `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: UserId,
    pub company: CompanyId,
    pub name: String,
    /// `works` or `line`.
    pub kind: String,
    /// The user's company was made by a sign-up through an invitation link: its domain and name
    /// are what that person typed, unverified (absent: false). Set in `contacts` and `search`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub company_self_registered: bool,
}

/// A room as its members see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub id: RoomId,
    pub kind: RoomKind,
    pub name: String,
    pub description: String,
    pub owner_company: CompanyId,
    pub created_by: UserId,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub masters: Vec<UserId>,
    pub members: Vec<UserId>,
    pub features: Features,
    pub epoch: u64,
    /// The seq of the room's last event.
    pub head: u64,
    /// For a group converted from a general room (G2): that room's id — its own, since
    /// conversion keeps the id.
    #[serde(default)]
    pub converted_from: Option<RoomId>,
    /// The profile image's file id, if any (G9): `GET /v1/rooms/{room}/image`.
    #[serde(default)]
    pub image: Option<String>,
    /// In a `room` answer (`get_room`): every member and master as the directory has them now —
    /// display name, company, kind — by id. A user the directory no longer knows (deleted) is
    /// absent. Empty (and left out) in other frames.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub people: std::collections::BTreeMap<UserId, UserInfo>,
}

/// What a user is to a room of their list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A member who is not a master.
    #[default]
    Member,
    /// A member and a master of the group.
    Master,
    /// A master of the group who is not a member ("groups I manage"): manages it, does not read
    /// or post in it.
    MasterOnly,
}

/// One message `search_messages` found: where it is, who wrote it when, and a snippet of its
/// text with the matches marked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageHit {
    pub room: RoomId,
    pub seq: u64,
    pub ts: i64,
    pub author: UserId,
    pub snippet: Vec<SnippetPart>,
}

/// One shared thing `search_items` found: its room, its item id and kind (`note`, `event`,
/// `task`, `folder`, `file`), its title (a folder's or file's name), and a snippet of its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemHit {
    pub room: RoomId,
    pub item: u64,
    pub kind: String,
    pub title: String,
    pub snippet: Vec<SnippetPart>,
}

/// A piece of a snippet: `hit` when it is a match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnippetPart {
    pub text: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub hit: bool,
}

/// One line of `rooms`: a room the user is a member or a master of, with their role and, for
/// members, their unread count (M2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    pub id: RoomId,
    pub kind: RoomKind,
    pub name: String,
    pub epoch: u64,
    pub head: u64,
    #[serde(default)]
    pub role: Role,
    /// The user's read marker: the last seq they marked read (0 = none, and for `master_only`).
    pub last_read: u64,
    /// Messages after the read marker not written by the user; absent for `master_only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<u64>,
}

/// One entry of a room's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub room: RoomId,
    pub epoch: u64,
    pub seq: u64,
    /// Milliseconds since the Unix epoch, server clock, when the entry was committed.
    pub ts: i64,
    /// Who caused it.
    pub author: UserId,
    pub body: EventBody,
}

/// What a log entry says, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// The room was created (always seq 1).
    Created {
        room_kind: RoomKind,
        name: String,
        description: String,
        masters: Vec<UserId>,
        members: Vec<UserId>,
        features: Features,
    },
    /// A text message (M1).
    Message {
        /// The sender's idempotency key: a retried post with the same one is stored once (D2).
        client_msg_id: String,
        text: String,
        /// Stored files sent with it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
        /// Members it mentions.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<UserId>,
        /// Recalled by its author or a master: `text`, attachments and mentions are gone.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recalled: bool,
    },
    /// A message was recalled (M1); its entry now reads as a recalled placeholder.
    MessageRecalled {
        message: u64,
    },
    /// An automatic notice in the room ("X posted a note"), when the group's `notifications`
    /// switch is on (G18).
    Notice {
        text: String,
    },
    /// A note was posted (N1); its id is this entry's seq.
    NotePosted {
        note: NoteFields,
    },
    NoteEdited {
        note: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        others_may_edit: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pinned: Option<bool>,
    },
    NoteDeleted {
        note: u64,
    },
    /// A comment; its id is this entry's seq.
    NoteCommented {
        note: u64,
        text: String,
    },
    CommentDeleted {
        note: u64,
        comment: u64,
    },
    NoteLiked {
        note: u64,
        like: bool,
    },
    /// A calendar event (E1); its id is this entry's seq.
    CalendarEventCreated {
        event: CalendarFields,
    },
    CalendarEventUpdated {
        event: u64,
        fields: CalendarFields,
    },
    CalendarEventDeleted {
        event: u64,
    },
    /// A task (T1); its id is this entry's seq; the author is the assigner.
    TaskCreated {
        task: TaskFields,
    },
    TaskUpdated {
        task: u64,
        fields: TaskFields,
    },
    /// The author (an assignee) completed their part.
    TaskCompleted {
        task: u64,
    },
    TaskReopened {
        task: u64,
    },
    TaskDeleted {
        task: u64,
    },
    /// A folder (F1); its id is this entry's seq; `parent` absent = the root.
    FolderCreated {
        #[serde(default)]
        parent: Option<u64>,
        name: String,
        notify_on_new_file: bool,
    },
    FolderUpdated {
        folder: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notify_on_new_file: Option<bool>,
    },
    /// A file was uploaded into a folder; its item id is this entry's seq.
    FileAdded {
        #[serde(default)]
        folder: Option<u64>,
        file: String,
        name: String,
        size: u64,
        content_type: String,
        sha256: String,
    },
    ItemTrashed {
        item: u64,
    },
    ItemRestored {
        item: u64,
    },
    /// Deleted for good; the storage is freed.
    ItemPurged {
        item: u64,
    },
    /// Users became members (by a master's add, an invitation link, or an admin).
    MembersAdded {
        users: Vec<UserId>,
    },
    /// A user left the room: removed by a master, by company policy (G13), or by themselves
    /// (general rooms only). They are no longer a member nor a master; nothing after this
    /// entry reaches them (D4).
    MemberRemoved {
        user: UserId,
        reason: RemovalReason,
    },
    /// Users became masters.
    MastersAdded {
        users: Vec<UserId>,
    },
    /// A master was demoted (stays a member if they were one).
    MasterRemoved {
        user: UserId,
    },
    /// Group settings changed (G9, G18): only the fields present changed.
    GroupUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        features: Option<Features>,
        /// The new profile image: a file id, downloaded at `GET /v1/rooms/{room}/image`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
    },
    /// A general room became an external group, in place (G2); `left_out` were removed.
    Converted {
        name: String,
        masters: Vec<UserId>,
        members: Vec<UserId>,
        left_out: Vec<LeftOut>,
    },
}

/// A file sent with a message (download: `GET /v1/rooms/{room}/files/{file}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub file: String,
    pub name: String,
    pub size: u64,
    pub content_type: String,
}

impl EventBody {
    /// The `kind` tag of this entry, as serde writes it on the wire (so names never drift).
    pub fn kind(&self) -> String {
        // Messages are the hot path: no serialization just to learn the name.
        if let EventBody::Message { .. } = self {
            return "message".into();
        }
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str().map(str::to_owned)))
            .unwrap_or_default()
    }
}

/// Why a member left a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// A master (or an admin) removed them.
    Removed,
    /// Their company withdrew their external permission or disabled them (G13).
    Policy,
    /// They left a general room.
    Left,
    /// They were left out when the general room became an external group (G2).
    Converted,
}

/// Frames a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Authenticate with a user token (for clients that cannot set the `Authorization` header).
    /// Reply: `hello`.
    Auth { id: u32, token: String },
    /// Liveness check at the protocol level. Reply: `pong`.
    Ping { id: u32 },
    /// Create an external group (G1). Reply: `room_created`.
    CreateGroup {
        id: u32,
        name: String,
        #[serde(default)]
        description: String,
        /// Members to add besides the creator.
        #[serde(default)]
        members: Vec<UserId>,
        /// Masters besides the creator (who is always a master).
        #[serde(default)]
        masters: Vec<UserId>,
        /// G1 "add the master as a member" (default true).
        #[serde(default = "default_true")]
        add_self_as_member: bool,
        #[serde(default)]
        features: Option<Features>,
    },
    /// Create a general room (R1) with the creator and `members`. Reply: `room_created`.
    CreateRoom {
        id: u32,
        #[serde(default)]
        name: String,
        members: Vec<UserId>,
    },
    /// List the rooms the user is a member of. Reply: `rooms`.
    ListRooms { id: u32 },
    /// Receive a room's events live. With `since`, first replays every event after it, in order,
    /// or sends `reset` when that is impossible (D1). Reply: `subscribed`, after any replay.
    /// With `presence: true`, also `presence` pushes (M3): a snapshot right after `subscribed`,
    /// then the changes.
    Subscribe {
        id: u32,
        room: RoomId,
        #[serde(default)]
        since: Option<Position>,
        #[serde(default, skip_serializing_if = "is_false")]
        presence: bool,
    },
    /// Stop receiving a room's events. Reply: `ok`.
    Unsubscribe { id: u32, room: RoomId },
    /// Post a message (M1). Reply: `posted`, once durably stored (D2).
    Post {
        id: u32,
        room: RoomId,
        client_msg_id: String,
        text: String,
        /// Ids of files uploaded with `POST /v1/rooms/{room}/attachments`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<String>,
        /// Members mentioned.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<UserId>,
    },
    /// A page of the room's log, oldest first, ending just before `before` (or at the head).
    /// Reply: `history`.
    History {
        id: u32,
        room: RoomId,
        #[serde(default)]
        before: Option<u64>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Move the user's read marker forward to `seq` (M2). Reply: `ok`.
    MarkRead { id: u32, room: RoomId, seq: u64 },
    /// "I am typing" (M3), relayed to the room's other subscribers, never stored. Reply: `ok`.
    Typing { id: u32, room: RoomId },
    /// A room's details, for members (G8: others get `not_found`). Reply: `room`.
    GetRoom { id: u32, room: RoomId },
    /// Add members (groups: masters only, G5–G7; general rooms: any participant). Reply:
    /// `changed`, listing who was left out.
    AddMembers {
        id: u32,
        room: RoomId,
        users: Vec<UserId>,
    },
    /// Remove a member from the room (masters only; G10 keeps one master). Reply: `changed`.
    RemoveMember { id: u32, room: RoomId, user: UserId },
    /// Make users masters (masters only). Reply: `changed`.
    AddMasters {
        id: u32,
        room: RoomId,
        users: Vec<UserId>,
    },
    /// Demote a master (masters only; never the last one, G10). Reply: `changed`.
    RemoveMaster { id: u32, room: RoomId, user: UserId },
    /// Change a group's name, description or some of its switches (G9, G18). Reply: `changed`.
    UpdateGroup {
        id: u32,
        room: RoomId,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        features: Option<FeaturesPatch>,
    },
    /// Leave a general room (R1). External groups cannot be left (G11). Reply: `changed`.
    Leave { id: u32, room: RoomId },
    /// Turn a general room into an external group, in place and for good (G2). Reply: `changed`.
    ConvertRoom { id: u32, room: RoomId, name: String },
    /// Delete an external group and all its data (G16; masters). Reply: `ok`.
    DeleteGroup { id: u32, room: RoomId },
    /// Search the user's rooms and contacts by name or id prefix, case-insensitive, and contacts
    /// by their whole email address (G8).
    /// Reply: `search_results`.
    Search {
        id: u32,
        query: String,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// The user's contacts. Reply: `contacts`.
    ListContacts { id: u32 },
    /// Add a user of another company to one's contacts. Reply: `ok`.
    AddContact { id: u32, user: UserId },
    /// Remove a contact. Reply: `ok`.
    RemoveContact { id: u32, user: UserId },
    /// Create or rotate the group's invitation link (masters; G14). Reply: `invite`.
    CreateInvite {
        id: u32,
        room: RoomId,
        #[serde(default)]
        expires_in_secs: Option<u64>,
    },
    /// The group's current invitation link, if any (masters). Reply: `invite`.
    GetInvite { id: u32, room: RoomId },
    /// Revoke the group's invitation link (masters). Reply: `ok`.
    RevokeInvite { id: u32, room: RoomId },
    /// Join a group with an invitation token (G14). Reply: `changed` (naming the room).
    JoinByInvite { id: u32, token: String },
    /// Email the group's invitation link to addresses (masters; G15). Reply: `ok`.
    SendInvites {
        id: u32,
        room: RoomId,
        emails: Vec<String>,
    },
    /// A room-feature write: notes, calendar, tasks, folder, recall. Reply: `changed`.
    Act {
        id: u32,
        room: RoomId,
        action: Action,
    },
    /// A room-feature question. Reply: `query_result`.
    Query { id: u32, room: RoomId, query: Query },
    /// Find messages the user may read (M6), newest first: words (all must match),
    /// `"a phrase"`, `-word`, `prefix*`, `from:USER`, `in:ROOM`, `before:`/`after:`/`on:YYYY-MM-DD`
    /// (days in `tz`, an IANA time zone; UTC when absent), `has:file`. `cursor` is a page's
    /// `next`. Reply: `message_results`.
    SearchMessages {
        id: u32,
        query: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tz: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Find the shared things of your groups and rooms (M6) — notes (title, body, comments),
    /// calendar events (title, location, memo), tasks (title, content, category), folder and
    /// file names — by words, `"phrases"`, `-word`, `prefix*` and `in:ROOM`, most recently
    /// changed first. Reply: `item_results`.
    SearchItems {
        id: u32,
        query: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
}

fn default_true() -> bool {
    true
}

/// The one list of request variants: binds each one's `id` (by reference, or by mutable
/// reference, as the matched value is) and evaluates `$body`.
macro_rules! with_request_id {
    ($frame:expr, $id:ident => $body:expr) => {
        match $frame {
            ClientFrame::Auth { id: $id, .. }
            | ClientFrame::Ping { id: $id }
            | ClientFrame::CreateGroup { id: $id, .. }
            | ClientFrame::CreateRoom { id: $id, .. }
            | ClientFrame::ListRooms { id: $id }
            | ClientFrame::Subscribe { id: $id, .. }
            | ClientFrame::Unsubscribe { id: $id, .. }
            | ClientFrame::Post { id: $id, .. }
            | ClientFrame::History { id: $id, .. }
            | ClientFrame::MarkRead { id: $id, .. }
            | ClientFrame::Typing { id: $id, .. }
            | ClientFrame::GetRoom { id: $id, .. }
            | ClientFrame::AddMembers { id: $id, .. }
            | ClientFrame::RemoveMember { id: $id, .. }
            | ClientFrame::AddMasters { id: $id, .. }
            | ClientFrame::RemoveMaster { id: $id, .. }
            | ClientFrame::UpdateGroup { id: $id, .. }
            | ClientFrame::Leave { id: $id, .. }
            | ClientFrame::ConvertRoom { id: $id, .. }
            | ClientFrame::DeleteGroup { id: $id, .. }
            | ClientFrame::Search { id: $id, .. }
            | ClientFrame::ListContacts { id: $id }
            | ClientFrame::AddContact { id: $id, .. }
            | ClientFrame::RemoveContact { id: $id, .. }
            | ClientFrame::CreateInvite { id: $id, .. }
            | ClientFrame::GetInvite { id: $id, .. }
            | ClientFrame::RevokeInvite { id: $id, .. }
            | ClientFrame::JoinByInvite { id: $id, .. }
            | ClientFrame::SendInvites { id: $id, .. }
            | ClientFrame::Act { id: $id, .. }
            | ClientFrame::Query { id: $id, .. }
            | ClientFrame::SearchMessages { id: $id, .. }
            | ClientFrame::SearchItems { id: $id, .. } => $body,
        }
    };
}

impl ClientFrame {
    /// Every request `type`, as the wire names it.
    pub const TYPES: [&'static str; 33] = [
        "auth",
        "ping",
        "create_group",
        "create_room",
        "list_rooms",
        "subscribe",
        "unsubscribe",
        "post",
        "history",
        "mark_read",
        "typing",
        "get_room",
        "add_members",
        "remove_member",
        "add_masters",
        "remove_master",
        "update_group",
        "leave",
        "convert_room",
        "delete_group",
        "search",
        "list_contacts",
        "add_contact",
        "remove_contact",
        "create_invite",
        "get_invite",
        "revoke_invite",
        "join_by_invite",
        "send_invites",
        "act",
        "query",
        "search_messages",
        "search_items",
    ];

    /// The request id.
    pub fn id(&self) -> u32 {
        with_request_id!(self, id => *id)
    }

    /// Replace the request id (clients number their requests just before sending).
    pub fn set_id(&mut self, new: u32) {
        with_request_id!(self, id => *id = new)
    }
}

/// Frames the server sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The session is authenticated. `id` is the `auth` request's id, absent when the token came
    /// in the `Authorization` header.
    Hello {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        protocol: u32,
        session: String,
        user: UserInfo,
        limits: Limits,
    },
    /// Generic success.
    Ok { id: u32 },
    /// Reply to `ping`; `ts` is the server clock in ms.
    Pong { id: u32, ts: i64 },
    /// The post is durably stored at `seq` (D2). `duplicate` is true when this `client_msg_id`
    /// was stored before: `seq` is then the original's and nothing new is delivered.
    Posted {
        id: u32,
        room: RoomId,
        epoch: u64,
        seq: u64,
        ts: i64,
        duplicate: bool,
    },
    /// The room exists; `left_out` lists requested participants who were not added, and why.
    RoomCreated {
        id: u32,
        room: RoomInfo,
        left_out: Vec<LeftOut>,
    },
    /// Reply to `list_rooms`.
    Rooms { id: u32, rooms: Vec<RoomSummary> },
    /// The subscription is live from `head`; `replayed` events were sent just before this frame.
    Subscribed {
        id: u32,
        room: RoomId,
        epoch: u64,
        head: u64,
        replayed: u64,
    },
    /// Reply to `history`: events oldest first; `has_more` when older ones exist.
    History {
        id: u32,
        room: RoomId,
        epoch: u64,
        events: Vec<Event>,
        has_more: bool,
    },
    /// A request failed (`id` absent when the request could not be read at all).
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        code: ErrorCode,
        message: String,
    },
    /// A room-log entry (pushed to subscribers).
    Event(Event),
    /// The client's position cannot be resumed (another epoch, or too far behind): drop what it
    /// holds for the room and reload it (history from `head` backwards). Live events after
    /// `head` follow.
    Reset { room: RoomId, epoch: u64, head: u64 },
    /// Someone in the room is typing (M3). Ephemeral.
    Typing { room: RoomId, user: UserId },
    /// Which of the room's members are online (M3): at least one live session on any node.
    /// Ephemeral. `snapshot: true` (right after `subscribed`): `online` is the whole set and
    /// `offline` is empty; otherwise a change to apply (add `online`, remove `offline`), at
    /// most one per room per second.
    Presence {
        room: RoomId,
        online: Vec<UserId>,
        offline: Vec<UserId>,
        snapshot: bool,
    },
    /// The user was added to a room (pushed to all their sessions): subscribe to follow it.
    Joined { room: RoomSummary },
    /// A room change was stored as the log entry `seq` (the last one, when it took several).
    Changed {
        id: u32,
        room: RoomId,
        epoch: u64,
        seq: u64,
        #[serde(default)]
        left_out: Vec<LeftOut>,
    },
    /// Reply to `get_room`.
    Room { id: u32, room: RoomInfo },
    /// Reply to `search`.
    SearchResults {
        id: u32,
        rooms: Vec<RoomSummary>,
        contacts: Vec<UserInfo>,
    },
    /// Reply to `list_contacts`.
    Contacts { id: u32, contacts: Vec<UserInfo> },
    /// Reply to `create_invite` and `get_invite`; `token` is absent when there is no link.
    Invite {
        id: u32,
        room: RoomId,
        #[serde(default)]
        token: Option<String>,
        /// Where a person opens it (HTTP), when there is a token.
        #[serde(default)]
        url: Option<String>,
        /// Seconds since the Unix epoch; absent = never expires.
        #[serde(default)]
        expires_at: Option<i64>,
    },
    /// The user is no longer in the room (pushed to all their sessions); nothing more of it
    /// will reach them (G12, D4).
    Removed { room: RoomId, reason: RemovalReason },
    /// The group was deleted with all its data (G16).
    RoomDeleted { room: RoomId },
    /// Reply to `query`.
    QueryResult {
        id: u32,
        room: RoomId,
        result: QueryResult,
    },
    /// Reply to `search_messages`: newest first; `next` is the cursor of the next page, absent
    /// on the last.
    MessageResults {
        id: u32,
        results: Vec<MessageHit>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// Reply to `search_items`: most recently changed first; `next` as in `message_results`.
    ItemResults {
        id: u32,
        results: Vec<ItemHit>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// A task you assigned or are assigned was created, changed, completed, reopened or deleted
    /// (T1); `action` is the entry's kind (`task_created`, …) and `seq` the entry.
    TaskNotice {
        room: RoomId,
        task: u64,
        action: String,
        by: UserId,
        seq: u64,
    },
}

/// Server limits announced in `hello`, so clients can stay inside them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame the server accepts, in bytes.
    pub max_frame_bytes: u32,
    /// Longest message text, in characters (M1).
    pub max_text_chars: u32,
    /// Most events a `subscribe` replays before answering `reset` instead.
    pub max_replay: u32,
    /// Largest `history` page.
    pub max_history_page: u32,
    /// Most rooms one connection may subscribe to.
    pub max_subscriptions: u32,
}

impl ServerFrame {
    /// The request id this frame answers, if it is a reply.
    pub fn reply_id(&self) -> Option<u32> {
        match self {
            ServerFrame::Hello { id, .. } | ServerFrame::Error { id, .. } => *id,
            ServerFrame::Ok { id }
            | ServerFrame::Pong { id, .. }
            | ServerFrame::Posted { id, .. }
            | ServerFrame::RoomCreated { id, .. }
            | ServerFrame::Rooms { id, .. }
            | ServerFrame::Subscribed { id, .. }
            | ServerFrame::History { id, .. }
            | ServerFrame::Changed { id, .. }
            | ServerFrame::Room { id, .. }
            | ServerFrame::SearchResults { id, .. }
            | ServerFrame::Contacts { id, .. }
            | ServerFrame::Invite { id, .. }
            | ServerFrame::QueryResult { id, .. }
            | ServerFrame::MessageResults { id, .. }
            | ServerFrame::ItemResults { id, .. } => Some(*id),
            ServerFrame::Event(_)
            | ServerFrame::Reset { .. }
            | ServerFrame::Typing { .. }
            | ServerFrame::Presence { .. }
            | ServerFrame::Joined { .. }
            | ServerFrame::Removed { .. }
            | ServerFrame::RoomDeleted { .. }
            | ServerFrame::TaskNotice { .. } => None,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}
