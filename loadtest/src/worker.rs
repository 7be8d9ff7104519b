//! `loadtest worker JOB.json`: one client process of a run. The parent (`run.rs`) splits a
//! run's connections into jobs, one per process, so a run goes past one process's open-file
//! limit; each worker holds its share and talks to the parent in lines:
//!
//! ```text
//! worker → parent   connecting OPENED FAILED every second while connections open
//! worker → parent   ready OPENED FAILED      every connection opened and subscribed (or failed)
//! parent → worker   go                       start publishing and churning
//! worker → parent   progress DELIVERED SENT ERRORS   every second (totals so far)
//! worker → parent   published                this worker's publishers are done
//! parent → worker   end                      every worker published: read for a grace period
//! worker → parent   report {json}            what this worker saw, then it exits
//! ```

use crate::hist::Hist;
use crate::peer::{Conn, Endpoint, Got};
use crossroom_protocol::Position;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

/// After every publisher finished, connections keep reading until nothing has arrived at this
/// worker for this long (so a server running late is measured late, not lossy)...
pub const GRACE: Duration = Duration::from_secs(3);
/// ...but no longer than this after the end: what has not arrived by then is lost.
pub const LATEST: Duration = Duration::from_secs(60);
/// Connections being opened at once per worker (so the server's accept backlog keeps up).
const OPENING: usize = 128;

/// One worker's share of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub endpoint: Endpoint,
    /// Messages per second per publishing connection (0: nobody publishes).
    pub rate: f64,
    /// Padding per message, bytes.
    pub size: usize,
    pub duration_ms: u64,
    /// Each churning connection closes and resumes once per period.
    pub churn_period_ms: u64,
    /// Source addresses, used in turn by connection id.
    pub bind: Vec<IpAddr>,
    pub conns: Vec<ConnSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnSpec {
    /// Unique in the run; messages carry it as `p=`.
    pub id: u32,
    /// `host:port` of the node this connection uses.
    pub addr: String,
    pub token: String,
    pub subscribe: Option<String>,
    pub publish: Option<String>,
    /// Churning: the offset of this connection's first close-and-resume after `go`.
    pub churn_offset_ms: Option<u64>,
}

/// What a worker saw. Counts are summed by the parent; `received` lets it compute what was lost.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub opened: u64,
    pub open_failed: u64,
    /// Connections that failed during the run, or did not answer the final round trip.
    pub dropped: u64,
    /// The first few errors, for the operator.
    pub errors: Vec<String>,
    /// Messages sent, per publishing connection id.
    pub sent: BTreeMap<u32, u64>,
    pub acked: u64,
    /// Distinct messages received from others, per subscribing connection id.
    pub received: BTreeMap<u32, u64>,
    pub delivered: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub resets: u64,
    /// Live deliveries (not replays), latency from the publisher's timestamp.
    pub latency: Hist,
    /// The same, per second since `go`.
    pub per_second: Vec<Hist>,
    pub reconnects: u64,
    pub reconnect_failed: u64,
    /// Connect + authenticate + resume until `subscribed`.
    pub reconnect_latency: Hist,
    /// Messages delivered by resumes (sent while the connection was away).
    pub replayed: u64,
    /// Requests the server refused `rate_limited`, and connections it closed 4002 (too many
    /// requests): the run measured the server's per-connection rate limit, not its capacity.
    pub rate_limited: u64,
}

impl Report {
    pub fn merge(&mut self, o: Report) {
        self.opened += o.opened;
        self.open_failed += o.open_failed;
        self.dropped += o.dropped;
        for e in o.errors {
            if self.errors.len() < 10 {
                self.errors.push(e);
            }
        }
        self.sent.extend(o.sent);
        self.acked += o.acked;
        self.received.extend(o.received);
        self.delivered += o.delivered;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.resets += o.resets;
        self.latency.merge(&o.latency);
        if self.per_second.len() < o.per_second.len() {
            self.per_second.resize(o.per_second.len(), Hist::default());
        }
        for (i, h) in o.per_second.iter().enumerate() {
            self.per_second[i].merge(h);
        }
        self.reconnects += o.reconnects;
        self.reconnect_failed += o.reconnect_failed;
        self.reconnect_latency.merge(&o.reconnect_latency);
        self.replayed += o.replayed;
        self.rate_limited += o.rate_limited;
    }

    fn error(&mut self, what: String) {
        if what.contains("rate_limited") || what.contains("code Some(4002)") {
            self.rate_limited += 1;
        }
        if self.errors.len() < 10 {
            self.errors.push(what);
        }
    }
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Parse `t=<µs> p=<id> n=<number> ...`.
pub fn parse_message(text: &str) -> (u64, u32, u64) {
    let (mut t, mut p, mut n) = (0, 0, 0);
    for part in text.split(' ').take(3) {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse().unwrap_or(0),
            Some(("p", v)) => p = v.parse().unwrap_or(0),
            Some(("n", v)) => n = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    (t, p, n)
}

struct Shared {
    /// µs when `go` arrived (0 before).
    go_at: AtomicU64,
    /// µs when `end` arrived (0 before).
    end_at: AtomicU64,
    /// Changes once, at `end`: idle connections sleep until then instead of polling.
    ended: watch::Sender<bool>,
    delivered: AtomicU64,
    /// Messages published so far, and connections that ended with an error (progress lines).
    sent: AtomicU64,
    errors: AtomicU64,
    /// µs of the last delivery to any connection of this worker.
    last_delivery: AtomicU64,
    publishing: AtomicUsize,
    published: tokio::sync::Notify,
}

pub async fn main(job_path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(job_path).map_err(|e| format!("{job_path}: {e}"))?;
    let job: Arc<Job> = Arc::new(serde_json::from_str(&text).map_err(|e| e.to_string())?);
    let publishers = job
        .conns
        .iter()
        .filter(|c| c.publish.is_some() && job.rate > 0.0)
        .count();
    let shared = Arc::new(Shared {
        go_at: AtomicU64::new(0),
        end_at: AtomicU64::new(0),
        ended: watch::channel(false).0,
        delivered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        last_delivery: AtomicU64::new(0),
        publishing: AtomicUsize::new(publishers),
        published: tokio::sync::Notify::new(),
    });
    let (go_tx, go_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel(job.conns.len().max(1));
    let opening = Arc::new(Semaphore::new(OPENING));
    let mut tasks = Vec::new();
    for spec in &job.conns {
        tasks.push(tokio::spawn(connection(
            spec.clone(),
            job.clone(),
            shared.clone(),
            opening.clone(),
            ready_tx.clone(),
            go_rx.clone(),
        )));
    }
    drop(ready_tx);
    let (mut opened, mut failed) = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            ok = ready_rx.recv() => match ok {
                Some(true) => opened += 1,
                Some(false) => failed += 1,
                None => break,
            },
            _ = tick.tick() => println!("connecting {opened} {failed}"),
        }
    }
    println!("ready {opened} {failed}");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    wait_for(&mut lines, "go").await?;
    shared.go_at.store(now_micros(), Ordering::Release);
    let _ = go_tx.send(true);
    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                println!(
                    "progress {} {} {}",
                    shared.delivered.load(Ordering::Relaxed),
                    shared.sent.load(Ordering::Relaxed),
                    shared.errors.load(Ordering::Relaxed)
                );
            }
        })
    };
    while shared.publishing.load(Ordering::Acquire) > 0 {
        // `notify_waiters` may fire between the check and the wait: poll as a fallback.
        let _ = tokio::time::timeout(Duration::from_millis(200), shared.published.notified()).await;
    }
    println!("published");
    wait_for(&mut lines, "end").await?;
    shared.end_at.store(now_micros(), Ordering::Release);
    shared.ended.send_replace(true);
    let mut report = Report::default();
    for t in tasks {
        report.merge(t.await.map_err(|e| e.to_string())?);
    }
    progress.abort();
    println!(
        "report {}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

async fn wait_for(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>,
    word: &str,
) -> Result<(), String> {
    loop {
        match lines.next_line().await {
            Ok(Some(l)) if l.trim() == word => return Ok(()),
            Ok(Some(_)) => {}
            _ => return Err(format!("parent went away before '{word}'")),
        }
    }
}

/// What one connection tracks about what it receives.
struct Inbox {
    me: u32,
    /// Whether this connection is a subscriber whose messages count.
    counts: bool,
    /// Highest message number seen per publisher.
    last: HashMap<u32, u64>,
    cursor: Option<Position>,
    distinct: u64,
}

impl Inbox {
    /// Account for one arrival; `live` deliveries are timed.
    fn take(&mut self, got: Got, live: bool, r: &mut Report, sh: &Shared) {
        match got {
            Got::Message { text, at } => {
                if at.is_some() {
                    self.cursor = at;
                }
                let (t, p, n) = parse_message(&text);
                if p == self.me || !self.counts {
                    return;
                }
                r.delivered += 1;
                sh.delivered.fetch_add(1, Ordering::Relaxed);
                sh.last_delivery.store(now_micros(), Ordering::Relaxed);
                let last = self.last.entry(p).or_insert(0);
                if n <= *last {
                    if n == *last {
                        r.duplicated += 1;
                    } else {
                        r.out_of_order += 1;
                    }
                } else {
                    if n > *last + 1 {
                        r.error(format!(
                            "connection {}: message {n} of {p} came after {} ({})",
                            self.me,
                            *last,
                            if live { "live" } else { "replayed" }
                        ));
                    }
                    *last = n;
                    self.distinct += 1;
                }
                if live {
                    let now = now_micros();
                    let latency = now.saturating_sub(t);
                    r.latency.record(latency);
                    let go = sh.go_at.load(Ordering::Relaxed);
                    let second = (now.saturating_sub(go) / 1_000_000) as usize;
                    if second < 3600 {
                        if r.per_second.len() <= second {
                            r.per_second.resize(second + 1, Hist::default());
                        }
                        r.per_second[second].record(latency);
                    }
                } else {
                    r.replayed += 1;
                }
            }
            Got::Event(at) => self.cursor = Some(at),
            Got::Acked => r.acked += 1,
            Got::Reset => r.resets += 1,
            Got::Idle => {}
        }
    }
}

async fn open(
    job: &Job,
    spec: &ConnSpec,
    since: Option<Position>,
) -> Result<(Conn, Vec<Got>), String> {
    let bind = match job.bind.len() {
        0 => None,
        n => Some(job.bind[spec.id as usize % n]),
    };
    let mut conn = Conn::open(&job.endpoint, &spec.addr, &spec.token, bind)
        .await
        .map_err(|e| format!("open {}: {e}", spec.addr))?;
    let mut replay = Vec::new();
    // Pusher servers take client events only from subscribers of the channel: a publisher
    // subscribes too, and ignores what it receives (`Inbox::counts`).
    let room = spec.subscribe.as_ref().or(spec
        .publish
        .as_ref()
        .filter(|_| job.endpoint.target.publishers_subscribe()));
    if let Some(room) = room {
        replay = conn
            .subscribe(&job.endpoint, room, since)
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
    }
    Ok((conn, replay))
}

async fn connection(
    spec: ConnSpec,
    job: Arc<Job>,
    sh: Arc<Shared>,
    opening: Arc<Semaphore>,
    ready: mpsc::Sender<bool>,
    mut go: watch::Receiver<bool>,
) -> Report {
    let mut r = Report::default();
    let mut inbox = Inbox {
        me: spec.id,
        counts: spec.subscribe.is_some(),
        last: HashMap::new(),
        cursor: None,
        distinct: 0,
    };
    let publishing = spec.publish.is_some() && job.rate > 0.0;
    let done_publishing = |sh: &Shared| {
        if sh.publishing.fetch_sub(1, Ordering::AcqRel) == 1 {
            sh.published.notify_waiters();
        }
    };
    let permit = opening.acquire().await;
    let first = open(&job, &spec, None).await;
    drop(permit);
    let mut conn = match first {
        Ok((conn, replay)) => {
            for g in replay {
                inbox.take(g, false, &mut r, &sh);
            }
            r.opened = 1;
            let _ = ready.send(true).await;
            conn
        }
        Err(e) => {
            r.open_failed = 1;
            r.error(e);
            let _ = ready.send(false).await;
            if publishing {
                done_publishing(&sh);
            }
            return r;
        }
    };
    drop(ready);
    while !*go.borrow() {
        if go.changed().await.is_err() {
            return r;
        }
    }
    let start = Instant::now();
    let publish_until = start + Duration::from_millis(job.duration_ms);
    let mut publishing = publishing;
    let interval = if publishing {
        Duration::from_secs_f64(1.0 / job.rate)
    } else {
        Duration::MAX
    };
    // Spread publishers over the interval, so they do not all post in the same instant.
    let mut next_post = if publishing {
        start + interval.mul_f64((spec.id % 997) as f64 / 997.0)
    } else {
        publish_until
    };
    let period = Duration::from_millis(job.churn_period_ms.max(1));
    let mut next_churn = spec
        .churn_offset_ms
        .map(|o| start + Duration::from_millis(o));
    let mut end = sh.ended.subscribe();
    let mut sent = 0u64;
    let pad = "x".repeat(job.size);
    let result: Result<(), String> = async {
        loop {
            let now = Instant::now();
            if publishing && now >= next_post {
                if now >= publish_until {
                    publishing = false;
                    done_publishing(&sh);
                    continue;
                }
                sent += 1;
                sh.sent.fetch_add(1, Ordering::Relaxed);
                let text = format!("t={} p={} n={sent} {pad}", now_micros(), spec.id);
                let room = spec.publish.as_deref().unwrap_or_default();
                conn.publish(room, format!("p{}-{sent}", spec.id), text)
                    .await
                    .map_err(|e| format!("publish: {e}"))?;
                next_post += interval;
                if next_post >= publish_until {
                    // That was the last post: say so now, not at the next slot.
                    publishing = false;
                    done_publishing(&sh);
                }
                continue;
            }
            let ended = sh.end_at.load(Ordering::Acquire);
            let stop_at = (ended.max(sh.last_delivery.load(Ordering::Relaxed))
                + GRACE.as_micros() as u64)
                .min(ended + LATEST.as_micros() as u64);
            if ended != 0 && now_micros() > stop_at {
                return Ok(());
            }
            if let Some(at) = next_churn {
                if now >= at && ended == 0 {
                    // Close, then open a new session and resume after the last event seen.
                    let old = std::mem::replace(&mut conn, Conn::Closed);
                    old.close().await;
                    let began = Instant::now();
                    match open(&job, &spec, inbox.cursor).await {
                        Ok((c, replay)) => {
                            r.reconnect_latency
                                .record(began.elapsed().as_micros() as u64);
                            r.reconnects += 1;
                            for g in replay {
                                inbox.take(g, false, &mut r, &sh);
                            }
                            conn = c;
                        }
                        Err(e) => {
                            r.reconnect_failed += 1;
                            return Err(format!("reconnect: {e}"));
                        }
                    }
                    next_churn = Some(at + period);
                    continue;
                }
            }
            // Sleep until something is due: a post, a churn, the end of the grace period, or
            // `end` itself (15,000 connections polling would cost the load tester a core).
            let mut until = now + Duration::from_secs(30);
            if ended != 0 {
                let grace_left = stop_at.saturating_sub(now_micros());
                until = until.min(now + Duration::from_micros(grace_left));
            }
            if publishing {
                until = until.min(next_post);
            }
            if let Some(at) = next_churn {
                until = until.min(at);
            }
            let got = tokio::select! {
                got = conn.next(until.saturating_duration_since(now)) => got,
                _ = end.wait_for(|e| *e), if ended == 0 => continue,
            };
            inbox.take(got.map_err(|e| format!("read: {e}"))?, true, &mut r, &sh);
        }
    }
    .await;
    if publishing {
        done_publishing(&sh);
    }
    if sent > 0 {
        r.sent.insert(spec.id, sent);
        if !job.endpoint.target.acknowledges() {
            r.acked += sent;
        }
    }
    if spec.subscribe.is_some() {
        r.received.insert(spec.id, inbox.distinct);
    }
    match result {
        Ok(()) => match conn.alive().await {
            Ok(()) => conn.close().await,
            Err(e) => {
                r.dropped += 1;
                r.error(format!("final round trip: {e}"));
            }
        },
        Err(e) => {
            sh.errors.fetch_add(1, Ordering::Relaxed);
            r.dropped += 1;
            r.error(e);
        }
    }
    r
}
