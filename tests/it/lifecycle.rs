//! Start, health, demo mode and graceful shutdown of the real binary.

use crate::harness::*;
use crossroom_protocol::{close, Encoding, ServerFrame};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let server = Server::start().await;
    let r = server.http(None).get("/healthz").await.expect("http");
    assert_eq!(r.status, 200);
    let r = server.http(None).get("/readyz").await.expect("http");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ready");
}

/// SIGTERM: clients are told to reconnect elsewhere (1001), the process exits cleanly, and
/// everything acknowledged is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_sends_1001_and_keeps_the_data() {
    let mut server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Bye", &[&w.carol.id]).await;
    let seq = post_ok(&mut alice, &room, "kept", "kept").await;
    let mut carol = server.connect(&w.carol.token, Encoding::Json).await;
    subscribe(&mut carol, &room, None).await;
    let status = server.terminate().await;
    assert!(status.success(), "{status:?}");
    assert_eq!(
        carol.closed(Duration::from_secs(5)).await.expect("closed"),
        Some(close::GOING_AWAY)
    );
    assert_eq!(
        alice.closed(Duration::from_secs(5)).await.expect("closed"),
        Some(close::GOING_AWAY)
    );
    server.restart().await;
    let mut carol = server.connect(&w.carol.token, Encoding::Json).await;
    let (_, head) = subscribe(&mut carol, &room, None).await;
    assert_eq!(head, seq);
}

/// SIGTERM with `drain_delay_secs`: `/readyz` turns 503 and new sessions are refused while the
/// held ones still work; only then are they told 1001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_before_closing() {
    let mut server = Server::start_with_config("drain_delay_secs = 5\n").await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let http = server.http(None);
    assert_eq!(http.get("/readyz").await.expect("readyz").status, 200);
    let pid = server.pid();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(st.success());
    loop {
        let r = http.get("/readyz").await.expect("readyz");
        if r.status == 503 {
            assert_eq!(r.body["status"], "draining");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Not ready, and still serving what it holds; no new sessions.
    let pong = alice
        .request(crossroom_protocol::ClientFrame::Ping { id: 0 })
        .await
        .expect("the held session still answers");
    assert!(matches!(pong, crossroom_protocol::ServerFrame::Pong { .. }));
    let refused = crossroom_protocol::client::Client::connect(
        &server.ws_url(),
        Some(&w.bob.token),
        Encoding::Json,
    )
    .await;
    assert!(refused.is_err(), "a draining node takes no new session");
    assert_eq!(
        alice.closed(Duration::from_secs(20)).await.expect("closed"),
        Some(close::GOING_AWAY)
    );
    let status = server.wait_exit().await;
    assert!(status.success(), "{status:?}");
}

/// `serve --demo` seeds data that works: its printed tokens connect and see the demo groups (one
/// sharing its history, one alice manages without being a member).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_prints_working_tokens() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_crossroom"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut addr = None;
    let mut alice_token = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while alice_token.is_none() {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("demo output in time")
            .expect("read")
            .expect("a line");
        if let Some(a) = line.strip_prefix("crossroom listening on http://") {
            addr = Some(a.to_owned());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"alice@acme.example") && words.len() == 3 {
            alice_token = Some(words[2].to_owned());
        }
    }
    let addr = addr.expect("address printed");
    // Then a chat-page link per user, signed in by the token in its fragment.
    let page = loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("demo output in time")
            .expect("read")
            .expect("a line");
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"alice@acme.example") && words.len() == 2 {
            break words[1].to_owned();
        }
    };
    assert_eq!(
        page,
        format!(
            "http://{addr}/#token={}",
            alice_token.as_deref().expect("token")
        )
    );
    let html = crossroom_protocol::client::Http::new(addr.clone(), None)
        .get("/")
        .await
        .expect("chat page");
    assert_eq!(html.status, 200);
    assert!(String::from_utf8_lossy(&html.bytes).contains("/assets/chat.js"));
    let url = format!("ws://{addr}/v1/ws");
    let (mut c, _) =
        crossroom_protocol::client::Client::connect(&url, alice_token.as_deref(), Encoding::Json)
            .await
            .expect("demo token connects");
    let r = c
        .request(crossroom_protocol::ClientFrame::ListRooms { id: 0 })
        .await
        .expect("rooms");
    match r {
        crossroom_protocol::ServerFrame::Rooms { rooms, .. } => {
            use crossroom_protocol::Role;
            let mut lines: Vec<(String, Role)> =
                rooms.into_iter().map(|r| (r.name, r.role)).collect();
            lines.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                lines,
                vec![
                    ("Launch plan".to_owned(), Role::Master),
                    ("Partner onboarding".to_owned(), Role::Master),
                    ("Vendor desk".to_owned(), Role::MasterOnly),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    let _ = child.kill().await;
}

/// `log_format = "json"`: every log line is a JSON object, and a room's lines carry its span.
#[tokio::test]
async fn json_logs_carry_the_room_span() {
    let server = Server::start_with_config("log_format = \"json\"\n").await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Logged", &[&w.carol.id]).await;
    let r = alice
        .request(crossroom_protocol::ClientFrame::DeleteGroup {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("delete");
    assert!(
        matches!(r, crossroom_protocol::ServerFrame::Ok { .. }),
        "{r:?}"
    );
    let log = std::fs::read_to_string(server.data_dir.join("server.log")).expect("log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    let deleted = lines
        .iter()
        .find(|l| l["fields"]["message"] == "group deleted")
        .expect("the deletion is logged");
    assert_eq!(deleted["span"]["name"], "room");
    assert_eq!(deleted["span"]["room"], room.0.as_str());
}

/// The security trail at `info`: sessions opening and closing with user and source address, and
/// every refused authentication (WebSocket token, admin key) with its reason and address —
/// never the token or key itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_refused_authentications_are_logged_at_info() {
    let server = Server::start_with_config("log_format = \"json\"\n").await;
    let w = world(&server).await;
    let alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    alice.close().await;
    let forged = format!("{}x", w.bob.token);
    let refused = crossroom_protocol::client::Client::connect(
        &server.ws_url(),
        Some(&forged),
        Encoding::Json,
    )
    .await;
    assert!(refused.is_err());
    // A genuine token of a disabled user: refused, and the log says whose it was.
    let r = server
        .http(Some(&w.acme_key))
        .patch(
            &format!("/v1/admin/users/{}", w.bob.id),
            serde_json::json!({"active": false}),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200);
    let disabled = crossroom_protocol::client::Client::connect(
        &server.ws_url(),
        Some(&w.bob.token),
        Encoding::Json,
    )
    .await;
    assert!(disabled.is_err());
    let bad_key = "ck_not_a_key_of_anyone_at_all";
    assert_eq!(
        get_status(&server, Some(bad_key), "/v1/admin/users").await,
        401
    );
    assert_eq!(
        get_status(&server, Some(&w.acme_key), "/v1/admin/companies").await,
        403
    );
    // The log is written as it happens; the session's close is logged once its task ends.
    let mut lines = Vec::new();
    for _ in 0..100 {
        let log = std::fs::read_to_string(server.data_dir.join("server.log")).expect("log");
        lines = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect();
        if lines
            .iter()
            .any(|l| l["fields"]["message"] == "session closed")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == message && l["level"] == "INFO")
            .unwrap_or_else(|| panic!("no {message:?} at info in {lines:#?}"))
            .clone()
    };
    for m in ["session opened", "session closed"] {
        let l = find(m);
        assert_eq!(l["span"]["user"], w.alice.id.as_str(), "{l}");
        assert!(
            l["span"]["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{l}"
        );
    }
    let l = find("WebSocket upgrade refused");
    assert_eq!(l["fields"]["reason"], "auth", "{l}");
    let named = lines
        .iter()
        .find(|l| {
            l["fields"]["message"] == "WebSocket upgrade refused"
                && l["fields"]["detail"] == "user is disabled"
        })
        .unwrap_or_else(|| panic!("the disabled user's refusal in {lines:#?}"));
    assert_eq!(named["fields"]["user"], w.bob.id.as_str(), "{named}");
    assert!(
        l["fields"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.")),
        "{l}"
    );
    assert!(l["fields"]["reason"].is_string(), "{l}");
    let admin: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "HTTP request refused")
        .collect();
    assert_eq!(admin.len(), 2, "{admin:#?}");
    for reason in ["wrong_key", "wrong_kind"] {
        assert!(
            admin
                .iter()
                .any(|l| l["fields"]["reason"] == reason && l["fields"]["via"] == "admin"),
            "{admin:#?}"
        );
    }
    let log = std::fs::read_to_string(server.data_dir.join("server.log")).expect("log");
    for secret in [forged.as_str(), bad_key, w.acme_key.as_str()] {
        assert!(!log.contains(secret), "a secret in the log");
    }
}

/// Start-up failures say what failed and what to do: the address that is taken, the Redis URL
/// (without its password) that does not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_errors_name_what_failed_and_what_to_do() {
    let server = Server::start().await;
    let start = |args: Vec<String>| async move {
        let dir = tempfile::tempdir().expect("tmp");
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_crossroom"))
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), out)
            .await
            .expect("exits")
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = start(vec!["--listen".into(), server.addr.clone()]).await;
    assert!(!ok);
    assert!(
        err.contains(&server.addr) && err.contains("--listen"),
        "{err}"
    );
    let (ok, err) = start(vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--redis".into(),
        "redis://someone:hunter2secret@127.0.0.1:1".into(),
        // One attempt takes ~3.4 s (the connection's own retries): 5 s make two.
        "--redis-wait-secs".into(),
        "5".into(),
    ])
    .await;
    assert!(!ok);
    assert!(
        err.contains("127.0.0.1:1") && err.contains("--redis"),
        "{err}"
    );
    assert!(
        err.contains("trying again"),
        "retried before giving up: {err}"
    );
    assert!(!err.contains("hunter2secret"), "{err}");
}

/// A node started before its Redis waits for it (with backoff, up to `redis_wait_secs`) and
/// comes up once it answers: nodes and Redis need not start in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_waits_for_redis_at_start() {
    let mut redis = Redis::start(&[]).await;
    redis.kill().await;
    let dir = tempfile::tempdir().expect("tmp");
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").to_string()
    };
    let mut node = tokio::process::Command::new(env!("CARGO_BIN_EXE_crossroom"))
        .args(["serve", "--listen", &addr, "--redis", &redis.url()])
        .args(["--redis-wait-secs", "60", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut stderr = tokio::io::BufReader::new(node.stderr.take().expect("stderr"));
    // It says it is waiting, and keeps running.
    let mut waited = String::new();
    while !waited.contains("trying again") {
        let mut line = String::new();
        let n = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line),
        )
        .await
        .expect("a log line")
        .expect("read");
        assert!(n > 0, "the node exited: {waited}");
        waited.push_str(&line);
    }
    assert!(node.try_wait().expect("status").is_none(), "still waiting");
    redis.restart().await;
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut sink).await;
    });
    let http = crossroom_protocol::client::Http::new(addr.clone(), None);
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(10), http.get("/readyz")).await
        {
            if r.status == 200 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the node came up once Redis answered");
    let _ = node.kill().await;
}

/// The README's backup: `crossroom backup` copies the data directory of a serving server
/// (database snapshot, file bytes, secrets) owner-only; restored as the README says into the
/// data directory of a stopped server, what the copy held is all there — messages and file
/// bytes —, what came after is not, a client that saw the lost tail is told `reset` (D1) rather
/// than resumed past the head — in every room, also one written only after the copy, whose seqs
/// new posts reuse —, and the server says it started from a backup, not from a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_server_restores() {
    let mut server = Server::start().await;
    let w = world(&server).await;
    // A room of an earlier run: the run the backup is taken from writes it only after the copy.
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let quiet = group(&mut alice, "Quiet", &[&w.carol.id]).await;
    post_ok(&mut alice, &quiet, "q0", "quiet 0").await;
    alice.close().await;
    server.restart_in_place().await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Backed up", &[&w.carol.id]).await;
    for i in 0..5 {
        post_ok(&mut alice, &room, &format!("b{i}"), &format!("before {i}")).await;
    }
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let up = crate::features::upload(
        &server,
        &w.alice.token,
        &format!("/v1/rooms/{room}/files?name=kept.bin"),
        "application/octet-stream",
        bytes.clone(),
    )
    .await;
    assert_eq!(up.status, 201, "{:?}", up.body);
    let file = up.body["file"].as_str().expect("file").to_owned();

    let backup = tempfile::tempdir().expect("tmp");
    let dest = backup.path().join("nightly");
    let run_backup = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_crossroom"))
            .arg("backup")
            .arg(&dest)
            .arg("--data-dir")
            .arg(&server.data_dir)
            .output()
            .expect("crossroom backup")
    };
    let out = run_backup();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("files copied"), "{said}");
    // Again into the same place: brought up to date, the stored bytes not copied twice.
    let again = run_backup();
    assert!(again.status.success(), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 files copied"),
        "{again:?}"
    );
    let quiet_seen = post_ok(&mut alice, &quiet, "q1", "after the backup").await;
    let quiet_epoch = subscribe(&mut alice, &quiet, None).await.0;
    let lost = post_ok(&mut alice, &room, "a0", "after 0").await;
    let last = post_ok(&mut alice, &room, "a1", "after 1").await;
    assert!(lost < last);
    let epoch = subscribe(&mut alice, &room, None).await.0;
    alice.close().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(
            mode(&dest),
            0o700,
            "the backup directory is its owner's only"
        );
        for f in ["crossroom.db", "token.secret"] {
            assert_eq!(mode(&dest.join(f)), 0o600, "{f}");
        }
    }

    // The README's restore: stop, drop the old -wal/-shm, copy the backup in, start.
    server.kill().await;
    for f in ["crossroom.db-wal", "crossroom.db-shm"] {
        let _ = std::fs::remove_file(server.data_dir.join(f));
    }
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dest.display()))
        .arg(&server.data_dir)
        .status()
        .expect("cp");
    assert!(cp.success());
    server.restart().await;

    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let texts = message_texts(&whole_history(&mut alice, &room).await);
    assert_eq!(
        texts,
        (0..5).map(|i| format!("before {i}")).collect::<Vec<_>>(),
        "the backup's messages, and only those"
    );
    let got = server
        .http(Some(&w.alice.token))
        .get(&format!("/v1/rooms/{room}/files/{file}"))
        .await
        .expect("download");
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes.as_ref(), &bytes[..], "the file's bytes came back");
    let (_, head) = subscribe(&mut alice, &room, Some((epoch, last))).await;
    assert!(head < last);
    match alice
        .next_push(Duration::from_secs(10))
        .await
        .expect("a push")
    {
        ServerFrame::Reset { .. } => {}
        other => panic!("expected reset, got {other:?}"),
    }
    // The quiet room: a post after the restore takes the seq the client saw with other text;
    // its resume must not pass for the same log (D1) — every room moved to a new epoch.
    let reused = post_ok(&mut alice, &quiet, "q2", "after the restore").await;
    assert_eq!(reused, quiet_seen, "the restored log reuses the seq");
    subscribe(&mut alice, &quiet, Some((quiet_epoch, quiet_seen))).await;
    match alice
        .next_push(Duration::from_secs(10))
        .await
        .expect("a push")
    {
        ServerFrame::Reset { room, .. } if room == quiet => {}
        other => panic!("expected the quiet room's reset, got {other:?}"),
    }
    let log = std::fs::read_to_string(server.data_dir.join("server.log")).expect("log");
    let restart = &log[log
        .rfind("starting from a backup")
        .expect("the restore is named")..];
    assert!(
        !restart.contains("did not stop cleanly"),
        "a restore is not reported as a crash: {restart}"
    );
}

/// One server per data directory (D1): a second `crossroom serve` on the directory of a running
/// server refuses to start, naming the process that holds it, and touches nothing — the running
/// server's rooms keep their epochs (its clients resume, nobody resets). Once the first is gone,
/// the directory is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_one_server_per_data_directory() {
    let mut server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Held", &[&w.carol.id]).await;
    let seq = post_ok(&mut alice, &room, "h1", "held").await;
    let (epoch, _) = subscribe(&mut alice, &room, None).await;
    alice.close().await;

    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_crossroom"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&server.data_dir)
        .kill_on_drop(true)
        .output();
    // A second server that started would serve on: waiting for it to exit is the check.
    let out = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second server exits at once instead of serving")
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second server started: {err}");
    assert!(
        err.contains("in use by another crossroom") && err.contains(&server.pid().to_string()),
        "{err}"
    );
    assert!(!err.contains("did not stop cleanly"), "{err}");

    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let (now, head) = subscribe(&mut alice, &room, Some((epoch, seq))).await;
    assert_eq!((now, head), (epoch, seq), "the room's epoch did not move");
    assert!(
        alice.next_push(Duration::from_millis(500)).await.is_err(),
        "no reset"
    );
    alice.close().await;
    server.kill().await;
    server.restart().await;
    assert_eq!(get_status(&server, None, "/healthz").await, 200);
}
