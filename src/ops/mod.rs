//! The ops stream for dashboards (`GET /v1/ops`, operator key): a `stats` frame every second and
//! the audit records as they are written, filterable by company and kind. Frames are JSON text
//! ([`crossroom_protocol::ops`]).
//!
//! One sampler task per node turns the [`METRICS`] counters and the hub's state into a
//! [`Stats`] each second and publishes it on a watch channel; audit records go out on a broadcast
//! channel. Every ops connection reads both, so a dashboard costs the node nothing per second but
//! its own frame. The feeds themselves ([`feed`]) sit low, so room actors can publish to them.

pub mod backlog;
pub mod feed;
pub mod filter;
pub mod names;

use filter::Filter;

pub use feed::{OpsFeed, RoomStats};

use crate::directory::keys::is_operator_key;
use crate::hub::Hub;
use crate::metrics::{LatencyReading, METRICS};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use crossroom_protocol::close::CloseReason;
use crossroom_protocol::ops::{OpsClientFrame, OpsServerFrame, Rates, RoomActivity, Stats, Totals};
use crossroom_protocol::{CompanyId, ErrorCode, RoomId};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// How often a `stats` frame is sampled.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Rooms listed in `busiest_rooms`.
const BUSIEST: usize = 10;
/// A dashboard that does not take a frame within this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame a dashboard may send.
const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// Sample the node every [`INTERVAL`] until shutdown.
pub fn spawn_sampler(hub: Arc<Hub>) {
    let shutdown = hub.shutdown.clone();
    shutdown.spawn_background(async move {
        let mut sampler = Sampler::new();
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = hub.shutdown.triggered() => return,
            }
            let stats = sampler.sample(&hub);
            hub.ops.set_stats(stats);
        }
    });
}

struct Sampler {
    at: Instant,
    totals: Totals,
    commit: LatencyReading,
    fanout: LatencyReading,
    rooms: HashMap<RoomId, u64>,
}

impl Sampler {
    fn new() -> Sampler {
        Sampler {
            at: Instant::now(),
            totals: totals(),
            commit: METRICS.commit.read(),
            fanout: METRICS.fanout.read(),
            rooms: HashMap::new(),
        }
    }

    fn sample(&mut self, hub: &Hub) -> Stats {
        let now = Instant::now();
        let secs = now.duration_since(self.at).as_secs_f64().max(0.001);
        let totals = totals();
        let rate = |a: u64, b: u64| round2(a.saturating_sub(b) as f64 / secs);
        let per_sec = Rates {
            frames_in: rate(totals.frames_in, self.totals.frames_in),
            frames_out: rate(totals.frames_out, self.totals.frames_out),
            deliveries: rate(totals.deliveries, self.totals.deliveries),
            messages: rate(totals.messages, self.totals.messages),
            entries: rate(totals.entries, self.totals.entries),
        };
        let commit = METRICS.commit.read();
        let fanout = METRICS.fanout.read();
        let mut rooms = HashMap::with_capacity(self.rooms.len());
        let mut busiest = Vec::new();
        for (room, stats) in hub.rooms.stats() {
            let entries = stats.entries.load(Ordering::Relaxed);
            let before = self.rooms.get(&room).copied().unwrap_or(0);
            if entries > before {
                busiest.push(RoomActivity {
                    room: room.clone(),
                    name: None,
                    events_per_sec: rate(entries, before),
                    subscribers: stats.subscribers.load(Ordering::Relaxed),
                });
            }
            rooms.insert(room, entries);
        }
        busiest.sort_by(|a, b| b.events_per_sec.total_cmp(&a.events_per_sec));
        busiest.truncate(BUSIEST);
        let stats = Stats {
            node: hub.node.clone(),
            ts: crate::clock::now_ms(),
            uptime_secs: hub.ops.uptime().as_secs(),
            connections: hub.shutdown.live_connections() as u64,
            sessions: hub.sessions.count() as u64,
            rooms: hub.rooms.active() as u64,
            sessions_by_company: hub
                .sessions
                .by_company()
                .into_iter()
                .map(|(c, n)| (c, n as u64))
                .collect(),
            per_sec,
            commit_ms: commit.since(&self.commit),
            fanout_ms: fanout.since(&self.fanout),
            busiest_rooms: busiest,
            totals: totals.clone(),
            cluster: None,
        };
        *self = Sampler {
            at: now,
            totals,
            commit,
            fanout,
            rooms,
        };
        stats
    }
}

fn totals() -> Totals {
    let m = &*METRICS;
    Totals {
        frames_in: m.frames_in.get(),
        frames_out: m.frames_out.get(),
        deliveries: m.deliveries.get(),
        messages: m.messages.get(),
        entries: m.entries.get(),
        queue_drops: m.queue_drops.get(),
        slow_consumers: m.slow_consumers.get(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `?companies=a.example,b.example&kinds=member_removed,deleted` (both optional).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OpsQuery {
    companies: Option<String>,
    kinds: Option<String>,
}

fn split_list(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `GET /v1/ops`.
pub async fn handler(
    State(hub): State<Arc<Hub>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<OpsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    use crate::session::refuse_upgrade;
    if let Err((reason, refusal)) = crate::session::admit_upgrade(&hub, &headers) {
        return refuse_upgrade(peer, None, reason, refusal);
    }
    let authed = match crate::directory::token::bearer(&headers) {
        Some(key) if is_operator_key(&hub.operator_key, key) => true,
        Some(_) => {
            crate::metrics::METRICS.auth_failed("ops", "wrong_key");
            let e = crate::error::ApiError::new(ErrorCode::Unauthorized, "not the operator key");
            return refuse_upgrade(peer, None, "auth", e);
        }
        None => false,
    };
    let filter = Filter {
        companies: split_list(q.companies.as_deref())
            .into_iter()
            .map(CompanyId)
            .collect(),
        kinds: split_list(q.kinds.as_deref()),
    };
    ws.max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| run(hub, socket, authed, filter))
}

type Sink = SplitSink<WebSocket, Message>;

async fn send(sink: &mut Sink, frame: &OpsServerFrame) -> bool {
    let Ok(text) = serde_json::to_string(frame) else {
        return false;
    };
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

async fn close_with(sink: &mut Sink, reason: CloseReason) {
    let frame = Message::Close(Some(CloseFrame {
        code: reason.code(),
        reason: reason.text().into(),
    }));
    // Best effort: the socket closes right after, whether the reason reached the peer or not.
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(frame)).await;
}

fn error(code: ErrorCode, message: impl Into<String>) -> OpsServerFrame {
    OpsServerFrame::Error {
        code,
        message: message.into(),
        skipped: None,
    }
}

async fn run(hub: Arc<Hub>, socket: WebSocket, authed: bool, mut filter: Filter) {
    let _live = hub.shutdown.track();
    METRICS.ops_stream_opened();
    let _open = scopeguard(|| METRICS.ops_stream_closed());
    let (mut sink, mut stream) = socket.split();

    if !authed {
        let wait = Duration::from_secs(hub.limits.auth_timeout_secs);
        let first = tokio::time::timeout(wait, stream.next()).await;
        let ok = match first {
            Ok(Some(Ok(Message::Text(t)))) => matches!(
                serde_json::from_str::<OpsClientFrame>(&t),
                Ok(OpsClientFrame::Auth { token }) if is_operator_key(&hub.operator_key, &token)
            ),
            Err(_) => {
                close_with(&mut sink, CloseReason::AuthTimeout).await;
                return;
            }
            _ => false,
        };
        if !ok {
            send(
                &mut sink,
                &error(
                    ErrorCode::Unauthorized,
                    "send {\"type\":\"auth\",\"token\":\"<operator key>\"} first",
                ),
            )
            .await;
            close_with(&mut sink, CloseReason::Unauthorized).await;
            return;
        }
    }

    let mut stats = hub.ops.watch_stats();
    let mut audit = hub.ops.watch_audit();
    let hello = |f: &Filter| OpsServerFrame::Hello {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        interval_ms: INTERVAL.as_millis() as u64,
        companies: f.companies.clone(),
        kinds: f.kinds.clone(),
    };
    if !send(&mut sink, &hello(&filter)).await {
        return;
    }
    tracing::info!("ops stream opened");
    let mut names = names::Names::default();
    loop {
        let frame = tokio::select! {
            _ = hub.shutdown.triggered() => {
                close_with(&mut sink, CloseReason::GoingAway).await;
                return;
            }
            changed = stats.changed() => match changed {
                Ok(()) => OpsServerFrame::Stats((**stats.borrow_and_update()).clone()),
                Err(_) => return,
            },
            record = audit.recv() => match record {
                Ok(r) if filter.matches(&r) => OpsServerFrame::Audit((*r).clone()),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => OpsServerFrame::Error {
                    code: ErrorCode::LimitExceeded,
                    message: format!("this stream fell behind and skipped {n} audit records; read them with GET /v1/admin/audit"),
                    skipped: Some(n),
                },
                Err(broadcast::error::RecvError::Closed) => return,
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<OpsClientFrame>(&t) {
                    Ok(OpsClientFrame::Filter { companies, kinds }) => {
                        filter = Filter { companies, kinds };
                        hello(&filter)
                    }
                    Ok(OpsClientFrame::Auth { .. }) => error(ErrorCode::InvalidArgument, "already authenticated"),
                    Ok(OpsClientFrame::Backlog { before, limit }) => {
                        let limit = limit.unwrap_or(backlog::DEFAULT_LIMIT);
                        match backlog::page(&*hub.store, &filter, before, limit).await {
                            Ok((records, next)) => OpsServerFrame::Backlog { records, next },
                            Err(e) => error(ErrorCode::Unavailable, format!("cannot read the audit log now: {e}")),
                        }
                    }
                    Err(e) => error(ErrorCode::BadFrame, format!("cannot read this frame: {e}")),
                },
                Some(Ok(Message::Binary(_))) => error(ErrorCode::BadFrame, "the ops stream speaks JSON text frames"),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return,
            },
        };
        let mut frame = frame;
        names.dress(&*hub.store, &mut frame).await;
        if !send(&mut sink, &frame).await {
            return;
        }
    }
}

/// Run `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_in_the_query_string() {
        assert_eq!(
            split_list(Some(" a.example, ,b.example,")),
            vec!["a.example", "b.example"]
        );
        assert!(split_list(None).is_empty());
    }
}
