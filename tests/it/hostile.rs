//! Bad input: garbage frames, wrong frame types, oversize frames, late or bad authentication.
//! Each ends with an error or a documented close code, and a neighbour that got every message.

use crate::harness::*;
use crossroom_protocol::client::{Client, WsMessage};
use crossroom_protocol::{close, ClientFrame, Encoding, ErrorCode, ServerFrame, UserId};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_get_errors_then_a_close_and_neighbours_are_undisturbed() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Noise", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;

    let mut bad = server.connect(&w.alice.token, Encoding::MsgPack).await;
    bad.send_raw(WsMessage::Binary(vec![0xc1, 0xff, 0x00].into()))
        .await
        .expect("send");
    let f = bad.next_frame(Duration::from_secs(5)).await.expect("error");
    assert_eq!(error_code(&f), ErrorCode::BadFrame);
    // A JSON text frame on a msgpack session.
    bad.send_raw(WsMessage::Text(r#"{"type":"ping","id":1}"#.into()))
        .await
        .expect("send");
    let f = bad.next_frame(Duration::from_secs(5)).await.expect("error");
    assert_eq!(error_code(&f), ErrorCode::BadFrame);
    // An unknown type: the error still names the request id.
    let unknown =
        rmp_serde::to_vec_named(&serde_json::json!({ "type": "launch_missiles", "id": 77 }))
            .expect("enc");
    bad.send_raw(WsMessage::Binary(unknown.into()))
        .await
        .expect("send");
    match bad.next_frame(Duration::from_secs(5)).await.expect("error") {
        ServerFrame::Error { id, code, .. } => {
            assert_eq!(id, Some(77));
            assert_eq!(code, ErrorCode::BadFrame);
        }
        other => panic!("{other:?}"),
    }
    let seq = post_ok(&mut alice, &room, "during", "during the noise").await;
    assert_eq!(next_event(&mut carol).await.seq, seq);
    // Keep going: after the limit the session is closed with 4503.
    for i in 0..20u8 {
        if bad
            .send_raw(WsMessage::Binary(vec![0xc1, i].into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let code = bad.closed(Duration::from_secs(5)).await.expect("closed");
    assert_eq!(code, Some(close::PROTOCOL_ERROR));
    let seq = post_ok(&mut alice, &room, "after", "after the noise").await;
    assert_eq!(next_event(&mut carol).await.seq, seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_with_1009() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::Json).await;
    let room = group(&mut alice, "Big", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::Json).await;
    subscribe(&mut carol, &room, None).await;
    let mut big = server.connect(&w.bob.token, Encoding::Json).await;
    let huge = format!(
        r#"{{"type":"ping","id":1,"pad":"{}"}}"#,
        "x".repeat(600 * 1024)
    );
    let _ = big.send_raw(WsMessage::Text(huge.into())).await;
    assert_eq!(
        big.closed(Duration::from_secs(5)).await.expect("closed"),
        Some(close::TOO_BIG)
    );
    let seq = post_ok(&mut alice, &room, "fine", "fine").await;
    assert_eq!(next_event(&mut carol).await.seq, seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_authenticate_with_an_auth_frame() {
    let server = Server::start_with_config("[limits]\nauth_timeout_secs = 1\n").await;
    let w = world(&server).await;
    // Good token in a frame: hello names the auth request.
    let (mut c, hello) = Client::connect(&server.ws_url(), None, Encoding::Json)
        .await
        .expect("connect");
    assert!(hello.is_none());
    let r = c
        .request(ClientFrame::ListRooms { id: 0 })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::Unauthorized);
    let r = c
        .request(ClientFrame::Auth {
            id: 0,
            token: w.alice.token.clone(),
        })
        .await
        .expect("hello");
    match r {
        ServerFrame::Hello {
            id, user, protocol, ..
        } => {
            assert_eq!(id, Some(2));
            assert_eq!(user.id, w.alice.id);
            assert_eq!(protocol, crossroom_protocol::PROTOCOL_VERSION);
        }
        other => panic!("{other:?}"),
    }
    let r = c
        .request(ClientFrame::ListRooms { id: 0 })
        .await
        .expect("rooms");
    assert!(matches!(r, ServerFrame::Rooms { .. }));

    // Bad token in a frame: error, then close 4500.
    let (mut c, _) = Client::connect(&server.ws_url(), None, Encoding::MsgPack)
        .await
        .expect("connect");
    let r = c
        .request(ClientFrame::Auth {
            id: 0,
            token: "nope".into(),
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::Unauthorized);
    assert_eq!(
        c.closed(Duration::from_secs(5)).await.expect("closed"),
        Some(close::UNAUTHORIZED)
    );

    // Silence: closed with 4001 after the auth timeout.
    let (mut c, _) = Client::connect(&server.ws_url(), None, Encoding::MsgPack)
        .await
        .expect("connect");
    assert_eq!(
        c.closed(Duration::from_secs(5)).await.expect("closed"),
        Some(close::AUTH_TIMEOUT)
    );
}

/// A client that stops reading is cut off once its queue passes its budget; the server does not
/// wait for it and its neighbour gets every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_and_the_others_get_everything() {
    let server = Server::start_with_config(&load_limits(
        "max_frame_bytes = 65536\noutbound_queue_frames = 64\noutbound_queue_bytes = 65536\nmax_replay = 32\n",
    ))
    .await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Firehose", &[&w.carol.id, &w.bob.id]).await;
    let mut slow = server.connect(&w.bob.token, Encoding::MsgPack).await;
    subscribe(&mut slow, &room, None).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;
    let before = scrape(&server).await;

    // 3,000 posts of 4 KB: far more than the socket buffers and the 64 KiB budget hold.
    let text = "x".repeat(4000);
    let total = 3000;
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < total {
            next_event(&mut carol).await;
            got += 1;
        }
        got
    });
    // Batches of 8 (32 KB) stay well inside a reading client's 64 KiB budget.
    for batch in 0..(total / 8) {
        let mut ids = Vec::new();
        for i in 0..8 {
            ids.push(
                alice
                    .send(&mut post(&room, &format!("f{batch}-{i}"), &text))
                    .await
                    .expect("send"),
            );
        }
        for id in ids {
            let r = alice
                .reply_to(id, Duration::from_secs(20))
                .await
                .expect("ack");
            assert!(matches!(r, ServerFrame::Posted { .. }), "{r:?}");
        }
    }
    assert_eq!(
        reader.await.expect("carol"),
        total,
        "the neighbour got every message"
    );

    // The slow client finds its stream cut short: fewer events than posted, then the end.
    let mut seen = 0;
    let ended = loop {
        match slow.next_frame(Duration::from_secs(10)).await {
            Ok(ServerFrame::Event(_)) => seen += 1,
            Ok(_) => {}
            Err(crossroom_protocol::client::ClientError::Closed { code, .. }) => break code,
            Err(crossroom_protocol::client::ClientError::Ws(_)) => break None,
            Err(e) => panic!("the slow session was never closed: {e}"),
        }
    };
    assert!(seen < total, "slow client saw {seen}");
    // The metrics saw it: one slow consumer, and the frames it could not take.
    let after = scrape(&server).await;
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    assert_eq!(delta("crossroom_slow_consumer_disconnects_total"), 1.0);
    assert!(delta("crossroom_queue_drops_total") >= 1.0);
    assert!(
        matches!(ended, None | Some(close::SLOW_CONSUMER)),
        "{ended:?}"
    );
}

/// Cross-site WebSocket hijacking: an upgrade from another origin is refused with 403; the
/// server's own origin and configured ones pass; native clients send none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_origins_are_refused() {
    let server =
        Server::start_with_config("allowed_origins = [\"https://chat.partner.example\"]\n").await;
    let w = world(&server).await;
    let (server, token) = (&server, &w.alice.token);
    let try_origin =
        |origin: String| async move { upgrade_from(server, token, &origin, &server.addr).await };
    assert_eq!(try_origin("https://evil.example".into()).await, 403);
    assert_eq!(
        try_origin("https://chat.partner.example.evil.example".into()).await,
        403
    );
    assert_eq!(try_origin("https://chat.partner.example".into()).await, 101);
    assert_eq!(
        try_origin(format!("http://{}", server.addr)).await,
        101,
        "its own origin"
    );
}

/// An upgrade with `Origin` and `Host` as a browser sends them, against `server`.
async fn upgrade_from(server: &Server, token: &str, origin: &str, host: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = server.ws_url().into_client_request().expect("request");
    let h = req.headers_mut();
    h.insert("origin", origin.parse().expect("header"));
    h.insert("host", host.parse().expect("header"));
    h.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

/// Without `public_url`, the page's own origin is admitted however the server was reached —
/// `localhost`, another name — because it is the origin of the `Host` the request came to; a
/// page of another site still is not. With `public_url`, only its origin (and
/// `allowed_origins`) is the server's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_own_origin_is_admitted_however_the_server_is_reached() {
    let server = Server::start().await;
    let w = world(&server).await;
    let port = server.addr.rsplit(':').next().expect("port").to_owned();
    let t = &w.alice.token;
    let local = format!("localhost:{port}");
    assert_eq!(
        upgrade_from(&server, t, &format!("http://{local}"), &local).await,
        101
    );
    let named = "chat.example.com";
    assert_eq!(
        upgrade_from(&server, t, "https://chat.example.com", named).await,
        101
    );
    assert_eq!(
        upgrade_from(&server, t, "http://evil.example", &local).await,
        403
    );
    assert_eq!(
        upgrade_from(&server, t, &format!("http://{local}.evil.example"), &local).await,
        403
    );

    let fixed = Server::start_with_config("public_url = \"https://chat.example.com/app\"\n").await;
    let w = world(&fixed).await;
    let t = &w.alice.token;
    assert_eq!(
        upgrade_from(&fixed, t, "https://chat.example.com", named).await,
        101
    );
    let local = format!("localhost:{}", fixed.addr.rsplit(':').next().expect("port"));
    assert_eq!(
        upgrade_from(&fixed, t, &format!("http://{local}"), &local).await,
        403,
        "public_url names the one origin of the server's pages"
    );
}

/// A flood gets `rate_limited` errors and then close 4002; the neighbour gets every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_rate_limited_then_closed() {
    let server =
        Server::start_with_config("[limits]\nrequests_per_sec = 5\nrequest_burst = 10\n").await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Flood", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;
    let mut flood = server.connect(&w.bob.token, Encoding::MsgPack).await;
    for _ in 0..100 {
        if flood.send(&mut ClientFrame::Ping { id: 0 }).await.is_err() {
            break;
        }
    }
    let mut limited = 0;
    let code = loop {
        match flood.next_frame(Duration::from_secs(5)).await {
            Ok(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                ..
            }) => limited += 1,
            Ok(_) => {}
            Err(crossroom_protocol::client::ClientError::Closed { code, .. }) => break code,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(limited > 0);
    assert_eq!(code, Some(close::RATE_LIMITED));
    let seq = post_ok(&mut alice, &room, "calm", "still here").await;
    assert_eq!(next_event(&mut carol).await.seq, seq);
}

/// A flood paced so that refilled tokens keep granting a request now and then (500 requests a
/// second against 50 and bursts of 20) is closed 4002 all the same: refusals are counted per
/// window, not in a row (counted in a row, each refill started the count again and the flood went
/// on for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_flood_that_outlasts_refills_is_closed() {
    let server =
        Server::start_with_config("[limits]\nrequests_per_sec = 50\nrequest_burst = 20\n").await;
    let w = world(&server).await;
    let mut flood = server.connect(&w.bob.token, Encoding::MsgPack).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (mut limited, mut answered) = (0, 0);
    let code = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still open after 20 s: {limited} refused, {answered} answered"
        );
        if flood.send(&mut ClientFrame::Ping { id: 0 }).await.is_err() {
            break flood.closed(Duration::from_secs(5)).await.ok().flatten();
        }
        loop {
            match flood.next_frame(Duration::from_millis(2)).await {
                Ok(ServerFrame::Error {
                    code: ErrorCode::RateLimited,
                    ..
                }) => limited += 1,
                Ok(_) => answered += 1,
                Err(crossroom_protocol::client::ClientError::Timeout(_)) => break,
                Err(crossroom_protocol::client::ClientError::Closed { code, .. }) => {
                    return assert_eq!(code, Some(close::RATE_LIMITED), "{limited} refused");
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(code, Some(close::RATE_LIMITED), "{limited} refused");
}

/// A silent socket (never reads, so never answers pings) is closed with 4003; a reading client
/// on the same server stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_after_missing_pongs() {
    let server =
        Server::start_with_config("[limits]\nping_interval_secs = 1\nidle_timeout_secs = 2\n")
            .await;
    let w = world(&server).await;
    let mut silent = server.connect(&w.bob.token, Encoding::MsgPack).await;
    let mut alive = server.connect(&w.alice.token, Encoding::MsgPack).await;
    // The live client keeps reading (and so answering pings) for four seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < deadline {
        let r = alive
            .request(ClientFrame::Ping { id: 0 })
            .await
            .expect("alive");
        assert!(matches!(r, ServerFrame::Pong { .. }));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        silent.closed(Duration::from_secs(5)).await.expect("closed"),
        Some(close::PING_TIMEOUT)
    );
    let r = alive
        .request(ClientFrame::Ping { id: 0 })
        .await
        .expect("still alive");
    assert!(matches!(r, ServerFrame::Pong { .. }));
}

/// Connections per user are limited: the next one is refused (429 before the upgrade).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_user_are_limited() {
    let server = Server::start_with_config("[limits]\nmax_sessions_per_user = 2\n").await;
    let w = world(&server).await;
    let a = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let _b = server.connect(&w.alice.token, Encoding::Json).await;
    match Client::connect(&server.ws_url(), Some(&w.alice.token), Encoding::MsgPack).await {
        Err(crossroom_protocol::client::ClientError::Ws(
            tokio_tungstenite::tungstenite::Error::Http(r),
        )) => {
            assert_eq!(r.status().as_u16(), 429)
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a third session was accepted"),
    }
    // Other users are not affected; closing one session frees a place.
    server.connect(&w.bob.token, Encoding::MsgPack).await;
    a.close().await;
    let mut ok = None;
    for _ in 0..50 {
        if let Ok((c, _)) =
            Client::connect(&server.ws_url(), Some(&w.alice.token), Encoding::MsgPack).await
        {
            ok = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok.is_some(), "a place was freed");
}

/// A MessagePack depth bomb inside one frame gets `bad_frame`, no crash; the session goes on and
/// a neighbour gets its messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_depth_bomb_is_refused() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Depth", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;
    let mut c = server.connect(&w.bob.token, Encoding::MsgPack).await;
    let mut bomb = vec![0x91u8; 400_000];
    bomb.push(0x01);
    c.send_raw(WsMessage::Binary(bomb.into()))
        .await
        .expect("send");
    let f = c.next_frame(Duration::from_secs(5)).await.expect("error");
    assert_eq!(error_code(&f), ErrorCode::BadFrame);
    let r = c.request(ClientFrame::Ping { id: 0 }).await.expect("alive");
    assert!(matches!(r, ServerFrame::Pong { .. }));
    let seq = post_ok(&mut alice, &room, "deep", "unbothered").await;
    assert_eq!(next_event(&mut carol).await.seq, seq);
}

/// Slowloris: a socket that sends nothing, or trickles a request head, is closed after the
/// handshake timeout; the server keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_handshakes_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_with_config("[limits]\nhandshake_timeout_secs = 1\n").await;
    let w = world(&server).await;
    let mut silent = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    let mut trickle = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    trickle
        .write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    for s in [&mut silent, &mut trickle] {
        let mut buf = [0u8; 256];
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the server closed the slow socket");
    }
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let r = alice
        .request(ClientFrame::Ping { id: 0 })
        .await
        .expect("served");
    assert!(matches!(r, ServerFrame::Pong { .. }));
}

/// A message fragmented into many small frames whose total passes the limit closes with 1009.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_oversize_message_closes_with_1009() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_with_config(
        "[limits]\nmax_frame_bytes = 65536\noutbound_queue_bytes = 1048576\n",
    )
    .await;
    let w = world(&server).await;
    // A raw WebSocket client, to send continuation frames by hand.
    let mut tcp = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: crossroom.v1.json\r\nAuthorization: Bearer {}\r\n\r\n",
        server.addr, w.alice.token
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut head = vec![0u8; 4096];
    let n = tcp.read(&mut head).await.expect("read");
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    // 20 fragments of 8 KiB = 160 KiB > 64 KiB; masked client frames.
    let chunk = vec![b'x'; 8192];
    for i in 0..20 {
        let opcode: u8 = if i == 0 { 0x1 } else { 0x0 };
        let fin: u8 = if i == 19 { 0x80 } else { 0 };
        let mut frame = vec![
            fin | opcode,
            0x80 | 126,
            (chunk.len() >> 8) as u8,
            chunk.len() as u8,
            1,
            2,
            3,
            4,
        ];
        frame.extend(
            chunk
                .iter()
                .enumerate()
                .map(|(j, b)| b ^ [1, 2, 3, 4][j % 4]),
        );
        if tcp.write_all(&frame).await.is_err() {
            break;
        }
    }
    // Read until the close frame: 0x88, len, code.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let code = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if let Some(i) = got.windows(2).position(|w| w[0] == 0x88) {
                if got.len() >= i + 4 {
                    return Some(u16::from_be_bytes([got[i + 2], got[i + 3]]));
                }
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(code, Some(close::TOO_BIG));
    // The neighbours never noticed.
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "After", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;
    let seq = post_ok(&mut alice, &room, "fine", "fine").await;
    assert_eq!(next_event(&mut carol).await.seq, seq);
}

/// Upload sizes are limited: past the limit the request is refused before any byte is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_size_limit_are_refused() {
    let server = Server::start_with_config(
        "[limits]
max_upload_bytes = 1000
max_image_bytes = 100
",
    )
    .await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Sizes", &[]).await;
    let http = server.http(Some(&w.alice.token));
    for (path, ct, n) in [
        (format!("/v1/rooms/{room}/files?name=a"), "text/plain", 1001),
        (
            format!("/v1/rooms/{room}/attachments?name=a"),
            "text/plain",
            1001,
        ),
        (format!("/v1/rooms/{room}/image"), "image/png", 101),
    ] {
        let method = if path.ends_with("image") {
            "PUT"
        } else {
            "POST"
        };
        let r = http
            .call_raw(method, &path, Some((ct, vec![0u8; n].into())))
            .await
            .expect("http");
        assert_eq!(r.status, 422, "{path}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "limit_exceeded");
    }
    let r = http
        .call_raw(
            "POST",
            &format!("/v1/rooms/{room}/files?name=a"),
            Some(("text/plain", vec![0u8; 1000].into())),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 201, "at the limit is fine");
}

/// Length bombs: MessagePack headers that claim gigabytes, and lists far past the limits, get
/// clear errors without the server allocating what they claim; a neighbour is undisturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_bombs_are_refused() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Bombs", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;
    let mut bomb = server.connect(&w.bob.token, Encoding::MsgPack).await;
    // A map whose `type` value is a str32 claiming 4 GiB; an array32 claiming 4 billion items.
    for frame in [
        b"\x82\xa4type\xdb\xff\xff\xff\xffping".to_vec(),
        b"\x83\xa4type\xabadd_members\xa5users\xdd\xff\xff\xff\xff\xa1a".to_vec(),
    ] {
        bomb.send_raw(WsMessage::Binary(frame.into()))
            .await
            .expect("send");
        let f = bomb
            .next_frame(Duration::from_secs(5))
            .await
            .expect("error");
        assert_eq!(error_code(&f), ErrorCode::BadFrame);
    }
    // 20,000 users in one request (fits in a frame): refused by the participant limit.
    let many: Vec<UserId> = (0..20_000)
        .map(|i| UserId(format!("u{i}@x.example")))
        .collect();
    let r = alice
        .request(ClientFrame::AddMembers {
            id: 0,
            room: room.clone(),
            users: many,
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::LimitExceeded);
    let r = bomb
        .request(ClientFrame::Ping { id: 0 })
        .await
        .expect("alive");
    assert!(matches!(r, ServerFrame::Pong { .. }));
    let seq = post_ok(&mut alice, &room, "ok", "still fine").await;
    assert_eq!(next_event(&mut carol).await.seq, seq);
}

/// E1: a calendar range is checked without overflow — `from = i64::MIN, to = i64::MAX` is
/// refused as longer than ten years (it wrapped to -1 and was accepted; a debug build panicked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_ranges_that_overflow_are_refused() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Calendar", &[&w.carol.id]).await;
    for (from, to) in [(i64::MIN, i64::MAX), (i64::MIN, 0), (-1, i64::MAX)] {
        let r = alice
            .request(ClientFrame::Query {
                id: 0,
                room: room.clone(),
                query: crossroom_protocol::Query::Calendar {
                    from,
                    to,
                    cursor: None,
                },
            })
            .await
            .expect("reply");
        assert_eq!(
            error_code(&r),
            ErrorCode::InvalidArgument,
            "{from}..{to}: {r:?}"
        );
    }
    // The server is fine afterwards.
    let r = alice
        .request(ClientFrame::Query {
            id: 0,
            room: room.clone(),
            query: crossroom_protocol::Query::Calendar {
                cursor: None,
                from: 0,
                to: 86_400_000,
            },
        })
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::QueryResult { .. }), "{r:?}");
}

/// An uploaded HTML or SVG file cannot run as our origin when a member opens it: downloads are
/// attachments, never sniffed, and sandboxed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_uploads_download_sandboxed_and_unsniffed() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Files", &[&w.carol.id]).await;
    let http = server.http(Some(&w.carol.token));
    for (name, ct) in [("x.html", "text/html"), ("x.svg", "image/svg+xml")] {
        let page = b"<script>fetch('/v1/admin/users')</script>".to_vec();
        let r = http
            .call_raw(
                "POST",
                &format!("/v1/rooms/{room}/attachments?name={name}"),
                Some((ct, page.into())),
            )
            .await
            .expect("http");
        assert_eq!(r.status, 201, "{:?}", r.body);
        let file = r.body["file"].as_str().expect("file").to_owned();
        let got = http
            .get(&format!("/v1/rooms/{room}/files/{file}"))
            .await
            .expect("http");
        assert_eq!(got.status, 200);
        assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
        assert!(
            got.header("content-security-policy")
                .is_some_and(|c| c.contains("sandbox")),
            "{:?}",
            got.headers
        );
        assert!(got
            .header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment")));
    }
}

/// G9, F1: a master who is not a member manages the group but does not read its files — a
/// folder file answers `not_member` (it answered 200); the profile image stays theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_who_is_not_a_member_gets_no_folder_file() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = managed_group(&mut alice, "Managed", &[&w.carol.id]).await;
    let carol = server.http(Some(&w.carol.token));
    let r = carol
        .call_raw(
            "POST",
            &format!("/v1/rooms/{room}/files?name=plan.txt"),
            Some(("text/plain", b"plan".to_vec().into())),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    let file = r.body["file"].as_str().expect("file").to_owned();
    let alice_http = server.http(Some(&w.alice.token));
    let png = vec![7u8; 64];
    let r = alice_http
        .call_raw(
            "PUT",
            &format!("/v1/rooms/{room}/image"),
            Some(("image/png", png.clone().into())),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = alice_http
        .get(&format!("/v1/rooms/{room}/files/{file}"))
        .await
        .expect("http");
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "not_member");
    let r = alice_http
        .get(&format!("/v1/rooms/{room}/image"))
        .await
        .expect("http");
    assert_eq!((r.status, r.bytes.as_ref()), (200, &png[..]));
    let r = carol
        .get(&format!("/v1/rooms/{room}/files/{file}"))
        .await
        .expect("http");
    assert_eq!((r.status, r.bytes.as_ref()), (200, &b"plan"[..]));
}

/// The data directory is the owner's only (0700) and the database file too (0600): the
/// database, its WAL, file bytes and the outbox of invitation links were world-readable.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start().await;
    let _w = world(&server).await;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&server.data_dir), 0o700);
    assert_eq!(mode(&server.data_dir.join("crossroom.db")), 0o600);
    let wal = server.data_dir.join("crossroom.db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
    }
}

/// `/metrics` is unauthenticated: by default it does not list the tenants (company ids as
/// labels); `[metrics] tenant_labels = true` turns them on (tested in `ops.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_do_not_name_tenants_by_default() {
    let server = Server::start().await;
    let w = world(&server).await;
    let _alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "crossroom_sessions"), 1.0);
    assert!(
        !m.keys().any(|k| k.contains("acme.example")),
        "{:?}",
        m.keys()
            .filter(|k| k.contains("company"))
            .collect::<Vec<_>>()
    );
}

/// A known request with a missing or mistyped field is `invalid_argument` naming the field, with
/// its id — not `bad_frame`, and not counted towards the 4503 close: 30 of them (past the limit
/// of 16 bad frames) and the session still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_fields_are_invalid_arguments_not_bad_frames() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Fields", &[&w.carol.id]).await;
    for i in 0..30u32 {
        let frame = if i % 2 == 0 {
            serde_json::json!({ "type": "post", "id": 100 + i, "room": room.0, "text": "hi" })
        } else {
            serde_json::json!({
                "type": "post", "id": 100 + i, "room": room.0, "client_msg_id": "c", "text": 12345
            })
        };
        let bytes = rmp_serde::to_vec_named(&frame).expect("enc");
        alice
            .send_raw(WsMessage::Binary(bytes.into()))
            .await
            .expect("send");
        match alice
            .reply_to(100 + i, Duration::from_secs(5))
            .await
            .expect("answer")
        {
            ServerFrame::Error { id, code, message } => {
                assert_eq!((id, code), (Some(100 + i), ErrorCode::InvalidArgument));
                let field = if i % 2 == 0 { "client_msg_id" } else { "12345" };
                assert!(message.contains(field), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    let r = alice
        .request(ClientFrame::Ping { id: 0 })
        .await
        .expect("still open");
    assert!(matches!(r, ServerFrame::Pong { .. }), "{r:?}");
}

/// Before authentication too, an oversized frame closes with 1009 (it closed with 1000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_before_auth_closes_with_1009() {
    let server = Server::start().await;
    let (mut c, _) =
        crossroom_protocol::client::Client::connect(&server.ws_url(), None, Encoding::Json)
            .await
            .expect("connect");
    let huge = format!(
        r#"{{"type":"auth","id":1,"token":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let _ = c.send_raw(WsMessage::Text(huge.into())).await;
    assert_eq!(
        c.closed(Duration::from_secs(5)).await.expect("closed"),
        Some(close::TOO_BIG)
    );
}

/// G8: a contact's email is never shown, so search matches it only on the whole address — a
/// prefix of it matched, and ~400 probes spelled the address out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_search_matches_an_email_only_whole() {
    let server = Server::start().await;
    let w = world(&server).await;
    let zed = user_with(
        &server.http(Some(&w.globex_key)),
        serde_json::json!({
            "login": "zed", "name": "Zed", "kind": "works", "email": "private.zed@mail.example"
        }),
    )
    .await;
    contact(&server, &w.acme_key, &w.alice.id, &zed.id).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let found = |r: ServerFrame| match r {
        ServerFrame::SearchResults { contacts, .. } => contacts.iter().any(|c| c.id == zed.id),
        other => panic!("{other:?}"),
    };
    for (query, want) in [
        ("priv", false),
        ("private.zed@mail", false),
        ("mail.example", false),
        ("PRIVATE.ZED@MAIL.EXAMPLE", true),
        ("zed", true),
    ] {
        let r = alice
            .request(ClientFrame::Search {
                id: 0,
                query: query.into(),
                limit: None,
            })
            .await
            .expect("search");
        assert_eq!(found(r), want, "{query}");
    }
}

/// E1: an event cannot start ~80,000 years ago (calendar times lie in the years 1 to 9999: the
/// expansion of such events walked a million steps on an async worker and stalled neighbours),
/// and one from year one still expands today — its first occurrence near the query is computed,
/// not walked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e1_ancient_calendar_events_are_refused_and_old_ones_expand_today() {
    use crate::features::{act, act_ok};
    use crossroom_protocol::{Action, CalendarFields, Frequency, QueryResult, Recurrence};
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Calendar", &[&w.carol.id]).await;
    let monthly = |start: i64| CalendarFields {
        title: "Ancient".into(),
        start,
        end: start + 3_600_000,
        all_day: false,
        time_zone: "UTC".into(),
        recurrence: Some(Recurrence {
            freq: Frequency::Monthly,
            interval: 1,
            until: None,
            count: None,
        }),
        location: String::new(),
        memo: String::new(),
    };
    let day: i64 = 86_400_000;
    let ancient = -80_000 * 365 * day;
    let r = act(
        &mut alice,
        &room,
        Action::CreateCalendarEvent(monthly(ancient)),
    )
    .await;
    assert_eq!(error_code(&r), ErrorCode::InvalidArgument, "{r:?}");
    // 0001-01-31T00:00Z, monthly: December 2026 has its 31st.
    let year_one_jan_31 = -62_135_596_800_000 + 30 * day;
    act_ok(
        &mut alice,
        &room,
        Action::CreateCalendarEvent(monthly(year_one_jan_31)),
    )
    .await;
    let dec_2026 = 1_796_083_200_000;
    let r = alice
        .request(ClientFrame::Query {
            id: 0,
            room: room.clone(),
            query: crossroom_protocol::Query::Calendar {
                cursor: None,
                from: dec_2026,
                to: dec_2026 + 31 * day,
            },
        })
        .await
        .expect("reply");
    let ServerFrame::QueryResult {
        result: QueryResult::Calendar { occurrences, .. },
        ..
    } = r
    else {
        panic!("expected a calendar, got {r:?}");
    };
    assert_eq!(occurrences.len(), 1, "{occurrences:?}");
    assert_eq!(occurrences[0].start, dec_2026 + 30 * day);
}

/// A room holds at most 2,000 items (notes, events, tasks, folders, files): the next one is
/// `limit_exceeded`, and deleting one makes room again. (Unbounded, 45 notes of 100,000
/// characters already closed a reader's session.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_holds_a_bounded_number_of_items() {
    use crate::features::act;
    use crossroom_protocol::{Action, NoteFields};
    let server = Server::start_with_config(&load_limits("")).await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Items", &[&w.carol.id]).await;
    let note = |i: usize| {
        Action::PostNote(NoteFields {
            title: format!("n{i}"),
            body: String::new(),
            others_may_edit: false,
            notify: false,
            pinned: false,
        })
    };
    let mut created = 0;
    let mut first = None;
    for chunk in (0..2_001).collect::<Vec<_>>().chunks(50) {
        let mut ids = Vec::new();
        for i in chunk {
            ids.push(
                alice
                    .send(&mut ClientFrame::Act {
                        id: 0,
                        room: room.clone(),
                        action: note(*i),
                    })
                    .await
                    .expect("send"),
            );
        }
        for id in ids {
            match alice
                .reply_to(id, Duration::from_secs(30))
                .await
                .expect("reply")
            {
                ServerFrame::Changed { seq, .. } => {
                    created += 1;
                    first.get_or_insert(seq);
                }
                other => assert_eq!(error_code(&other), ErrorCode::LimitExceeded, "{other:?}"),
            }
        }
    }
    assert_eq!(created, 2_000);
    let r = act(
        &mut alice,
        &room,
        Action::DeleteNote {
            note: first.expect("a note"),
        },
    )
    .await;
    assert!(matches!(r, ServerFrame::Changed { .. }), "{r:?}");
    let r = act(&mut alice, &room, note(2_001)).await;
    assert!(matches!(r, ServerFrame::Changed { .. }), "{r:?}");
}

/// Made-up room ids cost nothing: a malformed one (here 30 KB) is `invalid_argument` before any
/// actor exists, and is not echoed back; a well-formed unknown one is `not_found`, its actor
/// gone with its answer, and asked again it is answered without one. (Each used to spawn an
/// actor: 12,000 typing frames with 30 KB ids grew the server by 449 MiB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_room_ids_create_no_state() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let typing = |room: String| ClientFrame::Typing {
        id: 0,
        room: room.into(),
    };
    for i in 0..300 {
        let r = alice
            .request(typing(format!("r_{i}{}", "x".repeat(30_000))))
            .await
            .expect("reply");
        let ServerFrame::Error { code, message, .. } = &r else {
            panic!("{r:?}")
        };
        assert_eq!(*code, ErrorCode::InvalidArgument);
        assert!(
            message.len() < 200,
            "the id is not echoed: {} bytes",
            message.len()
        );
    }
    assert_eq!(
        metric(&scrape(&server).await, "crossroom_rooms_active"),
        0.0
    );
    let ids: Vec<String> = (0..200)
        .map(|i| {
            let digits: String = format!("{i:0>26}")
                .bytes()
                .map(|d| (b'a' + d - b'0') as char)
                .collect();
            format!("r_{digits}")
        })
        .collect();
    for round in 0..2 {
        for id in &ids {
            let r = alice.request(typing(id.clone())).await.expect("reply");
            assert_eq!(error_code(&r), ErrorCode::NotFound, "round {round}: {r:?}");
        }
    }
    // An actor whose last answer raced a sender still holding its handle retires at its idle
    // tick instead (1 s for a missing room, so within 2 s).
    let mut active = f64::MAX;
    for _ in 0..100 {
        active = metric(&scrape(&server).await, "crossroom_rooms_active");
        if active == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(active, 0.0, "no actor stays for a room that does not exist");
}

/// One address holds at most `max_unauthenticated_per_address` WebSockets that have not
/// authenticated: the next upgrade without a token is refused with 429 (a token in the header
/// still gets in), and one that authenticates by frame makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_sockets_per_address_are_capped() {
    let server = Server::start_with_config("[limits]\nmax_unauthenticated_per_address = 5\n").await;
    let w = world(&server).await;
    let mut open = Vec::new();
    for _ in 0..5 {
        let (c, _) = Client::connect(&server.ws_url(), None, Encoding::MsgPack)
            .await
            .expect("connect");
        open.push(c);
    }
    let refused = Client::connect(&server.ws_url(), None, Encoding::MsgPack).await;
    let text = format!("{:?}", refused.err().expect("the sixth is refused"));
    assert!(text.contains("429"), "{text}");
    // With a token in the header: authenticated at the upgrade, not counted.
    let _alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    // One authenticates by frame: room for another.
    let r = open[0]
        .request(ClientFrame::Auth {
            id: 0,
            token: w.bob.token.clone(),
        })
        .await
        .expect("hello");
    assert!(matches!(r, ServerFrame::Hello { .. }), "{r:?}");
    let (_again, _) = Client::connect(&server.ws_url(), None, Encoding::MsgPack)
        .await
        .expect("a free place");
    // A closed one too.
    drop(open.pop());
    let mut admitted = false;
    for _ in 0..100 {
        if let Ok((c, _)) = Client::connect(&server.ws_url(), None, Encoding::MsgPack).await {
            open.push(c);
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a closed socket frees its place");
}

/// Sign-up through an invitation link cannot impersonate or grow without bound: an existing
/// domain is refused, a new company is marked `self_registered` wherever it is listed, its
/// admin cannot raise the quota or `max_groups` past the operator's ceilings, and one link
/// admits `signups_per_link_per_hour` sign-ups (here 3) an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signups_are_marked_capped_and_bounded_per_link() {
    let server = Server::start_with_config("[limits]\nsignups_per_link_per_hour = 3\n").await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Open", &[]).await;
    let token = invite_token(&mut alice, &room).await;
    let signup = |domain: &str| {
        serde_json::json!({ "company": { "id": domain, "name": "Acme Corp" },
                            "user": { "login": "ceo", "name": "CEO" } })
    };
    let path = format!("/v1/invite/{token}/signup");
    let http = server.http(None);
    let r = http
        .post(&path, signup("acme.example"))
        .await
        .expect("http");
    assert_eq!(r.status, 409, "an existing domain: {:?}", r.body);
    let r = http
        .post(&path, signup("brand.example"))
        .await
        .expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["company"]["self_registered"], true);
    let key = r.body["admin_key"].as_str().expect("key").to_owned();
    let listed = server
        .operator()
        .get("/v1/admin/companies")
        .await
        .expect("http");
    let marks: Vec<(String, bool)> = listed.body["companies"]
        .as_array()
        .expect("companies")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_owned(),
                c["self_registered"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert!(marks.contains(&("brand.example".into(), true)), "{marks:?}");
    assert!(marks.contains(&("acme.example".into(), false)), "{marks:?}");
    // Users see the mark on each other too.
    let r = alice
        .request(ClientFrame::AddContact {
            id: 0,
            user: UserId::from("ceo@brand.example"),
        })
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Ok { .. }), "{r:?}");
    let ServerFrame::Contacts { contacts, .. } = alice
        .request(ClientFrame::ListContacts { id: 0 })
        .await
        .expect("contacts")
    else {
        panic!("contacts")
    };
    let flags: Vec<(String, bool)> = contacts
        .iter()
        .map(|c| (c.id.to_string(), c.company_self_registered))
        .collect();
    assert!(
        flags.contains(&("ceo@brand.example".into(), true)),
        "{flags:?}"
    );
    assert!(
        flags.contains(&(w.carol.id.to_string(), false)),
        "{flags:?}"
    );
    let admin = server.http(Some(&key));
    for patch in [
        serde_json::json!({ "shared_storage_quota": 1u64 << 62 }),
        serde_json::json!({ "max_groups": 1_000_000_000u64 }),
    ] {
        let r = admin
            .patch("/v1/admin/company/settings", patch.clone())
            .await
            .expect("http");
        assert_eq!(r.status, 400, "{patch}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "invalid_argument");
    }
    let r = admin
        .patch(
            "/v1/admin/company/settings",
            serde_json::json!({ "max_groups": 50 }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "lowering is fine: {:?}", r.body);
    // Three sign-ups this hour (the refused one counted): the fourth is refused.
    let r = http
        .post(&path, signup("third.example"))
        .await
        .expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = http
        .post(&path, signup("fourth.example"))
        .await
        .expect("http");
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "rate_limited");
}

/// Paged answers: 45 notes of 100,000 characters (4.5 MB, past a session's 4 MiB outbound
/// budget in one answer) come to another member in pages that each fit, the session stays
/// open, and the pages hold every note once, pinned first then newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_come_in_pages_that_fit() {
    use crate::features::act_ok;
    use crossroom_protocol::{Action, NoteFields, Query, QueryResult};
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Heavy notes", &[&w.carol.id]).await;
    let mut ids = Vec::new();
    for i in 0..45 {
        let action = Action::PostNote(NoteFields {
            title: format!("n{i}"),
            body: "x".repeat(100_000),
            others_may_edit: false,
            notify: false,
            pinned: i == 3,
        });
        ids.push(act_ok(&mut alice, &room, action).await);
    }
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let r = carol
            .request(ClientFrame::Query {
                id: 0,
                room: room.clone(),
                query: Query::Notes { cursor },
            })
            .await
            .expect("a page, not a close");
        let ServerFrame::QueryResult {
            result: QueryResult::Notes { notes, next },
            ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert!(
            !notes.is_empty() && notes.len() <= 3,
            "{} notes",
            notes.len()
        );
        seen.extend(notes.iter().map(|n| n.id));
        pages += 1;
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(pages >= 15, "{pages} pages");
    // Pinned first, then newest first; each note once.
    let mut expected = vec![ids[3]];
    expected.extend(ids.iter().rev().filter(|id| **id != ids[3]));
    assert_eq!(seen, expected);
    let r = carol
        .request(ClientFrame::Query {
            id: 0,
            room: room.clone(),
            query: Query::Notes {
                cursor: Some("nonsense".into()),
            },
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::InvalidArgument);
}

/// A stalled upload cannot pin the quota: a body that announces 900 bytes, sends 10 and stalls
/// holds its reservation only until `upload_idle_secs` (here 3) passes with no byte — then a
/// neighbour's upload that did not fit goes through. A user has at most
/// `max_uploads_per_user` (here 2) uploads in flight: the third is 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_give_the_quota_back() {
    use tokio::io::AsyncWriteExt;
    let server =
        Server::start_with_config("[limits]\nupload_idle_secs = 3\nmax_uploads_per_user = 2\n")
            .await;
    let w = world(&server).await;
    let r = server
        .http(Some(&w.acme_key))
        .patch(
            "/v1/admin/company/settings",
            serde_json::json!({ "shared_storage_quota": 1000 }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Stalls", &[&w.bob.id]).await;
    let stall = |token: String| {
        let addr = server.addr.clone();
        let room = room.clone();
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr.as_str())
                .await
                .expect("tcp");
            let head = format!(
                "POST /v1/rooms/{room}/attachments?name=s HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: text/plain\r\n\
                 Content-Length: 450\r\n\r\n0123456789"
            );
            tcp.write_all(head.as_bytes()).await.expect("write");
            tcp
        }
    };
    // Two stalls of alice's hold 900 of the 1,000 bytes; a third is refused at once.
    let _one = stall(w.alice.token.clone()).await;
    let _two = stall(w.alice.token.clone()).await;
    let upload = |token: &str, n: usize| {
        let http = server.http(Some(token));
        let path = format!("/v1/rooms/{room}/attachments?name=b");
        async move {
            http.call_raw("POST", &path, Some(("text/plain", vec![7u8; n].into())))
                .await
                .expect("http")
        }
    };
    // Both stalls reached the server once their reservations show.
    let mut reserved = 0;
    for _ in 0..200 {
        reserved = storage_used(&server, &w.acme_key).await;
        if reserved == 900 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reserved, 900, "the two stalls hold their reservations");
    let third = upload(&w.alice.token, 5).await;
    assert_eq!(third.status, 429, "{:?}", third.body);
    assert_eq!(third.body["error"]["code"], "rate_limited");
    // Bob's 200 bytes do not fit while the stalls hold their reservations ...
    let r = upload(&w.bob.token, 200).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "quota_exceeded");
    // ... and do once the idle limit cut the stalls off.
    let mut status = 0;
    for _ in 0..200 {
        status = upload(&w.bob.token, 200).await.status;
        if status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status, 201,
        "the stalled uploads gave their reservations back"
    );
    assert_eq!(storage_used(&server, &w.acme_key).await, 200);
}

/// An upload cut off by a SIGKILL leaves no trace once the server is back: the quota it
/// reserved is given back at start-up (the embedded store's process alone writes it) and its
/// `.part` file is removed. (They stayed forever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_mid_body_leaves_no_reservation_and_no_part_file() {
    use tokio::io::AsyncWriteExt;
    let mut server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Killed", &[]).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr.as_str())
        .await
        .expect("tcp");
    let head = format!(
        "POST /v1/rooms/{room}/files?name=k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: text/plain\r\nContent-Length: 100000\r\n\r\n{}",
        w.alice.token,
        "z".repeat(5_000)
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let parts = |server: &Server| {
        std::fs::read_dir(server.data_dir.join("files/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let mut reserved = 0;
    for _ in 0..500 {
        reserved = storage_used(&server, &w.acme_key).await;
        if reserved == 100_000 && parts(&server) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (reserved, parts(&server)),
        (100_000, 1),
        "the upload is under way"
    );
    drop(alice);
    server.restart().await;
    drop(tcp);
    assert_eq!(
        storage_used(&server, &w.acme_key).await,
        0,
        "the reservation was given back"
    );
    assert_eq!(parts(&server), 0, "the .part file was removed");
}

/// User and company ids are checked where they are decoded: a malformed one (here 30 KB) is
/// `invalid_argument` for the request that carries it, without its text in the answer, and the
/// session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_user_ids_are_refused_at_decode() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    for bad in [
        "x".repeat(30_000),
        "Alice@acme.example".into(),
        "alice@acme".into(),
    ] {
        for frame in [
            ClientFrame::AddContact {
                id: 0,
                user: UserId(bad.clone()),
            },
            ClientFrame::CreateGroup {
                id: 0,
                name: "Ids".into(),
                description: String::new(),
                members: vec![UserId(bad.clone())],
                masters: vec![],
                add_self_as_member: true,
                features: None,
            },
        ] {
            let r = alice.request(frame).await.expect("reply");
            let ServerFrame::Error { code, message, .. } = &r else {
                panic!("{r:?}")
            };
            assert_eq!(*code, ErrorCode::InvalidArgument, "{bad:.40}: {message}");
            assert!(message.len() < 300, "not echoed: {} bytes", message.len());
        }
    }
    let r = alice
        .request(ClientFrame::Ping { id: 0 })
        .await
        .expect("pong");
    assert!(matches!(r, ServerFrame::Pong { .. }), "{r:?}");
}

/// M1 (issue 16): an attachment no post takes in time — never posted, or taken by a post that
/// was refused — is removed by the files sweep with its bytes (it counted against the quota
/// forever); one a post took stays, and a post cannot take one past its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unposted_attachments_are_removed_and_give_their_bytes_back() {
    let server = Server::start_with_config(
        "[limits]\nunposted_attachment_secs = 2\n[files]\nsweep_interval_secs = 1\n",
    )
    .await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Attachments", &[&w.bob.id]).await;
    let upload = |n: usize| {
        let http = server.http(Some(&w.alice.token));
        let path = format!("/v1/rooms/{room}/attachments?name=a");
        async move {
            let r = http
                .call_raw("POST", &path, Some(("text/plain", vec![7u8; n].into())))
                .await
                .expect("http");
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body["file"].as_str().expect("file").to_owned()
        }
    };
    let (kept, never, refused, late) = (
        upload(100).await,
        upload(200).await,
        upload(400).await,
        upload(800).await,
    );
    let post = |cmid: &str, files: Vec<String>| post_with(&room, cmid, files);
    let r = alice
        .request(post("kept", vec![kept.clone()]))
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Posted { .. }), "{r:?}");
    // Refused because `kept` is another post's: `refused` was taken for it all the same.
    let r = alice
        .request(post("refused", vec![refused.clone(), kept.clone()]))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotFound);
    assert_eq!(storage_used(&server, &w.acme_key).await, 1500);
    let mut used = 0;
    for _ in 0..300 {
        used = storage_used(&server, &w.acme_key).await;
        if used == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(used, 100, "only the posted attachment is left");
    let r = alice
        .request(post("late", vec![late.clone()]))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotFound, "past its time");
    let http = server.http(Some(&w.bob.token));
    for (f, status) in [(&kept, 200), (&never, 404), (&refused, 404), (&late, 404)] {
        let r = http.get(&format!("/v1/rooms/{room}/files/{f}")).await;
        assert_eq!(r.expect("http").status, status, "{f}");
    }
    // A retry of the post that took `kept`, past its time: the same message, not a refusal.
    let r = alice
        .request(post("kept", vec![kept.clone()]))
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Posted { .. }), "{r:?}");
    let m = scrape(&server).await;
    assert_eq!(
        metric(&m, "crossroom_unposted_attachments_removed_total"),
        3.0
    );
}

/// M1 (issue 16): the uploader deletes an attachment no post took (there was no way to), its
/// bytes given back; nobody else can, nor anyone once a post took it. One post per attachment:
/// another post (or the same file twice), or a folder file, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploader_deletes_an_unposted_attachment_and_a_post_takes_one_once() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Attachments", &[&w.bob.id]).await;
    let send = |token: &str, path: String, n: usize| {
        let http = server.http(Some(token));
        async move {
            let r = http
                .call_raw("POST", &path, Some(("text/plain", vec![7u8; n].into())))
                .await
                .expect("http");
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body["file"].as_str().expect("file").to_owned()
        }
    };
    let attachment = format!("/v1/rooms/{room}/attachments?name=a");
    let dropped = send(&w.alice.token, attachment.clone(), 100).await;
    let posted = send(&w.alice.token, attachment.clone(), 200).await;
    let folder = send(
        &w.alice.token,
        format!("/v1/rooms/{room}/files?name=f"),
        400,
    )
    .await;
    assert_eq!(storage_used(&server, &w.acme_key).await, 700);
    let delete = |token: &str, f: &str| {
        let http = server.http(Some(token));
        let path = format!("/v1/rooms/{room}/attachments/{f}");
        async move { http.delete(&path).await.expect("http") }
    };
    assert_eq!(
        delete(&w.bob.token, &dropped).await.status,
        404,
        "not bob's"
    );
    assert_eq!(
        delete(&w.alice.token, &folder).await.status,
        404,
        "not an attachment"
    );
    assert_eq!(delete(&w.alice.token, &dropped).await.status, 204);
    assert_eq!(delete(&w.alice.token, &dropped).await.status, 404, "gone");
    assert_eq!(storage_used(&server, &w.acme_key).await, 600);

    let post = |cmid: &str, files: Vec<String>| post_with(&room, cmid, files);
    let r = alice
        .request(post("dropped", vec![dropped.clone()]))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotFound, "deleted");
    let r = alice
        .request(post("folder", vec![folder.clone()]))
        .await
        .expect("reply");
    assert_eq!(
        error_code(&r),
        ErrorCode::NotFound,
        "a folder file is not an attachment"
    );
    let r = alice
        .request(post("twice", vec![posted.clone(), posted.clone()]))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::InvalidArgument);
    let r = alice
        .request(post("one", vec![posted.clone()]))
        .await
        .expect("reply");
    let ServerFrame::Posted { seq, .. } = r else {
        panic!("{r:?}")
    };
    let r = alice
        .request(post("one", vec![posted.clone()]))
        .await
        .expect("reply");
    assert!(
        matches!(r, ServerFrame::Posted { seq: again, .. } if again == seq),
        "a retry: {r:?}"
    );
    let r = alice
        .request(post("two", vec![posted.clone()]))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotFound, "another post's");
    let r = delete(&w.alice.token, &posted).await;
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (403, &serde_json::json!("forbidden"))
    );
    assert_eq!(storage_used(&server, &w.acme_key).await, 600);
}

/// Issue 21: the default per-connection rate fits people, not load tests (it was 5,000/s with
/// bursts of 10,000, so one client could flood a room at thousands of posts a second): a
/// client that sends 2,000 requests at once has the ones past the burst of 1,000 (less what
/// 50/s refills meanwhile) refused, and a person's pace is never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rate_fits_people() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut person = server.connect(&w.alice.token, Encoding::MsgPack).await;
    for _ in 0..20 {
        let r = person
            .request(ClientFrame::Ping { id: 0 })
            .await
            .expect("reply");
        assert!(matches!(r, ServerFrame::Pong { .. }), "{r:?}");
    }
    let mut flood = server.connect(&w.bob.token, Encoding::MsgPack).await;
    let started = std::time::Instant::now();
    let (mut pongs, mut limited) = (0u64, 0u64);
    // In rounds of 500, read before sending more: the session's outbound queue holds 1,024.
    for _ in 0..4 {
        for _ in 0..500 {
            flood
                .send(&mut ClientFrame::Ping { id: 0 })
                .await
                .expect("send");
        }
        let mut answered = 0;
        while answered < 500 {
            match flood
                .next_frame(Duration::from_secs(10))
                .await
                .expect("frame")
            {
                ServerFrame::Pong { .. } => pongs += 1,
                ServerFrame::Error {
                    code: ErrorCode::RateLimited,
                    ..
                } => limited += 1,
                other => panic!("{other:?}"),
            }
            answered += 1;
        }
    }
    // What the bucket can have refilled while the frames came in bounds the answered ones.
    let refill = 50 * (started.elapsed().as_secs() + 1);
    assert!(pongs >= 1000, "the burst is answered: {pongs}");
    assert!(
        pongs <= 1000 + refill,
        "{pongs} answered, {limited} refused"
    );
    assert!(limited > 0);
}

/// A post whose client id is its text, carrying `files`.
fn post_with(room: &crossroom_protocol::RoomId, cmid: &str, files: Vec<String>) -> ClientFrame {
    ClientFrame::Post {
        id: 0,
        room: room.clone(),
        client_msg_id: cmid.into(),
        text: cmid.into(),
        attachments: files,
        mentions: vec![],
    }
}

/// `POST /v1/origin` (for pages whose socket never opened): the page's own origin is admitted,
/// another site's is not, with the message that says what to configure.
#[tokio::test]
async fn the_origin_check_tells_a_page_why() {
    let server = Server::start().await;
    let ask = |origin: String| {
        let addr = server.addr.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            let req = format!(
                "POST /v1/origin HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            let body = out.split("\r\n\r\n").nth(1).expect("a body").to_owned();
            serde_json::from_str::<serde_json::Value>(&body).expect("json")
        }
    };
    assert_eq!(
        ask(format!("http://{}", server.addr)).await["admitted"],
        true
    );
    let evil = ask("https://evil.example".to_owned()).await;
    assert_eq!(evil["admitted"], false, "{evil}");
    assert_eq!(evil["reason"], "origin", "{evil}");
    assert!(
        evil["message"]
            .as_str()
            .is_some_and(|m| m.contains("allowed_origins")),
        "{evil}"
    );
}
