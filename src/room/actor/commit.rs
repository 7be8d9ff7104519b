//! The ordered commit pipeline: appends queued without waiting, acknowledged in queue order as
//! they commit, and the commands whose appends met a conflict (another node changed the room)
//! decided again on the state as it is, in the order they were asked for (D3).

use super::*;

impl RoomActor {
    /// Finish what was queued: those entries are stored; their senders deserve the ack.
    pub(super) async fn drain_pending(&mut self) {
        while let Some(done) = self.pending.next().await {
            self.committed(done).await;
        }
    }

    /// Decide again, in the order they were asked for, the commands whose appends met a
    /// conflict (D3 for each sender). What was queued after the first one stood on a state no
    /// newer: every append in flight resolves first (those that conflict too join the list),
    /// then the state is learnt once and the list is decided again on it. Decided on one
    /// version and queued in order, they commit in order or conflict together.
    pub(super) async fn decide_again(&mut self) {
        self.resolving = true;
        while let Some(done) = self.pending.next().await {
            self.committed(done).await;
        }
        self.resolving = false;
        self.reload().await;
        self.fill(self.room.as_ref().map(|r| r.head).unwrap_or(0))
            .await;
        for (ack, redo, attempt) in std::mem::take(&mut self.conflicted) {
            self.redeciding = attempt + 1;
            self.handle(RoomCommand::Ask(redo, ack.into_reply())).await;
        }
        self.redeciding = 0;
    }

    /// Whether an append in flight was decided on another state version than the room's now
    /// (another node's change came in since): it is bound to be decided again.
    pub(super) fn stale_pending(&self) -> bool {
        let now = self.room.as_ref().map(|r| r.version);
        self.pending_on.keys().any(|v| Some(*v) != now)
    }

    /// Queue entries in the store, conditional on the state version they were decided on;
    /// `ack` answers once they commit. Posts are pipelined; anything that moves the state
    /// version is waited for, so every decision after it knows the version it stands on.
    /// Numbered here (the seqs after the head) and delivered once queued, when the actor may.
    pub(super) async fn append(&mut self, entries: Vec<NewEntry>, ack: Ack, redo: RoomRequest) {
        let moves = entries.iter().any(|e| moves_version(&e.body));
        if !moves && !self.early && self.wants_numbering() {
            self.mark_numbered().await;
        }
        let Some(room) = &self.room else {
            return ack.into_reply().fail(self.not_found());
        };
        let queued = Instant::now();
        let attempt = std::mem::take(&mut self.redeciding);
        let version = room.version;
        let numbered = (!moves && self.numbers_now())
            .then(|| room.head + 1..room.head + 1 + entries.len() as u64);
        let early: Vec<Event> = match &numbered {
            Some(seqs) => entries
                .iter()
                .zip(seqs.clone())
                .map(|(e, seq)| Event {
                    room: self.id.clone(),
                    epoch: room.epoch,
                    seq,
                    ts: e.ts,
                    author: e.author.clone(),
                    body: e.body.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        match self
            .ctx
            .store
            .append(&self.id, entries, Some(room.version))
            .await
        {
            Ok(ticket) => {
                *self.pending_on.entry(version).or_default() += 1;
                self.unnumbered += usize::from(numbered.is_none());
                let q = Queued {
                    ack,
                    redo,
                    attempt,
                    version,
                    numbered,
                };
                self.pending.push_back(
                    ticket
                        .map(move |r| {
                            METRICS.commit.observe(queued.elapsed());
                            (r, q)
                        })
                        .boxed(),
                );
                // Held in line: delivered now, acknowledged at the commit.
                for event in early {
                    self.unstored.push_back(event.clone());
                    self.accept(event, true).await;
                }
            }
            Err(e) => ack.into_reply().fail(e.into()),
        }
        if moves {
            self.drain_pending().await;
        }
    }

    /// An append landed: acknowledge it, deliver it (unless it was already), and carry out what
    /// it means for sessions (removed users are cut off after their line; added users are
    /// told). Once nothing is in flight, a room whose delivered tail was lost moves to a new
    /// epoch.
    pub(super) async fn committed(&mut self, done: Committed) {
        self.settle(done).await;
        if self.tail_lost && self.pending.is_empty() {
            Box::pin(self.renumber()).await;
        }
    }

    pub(super) async fn settle(&mut self, (result, q): Committed) {
        let Queued {
            ack,
            redo,
            attempt,
            version,
            numbered,
        } = q;
        if let Some(n) = self.pending_on.get_mut(&version) {
            *n -= 1;
            if *n == 0 {
                self.pending_on.remove(&version);
            }
        }
        let early = numbered.is_some();
        let result = match numbered {
            Some(seqs) => self.stored_as_numbered(result, seqs),
            None => {
                self.unnumbered -= 1;
                result
            }
        };
        let appended = match result {
            Ok(a) => a,
            Err(e) if early => return ack.into_reply().fail(e.into()),
            Err(StoreError::Conflict) if attempt + 1 >= MAX_REDECISIONS => {
                tracing::warn!(room = %self.id, attempt, "decided again too often; refusing");
                return ack.into_reply().fail(StoreError::Conflict.into());
            }
            Err(StoreError::Conflict) => {
                // Another node changed the room after we decided: learn what it did, and
                // decide again (a removal there refuses this post here).
                tracing::debug!(room = %self.id, attempt, "state moved under a decision; deciding again");
                self.conflicted.push((ack, redo, attempt));
                if self.resolving {
                    // Inside the resolution of an earlier conflict: decided again after it.
                    return;
                }
                return Box::pin(self.decide_again()).await;
            }
            Err(e) => {
                tracing::warn!(room = %self.id, error = %e, "append failed; reloading state");
                // The decision was applied to our state already; the store has the truth.
                self.reload().await;
                return ack.into_reply().fail(e.into());
            }
        };
        self.acknowledge(appended, ack, early).await;
    }

    /// Answer a committed append and carry out what it means; `early`: its entries were
    /// delivered when queued.
    pub(super) async fn acknowledge(&mut self, appended: Vec<Appended>, ack: Ack, early: bool) {
        let mut last = None;
        for a in &appended {
            let ev = &a.event;
            if let Ack::Posted(reply) = &ack {
                reply.send(RoomReply::Posted {
                    room: ev.room.clone(),
                    epoch: ev.epoch,
                    seq: ev.seq,
                    ts: ev.ts,
                    duplicate: a.duplicate,
                });
            }
            last = Some((ev.epoch, ev.seq));
            if a.duplicate {
                continue;
            }
            if !early {
                self.accept(ev.clone(), true).await;
            }
            self.announce(ev);
        }
        let admitted = self.admitted(&appended);
        if !admitted.is_empty() {
            Box::pin(self.recheck_admitted(admitted)).await;
        }
        self.update_link_bars(&appended).await;
        // A feature action answers with its first entry: the item it created or changed (a
        // notice may follow it).
        let first = appended.first().map(|a| (a.event.epoch, a.event.seq));
        if let (Ack::Acted(reply, garbage, notify), Some((epoch, seq))) = (&ack, first) {
            self.remove_blobs(garbage.clone());
            for a in &appended {
                if let Some(task) = features::task_of(&a.event.body) {
                    let notice = ServerFrame::TaskNotice {
                        room: self.id.clone(),
                        task: task.unwrap_or(a.event.seq),
                        action: a.event.body.kind(),
                        by: a.event.author.clone(),
                        seq: a.event.seq,
                    };
                    // Only to who is a member now: a removed assignee hears nothing more.
                    for u in notify.iter().filter(|u| self.is_member(u)) {
                        self.ctx.sessions.push_to_user(u, &notice);
                    }
                }
            }
            reply.send(RoomReply::Changed(Changed {
                room: self.id.clone(),
                epoch,
                seq,
                left_out: Vec::new(),
            }));
        }
        if let (Ack::Changed(reply, left_out, garbage), Some((epoch, seq))) = (ack, last) {
            self.remove_blobs(garbage);
            reply.send(RoomReply::Changed(Changed {
                room: self.id.clone(),
                epoch,
                seq,
                left_out,
            }));
        }
    }
}
