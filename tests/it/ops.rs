//! Operations: `/metrics` counters move as traffic flows, and the ops
//! stream (`/v1/ops`): stats every second, audit records as they happen, filters, and auth.

use crate::harness::*;
use crossroom_protocol::ops::{OpsServerFrame, Stats};
use crossroom_protocol::{close, ClientFrame, CompanyId, Encoding, ErrorCode};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::test]
async fn metrics_count_messages_deliveries_frames_and_sessions() {
    let server = Server::start_with_config("[metrics]\ntenant_labels = true\n").await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let mut carol = server.connect(&w.carol.token, Encoding::Json).await;
    let room = group(&mut alice, "Metrics", &[&w.carol.id]).await;
    subscribe(&mut alice, &room, None).await;
    subscribe(&mut carol, &room, None).await;

    let before = scrape(&server).await;
    assert_eq!(metric(&before, "crossroom_sessions"), 2.0);
    assert_eq!(
        metric(
            &before,
            "crossroom_company_sessions{company=\"acme.example\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &before,
            "crossroom_company_sessions{company=\"globex.example\"}"
        ),
        1.0
    );
    assert_eq!(metric(&before, "crossroom_rooms_active"), 1.0);
    assert_eq!(metric(&before, "crossroom_store_up"), 1.0);

    for i in 0..10 {
        post_ok(&mut alice, &room, &format!("m{i}"), "counted").await;
    }
    // Both subscribers got all ten before we look (the author's own echo included).
    for _ in 0..10 {
        next_event(&mut carol).await;
        next_event(&mut alice).await;
    }
    let after = scrape(&server).await;
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    assert_eq!(delta("crossroom_messages_total"), 10.0);
    assert_eq!(delta("crossroom_entries_total"), 10.0);
    assert_eq!(delta("crossroom_deliveries_total"), 20.0);
    assert_eq!(delta("crossroom_commit_latency_seconds_count"), 10.0);
    assert_eq!(delta("crossroom_fanout_latency_seconds_count"), 10.0);
    assert!(delta("crossroom_frames_in_total") >= 10.0);
    // 10 acks + 20 events at least.
    assert!(delta("crossroom_frames_out_total") >= 30.0);

    // A session that goes away leaves the gauges.
    carol.close().await;
    let mut gone = false;
    for _ in 0..50 {
        let m = scrape(&server).await;
        if metric(&m, "crossroom_sessions") == 1.0
            && !m.contains_key("crossroom_company_sessions{company=\"globex.example\"}")
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "carol's session left the gauges");
}

/// What an operator watches beside the traffic: the standard process series, the build, refused
/// authentications and upgrades by reason, HTTP requests by route template and status — and the
/// framework's own refusals (a query that does not parse, a wrong method) in the JSON error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_build_refusal_and_http_request_metrics() {
    let server = Server::start().await;
    let w = world(&server).await;
    let before = scrape(&server).await;
    let build = before
        .iter()
        .find(|(k, _)| k.starts_with("crossroom_build_info{version=\"0.1.0\",commit=\""))
        .unwrap_or_else(|| panic!("no build_info in {before:?}"));
    assert_eq!(*build.1, 1.0);
    assert!(!build.0.contains("commit=\"\""), "{}", build.0);
    // The kernel counts CPU in 10 ms ticks: a server this fresh may not have used one yet
    // (one CI run read 0). The series is there; `after` checks it only grows.
    assert!(metric(&before, "process_cpu_seconds_total") >= 0.0);
    assert!(metric(&before, "process_resident_memory_bytes") > 1e6);
    assert!(metric(&before, "process_open_fds") >= 3.0);
    assert!(metric(&before, "process_max_fds") >= metric(&before, "process_open_fds"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let started = metric(&before, "process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 3600.0,
        "{started} vs {now}"
    );

    // Refusals: a forged token in the upgrade and in an auth frame, a foreign origin, a wrong
    // admin key, a company key on an operator route, a file route without a token.
    let forged = format!("{}x", w.bob.token);
    let r = crossroom_protocol::client::Client::connect(
        &server.ws_url(),
        Some(&forged),
        Encoding::Json,
    )
    .await;
    assert!(r.is_err());
    let (mut c, _) =
        crossroom_protocol::client::Client::connect(&server.ws_url(), None, Encoding::Json)
            .await
            .expect("connect");
    let id = c
        .send(&mut ClientFrame::Auth {
            id: 0,
            token: forged.clone(),
        })
        .await
        .expect("send");
    assert_eq!(
        error_code(&c.reply_to(id, Duration::from_secs(5)).await.expect("reply")),
        ErrorCode::Unauthorized
    );
    let mut req = server.ws_url().into_client_request().expect("request");
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().expect("header"));
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    assert_eq!(
        get_status(&server, Some("ck_nobody"), "/v1/admin/users").await,
        401
    );
    assert_eq!(
        get_status(&server, Some(&w.acme_key), "/v1/admin/companies").await,
        403
    );
    assert_eq!(
        get_status(&server, None, "/v1/rooms/r1/files/f1").await,
        401
    );

    // The framework's refusals speak JSON too, with their status.
    let r = server
        .http(Some(&w.acme_key))
        .get("/v1/admin/users?limit=many")
        .await
        .expect("http");
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("invalid_argument")),
        "{:?}",
        r.body
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit")),
        "{:?}",
        r.body
    );
    let r = server
        .http(None)
        .post("/healthz", serde_json::json!({}))
        .await
        .expect("http");
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (405, Some("invalid_argument")),
        "{:?}",
        r.body
    );
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "allow" && v.contains("GET")),
        "a 405 still says what is allowed: {:?}",
        r.headers
    );
    let r = server.http(None).get("/v1/ws").await.expect("http");
    assert!(
        r.status >= 400 && r.body["error"]["message"].is_string(),
        "{} {:?}",
        r.status,
        r.body
    );
    for _ in 0..2 {
        assert_eq!(
            server
                .http(None)
                .get("/healthz")
                .await
                .expect("http")
                .status,
            200
        );
    }
    assert_eq!(
        server
            .http(None)
            .get("/no/such/page")
            .await
            .expect("http")
            .status,
        404
    );
    let r = server
        .http(Some(&w.acme_key))
        .get(&format!("/v1/admin/users/{}", w.alice.id))
        .await
        .expect("http");
    assert_eq!(r.status, 200);

    let after = scrape(&server).await;
    assert!(
        metric(&after, "process_cpu_seconds_total") >= metric(&before, "process_cpu_seconds_total")
    );
    let delta = |name: &str| {
        after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    for (series, n) in [
        ("crossroom_auth_failures_total{via=\"ws_header\",reason=\"invalid_token\"}", 1.0),
        ("crossroom_auth_failures_total{via=\"ws_frame\",reason=\"invalid_token\"}", 1.0),
        ("crossroom_auth_failures_total{via=\"admin\",reason=\"wrong_key\"}", 1.0),
        ("crossroom_auth_failures_total{via=\"admin\",reason=\"wrong_kind\"}", 1.0),
        ("crossroom_auth_failures_total{via=\"http\",reason=\"missing_token\"}", 1.0),
        ("crossroom_upgrades_rejected_total{reason=\"auth\"}", 1.0),
        ("crossroom_upgrades_rejected_total{reason=\"origin\"}", 1.0),
        ("crossroom_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"}", 2.0),
        ("crossroom_http_requests_total{route=\"/healthz\",method=\"POST\",status=\"405\"}", 1.0),
        ("crossroom_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}", 1.0),
        ("crossroom_http_requests_total{route=\"/v1/admin/users/{id}\",method=\"GET\",status=\"200\"}", 1.0),
        ("crossroom_http_requests_total{route=\"/v1/admin/users\",method=\"GET\",status=\"400\"}", 1.0),
    ] {
        assert_eq!(delta(series), n, "{series} in {after:#?}");
    }
    assert!(
        after.keys().all(|k| !k.contains("/no/such/page")),
        "paths never become labels"
    );

    // The Grafana dashboard in the repository asks only for series the server has.
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/grafana/crossroom.json"))
            .expect("the dashboard is JSON");
    let mut asked = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let mut rest = target["expr"].as_str().expect("expr");
            while let Some(i) = ["crossroom_", "process_"]
                .iter()
                .filter_map(|p| rest.find(p))
                .min()
            {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                asked.insert(name);
            }
        }
    }
    assert!(asked.len() >= 15, "{asked:?}");
    for name in &asked {
        assert!(
            after
                .keys()
                .any(|k| k == name || k.starts_with(&format!("{name}{{"))),
            "the dashboard asks for {name}, which /metrics does not have"
        );
    }
}

async fn ops(server: &Server, query: &str, key: Option<&str>) -> Ws {
    let mut req = format!("ws://{}/v1/ops{query}", server.addr)
        .into_client_request()
        .expect("request");
    if let Some(k) = key {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {k}").parse().expect("header"),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ops connect");
    ws
}

async fn next_ops(ws: &mut Ws) -> OpsServerFrame {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an ops frame in time")
            .expect("stream open")
            .expect("ws ok");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("an ops frame"),
            Message::Close(c) => panic!("ops stream closed: {c:?}"),
            _ => continue,
        }
    }
}

/// The next audit record, skipping stats.
async fn next_audit(ws: &mut Ws) -> crossroom_protocol::ops::AuditRecord {
    loop {
        match next_ops(ws).await {
            OpsServerFrame::Audit(a) => return a,
            OpsServerFrame::Stats(_) => continue,
            other => panic!("expected audit, got {other:?}"),
        }
    }
}

async fn next_stats(ws: &mut Ws) -> Stats {
    loop {
        if let OpsServerFrame::Stats(s) = next_ops(ws).await {
            return s;
        }
    }
}

#[tokio::test]
async fn ops_stream_sends_stats_every_second_and_audit_as_it_happens() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut feed = ops(&server, "", Some(OPERATOR_KEY)).await;
    assert!(matches!(
        next_ops(&mut feed).await,
        OpsServerFrame::Hello {
            interval_ms: 1000,
            ..
        }
    ));
    let first = next_stats(&mut feed).await;
    assert_eq!(first.sessions, 0);

    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Audited", &[&w.carol.id]).await;
    let a = next_audit(&mut feed).await;
    assert_eq!(a.action, "created");
    assert_eq!(a.room, room);
    assert_eq!(a.actor, w.alice.id);
    assert_eq!(
        a.companies,
        vec![
            CompanyId("acme.example".into()),
            CompanyId("globex.example".into())
        ]
    );
    assert_eq!(a.detail["name"], "Audited");

    subscribe(&mut alice, &room, None).await;
    for i in 0..5 {
        post_ok(&mut alice, &room, &format!("o{i}"), "hi").await;
    }
    // Stats catch up within a few samples: totals are exact, not sampled.
    let mut seen = None;
    for _ in 0..10 {
        let s = next_stats(&mut feed).await;
        if s.totals.messages == 5 {
            seen = Some(s);
            break;
        }
    }
    let s = seen.expect("stats count the five messages");
    assert_eq!(s.sessions, 1);
    assert_eq!(
        s.sessions_by_company.get(&CompanyId("acme.example".into())),
        Some(&1)
    );
    assert!(s.rooms >= 1);
    assert_eq!(s.totals.deliveries, 5);

    // Removal is audited and reaches the stream at once.
    remove_ok(&mut alice, &room, &w.carol.id).await;
    let a = next_audit(&mut feed).await;
    assert_eq!(a.action, "member_removed");
    assert_eq!(a.detail["user"], w.carol.id.0.as_str());
}

#[tokio::test]
async fn ops_stream_filters_by_company_and_kind() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut feed = ops(
        &server,
        "?companies=globex.example&kinds=member_removed",
        Some(OPERATOR_KEY),
    )
    .await;
    match next_ops(&mut feed).await {
        OpsServerFrame::Hello {
            companies, kinds, ..
        } => {
            assert_eq!(companies, vec![CompanyId("globex.example".into())]);
            assert_eq!(kinds, vec!["member_removed".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    // An acme-only group, and its removal: neither is globex's business.
    let inside = group(&mut alice, "Acme only", &[&w.bob.id]).await;
    alice
        .request(ClientFrame::RemoveMember {
            id: 0,
            room: inside.clone(),
            user: w.bob.id.clone(),
        })
        .await
        .expect("remove bob");
    // A group with carol: its creation is filtered out by kind, her removal passes.
    let shared = group(&mut alice, "Shared", &[&w.carol.id]).await;
    alice
        .request(ClientFrame::RemoveMember {
            id: 0,
            room: shared.clone(),
            user: w.carol.id.clone(),
        })
        .await
        .expect("remove carol");
    let a = next_audit(&mut feed).await;
    assert_eq!(a.action, "member_removed");
    assert_eq!(a.room, shared, "the acme-only removal was filtered out");

    // The filter can be replaced on the fly.
    feed.send(Message::Text(
        r#"{"type":"filter","companies":[],"kinds":["created"]}"#.into(),
    ))
    .await
    .expect("send filter");
    loop {
        match next_ops(&mut feed).await {
            OpsServerFrame::Hello { kinds, .. } => {
                assert_eq!(kinds, vec!["created".to_owned()]);
                break;
            }
            OpsServerFrame::Stats(_) => continue,
            other => panic!("{other:?}"),
        }
    }
    let third = group(&mut alice, "Third", &[&w.bob.id]).await;
    let a = next_audit(&mut feed).await;
    assert_eq!((a.action.as_str(), &a.room), ("created", &third));
}

#[tokio::test]
async fn ops_stream_needs_the_operator_key() {
    let server = Server::start().await;
    let w = world(&server).await;

    // A wrong key in the header is refused before the upgrade.
    let mut req = format!("ws://{}/v1/ops", server.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", w.acme_key).parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }

    // By frame (browsers): a wrong key gets an error and close 4500.
    let mut ws = ops(&server, "", None).await;
    ws.send(Message::Text(
        format!(r#"{{"type":"auth","token":"{}"}}"#, w.alice.token).into(),
    ))
    .await
    .expect("send");
    match next_ops(&mut ws).await {
        OpsServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::Unauthorized),
        other => panic!("{other:?}"),
    }
    let closed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("closed in time");
    match closed {
        Some(Ok(Message::Close(Some(c)))) => assert_eq!(u16::from(c.code), close::UNAUTHORIZED),
        other => panic!("expected close 4500, got {other:?}"),
    }

    // The right key by frame works.
    let mut ws = ops(&server, "", None).await;
    ws.send(Message::Text(
        format!(r#"{{"type":"auth","token":"{OPERATOR_KEY}"}}"#).into(),
    ))
    .await
    .expect("send");
    assert!(matches!(
        next_ops(&mut ws).await,
        OpsServerFrame::Hello { .. }
    ));
}

/// Issue 21: one view of the cluster from any node. The ops stream of node 0 shows both nodes'
/// figures and their sums, and the audit record of a group created through node 1 (it showed
/// only node 0's); `/metrics` of each node labels every series with its node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_stream_of_any_node_shows_the_whole_cluster() {
    let redis = Redis::start(&[]).await;
    let a = Server::start_node(&[redis.url()]).await;
    let b = Server::start_node(&[redis.url()]).await;
    let w = world(&a).await;
    let mut ws = ops(&a, "", Some(OPERATOR_KEY)).await;
    let mut both = None;
    for _ in 0..20 {
        let s = next_stats(&mut ws).await;
        assert_eq!(s.node, a.addr);
        if let Some(c) = s.cluster.filter(|c| c.nodes.len() == 2) {
            both = Some(c);
            break;
        }
    }
    let cluster = both.expect("both nodes heard");
    let mut names: Vec<_> = cluster.nodes.iter().map(|n| n.node.clone()).collect();
    names.sort();
    let mut want = vec![a.addr.clone(), b.addr.clone()];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(
        cluster.total.connections,
        cluster.nodes.iter().map(|n| n.connections).sum::<u64>()
    );
    let mut alice = b.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Seen everywhere", &[&w.carol.id]).await;
    let record = next_audit(&mut ws).await;
    assert_eq!((record.room, record.action.as_str()), (room, "created"));
    for node in [&a, &b] {
        let r = node.http(None).get("/metrics").await.expect("scrape");
        let text = String::from_utf8(r.bytes.to_vec()).expect("utf-8");
        assert!(
            text.contains(&format!("crossroom_bus_up{{node=\"{}\"}} 1", node.addr)),
            "{text}"
        );
    }
}

/// Ask for a backlog page; its records and `next`.
async fn backlog(
    feed: &mut Ws,
    before: Option<u64>,
    limit: u32,
) -> (Vec<crossroom_protocol::ops::AuditRecord>, Option<u64>) {
    let frame = serde_json::json!({"type": "backlog", "before": before, "limit": limit});
    feed.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
    loop {
        match next_ops(feed).await {
            OpsServerFrame::Backlog { records, next } => return (records, next),
            // Stats, and the `hello` that answers a filter change.
            OpsServerFrame::Stats(_) | OpsServerFrame::Hello { .. } => continue,
            other => panic!("expected backlog, got {other:?}"),
        }
    }
}

/// The ops stream's backlog (G19 for the operator): the stored records under the stream's
/// filter, newest first and paged by id with no record twice or missed; every record, stored or
/// live, carries the names of its room and people, and the busiest rooms carry theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_backlog_pages_the_stored_audit_with_names() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let mut rooms = Vec::new();
    for i in 0..5 {
        rooms.push(group(&mut alice, &format!("Backlog {i}"), &[&w.carol.id]).await);
    }
    remove_ok(&mut alice, &rooms[0], &w.carol.id).await;

    let mut feed = ops(&server, "", Some(OPERATOR_KEY)).await;
    assert!(matches!(
        next_ops(&mut feed).await,
        OpsServerFrame::Hello { .. }
    ));
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let (records, next) = backlog(&mut feed, before, 2).await;
        assert!(records.len() <= 2);
        seen.extend(records);
        match next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let actions: Vec<&str> = seen.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "member_removed",
            "created",
            "created",
            "created",
            "created",
            "created"
        ]
    );
    let ids: Vec<u64> = seen.iter().map(|r| r.id.expect("an id")).collect();
    assert!(
        ids.windows(2).all(|p| p[0] > p[1]),
        "newest first, once each: {ids:?}"
    );
    let removal = &seen[0];
    assert_eq!(
        removal.names.get(rooms[0].as_str()).map(String::as_str),
        Some("Backlog 0")
    );
    assert_eq!(
        removal.names.get(w.alice.id.as_str()).map(String::as_str),
        Some("alice")
    );
    assert_eq!(
        removal.names.get(w.carol.id.as_str()).map(String::as_str),
        Some("carol")
    );
    assert_eq!(
        removal.companies,
        [
            CompanyId::from("acme.example"),
            CompanyId::from("globex.example")
        ]
    );

    // The filter in force applies to the backlog too.
    feed.send(Message::Text(
        serde_json::json!({"type": "filter", "kinds": ["member_removed"]})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let (records, next) = backlog(&mut feed, None, 50).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, "member_removed");
    assert_eq!(next, None);

    // A live record has names too, and so do the busiest rooms.
    feed.send(Message::Text(
        serde_json::json!({"type": "filter"}).to_string().into(),
    ))
    .await
    .expect("send");
    loop {
        if let OpsServerFrame::Hello { .. } = next_ops(&mut feed).await {
            break;
        }
    }
    let room = group(&mut alice, "Live one", &[&w.carol.id]).await;
    let live = next_audit(&mut feed).await;
    assert_eq!(
        live.names.get(room.as_str()).map(String::as_str),
        Some("Live one")
    );
    for i in 0..20 {
        post_ok(&mut alice, &room, &format!("busy{i}"), "busy").await;
    }
    let mut named = false;
    for _ in 0..5 {
        let s = next_stats(&mut feed).await;
        if s.busiest_rooms
            .iter()
            .any(|r| r.room == room && r.name.as_deref() == Some("Live one"))
        {
            named = true;
            break;
        }
    }
    assert!(named, "the busiest room is named");
}

/// Every label of `/metrics` takes its values from a closed set: 300 requests with made-up
/// methods (each a valid HTTP token) and made-up paths add no series beyond `other` and
/// `unmatched` — they once added one series each, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_methods_and_routes_add_no_metric_series() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start().await;
    let series = |text: &str| {
        // The series (its labels), not its count; the scrapes' own series aside.
        text.lines()
            .filter(|l| l.starts_with("crossroom_http_requests_total{"))
            .filter(|l| !l.contains("route=\"/metrics\""))
            .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
            .collect::<std::collections::BTreeSet<String>>()
    };
    let metrics = || async {
        let r = server.http(None).get("/metrics").await.expect("metrics");
        String::from_utf8_lossy(&r.bytes).into_owned()
    };
    let before = series(&metrics().await);
    for i in 0..300 {
        let mut s = tokio::net::TcpStream::connect(&server.addr)
            .await
            .expect("connect");
        let head = format!(
            "XM{i}{} /nope/{i}/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "Q".repeat(i % 50),
            "p".repeat(i)
        );
        s.write_all(head.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.expect("read");
        assert!(answer.starts_with(b"HTTP/1.1 4"), "refused");
    }
    let after = series(&metrics().await);
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(
        new.iter()
            .all(|l| l.contains("method=\"other\"") && l.contains("route=\"unmatched\"")),
        "{new:#?}"
    );
    assert!(new.len() <= 2, "one series per status at most: {new:#?}");
    let text = metrics().await;
    assert!(
        text.len() < 200_000,
        "/metrics stays small: {} bytes",
        text.len()
    );
}
