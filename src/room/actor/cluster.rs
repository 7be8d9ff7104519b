//! Cluster catch-up and reconciliation: entries the bus did not bring filled from the log, the
//! head sweep's findings, a deletion on another node, a cached state refreshed before a decision
//! that could be stale, and members who lost their permission (G13) removed.

use super::*;

impl RoomActor {
    /// Reconciliation, on every tick of an external group's actor: read its members and masters
    /// from the directory (off the actor) and have whoever lacks external permission removed —
    /// what a revocation cut short (a node that died half-way) would otherwise leave (G13).
    pub(super) fn reconcile(&self) {
        let Some(room) = self.room.as_ref().filter(|r| r.kind == RoomKind::Group) else {
            return;
        };
        let mut people: Vec<UserId> = room.members.iter().chain(&room.masters).cloned().collect();
        people.sort();
        people.dedup();
        let (ctx, id) = (self.ctx.clone(), self.id.clone());
        self.ctx.shutdown.spawn(async move {
            let lacking = match lookup::lacking_permission(&*ctx.store, &people).await {
                Ok(lacking) => lacking,
                Err(e) => return tracing::debug!(room = %id, error = %e, "reconciliation skipped"),
            };
            if lacking.is_empty() {
                return;
            }
            let tx = ctx.rooms.get(&id).map(|h| h.tx.clone());
            if let Some(tx) = tx {
                // An actor that stopped meanwhile reloads from the log when it starts again.
                let _ = tx.send(Box::new(RoomCommand::Repair(lacking))).await;
            }
        });
    }

    /// Remove members the reconciliation found without permission, counting each repair.
    pub(super) async fn repair(&mut self, lacking: Vec<(UserId, crossroom_protocol::CompanyId)>) {
        for (user, company) in lacking {
            let still = self.room.as_ref().is_some_and(|r| {
                r.members.binary_search(&user).is_ok() || r.masters.binary_search(&user).is_ok()
            });
            if !still {
                continue;
            }
            METRICS.policy_repairs.inc();
            tracing::warn!(room = %self.id, %user, "member without external permission; removing");
            let (reply, _answer) = Reply::channel();
            Box::pin(self.change(Actor::Policy(company), Change::RemoveMember(user), reply)).await;
        }
    }

    /// Another node deleted the room: nothing of it is served here from now on.
    pub(super) fn deleted_elsewhere(&mut self, notify: Option<(UserId, ServerFrame)>) {
        if self.room.take().is_some() {
            tracing::debug!(room = %self.id, "deleted on another node");
        }
        self.subscribers.clear();
        self.count_subscribers();
        if let Some((user, frame)) = notify {
            self.ctx.sessions.push_local(&user, &frame);
        }
    }

    /// Cluster mode: our copy of the room may lag what another node just committed (the bus is
    /// quick, not instant). Acceptances are safe anyway — appends are conditional on the state
    /// version — but a refusal or a change decision must stand on the current state: before
    /// refusing someone who is not in our copy, and before deciding a change, catch up from the
    /// log. Ordinary posts of members cost nothing extra.
    pub(super) async fn freshen_for(&mut self, request: &RoomRequest) {
        if !self.ctx.bus.is_cluster() {
            return;
        }
        let Some(room) = &self.room else {
            // Perhaps created elsewhere since we looked.
            self.reload().await;
            self.delivered = self.room.as_ref().map(|r| r.head).unwrap_or(0);
            return;
        };
        let stale_risk = match request.member() {
            Some(u) => {
                room.members.binary_search(u).is_err() && room.masters.binary_search(u).is_err()
            }
            None => !matches!(request, RoomRequest::Unsubscribe { .. }),
        };
        if stale_risk {
            self.catch_up().await;
        }
    }

    /// Cluster mode: pub/sub may lose a message; the log never does. The node's sweep
    /// (`bus::sweep_loop`) reads every room's head every couple of seconds; an actor whose
    /// subscribers are behind it, or on another epoch, catches up from the log.
    pub(super) async fn swept(&mut self, head: Option<crossroom_protocol::Position>) {
        let Some(room) = &self.room else { return };
        if self.subscribers.is_empty() {
            return;
        }
        match head {
            Some(h) if h.epoch == room.epoch && h.seq <= self.delivered => {}
            _ => self.catch_up().await,
        }
    }

    /// Cluster mode: deliver whatever other nodes committed that the bus did not bring.
    pub(super) async fn catch_up(&mut self) {
        if self.room.is_none() {
            return;
        }
        match self.ctx.store.room(&self.id).await {
            Ok(Some(r)) if self.room.as_ref().is_some_and(|c| c.epoch != r.epoch) => {
                self.new_epoch(r)
            }
            Ok(Some(r)) if r.head > self.delivered => self.fill(r.head).await,
            Ok(Some(_)) => {}
            Ok(None) => self.vanished().await,
            Err(e) => tracing::warn!(room = %self.id, error = %e, "catch-up failed"),
        }
    }

    /// An admission and a withdrawal of the same user's permission may race: the withdrawal's
    /// reconciliation (`policy::enforce`) may read the user's groups just before this admission
    /// committed. So once an admission commits, the actor reads each admitted user again and
    /// removes (reason `policy`) whoever no longer holds external permission, before it takes its
    /// next command: either the withdrawal sees the member, or this sees the withdrawal.
    pub(super) async fn recheck_admitted(&mut self, users: Vec<UserId>) {
        let lacking = match lookup::lacking_permission(&*self.ctx.store, &users).await {
            Ok(lacking) => lacking,
            Err(e) => {
                // The periodic reconciliation looks again.
                return tracing::warn!(room = %self.id, error = %e, "cannot re-check admissions");
            }
        };
        for (user, company) in lacking {
            tracing::info!(room = %self.id, %user, "admitted while losing permission or deleted; removing");
            let (reply, _answer) = Reply::channel();
            self.change(Actor::Policy(company), Change::RemoveMember(user), reply)
                .await;
        }
    }
}
