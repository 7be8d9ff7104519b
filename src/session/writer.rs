//! The writer task of a session: drains the bounded outbound queue ([`crate::outbound`]) into
//! the socket, feeding many frames and flushing once, and sends the close frame last.

use crate::metrics::METRICS;
use crate::outbound::{CloseRequest, OutboundReceiver};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use crossroom_protocol::close::CloseReason;
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use std::time::Duration;

/// Most queued frames the writer sends before one flush.
const WRITE_BATCH: usize = 64;
/// How long a close frame may take to leave before the socket is just dropped.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Drain the outbound queue into the socket: feed up to [`WRITE_BATCH`] frames, flush once.
/// On a close request, send what is queued if asked to drain, then the close frame.
pub async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: OutboundReceiver) {
    let watch = rx.watcher();
    let close = loop {
        let first = match rx.next().await {
            Ok(m) => m,
            Err(c) => break c,
        };
        let batch = async {
            let mut bytes = OutboundReceiver::len_of(&first);
            let mut frames = 1u64;
            sink.feed(first).await?;
            for _ in 1..WRITE_BATCH {
                let Some(m) = rx.try_next() else { break };
                bytes += OutboundReceiver::len_of(&m);
                frames += 1;
                sink.feed(m).await?;
            }
            sink.flush().await?;
            Ok::<_, axum::Error>((bytes, frames))
        };
        tokio::select! {
            // The batch first: it is nearly always ready at once, and the abort watch is then
            // never polled (polling it registers a waiter, per batch).
            biased;
            r = batch => match r {
                Ok((bytes, frames)) => {
                    rx.written(bytes);
                    METRICS.frames_out.inc_by(frames);
                }
                Err(_) => break CloseRequest::from(CloseReason::Normal),
            },
            // A client that stops reading blocks the flush; a close request must still win.
            c = watch.until_abort() => break c,
        }
    };
    watch.set(close.clone());
    let farewell = async {
        if close.drain {
            while let Some(m) = rx.try_next() {
                sink.feed(m).await?;
            }
        }
        sink.send(Message::Close(Some(CloseFrame {
            code: close.code(),
            reason: close.reason.text().into(),
        })))
        .await?;
        sink.close().await
    };
    // The peer may be gone or stuck; the close is best effort within the timeout.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, farewell).await;
    rx.shut();
}
