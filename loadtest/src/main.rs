//! `loadtest`: drives a crossroom server through its public protocol and reports latency,
//! throughput and delivery correctness.
//!
//! `--target ceiling` runs the same workload against `loadtest ceiling` (`src/ceiling.rs`), a
//! minimal broadcast server on plain tokio-tungstenite: the ceiling of our own stack. It needs no
//! set-up.
//!
//! With several `--addr` (comma-separated: cluster-mode nodes), set-up goes through the first;
//! publishers and subscribers are spread over all of them, round robin, so every delivery to a
//! subscriber on another node than its publisher crosses the Redis bus.
//!
//! Scenario implemented: **broadcast** — one external group, `--subscribers` connections reading
//! it, `--publishers` connections each posting `--rate` messages per second for `--duration`
//! seconds. Set-up goes through the admin API with the operator key: a fresh company, its users,
//! their tokens and the group, so a run needs only a URL and a key.
//!
//! Every message carries its publisher's send time; every subscriber measures the latency on
//! receipt and checks, per publisher, that messages arrive once and in order. A run is clean when
//! nothing is lost or duplicated.

mod ceiling;
mod chart;

use crossroom_protocol::client::{Client, Http};
use crossroom_protocol::{ClientFrame, Encoding, EventBody, RoomId, ServerFrame, UserId};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Args {
    /// `host:port` of the server (the first node, for set-up).
    addr: String,
    /// Every node to spread connections over (`--addr a,b,c`).
    nodes: Vec<String>,
    operator_key: String,
    subscribers: usize,
    publishers: usize,
    /// Messages per second per publisher.
    rate: f64,
    duration: Duration,
    /// Padding added to each message, in bytes.
    size: usize,
    encoding: Encoding,
    /// The server's pid, to read its CPU time and RSS from /proc.
    /// Server pids (several nodes: their CPU and RSS are summed).
    server_pids: Vec<u32>,
    /// `crossroom` (set up through the admin API) or `ceiling` (no set-up).
    ceiling: bool,
    /// Write PREFIX.json, PREFIX.md and PREFIX.svg (latency percentiles over time).
    out: Option<String>,
}

const USAGE: &str = "usage: loadtest broadcast --addr HOST:PORT[,HOST:PORT...] --operator-key KEY \
[--subscribers N=100] [--publishers N=1] [--rate MSG_PER_SEC=100] [--duration SECS=10] \
[--size BYTES=64] [--encoding msgpack|json] [--server-pid PID[,PID...]] [--target crossroom|ceiling] [--out PREFIX]
       loadtest ceiling [--listen HOST:PORT=127.0.0.1:18500]";

enum Command {
    Broadcast(Args),
    Ceiling(String),
}

fn parse_args() -> Result<Command, String> {
    let mut it = std::env::args().skip(1);
    match it.next().as_deref() {
        Some("broadcast") => {}
        Some("ceiling") => {
            return match (it.next().as_deref(), it.next()) {
                (None, _) => Ok(Command::Ceiling("127.0.0.1:18500".into())),
                (Some("--listen"), Some(addr)) => Ok(Command::Ceiling(addr)),
                _ => Err(USAGE.into()),
            }
        }
        _ => return Err(USAGE.into()),
    }
    let mut a = Args {
        addr: "127.0.0.1:8080".into(),
        nodes: Vec::new(),
        operator_key: std::env::var("CROSSROOM_OPERATOR_KEY").unwrap_or_default(),
        subscribers: 100,
        publishers: 1,
        rate: 100.0,
        duration: Duration::from_secs(10),
        size: 64,
        encoding: Encoding::MsgPack,
        server_pids: Vec::new(),
        ceiling: false,
        out: None,
    };
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--out" => a.out = Some(value),
            "--target" => {
                a.ceiling = match value.as_str() {
                    "crossroom" => false,
                    "ceiling" => true,
                    _ => return Err(bad(&"expected crossroom or ceiling")),
                }
            }
            "--addr" => {
                a.nodes = value.split(',').map(str::to_owned).collect();
                a.addr = a.nodes[0].clone();
            }
            "--operator-key" => a.operator_key = value,
            "--subscribers" => a.subscribers = value.parse().map_err(|e| bad(&e))?,
            "--publishers" => a.publishers = value.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = value.parse().map_err(|e| bad(&e))?,
            "--duration" => a.duration = Duration::from_secs(value.parse().map_err(|e| bad(&e))?),
            "--size" => a.size = value.parse().map_err(|e| bad(&e))?,
            "--server-pid" => {
                a.server_pids = value
                    .split(',')
                    .map(|p| p.trim().parse())
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&e))?
            }
            "--encoding" => {
                a.encoding = match value.as_str() {
                    "msgpack" => Encoding::MsgPack,
                    "json" => Encoding::Json,
                    _ => return Err(bad(&"expected msgpack or json")),
                }
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if a.operator_key.is_empty() && !a.ceiling {
        return Err(format!(
            "--operator-key (or CROSSROOM_OPERATOR_KEY) is required\n{USAGE}"
        ));
    }
    if a.publishers == 0 || a.rate <= 0.0 || a.subscribers + a.publishers > 999 {
        return Err("need at least one publisher, a positive rate, and at most 999 users in the group (one create request)".into());
    }
    Ok(Command::Broadcast(a))
}

/// How long subscribers keep listening after the last publisher finished.
const GRACE: Duration = Duration::from_secs(3);

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Server CPU seconds (user + system) and RSS in KiB, from /proc.
/// CPU seconds and RSS summed over `pids` (none: unknown).
fn usage_of(pids: &[u32]) -> Option<(f64, u64)> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold((0.0, 0), |(cpu, rss), p| {
        server_usage(*p).map(|(c, r)| (cpu + c, rss + r))
    })
}

fn server_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / 100.0, rss))
}

struct Setup {
    room: RoomId,
    tokens: Vec<(UserId, String)>,
}

async fn setup(a: &Args) -> Result<Setup, String> {
    if a.ceiling {
        // The ceiling server has no accounts: any token, one room.
        return Ok(Setup {
            room: RoomId("r_ceiling".into()),
            tokens: (0..a.subscribers + a.publishers)
                .map(|i| (UserId(format!("u{i}@ceiling.example")), "ceiling".into()))
                .collect(),
        });
    }
    let op = Http::new(a.addr.clone(), Some(a.operator_key.clone()));
    let company = format!("lt{}.example", now_micros());
    let r = op
        .post(
            "/v1/admin/companies",
            json!({"id": company, "name": "loadtest", "settings": {"external_chat": true}}),
        )
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 201 {
        return Err(format!("create company: {} {}", r.status, r.body));
    }
    let key = r.body["admin_key"].as_str().unwrap_or_default().to_owned();
    let admin = op.with_key(key);
    let mut tokens = Vec::new();
    for i in 0..(a.subscribers + a.publishers) {
        let r = admin
            .post(
                "/v1/admin/users",
                json!({"login": format!("u{i}"), "name": format!("user {i}")}),
            )
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 201 {
            return Err(format!("create user: {} {}", r.status, r.body));
        }
        let id = r.body["id"].as_str().unwrap_or_default().to_owned();
        let t = admin
            .post(&format!("/v1/admin/users/{id}/tokens"), json!({}))
            .await
            .map_err(|e| e.to_string())?;
        tokens.push((
            UserId(id),
            t.body["token"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    let (mut owner, _) = Client::connect(&ws_url(a), Some(&tokens[0].1), a.encoding)
        .await
        .map_err(|e| e.to_string())?;
    let reply = owner
        .request(ClientFrame::CreateGroup {
            id: 0,
            name: "loadtest broadcast".into(),
            description: String::new(),
            members: tokens[1..].iter().map(|(u, _)| u.clone()).collect(),
            masters: vec![],
            add_self_as_member: true,
            features: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let room = match reply {
        ServerFrame::RoomCreated { room, .. } => room.id,
        other => return Err(format!("create group: {other:?}")),
    };
    owner.close().await;
    Ok(Setup { room, tokens })
}

fn ws_url(a: &Args) -> String {
    format!("ws://{}/v1/ws", a.addr)
}

/// The WebSocket URL of the `i`-th connection: nodes in turn.
fn ws_url_of(a: &Args, i: usize) -> String {
    match a.nodes.len() {
        0 => ws_url(a),
        n => format!("ws://{}/v1/ws", a.nodes[i % n]),
    }
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    /// (arrival time, latency), both in µs.
    samples: Vec<(u64, u64)>,
    delivered: u64,
    duplicated: u64,
    out_of_order: u64,
    /// Highest message number seen per publisher.
    last: HashMap<u32, u64>,
}

async fn subscriber(
    url: String,
    token: String,
    room: RoomId,
    enc: Encoding,
    ended_at: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<Seen, String> {
    let (mut c, _) = Client::connect(&url, Some(&token), enc)
        .await
        .map_err(|e| e.to_string())?;
    c.request(ClientFrame::Subscribe {
        id: 0,
        room,
        since: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    // The run waits for every subscriber before publishing; it may have given up waiting.
    let _ = ready.send(()).await;
    let mut seen = Seen::default();
    loop {
        // Stop once publishing ended (`ended_at` set) and a grace period passed for stragglers.
        let ended = ended_at.load(Ordering::Acquire);
        if ended != 0 && now_micros() > ended + GRACE.as_micros() as u64 {
            break;
        }
        let f = match c.next_push(Duration::from_millis(250)).await {
            Ok(f) => f,
            Err(crossroom_protocol::client::ClientError::Timeout(_)) => continue,
            Err(e) => return Err(e.to_string()),
        };
        let ServerFrame::Event(ev) = f else { continue };
        let EventBody::Message { text, .. } = ev.body else {
            continue;
        };
        let now = now_micros();
        // "t=<micros> p=<publisher> n=<number> ..."
        let mut t = 0;
        let mut p = 0;
        let mut n = 0;
        for part in text.split(' ').take(3) {
            match part.split_once('=') {
                Some(("t", v)) => t = v.parse().unwrap_or(0),
                Some(("p", v)) => p = v.parse().unwrap_or(0),
                Some(("n", v)) => n = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        seen.samples.push((now, now.saturating_sub(t)));
        seen.delivered += 1;
        delivered.fetch_add(1, Ordering::Relaxed);
        let last = seen.last.entry(p).or_insert(0);
        if n <= *last {
            if n == *last {
                seen.duplicated += 1;
            } else {
                seen.out_of_order += 1;
            }
        } else {
            *last = n;
        }
    }
    c.close().await;
    Ok(seen)
}

/// One publisher's job.
struct Publish {
    url: String,
    token: String,
    room: RoomId,
    enc: Encoding,
    me: u32,
    rate: f64,
    duration: Duration,
    size: usize,
}

/// Post at a fixed rate; returns (sent, acknowledged).
async fn publisher(job: Publish) -> Result<(u64, u64), String> {
    let Publish {
        url,
        token,
        room,
        enc,
        me,
        rate,
        duration,
        size,
    } = job;
    let (mut c, _) = Client::connect(&url, Some(&token), enc)
        .await
        .map_err(|e| e.to_string())?;
    let pad = "x".repeat(size);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let end = start + duration;
    let mut next = start;
    let (mut sent, mut acked) = (0u64, 0u64);
    while tokio::time::Instant::now() < end {
        let text = format!("t={} p={me} n={} {pad}", now_micros(), sent + 1);
        c.send(&mut ClientFrame::Post {
            id: 0,
            room: room.clone(),
            client_msg_id: format!("p{me}-{sent}"),
            text,
            attachments: vec![],
            mentions: vec![],
        })
        .await
        .map_err(|e| e.to_string())?;
        sent += 1;
        next += interval;
        // Read acks until it is time for the next post.
        loop {
            let left = next.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match c.next_frame(left).await {
                Ok(ServerFrame::Posted { .. }) => acked += 1,
                Ok(ServerFrame::Error { code, message, .. }) => {
                    return Err(format!("{code}: {message}"))
                }
                Ok(_) => {}
                Err(crossroom_protocol::client::ClientError::Timeout(_)) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked < sent && tokio::time::Instant::now() < drain_until {
        match c.next_frame(Duration::from_secs(1)).await {
            Ok(ServerFrame::Posted { .. }) => acked += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    c.close().await;
    Ok((sent, acked))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let a = match parse_args() {
        Ok(Command::Broadcast(a)) => a,
        Ok(Command::Ceiling(listen)) => {
            return match ceiling::serve(&listen).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("loadtest ceiling: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(a).await {
        Ok(clean) if clean => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(a: Args) -> Result<bool, String> {
    eprintln!(
        "setting up {} subscribers and {} publishers on {}",
        a.subscribers, a.publishers, a.addr
    );
    let s = setup(&a).await?;
    let delivered = Arc::new(AtomicU64::new(0));
    // Set (to the time in µs) when every publisher is done.
    let ended_at = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(a.subscribers.max(1));
    for (i, (_, token)) in s.tokens[a.publishers..].iter().enumerate() {
        subs.push(tokio::spawn(subscriber(
            ws_url_of(&a, a.publishers + i),
            token.clone(),
            s.room.clone(),
            a.encoding,
            ended_at.clone(),
            delivered.clone(),
            ready_tx.clone(),
        )));
    }
    // Every subscription must be live before the first post, or its misses would count as lost.
    for _ in 0..a.subscribers {
        match tokio::time::timeout(Duration::from_secs(30), ready_rx.recv()).await {
            Ok(Some(())) => {}
            _ => return Err("subscribers did not all subscribe within 30 s".into()),
        }
    }
    let usage_before = usage_of(&a.server_pids);
    let started = Instant::now();
    let mut pubs = Vec::new();
    for (i, (_, token)) in s.tokens[..a.publishers].iter().enumerate() {
        pubs.push(tokio::spawn(publisher(Publish {
            url: ws_url_of(&a, i),
            token: token.clone(),
            room: s.room.clone(),
            enc: a.encoding,
            me: i as u32,
            rate: a.rate,
            duration: a.duration,
            size: a.size,
        })));
    }
    let progress = {
        let delivered = delivered.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = delivered.load(Ordering::Relaxed);
                eprintln!("delivered {now} (+{}/s)", now - last);
                last = now;
            }
        })
    };
    let (mut sent, mut acked) = (0, 0);
    for p in pubs {
        let (s, k) = p.await.map_err(|e| e.to_string())??;
        sent += s;
        acked += k;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    ended_at.store(now_micros(), Ordering::Release);
    let usage_after = usage_of(&a.server_pids);
    let mut lat = Vec::new();
    let mut samples = Vec::new();
    let (mut got, mut dup, mut ooo, mut lost) = (0u64, 0u64, 0u64, 0u64);
    for sub in subs {
        let seen = sub.await.map_err(|e| e.to_string())??;
        got += seen.delivered;
        dup += seen.duplicated;
        ooo += seen.out_of_order;
        lost += sent.saturating_sub(seen.delivered - seen.duplicated);
        lat.extend(seen.samples.iter().map(|(_, l)| *l));
        samples.extend(seen.samples);
    }
    progress.abort();
    lat.sort_unstable();
    let expected = sent * a.subscribers as u64;
    let cpu = match (usage_before, usage_after) {
        (Some(b), Some(e)) => Some(e.0 - b.0),
        _ => None,
    };
    let result = json!({
        "scenario": "broadcast",
        "encoding": format!("{:?}", a.encoding),
        "subscribers": a.subscribers,
        "publishers": a.publishers,
        "rate_per_publisher": a.rate,
        "duration_secs": a.duration.as_secs(),
        "sent": sent,
        "acknowledged": acked,
        "expected_deliveries": expected,
        "delivered": got,
        "lost": lost,
        "duplicated": dup,
        "out_of_order": ooo,
        "deliveries_per_sec": got as f64 / publish_secs,
        "posts_per_sec": acked as f64 / publish_secs,
        "latency_ms": {
            "p50": percentile(&lat, 0.50),
            "p90": percentile(&lat, 0.90),
            "p99": percentile(&lat, 0.99),
            "max": percentile(&lat, 1.0),
        },
        "server_cpu_secs": cpu,
        "server_rss_kib": usage_after.map(|u| u.1),
    });
    let json_text = serde_json::to_string_pretty(&result).unwrap_or_default();
    let table = format!(
        "| subscribers | publishers × rate | deliveries/s | p50 ms | p99 ms | lost | dup | ooo |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {} | {} × {} | {:.0} | {:.2} | {:.2} | {lost} | {dup} | {ooo} |",
        a.subscribers,
        a.publishers,
        a.rate,
        got as f64 / publish_secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    println!("{json_text}");
    println!();
    println!("{table}");
    if let Some(prefix) = &a.out {
        let series = chart::per_second(&samples);
        let title = format!(
            "broadcast: {} subscribers, {} × {}/s",
            a.subscribers, a.publishers, a.rate
        );
        for (ext, body) in [
            ("json", json_text.clone()),
            ("md", format!("{table}\n")),
            ("svg", chart::svg(&title, &series)),
        ] {
            let path = format!("{prefix}.{ext}");
            std::fs::write(&path, body).map_err(|e| format!("{path}: {e}"))?;
            eprintln!("wrote {path}");
        }
    }
    Ok(lost == 0 && dup == 0 && ooo == 0 && acked == sent)
}
