//! Rows to records and back: the columns each kind of record is read with, and the mappers every
//! concern's file shares.

use crate::domain::directory::{Company, User, UserKind};
use crate::store::{FileRecord, StoreError, StoreResult};
use crossroom_protocol::{CompanyId, Event, EventBody, RoomId, RoomKind, UserId};

/// A seq as SQLite's signed integer; seqs past `i64::MAX` (only "no bound" sentinels) clamp.
pub(super) fn sql_seq(seq: u64) -> i64 {
    seq.min(i64::MAX as u64) as i64
}

pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

pub(super) fn kind_str(k: RoomKind) -> &'static str {
    match k {
        RoomKind::Room => "room",
        RoomKind::Group => "group",
    }
}

pub(super) fn kind_from(s: &str) -> RoomKind {
    if s == "group" {
        RoomKind::Group
    } else {
        RoomKind::Room
    }
}

pub(super) fn encode_body(b: &EventBody) -> StoreResult<Vec<u8>> {
    rmp_serde::to_vec_named(b).map_err(StoreError::backend)
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(StoreError::backend)
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Map an `events` row (room, seq, ts, author, body, epoch) to an [`Event`].
pub(super) fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let body: Vec<u8> = row.get(4)?;
    let body: EventBody = rmp_serde::from_slice(&body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(Event {
        room: RoomId(row.get(0)?),
        seq: row.get::<_, i64>(1)? as u64,
        ts: row.get(2)?,
        author: UserId(row.get(3)?),
        epoch: row.get::<_, i64>(5)? as u64,
        body,
    })
}

pub(super) const EVENT_COLUMNS: &str =
    "e.room, e.seq, e.ts, e.author, e.body, r.epoch FROM events e JOIN rooms r ON r.id = e.room";

pub(super) fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let kind: String = row.get(4)?;
    Ok(User {
        id: UserId(row.get(0)?),
        company: CompanyId(row.get(1)?),
        name: row.get(2)?,
        email: row.get(3)?,
        kind: if kind == "line" {
            UserKind::Line
        } else {
            UserKind::Works
        },
        active: row.get(5)?,
        external_granted: row.get(6)?,
        tokens_valid_after: row.get(7)?,
    })
}

pub(super) const USER_COLUMNS: &str =
    "id, company, name, email, kind, active, external_granted, tokens_valid_after FROM users";

pub(super) fn company_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Company> {
    let settings: String = row.get(2)?;
    Ok(Company {
        id: CompanyId(row.get(0)?),
        name: row.get(1)?,
        settings: from_json(&settings)?,
        self_registered: row.get(3)?,
    })
}

/// A file record's columns, as [`file_from_row`] reads them.
pub(super) const FILE_COLUMNS: &str =
    "id, room, company, size, sha256, name, content_type, created_by, created_at, attachment";

pub(super) fn file_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        id: r.get(0)?,
        room: RoomId(r.get(1)?),
        company: CompanyId(r.get(2)?),
        size: r.get::<_, i64>(3)? as u64,
        sha256: r.get(4)?,
        name: r.get(5)?,
        content_type: r.get(6)?,
        created_by: UserId(r.get(7)?),
        created_at: r.get(8)?,
        attachment: r.get(9)?,
    })
}
