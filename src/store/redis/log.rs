//! Rooms and their logs in Redis: creation (`START`), the room's projection, appends through the
//! writer, reads, deletion with its tombstone (`DELETE`), and restoring a lost room.

use super::keys::*;
use super::*;

impl RedisStore {
    /// A group whose company's deletion began while it was being created (its slot claimed
    /// before the count was closed, its index entry perhaps after the deletion listed the
    /// company's groups): checked after the room's own write, and taken back — so no group
    /// created "during" a deletion outlives it (A2).
    pub(super) async fn undo_if_owner_closed(&self, room: &NewRoom) -> StoreResult<()> {
        let count: Option<String> = ::redis::cmd("GET")
            .arg(owned_groups_key(&room.owner_company))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if count.as_deref() != Some(CLOSED) {
            return Ok(());
        }
        let audit = NewAudit {
            ts: crate::clock::now_ms(),
            room: room.id.clone(),
            actor: crate::domain::rules::Actor::Admin(room.owner_company.clone()).id(),
            action: "deleted".into(),
            detail: serde_json::json!({ "name": room.name, "reason": "company deleted" })
                .to_string(),
            companies: vec![room.owner_company.clone()],
        };
        self.delete_room_keys(&room.id, audit).await?;
        Err(StoreError::NotFound(format!(
            "company {}",
            room.owner_company
        )))
    }

    /// Delete a room's keys and records (G16), keeping its tombstone.
    pub(super) async fn delete_room_keys(
        &self,
        room: &RoomId,
        audit: NewAudit,
    ) -> StoreResult<Vec<String>> {
        let (files, invite, authors): (Vec<String>, Option<String>, Vec<String>) = ::redis::pipe()
            .cmd("SMEMBERS")
            .arg(rk(room, "files"))
            .cmd("GET")
            .arg(rk(room, "invite"))
            .cmd("HKEYS")
            .arg(rk(room, "cmid"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let mut keys: Vec<String> = ["meta", "log", "cmid", "msgs", "reads", "items", "invite"]
            .iter()
            .map(|k| rk(room, k))
            .collect();
        let writers: HashSet<&str> = authors
            .iter()
            .filter_map(|f| f.split('\n').next())
            .collect();
        keys.extend(writers.iter().map(|a| rk(room, &format!("msgs:{a}"))));
        // The deletion's audit record goes into the room's outbox (kept) in the same step.
        let item = OutboxAudit {
            tag: format!("{}:deleted", room.0),
            audit,
        };
        self.mark_audit_pending(room).await?;
        let mut inv = self.inner.scripts.delete.key(rk(room, "state"));
        inv.key(rk(room, "audit")).arg(to_json(&item)?);
        for k in &keys {
            inv.key(k);
        }
        let deleted: i64 = inv.invoke_async(&mut self.conn()).await.map_err(backend)?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("room {room}")));
        }
        let mut written = vec![rk(room, "state")];
        if let Some(i) = invite {
            let i: Invite = from_json(&i)?;
            let key = format!("cr:invite:{}", i.token);
            let _: () = ::redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            written.push(key);
        }
        self.inner.settle(written).await?;
        for f in &files {
            self.inner.delete_file(f).await?;
        }
        self.inner.flush_audits(room).await?;
        Ok(files)
    }

    /// Start `room`'s log at seq 1 with `first` unless its id is in use or was deleted (see
    /// [`START`]); its people's and (a group) its owner's superset indexes are written first.
    /// True when it started.
    pub(super) async fn start_room(
        &self,
        room: &RoomId,
        meta: &Meta,
        people: &[&UserId],
        epoch: u64,
        first: &StoredEntry,
        audit: Option<&OutboxAudit>,
    ) -> StoreResult<bool> {
        let mut index = Vec::new();
        for u in people {
            let mut c = ::redis::cmd("SADD");
            c.arg(user_rooms_key(u)).arg(&room.0);
            index.push(c);
        }
        if meta.kind == RoomKind::Group {
            let mut c = ::redis::cmd("SADD");
            c.arg(format!("cr:co:{}:groups", meta.owner_company.0))
                .arg(&room.0);
            index.push(c);
        }
        self.each(index).await?;
        let started: i64 = self
            .inner
            .scripts
            .start
            .key(rk(room, "state"))
            .key(rk(room, "meta"))
            .key(rk(room, "log"))
            .key(rk(room, "audit"))
            .arg(epoch)
            .arg(to_json(meta)?)
            .arg(to_json(first)?)
            .arg(audit.map(to_json).transpose()?.unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if started == 1 {
            self.inner.settle([rk(room, "state")]).await?;
        }
        Ok(started == 1)
    }

    pub(super) async fn read_seqs(
        &self,
        room: &RoomId,
        epoch: u64,
        first: u64,
        last: u64,
    ) -> StoreResult<Vec<Event>> {
        if first > last || first == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(rk(room, "log"));
        for seq in first..=last {
            cmd.arg(seq);
        }
        let raw: Vec<Option<String>> = cmd.query_async(&mut self.conn()).await.map_err(backend)?;
        raw.into_iter()
            .zip(first..=last)
            .filter_map(|(r, seq)| r.map(|r| entry_event(room, epoch, seq, &r)))
            .collect()
    }
}

#[async_trait]
impl RoomLogStore for RedisStore {
    async fn create_room(&self, room: &NewRoom) -> StoreResult<Event> {
        let entry = room.first_entry();
        let event = Event {
            room: room.id.clone(),
            epoch: room.epoch,
            seq: 1,
            ts: entry.ts,
            author: entry.author.clone(),
            body: entry.body.clone(),
        };
        let mut record = RoomRecord::empty(&room.id, room.owner_company.clone());
        let p = projection::project(&mut record, &event);
        let meta = Meta::of(&record);
        // Its audit record goes into the room's outbox with the room itself (G19).
        let audit = p.audit.map(|audit| OutboxAudit {
            tag: format!("{}:{}:1", room.id.0, room.epoch),
            audit,
        });
        if audit.is_some() {
            self.mark_audit_pending(&room.id).await?;
        }
        let first = StoredEntry {
            ts: entry.ts,
            author: entry.author,
            body: entry.body,
        };
        let people: Vec<&UserId> = room.members.iter().chain(&room.masters).collect();
        if let Some(max) = room.max_owned_groups {
            self.claim_group_slot(&room.owner_company, max).await?;
        }
        let created = self
            .start_room(&room.id, &meta, &people, room.epoch, &first, audit.as_ref())
            .await;
        if !matches!(created, Ok(true)) && room.max_owned_groups.is_some() {
            self.inner.release_group(&room.owner_company).await?;
        }
        if !created? {
            return Err(StoreError::AlreadyExists(format!("room {}", room.id)));
        }
        if room.max_owned_groups.is_some() {
            self.undo_if_owner_closed(room).await?;
        }
        if audit.is_some() {
            self.inner.flush_audits(&room.id).await?;
        }
        Ok(event)
    }

    async fn room(&self, id: &RoomId) -> StoreResult<Option<RoomRecord>> {
        self.inner.load_room(id).await
    }

    /// One small `HMGET` per room, all in flight at once: the multiplexed connection pipelines
    /// them (and a cluster connection routes each to its shard).
    async fn heads(
        &self,
        rooms: &[RoomId],
    ) -> StoreResult<Vec<Option<crossroom_protocol::Position>>> {
        let reads = rooms.iter().map(|room| {
            let mut conn = self.inner.conn.clone();
            async move {
                let (head, epoch, deleted): (Option<u64>, Option<u64>, Option<String>) =
                    ::redis::cmd("HMGET")
                        .arg(rk(room, "state"))
                        .arg("head")
                        .arg("epoch")
                        .arg("deleted")
                        .query_async(&mut conn)
                        .await
                        .map_err(backend)?;
                Ok(match (head, epoch, deleted.as_deref()) {
                    (Some(seq), Some(epoch), d) if d != Some("1") => {
                        Some(crossroom_protocol::Position { epoch, seq })
                    }
                    _ => None,
                })
            }
        });
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }

    async fn append(
        &self,
        room: &RoomId,
        entries: Vec<NewEntry>,
        expect: Option<u64>,
    ) -> StoreResult<CommitTicket> {
        let (done, rx) = oneshot::channel();
        let tx = self
            .writer
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        tx.send(Job {
            room: room.clone(),
            entries,
            expect,
            done,
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        Ok(async move { rx.await.map_err(|_| StoreError::Closed)? }.boxed())
    }

    async fn read_range(
        &self,
        room: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let Some(r) = self.inner.load_room(room).await? else {
            return Ok(Vec::new());
        };
        let last = upto.min(r.head).min(after.saturating_add(limit as u64));
        self.read_seqs(room, r.epoch, after + 1, last).await
    }

    async fn read_before(
        &self,
        room: &RoomId,
        from: u64,
        before: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let Some(r) = self.inner.load_room(room).await? else {
            return Ok(Vec::new());
        };
        let last = before.saturating_sub(1).min(r.head);
        let first = from
            .max(1)
            .max(last.saturating_sub(limit as u64).saturating_add(1));
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read_seqs(room, r.epoch, first, last).await
    }

    async fn event_at(&self, room: &RoomId, seq: u64) -> StoreResult<Option<Event>> {
        let Some(r) = self.inner.load_room(room).await? else {
            return Ok(None);
        };
        self.inner.event_at(room, r.epoch, seq).await
    }

    async fn posted_message(
        &self,
        room: &RoomId,
        author: &UserId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Event>> {
        let seq: Option<u64> = ::redis::cmd("HGET")
            .arg(rk(room, "cmid"))
            .arg(cmid_field(author, client_msg_id))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        match seq {
            Some(seq) => self.event_at(room, seq).await,
            None => Ok(None),
        }
    }

    async fn delete_room(&self, room: &RoomId, audit: NewAudit) -> StoreResult<Vec<String>> {
        let before = self.inner.load_room(room).await?;
        let files = self.delete_room_keys(room, audit).await?;
        if let Some(r) = before.filter(|r| r.kind == RoomKind::Group) {
            self.inner.release_group(&r.owner_company).await?;
        }
        Ok(files)
    }

    async fn restore_room(
        &self,
        room: &RoomRecord,
        epoch: u64,
        notice: NewEntry,
    ) -> StoreResult<bool> {
        let mut meta = Meta::of(room);
        // Everyone sees the restored log from its first entry.
        for since in meta.member_since.values_mut() {
            *since = 1;
        }
        let first = StoredEntry {
            ts: notice.ts,
            author: notice.author,
            body: notice.body,
        };
        let people: Vec<&UserId> = room.members.iter().chain(&room.masters).collect();
        self.start_room(&room.id, &meta, &people, epoch, &first, None)
            .await
    }
}
