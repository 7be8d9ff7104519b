//! The orphan sweep: bytes in the blob store that no file record owns — an upload whose node
//! died between writing the bytes and recording the file — are removed once they are older than
//! the grace period. Such bytes never count against a quota (a quota counts records and
//! reservations); the sweep gives back the space. In cluster mode every node sweeps the shared
//! bucket; deletes are idempotent, so two nodes sweeping at once do no harm.

use super::BlobStore;
use crate::metrics::METRICS;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Remove the blobs older than `grace_ms` (at `now_ms`) that have no file record; returns how
/// many were removed.
pub async fn sweep(
    blobs: &dyn BlobStore,
    store: &dyn Store,
    now_ms: i64,
    grace_ms: i64,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let mut removed = 0;
    for blob in blobs.list().await? {
        if now_ms - blob.modified_ms < grace_ms {
            continue;
        }
        if store.file(&blob.id).await?.is_some() {
            continue;
        }
        blobs.delete(&blob.id).await?;
        tracing::info!(blob = %blob.id, size = blob.size, "orphan file bytes removed");
        METRICS.orphan_blobs.inc();
        removed += 1;
    }
    Ok(removed)
}

/// [`sweep`] every `every`, until the node stops (run with `Shutdown::spawn_background`).
pub async fn sweep_loop(
    blobs: Arc<dyn BlobStore>,
    store: Arc<dyn Store>,
    every: Duration,
    grace: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: skip it, so that start-up does not list the whole bucket on
    // every node (nothing younger than the grace period could be swept anyway).
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = crate::clock::now_ms();
        if let Err(e) = sweep(&*blobs, &*store, now, grace.as_millis() as i64).await {
            tracing::warn!(error = %e, "orphan sweep failed; the next one retries");
        }
    }
}
