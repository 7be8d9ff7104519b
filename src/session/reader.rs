//! The reader side of an authenticated session: reads frames under the idle timeout and the
//! request budget, pings, and hands each decoded request to [`Session::dispatch`].

use super::frames::{
    bad_frame_error, frame_bytes, protocol_error, read_error_close, wrong_type_error, FrameBytes,
};
use super::rate::TokenBucket;
use crate::directory::User;
use crate::error::ApiError;
use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::outbound::{CloseRequest, Outbound, SessionId};
use axum::extract::ws::{Message, WebSocket};
use crossroom_protocol::close::CloseReason;
use crossroom_protocol::codec::{decode_request, salvage_request_id, RequestError};
use crossroom_protocol::{Encoding, ErrorCode, RoomId};
use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// An authenticated session's reader side.
pub struct Session {
    pub hub: Arc<Hub>,
    pub id: SessionId,
    pub user: User,
    pub out: Outbound,
    pub encoding: Encoding,
    /// Rooms this session subscribed to, to unsubscribe on close and to bound.
    pub subscriptions: HashSet<RoomId>,
    pub bad_frames: u32,
    /// Requests per second: a flood must not starve the others.
    pub bucket: TokenBucket,
    /// When the token that opened this session expires (seconds since the Unix epoch): the
    /// session closes then with 4501, and the client authenticates again.
    pub token_expires_at: i64,
}

impl Session {
    pub async fn read_loop(&mut self, stream: &mut SplitStream<WebSocket>) {
        let idle_timeout = Duration::from_secs(self.hub.limits.idle_timeout_secs);
        let mut ping =
            tokio::time::interval(Duration::from_secs(self.hub.limits.ping_interval_secs));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut last_seen = tokio::time::Instant::now();
        loop {
            let msg = tokio::select! {
                _ = self.out.closing() => return,
                _ = self.hub.shutdown.triggered() => {
                    self.out.close(CloseRequest::from(CloseReason::GoingAway));
                    return;
                }
                _ = ping.tick() => {
                    // A silent peer (half-open TCP, frozen client) is closed; a live one
                    // answers the ping with a pong, which counts as seen.
                    if last_seen.elapsed() >= idle_timeout {
                        self.out.close(CloseRequest::from(CloseReason::PingTimeout));
                        return;
                    }
                    // Checked at each ping (no timer per session): an expired token's session
                    // closes within one ping interval; the client authenticates again.
                    if crate::clock::now_secs() >= self.token_expires_at {
                        self.out.close(CloseRequest::from(CloseReason::TokenExpired));
                        return;
                    }
                    // A full queue is a slow consumer, closing already: its pings no longer matter.
                    let _ = self.out.push(Message::Ping(bytes::Bytes::from_static(b"cr")));
                    continue;
                }
                m = stream.next() => m,
            };
            last_seen = tokio::time::Instant::now();
            let msg = match msg {
                None | Some(Ok(Message::Close(_))) => return,
                Some(Err(e)) => {
                    self.out.close(read_error_close(e));
                    return;
                }
                Some(Ok(m)) => m,
            };
            let kind = frame_bytes(&msg, self.encoding);
            if !matches!(kind, FrameBytes::Control) {
                METRICS.frames_in.inc();
            }
            match kind {
                FrameBytes::Data(bytes) if !self.bucket.take() => {
                    self.out.tell(
                        &ApiError::new(ErrorCode::RateLimited, "too many requests; slow down")
                            .to_frame(salvage_request_id(self.encoding, &bytes)),
                    );
                    if self.bucket.flooding(self.hub.limits.request_burst) {
                        self.out.close(CloseRequest::from(CloseReason::RateLimited));
                    }
                }
                FrameBytes::Data(bytes) => match decode_request(self.encoding, &bytes) {
                    // Boxed: the dispatch future is large and lives only while a request is
                    // handled, instead of inside every idle session's task.
                    Ok(frame) => Box::pin(self.dispatch(frame)).await,
                    // A known request with a wrong field is answered like any refusal, naming
                    // the field; it is no garbage, and does not count towards the close.
                    Err(RequestError::Invalid { id, message }) => {
                        self.out
                            .tell(&ApiError::invalid(message).to_frame(Some(id)));
                    }
                    Err(RequestError::Undecodable(e)) => {
                        self.out.tell(&bad_frame_error(self.encoding, &bytes, &e));
                        self.count_bad_frame();
                    }
                },
                FrameBytes::Control => {}
                FrameBytes::WrongType => {
                    self.out.tell(&wrong_type_error(self.encoding));
                    self.count_bad_frame();
                }
            }
        }
    }

    fn count_bad_frame(&mut self) {
        self.bad_frames += 1;
        if self.bad_frames > self.hub.limits.max_bad_frames {
            self.out.close(protocol_error());
        }
    }
}
