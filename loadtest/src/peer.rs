//! One load-test connection to any of the servers we measure, behind one interface: open,
//! subscribe to a room, publish a message into it, read what arrives.
//!
//! - `crossroom`: our protocol, through the protocol crate's [`Client`]; posts are acknowledged
//!   (`posted`) once durably stored; a subscription resumes from a position.
//! - `ceiling`: `loadtest ceiling`, the same protocol without a store.
//! - `socketio`: Engine.IO v4 / Socket.IO v5 text frames against `loadtest/peers/socketio`
//!   (`join` with an acknowledgement, `post` broadcast to the room's other sockets as `msg`).
//! - `sockudo`: the Pusher protocol v7; rooms are private channels (signed with the app secret),
//!   messages are client events (`client-msg`), which Pusher servers deliver to every other
//!   subscriber of the channel.
//!
//! Only crossroom acknowledges posts and resumes subscriptions; for the others a post counts as
//! acknowledged once written to the socket.

use crossroom_protocol::client::{Client, ClientError};
use crossroom_protocol::{ClientFrame, Encoding, EventBody, Position, RoomId, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The server a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Crossroom,
    Ceiling,
    Socketio,
    Sockudo,
}

impl Target {
    pub fn parse(s: &str) -> Option<Target> {
        Some(match s {
            "crossroom" => Target::Crossroom,
            "ceiling" => Target::Ceiling,
            "socketio" => Target::Socketio,
            "sockudo" => Target::Sockudo,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::Crossroom => "crossroom",
            Target::Ceiling => "ceiling",
            Target::Socketio => "socketio",
            Target::Sockudo => "sockudo",
        }
    }

    /// Whether the protocol resumes a subscription after a position (churn needs it).
    pub fn resumes(self) -> bool {
        self == Target::Crossroom
    }

    /// Whether a connection must subscribe to a room to publish into it (Pusher client events).
    pub fn publishers_subscribe(self) -> bool {
        self == Target::Sockudo
    }

    /// Whether posts are acknowledged by the server (otherwise they count as acknowledged once
    /// written).
    pub fn acknowledges(self) -> bool {
        matches!(self, Target::Crossroom | Target::Ceiling)
    }
}

/// How to reach and authenticate with the target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Endpoint {
    pub target: Target,
    /// `msgpack` or `json` (crossroom and ceiling).
    pub json: bool,
    /// Pusher app key and secret (sockudo).
    pub app_key: String,
    pub app_secret: String,
}

/// What one read brought.
pub enum Got {
    /// A chat message; `at` is its position in the room's log (crossroom).
    Message { text: String, at: Option<Position> },
    /// Another event of the room: only its position matters (resume cursor).
    Event(Position),
    /// A post was acknowledged.
    Acked,
    /// The server could not resume and said so: the run is not clean.
    Reset,
    /// Nothing within the wait, or a frame of no interest.
    Idle,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub enum Conn {
    Native(Client),
    SocketIo {
        ws: Ws,
        /// Next acknowledgement id.
        ack: u64,
    },
    Pusher {
        ws: Ws,
        socket_id: String,
    },
    /// Between a churning connection's close and its replacement.
    Closed,
}

#[derive(Debug)]
pub struct PeerError(pub String);

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ClientError> for PeerError {
    fn from(e: ClientError) -> Self {
        PeerError(e.to_string())
    }
}

impl From<std::io::Error> for PeerError {
    fn from(e: std::io::Error) -> Self {
        PeerError(format!("io: {e}"))
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for PeerError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        PeerError(format!("websocket: {e}"))
    }
}

type Result<T> = std::result::Result<T, PeerError>;

const WAIT: Duration = Duration::from_secs(15);

/// TCP to `addr`, from `bind` when given (one of several 127.0.0.x, so a run holds more
/// connections than one source address has ports).
pub async fn dial(addr: &str, bind: Option<IpAddr>) -> Result<TcpStream> {
    let to: SocketAddr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| PeerError(format!("{addr}: no address")))?;
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = bind {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn pusher_channel(room: &str) -> String {
    format!("private-{room}")
}

impl Conn {
    /// Connect and authenticate (crossroom: the token as a Bearer header, `hello` awaited).
    pub async fn open(
        ep: &Endpoint,
        addr: &str,
        token: &str,
        bind: Option<IpAddr>,
    ) -> Result<Conn> {
        let stream = dial(addr, bind).await?;
        match ep.target {
            Target::Crossroom | Target::Ceiling => {
                let enc = if ep.json {
                    Encoding::Json
                } else {
                    Encoding::MsgPack
                };
                let url = format!("ws://{addr}/v1/ws");
                let (c, hello) = Client::connect_stream(stream, &url, Some(token), enc).await?;
                match hello {
                    Some(ServerFrame::Hello { .. }) => Ok(Conn::Native(c)),
                    other => Err(PeerError(format!("expected hello, got {other:?}"))),
                }
            }
            Target::Socketio => {
                let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
                let (mut ws, _) = tokio_tungstenite::client_async_with_config(
                    url,
                    MaybeTlsStream::Plain(stream),
                    Some(crossroom_protocol::client::small_buffers()),
                )
                .await?;
                // Engine.IO `open` (0{...}), then connect to the main namespace: 40 → 40{sid}.
                expect_text(&mut ws, |t| t.starts_with('0')).await?;
                ws.send(Message::Text("40".into())).await?;
                expect_text(&mut ws, |t| t.starts_with("40")).await?;
                Ok(Conn::SocketIo { ws, ack: 1 })
            }
            Target::Sockudo => {
                let url = format!(
                    "ws://{addr}/app/{}?protocol=7&client=crossroom-loadtest&version=1",
                    ep.app_key
                );
                let (mut ws, _) = tokio_tungstenite::client_async_with_config(
                    url,
                    MaybeTlsStream::Plain(stream),
                    Some(crossroom_protocol::client::small_buffers()),
                )
                .await?;
                let t =
                    expect_text(&mut ws, |t| t.contains("pusher:connection_established")).await?;
                let v: serde_json::Value =
                    serde_json::from_str(&t).map_err(|e| PeerError(e.to_string()))?;
                // `data` is itself a JSON string.
                let data: serde_json::Value =
                    serde_json::from_str(v["data"].as_str().unwrap_or("{}"))
                        .map_err(|e| PeerError(e.to_string()))?;
                let socket_id = data["socket_id"].as_str().unwrap_or_default().to_owned();
                Ok(Conn::Pusher { ws, socket_id })
            }
        }
    }

    /// Subscribe to `room` (crossroom: resuming after `since`). Returns what arrived before the
    /// subscription was confirmed: the replay, ending (crossroom) with the head's position.
    pub async fn subscribe(
        &mut self,
        ep: &Endpoint,
        room: &str,
        since: Option<Position>,
    ) -> Result<Vec<Got>> {
        let mut replay = Vec::new();
        match self {
            Conn::Closed => Err(closed()),
            Conn::Native(c) => {
                let id = c
                    .send(&mut ClientFrame::Subscribe {
                        id: 0,
                        room: RoomId(room.to_owned()),
                        since,
                        presence: false,
                    })
                    .await?;
                loop {
                    let f = c.next_frame(WAIT).await?;
                    match f {
                        ServerFrame::Subscribed {
                            id: got,
                            epoch,
                            head,
                            ..
                        } if got == id => {
                            // The resume point from here on, even if no event arrives.
                            replay.push(Got::Event(Position { epoch, seq: head }));
                            return Ok(replay);
                        }
                        ServerFrame::Error { code, message, .. } => {
                            return Err(PeerError(format!("subscribe: {code}: {message}")))
                        }
                        f => replay.push(native(f)?),
                    }
                }
            }
            Conn::SocketIo { ws, ack } => {
                let id = *ack;
                *ack += 1;
                let join = serde_json::json!(["join", room]).to_string();
                ws.send(Message::Text(format!("42{id}{join}").into()))
                    .await?;
                let want = format!("43{id}");
                loop {
                    let t = next_text(ws, WAIT)
                        .await?
                        .ok_or(PeerError("join: no ack".into()))?;
                    if t.starts_with(&want) {
                        return Ok(replay);
                    }
                    replay.push(socketio(ws, &t).await?);
                }
            }
            Conn::Pusher { ws, socket_id } => {
                let channel = pusher_channel(room);
                let mut mac = Hmac::<Sha256>::new_from_slice(ep.app_secret.as_bytes())
                    .map_err(|e| PeerError(e.to_string()))?;
                mac.update(format!("{socket_id}:{channel}").as_bytes());
                let auth = format!(
                    "{}:{}",
                    ep.app_key,
                    hex::encode(mac.finalize().into_bytes())
                );
                let sub = serde_json::json!({
                    "event": "pusher:subscribe",
                    "data": {"channel": channel, "auth": auth},
                });
                ws.send(Message::Text(sub.to_string().into())).await?;
                loop {
                    let t = next_text(ws, WAIT)
                        .await?
                        .ok_or(PeerError("subscribe: no confirmation".into()))?;
                    if t.contains("pusher_internal:subscription_succeeded") {
                        return Ok(replay);
                    }
                    if t.contains("pusher:error") || t.contains("subscription_error") {
                        return Err(PeerError(format!("subscribe: {t}")));
                    }
                    replay.push(pusher(ws, &t).await?);
                }
            }
        }
    }

    /// Publish `text` into `room`; `client_id` makes a crossroom post idempotent.
    pub async fn publish(&mut self, room: &str, client_id: String, text: String) -> Result<()> {
        match self {
            Conn::Closed => return Err(closed()),
            Conn::Native(c) => {
                c.send(&mut ClientFrame::Post {
                    id: 0,
                    room: RoomId(room.to_owned()),
                    client_msg_id: client_id,
                    text,
                    attachments: vec![],
                    mentions: vec![],
                })
                .await?;
            }
            Conn::SocketIo { ws, .. } => {
                let frame = serde_json::json!(["post", room, text]).to_string();
                ws.send(Message::Text(format!("42{frame}").into())).await?;
            }
            Conn::Pusher { ws, .. } => {
                let frame = serde_json::json!({
                    "event": "client-msg",
                    "channel": pusher_channel(room),
                    "data": {"text": text},
                });
                ws.send(Message::Text(frame.to_string().into())).await?;
            }
        }
        Ok(())
    }

    /// The next thing that arrives within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Got> {
        match self {
            Conn::Closed => Err(closed()),
            Conn::Native(c) => match c.next_frame(wait).await {
                Ok(f) => native(f),
                Err(ClientError::Timeout(_)) => Ok(Got::Idle),
                Err(e) => Err(e.into()),
            },
            Conn::SocketIo { ws, .. } => match next_text(ws, wait).await? {
                Some(t) => socketio(ws, &t).await,
                None => Ok(Got::Idle),
            },
            Conn::Pusher { ws, .. } => match next_text(ws, wait).await? {
                Some(t) => pusher(ws, &t).await,
                None => Ok(Got::Idle),
            },
        }
    }

    /// A round trip proving the session is still alive at the end of a run (crossroom and the
    /// ceiling: `ping` → `pong`; Pusher: `pusher:ping` → `pusher:pong`; Socket.IO has no
    /// client-initiated ping, so an open socket counts).
    pub async fn alive(&mut self) -> Result<()> {
        match self {
            Conn::Closed => Err(closed()),
            Conn::Native(c) => {
                let id = c.send(&mut ClientFrame::Ping { id: 0 }).await?;
                c.reply_to(id, WAIT).await?;
                Ok(())
            }
            Conn::SocketIo { .. } => Ok(()),
            Conn::Pusher { ws, .. } => {
                let ping = serde_json::json!({"event": "pusher:ping", "data": {}});
                ws.send(Message::Text(ping.to_string().into())).await?;
                let deadline = tokio::time::Instant::now() + WAIT;
                loop {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match next_text(ws, left).await? {
                        Some(t) if t.contains("pusher:pong") => return Ok(()),
                        Some(_) => {}
                        None => return Err(PeerError("no pusher:pong".into())),
                    }
                }
            }
        }
    }

    pub async fn close(self) {
        match self {
            Conn::Closed => {}
            Conn::Native(c) => c.close().await,
            Conn::SocketIo { mut ws, .. } | Conn::Pusher { mut ws, .. } => {
                // The peer may be gone already; nothing to do about it.
                let _ = ws.close(None).await;
            }
        }
    }
}

fn closed() -> PeerError {
    PeerError("connection closed".into())
}

fn native(f: ServerFrame) -> Result<Got> {
    Ok(match f {
        ServerFrame::Event(ev) => {
            let at = Position {
                epoch: ev.epoch,
                seq: ev.seq,
            };
            match ev.body {
                EventBody::Message { text, .. } => Got::Message { text, at: Some(at) },
                _ => Got::Event(at),
            }
        }
        ServerFrame::Posted { .. } => Got::Acked,
        ServerFrame::Reset { .. } => Got::Reset,
        ServerFrame::Error { code, message, .. } => {
            return Err(PeerError(format!("{code}: {message}")))
        }
        _ => Got::Idle,
    })
}

/// Socket.IO: `42["msg","..."]` is a message; Engine.IO ping `2` is answered with `3`.
async fn socketio(ws: &mut Ws, t: &str) -> Result<Got> {
    if t == "2" {
        ws.send(Message::Text("3".into())).await?;
        return Ok(Got::Idle);
    }
    if let Some(body) = t.strip_prefix("42") {
        let v: serde_json::Value =
            serde_json::from_str(body).map_err(|e| PeerError(e.to_string()))?;
        if v[0] == "msg" {
            return Ok(Got::Message {
                text: v[1].as_str().unwrap_or_default().to_owned(),
                at: None,
            });
        }
    }
    Ok(Got::Idle)
}

/// Pusher: a `client-msg` event is a message; `pusher:ping` is answered with `pusher:pong`.
async fn pusher(ws: &mut Ws, t: &str) -> Result<Got> {
    let v: serde_json::Value = serde_json::from_str(t).map_err(|e| PeerError(e.to_string()))?;
    match v["event"].as_str() {
        Some("client-msg") => {
            // `data` arrives as an object or as a JSON string, depending on the server.
            let data = match &v["data"] {
                serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
                d => d.clone(),
            };
            Ok(Got::Message {
                text: data["text"].as_str().unwrap_or_default().to_owned(),
                at: None,
            })
        }
        Some("pusher:ping") => {
            let pong = serde_json::json!({"event": "pusher:pong", "data": {}});
            ws.send(Message::Text(pong.to_string().into())).await?;
            Ok(Got::Idle)
        }
        Some("pusher:error") => Err(PeerError(format!("pusher:error {}", v["data"]))),
        _ => Ok(Got::Idle),
    }
}

/// The next text frame within `wait` (`None` on timeout); a close is an error.
async fn next_text(ws: &mut Ws, wait: Duration) -> Result<Option<String>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(msg) = tokio::time::timeout(left, ws.next()).await else {
            return Ok(None);
        };
        match msg {
            None => return Err(PeerError("connection closed".into())),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(t))) => return Ok(Some(t.to_string())),
            Some(Ok(Message::Close(f))) => return Err(PeerError(format!("closed: {f:?}"))),
            Some(Ok(_)) => {}
        }
    }
}

async fn expect_text(ws: &mut Ws, want: impl Fn(&str) -> bool) -> Result<String> {
    loop {
        match next_text(ws, WAIT).await? {
            Some(t) if want(&t) => return Ok(t),
            Some(_) => {}
            None => return Err(PeerError("handshake timed out".into())),
        }
    }
}
