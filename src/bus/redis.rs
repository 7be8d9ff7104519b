//! The Redis bus: cross-node fan-out over Redis pub/sub (cluster mode).
//!
//! - **Room events**: the store's append scripts publish every committed entry on the room's
//!   channel `cr:{<room>}:ev` in the same atomic step as the commit (`SPUBLISH` on Redis Cluster,
//!   `PUBLISH` on a single Redis). A node subscribes to the rooms it has a live actor for; the
//!   actor checks seq continuity and fills gaps from the log. Pub/sub is at-most-once, so every
//!   (re)subscription confirmation — after a reconnect too — makes the room's actor catch up from
//!   the log; and every 2 s a sweep (`crate::room::registry`) reads the heads of all the rooms the node holds (pipelined
//!   `HMGET`s, not one room load per actor), and an actor whose subscribers are behind catches up.
//! - **Node notices** on `cr:nodes`: pushes to a user's sessions wherever they are connected
//!   (`joined`, `removed`, `room_deleted`, `task_notice`), closing a user's sessions (disabled,
//!   tokens revoked), and this node's liveness probe: a stalled subscription can look healthy,
//!   so the node publishes a probe every second and is *degraded* (not ready) while its own
//!   probes stop coming back.

use super::{Bus, Inbox, PresenceSaid};
use crate::metrics::METRICS;
use crate::outbound::CloseRequest;
use crate::shutdown::Shutdown;
use crate::store::redis::{decode_published, room_channel, Conn};
use crate::store::StoreError;
use crossroom_protocol::close::CloseReason;
use crossroom_protocol::{RoomId, ServerFrame, UserId};
use redis::{PushInfo, PushKind, Value};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The channel of node notices.
const NODES: &str = "cr:nodes";
/// How often the liveness probe goes out.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A node whose own probe has not come back for this long is degraded.
const PROBE_DEADLINE: Duration = Duration::from_secs(3);

fn room_of_channel(channel: &str) -> Option<RoomId> {
    channel
        .strip_prefix("cr:{")
        .and_then(|c| c.strip_suffix("}:ev"))
        .map(|r| RoomId(r.to_owned()))
}

/// What one node tells the others.
#[derive(Serialize, Deserialize)]
struct Notice {
    from: String,
    #[serde(flatten)]
    what: What,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum What {
    Push {
        user: UserId,
        frame: Box<ServerFrame>,
    },
    Close {
        user: UserId,
        code: u16,
    },
    Probe {
        n: u64,
    },
    Online {
        user: UserId,
    },
    Offline {
        user: UserId,
    },
    PresenceSnapshot {
        users: Vec<UserId>,
    },
    PresenceAsk,
    /// The node's latest ops sample.
    Stats {
        stats: Box<crossroom_protocol::ops::Stats>,
    },
    /// An audit record the node committed.
    Audit {
        record: Box<crossroom_protocol::ops::AuditRecord>,
    },
}

/// The prefix of an ephemeral signal on a room channel (entries start with their seq).
const TYPING: &str = "!typing\n";

/// A message for the ordered publisher.
struct Outgoing {
    channel: String,
    payload: String,
    sharded: bool,
}

enum Sub {
    Subscribe(RoomId),
    Unsubscribe(RoomId),
}

pub struct RedisBus {
    node: String,
    /// Node notices and room signals, published in the order they were said by one task on a
    /// connection of its own (the store's would do, but keeping them apart keeps a slow store
    /// from delaying notices): a `removed` never overtakes the `joined` before it, an
    /// `offline` never its `online`.
    ///
    /// Sends to `outgoing` and `subs` fail only once the node is shutting down (their tasks
    /// ended): what is said then has nobody left to hear it, so those results are ignored.
    outgoing: mpsc::UnboundedSender<Outgoing>,
    subs: mpsc::UnboundedSender<Sub>,
    sharded: bool,
    /// Set while this node's own probes come back in time.
    healthy: AtomicBool,
    probes_sent: AtomicU64,
    probe_seen_at: std::sync::Mutex<Instant>,
    /// The subscribed connection, which the probe pings: a connection that nothing sends on
    /// would otherwise never notice it broke, nor reconnect and resubscribe.
    listen: Conn,
    /// Where incoming events and notices go; set once by [`RedisBus::attach`].
    inbox: OnceLock<Weak<dyn Inbox>>,
    /// The listener's pushes, until [`RedisBus::attach`] starts the loop that reads them.
    pushes: std::sync::Mutex<Option<mpsc::UnboundedReceiver<PushInfo>>>,
    shutdown: Shutdown,
}

impl RedisBus {
    /// Connect (same URLs as the store) and subscribe to the node notices. Nothing is delivered
    /// until [`RedisBus::attach`] names where it goes.
    pub async fn start(urls: &[String], shutdown: Shutdown) -> Result<Arc<RedisBus>, StoreError> {
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let listen = Conn::connect_with_pushes(urls, push_tx).await?;
        let publish = Conn::connect(urls).await?;
        let sharded = matches!(listen, Conn::Cluster(_));
        let (subs_tx, subs_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        shutdown.spawn_background(publisher(publish, out_rx));
        let bus = Arc::new(RedisBus {
            node: crate::random::token(),
            outgoing: out_tx,
            subs: subs_tx,
            sharded,
            healthy: AtomicBool::new(true),
            probes_sent: AtomicU64::new(0),
            probe_seen_at: std::sync::Mutex::new(Instant::now()),
            listen: listen.clone(),
            inbox: OnceLock::new(),
            pushes: std::sync::Mutex::new(Some(push_rx)),
            shutdown,
        });
        let mut conn = listen.clone();
        subscribe_plain(&mut conn, NODES).await?;
        bus.shutdown
            .spawn_background(subscriptions(conn, sharded, subs_rx));
        Ok(bus)
    }

    /// Deliver incoming room events and node notices to `inbox` from now on, and start the
    /// liveness probe. Called once, when the node is assembled.
    pub fn attach(self: &Arc<Self>, inbox: Weak<dyn Inbox>) {
        if self.inbox.set(inbox).is_err() {
            return;
        }
        let Some(rx) = self.pushes.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        self.shutdown
            .spawn_background(listen_loop(Arc::downgrade(self), rx));
        self.shutdown
            .spawn_background(probe_loop(Arc::downgrade(self)));
        // Whoever is online elsewhere: every node answers with its snapshot.
        self.notify(What::PresenceAsk);
    }

    /// This node's id in notices.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `SPUBLISH` on a cluster, `PUBLISH` on a single server.
    pub fn sharded(&self) -> bool {
        self.sharded
    }

    fn notify(&self, what: What) {
        let Ok(payload) = serde_json::to_string(&Notice {
            from: self.node.clone(),
            what,
        }) else {
            return;
        };
        let _ = self.outgoing.send(Outgoing {
            channel: NODES.to_owned(),
            payload,
            sharded: false,
        });
    }
}

/// Publish what the node says, in order. A failed publish is logged and dropped: notices are
/// at-most-once, and what they carry is also found by the re-verification and catch-up that
/// follow a gap.
async fn publisher(mut conn: Conn, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(m) = rx.recv().await {
        let command = if m.sharded { "SPUBLISH" } else { "PUBLISH" };
        let sent: Result<Value, _> = redis::cmd(command)
            .arg(&m.channel)
            .arg(&m.payload)
            .query_async(&mut conn)
            .await;
        if let Err(e) = sent {
            tracing::warn!(channel = %m.channel, error = %e, "cannot publish");
        }
    }
}

impl Bus for RedisBus {
    fn is_cluster(&self) -> bool {
        true
    }

    /// False while this node's probes do not come back: its subscription may have stalled.
    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Receive `room`'s events (this node has an actor for it).
    fn subscribe(&self, room: &RoomId) {
        let _ = self.subs.send(Sub::Subscribe(room.clone()));
    }

    fn unsubscribe(&self, room: &RoomId) {
        let _ = self.subs.send(Sub::Unsubscribe(room.clone()));
    }

    /// Push `frame` to `user`'s sessions on the other nodes.
    fn push(&self, user: &UserId, frame: &ServerFrame) {
        self.notify(What::Push {
            user: user.clone(),
            frame: Box::new(frame.clone()),
        });
    }

    /// Close `user`'s sessions on the other nodes.
    fn close_sessions(&self, user: &UserId, code: u16) {
        self.notify(What::Close {
            user: user.clone(),
            code,
        });
    }

    fn presence(&self, user: &UserId, online: bool) {
        let user = user.clone();
        self.notify(match online {
            true => What::Online { user },
            false => What::Offline { user },
        });
    }

    fn presence_snapshot(&self, users: Vec<UserId>) {
        self.notify(What::PresenceSnapshot { users });
    }

    fn ops_stats(&self, stats: &crossroom_protocol::ops::Stats) {
        self.notify(What::Stats {
            stats: Box::new(stats.clone()),
        });
    }

    fn ops_audit(&self, record: &crossroom_protocol::ops::AuditRecord) {
        self.notify(What::Audit {
            record: Box::new(record.clone()),
        });
    }

    /// On the room's own channel, so only nodes with an actor for it hear it.
    fn typing(&self, room: &RoomId, user: &UserId) {
        let _ = self.outgoing.send(Outgoing {
            channel: room_channel(room),
            payload: format!("{TYPING}{}\n{}", self.node, user.0),
            sharded: self.sharded,
        });
    }
}

/// A typing signal's node and user.
fn typing_of(payload: &str) -> Option<(&str, UserId)> {
    let (node, user) = payload.strip_prefix(TYPING)?.split_once('\n')?;
    Some((node, UserId(user.to_owned())))
}

async fn subscribe_plain(conn: &mut Conn, channel: &str) -> Result<(), StoreError> {
    match conn {
        Conn::Single(c) => c.subscribe(channel).await,
        Conn::Cluster(c) => c.subscribe(channel).await,
    }
    .map_err(StoreError::backend)
}

/// Apply subscription changes in order.
async fn subscriptions(mut conn: Conn, sharded: bool, mut rx: mpsc::UnboundedReceiver<Sub>) {
    while let Some(sub) = rx.recv().await {
        let result = match (&mut conn, sub) {
            (Conn::Single(c), Sub::Subscribe(r)) => c.subscribe(room_channel(&r)).await,
            (Conn::Single(c), Sub::Unsubscribe(r)) => c.unsubscribe(room_channel(&r)).await,
            (Conn::Cluster(c), Sub::Subscribe(r)) if sharded => {
                c.ssubscribe(room_channel(&r)).await
            }
            (Conn::Cluster(c), Sub::Unsubscribe(r)) if sharded => {
                c.sunsubscribe(room_channel(&r)).await
            }
            (Conn::Cluster(c), Sub::Subscribe(r)) => c.subscribe(room_channel(&r)).await,
            (Conn::Cluster(c), Sub::Unsubscribe(r)) => c.unsubscribe(room_channel(&r)).await,
        };
        if let Err(e) = result {
            // The connection resubscribes what it tracks once it is back; actors catch up
            // from the log on each confirmation.
            tracing::warn!(error = %e, "bus subscription change failed");
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

async fn listen_loop(bus: Weak<RedisBus>, mut rx: mpsc::UnboundedReceiver<PushInfo>) {
    while let Some(push) = rx.recv().await {
        let Some(bus) = bus.upgrade() else { return };
        let Some(inbox) = bus.inbox.get().and_then(Weak::upgrade) else {
            return;
        };
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let (Some(channel), Some(payload)) = (
                    push.data.first().and_then(text),
                    push.data.get(1).and_then(text),
                ) else {
                    continue;
                };
                if let Some(room) = room_of_channel(&channel) {
                    if let Some((node, user)) = typing_of(&payload) {
                        if node != bus.node {
                            inbox.room_typing(&room, user);
                        }
                        continue;
                    }
                    match decode_published(&room, &payload) {
                        Some(event) => {
                            let lag = crate::clock::now_ms().saturating_sub(event.ts);
                            METRICS
                                .bus_lag
                                .observe(Duration::from_millis(lag.max(0) as u64));
                            inbox.room_event(event)
                        }
                        None => tracing::warn!(%room, "undecodable bus event"),
                    }
                } else if channel == NODES {
                    on_notice(&bus, &inbox, &payload);
                }
            }
            PushKind::Subscribe | PushKind::SSubscribe => {
                if let Some(room) = push
                    .data
                    .first()
                    .and_then(text)
                    .and_then(|c| room_of_channel(&c))
                {
                    // First subscription, or again after a reconnect: whatever was published
                    // meanwhile is in the log.
                    METRICS.bus_resubscriptions.inc();
                    inbox.room_catch_up(&room);
                } else if push.data.first().and_then(text).as_deref() == Some(NODES) {
                    // Listening again: probe now rather than at the next tick, to be ready soon.
                    let n = bus.probes_sent.fetch_add(1, Ordering::Relaxed);
                    bus.notify(What::Probe { n });
                }
            }
            PushKind::Disconnection => {
                // Deaf until our own probe comes back through the new connection.
                bus.healthy.store(false, Ordering::Relaxed);
                tracing::warn!("bus connection lost; reconnecting (degraded until it delivers)");
            }
            _ => {}
        }
    }
}

fn on_notice(bus: &RedisBus, inbox: &Arc<dyn Inbox>, payload: &str) {
    let Ok(notice) = serde_json::from_str::<Notice>(payload) else {
        tracing::warn!("undecodable node notice");
        return;
    };
    if notice.from != bus.node {
        let node = notice.from.as_str();
        match notice.what {
            What::Push { user, frame } => inbox.push_local(&user, &frame),
            What::Close { user, code } => inbox.close_local(&user, close_request(code)),
            What::Probe { .. } => inbox.presence(node, PresenceSaid::Alive),
            What::Online { user } => inbox.presence(node, PresenceSaid::Online(user)),
            What::Offline { user } => inbox.presence(node, PresenceSaid::Offline(user)),
            What::PresenceSnapshot { users } => inbox.presence(node, PresenceSaid::Snapshot(users)),
            What::PresenceAsk => inbox.presence(node, PresenceSaid::Ask),
            What::Stats { stats } => inbox.node_stats(*stats),
            What::Audit { record } => inbox.node_audit(*record),
        }
        return;
    }
    if let What::Probe { .. } = notice.what {
        if let Ok(mut t) = bus.probe_seen_at.lock() {
            *t = Instant::now();
        }
        // Our own probe is the clock by which silent nodes are found.
        inbox.presence(&bus.node, PresenceSaid::Alive);
        if !bus.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!("bus healthy again");
            // Presence notices sent meanwhile are lost both ways: ask for everyone's, and
            // (bus_recovered) send ours.
            bus.notify(What::PresenceAsk);
            inbox.bus_recovered();
        }
    }
}

/// A close another node asks for by its code.
fn close_request(code: u16) -> CloseRequest {
    CloseReason::from_code(code).into()
}

/// Publish a probe every second; degraded while our own stop coming back.
async fn probe_loop(bus: Weak<RedisBus>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(bus) = bus.upgrade() else { return };
        if bus.shutdown.is_triggered() {
            return;
        }
        let n = bus.probes_sent.fetch_add(1, Ordering::Relaxed);
        bus.notify(What::Probe { n });
        // A command on the subscribed connection makes a broken one reconnect (and resubscribe
        // everything, each room then catching up): without it, nothing would ever ask.
        let mut listen = bus.listen.clone();
        let cmd = ::redis::cmd("PING");
        let ping = cmd.query_async::<Value>(&mut listen);
        if let Ok(Err(e)) = tokio::time::timeout(PROBE_EVERY, ping).await {
            tracing::debug!(error = %e, "bus ping failed; the connection reconnects");
        }
        let silent = bus
            .probe_seen_at
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        if silent > PROBE_DEADLINE && bus.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                silent_ms = silent.as_millis() as u64,
                "bus degraded: our own probes do not come back"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossroom_protocol::RoomId;

    #[test]
    fn room_channels_round_trip() {
        let r = RoomId("r_abc".into());
        assert_eq!(room_channel(&r), "cr:{r_abc}:ev");
        assert_eq!(room_of_channel(&room_channel(&r)), Some(r));
        assert_eq!(room_of_channel(NODES), None);
    }

    #[test]
    fn events_decode_from_the_published_form() {
        let r = RoomId("r_abc".into());
        let payload = "42\n9007199254740991\n{\"ts\":5,\"author\":\"a@x.example\",\"body\":{\"kind\":\"message\",\"client_msg_id\":\"c\",\"text\":\"hi\"}}";
        let e = decode_published(&r, payload).expect("decodes");
        assert_eq!((e.seq, e.epoch, e.ts), (42, 9_007_199_254_740_991, 5));
        assert!(decode_published(&r, "x\n1\n{}").is_none());
    }
}
