//! The pages the binary serves, driven in headless Chromium through WebDriver (Debian's
//! `chromium` and `chromium-driver`, installed by `scripts/test`). Screenshots are saved under
//! `target/tmp/browser-artifacts/`.
//!
//! The WebDriver client is a few JSON calls over HTTP (W3C WebDriver), on the same small HTTP
//! client the other tests use.

use crate::harness::*;
use crossroom_protocol::client::Http;
use crossroom_protocol::{ClientFrame, Encoding, ServerFrame};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(20);
/// Longest a single WebDriver call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

/// A chromedriver process on a free port.
struct Driver {
    _child: Child,
    http: Http,
}

impl Driver {
    async fn start() -> Driver {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "browser tests need Debian's chromium and chromium-driver \
             (scripts/test installs them: apt-get install -y chromium chromium-driver)"
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let mut child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(l) = lines.next_line().await.expect("chromedriver output") {
                if l.contains("started successfully") {
                    return;
                }
            }
            panic!("chromedriver exited before it was ready");
        })
        .await
        .expect("chromedriver starts");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Driver {
            _child: child,
            http: Http::new(format!("127.0.0.1:{port}"), None),
        }
    }

    /// A new browser (its own profile, so its own sessionStorage).
    async fn browser(&self, name: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                        "--window-size=1280,800",
                        format!("--user-data-dir={}", profile.path().display()),
                    ]
                }
            }}
        });
        let r = tokio::time::timeout(CALL_TIMEOUT, self.http.post("/session", caps))
            .await
            .expect("the browser starts in time")
            .expect("new session");
        assert_eq!(r.status, 200, "WebDriver new session: {}", r.body);
        Browser {
            http: self.http.clone(),
            session: r.body["value"]["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_owned(),
            name: name.to_owned(),
            _profile: profile,
        }
    }
}

struct Browser {
    http: Http,
    session: String,
    name: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("/session/{}{path}", self.session);
        let r = tokio::time::timeout(CALL_TIMEOUT, self.http.call(method, &url, body))
            .await
            .unwrap_or_else(|_| panic!("{}: WebDriver {method} {path} took too long", self.name))
            .expect("webdriver");
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        r.body["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// Run `script` (a function body; `arguments` are `args`) in the page.
    async fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Wait until `script` returns something truthy; returns it. On timeout, a screenshot and a
    /// panic naming `what`.
    async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.js(script, args.clone()).await;
            let truthy = !matches!(&v, Value::Null | Value::Bool(false))
                && v.as_str() != Some("")
                && v.as_f64() != Some(0.0);
            if truthy {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                let shot = self
                    .screenshot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await;
                panic!(
                    "{}: gave up waiting for {what}; screenshot {}",
                    self.name,
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Click the element matching `css` (it must exist).
    async fn click(&self, css: &str) {
        self.wait_for(
            &format!("{css} to be clickable"),
            "const e = document.querySelector(arguments[0]); return !!e && !e.disabled && e.offsetParent !== null;",
            json!([css]),
        )
        .await;
        let el = self.element(css).await;
        self.call("POST", &format!("/element/{el}/click"), Some(json!({})))
            .await;
    }

    /// Type `text` into the element matching `css`, as a person would.
    async fn type_into(&self, css: &str, text: &str) {
        let el = self.element(css).await;
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .expect("element id")
            .to_owned()
    }

    async fn screenshot(&self, label: &str) -> PathBuf {
        let v = self.call("GET", "/screenshot", None).await;
        let png = base64_decode(v.as_str().expect("base64 png"));
        let path = artifacts().join(format!("{}-{label}.png", self.name));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Close the browser (bounded: a browser that hangs is killed with its driver).
    async fn quit(self) {
        let path = format!("/session/{}", self.session);
        let _ = tokio::time::timeout(CALL_TIMEOUT, self.http.call("DELETE", &path, None)).await;
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("valid base64")
}

/// Wait for the text of the page's messages to contain `text`.
const HAS_MESSAGE: &str = "return Array.from(document.querySelectorAll('#messages .msg .text')).some(e => e.textContent === arguments[0]);";

#[tokio::test]
async fn g12_chat_page_two_companies_talk_and_a_removed_member_loses_the_room_at_once() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice_ws = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice_ws, "Launch plan", &[&w.carol.id]).await;
    // A note and a task, so the side panel has something to show.
    alice_ws
        .request(ClientFrame::Act {
            id: 0,
            room: room.clone(),
            action: serde_json::from_value(
                json!({"op":"post_note","title":"Agenda","body":"1. ship"}),
            )
            .expect("action"),
        })
        .await
        .expect("note");
    alice_ws
        .request(ClientFrame::Act {
            id: 0,
            room: room.clone(),
            action: serde_json::from_value(json!({
                "op":"create_task","title":"Book the venue",
                "assignees":[w.carol.id.0], "completion":"all"
            }))
            .expect("action"),
        })
        .await
        .expect("task");

    let driver = Driver::start().await;
    let alice = driver.browser("alice").await;
    let carol = driver.browser("carol").await;
    let base = format!("http://{}", server.addr);

    // Alice signs in through the form; Carol with a token in the fragment.
    alice.goto(&format!("{base}/")).await;
    alice.type_into("#token", &w.alice.token).await;
    alice.click("#signin-button").await;
    carol
        .goto(&format!("{base}/#token={}", w.carol.token))
        .await;
    let room_li = format!("#rooms li[data-room=\"{room}\"]");
    for b in [&alice, &carol] {
        b.click(&room_li).await;
        b.wait_for(
            "the composer",
            "return !document.getElementById('compose').disabled;",
            json!([]),
        )
        .await;
    }
    // The side panel shows the members, the note and the task.
    carol
        .wait_for(
            "members, notes and tasks",
            "const t = (id) => document.getElementById(id).textContent; \
             return !!document.querySelector(`#members li[data-user=\"${arguments[0]}\"]`) && t('notes').includes('Agenda') && t('tasks').includes('Book the venue');",
            json!([w.alice.id.0]),
        )
        .await;

    alice.type_into("#compose", "hello from acme").await;
    alice.click("#send").await;
    carol
        .wait_for("alice's message", HAS_MESSAGE, json!(["hello from acme"]))
        .await;
    carol.type_into("#compose", "hi from globex\u{E007}").await;
    alice
        .wait_for("carol's reply", HAS_MESSAGE, json!(["hi from globex"]))
        .await;
    // Messages from the other company are stored for real: a fresh client's history has both.
    let mut check = server.connect(&w.carol.token, Encoding::Json).await;
    match check
        .request(ClientFrame::History {
            id: 0,
            room: room.clone(),
            before: None,
            limit: Some(10),
        })
        .await
        .expect("history")
    {
        ServerFrame::History { events, .. } => {
            let texts: Vec<String> = events
                .iter()
                .filter_map(|e| match &e.body {
                    crossroom_protocol::EventBody::Message { text, .. } => Some(text.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(texts, vec!["hello from acme", "hi from globex"]);
        }
        other => panic!("{other:?}"),
    }
    alice.screenshot("conversation").await;
    carol.screenshot("conversation").await;

    // G12: alice removes carol; the room vanishes from carol's page at once, with a notice.
    remove_ok(&mut alice_ws, &room, &w.carol.id).await;
    carol
        .wait_for(
            "the room to vanish",
            "return document.querySelector(arguments[0]) === null && !document.getElementById('notice').hidden;",
            json!([room_li]),
        )
        .await;
    let notice = carol
        .js(
            "return document.getElementById('notice').textContent;",
            json!([]),
        )
        .await;
    assert!(
        notice.as_str().is_some_and(|n| n.contains("removed")),
        "{notice}"
    );
    // What alice says next never reaches carol's page.
    alice
        .type_into("#compose", "after the removal\u{E007}")
        .await;
    alice
        .wait_for("her own message", HAS_MESSAGE, json!(["after the removal"]))
        .await;
    let leaked = carol.js(HAS_MESSAGE, json!(["after the removal"])).await;
    assert_eq!(leaked, json!(false));
    carol.screenshot("after-removal").await;
    alice.quit().await;
    carol.quit().await;
}

/// The chat page on the client library, as two people of two companies use it: a long room
/// pages back with "Load older", authors of the other company carry its badge, a room not shown
/// counts its unread messages, typing shows; the server restarts (1001) and the page reconnects
/// by itself, resumes with no gap, and sends what was written while it was down exactly once;
/// at 390 px wide nothing but the message pane scrolls.
#[tokio::test]
async fn chat_page_pages_badges_types_and_survives_a_restart() {
    let mut server = Server::start().await;
    let w = world(&server).await;
    let mut alice_ws = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice_ws, "Launch plan", &[&w.carol.id]).await;
    let side = group(&mut alice_ws, "Side room", &[&w.carol.id]).await;
    for i in 0..60 {
        post_ok(
            &mut alice_ws,
            &room,
            &format!("old{i}"),
            &format!("old {i}"),
        )
        .await;
    }
    let driver = Driver::start().await;
    let carol = driver.browser("carol-390").await;
    // Opened by name (localhost), not by the bound address: the page's own origin is admitted.
    let port = server.addr.rsplit(':').next().expect("port").to_owned();
    carol
        .goto(&format!("http://localhost:{port}/#token={}", w.carol.token))
        .await;
    carol
        .click(&format!("#rooms li[data-room=\"{room}\"]"))
        .await;
    carol
        .wait_for(
            "the last page",
            "return document.querySelectorAll('#messages .msg').length === 50 && !document.getElementById('older').hidden;",
            json!([]),
        )
        .await;
    carol.click("#older").await;
    carol
        .wait_for(
            "every message",
            "return document.querySelectorAll('#messages .msg').length === 60 && document.getElementById('older').hidden;",
            json!([]),
        )
        .await;
    let badge = carol
        .js(
            "return document.querySelector('#messages .msg .author .company').textContent;",
            json!([]),
        )
        .await;
    assert_eq!(badge, json!("acme.example"));
    // A room not shown counts what arrives in it.
    for i in 0..3 {
        post_ok(&mut alice_ws, &side, &format!("side{i}"), "over here").await;
    }
    // A rename by the owner's admin reaches the room list at once.
    let r = server
        .http(Some(&w.acme_key))
        .patch(
            &format!("/v1/admin/groups/{side}"),
            json!({"name": "Side renamed"}),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    carol
        .wait_for(
            "the new name",
            "return document.querySelector(`#rooms li[data-room=\"${arguments[0]}\"] .name`).textContent === 'Side renamed';",
            json!([side.0]),
        )
        .await;
    carol
        .wait_for(
            "an unread badge of 3",
            "const b = document.querySelector(`#rooms li[data-room=\"${arguments[0]}\"] .badge`); return !!b && b.textContent === '3';",
            json!([side.0]),
        )
        .await;
    alice_ws
        .request(ClientFrame::Typing {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("typing");
    carol
        .wait_for(
            "alice typing",
            "return document.getElementById('typing').textContent.includes('is typing');",
            json!([]),
        )
        .await;

    // The server restarts in place; carol writes while it is down.
    alice_ws.close().await;
    server.restart_in_place().await;
    carol
        .wait_for(
            "the page to reconnect",
            "return document.getElementById('status').textContent === 'connected';",
            json!([]),
        )
        .await;
    carol.type_into("#compose", "back again\u{E007}").await;
    let mut alice_ws = server.connect(&w.alice.token, Encoding::MsgPack).await;
    subscribe(&mut alice_ws, &room, None).await;
    post_ok(&mut alice_ws, &room, "after", "after the restart").await;
    carol
        .wait_for(
            "the post after the restart",
            HAS_MESSAGE,
            json!(["after the restart"]),
        )
        .await;
    carol
        .wait_for("her own post", HAS_MESSAGE, json!(["back again"]))
        .await;
    // No gap and nothing twice: the seqs shown run without a hole.
    let seqs = carol
        .js(
            "return Array.from(document.querySelectorAll('#messages [data-seq]')).map(e => Number(e.dataset.seq));",
            json!([]),
        )
        .await;
    let seqs: Vec<u64> = serde_json::from_value(seqs).expect("seqs");
    assert!(seqs.windows(2).all(|p| p[1] == p[0] + 1), "{seqs:?}");
    let texts = message_texts(&whole_history(&mut alice_ws, &room).await);
    assert_eq!(
        texts.iter().filter(|t| *t == "back again").count(),
        1,
        "{texts:?}"
    );

    // 390 px wide: the page itself does not scroll, the composer is on screen.
    carol
        .call(
            "POST",
            "/window/rect",
            Some(json!({"width": 390, "height": 844})),
        )
        .await;
    let fits = carol
        .js(
            "const d = document.documentElement; const c = document.getElementById('compose').getBoundingClientRect(); \
             return [d.scrollWidth <= window.innerWidth, d.scrollHeight <= window.innerHeight + 1, c.bottom <= window.innerHeight, c.width > 200];",
            json!([]),
        )
        .await;
    assert_eq!(fits, json!([true, true, true, true]), "layout at 390 px");
    carol.screenshot("390px").await;
    carol.click("#toggle-rooms").await;
    carol.screenshot("390px-rooms").await;
    carol.quit().await;
}

/// A 1×1 PNG, for an attachment that is an image.
const DOT_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/// Put a file into the `<input type=file>` at `css` as a person picking it would (the page sees
/// a `change` with it).
fn pick_file(css: &str, name: &str, b64: &str, mime: &str) -> (String, Value) {
    (
        "const bytes = Uint8Array.from(atob(arguments[2]), c => c.charCodeAt(0)); \
         const dt = new DataTransfer(); dt.items.add(new File([bytes], arguments[1], {type: arguments[3]})); \
         const input = document.querySelector(arguments[0]); input.files = dt.files; \
         input.dispatchEvent(new Event('change'));"
            .to_owned(),
        json!([css, name, b64, mime]),
    )
}

/// The whole product through the page, two companies: alice (acme) creates a group with carol
/// (globex) from her contacts, makes an invitation link that dave (globex) opens and joins by;
/// they talk (typing, presence, receipts), alice attaches an image that carol sees as a
/// thumbnail, carol posts a note, alice assigns carol a task that carol completes, carol adds a
/// weekly event, alice uploads into the folder, and alice removes dave, whose page says so.
#[tokio::test]
async fn chat_page_runs_a_group_from_creation_to_removal() {
    let server = Server::start().await;
    let w = world(&server).await;
    let base = format!("http://{}", server.addr);
    let driver = Driver::start().await;
    let alice = driver.browser("flow-alice").await;
    let carol = driver.browser("flow-carol").await;
    let dave = driver.browser("flow-dave").await;
    alice
        .goto(&format!("{base}/#token={}", w.alice.token))
        .await;
    carol
        .goto(&format!("{base}/#token={}", w.carol.token))
        .await;

    // Create a group from contacts.
    alice.click("#new-group").await;
    alice.type_into("#create-name", "Joint launch").await;
    alice
        .click(&format!("#create-people input[value=\"{}\"]", w.carol.id))
        .await;
    alice.click("#create button[type=submit]").await;
    alice
        .wait_for(
            "the new group open",
            "return document.getElementById('room-name').textContent === 'Joint launch' && !document.getElementById('compose').disabled;",
            json!([]),
        )
        .await;
    let room: String = serde_json::from_value(
        alice
            .js(
                "return document.querySelector('#rooms li.active').dataset.room;",
                json!([]),
            )
            .await,
    )
    .expect("room id");
    // An invitation link, opened by dave.
    alice.click("#tab-group").await;
    alice.click("#make-invite").await;
    let link: String = serde_json::from_value(
        alice
            .wait_for(
                "the invitation link",
                "const v = document.getElementById('invite-link').value; return v.includes('#invite=') ? v : null;",
                json!([]),
            )
            .await,
    )
    .expect("link");
    assert!(link.starts_with(&base), "{link}");
    dave.goto(&format!("{link}&token={}", w.dave.token)).await;
    dave.wait_for(
        "dave in the group",
        "return document.getElementById('room-name').textContent === 'Joint launch';",
        json!([]),
    )
    .await;
    alice.click("#details .tabs button[data-tab=people]").await;
    alice
        .wait_for(
            "dave among the members",
            "return !!document.querySelector(`#members li[data-user=\"${arguments[0]}\"]`);",
            json!([w.dave.id.0]),
        )
        .await;

    // Talk: presence, typing, receipts.
    carol
        .click(&format!("#rooms li[data-room=\"{room}\"]"))
        .await;
    alice
        .wait_for(
            "carol online",
            "const li = document.querySelector(`#members li[data-user=\"${arguments[0]}\"] .presence`); return !!li && li.classList.contains('online');",
            json!([w.carol.id.0]),
        )
        .await;
    carol.type_into("#compose", "typing away").await;
    alice
        .wait_for(
            "carol typing",
            "return document.getElementById('typing').textContent.includes('typing');",
            json!([]),
        )
        .await;
    carol.type_into("#compose", "\u{E007}").await;
    alice
        .wait_for("carol's message", HAS_MESSAGE, json!(["typing away"]))
        .await;
    alice.type_into("#compose", "welcome both\u{E007}").await;
    carol
        .wait_for("alice's message", HAS_MESSAGE, json!(["welcome both"]))
        .await;
    dave.wait_for("alice's message", HAS_MESSAGE, json!(["welcome both"]))
        .await;
    alice
        .wait_for(
            "carol's read marker to pass it",
            "const b = Array.from(document.querySelectorAll('#messages .msg.mine')).pop().querySelector('.receipts'); b.click(); \
             return /read by [12]/.test(b.textContent) ? b.textContent : null;",
            json!([]),
        )
        .await;

    // An image attachment, seen as a thumbnail on the other side.
    let (script, args) = pick_file("#attach", "dot.png", DOT_PNG, "image/png");
    alice.js(&script, args).await;
    alice
        .wait_for(
            "the upload",
            "return document.getElementById('pending').textContent.includes('ready to post');",
            json!([]),
        )
        .await;
    alice.type_into("#compose", "see attached\u{E007}").await;
    carol
        .wait_for(
            "the thumbnail",
            "const img = document.querySelector('#messages .msg img.thumb'); return !!img && img.complete && img.naturalWidth === 1;",
            json!([]),
        )
        .await;

    // A note by carol, a task for carol by alice, an event by carol, a folder file by alice.
    carol.click("#details .tabs button[data-tab=notes]").await;
    carol.type_into("#note-title", "Agenda").await;
    carol.type_into("#note-body", "1. ship it").await;
    carol.click("#new-note button[type=submit]").await;
    alice
        .wait_for(
            "carol's note",
            "return document.getElementById('notes').textContent.includes('Agenda');",
            json!([]),
        )
        .await;
    alice.click("#details .tabs button[data-tab=tasks]").await;
    alice.type_into("#task-title", "Book the venue").await;
    alice
        .js(
            "const s = document.getElementById('task-assignees'); for (const o of s.options) o.selected = o.value === arguments[0];",
            json!([w.carol.id.0]),
        )
        .await;
    alice.click("#new-task button[type=submit]").await;
    carol.click("#details .tabs button[data-tab=tasks]").await;
    carol.click("#tasks li.task input[type=checkbox]").await;
    alice
        .wait_for(
            "the task done",
            "return !!document.querySelector('#tasks li.task.done');",
            json!([]),
        )
        .await;
    carol
        .click("#details .tabs button[data-tab=calendar]")
        .await;
    carol.type_into("#event-title", "Weekly sync").await;
    carol
        .js(
            "const d = new Date(Date.now() + 86400000); d.setSeconds(0, 0); \
             document.getElementById('event-start').value = new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); \
             document.getElementById('event-repeat').value = 'weekly';",
            json!([]),
        )
        .await;
    carol.click("#new-event button[type=submit]").await;
    alice
        .click("#details .tabs button[data-tab=calendar]")
        .await;
    // The month grid first (a cell per day), then the list of the next 60 days.
    alice
        .wait_for(
            "the month grid",
            "const n = document.querySelectorAll('#calendar .month .day:not(.empty)').length; return n >= 28 && n <= 31;",
            json!([]),
        )
        .await;
    alice.screenshot("calendar-month").await;
    alice.click("#calendar-list").await;
    alice
        .wait_for(
            "weekly occurrences",
            "return Array.from(document.querySelectorAll('#calendar li')).filter(li => li.textContent.includes('Weekly sync')).length >= 8;",
            json!([]),
        )
        .await;
    alice.click("#details .tabs button[data-tab=files]").await;
    let (script, args) = pick_file("#folder-upload", "plan.txt", "VGhlIHBsYW4u", "text/plain");
    alice.js(&script, args).await;
    carol.click("#details .tabs button[data-tab=files]").await;
    carol
        .wait_for(
            "the folder file",
            "return document.getElementById('files').textContent.includes('plan.txt');",
            json!([]),
        )
        .await;
    // A folder, a file in it; the trash and back.
    alice.type_into("#folder-name", "Contracts").await;
    alice.click("#new-folder button[type=submit]").await;
    alice.click("#files a.folder").await;
    alice
        .wait_for(
            "inside the folder",
            "return document.getElementById('folder-path').textContent.includes('Contracts');",
            json!([]),
        )
        .await;
    let (script, args) = pick_file("#folder-upload", "deal.txt", "RGVhbC4=", "text/plain");
    alice.js(&script, args).await;
    alice
        .wait_for(
            "the file in the folder",
            "return document.getElementById('files').textContent.includes('deal.txt');",
            json!([]),
        )
        .await;
    carol
        .click("#files li.file:not(:has(a.folder)) button")
        .await;
    carol
        .wait_for(
            "plan.txt in the trash",
            "return document.getElementById('trash').textContent.includes('plan.txt') && !document.getElementById('files').textContent.includes('plan.txt');",
            json!([]),
        )
        .await;
    carol.click("#trash li.file button").await;
    carol
        .wait_for(
            "plan.txt back",
            "return document.getElementById('files').textContent.includes('plan.txt');",
            json!([]),
        )
        .await;
    alice.screenshot("group-flow").await;
    carol.screenshot("group-flow").await;

    // Alice removes dave: his page says so and keeps nothing of the room.
    alice.click("#details .tabs button[data-tab=people]").await;
    alice
        .click(&format!(
            "#members li[data-user=\"{}\"] button.remove",
            w.dave.id
        ))
        .await;
    dave.wait_for(
        "the removal notice",
        "return document.querySelector(`#rooms li[data-room=\"${arguments[0]}\"]`) === null && document.getElementById('notice').textContent.includes('removed');",
        json!([room]),
    )
    .await;
    let left = dave
        .js(
            "return document.querySelectorAll('#messages .msg').length;",
            json!([]),
        )
        .await;
    assert_eq!(left, json!(0), "the removed page keeps no message");
    dave.screenshot("removed").await;
    for b in [alice, carol, dave] {
        b.quit().await;
    }
}

/// The dashboard, as an operator uses it: the audit backlog is there on open and after a reload
/// (stored records, newest first, paged with "Load older"), each line a sentence with names and
/// the record behind it on demand; counters and charts (with legends, ticks and gridlines) move
/// under load, and the latency tiles keep their last value once it is idle.
#[tokio::test]
async fn dashboard_backlog_names_charts_and_idle_tiles() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    // 54 records before the dashboard opens: more than one backlog page (50).
    for i in 0..54 {
        group(&mut alice, &format!("Old {i}"), &[&w.carol.id]).await;
    }
    let driver = Driver::start().await;
    let ops = driver.browser("dashboard").await;
    ops.goto(&format!(
        "http://{}/dashboard#key={OPERATOR_KEY}",
        server.addr
    ))
    .await;
    ops.wait_for(
        "the first backlog page",
        "return document.querySelectorAll('#audit li.audit').length === 50 && !document.getElementById('older').hidden;",
        json!([]),
    )
    .await;
    let newest = ops
        .js(
            "return document.querySelector('#audit li.audit summary').textContent;",
            json!([]),
        )
        .await;
    let newest = newest.as_str().expect("text");
    assert!(
        newest.contains("alice created “Old 53” with 2 members and 1 master"),
        "a sentence with names, newest first: {newest}"
    );
    assert!(!newest.contains("r_"), "no room id in the line: {newest}");
    ops.click("#audit li.audit summary").await;
    let detail = ops
        .js(
            "return document.querySelector('#audit li.audit dl').innerText;",
            json!([]),
        )
        .await;
    assert!(
        detail
            .as_str()
            .is_some_and(|d| d.contains("acme.example") && d.contains("\"members\"")),
        "details on demand: {detail}"
    );
    ops.js(
        "document.querySelector('#audit li.audit').scrollIntoView({block: 'center'});",
        json!([]),
    )
    .await;
    ops.screenshot("backlog-with-details").await;
    ops.click("#older").await;
    ops.wait_for(
        "the older page, then the end",
        "return document.querySelectorAll('#audit li.audit').length === 54 && !document.getElementById('audit-end').hidden;",
        json!([]),
    )
    .await;
    // A reload shows the backlog again.
    ops.goto(&format!("http://{}/dashboard", server.addr)).await;
    ops.wait_for(
        "the backlog after a reload",
        "return document.querySelectorAll('#audit li.audit').length === 50;",
        json!([]),
    )
    .await;
    let total = "const v = document.getElementById('messages-total').textContent; return v === '–' ? null : v;";
    let before: u64 = ops
        .wait_for("the first stats frame", total, json!([]))
        .await
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a number");

    // Load: a group, two subscribers, 300 messages.
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Load", &[&w.carol.id]).await;
    subscribe(&mut carol, &room, None).await;
    for batch in 0..30 {
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(
                alice
                    .send(&mut post(&room, &format!("l{batch}-{i}"), "load"))
                    .await
                    .expect("send"),
            );
        }
        for id in ids {
            alice
                .reply_to(id, Duration::from_secs(20))
                .await
                .expect("posted");
        }
    }
    ops.wait_for(
        "the message counter to move by 300",
        "return Number(document.getElementById('messages-total').textContent) >= arguments[0];",
        json!([before + 300]),
    )
    .await;
    ops.wait_for(
        "two sessions",
        "return document.getElementById('sessions').textContent === '2';",
        json!([]),
    )
    .await;
    // The group's creation comes live, on top, by name.
    ops.wait_for(
        "the live audit record",
        "const li = document.querySelector('#audit li.audit'); return li.dataset.action === 'created' && li.dataset.room === arguments[0] && li.textContent.includes('“Load”');",
        json!([room.0]),
    )
    .await;
    let drawn = ops
        .js(
            "const c = document.getElementById('chart-throughput'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
             let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;",
            json!([]),
        )
        .await;
    assert!(
        drawn.as_u64().unwrap_or(0) > 100,
        "the chart has ink: {drawn}"
    );
    let legend = ops
        .js(
            "return Array.from(document.querySelectorAll('#legend-latency span')).map(s => s.textContent);",
            json!([]),
        )
        .await;
    assert_eq!(legend, json!(["commit p50", "commit p99", "fan-out p99"]));
    ops.screenshot("under-load").await;
    // Idle: the latency tiles keep what they last measured, and say since when.
    ops.wait_for(
        "an idle latency tile that keeps its value",
        "const v = document.getElementById('commit-p99').textContent; return v !== '–' && document.getElementById('commit-age').textContent.includes('measured');",
        json!([]),
    )
    .await;
    ops.screenshot("idle").await;
    ops.quit().await;
}

/// M6 on the chat page: a search from the sidebar lists the messages found with their matches
/// marked (Korean inside a word too), and a result opens its room at the message, highlighted,
/// far back in a long room, with a way back to the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m6_chat_page_searches_and_opens_a_room_at_the_message() {
    let server =
        Server::start_with_config("[limits]\nrequests_per_sec = 10000\nrequest_burst = 10000\n")
            .await;
    let w = world(&server).await;
    let mut alice_ws = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice_ws, "Quarterly", &[&w.carol.id]).await;
    let other = group(&mut alice_ws, "Travel", &[&w.carol.id]).await;
    post_ok(
        &mut alice_ws,
        &room,
        "old",
        "the budget draft for 다음주회의",
    )
    .await;
    for i in 0..120 {
        post_ok(
            &mut alice_ws,
            &room,
            &format!("f{i}"),
            &format!("filler {i}"),
        )
        .await;
    }
    post_ok(&mut alice_ws, &other, "t", "hotel budget approved").await;

    let driver = Driver::start().await;
    let carol = driver.browser("carol").await;
    carol
        .goto(&format!("http://{}/#token={}", server.addr, w.carol.token))
        .await;
    carol
        .wait_for(
            "the rooms",
            "return document.querySelectorAll('#rooms li').length === 2;",
            json!([]),
        )
        .await;
    carol.type_into("#search", "budget\u{E007}").await;
    carol
        .wait_for(
            "two results, newest first, matches marked",
            "const r = [...document.querySelectorAll('#search-results li.result')]; \
             return r.length === 2 && r[0].textContent.includes('hotel') \
               && r[1].querySelector('mark')?.textContent === 'budget';",
            json!([]),
        )
        .await;
    carol
        .js("document.getElementById('search').value = '';", json!([]))
        .await;
    carol.type_into("#search", "회의\u{E007}").await;
    carol
        .wait_for(
            "the Korean word found inside a longer one",
            "const r = [...document.querySelectorAll('#search-results li.result')]; \
             return r.length === 1 && r[0].querySelector('mark')?.textContent === '회의';",
            json!([]),
        )
        .await;
    carol.click("#search-results li.result button").await;
    carol
        .wait_for(
            "the room opened at the message, highlighted, with a way to the newest",
            "const f = document.querySelector('#messages .msg.found'); \
             return !!f && f.textContent.includes('다음주회의') && f.dataset.seq === arguments[0] \
               && !document.getElementById('newest').hidden;",
            json!(["2"]),
        )
        .await;
    carol.screenshot("search-result-opened").await;
    carol.click("#newest").await;
    carol
        .wait_for(
            "the newest messages",
            "return [...document.querySelectorAll('#messages .msg')].some((m) => m.textContent.includes('filler 119')) \
               && document.getElementById('newest').hidden;",
            json!([]),
        )
        .await;
    carol.quit().await;
}
