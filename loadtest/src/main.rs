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

use clap::{Parser, Subcommand};
use peer::{Endpoint, Target};
use run::{Args, Scenario};
use std::net::IpAddr;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "loadtest",
    about = "Drives crossroom (or a peer server) through its public protocol: latency, \
             throughput, delivery correctness"
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// One group: --subscribers reading it, --publishers each posting --rate messages/s
    Broadcast(ScenarioFlags),
    /// --connections in groups of --group-size, each reading its group and posting --rate/s
    /// into it (--rate 0: idle connections, to measure memory per connection)
    Groups(ScenarioFlags),
    /// --connections in groups of --group-size: one steady publisher per group, the others
    /// closing and resuming --churn-rate times/s in all; nothing may be lost or doubled
    Churn(ScenarioFlags),
    /// The plain tokio-tungstenite broadcast server (the ceiling crossroom is measured against)
    Ceiling {
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:18500")]
        listen: String,
    },
    /// The heaviest calendar query, and a neighbour's ping while it runs
    Calendar {
        /// crossroom's address
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// crossroom's operator key
        #[arg(
            long,
            env = "CROSSROOM_OPERATOR_KEY",
            hide_env_values = true,
            default_value = ""
        )]
        operator_key: String,
        /// Events in the calendar
        #[arg(long, default_value_t = 2_000)]
        events: usize,
        /// Seconds to run
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// A worker process holding connections (started by the scenarios themselves)
    #[command(hide = true)]
    Worker { job: String },
}

/// The flags of the scenarios.
#[derive(clap::Args)]
struct ScenarioFlags {
    /// Nodes, comma-separated; set-up goes through the first
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:8080",
        value_name = "HOST:PORT"
    )]
    addr: Vec<String>,
    /// The server: crossroom, ceiling, socketio or sockudo
    #[arg(long, default_value = "crossroom", value_parser = parse_target)]
    target: Target,
    /// crossroom's operator key
    #[arg(
        long,
        env = "CROSSROOM_OPERATOR_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    operator_key: String,
    /// sockudo's app key
    #[arg(long, default_value = "app-key")]
    app_key: String,
    /// sockudo's app secret
    #[arg(long, default_value = "app-secret")]
    app_secret: String,
    /// broadcast: connections reading the group
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// broadcast: connections posting
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// groups, churn: connections in all
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// groups, churn: connections per group (2 to 999)
    #[arg(long, default_value_t = 10)]
    group_size: usize,
    /// Messages per second per publishing connection (groups: 0 = idle)
    #[arg(long, default_value_t = 10.0, value_name = "MSG_PER_SEC")]
    rate: f64,
    /// churn: closes-and-resumes per second, in all
    #[arg(long, default_value_t = 50.0)]
    churn_rate: f64,
    /// Seconds of traffic per run
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    duration: u64,
    /// Bytes per message
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    size: usize,
    /// Frame encoding: msgpack or json
    #[arg(long, default_value = "msgpack", value_parser = ["msgpack", "json"])]
    encoding: String,
    /// Client processes holding the connections
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Source addresses, used in turn (e.g. 127.0.0.2,127.0.0.3)
    #[arg(long, value_delimiter = ',', value_name = "IP")]
    bind: Vec<IpAddr>,
    /// Read the servers' CPU and RSS from /proc
    #[arg(long = "server-pid", value_delimiter = ',', value_name = "PID")]
    server_pids: Vec<u32>,
    /// Repeat; the table gets a median row
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Print the whole result as JSON on stdout (the table then goes to stderr); without it
    /// stdout has the table only
    #[arg(long)]
    json: bool,
    /// Write PREFIX.json, PREFIX.md and PREFIX.svg
    #[arg(long, value_name = "PREFIX")]
    out: Option<String>,
    /// Find the highest rate that holds: steps from START msg/s per publisher, ×FACTOR each,
    /// STEP_SECS long, until p99 passes P99_MS or anything is lost (or MAX_RATE); then two
    /// bisection steps
    #[arg(long, value_name = "START,FACTOR,STEP_SECS,P99_MS[,MAX_RATE]", value_parser = ramp::Ramp::parse)]
    ramp: Option<ramp::Ramp>,
    /// Pin the servers (--server-pid) to these CPUs (a taskset list, e.g. 0)
    #[arg(long, value_name = "CPUS")]
    pin_server: Option<String>,
    /// Pin the load tester to these CPUs (a taskset list, e.g. 1)
    #[arg(long, value_name = "CPUS")]
    pin_client: Option<String>,
    /// Leave the run's companies, users and groups on the server (by default the run deletes
    /// them when it ends)
    #[arg(long)]
    keep: bool,
}

fn parse_target(s: &str) -> Result<Target, String> {
    Target::parse(s).ok_or_else(|| "expected crossroom, ceiling, socketio or sockudo".into())
}

impl ScenarioFlags {
    /// The scenario's arguments, and `--ramp` (run by the ramp, not as plain runs).
    fn into_args(self, scenario: Scenario) -> (Args, Option<ramp::Ramp>) {
        let ramp = self.ramp;
        let args = Args {
            scenario,
            endpoint: Endpoint {
                target: self.target,
                json: self.encoding == "json",
                app_key: self.app_key,
                app_secret: self.app_secret,
            },
            nodes: self.addr.into_iter().map(|a| a.trim().to_owned()).collect(),
            operator_key: self.operator_key,
            subscribers: self.subscribers,
            publishers: self.publishers,
            connections: self.connections,
            group_size: self.group_size,
            rate: self.rate,
            churn_rate: self.churn_rate,
            duration: Duration::from_secs(self.duration),
            size: self.size,
            processes: self.processes,
            bind: self.bind,
            server_pids: self.server_pids,
            runs: self.runs,
            out: self.out,
            keep: self.keep,
            json: self.json,
            pin_server: self.pin_server,
            pin_client: self.pin_client,
        };
        (args, ramp)
    }
}

enum Command {
    /// A scenario, run plainly or ramped.
    Scenario(Box<Args>, Option<ramp::Ramp>),
    Ceiling(String),
    Worker(String),
    Calendar(calendar::CalendarArgs),
}

/// The command line (without the program's name) as a command; `--help`, `--version` and
/// flags that do not parse come back as clap's error, which prints itself.
fn parse_args(argv: Vec<String>) -> Result<Command, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("loadtest".to_owned()).chain(argv))?;
    let scenario = |flags: ScenarioFlags, s: Scenario| {
        let (a, ramp) = flags.into_args(s);
        check(&a).map_err(|e| {
            clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, format!("{e}\n"))
        })?;
        Ok(Command::Scenario(Box::new(a), ramp))
    };
    match cli.command {
        Mode::Broadcast(f) => scenario(f, Scenario::Broadcast),
        Mode::Groups(f) => scenario(f, Scenario::Groups),
        Mode::Churn(f) => scenario(f, Scenario::Churn),
        Mode::Ceiling { listen } => Ok(Command::Ceiling(listen)),
        Mode::Worker { job } => Ok(Command::Worker(job)),
        Mode::Calendar {
            addr,
            operator_key,
            events,
            duration,
        } => Ok(Command::Calendar(calendar::CalendarArgs {
            addr,
            operator_key,
            events,
            duration: Duration::from_secs(duration),
        })),
    }
}

fn check(a: &Args) -> Result<(), String> {
    let target = a.endpoint.target;
    if a.nodes.is_empty() || a.nodes.iter().any(String::is_empty) {
        return Err("--addr needs at least one HOST:PORT".into());
    }
    if target == Target::Crossroom && a.operator_key.is_empty() {
        return Err("--operator-key (or CROSSROOM_OPERATOR_KEY) is required".into());
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
        Ok(Command::Scenario(a, ramp)) => {
            let outcome = match run::begin(&a).await {
                Ok(env) => match ramp {
                    Some(r) => ramp::run(*a, r, env).await,
                    None => run::run(*a, env).await,
                },
                Err(e) => Err(e),
            };
            match outcome {
                Ok(true) => std::process::ExitCode::SUCCESS,
                Ok(false) => std::process::ExitCode::from(1),
                Err(e) => fail(e, 2),
            }
        }
        // `--help` prints to stdout and exits 0; a bad command line prints why and exits 2.
        Err(e) => e.exit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, clap::Error> {
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

    /// Every subcommand answers `--help` with its own options (once answered "--help needs a
    /// value").
    #[test]
    fn every_subcommand_answers_help() {
        for (sub, option) in [
            ("broadcast", "--subscribers"),
            ("groups", "--group-size"),
            ("churn", "--churn-rate"),
            ("ceiling", "--listen"),
            ("calendar", "--events"),
        ] {
            let e = match parse(&format!("{sub} --help")) {
                Err(e) => e,
                Ok(_) => panic!("{sub} --help ran"),
            };
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{sub}");
            assert!(e.to_string().contains(option), "{sub}: {e}");
        }
        assert!(matches!(parse("--help"), Err(e) if e.to_string().contains("broadcast")));
    }

    #[test]
    fn messages_carry_time_publisher_and_number() {
        let (t, p, n) = worker::parse_message("t=123 p=7 n=42 xxxx");
        assert_eq!((t, p, n), (123, 7, 42));
    }
}
