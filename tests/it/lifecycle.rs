//! Start, health, demo mode and graceful shutdown of the real binary.

use crate::harness::*;
use crossroom_protocol::{close, Encoding};
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

/// `serve --demo` seeds data that works: its printed tokens connect and see the demo group.
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
    let url = format!("ws://{}/v1/ws", addr.expect("address printed"));
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
            assert_eq!(rooms.len(), 1);
            assert_eq!(rooms[0].name, "Launch plan");
        }
        other => panic!("{other:?}"),
    }
    let _ = child.kill().await;
}
