//! Early numbering and epochs (D1, D2): with the embedded store the actor numbers what it
//! queues and delivers it before the commit; an entry not stored as delivered, a lost room, or a
//! room found on another epoch moves its subscribers to the new epoch (they reset).

use super::*;

impl RoomActor {
    /// Whether the next entry that does not move the state version is numbered here and
    /// delivered before its commit: the room is marked in this run ([`Self::mark_numbered`]) and
    /// [`Self::wants_numbering`].
    pub(super) fn numbers_now(&self) -> bool {
        self.early && self.wants_numbering()
    }

    /// Whether entries would be numbered here, the mark aside: a sole writer, nothing in flight
    /// that the store numbers, no lost tail, and enough subscribers for the retry check each post
    /// then costs to pay (`limits.early_delivery_subscribers`).
    pub(super) fn wants_numbering(&self) -> bool {
        self.ctx.store.sole_writer()
            && !self.tail_lost
            && self.unnumbered == 0
            && self.subscribers.len() >= self.ctx.limits.early_delivery_subscribers
    }

    /// Mark the room in this run, durably, before its first entry is numbered here (D1): after an
    /// unclean stop only marked rooms move to new epochs — a room whose entries were delivered at
    /// their commit shows nothing the store does not hold, and resumes without a reset. Until a
    /// mark is stored, entries go on being delivered at their commit.
    pub(super) async fn mark_numbered(&mut self) {
        match self.ctx.store.mark_numbered(&self.id).await {
            Ok(()) => self.early = true,
            Err(e) => tracing::warn!(
                room = %self.id,
                error = %e,
                "cannot mark the room for delivery before the commit; delivering at the commit"
            ),
        }
    }

    /// The stored entry of an earlier post by `user` with this client id: one still in flight
    /// is waited for first, then the log is asked.
    pub(super) async fn retried(
        &mut self,
        user: &UserId,
        cmid: &str,
    ) -> StoreResult<Option<Event>> {
        let same = |e: &Event| {
            e.author == *user
                && matches!(&e.body, EventBody::Message { client_msg_id, .. } if client_msg_id == cmid)
        };
        if self.unstored.iter().any(same) {
            self.drain_pending().await;
        }
        self.ctx.store.posted_message(&self.id, user, cmid).await
    }

    /// An append delivered before its commit has an outcome: its entries leave `unstored`, and
    /// anything but storage at exactly the seqs they were delivered with means subscribers saw
    /// what the log does not hold (a failed commit, or a batch that stored later entries in
    /// earlier places).
    pub(super) fn stored_as_numbered(
        &mut self,
        result: StoreResult<Vec<Appended>>,
        seqs: std::ops::Range<u64>,
    ) -> StoreResult<Vec<Appended>> {
        while self.unstored.front().is_some_and(|e| seqs.contains(&e.seq)) {
            self.unstored.pop_front();
        }
        let exact = result.as_ref().is_ok_and(|a| {
            a.len() == seqs.clone().count()
                && a.iter()
                    .zip(seqs.clone())
                    .all(|(a, s)| !a.duplicate && a.event.seq == s)
        });
        if !exact && !self.tail_lost {
            tracing::warn!(room = %self.id, first = seqs.start, "entries delivered before their commit were not stored as delivered");
            self.tail_lost = true;
        }
        result
    }

    /// Whether the room may be appended to: not while a delivered tail was lost and the room
    /// has not moved to a new epoch yet (that write failed too), where an entry would take a
    /// seq its readers saw with other content. The last of what is in flight tries the move
    /// when it lands (`committed`); with nothing in flight, it is tried here.
    pub(super) async fn epoch_writable(&mut self) -> bool {
        if self.tail_lost && self.pending.is_empty() {
            Box::pin(self.renumber()).await;
        } else if self.tail_lost {
            self.drain_pending().await;
        }
        !self.tail_lost
    }

    /// Entries were delivered that the log does not hold as delivered: the room moves to a new
    /// epoch, so that no client resumes over them (D1), and goes on from the log as stored.
    pub(super) async fn renumber(&mut self) {
        let epoch = crate::random::epoch();
        if let Err(e) = self.ctx.store.move_epoch(&self.id, epoch).await {
            // Still lost: tried again before the next append (which waits for it) and on the
            // actor's tick; readers keep what they saw until then.
            return tracing::error!(room = %self.id, error = %e, "cannot move the room to a new epoch; trying again");
        }
        self.tail_lost = false;
        self.unstored.clear();
        match self.ctx.store.room(&self.id).await {
            Ok(Some(room)) => {
                tracing::warn!(room = %self.id, epoch = room.epoch, "room goes on under a new epoch");
                METRICS.epochs_moved.inc();
                self.new_epoch(room);
            }
            Ok(None) => self.room = None,
            Err(e) => tracing::error!(room = %self.id, error = %e, "cannot reload the room"),
        }
    }

    /// The room goes on under another epoch: what subscribers hold cannot be resumed; tell them
    /// to reset, and follow the new log from its head.
    pub(super) fn new_epoch(&mut self, room: RoomRecord) {
        let reset = ServerFrame::Reset {
            room: self.id.clone(),
            epoch: room.epoch,
            head: room.head,
        };
        self.subscribers.retain(|_, sub| {
            sub.from = sub.from.min(1);
            sub.out.send(&reset).is_ok()
        });
        self.count_subscribers();
        self.delivered = room.head;
        self.room = Some(room);
        self.unstored.clear();
    }

    /// The store no longer has the room we know: deleted (by another node), or lost (Redis
    /// restarted without its data). A lost room starts again from our projection under a new
    /// epoch, and every subscriber is told to reset (D1).
    pub(super) async fn vanished(&mut self) {
        let Some(cached) = self.room.clone() else {
            return;
        };
        let notice = NewEntry {
            author: cached.created_by.clone(),
            ts: now_ms(),
            body: EventBody::Notice {
                text: "The history of this room before this point was lost; it goes on from here."
                    .into(),
            },
        };
        let epoch = crate::random::epoch();
        match self.ctx.store.restore_room(&cached, epoch, notice).await {
            Ok(true) => {
                tracing::warn!(room = %self.id, epoch, "room log lost; restored under a new epoch")
            }
            Ok(false) => {}
            Err(e) => {
                return tracing::warn!(room = %self.id, error = %e, "cannot restore a lost room")
            }
        }
        match self.ctx.store.room(&self.id).await {
            Ok(Some(r)) => self.new_epoch(r),
            Ok(None) => {
                // Deleted: nothing more to deliver here.
                self.subscribers.clear();
                self.count_subscribers();
                self.room = None;
            }
            Err(e) => tracing::warn!(room = %self.id, error = %e, "cannot reload a restored room"),
        }
    }
}
