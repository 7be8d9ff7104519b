//! The JavaScript client library (`src/web/crossroom.mjs`): its unit tests under Node's own test
//! runner, and its integration test against this server across a graceful restart at the same
//! address (`tests/js/integration.mjs`): two users of two companies, JSON and MessagePack, posts
//! made while the server was down delivered once, in order, with no gap (D1, D2).

use crate::harness::*;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn js(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_js_client_unit_tests_pass() {
    let out = std::process::Command::new("node")
        .arg("--test")
        .arg(js("tests/js/"))
        .output()
        .expect("node (on the machine; scripts/test checks)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("# fail 0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_client_resumes_across_a_restart_with_nothing_lost_or_doubled() {
    let mut server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server
        .connect(&w.alice.token, crossroom_protocol::Encoding::Json)
        .await;
    let room = group(&mut alice, "JS client", &[&w.carol.id]).await;
    alice.close().await;
    let mut node = tokio::process::Command::new("node")
        .arg("--experimental-websocket")
        .arg(js("tests/js/integration.mjs"))
        .env("CROSSROOM_WS", server.ws_url())
        .env("ALICE", &w.alice.token)
        .env("CAROL", &w.carol.token)
        .env("ROOM", room.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut stdin = node.stdin.take().expect("stdin");
    let mut out = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let mut said = Vec::new();
    loop {
        let Ok(line) = tokio::time::timeout(Duration::from_secs(60), out.next_line()).await else {
            // Say where the script was: what it printed, and what it wrote to stderr once killed.
            let _ = node.kill().await;
            let mut err = String::new();
            if let Some(mut e) = node.stderr.take() {
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
            }
            panic!("the script said nothing for 60 s; it had said {said:?}\n{err}");
        };
        let line = line.expect("read");
        let Some(line) = line else { break };
        if line == "restart" {
            server.restart_in_place().await;
            stdin.write_all(b"restarted\n").await.expect("write");
        }
        said.push(line);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), node.wait())
        .await
        .expect("exits")
        .expect("wait");
    let mut err = String::new();
    if let Some(mut e) = node.stderr.take() {
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
    }
    assert!(status.success(), "{said:?}\n{err}");
    assert_eq!(
        said.last().map(String::as_str),
        Some("ok"),
        "{said:?}\n{err}"
    );
}
