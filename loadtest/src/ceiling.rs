//! `loadtest ceiling --listen ADDR`: the ceiling of our own stack — a minimal broadcast server on
//! plain tokio-tungstenite that speaks just enough of the crossroom protocol for the broadcast
//! scenario (`hello`, `subscribe`, `post` → `posted` + `event` to every subscriber, `ping`), with no
//! store, no rules and no limits. Measured with the same client and workload as crossroom
//! (`loadtest broadcast --target ceiling`), it says how much of the transport's cost crossroom
//! adds: durability, authorisation, bounded queues.

use crossroom_protocol::{
    encode, ClientFrame, Encoding, Event, EventBody, Limits, RoomId, ServerFrame, UserId, UserInfo,
    PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Frames queued per connection; a subscriber that falls further behind misses frames (and the
/// load tester counts them as lost).
const QUEUE: usize = 4096;
/// The WebSocket buffers crossroom uses by default (`limits.ws_read_buffer` 1 KiB,
/// `limits.ws_write_buffer` 16 KiB), so that the two pay the same transport per connection:
/// tungstenite's own defaults (a 128 KiB read buffer) would make the ceiling's memory and
/// connect cost per connection many times crossroom's.
const READ_BUFFER: usize = 1024;
const WRITE_BUFFER: usize = 16 * 1024;
/// The one epoch of the one room.
const EPOCH: u64 = 1;

#[derive(Default)]
struct Hub {
    subscribers: Mutex<Vec<(Encoding, mpsc::Sender<Message>)>>,
    seq: AtomicU64,
}

/// Serve until the process is stopped.
pub async fn serve(listen: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("ceiling listening on {}", listener.local_addr()?);
    let hub = Arc::new(Hub::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, hub.clone()));
    }
}

fn message(encoding: Encoding, frame: &ServerFrame) -> Option<Message> {
    let bytes = encode(encoding, frame).ok()?;
    Some(match encoding {
        Encoding::MsgPack => Message::Binary(bytes.into()),
        Encoding::Json => Message::Text(String::from_utf8(bytes).ok()?.into()),
    })
}

// The handshake callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
async fn connection(stream: TcpStream, hub: Arc<Hub>) {
    let mut encoding = Encoding::MsgPack;
    let chosen = &mut encoding;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER);
    let accepted = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |req: &Request, mut resp: Response| {
            let asked = req
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.split(',')
                        .map(str::trim)
                        .find_map(Encoding::from_subprotocol)
                });
            if let Some(e) = asked {
                *chosen = e;
                if let Ok(v) = e.subprotocol().parse() {
                    resp.headers_mut().insert("sec-websocket-protocol", v);
                }
            }
            Ok(resp)
        },
        Some(config),
    )
    .await;
    let Ok(ws) = accepted else { return };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    // Writer: feed what is queued, flush once.
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let hello = ServerFrame::Hello {
        id: None,
        protocol: PROTOCOL_VERSION,
        session: "s1".into(),
        user: UserInfo {
            id: UserId("ceiling@ceiling.example".into()),
            company: "ceiling.example".into(),
            name: "ceiling".into(),
            kind: "works".into(),
            company_self_registered: false,
        },
        limits: Limits {
            max_frame_bytes: 1 << 20,
            max_text_chars: 1 << 20,
            max_replay: 0,
            max_history_page: 0,
            max_subscriptions: 1,
        },
    };
    if let Some(m) = message(encoding, &hello) {
        let _ = tx.send(m).await;
    }
    while let Some(Ok(msg)) = stream.next().await {
        let bytes = match (&msg, encoding) {
            (Message::Binary(b), Encoding::MsgPack) => b.to_vec(),
            (Message::Text(t), Encoding::Json) => t.as_bytes().to_vec(),
            (Message::Close(_), _) => break,
            _ => continue,
        };
        let Ok(frame) = crossroom_protocol::decode::<ClientFrame>(encoding, &bytes) else {
            continue;
        };
        match frame {
            ClientFrame::Subscribe { id, room, .. } => {
                if let Ok(mut subs) = hub.subscribers.lock() {
                    subs.push((encoding, tx.clone()));
                }
                let head = hub.seq.load(Ordering::Relaxed);
                let reply = ServerFrame::Subscribed {
                    id,
                    room,
                    epoch: EPOCH,
                    head,
                    replayed: 0,
                };
                if let Some(m) = message(encoding, &reply) {
                    let _ = tx.send(m).await;
                }
            }
            ClientFrame::Post {
                id,
                room,
                client_msg_id,
                text,
                ..
            } => {
                let seq = hub.seq.fetch_add(1, Ordering::Relaxed) + 1;
                let ts = now_ms();
                let posted = ServerFrame::Posted {
                    id,
                    room: room.clone(),
                    epoch: EPOCH,
                    seq,
                    ts,
                    duplicate: false,
                };
                if let Some(m) = message(encoding, &posted) {
                    let _ = tx.send(m).await;
                }
                broadcast(&hub, room, seq, ts, client_msg_id, text);
            }
            ClientFrame::Ping { id } => {
                if let Some(m) = message(encoding, &ServerFrame::Pong { id, ts: now_ms() }) {
                    let _ = tx.send(m).await;
                }
            }
            _ => {}
        }
    }
    if let Ok(mut subs) = hub.subscribers.lock() {
        subs.retain(|(_, s)| !s.same_channel(&tx));
    }
    drop(tx);
    let _ = writer.await;
}

/// Encode the event once per encoding and queue it to every subscriber (never waiting).
fn broadcast(hub: &Hub, room: RoomId, seq: u64, ts: i64, client_msg_id: String, text: String) {
    let event = ServerFrame::Event(Event {
        room,
        epoch: EPOCH,
        seq,
        ts,
        author: UserId("ceiling@ceiling.example".into()),
        body: EventBody::Message {
            client_msg_id,
            text,
            attachments: Vec::new(),
            mentions: Vec::new(),
            recalled: false,
        },
    });
    let msgpack = message(Encoding::MsgPack, &event);
    let json = message(Encoding::Json, &event);
    let Ok(subs) = hub.subscribers.lock() else {
        return;
    };
    for (enc, s) in subs.iter() {
        let m = match enc {
            Encoding::MsgPack => msgpack.clone(),
            Encoding::Json => json.clone(),
        };
        if let Some(m) = m {
            let _ = s.try_send(m);
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
