//! One WebSocket session: the upgrade (subprotocol, header auth, buffer sizes), a reader that
//! decodes frames and dispatches commands, and a writer task that drains the bounded outbound
//! queue ([`crate::outbound`]), feeding many frames and flushing once.
//!
//! - [`reader`]: the read loop (idle timeout, pings, request budget from [`rate`]);
//! - [`dispatch`]: each request to its room actor or service;
//! - [`writer`]: the outbound queue into the socket;
//! - [`frames`]: which messages carry data, and the answers to bad ones.

mod dispatch;
mod frames;
mod rate;
mod reader;
mod writer;

use frames::{
    bad_frame_error, frame_bytes, protocol_error, read_error_close, wrong_type_error, FrameBytes,
};
use rate::TokenBucket;
use reader::Session;
use writer::{write_loop, CLOSE_TIMEOUT};

use crate::directory::{self, Authenticated, User};
use crate::error::ApiError;
use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::outbound::{self, CloseRequest, Outbound, SessionId};
use crate::room::RoomCommand;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use crossroom_protocol::close::CloseReason;
use crossroom_protocol::{
    decode, ClientFrame, Encoding, ErrorCode, Limits as WireLimits, ServerFrame, PROTOCOL_VERSION,
    SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK,
};
use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// `GET /v1/ws`.
pub async fn ws_handler(
    State(hub): State<Arc<Hub>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err((reason, refusal)) = admit_upgrade(&hub, &headers) {
        return refuse_upgrade(peer, None, reason, refusal);
    }
    // A token in the header authenticates before the upgrade: a bad one never gets a socket.
    let user = match crate::directory::token::bearer(&headers) {
        Some(token) => {
            let now = directory::now_secs();
            match directory::authenticate_token(&hub.store, &hub.tokens, token, now).await {
                Ok(a) if !hub.sessions.has_room_for(&a.user.id, &a.user.company) => {
                    let e = ApiError::too_many_sessions();
                    return refuse_upgrade(peer, Some(&a.user.id), "too_many_sessions", e);
                }
                Ok(a) => Some(a),
                Err(f) => {
                    METRICS.auth_failed("ws_header", f.reason());
                    let e = ApiError::new(f.code, f.message);
                    return refuse_upgrade(peer, f.user.as_ref(), "auth", e);
                }
            }
        }
        None => None,
    };
    // Counted until it authenticates by frame (or closes).
    let pending = match &user {
        None => match hub.unauthenticated.take(peer.ip()) {
            Some(p) => Some(p),
            None => {
                let e = ApiError::new(
                    ErrorCode::RateLimited,
                    "too many unauthenticated connections from this address",
                );
                return refuse_upgrade(peer, None, "too_many_unauthenticated", e);
            }
        },
        _ => None,
    };
    let l = &hub.limits;
    let ws = ws
        .protocols([SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON])
        .read_buffer_size(l.ws_read_buffer)
        .write_buffer_size(l.ws_write_buffer)
        .max_message_size(l.max_frame_bytes)
        .max_frame_size(l.max_frame_bytes);
    let encoding = ws
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .and_then(Encoding::from_subprotocol)
        .unwrap_or(Encoding::MsgPack);
    // Everything a connection logs carries its session id and, once known, its user.
    let span = tracing::info_span!(
        "connection",
        %peer,
        session = tracing::field::Empty,
        user = tracing::field::Empty
    );
    ws.on_upgrade(move |socket| run(hub, socket, encoding, user, pending).instrument(span))
}

/// Answer an upgrade with `refusal` instead of a socket: logged at `info` with its reason and
/// source address (never the token), and counted by reason.
pub fn refuse_upgrade(
    peer: std::net::SocketAddr,
    user: Option<&crossroom_protocol::UserId>,
    reason: &'static str,
    refusal: ApiError,
) -> Response {
    let user = user.map(|u| u.as_str()).unwrap_or("");
    tracing::info!(%peer, user, reason, detail = %refusal.message, "WebSocket upgrade refused");
    METRICS.upgrade_rejected(reason);
    refusal.into_response()
}

/// `GET /v1/echo` (only with `[testing] ws_echo`): a WebSocket that sends back every text and
/// binary message, with the limits and buffers of `/v1/ws` — what RFC 6455 conformance suites
/// drive. Pings are answered and closes completed by the WebSocket stack itself.
pub async fn echo_handler(State(hub): State<Arc<Hub>>, ws: WebSocketUpgrade) -> Response {
    let l = &hub.limits;
    ws.read_buffer_size(l.ws_read_buffer)
        .write_buffer_size(l.ws_write_buffer)
        .max_message_size(l.max_frame_bytes)
        .max_frame_size(l.max_frame_bytes)
        .on_upgrade(|mut socket| async move {
            while let Some(Ok(m)) = socket.recv().await {
                let back = match m {
                    Message::Text(_) | Message::Binary(_) => m,
                    // The stack queued the closing reply; reading on sends it, then ends.
                    Message::Close(_) | Message::Ping(_) | Message::Pong(_) => continue,
                };
                if socket.send(back).await.is_err() {
                    break;
                }
            }
        })
}

/// What every WebSocket upgrade checks first: not draining, and an allowed origin. Cross-site
/// WebSocket hijacking: a browser page of another origin may not use a user's session. Native
/// clients send no Origin and are not affected.
pub fn admit_upgrade(hub: &Hub, headers: &HeaderMap) -> Result<(), (&'static str, ApiError)> {
    if hub.shutdown.is_draining() {
        let e = ApiError::new(ErrorCode::Unavailable, "server is shutting down");
        return Err(("draining", e));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin = origin.to_str().unwrap_or("");
        if !hub.origins.admit(origin, host) {
            let e = ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "origin {origin:?} may not open a session: the server admits its own pages' \
                     origin (public_url, or the Host they came to) and allowed_origins; add this \
                     one to allowed_origins if it is yours"
                ),
            );
            return Err(("origin", e));
        }
    }
    Ok(())
}

/// The `hello` frame that opens an authenticated session.
fn hello(hub: &Hub, session: SessionId, req: Option<u32>, user: &User) -> ServerFrame {
    ServerFrame::Hello {
        id: req,
        protocol: PROTOCOL_VERSION,
        session: format!("s{}", session.0),
        user: user.info(),
        limits: wire_limits(hub),
    }
}

fn wire_limits(hub: &Hub) -> WireLimits {
    let l = &hub.limits;
    WireLimits {
        max_frame_bytes: l.max_frame_bytes as u32,
        max_text_chars: crate::domain::rules::MAX_TEXT_CHARS as u32,
        max_replay: l.max_replay,
        max_history_page: l.max_history_page,
        max_subscriptions: l.max_subscriptions,
    }
}

/// A session from upgrade to close.
async fn run(
    hub: Arc<Hub>,
    socket: WebSocket,
    encoding: Encoding,
    user: Option<Authenticated>,
    pending: Option<crate::slots::Slot<std::net::IpAddr>>,
) {
    let _live = hub.shutdown.track();
    let (sink, mut stream) = socket.split();
    let (out, out_rx) = outbound::channel(
        encoding,
        hub.limits.outbound_queue_frames,
        hub.limits.outbound_queue_bytes,
    );
    let writer = hub.shutdown.spawn(write_loop(sink, out_rx));
    let id = hub.sessions.new_session_id();
    tracing::Span::current().record("session", id.0);

    let authed = match user {
        Some(a) => {
            out.tell(&hello(&hub, id, None, &a.user));
            Some(a)
        }
        None => Box::pin(authenticate_by_frame(&hub, id, &mut stream, &out, encoding)).await,
    };
    drop(pending);
    if let Some(Authenticated {
        user,
        issued_at,
        expires_at,
    }) = authed
    {
        tracing::Span::current().record("user", tracing::field::display(&user.id));
        if !hub
            .sessions
            .register(&user.id, &user.company, id, out.clone(), issued_at)
        {
            out.tell(&ApiError::too_many_sessions().to_frame(None));
            out.close(CloseRequest::from(CloseReason::TooManySessions));
            // Only to let it write the refusal and the close; how it ended changes nothing.
            let _ = writer.await;
            linger(&mut stream).await;
            return;
        }
        let mut session = Session {
            hub: hub.clone(),
            id,
            user,
            out: out.clone(),
            encoding,
            subscriptions: HashSet::new(),
            bad_frames: 0,
            bucket: TokenBucket::new(hub.limits.requests_per_sec, hub.limits.request_burst),
            token_expires_at: expires_at,
        };
        tracing::info!("session opened");
        session.read_loop(&mut stream).await;
        tracing::info!("session closed");
        for room in std::mem::take(&mut session.subscriptions) {
            let cmd = RoomCommand::Forget(id);
            // If this cannot be delivered the actor drops us anyway on its next push. Boxed, as
            // everything after the read loop: not part of every idle session's task.
            Box::pin(hub.rooms.send(&room, cmd)).await;
        }
        hub.sessions
            .unregister(&session.user.id, &session.user.company, id);
    }
    // Whatever ended the reader, make sure the writer ends too.
    out.close(CloseRequest::from(CloseReason::Normal));
    // The session is over either way: a writer that failed has nothing left to flush.
    let _ = writer.await;
    linger(&mut stream).await;
}

/// After our close frame, keep reading (and discarding) until the peer closes too, for a short
/// while: the closing handshake lets the client read our close code instead of meeting a reset
/// when it answers a last ping.
async fn linger(stream: &mut SplitStream<WebSocket>) {
    let drain = async { while let Some(Ok(_)) = stream.next().await {} };
    // Bounded: a peer that never answers is dropped when the time is up.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
}

/// Wait for an `auth` frame (browsers cannot set headers). Returns the user, or `None` after
/// closing the session.
async fn authenticate_by_frame(
    hub: &Arc<Hub>,
    session: SessionId,
    stream: &mut SplitStream<WebSocket>,
    out: &Outbound,
    encoding: Encoding,
) -> Option<Authenticated> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(hub.limits.auth_timeout_secs);
    let mut bad = 0u32;
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout_at(deadline, stream.next()) => m,
            _ = hub.shutdown.triggered() => {
                out.close(CloseRequest::from(CloseReason::GoingAway));
                return None;
            }
        };
        let bytes = match msg {
            Err(_) => {
                tracing::info!(
                    reason = "auth_timeout",
                    "authentication refused: no auth frame in time"
                );
                METRICS.auth_failed("ws_frame", "auth_timeout");
                out.close(CloseRequest::from(CloseReason::AuthTimeout));
                return None;
            }
            Ok(Some(Err(e))) => {
                // 1009 for an oversized message, as after authentication.
                out.close(read_error_close(e));
                return None;
            }
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(m))) => match frame_bytes(&m, encoding) {
                FrameBytes::Data(b) => b,
                FrameBytes::Control => continue,
                FrameBytes::WrongType => {
                    out.tell(&wrong_type_error(encoding));
                    bad += 1;
                    if bad > hub.limits.max_bad_frames {
                        out.close(protocol_error());
                        return None;
                    }
                    continue;
                }
            },
        };
        match decode::<ClientFrame>(encoding, &bytes) {
            Ok(ClientFrame::Auth { id, token }) => {
                match directory::authenticate_token(
                    &hub.store,
                    &hub.tokens,
                    &token,
                    directory::now_secs(),
                )
                .await
                {
                    Ok(a) => {
                        out.tell(&hello(hub, session, Some(id), &a.user));
                        return Some(a);
                    }
                    Err(f) => {
                        tracing::info!(
                            user = f.user.as_ref().map(|u| u.as_str()).unwrap_or(""),
                            reason = f.reason(),
                            detail = f.message,
                            "authentication refused"
                        );
                        METRICS.auth_failed("ws_frame", f.reason());
                        out.tell(&ApiError::new(f.code, f.message).to_frame(Some(id)));
                        out.close(f.close.into());
                        return None;
                    }
                }
            }
            Ok(other) => {
                out.tell(
                    &ApiError::new(ErrorCode::Unauthorized, "send an auth frame first")
                        .to_frame(Some(other.id())),
                );
            }
            Err(e) => {
                bad += 1;
                out.tell(&bad_frame_error(encoding, &bytes, &e));
                if bad > hub.limits.max_bad_frames {
                    out.close(protocol_error());
                    return None;
                }
            }
        }
    }
}
