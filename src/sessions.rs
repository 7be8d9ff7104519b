//! The live sessions of this node, per user and per company: who may open one more (limits per
//! user and per company), and pushing to or closing every session of a user — here, and through
//! the bus on the other nodes.

use crate::bus::SharedBus;
use crate::domain::directory::session_refusal;
use crate::outbound::{CloseRequest, Outbound, SessionId};
use crate::presence::Presence;
use crate::store::Store;
use crossroom_protocol::{CompanyId, ServerFrame, UserId};
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// One live session.
#[derive(Clone)]
struct Live {
    id: SessionId,
    out: Outbound,
    issued_at: i64,
}

pub struct Sessions {
    bus: SharedBus,
    max_per_user: usize,
    max_per_company: usize,
    /// Live sessions of each user on this node (several devices at once), with when the
    /// token that opened each was issued.
    by_user: DashMap<UserId, Vec<Live>>,
    /// Live sessions per company on this node.
    by_company: DashMap<CompanyId, usize>,
    next_session: AtomicU64,
    /// Who is online here and elsewhere (M3); fed by register and unregister.
    presence: Presence,
}

impl Sessions {
    pub fn new(bus: SharedBus, max_per_user: usize, max_per_company: usize) -> Sessions {
        Sessions {
            bus,
            max_per_user,
            max_per_company,
            by_user: DashMap::new(),
            by_company: DashMap::new(),
            next_session: AtomicU64::new(1),
            presence: Presence::new(),
        }
    }

    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    pub fn new_session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether `user` of `company` may open one more session here.
    pub fn has_room_for(&self, user: &UserId, company: &CompanyId) -> bool {
        let mine = self.by_user.get(user).map(|v| v.len()).unwrap_or(0);
        let theirs = self.by_company.get(company).map(|c| *c).unwrap_or(0);
        mine < self.max_per_user && theirs < self.max_per_company
    }

    /// Register a session, unless that would pass the per-user or per-company limit.
    pub fn register(
        &self,
        user: &UserId,
        company: &CompanyId,
        session: SessionId,
        out: Outbound,
        issued_at: i64,
    ) -> bool {
        let mut entry = self.by_user.entry(user.clone()).or_default();
        let mut count = self.by_company.entry(company.clone()).or_insert(0);
        if entry.len() >= self.max_per_user || *count >= self.max_per_company {
            return false;
        }
        entry.push(Live {
            id: session,
            out,
            issued_at,
        });
        *count += 1;
        drop((entry, count));
        if self.presence.local_up(user) {
            self.bus.presence(user, true);
        }
        true
    }

    pub fn unregister(&self, user: &UserId, company: &CompanyId, session: SessionId) {
        let mut removed = false;
        self.by_user.remove_if_mut(user, |_, v| {
            let before = v.len();
            v.retain(|l| l.id != session);
            removed = v.len() < before;
            v.is_empty()
        });
        if removed {
            self.by_company.remove_if_mut(company, |_, c| {
                *c = c.saturating_sub(1);
                *c == 0
            });
            if self.presence.local_down(user) {
                self.bus.presence(user, false);
            }
        }
    }

    /// Push a frame to every live session of `user`, on this node and the others.
    pub fn push_to_user(&self, user: &UserId, frame: &ServerFrame) {
        self.push_local(user, frame);
        self.bus.push(user, frame);
    }

    /// Push a frame to every live session of `user` on this node.
    pub fn push_local(&self, user: &UserId, frame: &ServerFrame) {
        for out in self.of(user) {
            // A session that cannot take it is being closed; it reloads on reconnect.
            out.tell(frame);
        }
    }

    /// Close every live session of `user`, on every node (disabled, or tokens revoked).
    pub fn close_user(&self, user: &UserId, req: CloseRequest) {
        self.bus.close_sessions(user, req.code());
        self.close_local(user, req);
    }

    /// Close every live session of `user` on this node.
    pub fn close_local(&self, user: &UserId, req: CloseRequest) {
        for out in self.of(user) {
            out.close(req.clone());
        }
    }

    fn of(&self, user: &UserId) -> Vec<Outbound> {
        match self.by_user.get(user) {
            Some(v) => v.iter().map(|l| l.out.clone()).collect(),
            None => Vec::new(),
        }
    }

    /// Read every user with a live session here again, and close the sessions the directory no
    /// longer allows (disabled, tokens revoked): after a gap in what this node heard from the
    /// others, whose close notices may have been lost. Returns how many it closed.
    pub async fn reverify(&self, store: &dyn Store) -> usize {
        let users: Vec<UserId> = self.by_user.iter().map(|e| e.key().clone()).collect();
        let mut closed = 0;
        for id in users {
            let user = match store.user(&id).await {
                // Unknown is not revoked: a store that lost its directory must not cut everyone
                // off (their next connect is refused anyway).
                Ok(None) => continue,
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(user = %id, error = %e, "cannot re-verify sessions");
                    continue;
                }
            };
            let live: Vec<Live> = self.by_user.get(&id).map(|v| v.clone()).unwrap_or_default();
            for l in live {
                if let Some(reason) = session_refusal(user.as_ref(), l.issued_at) {
                    l.out.close(reason.into());
                    closed += 1;
                }
            }
        }
        if closed > 0 {
            tracing::info!(closed, "sessions closed on re-verification");
        }
        closed
    }

    /// Live sessions per company on this node.
    pub fn by_company(&self) -> Vec<(CompanyId, usize)> {
        self.by_company
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect()
    }

    /// Number of live sessions on this node.
    pub fn count(&self) -> usize {
        self.by_user.iter().map(|e| e.value().len()).sum()
    }
}
