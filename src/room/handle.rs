//! [`RoomHandle`]: what the registry keeps of a live room actor — its mailbox, its generation,
//! and the counters the ops sampler reads.

use super::RoomCommand;
use crate::ops::feed::RoomStats;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The registry's handle on a room actor.
#[derive(Clone)]
pub struct RoomHandle {
    pub tx: mpsc::Sender<RoomCommand>,
    /// Tells this actor from a later one for the same room.
    pub generation: u64,
    /// Counters the ops sampler reads.
    pub stats: Arc<RoomStats>,
}
