//! Rooms and their logs in SQLite: creation, the room's projection saved in the entry's own
//! transaction, appends in call order, reads, epochs, deletion with its tombstone.

use super::audit::write_audit;
use super::files::delete_file_row;
use super::index::{index_message, unindex_message, unindex_room};
use super::items::{all_items, load_item, save_item};
use super::rows::*;
use super::*;

/// Append one entry inside the writer's transaction.
pub(super) fn append_one(
    conn: &Connection,
    room: &RoomId,
    entry: &NewEntry,
) -> StoreResult<Appended> {
    if let Some(cmid) = entry.client_msg_id() {
        let existing = conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} WHERE e.room = ?1 AND e.author = ?2 AND e.client_msg_id = ?3"
            ))?
            .query_row(params![room.0, entry.author.0, cmid], event_from_row)
            .optional()?;
        if let Some(event) = existing {
            return Ok(Appended {
                event,
                duplicate: true,
            });
        }
    }
    let (head, epoch): (i64, i64) = conn
        .prepare_cached(
            "SELECT h.head, r.epoch FROM rooms r JOIN room_heads h ON h.room = r.id WHERE r.id = ?1",
        )?
        .query_row(params![room.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("room {room}")))?;
    let seq = head + 1;
    conn.prepare_cached(
        "INSERT INTO events (room, seq, ts, author, kind, client_msg_id, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        room.0,
        seq,
        entry.ts,
        entry.author.0,
        entry.body.kind(),
        entry.client_msg_id(),
        encode_body(&entry.body)?
    ])?;
    conn.prepare_cached("UPDATE room_heads SET head = ?2 WHERE room = ?1")?
        .execute(params![room.0, seq])?;
    if crate::store::moves_version(&entry.body) {
        conn.prepare_cached("UPDATE rooms SET version = ?2 WHERE id = ?1")?
            .execute(params![room.0, seq])?;
    }
    let event = Event {
        room: room.clone(),
        epoch: epoch as u64,
        seq: seq as u64,
        ts: entry.ts,
        author: entry.author.clone(),
        body: entry.body.clone(),
    };
    project(conn, &event)?;
    index_message(&event, true);
    Ok(Appended {
        event,
        duplicate: false,
    })
}

/// Persist what [`projection::project`] computes for a committed entry, in the entry's
/// transaction: the room's row, the membership rows it changed, the item it changes, the message
/// it recalls, the files it frees, its audit record.
pub(super) fn project(conn: &Connection, event: &Event) -> StoreResult<()> {
    let room = &event.room;
    let p = if crate::domain::records::changes_room(&event.body) {
        let mut record =
            load_room(conn, room)?.ok_or_else(|| StoreError::NotFound(format!("room {room}")))?;
        let p = projection::project(&mut record, event);
        save_room_row(conn, &record)?;
        p
    } else {
        projection::content(event)
    };
    for m in &p.members {
        save_membership(conn, room, m)?;
    }
    match p.item {
        ItemChange::None => {}
        ItemChange::Apply(id) => {
            let next = crate::domain::features::apply(load_item(conn, room, id)?, event);
            save_item(conn, room, id, next.as_ref())?;
        }
        ItemChange::Purge(root) => {
            let (gone, files) = projection::purge(&all_items(conn, room)?, root);
            for id in gone {
                save_item(conn, room, id, None)?;
            }
            for f in &files {
                delete_file_row(conn, f)?;
            }
        }
    }
    if let Some(seq) = p.recall {
        recall(conn, room, seq)?;
    }
    for f in &p.freed {
        delete_file_row(conn, f)?;
    }
    if let Some(audit) = &p.audit {
        write_audit(conn, audit)?;
    }
    Ok(())
}

/// The room's own row as projected (head and version are written with each entry).
pub(super) fn save_room_row(conn: &Connection, r: &RoomRecord) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE rooms SET kind = ?2, name = ?3, description = ?4, owner_company = ?5,
                          features = ?6, image = ?7, converted_from = ?8
          WHERE id = ?1",
    )?
    .execute(params![
        r.id.0,
        kind_str(r.kind),
        r.name,
        r.description,
        r.owner_company.0,
        json(&r.features)?,
        r.image,
        r.converted_from.as_ref().map(|c| c.0.clone()),
    ])?;
    Ok(())
}

/// One user's standing in a room, as projected.
pub(super) fn save_membership(conn: &Connection, room: &RoomId, m: &Membership) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO room_members (room, user, is_member, is_master, joined_seq)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (room, user) DO UPDATE SET
             is_member = excluded.is_member,
             is_master = excluded.is_master,
             joined_seq = excluded.joined_seq",
    )?
    .execute(params![
        room.0,
        m.user.0,
        m.member,
        m.master,
        sql_seq(m.since.unwrap_or(0))
    ])?;
    Ok(())
}

/// A room as stored (not deleted): its row and its members.
pub(super) fn load_room(conn: &Connection, id: &RoomId) -> StoreResult<Option<RoomRecord>> {
    let row = conn
        .prepare_cached(
            "SELECT kind, name, description, owner_company, created_by, created_at,
                    features, epoch, (SELECT head FROM room_heads WHERE room = rooms.id),
                    converted_from, image, version
               FROM rooms WHERE id = ?1 AND deleted = 0",
        )?
        .query_row(params![id.0], |r| {
            let kind: String = r.get(0)?;
            let features: String = r.get(6)?;
            Ok(RoomRecord {
                id: id.clone(),
                kind: kind_from(&kind),
                name: r.get(1)?,
                description: r.get(2)?,
                owner_company: CompanyId(r.get(3)?),
                created_by: UserId(r.get(4)?),
                created_at: r.get(5)?,
                features: from_json::<Features>(&features)?,
                epoch: r.get::<_, i64>(7)? as u64,
                head: r.get::<_, i64>(8)? as u64,
                converted_from: r.get::<_, Option<String>>(9)?.map(RoomId),
                image: r.get(10)?,
                version: r.get::<_, i64>(11)? as u64,
                masters: Vec::new(),
                members: Vec::new(),
                member_since: Default::default(),
            })
        })
        .optional()?;
    let Some(mut room) = row else { return Ok(None) };
    let mut st = conn.prepare_cached(
        "SELECT user, is_member, is_master, joined_seq FROM room_members
          WHERE room = ?1 ORDER BY user",
    )?;
    let rows = st.query_map(params![id.0], |r| {
        Ok((
            UserId(r.get(0)?),
            r.get::<_, bool>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, i64>(3)? as u64,
        ))
    })?;
    for row in rows {
        let (u, member, master, joined) = row?;
        if member {
            room.member_since.insert(u.clone(), joined);
            room.members.push(u.clone());
        }
        if master {
            room.masters.push(u);
        }
    }
    Ok(Some(room))
}

/// M1: rewrite a recalled message as [`projection::recalled`] says, freeing its attachments.
pub(super) fn recall(conn: &Connection, room: &RoomId, seq: u64) -> StoreResult<()> {
    let body: Option<Vec<u8>> = conn
        .prepare_cached("SELECT body FROM events WHERE room = ?1 AND seq = ?2")?
        .query_row(params![room.0, sql_seq(seq)], |r| r.get(0))
        .optional()?;
    let Some(body) = body else { return Ok(()) };
    let body: EventBody = rmp_serde::from_slice(&body).map_err(StoreError::backend)?;
    if let Some((placeholder, freed)) = projection::recalled(body) {
        for f in &freed {
            delete_file_row(conn, f)?;
        }
        conn.prepare_cached("UPDATE events SET body = ?3 WHERE room = ?1 AND seq = ?2")?
            .execute(params![room.0, sql_seq(seq), encode_body(&placeholder)?])?;
        unindex_message(room, seq);
    }
    Ok(())
}

#[async_trait]
impl RoomLogStore for SqliteStore {
    async fn create_room(&self, room: &NewRoom) -> StoreResult<Event> {
        let r = room.clone();
        let features = json(&r.features)?;
        self.write(move |conn| {
            // The owner company is not deleted, in the insert's transaction: a company's
            // deletion (which retires its id first) and a creation for it are ordered, and a
            // room created "during" a deletion does not outlive it (A2).
            let retired: bool = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM retired_ids WHERE id = ?1 AND kind = 'company')",
                )?
                .query_row(params![r.owner_company.0], |row| row.get(0))?;
            if retired {
                return Err(StoreError::NotFound(format!("company {}", r.owner_company)));
            }
            // G20, in the insert's transaction: concurrent creations cannot both see room.
            if let Some(max) = r.max_owned_groups {
                let owned: i64 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM rooms
                          WHERE owner_company = ?1 AND kind = 'group' AND deleted = 0",
                    )?
                    .query_row(params![r.owner_company.0], |row| row.get(0))?;
                if owned as u64 >= max {
                    return Err(StoreError::LimitReached(
                        crate::domain::rules::group_limit_message(max),
                    ));
                }
            }
            conn.execute(
                "INSERT INTO rooms (id, kind, name, description, owner_company, created_by,
                                    created_at, features, epoch, head)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)",
                params![
                    r.id.0,
                    kind_str(r.kind),
                    r.name,
                    r.description,
                    r.owner_company.0,
                    r.created_by.0,
                    r.created_at,
                    features,
                    r.epoch as i64
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists(format!("room {}", r.id))
                } else {
                    e.into()
                }
            })?;
            conn.prepare_cached("INSERT INTO room_heads (room, head) VALUES (?1, 0)")?
                .execute(params![r.id.0])?;
            // Its members, masters and audit record come from projecting its first entry.
            let created = append_one(conn, &r.id, &r.first_entry())?;
            Ok(created.event)
        })
        .await
    }

    async fn room(&self, id: &RoomId) -> StoreResult<Option<RoomRecord>> {
        let id = id.clone();
        self.read(move |conn| load_room(conn, &id)).await
    }

    async fn append(
        &self,
        room: &RoomId,
        entries: Vec<NewEntry>,
        expect: Option<u64>,
    ) -> StoreResult<CommitTicket> {
        let room = room.clone();
        let rx = self
            .enqueue(move |conn| {
                if let Some(expected) = expect {
                    let version: Option<i64> = conn
                        .prepare_cached("SELECT version FROM rooms WHERE id = ?1 AND deleted = 0")?
                        .query_row(params![room.0], |r| r.get(0))
                        .optional()?;
                    match version {
                        None => return Err(StoreError::NotFound(format!("room {room}"))),
                        Some(v) if v as u64 != expected => return Err(StoreError::Conflict),
                        Some(_) => {}
                    }
                }
                entries
                    .iter()
                    .map(|e| append_one(conn, &room, e))
                    .collect::<StoreResult<Vec<_>>>()
            })
            .await?;
        Ok(async move { rx.await.map_err(|_| StoreError::Closed)? }.boxed())
    }

    fn sole_writer(&self) -> bool {
        true
    }

    async fn mark_numbered(&self, room: &RoomId) -> StoreResult<()> {
        let (room, run) = (room.clone(), self.run);
        self.write(move |conn| {
            conn.prepare_cached("UPDATE room_heads SET run = ?2 WHERE room = ?1")?
                .execute(params![room.0, run])?;
            Ok(())
        })
        .await
    }

    async fn move_epoch(&self, room: &RoomId, epoch: u64) -> StoreResult<()> {
        let room = room.clone();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE rooms SET epoch = ?2 WHERE id = ?1")?
                .execute(params![room.0, epoch as i64])?;
            Ok(())
        })
        .await
    }

    async fn read_range(
        &self,
        room: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let room = room.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} WHERE e.room = ?1 AND e.seq > ?2 AND e.seq <= ?3
                 ORDER BY e.seq LIMIT ?4"
            ))?;
            let rows = st.query_map(
                params![room.0, sql_seq(after), sql_seq(upto), limit as i64],
                event_from_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn read_before(
        &self,
        room: &RoomId,
        from: u64,
        before: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let room = room.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} WHERE e.room = ?1 AND e.seq >= ?2 AND e.seq < ?3
                 ORDER BY e.seq DESC LIMIT ?4"
            ))?;
            let rows = st.query_map(
                params![room.0, sql_seq(from), sql_seq(before), limit as i64],
                event_from_row,
            )?;
            let mut out: Vec<Event> = rows.collect::<Result<_, _>>()?;
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn event_at(&self, room: &RoomId, seq: u64) -> StoreResult<Option<Event>> {
        let r = room.clone();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} WHERE e.room = ?1 AND e.seq = ?2"
                ))?
                .query_row(params![r.0, sql_seq(seq)], event_from_row)
                .optional()?)
        })
        .await
    }

    async fn posted_message(
        &self,
        room: &RoomId,
        author: &UserId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Event>> {
        let (room, author, cmid) = (room.0.clone(), author.0.clone(), client_msg_id.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} WHERE e.room = ?1 AND e.author = ?2 AND e.client_msg_id = ?3"
                ))?
                .query_row(params![room, author, cmid], event_from_row)
                .optional()?)
        })
        .await
    }

    async fn delete_room(&self, room: &RoomId, audit: NewAudit) -> StoreResult<Vec<String>> {
        let r = room.clone();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE rooms SET deleted = 1, name = '', description = '', invite_token = NULL,
                                      invite_expires = NULL WHERE id = ?1 AND deleted = 0",
                )?
                .execute(params![r.0])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("room {r}")));
            }
            conn.prepare_cached("DELETE FROM events WHERE room = ?1")?
                .execute(params![r.0])?;
            unindex_room(&r);
            conn.prepare_cached("DELETE FROM items WHERE room = ?1")?
                .execute(params![r.0])?;
            conn.prepare_cached("DELETE FROM room_members WHERE room = ?1")?
                .execute(params![r.0])?;
            let files: Vec<String> = conn
                .prepare_cached("SELECT id FROM files WHERE room = ?1")?
                .query_map(params![r.0], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for f in &files {
                delete_file_row(conn, f)?;
            }
            write_audit(conn, &audit)?;
            Ok(files)
        })
        .await
    }

    async fn restore_room(
        &self,
        _room: &RoomRecord,
        _epoch: u64,
        _notice: NewEntry,
    ) -> StoreResult<bool> {
        // One file, one transaction log: a room is never lost while the database is there.
        Ok(false)
    }
}
