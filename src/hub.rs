//! The hub: the registry of live sessions per user and of room actors per room, shared by every
//! connection on this node.
//!
//! It spawns a room actor on first use ([`Hub::room_send`]); actors retire themselves when idle.

use crate::config::Limits;
use crate::connection::outbound::Outbound;
use crate::connection::SessionId;
use crate::directory::token::TokenKey;
use crate::error::ApiError;
use crate::room::actor::{self, RoomHandle};
use crate::room::RoomCommand;
use crate::shutdown::Shutdown;
use crate::store::SharedStore;
use crossroom_protocol::{RoomId, ServerFrame, UserId};
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the hub is built from.
pub struct Services {
    pub store: SharedStore,
    pub limits: Limits,
    pub tokens: TokenKey,
    pub operator_key: String,
    pub public_url: String,
    pub mailer: crate::mail::Mailer,
    pub blobs: Arc<dyn crate::blob::BlobStore>,
    pub origins: Vec<String>,
    pub shutdown: Shutdown,
}

pub struct Hub {
    pub store: SharedStore,
    pub limits: Limits,
    pub tokens: TokenKey,
    /// The operator's API key (admin API); compared in constant time, never logged.
    pub(crate) operator_key: String,
    /// Base URL for links people open (invitations).
    pub public_url: String,
    /// Outgoing mail (G15).
    pub mailer: crate::mail::Mailer,
    /// File bytes (G17).
    pub blobs: Arc<dyn crate::blob::BlobStore>,
    pub shutdown: Shutdown,
    /// Live room actors on this node. An entry is removed only by its own actor, when idle.
    pub(crate) rooms: DashMap<RoomId, RoomHandle>,
    /// Live sessions of each user on this node (several devices at once).
    sessions: DashMap<UserId, Vec<(SessionId, Outbound)>>,
    /// Live sessions per company on this node.
    company_sessions: DashMap<crossroom_protocol::CompanyId, usize>,
    /// Origins allowed to open a WebSocket from a browser.
    pub origins: Vec<String>,
    /// Stats and audit feeds for ops dashboards.
    pub ops: crate::ops::OpsFeed,
    /// Cluster mode: the cross-node bus (set once at start).
    pub bus: std::sync::OnceLock<Arc<crate::bus::Bus>>,
    next_session: AtomicU64,
    next_generation: AtomicU64,
}

impl Hub {
    pub fn new(s: Services) -> Arc<Hub> {
        Arc::new(Hub {
            store: s.store,
            limits: s.limits,
            tokens: s.tokens,
            operator_key: s.operator_key,
            public_url: s.public_url,
            mailer: s.mailer,
            blobs: s.blobs,
            origins: s.origins,
            shutdown: s.shutdown,
            rooms: DashMap::new(),
            sessions: DashMap::new(),
            company_sessions: DashMap::new(),
            ops: crate::ops::OpsFeed::default(),
            bus: std::sync::OnceLock::new(),
            next_session: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
        })
    }

    pub fn new_session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// Send a command to the room's actor, spawning it if needed. Waits while the actor's
    /// mailbox is full (back-pressure on the sender, never on the actor). The command's reply is
    /// never lost: if no actor can take it, the reply says so.
    pub async fn room_send(self: &Arc<Self>, room: &RoomId, cmd: RoomCommand) {
        let mut cmd = cmd;
        // An actor only leaves the map when nobody holds its sender, so a send to a handle we
        // hold cannot find it gone; the retry covers an actor that died of a panic.
        for _ in 0..2 {
            let handle = self.room_handle(room);
            match handle.tx.send(cmd).await {
                Ok(()) => return,
                Err(mpsc_err) => {
                    cmd = mpsc_err.0;
                    tracing::error!(%room, "room actor is gone; replacing it");
                    self.rooms
                        .remove_if(room, |_, h| h.generation == handle.generation);
                }
            }
        }
        if let Some(reply) = cmd.into_reply() {
            reply.fail(ApiError::internal());
        }
    }

    /// Send a command and wait for its answer (for callers that are not sessions, like the
    /// admin API). An `error` answer becomes `Err`.
    pub async fn ask(
        self: &Arc<Self>,
        room: &RoomId,
        command: impl FnOnce(crate::connection::Reply) -> RoomCommand,
    ) -> Result<ServerFrame, ApiError> {
        let (reply, rx) = crate::connection::Reply::channel();
        self.room_send(room, command(reply)).await;
        match rx.await {
            Ok(ServerFrame::Error { code, message, .. }) => Err(ApiError::new(code, message)),
            Ok(frame) => Ok(frame),
            Err(_) => Err(ApiError::internal()),
        }
    }

    fn room_handle(self: &Arc<Self>, room: &RoomId) -> RoomHandle {
        if let Some(h) = self.rooms.get(room) {
            return h.clone();
        }
        self.rooms
            .entry(room.clone())
            .or_insert_with(|| {
                let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
                actor::spawn(self.clone(), room.clone(), generation)
            })
            .clone()
    }

    /// A room event committed by another node: to this node's actor for the room, if any (no
    /// actor, nobody here to deliver to). A full mailbox drops it; the actor catches up from
    /// the log.
    pub fn remote_event(&self, event: crossroom_protocol::Event) {
        let room = event.room.clone();
        if !self.try_tell(&room, RoomCommand::Remote(event)) {
            tracing::debug!("no room actor here, or its mailbox is full (it will catch up)");
        }
    }

    /// Make the room's actor (if any) catch up from the log.
    pub fn room_catch_up(&self, room: &RoomId) {
        self.try_tell(room, RoomCommand::CatchUp);
    }

    /// Give a command to the room's actor if this node has one, without waiting: false when it
    /// has none or its mailbox is full. For the cluster's hints (bus events, catch-ups, sweeps),
    /// which the log makes good if they are dropped; never for a command with a reply.
    pub fn try_tell(&self, room: &RoomId, cmd: RoomCommand) -> bool {
        match self.rooms.get(room).map(|h| h.tx.clone()) {
            Some(h) => h.try_send(cmd).is_ok(),
            None => false,
        }
    }

    /// Number of live room actors on this node.
    pub fn active_rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Whether `user` of `company` may open one more session here (limits per user and per
    /// company).
    pub fn has_room_for_session(
        &self,
        user: &UserId,
        company: &crossroom_protocol::CompanyId,
    ) -> bool {
        let mine = self.sessions.get(user).map(|v| v.len()).unwrap_or(0);
        let theirs = self.company_sessions.get(company).map(|c| *c).unwrap_or(0);
        mine < self.limits.max_sessions_per_user && theirs < self.limits.max_sessions_per_company
    }

    /// Register a session, unless that would pass the per-user or per-company limit.
    pub fn register_session(
        &self,
        user: &UserId,
        company: &crossroom_protocol::CompanyId,
        session: SessionId,
        out: Outbound,
    ) -> bool {
        let mut entry = self.sessions.entry(user.clone()).or_default();
        let mut count = self.company_sessions.entry(company.clone()).or_insert(0);
        if entry.len() >= self.limits.max_sessions_per_user
            || *count >= self.limits.max_sessions_per_company
        {
            return false;
        }
        entry.push((session, out));
        *count += 1;
        true
    }

    pub fn unregister_session(
        &self,
        user: &UserId,
        company: &crossroom_protocol::CompanyId,
        session: SessionId,
    ) {
        let mut removed = false;
        self.sessions.remove_if_mut(user, |_, v| {
            let before = v.len();
            v.retain(|(s, _)| *s != session);
            removed = v.len() < before;
            v.is_empty()
        });
        if removed {
            self.company_sessions.remove_if_mut(company, |_, c| {
                *c = c.saturating_sub(1);
                *c == 0
            });
        }
    }

    /// Push a frame to every live session of `user`, on this node and (cluster mode) the others.
    pub fn push_to_user(&self, user: &UserId, frame: &ServerFrame) {
        self.push_local(user, frame);
        if let Some(bus) = self.bus.get() {
            bus.push(user, frame);
        }
    }

    /// Push a frame to every live session of `user` on this node.
    pub fn push_local(&self, user: &UserId, frame: &ServerFrame) {
        let targets: Vec<Outbound> = match self.sessions.get(user) {
            Some(v) => v.iter().map(|(_, o)| o.clone()).collect(),
            None => return,
        };
        for out in targets {
            // A session that cannot take it is being closed; it reloads on reconnect.
            let _ = out.send(frame);
        }
    }

    /// The link a person opens to join with an invitation token (G14).
    pub fn invite_url(&self, token: &str) -> String {
        format!("{}/v1/invite/{token}", self.public_url)
    }

    /// Close every live session of `user`, on every node (disabled, or tokens revoked).
    pub fn close_user_sessions(
        &self,
        user: &UserId,
        req: crate::connection::outbound::CloseRequest,
    ) {
        if let Some(bus) = self.bus.get() {
            bus.close_sessions(user, req.code);
        }
        self.close_local(user, req);
    }

    /// Close every live session of `user` on this node.
    pub fn close_local(&self, user: &UserId, req: crate::connection::outbound::CloseRequest) {
        let targets: Vec<Outbound> = match self.sessions.get(user) {
            Some(v) => v.iter().map(|(_, o)| o.clone()).collect(),
            None => return,
        };
        for out in targets {
            out.close(req.clone());
        }
    }

    /// Live sessions per company on this node.
    pub fn sessions_by_company(&self) -> Vec<(crossroom_protocol::CompanyId, usize)> {
        self.company_sessions
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect()
    }

    /// Whether the store answers (readiness, metrics).
    pub async fn store_ready(&self) -> Result<(), crate::store::StoreError> {
        self.store
            .company(&"readyz.invalid".into())
            .await
            .map(|_| ())
    }

    /// Number of live sessions on this node.
    pub fn session_count(&self) -> usize {
        self.sessions.iter().map(|e| e.value().len()).sum()
    }
}
