//! The registry of this node's room actors: it spawns an actor on first use and hands it
//! commands ([`Rooms::send`], [`Rooms::ask`]); an actor retires itself when idle, removing its
//! entry only when nobody holds its sender, so no command is lost to a stopping actor. In
//! cluster mode it also runs the node's head sweep ([`sweep_loop`]).

use super::actor;
use super::context::RoomContext;
use super::handle::RoomHandle;
use super::reply::{Changed, InviteLink, RoomReply};
use super::{Actor, Change, InviteOp, Reply, RoomCommand, RoomRequest};
use crate::domain::records::FileRecord;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{RoomId, RoomInfo, UserId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub struct Rooms {
    ctx: Arc<RoomContext>,
    next_generation: AtomicU64,
}

impl Rooms {
    pub fn new(ctx: Arc<RoomContext>) -> Rooms {
        Rooms {
            ctx,
            next_generation: AtomicU64::new(1),
        }
    }

    /// What every actor of this node shares.
    pub fn context(&self) -> &Arc<RoomContext> {
        &self.ctx
    }

    /// Send a command to the room's actor, spawning it if needed. Waits while the actor's
    /// mailbox is full (back-pressure on the sender, never on the actor). The command's reply is
    /// never lost: if no actor can take it, the reply says so.
    pub async fn send(&self, room: &RoomId, cmd: RoomCommand) {
        let refusal = if !room.is_well_formed() {
            Some(ApiError::invalid(
                "room must be r_ and 26 characters of a-z, 2-7",
            ))
        } else if self.ctx.known_missing(room) {
            Some(ApiError::not_found(format!("room {room}")))
        } else {
            None
        };
        if let Some(e) = refusal {
            if let Some(reply) = cmd.into_reply() {
                reply.fail(e);
            }
            return;
        }
        let mut cmd = Box::new(cmd);
        // An actor only leaves the map when nobody holds its sender, so a send to a handle we
        // hold cannot find it gone; the retry covers an actor that died of a panic.
        for _ in 0..2 {
            let handle = self.handle(room);
            match handle.tx.send(cmd).await {
                Ok(()) => return,
                Err(mpsc_err) => {
                    cmd = mpsc_err.0;
                    tracing::error!(%room, "room actor is gone; replacing it");
                    self.ctx
                        .rooms
                        .remove_if(room, |_, h| h.generation == handle.generation);
                }
            }
        }
        if let Some(reply) = cmd.into_reply() {
            reply.fail(ApiError::internal());
        }
    }

    /// Send a command and wait for its answer (for callers that are not sessions, like the
    /// admin API); the typed methods below are built on it.
    async fn ask(&self, room: &RoomId, request: RoomRequest) -> ApiResult<RoomReply> {
        let (reply, rx) = Reply::channel();
        self.send(room, RoomCommand::Ask(request, reply)).await;
        rx.await.unwrap_or_else(|_| Err(ApiError::internal()))
    }

    /// A membership or settings change (G2–G14), decided by the room's actor.
    pub async fn change(&self, room: &RoomId, actor: Actor, change: Change) -> ApiResult<Changed> {
        let answer = self
            .ask(room, RoomRequest::Change { actor, change })
            .await?;
        match answer {
            RoomReply::Changed(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// Delete the group and everything in it (G16).
    pub async fn delete(&self, room: &RoomId, actor: Actor) -> ApiResult<()> {
        match self.ask(room, RoomRequest::Delete { actor }).await? {
            RoomReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Make, read or revoke the group's invitation link (G14); a revocation answers no link.
    pub async fn invite(&self, room: &RoomId, actor: Actor, op: InviteOp) -> ApiResult<InviteLink> {
        match self.ask(room, RoomRequest::Invite { actor, op }).await? {
            RoomReply::Invite(link) => Ok(link),
            RoomReply::Done => Ok(InviteLink {
                room: room.clone(),
                token: None,
                url: None,
                expires_at: None,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// The room's details, as `user` may see them (G8).
    pub async fn get(&self, room: &RoomId, user: UserId) -> ApiResult<RoomInfo> {
        match self.ask(room, RoomRequest::Get { user }).await? {
            RoomReply::Room(info) => Ok(*info),
            other => Err(unexpected(other)),
        }
    }

    /// Record a file `user` uploaded into the room's folder (F1).
    pub async fn add_file(
        &self,
        room: &RoomId,
        user: UserId,
        folder: Option<u64>,
        file: FileRecord,
    ) -> ApiResult<Changed> {
        let answer = self
            .ask(room, RoomRequest::AddFile { user, folder, file })
            .await?;
        match answer {
            RoomReply::Changed(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    fn handle(&self, room: &RoomId) -> RoomHandle {
        if let Some(h) = self.ctx.rooms.get(room) {
            return h.clone();
        }
        self.ctx
            .rooms
            .entry(room.clone())
            .or_insert_with(|| {
                let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
                actor::spawn(self.ctx.clone(), room.clone(), generation)
            })
            .clone()
    }

    /// Give a command to the room's actor if this node has one, without waiting: false when it
    /// has none or its mailbox is full. For the cluster's hints (bus events, catch-ups, sweeps),
    /// which the log makes good if they are dropped; never for a command with a reply.
    pub fn try_tell(&self, room: &RoomId, cmd: RoomCommand) -> bool {
        try_tell(&self.ctx, room, cmd)
    }

    /// Let every actor go (shutdown): once the senders in flight are done, each finds its mailbox
    /// closed, finishes the appends it queued and stops.
    pub fn stop_all(&self) {
        self.ctx.rooms.clear();
    }

    /// Whether this node has an actor for `room`.
    pub fn has(&self, room: &RoomId) -> bool {
        self.ctx.rooms.contains_key(room)
    }

    /// Number of live room actors on this node.
    pub fn active(&self) -> usize {
        self.ctx.rooms.len()
    }

    /// The live actors' ids and counters (the ops sampler).
    pub fn stats(&self) -> Vec<(RoomId, Arc<crate::ops::feed::RoomStats>)> {
        self.ctx
            .rooms
            .iter()
            .map(|e| (e.key().clone(), e.value().stats.clone()))
            .collect()
    }
}

/// An actor answered a command with the answer of another: a bug, logged, not a refusal.
fn unexpected(answer: RoomReply) -> ApiError {
    tracing::error!(?answer, "room actor answered out of kind");
    ApiError::internal()
}

fn try_tell(ctx: &RoomContext, room: &RoomId, cmd: RoomCommand) -> bool {
    match ctx.rooms.get(room).map(|h| h.tx.clone()) {
        Some(h) => h.try_send(Box::new(cmd)).is_ok(),
        None => false,
    }
}

/// How often a node reads the heads of the rooms it holds, for entries the bus did not bring.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Rooms read per store call during a sweep.
const SWEEP_CHUNK: usize = 1000;

/// Pub/sub may lose a message (a subscription that broke and came back, a shard that failed
/// over); the log never does. Every `SWEEP_EVERY`, read where the log of every room this node
/// holds an actor for stands — a few pipelined reads for the whole node, instead of one read per
/// room — and hand each actor its head: one that is behind catches up (`RoomActor::swept`).
pub async fn sweep_loop(rooms: Weak<RoomContext>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(ctx) = rooms.upgrade() else { return };
        let ids: Vec<RoomId> = ctx.rooms.iter().map(|e| e.key().clone()).collect();
        for chunk in ids.chunks(SWEEP_CHUNK) {
            match ctx.store.heads(chunk).await {
                Ok(heads) => {
                    for (room, head) in chunk.iter().zip(heads) {
                        // A full mailbox skips it: the actor is busy, and the next sweep comes.
                        try_tell(&ctx, room, RoomCommand::Sweep(head));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "sweep: cannot read room heads"),
            }
        }
    }
}
