//! The projection planner: an entry other than a plain post is projected in Rust by the one
//! projection the SQLite store and the room actor use ([`crate::domain::projection`]) into a
//! [`Plan`] of writes, which the `PROJECTED` script applies only if the room's head (and every
//! item it rewrites) is still what the plan was computed from; otherwise it is computed again.

use super::keys::*;
use super::scripts::*;
use super::*;

#[derive(Default)]
pub(super) struct Plan {
    pub(super) head: u64,
    pub(super) new_head: u64,
    pub(super) new_version: u64,
    pub(super) meta: String,
    pub(super) logs: Vec<(u64, String)>,
    pub(super) items: Vec<(u64, (String, String))>,
    pub(super) cmids: Vec<(String, u64)>,
    pub(super) messages: Vec<(u64, UserId)>,
    /// Users to index (before the commit) as possibly in the room.
    pub(super) joined: Vec<UserId>,
    /// File records (and their storage) to drop after the commit.
    pub(super) garbage: Vec<String>,
    /// Audit records, written into the room's outbox by the script itself.
    pub(super) audits: Vec<OutboxAudit>,
    pub(super) appended: Vec<Appended>,
}

impl Inner {
    /// Any append but a single post: project in Rust, write if nothing moved, else again.
    pub(super) async fn projected_append(
        &self,
        room: &RoomId,
        entries: &[NewEntry],
        expect: Option<u64>,
    ) -> StoreResult<Vec<Appended>> {
        for _ in 0..MAX_RETRIES {
            let Some(record) = self.load_room(room).await? else {
                return Err(StoreError::NotFound(format!("room {room}")));
            };
            let epoch = record.epoch;
            let plan = self.plan(record, entries).await?;
            // Superset indexes first: a crash after this shows nothing extra (reads check).
            for u in &plan.joined {
                let _: () = ::redis::cmd("SADD")
                    .arg(user_rooms_key(u))
                    .arg(&room.0)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
            }
            let mut inv = self.scripts.projected.prepare_invoke();
            inv.key(rk(room, "state"))
                .key(rk(room, "log"))
                .key(rk(room, "meta"))
                .key(rk(room, "items"))
                .key(rk(room, "cmid"))
                .key(rk(room, "msgs"))
                .key(rk(room, "audit"))
                .arg(plan.head)
                .arg(plan.new_head)
                .arg(&plan.meta)
                .arg(expect.map(|v| v.to_string()).unwrap_or_default())
                .arg(plan.new_version)
                .arg(if self.ack.replicas > 0 {
                    ""
                } else {
                    self.publish_cmd()
                })
                .arg(room_channel(room))
                .arg(plan.logs.len());
            for (seq, entry) in &plan.logs {
                inv.arg(*seq).arg(entry);
            }
            inv.arg(plan.items.len());
            for (id, (old, new)) in &plan.items {
                inv.arg(*id).arg(old).arg(new);
            }
            inv.arg(plan.cmids.len());
            for (field, seq) in &plan.cmids {
                inv.arg(field).arg(*seq);
            }
            inv.arg(plan.messages.len());
            for (seq, author) in &plan.messages {
                inv.arg(*seq).arg(rk(room, &format!("msgs:{}", author.0)));
            }
            inv.arg(plan.audits.len());
            for a in &plan.audits {
                inv.arg(to_json(a)?);
            }
            if !plan.audits.is_empty() {
                // Superset, before the commit: a crash after it leaves an empty outbox listed.
                let _: () = ::redis::cmd("SADD")
                    .arg(AUDIT_PENDING)
                    .arg(&room.0)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
            }
            let audited = (!plan.audits.is_empty()).then(|| AUDIT_PENDING.to_owned());
            self.settle(plan.joined.iter().map(user_rooms_key).chain(audited))
                .await?;
            let outcome: Value = inv
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            let (outcome, writer) = projected_outcome(&outcome);
            match outcome {
                1 => {
                    if self.ack.replicas > 0 {
                        self.replicated(&rk(room, "state"), Some(&writer)).await?;
                        self.publish_new(room, epoch, &plan).await;
                    }
                    for f in &plan.garbage {
                        self.delete_file(f).await?;
                    }
                    // A conversion makes one more group its owner counts (G20).
                    for a in plan.appended.iter().filter(|a| !a.duplicate) {
                        if let (EventBody::Converted { .. }, Some(owner)) =
                            (&a.event.body, a.event.author.company())
                        {
                            self.count_in_group(&owner, room).await?;
                        }
                    }
                    self.flush_audits(room).await?;
                    return Ok(plan.appended);
                }
                -1 => return Err(StoreError::NotFound(format!("room {room}"))),
                -4 => return Err(StoreError::Conflict),
                // The room moved under us (a post, another node): project again.
                _ => continue,
            }
        }
        Err(StoreError::backend(format!(
            "room {room}: too much contention to append"
        )))
    }

    /// Compute what a projected append writes.
    pub(super) async fn plan(
        &self,
        mut room: RoomRecord,
        entries: &[NewEntry],
    ) -> StoreResult<Plan> {
        let id = room.id.clone();
        let mut plan = Plan {
            head: room.head,
            new_head: room.head,
            new_version: room.version,
            ..Plan::default()
        };
        // Items as read (the script checks they are unchanged) and as they become.
        let mut items: BTreeMap<u64, (String, Option<Item>)> = BTreeMap::new();
        let mut state_changed = false;
        // Client ids taken earlier in this very batch.
        let mut batch_cmids: HashMap<String, usize> = HashMap::new();
        for entry in entries {
            if let Some(cmid) = entry.client_msg_id() {
                let field = cmid_field(&entry.author, cmid);
                if let Some(&at) = batch_cmids.get(&field) {
                    let event = plan.appended[at].event.clone();
                    plan.appended.push(Appended {
                        event,
                        duplicate: true,
                    });
                    continue;
                }
                batch_cmids.insert(field.clone(), plan.appended.len());
                let dup: Option<u64> = ::redis::cmd("HGET")
                    .arg(rk(&id, "cmid"))
                    .arg(&field)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
                if let Some(seq) = dup {
                    let event = self
                        .event_at(&id, room.epoch, seq)
                        .await?
                        .ok_or_else(|| StoreError::backend(format!("seq {seq} missing")))?;
                    plan.appended.push(Appended {
                        event,
                        duplicate: true,
                    });
                    continue;
                }
                plan.cmids.push((field, plan.new_head + 1));
                plan.messages
                    .push((plan.new_head + 1, entry.author.clone()));
            }
            plan.new_head += 1;
            let seq = plan.new_head;
            if moves_version(&entry.body) {
                plan.new_version = seq;
            }
            let event = Event {
                room: id.clone(),
                epoch: room.epoch,
                seq,
                ts: entry.ts,
                author: entry.author.clone(),
                body: entry.body.clone(),
            };
            plan.logs.push((
                seq,
                to_json(&StoredEntry {
                    ts: entry.ts,
                    author: entry.author.clone(),
                    body: entry.body.clone(),
                })?,
            ));
            state_changed |= self
                .plan_projection(&mut plan, &mut room, &mut items, &event)
                .await?;
            plan.appended.push(Appended {
                event,
                duplicate: false,
            });
        }
        for (id, (old, new)) in items {
            let new = new.as_ref().map(to_json).transpose()?.unwrap_or_default();
            if new != old {
                plan.items.push((id, (old, new)));
            }
        }
        if state_changed || entries.iter().any(|e| e.client_msg_id().is_none()) {
            plan.meta = to_json(&Meta::of(&room))?;
        }
        Ok(plan)
    }

    /// What the one projection (`domain::projection`) of `event` writes: the room (returns
    /// whether it changed), the user indexes, the items, a recalled message, freed files, audit.
    pub(super) async fn plan_projection(
        &self,
        plan: &mut Plan,
        room: &mut RoomRecord,
        items: &mut BTreeMap<u64, (String, Option<Item>)>,
        event: &Event,
    ) -> StoreResult<bool> {
        let id = room.id.clone();
        // The one projection (`domain::projection`), persisted by the script.
        let p = projection::project(room, event);
        plan.joined.extend(
            p.members
                .iter()
                .filter(|m| m.member || m.master)
                .map(|m| m.user.clone()),
        );
        plan.garbage.extend(p.freed);
        if let Some(message) = p.recall {
            self.plan_recall(&id, room, message, plan).await?;
        }
        match p.item {
            ItemChange::None => {}
            ItemChange::Apply(target) => {
                let current = self.item_entry(&id, target, items).await?;
                current.1 = crate::domain::features::apply(current.1.take(), event);
            }
            ItemChange::Purge(root) => {
                let (gone, files) = projection::purge(&self.items_of(&id).await?, root);
                for g in gone {
                    self.item_entry(&id, g, items).await?.1 = None;
                }
                plan.garbage.extend(files);
            }
        }
        if let Some(audit) = p.audit {
            let tag = format!("{}:{}:{}", id.0, event.epoch, event.seq);
            plan.audits.push(OutboxAudit { tag, audit });
        }
        Ok(p.room_changed)
    }

    /// M1: the recalled message keeps its place and client id, and loses the rest; its
    /// attachments' bytes are freed.
    pub(super) async fn plan_recall(
        &self,
        id: &RoomId,
        room: &RoomRecord,
        seq: u64,
        plan: &mut Plan,
    ) -> StoreResult<()> {
        // A message recalled in the same batch it was posted in is not a case the actor makes.
        let Some(event) = self.event_at(id, room.epoch, seq).await? else {
            return Ok(());
        };
        if let Some((placeholder, freed)) = projection::recalled(event.body) {
            plan.garbage.extend(freed);
            plan.logs.push((
                seq,
                to_json(&StoredEntry {
                    ts: event.ts,
                    author: event.author,
                    body: placeholder,
                })?,
            ));
        }
        Ok(())
    }

    pub(super) async fn item_entry<'a>(
        &self,
        room: &RoomId,
        id: u64,
        items: &'a mut BTreeMap<u64, (String, Option<Item>)>,
    ) -> StoreResult<&'a mut (String, Option<Item>)> {
        match items.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::btree_map::Entry::Vacant(e) => {
                let raw: Option<String> = ::redis::cmd("HGET")
                    .arg(rk(room, "items"))
                    .arg(id)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
                let item = raw.as_deref().map(from_json::<Item>).transpose()?;
                Ok(e.insert((raw.unwrap_or_default(), item)))
            }
        }
    }

    pub(super) async fn items_of(&self, room: &RoomId) -> StoreResult<Vec<Item>> {
        let all: HashMap<u64, String> = ::redis::cmd("HGETALL")
            .arg(rk(room, "items"))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        let mut items: Vec<Item> = all
            .values()
            .map(|s| from_json::<Item>(s))
            .collect::<StoreResult<_>>()?;
        items.sort_by_key(Item::id);
        Ok(items)
    }
}
