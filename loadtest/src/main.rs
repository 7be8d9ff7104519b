//! `loadtest`: drives a crossroom deployment (or a peer server, for comparison) through its
//! public protocol and reports latency, throughput and delivery correctness.
//!
//! Scenarios (`src/run.rs`):
//! - **broadcast**: one group, `--subscribers` reading it, `--publishers` each posting `--rate`
//!   messages per second;
//! - **groups**: `--connections` in groups of `--group-size`, every connection reading its group
//!   and posting `--rate` messages per second into it (`--rate 0`: idle connections, to measure
//!   memory per connection and how many a deployment holds);
//! - **churn**: `--connections` in groups of `--group-size`; one steady publisher per group, the
//!   others closing and resuming (from the last event they saw) `--churn-rate` times per second
//!   in all; nothing may be lost or duplicated across the resumes.
//!
//! Any scenario runs against several nodes (`--addr a,b,c`: cluster mode): connections are
//! spread over them in turn, so deliveries cross the Redis bus. Set-up goes through the first
//! node's admin API with the operator key: companies, users, tokens and groups, so a run needs
//! only a URL and a key.
//!
//! Connections are held by `--processes` worker processes (`src/worker.rs`), each under its own
//! open-file limit, dialling from the `--bind` source addresses in turn (each 127.0.0.x has its
//! own ~28,000 ephemeral ports). Every message carries its publisher's send time; every
//! recipient measures latency on receipt and checks, per publisher, that messages arrive once
//! and in order. A run is clean when nothing is lost, duplicated, reordered or dropped.
//!
//! `--target` picks the server: `crossroom`; `ceiling` (`loadtest ceiling`, a minimal broadcast
//! server on plain tokio-tungstenite, `src/ceiling.rs`); `socketio` (`loadtest/peers/socketio`);
//! `sockudo` (Pusher protocol). Adapters are in `src/peer.rs`.

mod calendar;
mod ceiling;
mod chart;
mod hist;
mod peer;
mod progress;
mod ramp;
mod run;
mod worker;

use peer::{Endpoint, Target};
use run::{Args, Scenario};
use std::time::Duration;

const USAGE: &str = "usage:
  loadtest broadcast|groups|churn [flags]     run a scenario
  loadtest ceiling [--listen HOST:PORT]       the plain tokio-tungstenite broadcast server
  loadtest calendar [--addr A] [--operator-key K] [--events N=2000] [--duration SECS=10]
                                              the heaviest calendar query, and a neighbour's ping
flags:
  --addr HOST:PORT[,HOST:PORT...]  nodes (default 127.0.0.1:8080); set-up uses the first
  --target crossroom|ceiling|socketio|sockudo   (default crossroom)
  --operator-key KEY               crossroom's operator key (or CROSSROOM_OPERATOR_KEY)
  --app-key KEY --app-secret S     sockudo's app credentials (default app-key / app-secret)
  --subscribers N=100 --publishers N=1          broadcast
  --connections N=100 --group-size N=10         groups, churn
  --rate MSG_PER_SEC=10            per publishing connection (groups: 0 = idle)
  --churn-rate N=50                churn: closes-and-resumes per second, in all
  --duration SECS=10 --size BYTES=64 --encoding msgpack|json
  --processes N=1                  client processes holding the connections
  --bind IP[,IP...]                source addresses, used in turn (e.g. 127.0.0.2,127.0.0.3)
  --server-pid PID[,PID...]        read the servers' CPU and RSS from /proc
  --runs N=1                       repeat; the table gets a median row
  --json                           print the whole result as JSON on stdout (the table then
                                   goes to stderr); without it stdout has the table only
  --out PREFIX                     write PREFIX.json, PREFIX.md and PREFIX.svg
  --ramp START,FACTOR,STEP_SECS,P99_MS[,MAX_RATE]   find the highest rate that holds: steps
                                   from START msg/s per publisher, ×FACTOR each, STEP_SECS long,
                                   until p99 passes P99_MS or anything is lost (or MAX_RATE);
                                   then two bisection steps
  --pin-server CPUS --pin-client CPUS    pin the servers (--server-pid) and the load tester
                                   to CPUs (taskset lists, e.g. 0 and 1)
  --keep                           leave the run's companies, users and groups on the server
                                   (by default the run deletes them when it ends)";

enum Command {
    Scenario(Box<Args>),
    Ceiling(String),
    Worker(String),
    Calendar(calendar::CalendarArgs),
}

fn parse_args(argv: Vec<String>) -> Result<Command, String> {
    let mut it = argv.into_iter();
    let scenario = match it.next().as_deref() {
        Some("broadcast") => Scenario::Broadcast,
        Some("groups") => Scenario::Groups,
        Some("churn") => Scenario::Churn,
        Some("worker") => return it.next().map(Command::Worker).ok_or(USAGE.into()),
        Some("calendar") => {
            let mut c = calendar::CalendarArgs {
                addr: "127.0.0.1:8080".into(),
                operator_key: std::env::var("CROSSROOM_OPERATOR_KEY").unwrap_or_default(),
                events: 2_000,
                duration: Duration::from_secs(10),
            };
            while let Some(flag) = it.next() {
                let v = it.next().ok_or(USAGE)?;
                match flag.as_str() {
                    "--addr" => c.addr = v,
                    "--operator-key" => c.operator_key = v,
                    "--events" => c.events = v.parse().map_err(|_| "--events: a number")?,
                    "--duration" => {
                        c.duration =
                            Duration::from_secs(v.parse().map_err(|_| "--duration: seconds")?)
                    }
                    _ => return Err(USAGE.into()),
                }
            }
            return Ok(Command::Calendar(c));
        }
        Some("ceiling") => {
            return match (it.next().as_deref(), it.next()) {
                (None, _) => Ok(Command::Ceiling("127.0.0.1:18500".into())),
                (Some("--listen"), Some(addr)) => Ok(Command::Ceiling(addr)),
                _ => Err(USAGE.into()),
            }
        }
        _ => return Err(USAGE.into()),
    };
    let mut a = Args {
        scenario,
        endpoint: Endpoint {
            target: Target::Crossroom,
            json: false,
            app_key: "app-key".into(),
            app_secret: "app-secret".into(),
        },
        nodes: vec!["127.0.0.1:8080".into()],
        operator_key: std::env::var("CROSSROOM_OPERATOR_KEY").unwrap_or_default(),
        subscribers: 100,
        publishers: 1,
        connections: 100,
        group_size: 10,
        rate: 10.0,
        churn_rate: 50.0,
        duration: Duration::from_secs(10),
        size: 64,
        processes: 1,
        bind: Vec::new(),
        server_pids: Vec::new(),
        runs: 1,
        out: None,
        keep: false,
        json: false,
        ramp: None,
        pin_server: None,
        pin_client: None,
    };
    while let Some(flag) = it.next() {
        if flag == "--keep" {
            a.keep = true;
            continue;
        }
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        let list = |v: &str| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        };
        match flag.as_str() {
            "--addr" => a.nodes = list(&value),
            "--target" => {
                a.endpoint.target = Target::parse(&value)
                    .ok_or_else(|| bad(&"expected crossroom, ceiling, socketio or sockudo"))?
            }
            "--operator-key" => a.operator_key = value,
            "--app-key" => a.endpoint.app_key = value,
            "--app-secret" => a.endpoint.app_secret = value,
            "--subscribers" => a.subscribers = value.parse().map_err(|e| bad(&e))?,
            "--publishers" => a.publishers = value.parse().map_err(|e| bad(&e))?,
            "--connections" => a.connections = value.parse().map_err(|e| bad(&e))?,
            "--group-size" => a.group_size = value.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = value.parse().map_err(|e| bad(&e))?,
            "--churn-rate" => a.churn_rate = value.parse().map_err(|e| bad(&e))?,
            "--duration" => a.duration = Duration::from_secs(value.parse().map_err(|e| bad(&e))?),
            "--size" => a.size = value.parse().map_err(|e| bad(&e))?,
            "--processes" => a.processes = value.parse().map_err(|e| bad(&e))?,
            "--runs" => a.runs = value.parse().map_err(|e| bad(&e))?,
            "--out" => a.out = Some(value),
            "--ramp" => a.ramp = Some(ramp::Ramp::parse(&value)?),
            "--pin-server" => a.pin_server = Some(value),
            "--pin-client" => a.pin_client = Some(value),
            "--bind" => {
                a.bind = list(&value)
                    .iter()
                    .map(|s| s.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&e))?
            }
            "--server-pid" => {
                a.server_pids = list(&value)
                    .iter()
                    .map(|s| s.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&e))?
            }
            "--encoding" => {
                a.endpoint.json = match value.as_str() {
                    "msgpack" => false,
                    "json" => true,
                    _ => return Err(bad(&"expected msgpack or json")),
                }
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    check(&a)?;
    Ok(Command::Scenario(Box::new(a)))
}

fn check(a: &Args) -> Result<(), String> {
    let target = a.endpoint.target;
    if a.nodes.is_empty() || a.nodes.iter().any(String::is_empty) {
        return Err("--addr needs at least one HOST:PORT".into());
    }
    if target == Target::Crossroom && a.operator_key.is_empty() {
        return Err(format!(
            "--operator-key (or CROSSROOM_OPERATOR_KEY) is required\n{USAGE}"
        ));
    }
    if !(a.rate >= 0.0 && a.rate.is_finite()) || a.processes == 0 || a.runs == 0 {
        return Err("--rate must be 0 or more; --processes and --runs at least 1".into());
    }
    match a.scenario {
        Scenario::Broadcast => {
            if a.publishers == 0 || a.rate == 0.0 {
                return Err("broadcast needs at least one publisher and a positive rate".into());
            }
            if target == Target::Crossroom && a.subscribers + a.publishers > 5000 {
                return Err("broadcast: at most 5,000 users in the one group".into());
            }
        }
        Scenario::Groups | Scenario::Churn => {
            if a.group_size < 2 || a.group_size > 999 {
                return Err("--group-size must be 2 to 999".into());
            }
            if a.connections < a.group_size || !a.connections.is_multiple_of(a.group_size) {
                return Err("--connections must be a positive multiple of --group-size".into());
            }
        }
    }
    if a.scenario == Scenario::Churn {
        if !target.resumes() {
            return Err(format!(
                "churn measures resuming, which only crossroom does ({} does not)",
                target.name()
            ));
        }
        if !(a.churn_rate > 0.0 && a.churn_rate.is_finite()) || a.rate == 0.0 {
            return Err("churn needs a positive --churn-rate and --rate".into());
        }
    }
    if target == Target::Ceiling && a.scenario != Scenario::Broadcast {
        return Err("the ceiling server serves the broadcast scenario only".into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let fail = |e: String, code: u8| {
        eprintln!("loadtest: {e}");
        std::process::ExitCode::from(code)
    };
    match parse_args(std::env::args().skip(1).collect()) {
        Ok(Command::Ceiling(listen)) => match ceiling::serve(&listen).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => fail(format!("ceiling: {e}"), 2),
        },
        Ok(Command::Calendar(c)) => match calendar::run(c).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => fail(format!("calendar: {e}"), 2),
        },
        Ok(Command::Worker(job)) => match worker::main(&job).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => fail(format!("worker: {e}"), 2),
        },
        Ok(Command::Scenario(a)) => match run::run(*a).await {
            Ok(true) => std::process::ExitCode::SUCCESS,
            Ok(false) => std::process::ExitCode::from(1),
            Err(e) => fail(e, 2),
        },
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, String> {
        parse_args(s.split_whitespace().map(str::to_owned).collect())
    }

    #[test]
    fn flags_are_checked() {
        assert!(parse("groups --operator-key k --connections 100").is_ok());
        assert!(parse("groups --operator-key k --connections 95").is_err());
        assert!(parse("churn --target sockudo --connections 100").is_err());
        assert!(parse("groups --target ceiling --connections 100").is_err());
        assert!(parse("broadcast --target socketio --bind 127.0.0.2,127.0.0.3").is_ok());
        assert!(parse("broadcast --target socketio --bind 127.0.0.300").is_err());
        assert!(parse("broadcast --operator-key k --rate 0").is_err());
        // The 5,000 is crossroom's largest group; the other servers have no groups to fill.
        assert!(parse("broadcast --operator-key k --subscribers 5000").is_err());
        assert!(parse("broadcast --target ceiling --subscribers 15000").is_ok());
        assert!(parse("groups --operator-key k --rate 0 --connections 20").is_ok());
        assert!(
            parse("broadcast").is_err(),
            "crossroom needs the operator key"
        );
        assert!(parse("nonsense").is_err());
    }

    #[test]
    fn messages_carry_time_publisher_and_number() {
        let (t, p, n) = worker::parse_message("t=123 p=7 n=42 xxxx");
        assert_eq!((t, p, n), (123, 7, 42));
    }
}
