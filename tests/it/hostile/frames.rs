//! Bad frames: garbage, wrong types and fields, oversized or fragmented past the limit (before
//! and after authentication), depth and length bombs, malformed ids.

use super::*;

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
    c.ping().await.expect("ping");
    let seq = post_ok(&mut alice, &room, "deep", "unbothered").await;
    assert_eq!(next_event(&mut carol).await.seq, seq);
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
    bomb.ping().await.expect("ping");
    let seq = post_ok(&mut alice, &room, "ok", "still fine").await;
    assert_eq!(next_event(&mut carol).await.seq, seq);
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
    alice.ping().await.expect("ping");
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
    alice.ping().await.expect("ping");
}
