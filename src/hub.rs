//! The hub: this node assembled — the services every request handler and session uses (store,
//! limits, tokens, mail, file bytes), the registry of room actors ([`Rooms`]), the live sessions
//! ([`Sessions`]) and the bus. Built once by [`crate::server`]; axum hands it to every handler.
//!
//! It is also the bus's [`Inbox`]: what other nodes say goes from here to this node's room
//! actors and sessions.

use crate::blob::BlobStore;
use crate::bus::{Inbox, PresenceSaid, SharedBus};
use crate::config::Limits;
use crate::directory::token::TokenKey;
use crate::mail::Mailer;
use crate::ops::feed::OpsFeed;
use crate::outbound::CloseRequest;
use crate::room::context::RoomContext;
use crate::room::registry::Rooms;
use crate::room::RoomCommand;
use crate::sessions::Sessions;
use crate::shutdown::Shutdown;
use crate::slots::Slots;
use crate::store::SharedStore;
use crossroom_protocol::{Event, RoomId, ServerFrame, UserId};
use std::sync::Arc;

/// What the hub is built from.
pub struct Services {
    pub store: SharedStore,
    pub bus: SharedBus,
    pub limits: Limits,
    pub tokens: TokenKey,
    pub operator_key: String,
    pub public_url: String,
    pub mailer: Mailer,
    pub blobs: Arc<dyn BlobStore>,
    pub origins: crate::config::Origins,
    pub shutdown: Shutdown,
    /// `/metrics` labels sessions with their company ids.
    pub tenant_labels: bool,
    /// This node's name in `/metrics` and the ops stream.
    pub node: String,
}

pub struct Hub {
    pub store: SharedStore,
    pub bus: SharedBus,
    pub limits: Limits,
    pub tokens: TokenKey,
    /// The operator's API key (admin API); compared in constant time, never logged.
    pub(crate) operator_key: String,
    /// Base URL for links people open (invitations).
    pub public_url: String,
    /// Outgoing mail (G15).
    pub mailer: Mailer,
    /// File bytes (G17).
    pub blobs: Arc<dyn BlobStore>,
    pub shutdown: Shutdown,
    /// This node's room actors.
    pub rooms: Arc<Rooms>,
    /// This node's live sessions.
    pub sessions: Arc<Sessions>,
    /// Origins allowed to open a WebSocket from a browser.
    pub origins: crate::config::Origins,
    /// Stats and audit feeds for ops dashboards.
    pub ops: Arc<OpsFeed>,
    /// `/metrics` labels sessions with their company ids (off: who the tenants are is not
    /// public).
    pub tenant_labels: bool,
    /// This node's name (`node_name`, default its listening address).
    pub node: String,
    /// WebSockets per source address not yet authenticated.
    pub unauthenticated: Arc<Slots<std::net::IpAddr>>,
    /// Uploads in flight per user.
    pub uploads: Arc<Slots<crossroom_protocol::UserId>>,
    /// Sign-ups per invitation link this hour.
    pub signups: crate::slots::PerHour,
}

impl Hub {
    /// The company settings an admin may not pass (`limits.company_*_ceiling`).
    pub fn ceilings(&self) -> crate::domain::directory::Ceilings {
        crate::domain::directory::Ceilings {
            shared_storage_quota: self.limits.company_storage_quota_ceiling,
            max_groups: self.limits.company_max_groups_ceiling,
        }
    }

    pub fn new(s: Services) -> Arc<Hub> {
        let sessions = Arc::new(Sessions::new(
            s.bus.clone(),
            s.limits.max_sessions_per_user,
            s.limits.max_sessions_per_company,
        ));
        let ops = Arc::new(OpsFeed::new(s.bus.is_cluster().then(|| s.bus.clone())));
        let unauthenticated = Slots::new(s.limits.max_unauthenticated_per_address);
        let uploads = Slots::new(s.limits.max_uploads_per_user);
        let rooms = Arc::new(Rooms::new(Arc::new(RoomContext {
            missing: dashmap::DashMap::new(),
            store: s.store.clone(),
            limits: s.limits.clone(),
            bus: s.bus.clone(),
            sessions: sessions.clone(),
            blobs: s.blobs.clone(),
            ops: ops.clone(),
            shutdown: s.shutdown.clone(),
            public_url: s.public_url.clone(),
            rooms: Default::default(),
        })));
        Arc::new(Hub {
            store: s.store,
            bus: s.bus,
            limits: s.limits,
            tokens: s.tokens,
            operator_key: s.operator_key,
            public_url: s.public_url,
            mailer: s.mailer,
            blobs: s.blobs,
            shutdown: s.shutdown,
            rooms,
            sessions,
            origins: s.origins,
            ops,
            tenant_labels: s.tenant_labels,
            node: s.node,
            unauthenticated,
            uploads,
            signups: Default::default(),
        })
    }

    /// The link a person opens to join with an invitation token (G14).
    pub fn invite_url(&self, token: &str) -> String {
        self.rooms.context().invite_url(token)
    }

    /// Whether the store answers (readiness, metrics).
    pub async fn store_ready(&self) -> Result<(), crate::store::StoreError> {
        self.store
            .company(&"readyz.invalid".into())
            .await
            .map(|_| ())
    }
}

impl Inbox for Hub {
    /// To this node's actor for the room, if any (no actor, nobody here to deliver to). A full
    /// mailbox drops it; the actor catches up from the log.
    fn room_event(&self, event: Event) {
        let room = event.room.clone();
        if !self.rooms.try_tell(&room, RoomCommand::Remote(event)) {
            tracing::debug!("no room actor here, or its mailbox is full (it will catch up)");
        }
    }

    fn room_catch_up(&self, room: &RoomId) {
        self.rooms.try_tell(room, RoomCommand::CatchUp);
    }

    fn push_local(&self, user: &UserId, frame: &ServerFrame) {
        // A deletion reaches this node's actor for the room first, which then tells the user:
        // nothing here serves the room after its `room_deleted`.
        if let ServerFrame::RoomDeleted { room } = frame {
            if self.rooms.has(room) {
                let (rooms, room) = (self.rooms.clone(), room.clone());
                let notify = Some((user.clone(), frame.clone()));
                self.shutdown.spawn(async move {
                    rooms.send(&room, RoomCommand::Deleted { notify }).await;
                });
                return;
            }
        }
        self.sessions.push_local(user, frame);
    }

    fn close_local(&self, user: &UserId, req: CloseRequest) {
        self.sessions.close_local(user, req);
    }

    fn presence(&self, node: &str, said: PresenceSaid) {
        let presence = self.sessions.presence();
        match said {
            PresenceSaid::Alive => {
                presence.heard(node);
                presence.forget_silent();
            }
            PresenceSaid::Online(user) => presence.remote_change(node, &user, true),
            PresenceSaid::Offline(user) => presence.remote_change(node, &user, false),
            PresenceSaid::Snapshot(users) => presence.remote_snapshot(node, users),
            PresenceSaid::Ask => self.bus.presence_snapshot(presence.local_users()),
        }
    }

    fn room_typing(&self, room: &RoomId, user: UserId) {
        // Ephemeral: no actor here (nobody to show it to) or a full mailbox drops it.
        self.rooms
            .try_tell(room, RoomCommand::RemoteTyping { user });
    }

    fn node_stats(&self, stats: crossroom_protocol::ops::Stats) {
        self.ops.heard(stats);
    }

    fn node_audit(&self, record: crossroom_protocol::ops::AuditRecord) {
        self.ops.publish_here(record);
    }

    fn bus_recovered(&self) {
        // Closes and pushes sent while we were deaf are lost; the directory and the logs are not.
        for (room, _) in self.rooms.stats() {
            self.rooms.try_tell(&room, RoomCommand::CatchUp);
        }
        // Our presence notices sent while we were cut off may be lost: say it all again.
        self.bus
            .presence_snapshot(self.sessions.presence().local_users());
        let (sessions, store) = (self.sessions.clone(), self.store.clone());
        self.shutdown.spawn(async move {
            sessions.reverify(&*store).await;
        });
    }
}
