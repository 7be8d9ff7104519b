//! What a new operator meets first, run as they would: the start-up lines of an empty server
//! (where the operator key is, how to create the first company — the printed command is run as
//! printed), the README's "First steps without the demo" block run as written, `--help` of every
//! subcommand, the pages' icon.

use crate::harness::*;
use crossroom_protocol::client::{Client, Http};
use crossroom_protocol::{ClientFrame, Encoding, ServerFrame};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// `crossroom serve` as the README starts it — no operator key given, data in
/// `./crossroom-data` under `cwd` — logging to `log`; its address.
async fn serve_plain(cwd: &Path, log: &Path) -> (tokio::process::Child, String) {
    let log = std::fs::File::create(log).expect("log file");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_crossroom"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(cwd)
        .env_remove("CROSSROOM_OPERATOR_KEY")
        .env_remove("CROSSROOM_DATA_DIR")
        .env_remove("CROSSROOM_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if let Some(a) = line.strip_prefix("crossroom listening on http://") {
                return a.to_owned();
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("listening in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// The log once it holds `needle` (the lines after "listening" come a moment later).
async fn log_with(log: &Path, needle: &str) -> String {
    for _ in 0..300 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{needle:?} never logged:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// `bash -c script` in `cwd`; its standard output.
fn bash(cwd: &Path, script: &str) -> String {
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(cwd)
        .output()
        .expect("bash (and curl: scripts/test installs it)");
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The README's ```sh block under "First steps without the demo".
fn first_steps_block() -> &'static str {
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("### First steps without the demo")
        .expect("the section")..];
    let start = section.find("```sh\n").expect("its block") + "```sh\n".len();
    &section[start..start + section[start..].find("```").expect("its end")]
}

/// An empty server says where the operator key is and how to create the first company; the
/// command it prints works as printed; the README's first steps, run as written, give two
/// people of two companies a group and chat-page links that sign them in. Once a company
/// exists, the hint is not repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_server_says_where_its_key_is_and_the_first_steps_work_as_written() {
    let cwd = tempfile::tempdir().expect("tmp");
    let log = cwd.path().join("first.log");
    let (mut child, addr) = serve_plain(cwd.path(), &log).await;
    let text = log_with(&log, "no company yet").await;
    let key_file = cwd.path().join("crossroom-data").join("operator.key");
    let key = std::fs::read_to_string(&key_file).expect("the generated key");
    assert!(
        text.lines()
            .any(|l| l.contains("operator key") && l.contains("crossroom-data/operator.key")),
        "{text}"
    );
    assert!(!text.contains(key.trim()), "the key itself is never logged");
    let hint = text
        .lines()
        .find(|l| l.contains("no company yet"))
        .expect("the hint");
    let command = &hint[hint.find("curl ").expect("a command")..];
    let created: serde_json::Value =
        serde_json::from_str(&bash(cwd.path(), command)).expect("JSON");
    assert!(
        created["admin_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("ck_")),
        "{created}"
    );

    // The README's block, with this server's address for the one it assumes.
    let block = first_steps_block().replace("127.0.0.1:8080", &addr);
    let out = bash(cwd.path(), &block);
    let link = |who: &str| {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{who}: ")))
            .unwrap_or_else(|| panic!("a link for {who} in {out}"));
        line[line.find("#token=").expect("a token") + "#token=".len()..].to_owned()
    };
    let page = Http::new(addr.clone(), None).get("/").await.expect("page");
    assert_eq!(page.status, 200);
    for who in ["alice", "carol"] {
        let (mut c, _) = Client::connect(
            &format!("ws://{addr}/v1/ws"),
            Some(&link(who)),
            Encoding::Json,
        )
        .await
        .unwrap_or_else(|e| panic!("{who}'s link signs in: {e:?}"));
        match c.request(ClientFrame::ListRooms { id: 0 }).await {
            Ok(ServerFrame::Rooms { rooms, .. }) => assert!(
                rooms.iter().any(|r| r.name == "Launch"),
                "{who} is in the group: {rooms:?}"
            ),
            other => panic!("{other:?}"),
        }
        c.close().await;
    }

    let _ = child.kill().await;
    let log = cwd.path().join("second.log");
    let (mut child, _) = serve_plain(cwd.path(), &log).await;
    let text = log_with(&log, "operator key").await;
    assert!(
        !text.contains("no company yet"),
        "only an empty server is told how to begin: {text}"
    );
    let _ = child.kill().await;
}

/// Every subcommand answers `--help` with its options; the pages have an icon (no 404 in every
/// page load's log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_for_every_subcommand_and_an_icon_for_the_pages() {
    for (args, option) in [
        (&["--help"][..], "backup"),
        (&["serve", "--help"][..], "--data-dir"),
        (&["backup", "--help"][..], "DEST"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_crossroom"))
            .args(args)
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(option),
            "{args:?}: {out:?}"
        );
    }
    let server = Server::start().await;
    let http = server.http(None);
    for path in ["/favicon.ico", "/assets/favicon.svg"] {
        let r = http.get(path).await.expect("http");
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("image/svg+xml"), "{path}");
        assert!(
            String::from_utf8_lossy(&r.bytes).starts_with("<svg"),
            "{path}"
        );
    }
    for page in ["/", "/dashboard"] {
        let html = http.get(page).await.expect("page");
        assert!(
            String::from_utf8_lossy(&html.bytes)
                .contains(r#"rel="icon" href="/assets/favicon.svg""#),
            "{page} links the icon"
        );
    }
}
