//! [`RoomContext`]: everything a room actor uses beyond its own state — the store, the limits,
//! the bus, the node's live sessions (for pushes), file bytes, the ops feed — and the map of live
//! actors, from which an idle actor retires itself.

use super::handle::RoomHandle;
use crate::blob::BlobStore;
use crate::bus::SharedBus;
use crate::config::Limits;
use crate::ops::feed::OpsFeed;
use crate::sessions::Sessions;
use crate::shutdown::Shutdown;
use crate::store::SharedStore;
use crossroom_protocol::RoomId;
use dashmap::DashMap;
use std::sync::Arc;

pub struct RoomContext {
    pub store: SharedStore,
    pub limits: Limits,
    pub bus: SharedBus,
    pub sessions: Arc<Sessions>,
    pub blobs: Arc<dyn BlobStore>,
    pub ops: Arc<OpsFeed>,
    /// Tracks the actors and the work they spawn.
    pub shutdown: Shutdown,
    /// Base URL for links people open (invitations).
    pub public_url: String,
    /// Live room actors on this node. An entry is inserted by the registry and removed only by
    /// its own actor, when idle ([`crate::room::registry`]).
    pub rooms: DashMap<RoomId, RoomHandle>,
    /// Rooms an actor found missing, and when: requests for them are answered `not_found`
    /// without an actor for [`MISSING_FOR`] (made-up ids cannot pile up actors).
    pub missing: DashMap<RoomId, std::time::Instant>,
}

/// How long a room found missing is answered from [`RoomContext::missing`].
pub const MISSING_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Most rooms remembered as missing (past it the memory is cleared: it only saves work).
const MISSING_MAX: usize = 100_000;

impl RoomContext {
    /// Remember that `room` does not exist.
    pub fn found_missing(&self, room: &RoomId) {
        if self.missing.len() >= MISSING_MAX {
            self.missing.clear();
        }
        self.missing.insert(room.clone(), std::time::Instant::now());
    }

    /// Whether `room` was found missing within [`MISSING_FOR`].
    pub fn known_missing(&self, room: &RoomId) -> bool {
        match self.missing.get(room).map(|t| t.elapsed()) {
            Some(age) if age < MISSING_FOR => true,
            Some(_) => {
                self.missing.remove(room);
                false
            }
            None => false,
        }
    }

    /// Take the actor of `room` of this `generation` out of the map, if nobody can still reach
    /// it: only the map's own copy of its sender exists (no sender is mid-send) and its mailbox is
    /// empty. Returns whether it was taken out (and so may stop).
    pub fn retire(&self, room: &RoomId, generation: u64) -> bool {
        self.rooms
            .remove_if(room, |_, h| {
                h.generation == generation
                    && h.tx.strong_count() == 1
                    && h.tx.capacity() == h.tx.max_capacity()
            })
            .is_some()
    }

    /// The link a person opens to join with an invitation token (G14).
    pub fn invite_url(&self, token: &str) -> String {
        format!("{}/v1/invite/{token}", self.public_url)
    }
}
