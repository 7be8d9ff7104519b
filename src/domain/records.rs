//! The records of rooms and their logs as the store keeps them, and the pure rules over entries
//! (which move a room's state version, which are audited and what their audit record says).

use crossroom_protocol::{
    CompanyId, Event, EventBody, Features, Role, RoomId, RoomKind, RoomSummary, ServerFrame, UserId,
};

/// A room's durable state: the projection of its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomRecord {
    pub id: RoomId,
    pub kind: RoomKind,
    pub name: String,
    pub description: String,
    pub owner_company: CompanyId,
    pub created_by: UserId,
    pub created_at: i64,
    pub features: Features,
    /// Sorted.
    pub masters: Vec<UserId>,
    /// Sorted.
    pub members: Vec<UserId>,
    pub epoch: u64,
    /// The seq of the last committed entry.
    pub head: u64,
    /// The state version: the seq of the last entry that was not a message (see
    /// [`moves_version`]). Appends are conditional on it, which makes authorisation
    /// linearizable across nodes.
    pub version: u64,
    /// The general room this group was converted from (its own id: conversion is in place).
    pub converted_from: Option<RoomId>,
    /// The profile image's file id.
    pub image: Option<String>,
    /// For each member, the seq of the entry that (last) made them a member: they see the log
    /// from there on, never what happened while they were not a member (D4).
    pub member_since: std::collections::HashMap<UserId, u64>,
}

impl RoomRecord {
    /// Every company involved in the room: the owner's, its members' and its masters' — whose
    /// admins read the room's life-cycle audit records (G19).
    pub fn companies(&self) -> Vec<CompanyId> {
        let mut v: Vec<CompanyId> = std::iter::once(self.owner_company.clone())
            .chain(
                self.members
                    .iter()
                    .chain(&self.masters)
                    .filter_map(UserId::company),
            )
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A room before its first entry, which [`crate::domain::projection::project`] turns into
    /// the room it says.
    pub fn empty(id: &RoomId, owner: CompanyId) -> RoomRecord {
        RoomRecord {
            id: id.clone(),
            kind: RoomKind::Room,
            name: String::new(),
            description: String::new(),
            owner_company: owner,
            created_by: UserId(String::new()),
            created_at: 0,
            features: Features::default(),
            masters: Vec::new(),
            members: Vec::new(),
            epoch: 0,
            head: 0,
            version: 0,
            converted_from: None,
            image: None,
            member_since: Default::default(),
        }
    }

    /// The first seq of the log `user` may see: their join's (D4). `None` for someone who is
    /// not a member, or whose join has not committed yet: they see nothing.
    pub fn sees_from(&self, user: &UserId) -> Option<u64> {
        self.member_since.get(user).copied()
    }
}

/// A room to create; its `Created` entry becomes seq 1.
#[derive(Clone, Debug)]
pub struct NewRoom {
    pub id: RoomId,
    pub kind: RoomKind,
    pub name: String,
    pub description: String,
    pub owner_company: CompanyId,
    pub created_by: UserId,
    pub created_at: i64,
    pub features: Features,
    pub masters: Vec<UserId>,
    pub members: Vec<UserId>,
    pub epoch: u64,
    /// G20: create it only while its owner company owns fewer external groups than this; the
    /// store checks it atomically with the insert ([`crate::store::StoreError::LimitReached`]).
    pub max_owned_groups: Option<u64>,
}

impl NewRoom {
    /// The room's first entry: `Created`, by its creator, at seq 1.
    pub fn first_entry(&self) -> NewEntry {
        NewEntry {
            author: self.created_by.clone(),
            ts: self.created_at,
            body: EventBody::Created {
                room_kind: self.kind,
                name: self.name.clone(),
                description: self.description.clone(),
                masters: self.masters.clone(),
                members: self.members.clone(),
                features: self.features,
            },
        }
    }
}

/// An entry to append to a room's log.
#[derive(Clone, Debug)]
pub struct NewEntry {
    pub author: UserId,
    pub ts: i64,
    pub body: EventBody,
}

impl NewEntry {
    /// The idempotency key of this entry, if it has one: `(author, client_msg_id)` is unique per
    /// room (D2).
    pub fn client_msg_id(&self) -> Option<&str> {
        match &self.body {
            EventBody::Message { client_msg_id, .. } => Some(client_msg_id),
            _ => None,
        }
    }
}

/// The outcome of one appended entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The stored event: the new one, or the original when `duplicate`.
    pub event: Event,
    /// True when an entry with the same `(author, client_msg_id)` was stored before; nothing new
    /// was written.
    pub duplicate: bool,
}

/// A room in a user's list (they are a member or a master of it), with the user's read state
/// (M2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipRow {
    pub room: RoomId,
    pub kind: RoomKind,
    pub name: String,
    pub epoch: u64,
    pub head: u64,
    pub member: bool,
    pub master: bool,
    pub last_read: u64,
    pub unread: u64,
}

/// The `joined` push telling `user` of a room they were just added to, as a member or a master
/// (`members` and `masters` are the room's, sorted), at `head`; `None` if they are neither.
pub fn joined(
    user: &UserId,
    (id, kind, name): (&RoomId, RoomKind, &str),
    (epoch, head): (u64, u64),
    members: &[UserId],
    masters: &[UserId],
) -> Option<ServerFrame> {
    let member = members.binary_search(user).is_ok();
    let master = masters.binary_search(user).is_ok();
    (member || master).then(|| ServerFrame::Joined {
        room: RoomSummary {
            id: id.clone(),
            kind,
            name: name.to_owned(),
            epoch,
            head,
            role: role(member, master),
            last_read: 0,
            unread: member.then_some(0),
        },
    })
}

/// What a user who is (or is not) a member and a master is to a room.
pub fn role(member: bool, master: bool) -> Role {
    match (member, master) {
        (true, true) => Role::Master,
        (false, true) => Role::MasterOnly,
        _ => Role::Member,
    }
}

/// An audit record to write (G19).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewAudit {
    pub ts: i64,
    pub room: RoomId,
    /// Who did it: a user, `#admin@company` or `#policy@company`.
    pub actor: UserId,
    pub action: String,
    /// JSON details.
    pub detail: String,
    /// Every company involved; each one's admins can read the record.
    pub companies: Vec<CompanyId>,
}

/// Whether an entry moves its room's state version: everything but a message may change what
/// later decisions depend on (membership, settings, items); messages never do, so concurrent
/// posts never conflict.
pub fn moves_version(body: &EventBody) -> bool {
    !matches!(body, EventBody::Message { .. })
}

/// Whether an entry changes the room's own record or its membership — its life-cycle,
/// members, masters, settings — rather than its content (messages, notes, events, tasks, folder
/// items, recalls).
pub fn changes_room(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::Created { .. }
            | EventBody::MembersAdded { .. }
            | EventBody::MemberRemoved { .. }
            | EventBody::MastersAdded { .. }
            | EventBody::MasterRemoved { .. }
            | EventBody::GroupUpdated { .. }
            | EventBody::Converted { .. }
    )
}

/// Life-cycle and membership entries are audited (G19); room content is not.
pub fn is_audited(body: &EventBody) -> bool {
    changes_room(body)
}

/// The audit record of a committed entry of a room owned by `owner`, if it is audited: it
/// involves the owner, the author's company and the company of every user it names. The store
/// writes it in the entry's transaction; the room actor publishes the same record on the ops
/// stream.
pub fn audit_of(event: &Event, owner: &CompanyId) -> Option<NewAudit> {
    if !is_audited(&event.body) {
        return None;
    }
    let mut companies = vec![owner.clone()];
    companies.extend(event.author.company());
    companies.extend(
        named_users(&event.body)
            .into_iter()
            .filter_map(|u| u.company()),
    );
    companies.sort();
    companies.dedup();
    Some(NewAudit {
        ts: event.ts,
        room: event.room.clone(),
        actor: event.author.clone(),
        action: event.body.kind(),
        detail: serde_json::to_string(&event.body).unwrap_or_else(|_| "null".into()),
        companies,
    })
}

/// Every user an entry names.
fn named_users(body: &EventBody) -> Vec<&UserId> {
    match body {
        EventBody::Created {
            members, masters, ..
        } => members.iter().chain(masters).collect(),
        EventBody::MembersAdded { users } | EventBody::MastersAdded { users } => {
            users.iter().collect()
        }
        EventBody::MemberRemoved { user, .. } | EventBody::MasterRemoved { user } => vec![user],
        EventBody::Converted {
            members,
            masters,
            left_out,
            ..
        } => members
            .iter()
            .chain(masters)
            .chain(left_out.iter().map(|l| &l.user))
            .collect(),
        _ => Vec::new(),
    }
}

/// A stored audit record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    pub ts: i64,
    pub room: RoomId,
    pub actor: UserId,
    pub action: String,
    pub detail: serde_json::Value,
    /// Every company the record involves (the Redis store: empty for records written before
    /// this field was).
    #[serde(default)]
    pub companies: Vec<CompanyId>,
}

/// A group's invitation link (G14).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invite {
    pub token: String,
    /// Seconds since the Unix epoch; `None` = never expires.
    pub expires_at: Option<i64>,
    /// Users a master (or an admin) removed since this link was made: it no longer admits them,
    /// until a master adds them again or makes a new link (G14).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub barred: Vec<UserId>,
}

/// A stored file's record (G17: its bytes count against `company`'s shared storage).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    pub id: String,
    pub room: RoomId,
    /// The owner company of the room, charged for the bytes.
    pub company: CompanyId,
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    pub name: String,
    pub content_type: String,
    pub created_by: UserId,
    pub created_at: i64,
    /// Uploaded to be attached to a message (M1): one post may take it, within
    /// `limits.unposted_attachment_secs`; otherwise the files sweep removes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attachment: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// G19: a room's life-cycle records go to the owner company and every company among its
    /// members and masters, once each.
    #[test]
    fn g19_the_companies_of_a_room() {
        let mut room = RoomRecord::empty(&RoomId::from("r"), CompanyId::from("own.example"));
        room.members = vec!["a@b.example".into(), "c@b.example".into()];
        room.masters = vec!["m@own.example".into(), "x@z.example".into()];
        assert_eq!(
            room.companies(),
            vec![
                CompanyId::from("b.example"),
                CompanyId::from("own.example"),
                CompanyId::from("z.example")
            ]
        );
    }
}
