//! The room actor: one task per active room on this node.
//!
//! It owns the room's state (members, masters, feature switches, epoch, committed head) and its
//! local subscribers. It decides each command with [`crate::domain::rules`], applies the decision to its
//! own state at once (so the next command is decided against it), queues the append in the store
//! without waiting, and when each commit lands — in queue order — acknowledges it. The event,
//! encoded once, goes with `try_send` into each subscriber's bounded queue. It never awaits a
//! client.
//!
//! When is an entry delivered? With a store that nodes share (Redis), when it commits: the store
//! numbers it. With the embedded store this process is the room's only writer, so the actor
//! numbers what it queues and delivers it at once — live delivery never waits for the disk —
//! while `posted` and `changed` still wait for the commit (D2). An entry that was delivered and
//! then not stored as delivered moves the room to a new epoch, and every subscriber resets (D1);
//! so does an unclean stop, for every room its run wrote ([`crate::store::RoomLogStore::sole_writer`]).
//! Membership changes are still delivered at their commit: nobody is cut off, or let in, by a
//! line that might not be stored.
//!
//! Removal is a line in the log (D4): when a `member_removed` entry at seq r commits, the removed
//! user's subscriptions get r and are dropped before anything after r is delivered, and every
//! session of theirs is told `removed`.
//!
//! It stops when it has had no subscriber and no work for `room_idle_secs`, removing itself from
//! the registry only when nobody holds its sender, so no command is ever lost to a stopping actor.

use super::context::RoomContext;
use super::handle::RoomHandle;
use super::reply::{Changed, InviteLink, RoomReply};
use super::{info, lookup, query, InviteOp, Reply, RoomCommand};
use crate::clock::now_ms;
use crate::domain::features;
use crate::domain::projection;
use crate::domain::rules::{self, Actor, Change, Decision};
use crate::error::ApiError;
use crate::metrics::METRICS;
use crate::ops::feed::RoomStats;
use crate::outbound::SessionId;
use crate::outbound::{Outbound, OutboundReceiver, SharedEvent};
use crate::store::{
    moves_version, Appended, FileRecord, Invite, NewAudit, NewEntry, RoomRecord, StoreError,
    StoreResult,
};
use crossroom_protocol::{
    Action, ErrorCode, Event, EventBody, Item, LeftOut, Position, RemovalReason, RoomId, RoomKind,
    ServerFrame, UserId,
};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Spawn the actor for `id`; it loads its state itself, so spawning never waits.
pub fn spawn(ctx: Arc<RoomContext>, id: RoomId, generation: u64) -> RoomHandle {
    let (tx, rx) = mpsc::channel(ctx.limits.room_mailbox);
    let stats = Arc::new(RoomStats::default());
    let span = tracing::info_span!("room", room = %id);
    ctx.bus.subscribe(&id);
    let actor = RoomActor {
        ctx,
        delivered: 0,
        stats: stats.clone(),
        id,
        generation,
        rx,
        room: None,
        subscribers: HashMap::new(),
        pending: FuturesOrdered::new(),
        early: false,
        unnumbered: 0,
        unstored: VecDeque::new(),
        tail_lost: false,
        redeciding: 0,
        pending_on: BTreeMap::new(),
        conflicted: Vec::new(),
        resolving: false,
        last_activity: Instant::now(),
        typed_at: HashMap::new(),
        presence_sent: BTreeSet::new(),
        presence_mark: (u64::MAX, 0),
        presence_wanted: false,
    };
    let shutdown = actor.ctx.shutdown.clone();
    shutdown.spawn(actor.run().instrument(span));
    RoomHandle {
        tx,
        generation,
        stats,
    }
}

struct Subscriber {
    user: UserId,
    out: Outbound,
    /// The first seq this subscriber may receive: its user's join seq (`u64::MAX` while the
    /// join is not committed yet).
    from: u64,
    /// Whether it asked for presence (M3).
    presence: bool,
}

/// How to acknowledge an append once it commits.
enum Ack {
    /// A post: `posted`.
    Posted(Reply),
    /// A change: `changed`, with who was left out, and the file blobs the change made garbage
    /// (removed from disk once the change is committed).
    Changed(Reply, Vec<LeftOut>, Vec<String>),
    /// A feature action: `changed`; the blobs it made garbage; who gets a task notice (T1).
    Acted(Reply, Vec<String>, Vec<UserId>),
}

impl Ack {
    fn into_reply(self) -> Reply {
        match self {
            Ack::Posted(r) | Ack::Changed(r, ..) | Ack::Acted(r, ..) => r,
        }
    }
}

/// What to decide again when an append finds the room's state moved (another node changed it
/// after our decision): the command, without its reply (which waits in the [`Ack`]).
enum Redo {
    Post(PostRequest),
    Change {
        actor: Actor,
        change: Change,
    },
    Act {
        user: UserId,
        action: Action,
    },
    AddFile {
        user: UserId,
        folder: Option<u64>,
        file: FileRecord,
    },
}

/// A post as it was asked for.
struct PostRequest {
    user: UserId,
    client_msg_id: String,
    text: String,
    attachments: Vec<String>,
    mentions: Vec<UserId>,
}

impl Redo {
    fn command(self, reply: Reply) -> RoomCommand {
        match self {
            Redo::Post(PostRequest {
                user,
                client_msg_id,
                text,
                attachments,
                mentions,
            }) => RoomCommand::Post {
                user,
                client_msg_id,
                text,
                attachments,
                mentions,
                reply,
            },
            Redo::Change { actor, change } => RoomCommand::Change {
                actor,
                change,
                reply,
            },
            Redo::Act { user, action } => RoomCommand::Act {
                user,
                action,
                reply,
            },
            Redo::AddFile { user, folder, file } => RoomCommand::AddFile {
                user,
                folder,
                file,
                reply,
            },
        }
    }
}

/// An append in flight with the acknowledgement that waits for it.
type Pending = futures_util::future::BoxFuture<'static, Committed>;

/// An append's outcome, with what was queued beside it.
type Committed = (StoreResult<Vec<Appended>>, Queued);

/// What waits for an append's commit: its acknowledgement, what to decide again on a conflict,
/// how many conflicts that decision has met already, the state version it was decided on, and
/// — when it was delivered before its commit — the seqs the actor gave its entries.
struct Queued {
    ack: Ack,
    redo: Redo,
    attempt: u32,
    version: u64,
    numbered: Option<std::ops::Range<u64>>,
}

/// How many times one command is decided again after conflicts before it is refused as
/// `unavailable` (the room is changing too fast): a bounded loop, not an endless one.
const MAX_REDECISIONS: u32 = 16;

struct RoomActor {
    ctx: Arc<RoomContext>,
    id: RoomId,
    generation: u64,
    stats: Arc<RoomStats>,
    rx: mpsc::Receiver<Box<RoomCommand>>,
    /// `None` when the room does not exist (every command answers not found).
    room: Option<RoomRecord>,
    /// The last seq this actor delivered to its subscribers and applied to `room`: events come
    /// in seq order, and a gap (an entry another node committed that the bus did not bring
    /// yet) is filled from the log first.
    delivered: u64,
    subscribers: HashMap<SessionId, Subscriber>,
    /// Appends queued in the store, in commit order.
    pending: FuturesOrdered<Pending>,
    /// Whether entries are numbered here and delivered before their commit: with a store that
    /// is this room's sole writer, once a commit of ours has marked the room in this run.
    early: bool,
    /// Appends in flight that the store numbers (delivered at their commit): none may be, for
    /// the actor to number what follows.
    unnumbered: usize,
    /// Entries delivered that have not committed yet, in seq order.
    unstored: VecDeque<Event>,
    /// An entry delivered before its commit was not stored as delivered: once nothing is in
    /// flight, the room moves to a new epoch ([`RoomActor::renumber`]).
    tail_lost: bool,
    /// Conflicts met by the command being decided again right now (0 for a fresh command);
    /// `append` hands it to the commit it queues.
    redeciding: u32,
    /// How many of `pending` were decided on each state version. One decided on an older
    /// version than the room's now will meet a conflict and be decided again, behind anything
    /// queued meanwhile: a fresh command waits for those first (D3 for each sender).
    pending_on: BTreeMap<u64, usize>,
    /// Commands whose appends met a conflict, in the order they were asked for, waiting to be
    /// decided again ([`RoomActor::decide_again`]), and whether that is under way.
    conflicted: Vec<(Ack, Redo, u32)>,
    resolving: bool,
    last_activity: Instant,
    /// When each user's last relayed `typing` was (M3): at most one per user per second.
    typed_at: HashMap<UserId, Instant>,
    /// The online members as the subscribers were last told (M3), and the presence generation
    /// and head that was computed at: nothing moved, nothing to compute.
    presence_sent: BTreeSet<UserId>,
    presence_mark: (u64, u64),
    /// Whether some subscriber may want presence (set when one asks; cleared by the next tick
    /// that finds none): the loop does not scan the subscribers on every turn.
    presence_wanted: bool,
}

/// The longest an invitation link may be made to last (G14): a year.
const MAX_INVITE_SECS: u64 = 365 * 86_400;

/// How often an actor with subscribers looks at who is online (M3): the most presence updates
/// a room pushes.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// A user's `typing` is relayed at most once per this.
const TYPING_EVERY: Duration = Duration::from_secs(1);

impl RoomActor {
    async fn run(mut self) {
        // The loop's await points are boxed: the futures of loading, handling a command and
        // finishing a commit are large (kilobytes) and live only while they run, instead of
        // inside every idle room's task.
        Box::pin(self.reload()).await;
        self.delivered = self.room.as_ref().map(|r| r.head).unwrap_or(0);
        // A room that does not exist keeps no state worth keeping: retire within a second, so
        // requests for made-up room ids cannot pile up actors.
        let idle = if self.room.is_some() {
            Duration::from_secs(self.ctx.limits.room_idle_secs.max(1))
        } else {
            Duration::from_secs(1)
        };
        let mut tick = tokio::time::interval(idle);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut presence_tick = tokio::time::interval(PRESENCE_EVERY);
        presence_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = presence_tick.tick(), if self.presence_wanted => {
                    self.push_presence();
                }
                Some(done) = self.pending.next(), if !self.pending.is_empty() => {
                    Box::pin(self.committed(done)).await;
                }
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => {
                        self.last_activity = Instant::now();
                        Box::pin(self.handle(*cmd)).await;
                        // A room that does not exist keeps no actor past its answers.
                        if self.room.is_none() && self.retire() {
                            break;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if self.tail_lost && self.pending.is_empty() {
                        Box::pin(self.renumber()).await;
                    }
                    if self.last_activity.elapsed() >= idle && self.retire() {
                        break;
                    }
                    self.reconcile();
                }
            }
        }
        Box::pin(self.drain_pending()).await;
        self.ctx.bus.unsubscribe(&self.id);
        tracing::debug!(room = %self.id, "room actor stopped");
    }

    /// Take the room's state from the store (first load, or after a failed or refused append).
    async fn reload(&mut self) {
        match self.ctx.store.room(&self.id).await {
            Ok(Some(room)) if self.room.as_ref().is_some_and(|c| c.epoch != room.epoch) => {
                self.new_epoch(room)
            }
            Ok(Some(room)) => self.room = Some(room),
            Ok(None) if self.room.is_some() => Box::pin(self.vanished()).await,
            Ok(None) => self.ctx.found_missing(&self.id),
            Err(e) => tracing::error!(room = %self.id, error = %e, "cannot load room"),
        }
    }

    /// Finish what was queued: those entries are stored; their senders deserve the ack.
    async fn drain_pending(&mut self) {
        while let Some(done) = self.pending.next().await {
            self.committed(done).await;
        }
    }

    /// Decide again, in the order they were asked for, the commands whose appends met a
    /// conflict (D3 for each sender). What was queued after the first one stood on a state no
    /// newer: every append in flight resolves first (those that conflict too join the list),
    /// then the state is learnt once and the list is decided again on it. Decided on one
    /// version and queued in order, they commit in order or conflict together.
    async fn decide_again(&mut self) {
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
            self.handle(redo.command(ack.into_reply())).await;
        }
        self.redeciding = 0;
    }

    /// Whether an append in flight was decided on another state version than the room's now
    /// (another node's change came in since): it is bound to be decided again.
    fn stale_pending(&self) -> bool {
        let now = self.room.as_ref().map(|r| r.version);
        self.pending_on.keys().any(|v| Some(*v) != now)
    }

    /// Leave the registry if idle and nobody can still reach us.
    fn retire(&self) -> bool {
        // A lost tail keeps the actor until the room moved to a new epoch: a fresh actor would
        // append under the old one.
        if !self.subscribers.is_empty() || !self.pending.is_empty() || self.tail_lost {
            return false;
        }
        self.ctx.retire(&self.id, self.generation)
    }

    fn not_found(&self) -> ApiError {
        ApiError::not_found(format!("room {}", self.id))
    }

    async fn handle(&mut self, cmd: RoomCommand) {
        match cmd {
            RoomCommand::Remote(event) => return self.accept(event, false).await,
            RoomCommand::RemoteTyping { user } => return self.remote_typing(user),
            RoomCommand::CatchUp => return self.catch_up().await,
            RoomCommand::Sweep(head) => return self.swept(head).await,
            RoomCommand::Deleted { notify } => return self.deleted_elsewhere(notify),
            RoomCommand::Repair(lacking) => return self.repair(lacking).await,
            _ => {}
        }
        self.freshen_for(&cmd).await;
        if cmd.decides() && !self.epoch_writable().await {
            if let Some(r) = cmd.into_reply() {
                r.fail(ApiError::new(
                    crossroom_protocol::ErrorCode::Unavailable,
                    "the room cannot be written now; retry",
                ));
            }
            return;
        }
        if self.redeciding == 0 && cmd.decides() && self.stale_pending() {
            // Decided now, this command would commit before those are decided again.
            self.drain_pending().await;
        }
        let Some(room) = &self.room else {
            if let Some(r) = cmd.into_reply() {
                r.fail(self.not_found());
            }
            return;
        };
        match cmd {
            RoomCommand::Subscribe {
                session,
                user,
                since,
                presence,
                reply,
            } => {
                if let Err(e) = rules::check_member(room, &user) {
                    return reply.fail(e);
                }
                self.subscribe(session, user, since, reply).await;
                if presence {
                    self.presence_snapshot(session);
                }
            }
            RoomCommand::Unsubscribe { session, reply } => {
                self.subscribers.remove(&session);
                self.count_subscribers();
                if let Some(r) = reply {
                    r.send(RoomReply::Done);
                }
            }
            RoomCommand::Post {
                user,
                client_msg_id,
                text,
                attachments,
                mentions,
                reply,
            } => {
                let req = PostRequest {
                    user,
                    client_msg_id,
                    text,
                    attachments,
                    mentions,
                };
                self.post(req, reply).await;
            }
            RoomCommand::History {
                user,
                before,
                limit,
                reply,
            } => self.history(user, before, limit, reply),
            RoomCommand::MarkRead { user, seq, reply } => self.mark_read(user, seq, reply),
            RoomCommand::Typing {
                user,
                session,
                reply,
            } => self.typing(user, session, reply),
            RoomCommand::Get { user, reply } => self.get(user, reply),
            RoomCommand::Change {
                actor,
                change,
                reply,
            } => self.change(actor, change, reply).await,
            RoomCommand::Delete { actor, reply } => self.delete(actor, reply).await,
            RoomCommand::Invite { actor, op, reply } => self.invite(actor, op, reply).await,
            RoomCommand::Act {
                user,
                action,
                reply,
            } => self.act(user, action, reply).await,
            RoomCommand::Query { user, query, reply } => self.query(user, query, reply),
            RoomCommand::AddFile {
                user,
                folder,
                file,
                reply,
            } => self.add_file(user, folder, file, reply).await,
            RoomCommand::Remote(_)
            | RoomCommand::RemoteTyping { .. }
            | RoomCommand::CatchUp
            | RoomCommand::Sweep(_)
            | RoomCommand::Repair(_)
            | RoomCommand::Deleted { .. } => {}
        }
    }

    /// Reconciliation, on every tick of an external group's actor: read its members and masters
    /// from the directory (off the actor) and have whoever lacks external permission removed —
    /// what a revocation cut short (a node that died half-way) would otherwise leave (G13).
    fn reconcile(&self) {
        let Some(room) = self.room.as_ref().filter(|r| r.kind == RoomKind::Group) else {
            return;
        };
        let mut people: Vec<UserId> = room.members.iter().chain(&room.masters).cloned().collect();
        people.sort();
        people.dedup();
        let (ctx, id) = (self.ctx.clone(), self.id.clone());
        self.ctx.shutdown.spawn(async move {
            let lacking: Vec<(UserId, crossroom_protocol::CompanyId)> =
                match lookup::people(&*ctx.store, &people).await {
                    Ok(found) => found
                        .into_values()
                        .filter(|p| !p.permitted)
                        .map(|p| (p.user.id, p.user.company))
                        .collect(),
                    Err(e) => {
                        return tracing::debug!(room = %id, error = %e, "reconciliation skipped")
                    }
                };
            if lacking.is_empty() {
                return;
            }
            let tx = ctx.rooms.get(&id).map(|h| h.tx.clone());
            if let Some(tx) = tx {
                let _ = tx.send(Box::new(RoomCommand::Repair(lacking))).await;
            }
        });
    }

    /// Remove members the reconciliation found without permission, counting each repair.
    async fn repair(&mut self, lacking: Vec<(UserId, crossroom_protocol::CompanyId)>) {
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
    fn deleted_elsewhere(&mut self, notify: Option<(UserId, ServerFrame)>) {
        if self.room.take().is_some() {
            tracing::debug!(room = %self.id, "deleted on another node");
        }
        self.subscribers.clear();
        self.count_subscribers();
        if let Some((user, frame)) = notify {
            self.ctx.sessions.push_local(&user, &frame);
        }
    }

    /// The room, for a command that found it existing.
    /// The last seq the log holds (the head, but for entries delivered and not yet committed).
    fn stored_head(&self) -> u64 {
        match (self.unstored.front(), &self.room) {
            (Some(e), _) => e.seq - 1,
            (None, Some(r)) => r.head,
            (None, None) => 0,
        }
    }

    fn existing(&self) -> &RoomRecord {
        self.room
            .as_ref()
            .expect("handled only while the room exists")
    }

    /// A message (M1): checked, its attachments resolved, appended; `posted` after the commit.
    async fn post(&mut self, req: PostRequest, reply: Reply) {
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
        self.append(vec![entry], Ack::Posted(reply), Redo::Post(req))
            .await;
    }

    /// Whether the next entry that does not move the state version is numbered here and
    /// delivered before its commit: a sole writer whose room this run marked, nothing in flight
    /// that the store numbers, no lost tail, and enough subscribers for the retry check each
    /// post then costs to pay (`limits.early_delivery_subscribers`).
    fn numbers_now(&self) -> bool {
        self.early
            && !self.tail_lost
            && self.unnumbered == 0
            && self.subscribers.len() >= self.ctx.limits.early_delivery_subscribers
    }

    /// The stored entry of an earlier post by `user` with this client id: one still in flight
    /// is waited for first, then the log is asked.
    async fn retried(&mut self, user: &UserId, cmid: &str) -> StoreResult<Option<Event>> {
        let same = |e: &Event| {
            e.author == *user
                && matches!(&e.body, EventBody::Message { client_msg_id, .. } if client_msg_id == cmid)
        };
        if self.unstored.iter().any(same) {
            self.drain_pending().await;
        }
        self.ctx.store.posted_message(&self.id, user, cmid).await
    }

    /// A page of the log: only what this member was entitled to at the time of asking, from
    /// their join up to the head (D4). Read off the actor.
    fn history(&self, user: UserId, before: Option<u64>, limit: Option<u32>, reply: Reply) {
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
                    let has_more = events.len() > limit;
                    if has_more {
                        events.remove(0);
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
    fn mark_read(&self, user: UserId, seq: u64, reply: Reply) {
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

    /// Relay "typing" to the other subscribers, here and on the other nodes (M3), at most once
    /// per user per second (repeats are acknowledged and dropped). Ephemeral: a full queue just
    /// misses it, and is closed as a slow consumer.
    fn typing(&mut self, user: UserId, session: SessionId, reply: Reply) {
        if let Err(e) = rules::check_member(self.existing(), &user) {
            return reply.fail(e);
        }
        reply.send(RoomReply::Done);
        let now = Instant::now();
        if self
            .typed_at
            .get(&user)
            .is_some_and(|t| now.duration_since(*t) < TYPING_EVERY)
        {
            return;
        }
        if self.typed_at.len() >= 1024 {
            self.typed_at
                .retain(|_, t| now.duration_since(*t) < TYPING_EVERY);
        }
        self.typed_at.insert(user.clone(), now);
        self.ctx.bus.typing(&self.id, &user);
        let frame = ServerFrame::Typing {
            room: self.id.clone(),
            user,
        };
        self.subscribers
            .retain(|s, sub| *s == session || sub.out.send(&frame).is_ok());
    }

    /// Another node's member is typing: to every subscriber here, if they are a member in our
    /// view too (a removal we applied stops it, D4).
    fn remote_typing(&mut self, user: UserId) {
        let Some(room) = &self.room else { return };
        if rules::check_member(room, &user).is_err() {
            return;
        }
        let frame = ServerFrame::Typing {
            room: self.id.clone(),
            user,
        };
        self.subscribers
            .retain(|_, sub| sub.out.send(&frame).is_ok());
    }

    /// The room's members with a live session on any node.
    fn online_members(&self) -> BTreeSet<UserId> {
        let presence = self.ctx.sessions.presence();
        self.room
            .iter()
            .flat_map(|r| r.members.iter())
            .filter(|m| presence.is_online(m))
            .cloned()
            .collect()
    }

    /// Tell the subscribers who came online and who went offline since they were last told
    /// (M3); nothing when nothing moved. Called at most once per [`PRESENCE_EVERY`].
    fn push_presence(&mut self) {
        self.presence_wanted = self.subscribers.values().any(|s| s.presence);
        if !self.presence_wanted {
            return;
        }
        let Some(head) = self.room.as_ref().map(|r| r.head) else {
            return;
        };
        let mark = (self.ctx.sessions.presence().generation(), head);
        if mark == self.presence_mark {
            return;
        }
        self.presence_mark = mark;
        let now = self.online_members();
        let online: Vec<UserId> = now.difference(&self.presence_sent).cloned().collect();
        let offline: Vec<UserId> = self.presence_sent.difference(&now).cloned().collect();
        self.presence_sent = now;
        if online.is_empty() && offline.is_empty() {
            return;
        }
        let frame = ServerFrame::Presence {
            room: self.id.clone(),
            online,
            offline,
            snapshot: false,
        };
        self.subscribers
            .retain(|_, sub| !sub.presence || sub.out.send(&frame).is_ok());
    }

    /// The room's details: members and masters see the group; to anyone else it does not
    /// exist (G8).
    fn get(&self, user: UserId, reply: Reply) {
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
    fn query(&self, user: UserId, query: crossroom_protocol::Query, reply: Reply) {
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

    /// Cluster mode: our copy of the room may lag what another node just committed (the bus is
    /// quick, not instant). Acceptances are safe anyway — appends are conditional on the state
    /// version — but a refusal or a change decision must stand on the current state: before
    /// refusing someone who is not in our copy, and before deciding a change, catch up from the
    /// log. Ordinary posts of members cost nothing extra.
    async fn freshen_for(&mut self, cmd: &RoomCommand) {
        if !self.ctx.bus.is_cluster() {
            return;
        }
        let Some(room) = &self.room else {
            // Perhaps created elsewhere since we looked.
            self.reload().await;
            self.delivered = self.room.as_ref().map(|r| r.head).unwrap_or(0);
            return;
        };
        let outsider = |u: &UserId| {
            room.members.binary_search(u).is_err() && room.masters.binary_search(u).is_err()
        };
        let stale_risk = match cmd {
            RoomCommand::Change { .. }
            | RoomCommand::Delete { .. }
            | RoomCommand::Invite { .. } => true,
            RoomCommand::Subscribe { user, .. }
            | RoomCommand::Post { user, .. }
            | RoomCommand::History { user, .. }
            | RoomCommand::MarkRead { user, .. }
            | RoomCommand::Typing { user, .. }
            | RoomCommand::Get { user, .. }
            | RoomCommand::Act { user, .. }
            | RoomCommand::Query { user, .. }
            | RoomCommand::AddFile { user, .. } => outsider(user),
            RoomCommand::Unsubscribe { .. }
            | RoomCommand::Remote(_)
            | RoomCommand::RemoteTyping { .. }
            | RoomCommand::CatchUp
            | RoomCommand::Sweep(_)
            | RoomCommand::Repair(_)
            | RoomCommand::Deleted { .. } => false,
        };
        if stale_risk {
            self.catch_up().await;
        }
    }

    /// Take one committed entry in seq order: fill a gap before it from the log, skip what was
    /// seen already (our own commits come back over the bus too), apply entries made elsewhere
    /// to our copy of the room (ours were applied when decided), deliver.
    async fn accept(&mut self, event: Event, own: bool) {
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

    /// Deliver what the log has after `delivered`, up to `upto`.
    async fn fill(&mut self, upto: u64) {
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

    /// Cluster mode: pub/sub may lose a message; the log never does. The node's sweep
    /// (`bus::sweep_loop`) reads every room's head every couple of seconds; an actor whose
    /// subscribers are behind it, or on another epoch, catches up from the log.
    async fn swept(&mut self, head: Option<crossroom_protocol::Position>) {
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
    async fn catch_up(&mut self) {
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

    /// The store no longer has the room we know: deleted (by another node), or lost (Redis
    /// restarted without its data). A lost room starts again from our projection under a new
    /// epoch, and every subscriber is told to reset (D1).
    async fn vanished(&mut self) {
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

    /// The room goes on under another epoch: what subscribers hold cannot be resumed; tell them
    /// to reset, and follow the new log from its head.
    fn new_epoch(&mut self, room: RoomRecord) {
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

    /// A feature action (N1, E1, T1, F1, recall): decided against the items as committed.
    async fn act(&mut self, user: UserId, action: Action, reply: Reply) {
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        if let Err(e) = rules::check_member(room, &user) {
            return reply.fail(e);
        }
        // Item decisions read committed item state: let what is queued land first.
        self.drain_pending().await;
        // What landed may have found the room deleted (on another node): answer, never drop.
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        let master = room.masters.binary_search(&user).is_ok();
        let ctx = match lookup::feature_context(&*self.ctx.store, room, &user, &action).await {
            Ok(c) => c,
            Err(e) => return reply.fail(e),
        };
        let entries = match features::decide(room, &user, master, &action, &ctx) {
            Ok(e) => e,
            Err(e) => return reply.fail(e),
        };
        if entries.is_empty() {
            return reply.send(RoomReply::Changed(Changed {
                room: self.id.clone(),
                epoch: room.epoch,
                seq: room.head,
                left_out: Vec::new(),
            }));
        }
        // Only a purge needs the whole tree, to know which file bytes go with it.
        let items = if matches!(action, Action::Purge { .. }) {
            match self.ctx.store.items(&self.id).await {
                Ok(items) => items,
                Err(e) => return reply.fail(e.into()),
            }
        } else {
            Vec::new()
        };
        let garbage = garbage_of(&action, &ctx, items);
        let notify = task_audience(&entries, &ctx, &user);
        let entries = stamp(&user, entries);
        let redo = Redo::Act { user, action };
        self.append(entries, Ack::Acted(reply, garbage, notify), redo)
            .await;
    }

    /// F1: a file uploaded into the folder becomes a `file_added` entry (and a notice when the
    /// folder asks for one).
    async fn add_file(
        &mut self,
        user: UserId,
        folder: Option<u64>,
        file: FileRecord,
        reply: Reply,
    ) {
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        if let Err(e) = rules::check_member(room, &user) {
            return reply.fail(e);
        }
        if room.kind == RoomKind::Group && !room.features.folder {
            return reply.fail(ApiError::new(
                ErrorCode::FeatureDisabled,
                "the folder is switched off in this group",
            ));
        }
        self.drain_pending().await;
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        let parent = match folder {
            None => None,
            Some(id) => match self.ctx.store.item(&self.id, id).await {
                Ok(Some(Item::Folder(f))) if f.trashed.is_none() => Some(f),
                Ok(_) => return reply.fail(ApiError::not_found(format!("folder {id}"))),
                Err(e) => return reply.fail(e.into()),
            },
        };
        let space = match self.ctx.store.item_count(&self.id).await {
            Ok(n) => features::room_has_space(n),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = space {
            return reply.fail(e);
        }
        let mut entries = vec![EventBody::FileAdded {
            folder,
            file: file.id.clone(),
            name: file.name.clone(),
            size: file.size,
            content_type: file.content_type.clone(),
            sha256: file.sha256.clone(),
        }];
        let notices = room.kind == RoomKind::Room || room.features.notifications;
        if notices && parent.as_ref().is_some_and(|f| f.notify_on_new_file) {
            let who = lookup::person(&*self.ctx.store, &user)
                .await
                .map(|p| p.user.name)
                .unwrap_or_else(|_| user.to_string());
            entries.push(EventBody::Notice {
                text: format!("{who} uploaded {}", file.name),
            });
        }
        let entries = stamp(&user, entries);
        let redo = Redo::AddFile { user, folder, file };
        self.append(entries, Ack::Acted(reply, Vec::new(), Vec::new()), redo)
            .await;
    }

    /// Queue entries in the store, conditional on the state version they were decided on;
    /// `ack` answers once they commit. Posts are pipelined; anything that moves the state
    /// version is waited for, so every decision after it knows the version it stands on.
    /// Numbered here (the seqs after the head) and delivered once queued, when the actor may.
    async fn append(&mut self, entries: Vec<NewEntry>, ack: Ack, redo: Redo) {
        let Some(room) = &self.room else {
            return ack.into_reply().fail(self.not_found());
        };
        let moves = entries.iter().any(|e| moves_version(&e.body));
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

    /// Who is online now, to a new subscriber that asked (M3); from now on it gets the changes.
    /// The first such subscriber also sets what the next change is computed from.
    fn presence_snapshot(&mut self, session: SessionId) {
        let Some(sub) = self.subscribers.get_mut(&session) else {
            return;
        };
        sub.presence = true;
        self.presence_wanted = true;
        // The generation is read first: a change while we look moves it, and is pushed next.
        let generation = self.ctx.sessions.presence().generation();
        let online = self.online_members();
        if self.subscribers.values().filter(|s| s.presence).count() == 1 {
            let head = self.room.as_ref().map_or(0, |r| r.head);
            self.presence_mark = (generation, head);
            self.presence_sent = online.clone();
        }
        let frame = ServerFrame::Presence {
            room: self.id.clone(),
            online: online.into_iter().collect(),
            offline: Vec::new(),
            snapshot: true,
        };
        if let Some(sub) = self.subscribers.get(&session) {
            if sub.out.send(&frame).is_err() {
                self.subscribers.remove(&session);
            }
        }
    }

    /// Look up what the rules need, decide, apply to our state at once, and queue the entries.
    async fn change(&mut self, actor: Actor, change: Change, reply: Reply) {
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        let decided = match lookup::decision_context(
            &*self.ctx.store,
            self.ctx.limits.max_participants,
            room,
            &actor,
            &change,
        )
        .await
        {
            Ok(ctx) => rules::decide(room, &actor, &change, &ctx),
            Err(e) => Err(e),
        };
        let Decision { entries, left_out } = match decided {
            Ok(d) => d,
            Err(e) => return reply.fail(e),
        };
        let Some(room) = &mut self.room else {
            return reply.fail(self.not_found());
        };
        if entries.is_empty() {
            return reply.send(RoomReply::Changed(Changed {
                room: self.id.clone(),
                epoch: room.epoch,
                seq: room.head,
                left_out,
            }));
        }
        // A replaced profile image's bytes go once the change is stored (G17).
        let garbage: Vec<String> = match (&change, &room.image) {
            (Change::SetImage { .. }, Some(old)) => vec![old.clone()],
            _ => Vec::new(),
        };
        let author = actor.id();
        for body in &entries {
            rules::apply(room, &author, body);
        }
        let entries = stamp(&author, entries);
        let redo = Redo::Change { actor, change };
        self.append(entries, Ack::Changed(reply, left_out, garbage), redo)
            .await;
    }

    /// G16: masters, or the owner company's admins, delete a group and all its data for
    /// everyone at once.
    async fn delete(&mut self, actor: Actor, reply: Reply) {
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        if room.kind != RoomKind::Group {
            return reply.fail(ApiError::invalid(
                "only external groups are deleted; leave a general room instead",
            ));
        }
        if let Err(e) = rules::check_manager(room, &actor) {
            return reply.fail(e);
        }
        // Everything queued before the delete lands first; nothing is queued after it.
        self.drain_pending().await;
        let Some(room) = self.room.take() else {
            return reply.fail(self.not_found());
        };
        let audit = NewAudit {
            ts: now_ms(),
            room: self.id.clone(),
            actor: actor.id(),
            action: "deleted".into(),
            detail: serde_json::json!({ "name": room.name }).to_string(),
            companies: companies_of(&room),
        };
        match self.ctx.store.delete_room(&self.id, audit.clone()).await {
            Ok(files) => {
                self.ctx.ops.publish(&audit);
                self.remove_blobs(files);
            }
            Err(e) => {
                self.reload().await;
                return reply.fail(e.into());
            }
        }
        tracing::info!(room = %self.id, by = %actor.id(), "group deleted");
        let gone = ServerFrame::RoomDeleted {
            room: self.id.clone(),
        };
        let mut told = HashSet::new();
        for u in room.members.iter().chain(&room.masters) {
            if told.insert(u) {
                self.ctx.sessions.push_to_user(u, &gone);
            }
        }
        self.subscribers.clear();
        reply.send(RoomReply::Done);
    }

    /// G14: the invitation link, managed by masters (and the owner company's admins).
    async fn invite(&mut self, actor: Actor, op: InviteOp, reply: Reply) {
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        if room.kind != RoomKind::Group {
            return reply.fail(ApiError::invalid("general rooms have no invitation link"));
        }
        if let Err(e) = rules::check_manager(room, &actor) {
            return reply.fail(e);
        }
        if let InviteOp::Create {
            expires_in_secs: Some(s),
        } = op
        {
            if !(1..=MAX_INVITE_SECS).contains(&s) {
                return reply.fail(ApiError::invalid(format!(
                    "expires_in_secs must be 1 to {MAX_INVITE_SECS} (a year); omit it for a link \
                     that does not expire"
                )));
            }
        }
        let audit = |action: &str| NewAudit {
            ts: now_ms(),
            room: self.id.clone(),
            actor: actor.id(),
            action: action.into(),
            detail: "{}".into(),
            companies: companies_of(room),
        };
        let result = match op {
            InviteOp::Get => self.ctx.store.invite_of(&self.id).await,
            InviteOp::Revoke => {
                let record = audit("invite_revoked");
                let r = self.ctx.store.set_invite(&self.id, None, record.clone());
                r.await.map(|()| {
                    self.ctx.ops.publish(&record);
                    None
                })
            }
            InviteOp::Create { expires_in_secs } => {
                let invite = Invite {
                    token: crate::random::token(),
                    expires_at: expires_in_secs.map(|s| crate::clock::now_secs() + s as i64),
                    barred: Vec::new(),
                };
                let record = audit("invite_created");
                let r = self
                    .ctx
                    .store
                    .set_invite(&self.id, Some(invite.clone()), record.clone());
                r.await.map(|()| {
                    self.ctx.ops.publish(&record);
                    Some(invite)
                })
            }
        };
        match result {
            Ok(_) if op == InviteOp::Revoke => reply.send(RoomReply::Done),
            Ok(invite) => reply.send(RoomReply::Invite(InviteLink {
                room: self.id.clone(),
                url: invite.as_ref().map(|i| self.ctx.invite_url(&i.token)),
                expires_at: invite.as_ref().and_then(|i| i.expires_at),
                token: invite.map(|i| i.token),
            })),
            Err(e) => reply.fail(e.into()),
        }
    }

    /// An append landed: acknowledge it, deliver it (unless it was already), and carry out what
    /// it means for sessions (removed users are cut off after their line; added users are
    /// told). Once nothing is in flight, a room whose delivered tail was lost moves to a new
    /// epoch.
    async fn committed(&mut self, done: Committed) {
        self.settle(done).await;
        if self.tail_lost && self.pending.is_empty() {
            Box::pin(self.renumber()).await;
        }
    }

    async fn settle(&mut self, (result, q): Committed) {
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
        // A commit of ours marked the room in this run: from now on a sole writer's entries
        // are numbered here and delivered before they commit.
        self.early |= self.ctx.store.sole_writer() && appended.iter().any(|a| !a.duplicate);
        self.acknowledge(appended, ack, early).await;
    }

    /// An append delivered before its commit has an outcome: its entries leave `unstored`, and
    /// anything but storage at exactly the seqs they were delivered with means subscribers saw
    /// what the log does not hold (a failed commit, or a batch that stored later entries in
    /// earlier places).
    fn stored_as_numbered(
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
    async fn epoch_writable(&mut self) -> bool {
        if self.tail_lost && self.pending.is_empty() {
            Box::pin(self.renumber()).await;
        } else if self.tail_lost {
            self.drain_pending().await;
        }
        !self.tail_lost
    }

    /// Entries were delivered that the log does not hold as delivered: the room moves to a new
    /// epoch, so that no client resumes over them (D1), and goes on from the log as stored.
    async fn renumber(&mut self) {
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

    /// Answer a committed append and carry out what it means; `early`: its entries were
    /// delivered when queued.
    async fn acknowledge(&mut self, appended: Vec<Appended>, ack: Ack, early: bool) {
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
                if let Some(task) = task_of(&a.event.body) {
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

    fn is_member(&self, user: &UserId) -> bool {
        self.room
            .as_ref()
            .is_some_and(|r| r.members.binary_search(user).is_ok())
    }

    /// G14: a user a master (or an admin) removes is barred from the group's current link, and
    /// one a master adds again is let back in (a new link bars nobody).
    async fn update_link_bars(&mut self, appended: &[Appended]) {
        let (mut bar, mut clear) = (Vec::new(), Vec::new());
        let mut by = None;
        for a in appended.iter().filter(|a| !a.duplicate) {
            match &a.event.body {
                EventBody::MemberRemoved {
                    user,
                    reason: RemovalReason::Removed,
                } => bar.push(user.clone()),
                EventBody::MembersAdded { users } => {
                    clear.extend(users.iter().filter(|u| **u != a.event.author).cloned())
                }
                _ => continue,
            }
            by = Some(a.event.author.clone());
        }
        let (Some(by), Some(room)) = (by, &self.room) else {
            return;
        };
        let Ok(Some(mut invite)) = self.ctx.store.invite_of(&self.id).await else {
            return;
        };
        let before = invite.barred.clone();
        invite.barred.retain(|u| !clear.contains(u));
        for u in bar {
            if !invite.barred.contains(&u) {
                invite.barred.push(u);
            }
        }
        if invite.barred == before {
            return;
        }
        let record = NewAudit {
            ts: now_ms(),
            room: self.id.clone(),
            actor: by,
            action: "invite_updated".into(),
            detail: serde_json::json!({ "barred": invite.barred }).to_string(),
            companies: companies_of(room),
        };
        match self
            .ctx
            .store
            .set_invite(&self.id, Some(invite), record.clone())
            .await
        {
            Ok(()) => self.ctx.ops.publish(&record),
            Err(e) => tracing::warn!(room = %self.id, error = %e, "cannot update the link's bars"),
        }
    }

    /// The users that committed entries of an external group admitted (as members or masters).
    fn admitted(&self, appended: &[Appended]) -> Vec<UserId> {
        if self.room.as_ref().is_none_or(|r| r.kind != RoomKind::Group) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for a in appended.iter().filter(|a| !a.duplicate) {
            match &a.event.body {
                EventBody::MembersAdded { users } | EventBody::MastersAdded { users } => {
                    out.extend(users.iter().cloned())
                }
                EventBody::Converted {
                    members, masters, ..
                } => out.extend(members.iter().chain(masters).cloned()),
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// An admission and a withdrawal of the same user's permission may race: the withdrawal's
    /// reconciliation (`policy::enforce`) may read the user's groups just before this admission
    /// committed. So once an admission commits, the actor reads each admitted user again and
    /// removes (reason `policy`) whoever no longer holds external permission, before it takes its
    /// next command: either the withdrawal sees the member, or this sees the withdrawal.
    async fn recheck_admitted(&mut self, users: Vec<UserId>) {
        for user in users {
            let person = match lookup::person(&*self.ctx.store, &user).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(room = %self.id, %user, error = %e, "cannot re-check an admission");
                    continue;
                }
            };
            if person.permitted {
                continue;
            }
            tracing::info!(room = %self.id, %user, "admitted while losing permission; removing");
            let (reply, _answer) = Reply::channel();
            let actor = Actor::Policy(person.user.company.clone());
            self.change(actor, Change::RemoveMember(user), reply).await;
        }
    }

    /// Deliver one committed event to every local subscriber, then act on membership changes.
    fn deliver(&mut self, event: Event) {
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
    fn announce(&self, event: &Event) {
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

    fn count_subscribers(&self) {
        self.stats
            .subscribers
            .store(self.subscribers.len() as u64, Ordering::Relaxed);
    }

    /// Remove file bytes whose records are gone (their storage is already freed).
    fn remove_blobs(&self, ids: Vec<String>) {
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

    /// G12/D4: the user's subscriptions end at their removal line (their sessions are told by
    /// [`Self::announce`] on the committing node).
    fn cut_off(&mut self, user: &UserId) {
        self.subscribers.retain(|_, sub| sub.user != *user);
    }
}

/// Entries by `author`, stamped with the time they were accepted.
fn stamp(author: &UserId, bodies: Vec<EventBody>) -> Vec<NewEntry> {
    let ts = now_ms();
    bodies
        .into_iter()
        .map(|body| NewEntry {
            author: author.clone(),
            ts,
            body,
        })
        .collect()
}

/// File bytes an action makes garbage once committed: a purged subtree's files, a recalled
/// message's attachments.
fn garbage_of(action: &Action, ctx: &features::Context, items: Vec<Item>) -> Vec<String> {
    match action {
        Action::Purge { item } => features::subtree(&items, *item)
            .into_iter()
            .filter_map(|id| match items.iter().find(|i| i.id() == id) {
                Some(Item::File(f)) => Some(f.file.clone()),
                _ => None,
            })
            .collect(),
        Action::Recall { .. } => match ctx.message.as_ref().map(|m| &m.body) {
            Some(EventBody::Message { attachments, .. }) => {
                attachments.iter().map(|a| a.file.clone()).collect()
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// T1: the assigner and the assignees of a task hear about every change to it.
fn task_audience(entries: &[EventBody], ctx: &features::Context, actor: &UserId) -> Vec<UserId> {
    let mut who: Vec<UserId> = Vec::new();
    for e in entries {
        match e {
            EventBody::TaskCreated { task } => {
                who.push(actor.clone());
                who.extend(task.assignees.iter().cloned());
            }
            EventBody::TaskUpdated { fields, .. } => who.extend(fields.assignees.iter().cloned()),
            _ => {}
        }
    }
    if let Some(Item::Task(t)) = &ctx.item {
        who.push(t.assigner.clone());
        who.extend(t.status.keys().cloned());
    }
    who.sort();
    who.dedup();
    who
}

/// The task an entry is about (`Some(None)`: the task it creates), if any.
fn task_of(body: &EventBody) -> Option<Option<u64>> {
    match body {
        EventBody::TaskCreated { .. } => Some(None),
        EventBody::TaskUpdated { task, .. }
        | EventBody::TaskCompleted { task }
        | EventBody::TaskReopened { task }
        | EventBody::TaskDeleted { task } => Some(Some(*task)),
        _ => None,
    }
}

/// Every company involved in a room: the owner's and its members' and masters'.
fn companies_of(room: &RoomRecord) -> Vec<crossroom_protocol::CompanyId> {
    let mut v: Vec<_> = std::iter::once(room.owner_company.clone())
        .chain(
            room.members
                .iter()
                .chain(&room.masters)
                .filter_map(UserId::company),
        )
        .collect();
    v.sort();
    v.dedup();
    v
}
