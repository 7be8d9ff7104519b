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
//! so does an unclean stop, for every room its run marked before numbering its entries
//! ([`crate::store::RoomLogStore::mark_numbered`]); a room delivered at its commits resumes.
//! Membership changes are still delivered at their commit: nobody is cut off, or let in, by a
//! line that might not be stored.
//!
//! Removal is a line in the log (D4): when a `member_removed` entry at seq r commits, the removed
//! user's subscriptions get r and are dropped before anything after r is delivered, and every
//! session of theirs is told `removed`.
//!
//! It stops when it has had no subscriber and no work for `room_idle_secs`, removing itself from
//! the registry only when nobody holds its sender, so no command is ever lost to a stopping actor.

//!
//! ## Files
//! The loop, the state and the dispatch of commands here; `commit` (the ordered commit
//! pipeline and re-decisions), `epochs` (early numbering and epoch moves, D1/D2), `fanout`
//! (delivery and replay), `cluster` (catch-up and reconciliation), `presence` (presence and
//! typing); the commands by group in `messages`, `items` and `membership`.
use super::context::RoomContext;
use super::handle::RoomHandle;
use super::reply::{Changed, InviteLink, RoomReply};
use super::{info, lookup, query, InviteOp, PostRequest, Reply, RoomCommand, RoomRequest};
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

mod cluster;
mod commit;
mod epochs;
mod fanout;
mod items;
mod membership;
mod messages;
mod presence;

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

/// An append in flight with the acknowledgement that waits for it.
type Pending = futures_util::future::BoxFuture<'static, Committed>;

/// An append's outcome, with what was queued beside it.
type Committed = (StoreResult<Vec<Appended>>, Queued);

/// What waits for an append's commit: its acknowledgement, the request to decide again on a
/// conflict (its reply waits in the [`Ack`]),
/// how many conflicts that decision has met already, the state version it was decided on, and
/// — when it was delivered before its commit — the seqs the actor gave its entries.
struct Queued {
    ack: Ack,
    redo: RoomRequest,
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
    /// Whether the room is marked in this run ([`RoomActor::mark_numbered`]), so that entries may
    /// be numbered here and delivered before their commit.
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
    conflicted: Vec<(Ack, RoomRequest, u32)>,
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
        let (request, reply) = match cmd {
            RoomCommand::Ask(request, reply) => (request, reply),
            RoomCommand::Forget(session) => return self.unsubscribe(session),
            RoomCommand::Remote(event) => return self.accept(event, false).await,
            RoomCommand::RemoteTyping { user } => return self.remote_typing(user),
            RoomCommand::CatchUp => return self.catch_up().await,
            RoomCommand::Sweep(head) => return self.swept(head).await,
            RoomCommand::Deleted { notify } => return self.deleted_elsewhere(notify),
            RoomCommand::Repair(lacking) => return self.repair(lacking).await,
        };
        self.freshen_for(&request).await;
        if request.decides() && !self.epoch_writable().await {
            return reply.fail(ApiError::new(
                crossroom_protocol::ErrorCode::Unavailable,
                "the room cannot be written now; retry",
            ));
        }
        if self.redeciding == 0 && request.decides() && self.stale_pending() {
            // Decided now, this request would commit before those are decided again.
            self.drain_pending().await;
        }
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        match request {
            RoomRequest::Subscribe {
                session,
                user,
                since,
                presence,
            } => {
                if let Err(e) = rules::check_member(room, &user) {
                    return reply.fail(e);
                }
                self.subscribe(session, user, since, reply).await;
                if presence {
                    self.presence_snapshot(session);
                }
            }
            RoomRequest::Unsubscribe { session } => {
                self.unsubscribe(session);
                reply.send(RoomReply::Done);
            }
            RoomRequest::Post(req) => self.post(req, reply).await,
            RoomRequest::History {
                user,
                before,
                limit,
            } => self.history(user, before, limit, reply),
            RoomRequest::MarkRead { user, seq } => self.mark_read(user, seq, reply),
            RoomRequest::Typing { user, session } => self.typing(user, session, reply),
            RoomRequest::Get { user } => self.get(user, reply),
            RoomRequest::Change { actor, change } => self.change(actor, change, reply).await,
            RoomRequest::Delete { actor } => self.delete(actor, reply).await,
            RoomRequest::Invite { actor, op } => self.invite(actor, op, reply).await,
            RoomRequest::Act { user, action } => self.act(user, action, reply).await,
            RoomRequest::Query { user, query } => self.query(user, query, reply),
            RoomRequest::AddFile { user, folder, file } => {
                self.add_file(user, folder, file, reply).await
            }
        }
    }

    fn unsubscribe(&mut self, session: SessionId) {
        self.subscribers.remove(&session);
        self.count_subscribers();
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

    fn is_member(&self, user: &UserId) -> bool {
        self.room
            .as_ref()
            .is_some_and(|r| r.members.binary_search(user).is_ok())
    }

    fn count_subscribers(&self) {
        self.stats
            .subscribers
            .store(self.subscribers.len() as u64, Ordering::Relaxed);
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
