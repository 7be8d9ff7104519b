//! The room actor: one task per active room on this node.
//!
//! It owns the room's state (members, masters, feature switches, epoch, committed head) and its
//! local subscribers. It decides each command with [`super::rules`], queues appends to the store
//! without waiting for them, and when each commit lands — in queue order — acknowledges it and
//! fans the event out, encoded once, with `try_send` into each subscriber's bounded queue. It
//! never awaits a client.
//!
//! It stops when it has had no subscriber and no work for `room_idle_secs`, removing itself from
//! the hub only when nobody holds its sender, so no command is ever lost to a stopping actor.

use super::{now_ms, rules, RoomCommand};
use crate::connection::outbound::SharedEvent;
use crate::connection::{Reply, SessionId};
use crate::error::ApiError;
use crate::hub::Hub;
use crate::store::{Appended, NewEntry, RoomRecord, StoreResult};
use crossroom_protocol::{EventBody, Position, RoomId, ServerFrame, UserId};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The hub's handle on a room actor.
#[derive(Clone)]
pub struct RoomHandle {
    pub tx: mpsc::Sender<RoomCommand>,
    /// Tells this actor from a later one for the same room.
    pub generation: u64,
}

/// Spawn the actor for `id`; it loads its state itself, so spawning never waits.
pub fn spawn(hub: Arc<Hub>, id: RoomId, generation: u64) -> RoomHandle {
    let (tx, rx) = mpsc::channel(hub.limits.room_mailbox);
    let actor = RoomActor {
        hub,
        id,
        generation,
        rx,
        room: None,
        subscribers: HashMap::new(),
        pending: FuturesOrdered::new(),
        last_activity: Instant::now(),
    };
    tokio::spawn(actor.run());
    RoomHandle { tx, generation }
}

struct Subscriber {
    user: UserId,
    reply_to: crate::connection::outbound::Outbound,
}

/// An append in flight with the reply that waits for it.
type Pending = futures_util::future::BoxFuture<'static, (StoreResult<Vec<Appended>>, Reply)>;

struct RoomActor {
    hub: Arc<Hub>,
    id: RoomId,
    generation: u64,
    rx: mpsc::Receiver<RoomCommand>,
    /// `None` when the room does not exist (every command answers not found).
    room: Option<RoomRecord>,
    subscribers: HashMap<SessionId, Subscriber>,
    /// Appends queued in the store, in commit order.
    pending: FuturesOrdered<Pending>,
    last_activity: Instant,
}

impl RoomActor {
    async fn run(mut self) {
        match self.hub.store.room(&self.id).await {
            Ok(room) => self.room = room,
            Err(e) => tracing::error!(room = %self.id, error = %e, "cannot load room"),
        }
        // A room that does not exist keeps no state worth keeping: retire within a second, so
        // requests for made-up room ids cannot pile up actors.
        let idle = if self.room.is_some() {
            Duration::from_secs(self.hub.limits.room_idle_secs.max(1))
        } else {
            Duration::from_secs(1)
        };
        let mut tick = tokio::time::interval(idle);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some((result, reply)) = self.pending.next(), if !self.pending.is_empty() => {
                    self.committed(result, reply);
                }
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => {
                        self.last_activity = Instant::now();
                        self.handle(cmd).await;
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if self.last_activity.elapsed() >= idle && self.retire() {
                        break;
                    }
                }
            }
        }
        // Finish what was queued: those posts are stored; their senders deserve the ack.
        while let Some((result, reply)) = self.pending.next().await {
            self.committed(result, reply);
        }
        tracing::debug!(room = %self.id, "room actor stopped");
    }

    /// Leave the hub if idle and nobody can still reach us.
    fn retire(&self) -> bool {
        if !self.subscribers.is_empty() || !self.pending.is_empty() {
            return false;
        }
        self.hub
            .rooms
            .remove_if(&self.id, |_, h| {
                h.generation == self.generation
                    // Only the hub's own copy exists: no sender is mid-send.
                    && h.tx.strong_count() == 1
                    // Nothing waits in the mailbox.
                    && h.tx.capacity() == h.tx.max_capacity()
            })
            .is_some()
    }

    async fn handle(&mut self, cmd: RoomCommand) {
        let Some(room) = &self.room else {
            let reply = match cmd {
                RoomCommand::Unsubscribe { reply, .. } => reply,
                RoomCommand::Subscribe { reply, .. }
                | RoomCommand::Post { reply, .. }
                | RoomCommand::History { reply, .. }
                | RoomCommand::MarkRead { reply, .. }
                | RoomCommand::Typing { reply, .. } => Some(reply),
            };
            if let Some(r) = reply {
                r.fail(ApiError::not_found(format!("room {}", self.id)));
            }
            return;
        };
        match cmd {
            RoomCommand::Subscribe {
                session,
                user,
                since,
                reply,
            } => {
                if let Err(e) = rules::check_member(room, &user) {
                    return reply.fail(e);
                }
                self.subscribe(session, user, since, reply).await;
            }
            RoomCommand::Unsubscribe { session, reply } => {
                self.subscribers.remove(&session);
                if let Some(r) = reply {
                    r.send(ServerFrame::Ok { id: r.id });
                }
            }
            RoomCommand::Post {
                user,
                client_msg_id,
                text,
                reply,
            } => {
                if let Err(e) = rules::check_post(room, &user, &client_msg_id, &text) {
                    return reply.fail(e);
                }
                let entry = NewEntry {
                    author: user,
                    ts: now_ms(),
                    body: EventBody::Message {
                        client_msg_id,
                        text,
                    },
                };
                match self.hub.store.append(&self.id, vec![entry]).await {
                    Ok(ticket) => self
                        .pending
                        .push_back(ticket.map(move |r| (r, reply)).boxed()),
                    Err(e) => reply.fail(e.into()),
                }
            }
            RoomCommand::History {
                user,
                before,
                limit,
                reply,
            } => {
                if let Err(e) = rules::check_member(room, &user) {
                    return reply.fail(e);
                }
                let max = self.hub.limits.max_history_page;
                let limit = limit.unwrap_or(50).clamp(1, max) as usize;
                // Never past what this member was entitled to at the time of asking (D4).
                let before = before.unwrap_or(u64::MAX).min(room.head + 1);
                let store = self.hub.store.clone();
                let (id, epoch) = (self.id.clone(), room.epoch);
                tokio::spawn(async move {
                    match store.read_before(&id, before, limit + 1).await {
                        Ok(mut events) => {
                            let has_more = events.len() > limit;
                            if has_more {
                                events.remove(0);
                            }
                            reply.send(ServerFrame::History {
                                id: reply.id,
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
            RoomCommand::MarkRead { user, seq, reply } => {
                if let Err(e) = rules::check_member(room, &user) {
                    return reply.fail(e);
                }
                let seq = seq.min(room.head);
                let store = self.hub.store.clone();
                let id = self.id.clone();
                tokio::spawn(async move {
                    match store.set_read_marker(&id, &user, seq).await {
                        Ok(()) => reply.send(ServerFrame::Ok { id: reply.id }),
                        Err(e) => reply.fail(e.into()),
                    }
                });
            }
            RoomCommand::Typing {
                user,
                session,
                reply,
            } => {
                if let Err(e) = rules::check_member(room, &user) {
                    return reply.fail(e);
                }
                let frame = ServerFrame::Typing {
                    room: self.id.clone(),
                    user,
                };
                // Ephemeral: a full queue just misses it, and is closed as a slow consumer.
                self.subscribers
                    .retain(|s, sub| *s == session || sub.reply_to.send(&frame).is_ok());
                reply.send(ServerFrame::Ok { id: reply.id });
            }
        }
    }

    /// Subscribe after replaying what the client missed, or telling it to reset (D1). The
    /// replay, the `subscribed` reply and later live events go into the same queue in that
    /// order, because only this actor writes room events into it.
    async fn subscribe(
        &mut self,
        session: SessionId,
        user: UserId,
        since: Option<Position>,
        reply: Reply,
    ) {
        let Some(room) = &self.room else { return };
        let (epoch, head) = (room.epoch, room.head);
        let limits = &self.hub.limits;
        let out = reply.out.clone();
        let mut replayed = 0u64;
        if let Some(pos) = since {
            let resumable = pos.epoch == epoch
                && pos.seq <= head
                && head - pos.seq <= u64::from(limits.max_replay);
            let mut replay = Vec::new();
            if resumable && pos.seq < head {
                match self
                    .hub
                    .store
                    .read_range(&self.id, pos.seq, head, limits.max_replay as usize)
                    .await
                {
                    Ok(events) => replay = events,
                    Err(e) => return reply.fail(e.into()),
                }
            }
            let complete = replay.len() as u64 == head - pos.seq.min(head);
            let messages: Vec<_> = replay
                .into_iter()
                .filter_map(|e| SharedEvent::new(e).message(out.encoding()))
                .collect();
            let bytes: usize = messages
                .iter()
                .map(crate::connection::outbound::OutboundReceiver::len_of)
                .sum();
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
                reply_to: out,
            },
        );
        reply.send(ServerFrame::Subscribed {
            id: reply.id,
            room: self.id.clone(),
            epoch,
            head,
            replayed,
        });
    }

    /// An append landed: acknowledge it, then deliver it to every subscriber.
    fn committed(&mut self, result: StoreResult<Vec<Appended>>, reply: Reply) {
        let appended = match result {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(room = %self.id, error = %e, "append failed");
                return reply.fail(e.into());
            }
        };
        for a in appended {
            let ev = &a.event;
            reply.send(ServerFrame::Posted {
                id: reply.id,
                room: ev.room.clone(),
                epoch: ev.epoch,
                seq: ev.seq,
                ts: ev.ts,
                duplicate: a.duplicate,
            });
            if a.duplicate {
                continue;
            }
            if let Some(room) = &mut self.room {
                room.head = room.head.max(ev.seq);
            }
            self.fan_out(a.event);
        }
    }

    /// Deliver one event to every local subscriber; drop those whose session is gone or slow.
    fn fan_out(&mut self, event: crossroom_protocol::Event) {
        let shared = SharedEvent::new(event);
        self.subscribers.retain(|_, sub| {
            let ok = sub.reply_to.send_event(&shared).is_ok();
            if !ok {
                tracing::debug!(user = %sub.user, "dropping subscriber: session closed or slow");
            }
            ok
        });
    }
}
