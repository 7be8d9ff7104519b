//! The load tester against the real server: every scenario on a small scale, through worker
//! processes and two source addresses, must come out clean (nothing lost, duplicated or
//! reordered), and its outputs must say so. The server binary is the workspace's own
//! `crossroom`, built next to `loadtest` by `cargo test --workspace`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

const KEY: &str = "op_loadtest_scenarios_key_0123";

fn loadtest() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loadtest"))
}

/// Starts a process that prints `... listening on [http://]ADDR` on stdout; kills it on drop.
struct Server {
    child: Child,
    addr: String,
    /// Kept open: a server writing to a closed pipe would fail.
    _stdout: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mut cmd: Command, dir: tempfile::TempDir) -> Server {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        if reader.read_line(&mut line).expect("read") == 0 {
            panic!("the server exited before listening");
        }
    }
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("address")
        .trim_start_matches("http://")
        .to_owned();
    assert!(addr.contains(':'), "no address in {line:?}");
    Server {
        child,
        addr,
        _stdout: reader,
        _dir: dir,
    }
}

fn crossroom() -> Server {
    let bin = loadtest().with_file_name(format!("crossroom{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} missing: run through `cargo test --workspace`",
        bin.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--operator-key", KEY])
        .arg("--data-dir")
        .arg(dir.path());
    start(cmd, dir)
}

/// Run the load tester with `--json`; returns (exit code, the JSON result).
fn run(args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(loadtest())
        .args(args)
        .arg("--json")
        .stderr(Stdio::inherit())
        .output()
        .expect("run loadtest");
    let text = String::from_utf8_lossy(&out.stdout);
    // With --json, stdout is the JSON result and nothing else.
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (out.status.code().unwrap_or(-1), v)
}

/// The ids of the companies on the server (the operator's list).
fn companies(addr: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let http = crossroom_protocol::client::Http::new(addr, Some(KEY.to_owned()));
    let r = rt
        .block_on(http.get("/v1/admin/companies"))
        .expect("companies");
    r.body["companies"]
        .as_array()
        .expect("companies")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

fn median(v: &serde_json::Value, figure: &str) -> f64 {
    v["median"][figure].as_f64().unwrap_or(f64::NAN)
}

#[test]
fn groups_through_two_workers_and_two_source_addresses_are_clean() {
    let s = crossroom();
    let out = tempfile::tempdir().expect("tempdir");
    let prefix = out.path().join("groups");
    let (code, v) = run(&[
        "groups",
        "--addr",
        &s.addr,
        "--operator-key",
        KEY,
        "--connections",
        "40",
        "--group-size",
        "10",
        "--rate",
        "5",
        "--duration",
        "2",
        "--processes",
        "2",
        "--bind",
        "127.0.0.1,127.0.0.2",
        "--runs",
        "2",
        "--out",
        prefix.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{v:#}");
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert_eq!(r["clean"], true);
        assert_eq!(r["opened"], 40);
        assert_eq!(r["processes"], 2);
        // Every post reached the 9 other members of its group, exactly once.
        let sent = r["sent"].as_u64().expect("sent");
        assert!(sent >= 40 * 5, "{r:#}");
        assert_eq!(r["expected_deliveries"].as_u64(), Some(sent * 9));
        assert_eq!(r["delivered"].as_u64(), Some(sent * 9));
    }
    assert_eq!(median(&v, "lost"), 0.0);
    assert!(median(&v, "p99_ms") > 0.0);
    // Each run deleted what it created: companies, and with them users and groups.
    assert_eq!(companies(&s.addr), Vec::<String>::new());
    let md = std::fs::read_to_string(prefix.with_extension("md")).expect("md");
    assert!(md.contains("| **median** | 40 |"), "{md}");
    let svg = std::fs::read_to_string(prefix.with_extension("svg")).expect("svg");
    assert_eq!(svg.matches("<polyline").count(), 3);
    assert!(svg.contains("p99 per second"), "a legend: {svg}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(prefix.with_extension("json")).expect("json"),
    )
    .expect("json");
    assert_eq!(json, v, "--out writes the same result as --json prints");
    let env = &v["environment"];
    assert!(env["cores"].as_u64().unwrap_or(0) >= 1, "{env:#}");
    assert!(
        env["server"]
            .as_str()
            .is_some_and(|s| s.starts_with("crossroom 0.1.0 (commit ")),
        "{env:#}"
    );
    assert!(
        env["command"]
            .as_str()
            .is_some_and(|c| c.contains("--operator-key ***") && !c.contains(KEY)),
        "the key is not in the result: {env:#}"
    );
    // Groups runs carry the groups' shape, not the other scenarios' fields.
    assert_eq!(runs[0]["group_size"], 10);
    assert!(runs[0].get("churn_rate").is_none() && runs[0].get("subscribers").is_none());
    assert!(runs[0]["figures"].get("resume_p99_ms").is_none());
    assert!(
        runs[0]["figures"]["client_cpu_secs"].as_f64().is_some(),
        "{:#}",
        runs[0]
    );
}

/// Without `--json`, stdout is the table alone, and stderr has the progress lines: open
/// connections of the target while connecting, offered and delivered rates while running, and
/// what the end waits for.
#[test]
fn stdout_is_the_table_and_progress_goes_to_stderr() {
    let s = crossroom();
    let out = Command::new(loadtest())
        .args(["broadcast", "--addr", &s.addr, "--operator-key", KEY])
        .args(["--subscribers", "10", "--rate", "20", "--duration", "3"])
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("| run | connections |"), "{stdout}");
    assert!(!stdout.contains('{'), "no JSON on stdout: {stdout}");
    for line in [
        "11/11 connections open",
        "/3 s  offered ",
        "/s  delivered ",
        "errors 0",
        "late deliveries",
        "cores",
    ] {
        assert!(stderr.contains(line), "{line:?} in {stderr}");
    }
    // One publisher at 20/s to 10 readers: some second shows deliveries at about 200/s.
    let delivered: Vec<u64> = stderr
        .lines()
        .filter_map(|l| {
            l.split("delivered ")
                .nth(1)?
                .split("/s")
                .next()?
                .replace(',', "")
                .parse()
                .ok()
        })
        .collect();
    assert!(
        delivered.iter().any(|d| (150..=250).contains(d)),
        "{delivered:?}"
    );
}

#[test]
fn churn_resumes_lose_nothing() {
    let s = crossroom();
    let (code, v) = run(&[
        "churn",
        "--addr",
        &s.addr,
        "--operator-key",
        KEY,
        "--connections",
        "30",
        "--group-size",
        "10",
        "--rate",
        "20",
        "--churn-rate",
        "30",
        "--duration",
        "3",
    ]);
    assert_eq!(code, 0, "{v:#}");
    let r = &v["runs"][0];
    assert_eq!(r["clean"], true, "{r:#}");
    // 27 churners close and resume 30 times a second for 3 s.
    assert!(r["reconnects"].as_u64().expect("reconnects") >= 60, "{r:#}");
    assert_eq!(median(&v, "lost"), 0.0);
    assert_eq!(median(&v, "duplicated"), 0.0);
    // --keep leaves the run's company behind.
    let (code, _) = run(&[
        "groups",
        "--addr",
        &s.addr,
        "--operator-key",
        KEY,
        "--connections",
        "10",
        "--duration",
        "1",
        "--keep",
    ]);
    assert_eq!(code, 0);
    let kept = companies(&s.addr);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with("lt"), "{kept:?}");
}

#[test]
fn broadcast_against_the_ceiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(loadtest());
    cmd.args(["ceiling", "--listen", "127.0.0.1:0"]);
    let s = start(cmd, dir);
    let pid = s.child.id().to_string();
    let (code, v) = run(&[
        "broadcast",
        "--target",
        "ceiling",
        "--addr",
        &s.addr,
        "--subscribers",
        "20",
        "--publishers",
        "2",
        "--rate",
        "50",
        "--duration",
        "2",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(code, 0, "{v:#}");
    let r = &v["runs"][0];
    assert_eq!(r["clean"], true);
    let sent = r["sent"].as_u64().expect("sent");
    assert_eq!(r["delivered"].as_u64(), Some(sent * 20));
    // With the server's pid, the run measures its CPU while connecting and its RSS per
    // connection (CPU is read in clock ticks: 22 connections may cost less than one).
    let figures = &r["figures"];
    for figure in [
        "connect_cpu_us",
        "rss_per_connection_kib",
        "server_cpu_secs",
    ] {
        assert!(
            figures[figure].as_f64().is_some_and(|x| x >= 0.0),
            "{figure}: {figures:#}"
        );
    }
}

#[test]
fn a_refused_set_up_is_an_error_not_a_clean_run() {
    let s = crossroom();
    let out = Command::new(loadtest())
        .args([
            "groups",
            "--addr",
            &s.addr,
            "--operator-key",
            "op_wrong_key_000000000000000000",
            "--connections",
            "10",
        ])
        .output()
        .expect("run loadtest");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("create company: 401"), "{err}");
}

/// A run that publishes past the server's default per-connection rate (which fits people, not
/// load tests) is not clean and says what limited it, and `loadtest/server.toml` lifts it.
#[test]
fn a_run_limited_by_the_default_rate_says_so() {
    let s = crossroom();
    let args = |addr: &str| -> Vec<String> {
        [
            "broadcast",
            "--addr",
            addr,
            "--operator-key",
            KEY,
            "--subscribers",
            "2",
            "--publishers",
            "1",
            "--rate",
            "3000",
            "--duration",
            "2",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let out = Command::new(loadtest())
        .args(args(&s.addr))
        .arg("--json")
        .output()
        .expect("run loadtest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("limited by the server's per-connection rate"),
        "{stderr}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert!(
        v["runs"][0]["rate_limited"].as_u64().unwrap_or(0) > 0,
        "{v:#}"
    );

    // The same run against a server started with the load-test limits is clean.
    let bin = loadtest().with_file_name(format!("crossroom{}", std::env::consts::EXE_SUFFIX));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/server.toml");
    let mut cmd = Command::new(bin);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--operator-key",
        KEY,
        "--config",
        config,
    ])
    .arg("--data-dir")
    .arg(dir.path());
    let lifted = start(cmd, dir);
    let (code, v) = run(&args(&lifted.addr)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["runs"][0]["rate_limited"], 0);
}

/// `--ramp`: steps grow by the factor while they hold (here up to the cap), and when one fails
/// two bisection steps follow; every step says whether it held, with the client's CPU.
#[test]
fn the_ramp_grows_while_steps_hold_and_bisects_after_one_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(loadtest());
    cmd.args(["ceiling", "--listen", "127.0.0.1:0"]);
    let s = start(cmd, dir);
    let ramp = |spec: &str| {
        run(&[
            "broadcast",
            "--target",
            "ceiling",
            "--addr",
            &s.addr,
            "--subscribers",
            "10",
            "--publishers",
            "1",
            "--ramp",
            spec,
        ])
    };
    let (code, v) = ramp("20,2,1,5000,80");
    assert_eq!(code, 0, "{v:#}");
    let steps = v["steps"].as_array().expect("steps");
    let rates: Vec<f64> = steps
        .iter()
        .map(|s| s["rate_per_publisher"].as_f64().unwrap_or(0.0))
        .collect();
    assert_eq!(rates, [20.0, 40.0, 80.0], "{v:#}");
    assert!(steps.iter().all(|s| s["held"] == true), "{v:#}");
    let best = v["max_deliveries_per_sec"].as_f64().expect("a max");
    assert!(
        best > 400.0 && best < 1000.0,
        "80 msg/s to 10 readers: {best}"
    );
    assert!(steps[0]["run"]["figures"]["client_cpu_secs"]
        .as_f64()
        .is_some());
    // A bound nothing meets: the first step fails, two bisection steps below it fail too.
    let (code, v) = ramp("20,2,1,0.001");
    assert_ne!(code, 0);
    let rates: Vec<f64> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["rate_per_publisher"].as_f64().unwrap_or(0.0))
        .collect();
    assert_eq!(rates, [20.0, 10.0, 5.0], "{v:#}");
    assert!(v["max_deliveries_per_sec"].is_null());
}

/// Every subcommand answers `--help` on stdout with its options and exits 0 (it once answered
/// "--help needs a value").
#[test]
fn every_subcommand_answers_help() {
    for sub in ["broadcast", "groups", "churn", "ceiling", "calendar"] {
        let out = Command::new(loadtest())
            .args([sub, "--help"])
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Usage: loadtest") && text.contains("--"),
            "{sub}: {out:?}"
        );
    }
}
