//! The parent of a run: set-up through the admin API (crossroom), the plan of every connection,
//! the worker processes that hold them, and the result (JSON, Markdown, SVG; medians over runs).

use crate::chart;
use crate::peer::{Endpoint, Target};
use crate::progress::Progress;
use crate::worker::{ConnSpec, Job, Report};
use crossroom_protocol::client::Http;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// One room, `subscribers` readers, `publishers` posting.
    Broadcast,
    /// `connections` in rooms of `group_size`, every connection reading and posting.
    Groups,
    /// `connections` in rooms of `group_size`: one steady publisher per room, the others closing
    /// and resuming `churn_rate` times per second in all.
    Churn,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Broadcast => "broadcast",
            Scenario::Groups => "groups",
            Scenario::Churn => "churn",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Args {
    pub scenario: Scenario,
    pub endpoint: Endpoint,
    /// Every node to spread connections over; set-up goes through the first.
    pub nodes: Vec<String>,
    pub operator_key: String,
    pub subscribers: usize,
    pub publishers: usize,
    pub connections: usize,
    pub group_size: usize,
    pub rate: f64,
    pub churn_rate: f64,
    pub duration: Duration,
    pub size: usize,
    pub processes: usize,
    pub bind: Vec<IpAddr>,
    pub server_pids: Vec<u32>,
    pub runs: usize,
    pub out: Option<String>,
    /// Leave the companies, users and groups of the run on the server (`--keep`).
    pub keep: bool,
    /// Print the whole result as JSON on stdout (`--json`).
    pub json: bool,
    /// CPUs (a `taskset` list) to pin the servers (`--server-pid`) and this load tester to.
    pub pin_server: Option<String>,
    pub pin_client: Option<String>,
}

/// Users per company: under the server's default of 10,000 sessions per company.
const PER_COMPANY: usize = 5000;
/// Users one admin request may name (the server's default `limits.max_participants`).
const GROUP_CHUNK: usize = 1000;
/// Admin requests in flight during set-up.
const SETUP_CONCURRENCY: usize = 32;

/// CPU seconds and RSS (KiB) summed over `pids`, from /proc (none: unknown).
fn usage_of(pids: &[u32]) -> Option<(f64, u64)> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold((0.0, 0), |(cpu, rss), p| {
        usage(*p).map(|(c, r)| (cpu + c, rss + r))
    })
}

fn usage(pid: u32) -> Option<(f64, u64)> {
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

/// Who is in which room: `rooms[i]` lists connection indexes; the plan says who publishes.
struct Layout {
    /// Members of each room, as connection indexes.
    rooms: Vec<Vec<usize>>,
}

fn layout(a: &Args) -> Layout {
    match a.scenario {
        Scenario::Broadcast => Layout {
            rooms: vec![(0..a.publishers + a.subscribers).collect()],
        },
        Scenario::Groups | Scenario::Churn => Layout {
            rooms: (0..a.connections / a.group_size)
                .map(|g| (g * a.group_size..(g + 1) * a.group_size).collect())
                .collect(),
        },
    }
}

/// Create the companies, users, tokens and groups; returns a token per connection and the room
/// id of each room.
/// Every company made is named in `created`, also when set-up fails half-way: the run deletes
/// them (and with them their users and groups) when it ends.
async fn setup_crossroom(
    a: &Args,
    lay: &Layout,
    created: &mut Vec<String>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let users = lay.rooms.iter().map(Vec::len).sum::<usize>();
    let op = Http::new(a.nodes[0].clone(), Some(a.operator_key.clone()));
    // Companies of whole rooms, at most PER_COMPANY users each.
    let per_company = (PER_COMPANY / lay.rooms[0].len()).max(1) * lay.rooms[0].len();
    let stamp = crate::worker::now_micros();
    let mut admins = Vec::new();
    for c in 0..users.div_ceil(per_company) {
        let id = format!("lt{stamp}-{c}.example");
        let r = op
            .post(
                "/v1/admin/companies",
                json!({"id": id, "name": "loadtest", "settings": {"external_chat": true}}),
            )
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 201 {
            return Err(format!("create company: {} {}", r.status, r.body));
        }
        created.push(id);
        admins.push(op.with_key(r.body["admin_key"].as_str().unwrap_or_default()));
    }
    let made = futures_util::stream::iter(0..users)
        .map(|i| {
            let admin = admins[i / per_company].clone();
            async move {
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
                    .post(
                        &format!("/v1/admin/users/{id}/tokens"),
                        json!({"ttl_secs": 86400}),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let token = t.body["token"].as_str().unwrap_or_default().to_owned();
                if token.is_empty() {
                    return Err(format!("mint token: {} {}", t.status, t.body));
                }
                Ok((id, token))
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect::<Vec<Result<(String, String), String>>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let rooms = futures_util::stream::iter(lay.rooms.iter().enumerate())
        .map(|(g, members)| {
            let admin = admins[members[0] / per_company].clone();
            let ids: Vec<String> = members.iter().map(|m| made[*m].0.clone()).collect();
            // A request names at most 1,000 users (the master counts): the rest are added after.
            let first = ids.len().min(GROUP_CHUNK - 1);
            let body = json!({
                "name": format!("loadtest {} {g}", a.scenario.name()),
                "masters": [ids[0]],
                "members": ids[..first],
            });
            async move {
                let r = admin
                    .post("/v1/admin/groups", body)
                    .await
                    .map_err(|e| e.to_string())?;
                let room = match r.body["room"]["id"].as_str() {
                    Some(room) if r.status == 201 => room.to_owned(),
                    _ => return Err(format!("create group: {} {}", r.status, r.body)),
                };
                for chunk in ids[first..].chunks(GROUP_CHUNK) {
                    let r = admin
                        .post(
                            &format!("/v1/admin/groups/{room}/members"),
                            json!({"users": chunk}),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    if r.status != 200 {
                        return Err(format!("add members: {} {}", r.status, r.body));
                    }
                }
                Ok(room)
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect::<Vec<Result<String, String>>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok((made.into_iter().map(|(_, t)| t).collect(), rooms))
}

/// Every connection of the run.
async fn plan(a: &Args, created: &mut Vec<String>) -> Result<(Vec<ConnSpec>, u64), String> {
    let lay = layout(a);
    let (tokens, rooms) = match a.endpoint.target {
        Target::Crossroom => setup_crossroom(a, &lay, created).await?,
        // The others have no accounts: any token, rooms by name.
        _ => {
            let n = lay.rooms.iter().map(Vec::len).sum();
            (
                vec!["loadtest".to_owned(); n],
                (0..lay.rooms.len()).map(|g| format!("lt{g}")).collect(),
            )
        }
    };
    let mut conns = Vec::new();
    let mut churners = 0usize;
    for (g, members) in lay.rooms.iter().enumerate() {
        for (k, &i) in members.iter().enumerate() {
            let room = Some(rooms[g].clone());
            let (subscribe, publish, churn) = match a.scenario {
                Scenario::Broadcast if i < a.publishers => (None, room, false),
                Scenario::Broadcast => (room, None, false),
                Scenario::Groups => (room.clone(), room, false),
                Scenario::Churn if k == 0 => (None, room, false),
                Scenario::Churn => (room, None, true),
            };
            let churn_offset_ms = churn.then(|| {
                churners += 1;
                ((churners - 1) as f64 * 1000.0 / a.churn_rate) as u64
            });
            conns.push(ConnSpec {
                id: i as u32,
                addr: a.nodes[i % a.nodes.len()].clone(),
                token: tokens[i].clone(),
                subscribe,
                publish,
                churn_offset_ms,
            });
        }
    }
    // Each churner closes and resumes once per period: `churn_rate` per second in all.
    let period_ms = (churners as f64 * 1000.0 / a.churn_rate.max(f64::MIN_POSITIVE)) as u64;
    Ok((conns, period_ms))
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
}

enum Line {
    Connecting(u64, u64),
    Ready(u64, u64),
    /// Delivered, sent, errors: totals so far.
    Progress(u64, u64, u64),
    Published,
    Report(Box<Report>),
    Gone(String),
}

fn spawn_worker(
    k: usize,
    job: &Job,
    dir: &std::path::Path,
    tx: mpsc::UnboundedSender<(usize, Line)>,
) -> Result<Worker, String> {
    let path = dir.join(format!("job{k}.json"));
    std::fs::write(&path, serde_json::to_vec(job).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .arg("worker")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn worker: {e}"))?;
    let stdin = child.stdin.take().ok_or("worker stdin")?;
    let stdout = child.stdout.take().ok_or("worker stdout")?;
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let (word, rest) = l.split_once(' ').unwrap_or((&l, ""));
            let line = match word {
                "connecting" | "ready" | "progress" => {
                    let mut n = rest.split(' ').map(|v| v.parse().unwrap_or(0));
                    let mut next = || n.next().unwrap_or(0);
                    match word {
                        "connecting" => Line::Connecting(next(), next()),
                        "ready" => Line::Ready(next(), next()),
                        _ => Line::Progress(next(), next(), next()),
                    }
                }
                "published" => Line::Published,
                "report" => match serde_json::from_str(rest) {
                    Ok(r) => Line::Report(Box::new(r)),
                    Err(e) => Line::Gone(format!("bad report: {e}")),
                },
                _ => continue,
            };
            let _ = tx.send((k, line));
        }
        let _ = tx.send((k, Line::Gone("worker exited".into())));
    });
    Ok(Worker { child, stdin })
}

async fn tell(workers: &mut [Worker], word: &str) -> Result<(), String> {
    for w in workers.iter_mut() {
        w.stdin
            .write_all(format!("{word}\n").as_bytes())
            .await
            .map_err(|e| format!("worker stdin: {e}"))?;
        w.stdin.flush().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One run: its figures (for medians) and everything about it (for JSON).
pub struct Outcome {
    pub clean: bool,
    pub figures: Vec<(&'static str, f64)>,
    pub detail: Value,
    pub series: Vec<chart::Second>,
}

pub async fn run_once(a: &Args) -> Result<Outcome, String> {
    eprintln!(
        "setting up {} on {} ({})",
        a.scenario.name(),
        a.nodes.join(","),
        a.endpoint.target.name()
    );
    let fresh = usage_of(&a.server_pids);
    let mut created = Vec::new();
    let outcome = match plan(a, &mut created).await {
        Ok((conns, churn_period_ms)) => measure(a, fresh, conns, churn_period_ms).await,
        Err(e) => Err(e),
    };
    if a.keep {
        if !created.is_empty() {
            eprintln!("kept companies {}", created.join(", "));
        }
    } else {
        clean_up(a, &created).await;
    }
    outcome
}

/// Delete the companies the run made: the server deletes their users and groups with them.
async fn clean_up(a: &Args, created: &[String]) {
    if !created.is_empty() {
        eprintln!(
            "deleting the run's {} compan{} (--keep keeps them)",
            created.len(),
            if created.len() == 1 { "y" } else { "ies" }
        );
    }
    let op = Http::new(a.nodes[0].clone(), Some(a.operator_key.clone()));
    for id in created {
        match op.delete(&format!("/v1/admin/companies/{id}")).await {
            Ok(r) if r.status == 204 || r.status == 404 => {}
            Ok(r) => eprintln!("could not delete company {id}: {} {}", r.status, r.body),
            Err(e) => eprintln!("could not delete company {id}: {e}"),
        }
    }
}

async fn measure(
    a: &Args,
    fresh: Option<(f64, u64)>,
    conns: Vec<ConnSpec>,
    churn_period_ms: u64,
) -> Result<Outcome, String> {
    let baseline = usage_of(&a.server_pids);
    let dir = std::env::temp_dir().join(format!(
        "loadtest-{}-{}",
        std::process::id(),
        crate::worker::now_micros()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for k in 0..a.processes {
        let job = Job {
            endpoint: a.endpoint.clone(),
            rate: a.rate,
            size: a.size,
            duration_ms: a.duration.as_millis() as u64,
            churn_period_ms,
            bind: a.bind.clone(),
            conns: conns
                .iter()
                .enumerate()
                .filter(|(i, _)| i % a.processes == k)
                .map(|(_, c)| c.clone())
                .collect(),
        };
        workers.push(spawn_worker(k, &job, &dir, tx.clone())?);
    }
    drop(tx);
    let n = workers.len();
    let mut shown = Progress::new(n, conns.len() as u64);
    let (mut ready, mut opened, mut open_failed) = (0, 0, 0);
    let connect_started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while ready < n {
        tokio::select! {
            got = rx.recv() => match got {
                Some((k, Line::Connecting(o, f))) => shown.connecting(k, o, f),
                Some((k, Line::Ready(o, f))) => {
                    shown.connecting(k, o, f);
                    ready += 1;
                    opened += o;
                    open_failed += f;
                }
                Some((k, Line::Gone(why))) => return Err(format!("worker {k}: {why}")),
                Some(_) => {}
                None => return Err("workers gone".into()),
            },
            _ = tick.tick() => shown.show_connecting(connect_started.elapsed().as_secs_f64()),
        }
    }
    shown.say(&format!(
        "{opened}/{} connections open ({open_failed} failed) in {:.1} s",
        conns.len(),
        connect_started.elapsed().as_secs_f64()
    ));
    let connected = usage_of(&a.server_pids);
    let client_pids: Vec<u32> = workers.iter().filter_map(|w| w.child.id()).collect();
    let client_connected = usage_of(&client_pids);
    tell(&mut workers, "go").await?;
    let started = Instant::now();
    let mut published = 0;
    let secs = a.duration.as_secs();
    // Idle connections (`--rate 0`) are held for the whole duration.
    while published < n || started.elapsed() < a.duration {
        tokio::select! {
            got = rx.recv() => match got {
                Some((k, Line::Progress(d, s, e))) => shown.running(k, d, s, e),
                Some((_, Line::Published)) => published += 1,
                Some((k, Line::Gone(why))) => return Err(format!("worker {k}: {why}")),
                Some(_) => {}
                None => return Err("workers gone".into()),
            },
            _ = tick.tick() => shown.show_running(started.elapsed().as_secs_f64(), secs),
        }
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let after = usage_of(&a.server_pids);
    let client_after = usage_of(&client_pids);
    shown.say(&format!(
        "published; collecting what {n} worker(s) received: late deliveries are waited for \
         until {} s pass without one (at most {} s)",
        crate::worker::GRACE.as_secs(),
        crate::worker::LATEST.as_secs()
    ));
    tell(&mut workers, "end").await?;
    let mut report = Report::default();
    let mut reported = vec![false; n];
    while reported.contains(&false) {
        match rx.recv().await {
            Some((k, Line::Report(r))) => {
                report.merge(*r);
                reported[k] = true;
            }
            Some((k, Line::Gone(why))) if !reported[k] => return Err(format!("worker {k}: {why}")),
            Some(_) => {}
            None => return Err("workers gone".into()),
        }
    }
    for mut w in workers {
        let _ = w.child.wait().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let client_cpu = match (client_connected, client_after) {
        (Some(b), Some(e)) => Some(e.0 - b.0),
        _ => None,
    };
    Ok(summarise(
        a,
        &conns,
        report,
        publish_secs,
        [fresh, baseline, connected, after],
        client_cpu,
    ))
}

fn summarise(
    a: &Args,
    conns: &[ConnSpec],
    r: Report,
    secs: f64,
    [fresh, baseline, connected, after]: [Option<(f64, u64)>; 4],
    client_cpu: Option<f64>,
) -> Outcome {
    // What every subscriber should have received: everything sent into its room, but its own.
    let mut room_sent: HashMap<&str, u64> = HashMap::new();
    for c in conns {
        if let (Some(room), Some(s)) = (&c.publish, r.sent.get(&c.id)) {
            *room_sent.entry(room).or_insert(0) += s;
        }
    }
    let mut expected = 0u64;
    let mut distinct = 0u64;
    for c in conns {
        let (Some(room), Some(got)) = (&c.subscribe, r.received.get(&c.id)) else {
            continue;
        };
        let own = match &c.publish {
            Some(p) if p == room => r.sent.get(&c.id).copied().unwrap_or(0),
            _ => 0,
        };
        expected += room_sent.get(room.as_str()).copied().unwrap_or(0) - own;
        distinct += got;
    }
    let lost = expected.saturating_sub(distinct);
    let sent: u64 = r.sent.values().sum();
    let clean = lost == 0
        && r.duplicated == 0
        && r.out_of_order == 0
        && r.resets == 0
        && r.open_failed == 0
        && r.dropped == 0
        && r.reconnect_failed == 0
        && r.rate_limited == 0
        && r.acked == sent;
    if r.rate_limited > 0 {
        eprintln!(
            "this run was limited by the server's per-connection rate: {} requests refused \
             `rate_limited` or connections closed 4002. The default limits.requests_per_sec \
             (50) and request_burst (1,000) fit people; start the server for load tests with \
             `--config loadtest/server.toml` (or raise both limits)",
            r.rate_limited
        );
    }
    let cpu = match (connected, after) {
        (Some(b), Some(e)) => Some(e.0 - b.0),
        _ => None,
    };
    // Everything the run added to the server, set-up included (users, groups), per connection:
    // an upper bound. The marginal figure (connections only) is smaller but flattered by the
    // allocator reusing memory the set-up freed.
    let per_conn = |from: Option<(f64, u64)>| match (from, connected) {
        (Some(b), Some(c)) if r.opened > 0 => Some((c.1 as f64 - b.1 as f64) / r.opened as f64),
        _ => None,
    };
    let per_conn_kib = per_conn(fresh);
    // The server's CPU while the connections opened (upgrade, token check and subscribe on
    // crossroom), per connection opened.
    let connect_cpu_us = match (baseline, connected) {
        (Some(b), Some(c)) if r.opened > 0 => Some((c.0 - b.0) / r.opened as f64 * 1e6),
        _ => None,
    };
    let l = &r.latency;
    let rl = &r.reconnect_latency;
    let figures = vec![
        ("connections", r.opened as f64),
        ("posts_per_sec", r.acked as f64 / secs),
        ("deliveries_per_sec", r.delivered as f64 / secs),
        ("p50_ms", l.quantile_ms(0.5)),
        ("p90_ms", l.quantile_ms(0.9)),
        ("p99_ms", l.quantile_ms(0.99)),
        ("max_ms", l.quantile_ms(1.0)),
        ("lost", lost as f64),
        ("duplicated", r.duplicated as f64),
        ("out_of_order", r.out_of_order as f64),
        ("dropped", (r.dropped + r.open_failed) as f64),
        ("resumes_per_sec", r.reconnects as f64 / secs),
        ("resume_p50_ms", rl.quantile_ms(0.5)),
        ("resume_p99_ms", rl.quantile_ms(0.99)),
        ("replayed", r.replayed as f64),
        ("server_cpu_secs", cpu.unwrap_or(f64::NAN)),
        // The load tester's own CPU over the same span (its workers): near `secs` × cores, it
        // measured itself.
        ("client_cpu_secs", client_cpu.unwrap_or(f64::NAN)),
        (
            "server_rss_mib",
            after.map(|u| u.1 as f64 / 1024.0).unwrap_or(f64::NAN),
        ),
        ("rss_per_connection_kib", per_conn_kib.unwrap_or(f64::NAN)),
        ("connect_cpu_us", connect_cpu_us.unwrap_or(f64::NAN)),
    ];
    let figures: Vec<(&'static str, f64)> = figures
        .into_iter()
        .filter(|(k, _)| a.scenario == Scenario::Churn || !CHURN_ONLY.contains(k))
        .collect();
    let mut shape = json!({
        "scenario": a.scenario.name(),
        "target": a.endpoint.target.name(),
        "encoding": if a.endpoint.json { "json" } else { "msgpack" },
        "nodes": a.nodes,
        "processes": a.processes,
        "source_addresses": a.bind.len().max(1),
        "rate_per_publisher": a.rate,
        "duration_secs": a.duration.as_secs(),
        "message_bytes": a.size,
    });
    match a.scenario {
        Scenario::Broadcast => {
            shape["subscribers"] = json!(a.subscribers);
            shape["publishers"] = json!(a.publishers);
        }
        Scenario::Groups => {
            shape["connections"] = json!(a.connections);
            shape["group_size"] = json!(a.group_size);
        }
        Scenario::Churn => {
            shape["connections"] = json!(a.connections);
            shape["group_size"] = json!(a.group_size);
            shape["churn_rate"] = json!(a.churn_rate);
            shape["reconnects"] = json!(r.reconnects);
            shape["reconnect_failed"] = json!(r.reconnect_failed);
        }
    }
    let mut detail = json!({
        "clean": clean,
        "opened": r.opened,
        "open_failed": r.open_failed,
        "dropped": r.dropped,
        "errors": r.errors,
        "rate_limited": r.rate_limited,
        "sent": sent,
        "acknowledged": r.acked,
        "expected_deliveries": expected,
        "delivered": r.delivered,
        "resets": r.resets,
        "rss_per_connection_after_setup_kib": per_conn(baseline).and_then(finite),
        "server_rss_kib": {
            "before_setup": fresh.map(|u| u.1),
            "before_connections": baseline.map(|u| u.1),
            "connected": connected.map(|u| u.1),
            "end": after.map(|u| u.1),
        },
        "figures": figures.iter().map(|(k, v)| (k.to_string(), json!(finite(*v)))).collect::<serde_json::Map<_, _>>(),
    });
    if let (Some(d), Some(s)) = (detail.as_object_mut(), shape.as_object()) {
        for (k, v) in s {
            d.insert(k.clone(), v.clone());
        }
    }
    Outcome {
        clean,
        figures,
        detail,
        series: chart::per_second(&r.per_second),
    }
}

/// Figures that only the churn scenario measures.
const CHURN_ONLY: [&str; 4] = [
    "resumes_per_sec",
    "resume_p50_ms",
    "resume_p99_ms",
    "replayed",
];

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some((v * 100.0).round() / 100.0)
}

/// The median of each figure over the runs (NaN where unknown).
pub fn medians(runs: &[Outcome]) -> Vec<(&'static str, f64)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    (0..first.figures.len())
        .map(|i| {
            let mut v: Vec<f64> = runs.iter().map(|r| r.figures[i].1).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            (first.figures[i].0, v[v.len() / 2])
        })
        .collect()
}

/// The Markdown table: one row per run and, with several, the median.
pub fn table(a: &Args, runs: &[Outcome]) -> String {
    let cols: &[&str] = match a.scenario {
        Scenario::Churn => &[
            "connections",
            "posts_per_sec",
            "resumes_per_sec",
            "resume_p50_ms",
            "resume_p99_ms",
            "replayed",
            "p99_ms",
            "lost",
            "duplicated",
            "dropped",
            "server_cpu_secs",
            "client_cpu_secs",
            "server_rss_mib",
        ],
        _ => &[
            "connections",
            "posts_per_sec",
            "deliveries_per_sec",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "lost",
            "duplicated",
            "out_of_order",
            "dropped",
            "server_cpu_secs",
            "client_cpu_secs",
            "server_rss_mib",
            "rss_per_connection_kib",
            "connect_cpu_us",
        ],
    };
    let fmt = |v: f64| {
        if !v.is_finite() {
            "—".to_owned()
        } else if v.fract() == 0.0 || v >= 1000.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    let mut out = format!(
        "| run | {} |\n|---|{}\n",
        cols.join(" | "),
        "---|".repeat(cols.len())
    );
    let row = |name: String, figures: &[(&str, f64)]| {
        let cells: Vec<String> = cols
            .iter()
            .map(|c| {
                figures
                    .iter()
                    .find(|(k, _)| k == c)
                    .map(|(_, v)| fmt(*v))
                    .unwrap_or_default()
            })
            .collect();
        format!("| {name} | {} |\n", cells.join(" | "))
    };
    for (i, r) in runs.iter().enumerate() {
        out.push_str(&row(format!("{}", i + 1), &r.figures));
    }
    if runs.len() > 1 {
        out.push_str(&row("**median**".into(), &medians(runs)));
    }
    out
}

/// Pin the servers and this process (and so the workers it starts) to their CPUs, with
/// `taskset`: server and client then never share a core.
fn pin(a: &Args) -> Result<(), String> {
    let pins = a
        .server_pids
        .iter()
        .filter_map(|p| a.pin_server.as_ref().map(|c| (c, *p)))
        .chain(a.pin_client.as_ref().map(|c| (c, std::process::id())));
    for (cpus, pid) in pins {
        let ok = std::process::Command::new("taskset")
            .args(["-apc", cpus, &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("taskset: {e}"))?
            .success();
        if !ok {
            return Err(format!("taskset -apc {cpus} {pid} failed"));
        }
    }
    Ok(())
}

/// Where the run happens: the load tester's version and command, the machine (cores, CPU,
/// kernel) and, for crossroom, the server's version and commit (from its `/metrics`).
async fn environment(a: &Args) -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let server = match a.endpoint.target {
        Target::Crossroom => {
            let http = Http::new(a.nodes[0].clone(), None);
            match http.get("/metrics").await {
                Ok(r) => String::from_utf8_lossy(&r.bytes)
                    .lines()
                    .find(|l| l.starts_with("crossroom_build_info{"))
                    .map(|l| {
                        let label = |k: &str| {
                            l.split(&format!("{k}=\""))
                                .nth(1)
                                .and_then(|v| v.split('"').next())
                                .unwrap_or("?")
                                .to_owned()
                        };
                        format!(
                            "crossroom {} (commit {})",
                            label("version"),
                            label("commit")
                        )
                    }),
                Err(_) => None,
            }
        }
        other => Some(other.name().to_owned()),
    };
    json!({
        "loadtest": env!("CARGO_PKG_VERSION"),
        "command": shown_command(std::env::args()),
        "cores": read("/proc/cpuinfo").lines().filter(|l| l.starts_with("processor")).count(),
        // Fewer when the load tester is pinned (--pin-client).
        "cores_for_client": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "server": server,
        "server_pids_measured": !a.server_pids.is_empty(),
        "pinned": {"server": a.pin_server, "client": a.pin_client},
        "started_at_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    })
}

/// The command line with its secrets (operator key, app secret) replaced by `***`.
fn shown_command(args: impl Iterator<Item = String>) -> String {
    let mut out = Vec::new();
    let mut secret = false;
    for arg in args {
        out.push(if secret {
            "***".to_owned()
        } else {
            arg.clone()
        });
        secret = matches!(arg.as_str(), "--operator-key" | "--app-secret");
    }
    out.join(" ")
}

/// The environment in one line.
fn environment_line(e: &Value) -> String {
    format!(
        "loadtest {} · server {} · {} cores · {} · Linux {}",
        e["loadtest"].as_str().unwrap_or("?"),
        e["server"].as_str().unwrap_or("unknown"),
        e["cores"],
        e["cpu"].as_str().unwrap_or("unknown CPU"),
        e["kernel"].as_str().unwrap_or("?"),
    )
}

/// Before any run: pin the processes as asked, and read and print the environment every result
/// starts with.
pub async fn begin(a: &Args) -> Result<Value, String> {
    pin(a)?;
    let env = environment(a).await;
    eprintln!("{}", environment_line(&env));
    Ok(env)
}

/// Run `a.runs` times in the environment `env` ([`begin`]); print and write the results.
/// Ok(true) when every run was clean.
pub async fn run(a: Args, env: Value) -> Result<bool, String> {
    let mut runs = Vec::new();
    for i in 0..a.runs {
        if a.runs > 1 {
            eprintln!("run {} of {}", i + 1, a.runs);
        }
        let o = run_once(&a).await?;
        if !o.clean {
            eprintln!(
                "run {} was NOT clean: {}",
                i + 1,
                serde_json::to_string(&o.detail["errors"]).unwrap_or_default()
            );
        }
        runs.push(o);
    }
    let med = medians(&runs);
    let result = json!({
        "environment": env,
        "runs": runs.iter().map(|r| r.detail.clone()).collect::<Vec<_>>(),
        "median": med.iter().map(|(k, v)| (k.to_string(), json!(finite(*v)))).collect::<serde_json::Map<_, _>>(),
    });
    let json_text = serde_json::to_string_pretty(&result).unwrap_or_default();
    let table = table(&a, &runs);
    // stdout carries one thing: the table, or with --json the whole result.
    if a.json {
        eprintln!("\n{table}");
        println!("{json_text}");
    } else {
        println!("{table}");
    }
    if let Some(prefix) = &a.out {
        // The chart of the run with the median p99.
        let p99 = |r: &Outcome| r.figures.iter().find(|(k, _)| *k == "p99_ms").map(|f| f.1);
        let mut order: Vec<&Outcome> = runs.iter().collect();
        order.sort_by(|x, y| p99(x).unwrap_or(0.0).total_cmp(&p99(y).unwrap_or(0.0)));
        let series = order
            .get(order.len() / 2)
            .map(|r| r.series.clone())
            .unwrap_or_default();
        let title = format!(
            "{} on {}: {} connections, {}/s each",
            a.scenario.name(),
            a.endpoint.target.name(),
            runs.first().map(|r| r.figures[0].1).unwrap_or(0.0),
            a.rate
        );
        for (ext, body) in [
            ("json", json_text.clone()),
            ("md", format!("{table}\n{}\n", environment_line(&env))),
            ("svg", chart::svg(&title, &series, a.duration.as_secs())),
        ] {
            let path = format!("{prefix}.{ext}");
            std::fs::write(&path, body).map_err(|e| format!("{path}: {e}"))?;
            eprintln!("wrote {path}");
        }
    }
    Ok(runs.iter().all(|r| r.clean))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_shown_hides_secrets() {
        let args = [
            "loadtest",
            "broadcast",
            "--operator-key",
            "k3y",
            "--app-secret",
            "s",
            "--rate",
            "5",
        ];
        assert_eq!(
            super::shown_command(args.iter().map(|s| s.to_string())),
            "loadtest broadcast --operator-key *** --app-secret *** --rate 5"
        );
    }
}
