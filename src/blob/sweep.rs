//! The files sweep, two parts:
//! - orphans: bytes in the blob store that no file record owns — an upload whose node died
//!   between writing the bytes and recording the file — are removed once they are older than
//!   the grace period. Such bytes never count against a quota (a quota counts records and
//!   reservations); the sweep gives back the space.
//! - unposted attachments (M1): an attachment that no committed post names once it is
//!   `Limits::attachment_removable_ms` old — never posted, or taken by a post that never
//!   committed (refused after all, or its node died) — is removed with its bytes. One a committed
//!   post names is settled and not looked at again.
//!
//! In cluster mode every node sweeps the shared store; claims and deletes are idempotent, so two
//! nodes sweeping at once do no harm.

use super::BlobStore;
use crate::metrics::METRICS;
use crate::store::{Store, GONE_CLAIM};
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

/// Attachments looked at per store call.
const ATTACHMENT_BATCH: usize = 500;

/// Remove the attachments no committed post names that were uploaded before `before_ms`;
/// returns how many were removed.
pub async fn sweep_attachments(
    blobs: &dyn BlobStore,
    store: &dyn Store,
    before_ms: i64,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let mut removed = 0;
    loop {
        let batch = store
            .unsettled_attachments(before_ms, ATTACHMENT_BATCH)
            .await?;
        let full = batch.len() == ATTACHMENT_BATCH;
        for (file, claim) in batch {
            let claim = match claim {
                Some(c) => c,
                // Nobody took it: take it for removal (a post taking it this very moment wins).
                None => match store.claim_file(&file.id, Some(GONE_CLAIM)).await? {
                    Some(c) => c,
                    None => continue,
                },
            };
            if claim != GONE_CLAIM
                && store
                    .posted_message(&file.room, &file.created_by, &claim)
                    .await?
                    .is_some()
            {
                store.settle_file(&file.id).await?;
                continue;
            }
            // Never posted, or its post never committed (too old now for a post to take it).
            // Bytes first: a crash between the two leaves a record the next sweep removes.
            blobs.delete(&file.id).await?;
            store.delete_file(&file.id).await?;
            tracing::info!(file = %file.id, room = %file.room, size = file.size, "unposted attachment removed");
            METRICS.unposted_attachments.inc();
            removed += 1;
        }
        if !full {
            return Ok(removed);
        }
    }
}

/// [`sweep`] and [`sweep_attachments`] every `every`, until the node stops (run with
/// `Shutdown::spawn_background`).
pub async fn sweep_loop(
    blobs: Arc<dyn BlobStore>,
    store: Arc<dyn Store>,
    every: Duration,
    grace: Duration,
    attachment_removable_ms: i64,
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
        let before = now.saturating_sub(attachment_removable_ms);
        if let Err(e) = sweep_attachments(&*blobs, &*store, before).await {
            tracing::warn!(error = %e, "attachment sweep failed; the next one retries");
        }
    }
}
