//! The key schema (see [`super`] for the table), the shapes records are stored in, and the
//! JSON helpers every concern's file shares. A leaf: it names nothing else of the store.

use crate::domain::directory::Company;
use crate::store::{NewAudit, RoomRecord, StoreError, StoreResult};
use crossroom_protocol::{CompanyId, Event, EventBody, Features, RoomId, RoomKind, UserId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// Rooms whose audit outbox may hold records not yet written to the companies' audit logs.
pub(super) const AUDIT_PENDING: &str = "cr:audit:pending";

/// A company's audit log (`cr:audit:<company>`), or every company's (`cr:audit:*`, the
/// operator's view: `*` is no company id).
pub(super) fn audit_key(company: Option<&CompanyId>) -> String {
    match company {
        Some(c) => format!("cr:audit:{}", c.0),
        None => "cr:audit:*".to_owned(),
    }
}

/// Attachments the files sweep has not settled (M1), scored by upload time (ms). A superset:
/// written before the file's record, and an entry whose record is gone is dropped by the sweep.
pub(super) const ATTACHMENTS: &str = "cr:attachments";

/// The claim of attachment `id` (M1): `SET NX`, so the first claim wins.
pub(super) fn claim_key(id: &str) -> String {
    format!("cr:file:{id}:claim")
}

/// An audit record waiting in a room's outbox (`cr:{r}:audit`), tagged `room:epoch:seq` by the
/// entry it records.
#[derive(Serialize, Deserialize)]
pub(super) struct OutboxAudit {
    pub(super) tag: String,
    pub(super) audit: NewAudit,
}

/// The value of a company's group count ([`owned_groups_key`]) once its deletion began: no group
/// is claimed for it any more, and a creation that finds it after its own write takes itself
/// back (A2: nothing created "during" a deletion survives it).
pub(super) const CLOSED: &str = "closed";

/// G20's count of the external groups a company owns.
pub(super) fn owned_groups_key(company: &CompanyId) -> String {
    format!("cr:co:{}:owned_groups", company.0)
}

/// The pub/sub channel of a room's events (same hash tag as the room's keys).
pub fn room_channel(room: &RoomId) -> String {
    format!("cr:{{{}}}:ev", room.0)
}

pub(super) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::backend(e)
}

pub(super) fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(backend)
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(backend)
}

pub(super) fn rk(room: &RoomId, what: &str) -> String {
    format!("cr:{{{}}}:{what}", room.0)
}

pub(super) fn company_key(c: &CompanyId) -> String {
    format!("cr:co:{}", c.0)
}

pub(super) fn user_key(u: &UserId) -> String {
    format!("cr:u:{}", u.0)
}

pub(super) fn user_rooms_key(u: &UserId) -> String {
    format!("cr:user:{}:rooms", u.0)
}

/// A duration in whole milliseconds, as a script argument.
pub(super) fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

pub(super) fn cmid_field(author: &UserId, cmid: &str) -> String {
    format!("{}\n{cmid}", author.0)
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredCompany {
    pub(super) company: Company,
    pub(super) key_hash: String,
}

/// A log entry as stored: seq is the field name, epoch and room are the room's.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredEntry {
    pub(super) ts: i64,
    pub(super) author: UserId,
    pub(super) body: EventBody,
}

/// The room projection kept in `cr:{r}:meta`.
#[derive(Serialize, Deserialize, Clone)]
pub(super) struct Meta {
    pub(super) kind: RoomKind,
    pub(super) name: String,
    pub(super) description: String,
    pub(super) owner_company: CompanyId,
    pub(super) created_by: UserId,
    pub(super) created_at: i64,
    pub(super) features: Features,
    pub(super) masters: Vec<UserId>,
    pub(super) members: Vec<UserId>,
    pub(super) converted_from: Option<RoomId>,
    pub(super) image: Option<String>,
    pub(super) member_since: HashMap<UserId, u64>,
}

impl Meta {
    pub(super) fn of(r: &RoomRecord) -> Meta {
        Meta {
            kind: r.kind,
            name: r.name.clone(),
            description: r.description.clone(),
            owner_company: r.owner_company.clone(),
            created_by: r.created_by.clone(),
            created_at: r.created_at,
            features: r.features,
            masters: r.masters.clone(),
            members: r.members.clone(),
            converted_from: r.converted_from.clone(),
            image: r.image.clone(),
            member_since: r.member_since.clone(),
        }
    }

    pub(super) fn record(self, id: &RoomId, epoch: u64, head: u64, version: u64) -> RoomRecord {
        RoomRecord {
            id: id.clone(),
            kind: self.kind,
            name: self.name,
            description: self.description,
            owner_company: self.owner_company,
            created_by: self.created_by,
            created_at: self.created_at,
            features: self.features,
            masters: self.masters,
            members: self.members,
            epoch,
            head,
            version,
            converted_from: self.converted_from,
            image: self.image,
            member_since: self.member_since,
        }
    }
}

/// An entry as the append scripts publish it on the room's channel: `seq \n epoch \n entry JSON`.
pub fn decode_published(room: &RoomId, payload: &str) -> Option<Event> {
    let mut parts = payload.splitn(3, '\n');
    let seq = parts.next()?.parse().ok()?;
    let epoch = parts.next()?.parse().ok()?;
    entry_event(room, epoch, seq, parts.next()?).ok()
}

pub(super) fn entry_event(room: &RoomId, epoch: u64, seq: u64, raw: &str) -> StoreResult<Event> {
    let e: StoredEntry = from_json(raw)?;
    Ok(Event {
        room: room.clone(),
        epoch,
        seq,
        ts: e.ts,
        author: e.author,
        body: e.body,
    })
}

/// A2: the mark that a user's or company's id was deleted (`kind` is `u` or `co`), written before
/// the record goes, and checked after every creation.
pub(super) fn retired_key(kind: &str, id: &str) -> String {
    format!("cr:retired:{kind}:{id}")
}
