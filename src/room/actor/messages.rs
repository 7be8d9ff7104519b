//! Commands about messages and the room as a reader sees it: `post` (idempotent by client id,
//! D2), `history` (from the reader's join, D4), `mark_read`, `get_room`, feature queries.

use super::*;

impl RoomActor {
    /// A message (M1): checked, its attachments resolved, appended; `posted` after the commit.
    pub(super) async fn post(&mut self, req: PostRequest, reply: Reply) {
        let PostRequest {
            user,
            client_msg_id,
            text,
            attachments,
            mentions,
        } = &req;
        let room = self.existing();
        if let Err(e) = rules::check_post(room, user, client_msg_id, text)
            .and_then(|()| rules::check_mentions(room, mentions))
        {
            return reply.fail(e);
        }
        // Numbered here, a post is delivered before the store could tell it is a retry (D2).
        if self.numbers_now() {
            match self.retried(user, client_msg_id).await {
                Ok(Some(ev)) => {
                    return reply.send(RoomReply::Posted {
                        room: ev.room,
                        epoch: ev.epoch,
                        seq: ev.seq,
                        ts: ev.ts,
                        duplicate: true,
                    })
                }
                Ok(None) => {}
                Err(e) => return reply.fail(e.into()),
            }
        }
        let files = match lookup::attachments_of(
            &*self.ctx.store,
            &self.id,
            user,
            client_msg_id,
            attachments.clone(),
            self.ctx.limits.attachment_postable_ms(),
        )
        .await
        {
            Ok(a) => a,
            Err(e) => return reply.fail(e),
        };
        let entry = NewEntry {
            author: user.clone(),
            ts: now_ms(),
            body: EventBody::Message {
                client_msg_id: client_msg_id.clone(),
                text: text.clone(),
                attachments: files,
                mentions: mentions.clone(),
                recalled: false,
            },
        };
        self.append(vec![entry], Ack::Posted(reply), RoomRequest::Post(req))
            .await;
    }

    /// A page of the log: only what this member was entitled to at the time of asking, from
    /// their join up to the head (D4). Read off the actor.
    pub(super) fn history(
        &self,
        user: UserId,
        before: Option<u64>,
        limit: Option<u32>,
        reply: Reply,
    ) {
        let room = self.existing();
        if let Err(e) = rules::check_member(room, &user) {
            return reply.fail(e);
        }
        let max = self.ctx.limits.max_history_page;
        let limit = limit.unwrap_or(50).clamp(1, max) as usize;
        // What is stored: entries delivered before their commit are not in a page yet.
        let before = before.unwrap_or(u64::MAX).min(self.stored_head() + 1);
        let from = room.sees_from(&user).unwrap_or(u64::MAX);
        let store = self.ctx.store.clone();
        let (id, epoch) = (self.id.clone(), room.epoch);
        self.ctx.shutdown.spawn(async move {
            match store.read_before(&id, from, before, limit + 1).await {
                Ok(mut events) => {
                    let mut has_more = events.len() > limit;
                    if has_more {
                        events.remove(0);
                    }
                    // A page stays within about `PAGE_BYTES` (the newest entries first, at least
                    // one): a hundred large notes would be over the session's outbound budget,
                    // which would close the session that asked, again on every retry.
                    let kept = crate::domain::paging::newest_within_budget(
                        &events,
                        crate::domain::paging::json_size,
                    );
                    if kept < events.len() {
                        events.drain(..events.len() - kept);
                        has_more = true;
                    }
                    reply.send(RoomReply::History {
                        room: id,
                        epoch,
                        events,
                        has_more,
                    });
                }
                Err(e) => reply.fail(e.into()),
            }
        });
    }

    /// Move the user's read marker (M2), never past the head.
    pub(super) fn mark_read(&self, user: UserId, seq: u64, reply: Reply) {
        let room = self.existing();
        if let Err(e) = rules::check_member(room, &user) {
            return reply.fail(e);
        }
        let seq = seq.min(room.head);
        let store = self.ctx.store.clone();
        let id = self.id.clone();
        self.ctx.shutdown.spawn(async move {
            match store.set_read_marker(&id, &user, seq).await {
                Ok(()) => reply.send(RoomReply::Done),
                Err(e) => reply.fail(e.into()),
            }
        });
    }

    /// The room's details: members and masters see the group; to anyone else it does not
    /// exist (G8).
    pub(super) fn get(&self, user: UserId, reply: Reply) {
        let room = self.existing();
        let known =
            room.members.binary_search(&user).is_ok() || room.masters.binary_search(&user).is_ok();
        if !known {
            return reply.fail(self.not_found());
        }
        // Who everyone is, looked up off the actor: the room goes on meanwhile.
        let mut answer = info(room);
        let store = self.ctx.store.clone();
        self.ctx.shutdown.spawn(async move {
            let ids: std::collections::BTreeSet<UserId> = answer
                .members
                .iter()
                .chain(&answer.masters)
                .cloned()
                .collect();
            for id in ids {
                match store.user(&id).await {
                    Ok(Some(u)) => {
                        answer.people.insert(id, u.info());
                    }
                    Ok(None) => {}
                    Err(e) => return reply.fail(e.into()),
                }
            }
            reply.send(RoomReply::Room(Box::new(answer)));
        });
    }

    /// A room-feature question by a member, answered off the actor.
    pub(super) fn query(&self, user: UserId, query: crossroom_protocol::Query, reply: Reply) {
        let room = self.existing();
        if let Err(e) = rules::check_member(room, &user) {
            return reply.fail(e);
        }
        let viewer = query::Viewer {
            since: room.sees_from(&user).unwrap_or(u64::MAX),
            user,
            kind: room.kind,
            features: room.features,
        };
        let (store, id) = (self.ctx.store.clone(), self.id.clone());
        self.ctx.shutdown.spawn(async move {
            match query::answer(&*store, &id, &viewer, query).await {
                Ok(result) => reply.send(RoomReply::Query { room: id, result }),
                Err(e) => reply.fail(e),
            }
        });
    }
}
