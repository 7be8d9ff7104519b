//! [`RoomHandle`]: what the registry keeps of a live room actor — its mailbox, its generation,
//! and the counters the ops sampler reads.

use super::RoomCommand;
use crate::ops::feed::RoomStats;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A room actor's mailbox.
pub type Mailbox = mpsc::Sender<Box<RoomCommand>>;

/// The registry's handle on a room actor.
#[derive(Clone)]
pub struct RoomHandle {
    /// Commands travel boxed: a tokio channel allocates its slots 32 at a time, so the first
    /// block of every room's mailbox costs 32 × the slot — 8 bytes boxed, ~260 bytes for the
    /// largest command unboxed (8 KiB per room, 0.8 KiB per idle connection in rooms of 10).
    pub tx: Mailbox,
    /// Tells this actor from a later one for the same room.
    pub generation: u64,
    /// Counters the ops sampler reads.
    pub stats: Arc<RoomStats>,
}
