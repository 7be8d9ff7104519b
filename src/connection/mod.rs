//! One WebSocket session: the upgrade (subprotocol, header auth, buffer sizes), a reader that
//! decodes frames and dispatches commands, and a writer task that drains the bounded outbound
//! queue ([`outbound`]), feeding many frames and flushing once.

pub mod outbound;

use crate::directory::{self, User};
use crate::error::ApiError;
use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::room::{create, lookup, Actor, Change, InviteOp, RoomCommand};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use crossroom_protocol::codec::salvage_request_id;
use crossroom_protocol::{
    close, decode, ClientFrame, Encoding, ErrorCode, Limits as WireLimits, RoomId, ServerFrame,
    UserId, PROTOCOL_VERSION, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use outbound::{CloseRequest, Outbound, OutboundReceiver};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Identifies one session on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Where a request's answer goes: the requesting session's queue (replies and pushes then keep
/// their order), or a one-shot channel for callers that are not sessions (the admin API).
pub struct Reply {
    pub id: u32,
    target: ReplyTarget,
}

enum ReplyTarget {
    Session(Outbound),
    /// Taken by the first frame sent.
    Once(std::sync::Mutex<Option<tokio::sync::oneshot::Sender<ServerFrame>>>),
}

impl Reply {
    pub fn session(out: Outbound, id: u32) -> Reply {
        Reply {
            id,
            target: ReplyTarget::Session(out),
        }
    }

    /// A reply that lands in the returned receiver.
    pub fn channel() -> (Reply, tokio::sync::oneshot::Receiver<ServerFrame>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            Reply {
                id: 0,
                target: ReplyTarget::Once(std::sync::Mutex::new(Some(tx))),
            },
            rx,
        )
    }

    /// The session behind this reply, if it comes from one.
    pub fn outbound(&self) -> Option<&Outbound> {
        match &self.target {
            ReplyTarget::Session(o) => Some(o),
            ReplyTarget::Once(_) => None,
        }
    }

    pub fn send(&self, frame: ServerFrame) {
        match &self.target {
            // A session that cannot take its reply is being closed; the client retries on
            // reconnect (posts are idempotent by client_msg_id).
            ReplyTarget::Session(out) => {
                let _ = out.send(&frame);
            }
            ReplyTarget::Once(tx) => {
                if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                    // The caller may have given up waiting; nothing to do then.
                    let _ = tx.send(frame);
                }
            }
        }
    }

    pub fn fail(&self, e: ApiError) {
        self.send(e.to_frame(Some(self.id)));
    }
}

/// Most queued frames the writer sends before one flush.
const WRITE_BATCH: usize = 64;
/// How long a close frame may take to leave before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /v1/ws`.
pub async fn ws_handler(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(refusal) = admit_upgrade(&hub, &headers) {
        return refusal.into_response();
    }
    // A token in the header authenticates before the upgrade: a bad one never gets a socket.
    let user = match bearer(&headers) {
        Some(token) => {
            match directory::authenticate(&hub.store, &hub.tokens, token, directory::now_secs())
                .await
            {
                Ok(u) if !hub.has_room_for_session(&u.id, &u.company) => {
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        ApiError::new(
                            ErrorCode::LimitExceeded,
                            "too many sessions; close one first",
                        ),
                    )
                        .into_response();
                }
                Ok(u) => Some(u),
                Err(f) => {
                    let status = if f.code == ErrorCode::Forbidden {
                        StatusCode::FORBIDDEN
                    } else {
                        StatusCode::UNAUTHORIZED
                    };
                    return (status, ApiError::new(f.code, f.message)).into_response();
                }
            }
        }
        None => None,
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
        session = tracing::field::Empty,
        user = tracing::field::Empty
    );
    ws.on_upgrade(move |socket| run(hub, socket, encoding, user).instrument(span))
}

/// What every WebSocket upgrade checks first: not draining, and an allowed origin. Cross-site
/// WebSocket hijacking: a browser page of another origin may not use a user's session. Native
/// clients send no Origin and are not affected.
pub fn admit_upgrade(hub: &Hub, headers: &HeaderMap) -> Result<(), ApiError> {
    if hub.shutdown.is_triggered() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "server is shutting down",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| hub.origins.iter().any(|a| a == o));
        if !allowed {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "this origin may not open a session",
            ));
        }
    }
    Ok(())
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
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
        max_text_chars: crate::room::rules::MAX_TEXT_CHARS as u32,
        max_replay: l.max_replay,
        max_history_page: l.max_history_page,
        max_subscriptions: l.max_subscriptions,
    }
}

/// A session from upgrade to close.
async fn run(hub: Arc<Hub>, socket: WebSocket, encoding: Encoding, user: Option<User>) {
    let _live = hub.shutdown.track();
    let (sink, mut stream) = socket.split();
    let (out, out_rx) = outbound::channel(
        encoding,
        hub.limits.outbound_queue_frames,
        hub.limits.outbound_queue_bytes,
    );
    let writer = tokio::spawn(write_loop(sink, out_rx));
    let id = hub.new_session_id();
    tracing::Span::current().record("session", id.0);

    let user = match user {
        Some(u) => {
            let _ = out.send(&hello(&hub, id, None, &u));
            Some(u)
        }
        None => Box::pin(authenticate_by_frame(&hub, id, &mut stream, &out, encoding)).await,
    };
    if let Some(user) = user {
        tracing::Span::current().record("user", tracing::field::display(&user.id));
        if !hub.register_session(&user.id, &user.company, id, out.clone()) {
            let _ = out.send(
                &ApiError::new(
                    ErrorCode::LimitExceeded,
                    "too many sessions; close one first",
                )
                .to_frame(None),
            );
            out.close(CloseRequest {
                code: close::TOO_MANY_SESSIONS,
                reason: "too many sessions",
                drain: true,
            });
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
        };
        tracing::debug!("session opened");
        session.read_loop(&mut stream).await;
        tracing::debug!("session closed");
        for room in std::mem::take(&mut session.subscriptions) {
            let cmd = RoomCommand::Unsubscribe {
                session: id,
                reply: None,
            };
            // If this cannot be delivered the actor drops us anyway on its next push.
            hub.room_send(&room, cmd).await;
        }
        hub.unregister_session(&session.user.id, &session.user.company, id);
    }
    // Whatever ended the reader, make sure the writer ends too.
    out.close(CloseRequest {
        code: close::NORMAL,
        reason: "",
        drain: false,
    });
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
) -> Option<User> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(hub.limits.auth_timeout_secs);
    let mut bad = 0u32;
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout_at(deadline, stream.next()) => m,
            _ = hub.shutdown.triggered() => {
                out.close(CloseRequest { code: close::GOING_AWAY, reason: "server shutting down", drain: true });
                return None;
            }
        };
        let bytes = match msg {
            Err(_) => {
                out.close(CloseRequest {
                    code: close::AUTH_TIMEOUT,
                    reason: "no auth frame in time",
                    drain: true,
                });
                return None;
            }
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(m))) => match frame_bytes(&m, encoding) {
                FrameBytes::Data(b) => b,
                FrameBytes::Control => continue,
                FrameBytes::WrongType => {
                    let _ = out.send(&wrong_type_error(encoding));
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
                match directory::authenticate(
                    &hub.store,
                    &hub.tokens,
                    &token,
                    directory::now_secs(),
                )
                .await
                {
                    Ok(user) => {
                        let _ = out.send(&hello(hub, session, Some(id), &user));
                        return Some(user);
                    }
                    Err(f) => {
                        let _ = out.send(&ApiError::new(f.code, f.message).to_frame(Some(id)));
                        out.close(CloseRequest {
                            code: f.close,
                            reason: f.message,
                            drain: true,
                        });
                        return None;
                    }
                }
            }
            Ok(other) => {
                let _ = out.send(
                    &ApiError::new(ErrorCode::Unauthorized, "send an auth frame first")
                        .to_frame(Some(other.id())),
                );
            }
            Err(e) => {
                bad += 1;
                let _ = out.send(&bad_frame_error(encoding, &bytes, &e));
                if bad > hub.limits.max_bad_frames {
                    out.close(protocol_error());
                    return None;
                }
            }
        }
    }
}

enum FrameBytes {
    Data(bytes::Bytes),
    Control,
    WrongType,
}

/// The payload of a data frame of the session's type.
fn frame_bytes(m: &Message, encoding: Encoding) -> FrameBytes {
    match (m, encoding) {
        (Message::Binary(b), Encoding::MsgPack) => FrameBytes::Data(b.clone()),
        (Message::Text(t), Encoding::Json) => FrameBytes::Data(bytes::Bytes::from(t.clone())),
        (Message::Binary(_) | Message::Text(_), _) => FrameBytes::WrongType,
        _ => FrameBytes::Control,
    }
}

fn wrong_type_error(encoding: Encoding) -> ServerFrame {
    let want = match encoding {
        Encoding::MsgPack => "binary frames of MessagePack (subprotocol crossroom.v1.msgpack)",
        Encoding::Json => "text frames of JSON (subprotocol crossroom.v1.json)",
    };
    ApiError::new(ErrorCode::BadFrame, format!("this session expects {want}")).to_frame(None)
}

fn bad_frame_error(encoding: Encoding, bytes: &[u8], e: &dyn std::fmt::Display) -> ServerFrame {
    ApiError::new(ErrorCode::BadFrame, format!("cannot read this frame: {e}"))
        .to_frame(salvage_request_id(encoding, bytes))
}

fn protocol_error() -> CloseRequest {
    CloseRequest {
        code: close::PROTOCOL_ERROR,
        reason: "too many bad frames",
        drain: true,
    }
}

/// An authenticated session's reader side.
struct Session {
    hub: Arc<Hub>,
    id: SessionId,
    user: User,
    out: Outbound,
    encoding: Encoding,
    /// Rooms this session subscribed to, to unsubscribe on close and to bound.
    subscriptions: HashSet<RoomId>,
    bad_frames: u32,
    /// Requests per second: a flood must not starve the others.
    bucket: TokenBucket,
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up. Refused requests in a row
/// are counted, so a client that ignores `rate_limited` can be closed.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: std::time::Instant,
    refused_in_a_row: u32,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: std::time::Instant::now(),
            refused_in_a_row: 0,
        }
    }

    /// Take a token if there is one.
    fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row += 1;
            false
        }
    }
}

impl Session {
    async fn read_loop(&mut self, stream: &mut SplitStream<WebSocket>) {
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
                    self.out.close(CloseRequest { code: close::GOING_AWAY, reason: "server shutting down", drain: true });
                    return;
                }
                _ = ping.tick() => {
                    // A silent peer (half-open TCP, frozen client) is closed; a live one
                    // answers the ping with a pong, which counts as seen.
                    if last_seen.elapsed() >= idle_timeout {
                        self.out.close(CloseRequest { code: close::PING_TIMEOUT, reason: "no pong", drain: false });
                        return;
                    }
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
                    let _ = self.out.send(
                        &ApiError::new(ErrorCode::RateLimited, "too many requests; slow down")
                            .to_frame(salvage_request_id(self.encoding, &bytes)),
                    );
                    if self.bucket.refused_in_a_row > self.hub.limits.request_burst {
                        self.out.close(CloseRequest {
                            code: close::RATE_LIMITED,
                            reason: "too many requests",
                            drain: true,
                        });
                    }
                }
                FrameBytes::Data(bytes) => match decode::<ClientFrame>(self.encoding, &bytes) {
                    // Boxed: the dispatch future is large and lives only while a request is
                    // handled, instead of inside every idle session's task.
                    Ok(frame) => Box::pin(self.dispatch(frame)).await,
                    Err(e) => {
                        let _ = self.out.send(&bad_frame_error(self.encoding, &bytes, &e));
                        self.count_bad_frame();
                    }
                },
                FrameBytes::Control => {}
                FrameBytes::WrongType => {
                    let _ = self.out.send(&wrong_type_error(self.encoding));
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

    fn reply(&self, id: u32) -> Reply {
        Reply::session(self.out.clone(), id)
    }

    async fn to_room(&self, room: &RoomId, _id: u32, cmd: RoomCommand) {
        self.hub.room_send(room, cmd).await;
    }

    async fn dispatch(&mut self, frame: ClientFrame) {
        let user = self.user.id.clone();
        match frame {
            ClientFrame::Auth { id, .. } => self
                .reply(id)
                .fail(ApiError::invalid("this session is already authenticated")),
            ClientFrame::Ping { id } => self.reply(id).send(ServerFrame::Pong {
                id,
                ts: crate::room::now_ms(),
            }),
            ClientFrame::CreateGroup {
                id,
                name,
                description,
                members,
                masters,
                add_self_as_member,
                features,
            } => {
                let req = create::GroupSpec {
                    name,
                    description,
                    members,
                    masters,
                    add_self_as_member,
                    features: features.unwrap_or_default(),
                };
                let (hub, creator, reply) = (self.hub.clone(), self.user.clone(), self.reply(id));
                tokio::spawn(async move {
                    match create::create_group(&hub, &creator, req).await {
                        Ok((room, left_out)) => {
                            reply.send(ServerFrame::RoomCreated { id, room, left_out })
                        }
                        Err(e) => reply.fail(e),
                    }
                });
            }
            ClientFrame::CreateRoom { id, name, members } => {
                let (hub, creator, reply) = (self.hub.clone(), self.user.clone(), self.reply(id));
                tokio::spawn(async move {
                    match create::create_room(&hub, &creator, &name, &members).await {
                        Ok((room, left_out)) => {
                            reply.send(ServerFrame::RoomCreated { id, room, left_out })
                        }
                        Err(e) => reply.fail(e),
                    }
                });
            }
            ClientFrame::ListRooms { id } => {
                let (hub, reply) = (self.hub.clone(), self.reply(id));
                tokio::spawn(async move {
                    match hub.store.rooms_of(&user).await {
                        Ok(rows) => reply.send(ServerFrame::Rooms {
                            id,
                            rooms: rows.into_iter().map(create::summary).collect(),
                        }),
                        Err(e) => reply.fail(e.into()),
                    }
                });
            }
            ClientFrame::Subscribe { id, room, since } => {
                if !self.subscriptions.contains(&room)
                    && self.subscriptions.len() >= self.hub.limits.max_subscriptions as usize
                {
                    return self.reply(id).fail(ApiError::new(
                        ErrorCode::LimitExceeded,
                        format!(
                            "at most {} subscriptions per connection",
                            self.hub.limits.max_subscriptions
                        ),
                    ));
                }
                self.subscriptions.insert(room.clone());
                let cmd = RoomCommand::Subscribe {
                    session: self.id,
                    user,
                    since,
                    reply: self.reply(id),
                };
                self.to_room(&room, id, cmd).await;
            }
            ClientFrame::Unsubscribe { id, room } => {
                self.subscriptions.remove(&room);
                let cmd = RoomCommand::Unsubscribe {
                    session: self.id,
                    reply: Some(self.reply(id)),
                };
                self.to_room(&room, id, cmd).await;
            }
            ClientFrame::Post {
                id,
                room,
                client_msg_id,
                text,
                attachments,
                mentions,
            } => {
                let cmd = RoomCommand::Post {
                    user,
                    client_msg_id,
                    text,
                    attachments,
                    mentions,
                    reply: self.reply(id),
                };
                self.to_room(&room, id, cmd).await;
            }
            ClientFrame::History {
                id,
                room,
                before,
                limit,
            } => {
                let cmd = RoomCommand::History {
                    user,
                    before,
                    limit,
                    reply: self.reply(id),
                };
                self.to_room(&room, id, cmd).await;
            }
            ClientFrame::MarkRead { id, room, seq } => {
                let cmd = RoomCommand::MarkRead {
                    user,
                    seq,
                    reply: self.reply(id),
                };
                self.to_room(&room, id, cmd).await;
            }
            ClientFrame::Typing { id, room } => {
                let cmd = RoomCommand::Typing {
                    user,
                    session: self.id,
                    reply: self.reply(id),
                };
                self.to_room(&room, id, cmd).await;
            }
            ClientFrame::Act { id, room, action } => {
                let cmd = RoomCommand::Act {
                    user,
                    action,
                    reply: self.reply(id),
                };
                self.to_room(&room, id, cmd).await;
            }
            ClientFrame::Query { id, room, query } => {
                let cmd = RoomCommand::Query {
                    user,
                    query,
                    reply: self.reply(id),
                };
                self.to_room(&room, id, cmd).await;
            }
            ClientFrame::GetRoom { id, room } => {
                let cmd = RoomCommand::Get {
                    user,
                    reply: self.reply(id),
                };
                self.to_room(&room, id, cmd).await;
            }
            ClientFrame::AddMembers { id, room, users } => {
                self.change(id, room, Change::AddMembers(users));
            }
            ClientFrame::RemoveMember { id, room, user } => {
                self.change(id, room, Change::RemoveMember(user));
            }
            ClientFrame::AddMasters { id, room, users } => {
                self.change(id, room, Change::AddMasters(users));
            }
            ClientFrame::RemoveMaster { id, room, user } => {
                self.change(id, room, Change::RemoveMaster(user));
            }
            ClientFrame::UpdateGroup {
                id,
                room,
                name,
                description,
                features,
            } => self.change(
                id,
                room,
                Change::Update {
                    name,
                    description,
                    features,
                },
            ),
            ClientFrame::Leave { id, room } => self.change(id, room, Change::Leave),
            ClientFrame::ConvertRoom { id, room, name } => {
                self.change(id, room, Change::Convert { name });
            }
            ClientFrame::JoinByInvite { id, token } => {
                let (hub, reply) = (self.hub.clone(), self.reply(id));
                tokio::spawn(async move {
                    let found = match hub.store.room_by_invite(&token).await {
                        Ok(found) => found,
                        Err(e) => return reply.fail(e.into()),
                    };
                    let Some((room, _)) = found else {
                        return reply.fail(ApiError::not_found(
                            "invitation link (it may have expired or been revoked)",
                        ));
                    };
                    as_user(&hub, &user, &room, reply, |actor, reply| {
                        RoomCommand::Change {
                            actor,
                            change: Change::Join { token },
                            reply,
                        }
                    })
                    .await;
                });
            }
            ClientFrame::DeleteGroup { id, room } => {
                let (hub, reply) = (self.hub.clone(), self.reply(id));
                tokio::spawn(async move {
                    as_user(&hub, &user, &room, reply, |actor, reply| {
                        RoomCommand::Delete { actor, reply }
                    })
                    .await;
                });
            }
            ClientFrame::CreateInvite {
                id,
                room,
                expires_in_secs,
            } => self.invite(id, room, InviteOp::Create { expires_in_secs }),
            ClientFrame::GetInvite { id, room } => self.invite(id, room, InviteOp::Get),
            ClientFrame::RevokeInvite { id, room } => self.invite(id, room, InviteOp::Revoke),
            ClientFrame::SendInvites { id, room, emails } => {
                let (hub, reply) = (self.hub.clone(), self.reply(id));
                tokio::spawn(async move {
                    match crate::room::invite::send_invites(&hub, &user, &room, &emails).await {
                        Ok(()) => reply.send(ServerFrame::Ok { id }),
                        Err(e) => reply.fail(e),
                    }
                });
            }
            ClientFrame::Search { id, query, limit } => {
                let (hub, reply) = (self.hub.clone(), self.reply(id));
                tokio::spawn(async move {
                    match crate::directory::search::search(&hub, &user, &query, limit).await {
                        Ok((rooms, contacts)) => reply.send(ServerFrame::SearchResults {
                            id,
                            rooms,
                            contacts,
                        }),
                        Err(e) => reply.fail(e),
                    }
                });
            }
            ClientFrame::ListContacts { id } => {
                let (hub, reply) = (self.hub.clone(), self.reply(id));
                tokio::spawn(async move {
                    match crate::directory::search::contacts(&hub, &user).await {
                        Ok(contacts) => reply.send(ServerFrame::Contacts { id, contacts }),
                        Err(e) => reply.fail(e),
                    }
                });
            }
            ClientFrame::AddContact { id, user: contact } => {
                let (hub, reply, me) = (self.hub.clone(), self.reply(id), self.user.clone());
                tokio::spawn(async move {
                    match crate::directory::search::add_contact(&hub, &me, &contact).await {
                        Ok(()) => reply.send(ServerFrame::Ok { id }),
                        Err(e) => reply.fail(e),
                    }
                });
            }
            ClientFrame::RemoveContact { id, user: contact } => {
                let (hub, reply) = (self.hub.clone(), self.reply(id));
                tokio::spawn(async move {
                    match hub.store.remove_contact(&user, &contact).await {
                        Ok(()) => reply.send(ServerFrame::Ok { id }),
                        Err(e) => reply.fail(e.into()),
                    }
                });
            }
        }
    }

    /// A room change by this session's user, decided with their directory entry as it is now.
    fn change(&self, id: u32, room: RoomId, change: Change) {
        let (hub, reply, user) = (self.hub.clone(), self.reply(id), self.user.id.clone());
        tokio::spawn(async move {
            as_user(&hub, &user, &room, reply, |actor, reply| {
                RoomCommand::Change {
                    actor,
                    change,
                    reply,
                }
            })
            .await;
        });
    }

    fn invite(&self, id: u32, room: RoomId, op: InviteOp) {
        let (hub, reply, user) = (self.hub.clone(), self.reply(id), self.user.id.clone());
        tokio::spawn(async move {
            as_user(&hub, &user, &room, reply, |actor, reply| {
                RoomCommand::Invite { actor, op, reply }
            })
            .await;
        });
    }
}

/// Send a command on behalf of `user`, looked up fresh (their permission may have changed since
/// they connected).
async fn as_user(
    hub: &Arc<Hub>,
    user: &UserId,
    room: &RoomId,
    reply: Reply,
    command: impl FnOnce(Actor, Reply) -> RoomCommand,
) {
    match lookup::person(hub, user).await {
        Ok(me) => hub.room_send(room, command(Actor::User(me), reply)).await,
        Err(e) => reply.fail(e),
    }
}

/// The close to answer a read error with: 1009 for an oversized message or frame.
fn read_error_close(e: axum::Error) -> CloseRequest {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
    let inner = e.into_inner();
    let too_big = matches!(
        inner.downcast_ref::<WsError>(),
        Some(WsError::Capacity(
            CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders
        ))
    );
    if too_big {
        CloseRequest {
            code: close::TOO_BIG,
            reason: "message too big",
            drain: false,
        }
    } else {
        tracing::debug!(error = %inner, "websocket read error");
        CloseRequest {
            code: close::PROTOCOL_ERROR,
            reason: "websocket protocol error",
            drain: false,
        }
    }
}

/// Drain the outbound queue into the socket: feed up to [`WRITE_BATCH`] frames, flush once.
/// On a close request, send what is queued if asked to drain, then the close frame.
async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: OutboundReceiver) {
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
            r = batch => match r {
                Ok((bytes, frames)) => {
                    rx.written(bytes);
                    METRICS.frames_out.inc_by(frames);
                }
                Err(_) => break CloseRequest { code: close::NORMAL, reason: "", drain: false },
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
            code: close.code,
            reason: close.reason.into(),
        })))
        .await?;
        sink.close().await
    };
    // The peer may be gone or stuck; the close is best effort within the timeout.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, farewell).await;
    rx.shut();
}
