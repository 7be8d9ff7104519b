//! Fan-out and replay: a committed entry sealed on the actor's copy of the room and encoded
//! once into every subscriber's queue; a subscription's replay of what it missed (or `reset`);
//! the removal line (D4) cutting off who left.

use super::*;

impl RoomActor {
    /// Take one committed entry in seq order: fill a gap before it from the log, skip what was
    /// seen already (our own commits come back over the bus too), apply entries made elsewhere
    /// to our copy of the room (ours were applied when decided), deliver.
    pub(super) async fn accept(&mut self, event: Event, own: bool) {
        if self.room.is_none() || event.seq <= self.delivered {
            return;
        }
        if event.seq > self.delivered + 1 {
            self.fill(event.seq - 1).await;
            if event.seq <= self.delivered {
                return;
            }
        }
        if let Some(room) = &mut self.room {
            if own {
                // Applied when decided; now it has its seq.
                projection::seal(room, &event);
            } else {
                projection::project(room, &event);
            }
        }
        self.delivered = event.seq;
        self.deliver(event);
    }

    /// Deliver one committed event to every local subscriber, then act on membership changes.
    pub(super) fn deliver(&mut self, event: Event) {
        // A join takes effect at its own seq: the new member sees it and what follows.
        if let EventBody::MembersAdded { users } = &event.body {
            for sub in self.subscribers.values_mut() {
                if users.contains(&sub.user) {
                    sub.from = event.seq;
                }
            }
        }
        let seq = event.seq;
        let started = Instant::now();
        let shared = SharedEvent::new(event);
        let mut delivered = 0u64;
        self.subscribers.retain(|_, sub| {
            if seq < sub.from {
                return true;
            }
            let ok = sub.out.send_event(&shared).is_ok();
            if ok {
                delivered += 1;
            } else {
                tracing::debug!(user = %sub.user, "dropping subscriber: session closed or slow");
            }
            ok
        });
        METRICS.fanout.observe(started.elapsed());
        METRICS.deliveries.inc_by(delivered);
        self.stats.entries.fetch_add(1, Ordering::Relaxed);
        let ServerFrame::Event(event) = shared.frame() else {
            return;
        };
        // G12/D4: a removed user got the removal entry; nothing after it reaches them.
        match &event.body {
            EventBody::MemberRemoved { user, .. } => self.cut_off(user),
            EventBody::Converted { left_out, .. } => {
                for l in left_out {
                    self.cut_off(&l.user);
                }
            }
            _ => {}
        }
        self.count_subscribers();
    }

    /// What only the node that committed an entry does (once, cluster-wide): count it, publish
    /// its audit record, and tell the users it names — on every node.
    pub(super) fn announce(&self, event: &Event) {
        METRICS.entries.inc();
        if matches!(event.body, EventBody::Message { .. }) {
            METRICS.messages.inc();
        }
        let Some(room) = &self.room else { return };
        if let Some(record) = crate::store::audit_of(event, &room.owner_company) {
            self.ctx.ops.publish(&record);
        }
        let removed = |user: &UserId, reason: RemovalReason| {
            self.ctx.sessions.push_to_user(
                user,
                &ServerFrame::Removed {
                    room: self.id.clone(),
                    reason,
                },
            );
        };
        match &event.body {
            EventBody::MemberRemoved { user, reason } => removed(user, *reason),
            EventBody::Converted { left_out, .. } => {
                for l in left_out {
                    removed(&l.user, RemovalReason::Converted);
                }
            }
            // Members, and masters who are not members ("groups I manage"), learn of the room.
            EventBody::MembersAdded { users } | EventBody::MastersAdded { users } => {
                let newcomer = |u: &&UserId| {
                    matches!(event.body, EventBody::MembersAdded { .. })
                        || room.members.binary_search(u).is_err()
                };
                for u in users.iter().filter(newcomer) {
                    if let Some(joined) = crate::domain::records::joined(
                        u,
                        (&room.id, room.kind, &room.name),
                        (room.epoch, event.seq),
                        &room.members,
                        &room.masters,
                    ) {
                        self.ctx.sessions.push_to_user(u, &joined);
                    }
                }
            }
            // A master who is not a member and is no longer a master loses the room.
            EventBody::MasterRemoved { user } if room.members.binary_search(user).is_err() => {
                removed(user, RemovalReason::Removed)
            }
            _ => {}
        }
    }

    /// Subscribe after replaying what the client missed, or telling it to reset (D1). The
    /// replay, the `subscribed` reply and later live events go into the same queue in that
    /// order, because only this actor writes room events into it.
    pub(super) async fn subscribe(
        &mut self,
        session: SessionId,
        user: UserId,
        since: Option<Position>,
        reply: Reply,
    ) {
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        let Some(out) = reply.outbound().cloned() else {
            return reply.fail(ApiError::invalid("only sessions subscribe"));
        };
        let (epoch, head, stored) = (room.epoch, room.head, self.stored_head());
        let from = room.sees_from(&user).unwrap_or(u64::MAX);
        let limits = &self.ctx.limits;
        let mut replayed = 0u64;
        if let Some(pos) = since {
            // Never replay across a time the user was not a member (D4): reset instead.
            let resumable = pos.epoch == epoch
                && pos.seq <= head
                && pos.seq.saturating_add(1) >= from
                && head - pos.seq <= u64::from(limits.max_replay);
            let mut replay = Vec::new();
            if resumable && pos.seq < stored {
                match self
                    .ctx
                    .store
                    .read_range(&self.id, pos.seq, stored, limits.max_replay as usize)
                    .await
                {
                    Ok(events) => replay = events,
                    Err(e) => return reply.fail(e.into()),
                }
            }
            // Then what was delivered and is not stored yet (read while the actor waited: the
            // queue holds the rest).
            let unstored = self.unstored.iter().filter(|e| e.seq > pos.seq.max(stored));
            replay.extend(unstored.cloned());
            let complete = replay.len() as u64 == head - pos.seq.min(head);
            let messages: Vec<_> = replay
                .into_iter()
                .filter_map(|e| SharedEvent::new(e).message(out.encoding()))
                .collect();
            let bytes: usize = messages.iter().map(OutboundReceiver::len_of).sum();
            // A replay that would not fit in half the queue becomes a reset, never a partial
            // replay (D1).
            if resumable && complete && bytes <= limits.outbound_queue_bytes / 2 {
                replayed = messages.len() as u64;
                for m in messages {
                    if out.push(m).is_err() {
                        return;
                    }
                }
            } else if out
                .send(&ServerFrame::Reset {
                    room: self.id.clone(),
                    epoch,
                    head,
                })
                .is_err()
            {
                return;
            }
        }
        self.subscribers.insert(
            session,
            Subscriber {
                user,
                out,
                from,
                presence: false,
            },
        );
        self.count_subscribers();
        reply.send(RoomReply::Subscribed {
            room: self.id.clone(),
            epoch,
            head,
            replayed,
        });
    }

    /// Deliver what the log has after `delivered`, up to `upto`.
    pub(super) async fn fill(&mut self, upto: u64) {
        let (after, max) = (self.delivered, self.ctx.limits.max_replay as usize);
        let mut after = after;
        while after < upto {
            let events = match self.ctx.store.read_range(&self.id, after, upto, max).await {
                Ok(e) if !e.is_empty() => e,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(room = %self.id, error = %e, "cannot fill a gap from the log");
                    return;
                }
            };
            METRICS.bus_gap_fills.inc();
            for e in events {
                after = e.seq;
                if e.seq == self.delivered + 1 {
                    Box::pin(self.accept(e, false)).await;
                }
            }
        }
    }

    /// G12/D4: the user's subscriptions end at their removal line (their sessions are told by
    /// [`Self::announce`] on the committing node).
    pub(super) fn cut_off(&mut self, user: &UserId) {
        self.subscribers.retain(|_, sub| sub.user != *user);
    }

    /// Remove file bytes whose records are gone (their storage is already freed).
    pub(super) fn remove_blobs(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let blobs = self.ctx.blobs.clone();
        self.ctx.shutdown.spawn(async move {
            for id in ids {
                if let Err(e) = blobs.delete(&id).await {
                    tracing::warn!(file = %id, error = %e, "cannot remove file bytes");
                }
            }
        });
    }
}
