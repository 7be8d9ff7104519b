//! Delivery guarantees D1–D3 and the message-room basics M1–M3, through real clients.

use crate::harness::*;
use crossroom_protocol::client::Client;
use crossroom_protocol::{ClientFrame, Encoding, ErrorCode, EventBody, ServerFrame};
use std::collections::HashSet;
use std::time::Duration;

/// D3, M1: two companies, an external group, posts fanned out to every member's every session
/// (both encodings) in seq order, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3_posts_reach_every_session_of_every_member_in_seq_order() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Launch", &[&w.bob.id, &w.carol.id, &w.dave.id]).await;

    let mut sessions: Vec<Client> = Vec::new();
    for p in [&w.alice, &w.bob, &w.carol, &w.dave] {
        for enc in [Encoding::MsgPack, Encoding::Json] {
            let mut c = server.connect(&p.token, enc).await;
            subscribe(&mut c, &room, None).await;
            sessions.push(c);
        }
    }
    let mut carol = server.connect(&w.carol.token, Encoding::Json).await;
    // Two writers of two companies, pipelined: 20 posts each without waiting for acks.
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            alice
                .send(&mut post(
                    &room,
                    &format!("a{i}"),
                    &format!("from alice {i}"),
                ))
                .await
                .expect("send"),
        );
        carol
            .send(&mut post(
                &room,
                &format!("c{i}"),
                &format!("from carol {i}"),
            ))
            .await
            .expect("send");
    }
    let mut acked = HashSet::new();
    for id in ids {
        match alice
            .reply_to(id, Duration::from_secs(10))
            .await
            .expect("ack")
        {
            ServerFrame::Posted { seq, duplicate, .. } => {
                assert!(!duplicate);
                acked.insert(seq);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(acked.len(), 20);

    for (n, s) in sessions.iter_mut().enumerate() {
        let mut seqs = Vec::new();
        let mut texts = HashSet::new();
        for _ in 0..40 {
            let e = next_event(s).await;
            assert_eq!(e.room, room);
            if let EventBody::Message { text, .. } = &e.body {
                texts.insert(text.clone());
            }
            seqs.push(e.seq);
        }
        // seq 1 is the room's creation; the 40 posts are 2..=41, in order, no gaps.
        assert_eq!(seqs, (2..=41).collect::<Vec<_>>(), "session {n}");
        assert_eq!(texts.len(), 40, "session {n}: every post once");
        assert!(
            s.next_push(Duration::from_millis(300)).await.is_err(),
            "session {n}: nothing more"
        );
    }
}

/// D1: a client that disconnects misses 50 posts and gets all 50 on resume, in order, then live
/// ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_resume_replays_the_50_missed_posts_in_order_then_live() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Resume", &[&w.carol.id]).await;

    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let (epoch, head) = subscribe(&mut carol, &room, None).await;
    post_ok(&mut alice, &room, "first", "first").await;
    let first = next_event(&mut carol).await;
    assert_eq!(first.seq, head + 1);
    carol.close().await;

    for i in 0..50 {
        post_ok(&mut alice, &room, &format!("m{i}"), &format!("missed {i}")).await;
    }
    let mut carol = server.connect(&w.carol.token, Encoding::Json).await;
    let r = carol
        .request(ClientFrame::Subscribe {
            id: 0,
            room: room.clone(),
            since: Some(crossroom_protocol::Position {
                epoch,
                seq: first.seq,
            }),
            presence: false,
        })
        .await
        .expect("subscribe");
    match r {
        ServerFrame::Subscribed { replayed, head, .. } => {
            assert_eq!(replayed, 50);
            assert_eq!(head, first.seq + 50);
        }
        other => panic!("{other:?}"),
    }
    for i in 0..50u64 {
        let e = next_event(&mut carol).await;
        assert_eq!(e.seq, first.seq + 1 + i);
        assert_eq!(
            e.body,
            EventBody::Message {
                client_msg_id: format!("m{i}"),
                text: format!("missed {i}"),
                attachments: vec![],
                mentions: vec![],
                recalled: false,
            }
        );
    }
    let live = post_ok(&mut alice, &room, "live", "live").await;
    assert_eq!(next_event(&mut carol).await.seq, live);
}

/// D1: a position from another epoch, from the future, or too far behind gets `reset`, never a
/// silent gap or a partial replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_unresumable_positions_get_reset() {
    let server = Server::start_with_config("[limits]\nmax_replay = 10\n").await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Reset", &[&w.carol.id]).await;
    for i in 0..20 {
        post_ok(&mut alice, &room, &format!("m{i}"), "x").await;
    }
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let (epoch, head) = subscribe(&mut carol, &room, None).await;
    assert_eq!(head, 21);
    // Each round posts once more, so the head the reset names grows by one a round.
    for (extra, since) in [(epoch + 1, 5), (epoch, head + 3), (epoch, 2)]
        .into_iter()
        .enumerate()
    {
        let mut c = server.connect(&w.carol.token, Encoding::MsgPack).await;
        let sub = c
            .request(ClientFrame::Subscribe {
                id: 0,
                room: room.clone(),
                since: Some(crossroom_protocol::Position {
                    epoch: since.0,
                    seq: since.1,
                }),
                presence: false,
            })
            .await
            .expect("subscribe");
        assert!(
            matches!(sub, ServerFrame::Subscribed { replayed: 0, .. }),
            "{since:?}: {sub:?}"
        );
        let head_now = head + extra as u64;
        match c.next_push(Duration::from_secs(5)).await.expect("reset") {
            ServerFrame::Reset {
                epoch: e, head: h, ..
            } => assert_eq!((e, h), (epoch, head_now)),
            other => panic!("{since:?}: expected reset, got {other:?}"),
        }
        // Live events follow the reset.
        let seq = post_ok(&mut alice, &room, &format!("after{}", since.1), "y").await;
        assert_eq!(next_event(&mut c).await.seq, seq);
    }
    // Within max_replay it resumes.
    let mut c = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let head_now = post_ok(&mut alice, &room, "z", "z").await;
    subscribe(&mut c, &room, Some((epoch, head_now - 5))).await;
    for s in head_now - 4..=head_now {
        assert_eq!(next_event(&mut c).await.seq, s);
    }
}

/// D2: a retried post with the same client id is stored and delivered once, even when the
/// retries race from two sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_retried_post_is_stored_and_delivered_once() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Retry", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;

    let mut alice2 = server.connect(&w.alice.token, Encoding::Json).await;
    let a = alice
        .send(&mut post(&room, "same-id", "hello"))
        .await
        .expect("send");
    let b = alice2
        .send(&mut post(&room, "same-id", "hello"))
        .await
        .expect("send");
    let c = alice
        .send(&mut post(&room, "same-id", "hello"))
        .await
        .expect("send");
    let mut seqs = Vec::new();
    let mut dups = 0;
    for (which, id) in [(0, a), (1, b), (0, c)] {
        let client = if which == 0 { &mut alice } else { &mut alice2 };
        match client
            .reply_to(id, Duration::from_secs(10))
            .await
            .expect("ack")
        {
            ServerFrame::Posted { seq, duplicate, .. } => {
                seqs.push(seq);
                dups += usize::from(duplicate);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(seqs.iter().all(|s| *s == seqs[0]), "{seqs:?}");
    assert_eq!(dups, 2);
    let e = next_event(&mut carol).await;
    assert_eq!(e.seq, seqs[0]);
    assert!(
        carol.next_push(Duration::from_millis(300)).await.is_err(),
        "delivered once"
    );
    let h = carol
        .request(ClientFrame::History {
            id: 0,
            room: room.clone(),
            before: None,
            limit: Some(100),
        })
        .await
        .expect("history");
    match h {
        ServerFrame::History { events, .. } => assert_eq!(events.len(), 2, "created + one post"),
        other => panic!("{other:?}"),
    }
}

/// D2: the server SIGKILLed mid-stream and restarted loses no acknowledged post.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_sigkill_mid_stream_loses_no_acknowledged_post() {
    let mut server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Crash", &[&w.carol.id]).await;

    // Pipeline posts in batches of 50; once 300 are acknowledged, kill the server right after
    // sending a batch, so that posts are in flight when it dies.
    let mut cmid_of = std::collections::HashMap::new();
    let mut acked: Vec<(u64, u32)> = Vec::new();
    let mut n = 0;
    'outer: loop {
        let mut ids = Vec::new();
        for _ in 0..50 {
            let cmid = format!("k{n}");
            n += 1;
            match alice.send(&mut post(&room, &cmid, "crash test")).await {
                Ok(id) => {
                    cmid_of.insert(id, cmid);
                    ids.push(id);
                }
                Err(_) => break 'outer,
            }
        }
        if acked.len() >= 300 {
            server.kill().await;
        }
        let mut waiting = ids.len();
        while waiting > 0 {
            match alice.next_frame(Duration::from_secs(10)).await {
                Ok(ServerFrame::Posted { seq, id, .. }) => {
                    acked.push((seq, id));
                    waiting -= 1;
                }
                Ok(ServerFrame::Joined { .. }) => {}
                Ok(other) => panic!("{other:?}"),
                Err(_) => break 'outer,
            }
        }
    }
    assert!(acked.len() >= 300, "acked {}", acked.len());
    server.restart().await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let mut stored = std::collections::HashMap::new();
    for e in whole_history(&mut carol, &room).await {
        if let EventBody::Message { client_msg_id, .. } = e.body {
            stored.insert(e.seq, client_msg_id);
        }
    }
    for (seq, id) in &acked {
        assert_eq!(
            stored.get(seq),
            cmid_of.get(id),
            "acknowledged seq {seq} is stored with its post"
        );
    }
}

/// History pages backwards by seq, oldest first within a page, with `has_more`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_by_seq() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "History", &[&w.carol.id]).await;
    for i in 0..120 {
        alice
            .send(&mut post(&room, &format!("h{i}"), &format!("{i}")))
            .await
            .expect("send");
    }
    let last = post_ok(&mut alice, &room, "last", "last").await;
    assert_eq!(last, 122);
    let mut carol = server.connect(&w.carol.token, Encoding::Json).await;
    let mut before = None;
    let mut pages = Vec::new();
    loop {
        let HistoryPage {
            events, has_more, ..
        } = carol
            .history(&room, before, Some(50))
            .await
            .expect("history");
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        before = seqs.first().copied();
        pages.push(seqs);
        if !has_more {
            break;
        }
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0], (73..=122).collect::<Vec<_>>());
    assert_eq!(pages[1], (23..=72).collect::<Vec<_>>());
    assert_eq!(pages[2], (1..=22).collect::<Vec<_>>());
    // The page size is capped by the server.
    let HistoryPage { events, .. } = carol
        .history(&room, None, Some(100_000))
        .await
        .expect("history");
    assert_eq!(events.len(), 100);
}

/// M2: unread count = messages after the read marker not written by the member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m2_unread_counts_follow_the_read_marker() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Unread", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(post_ok(&mut alice, &room, &format!("u{i}"), "x").await);
    }
    post_ok(&mut carol, &room, "mine", "mine").await;
    let unread = |f: ServerFrame| match f {
        ServerFrame::Rooms { rooms, .. } => {
            let r = rooms.into_iter().find(|r| r.id == room).expect("listed");
            (r.unread.expect("a member has an unread count"), r.last_read)
        }
        other => panic!("{other:?}"),
    };
    let r = carol
        .request(ClientFrame::ListRooms { id: 0 })
        .await
        .expect("rooms");
    assert_eq!(unread(r), (5, 0));
    carol.mark_read(&room, seqs[2]).await.expect("mark_read");
    let r = carol
        .request(ClientFrame::ListRooms { id: 0 })
        .await
        .expect("rooms");
    assert_eq!(unread(r), (2, seqs[2]));
    let r = alice
        .request(ClientFrame::ListRooms { id: 0 })
        .await
        .expect("rooms");
    assert_eq!(unread(r), (1, 0), "alice has carol's one message unread");
}

/// M3: typing reaches the room's other current subscribers, not the sender's own session, and
/// is never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m3_typing_is_relayed_to_other_subscribers_and_not_stored() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Typing", &[&w.carol.id]).await;
    subscribe(&mut alice, &room, None).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;
    alice.typing(&room).await.expect("typing");
    match carol
        .next_push(Duration::from_secs(5))
        .await
        .expect("typing")
    {
        ServerFrame::Typing { user, room: r } => {
            assert_eq!(user, w.alice.id);
            assert_eq!(r, room);
        }
        other => panic!("{other:?}"),
    }
    // Alice's own session gets no typing echo (only her `joined` from creating the room).
    while let Ok(f) = alice.next_push(Duration::from_millis(300)).await {
        assert!(matches!(f, ServerFrame::Joined { .. }), "{f:?}");
    }
    let HistoryPage { events, .. } = carol.history(&room, None, None).await.expect("history");
    assert_eq!(events.len(), 1, "only the creation entry");
    // Bob is not a member: typing is refused as not found (G8).
    let mut bob = server.connect(&w.bob.token, Encoding::MsgPack).await;
    assert_eq!(bob.typing(&room).await.refused(), ErrorCode::NotFound);
}

/// M1: text limits are enforced by the server with a clear error; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m1_text_limits() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::Json).await;
    let room = group(&mut alice, "Limits", &[&w.carol.id]).await;
    let ok = post_ok(&mut alice, &room, "max", &"é".repeat(10_000)).await;
    assert_eq!(ok, 2);
    for (cmid, text) in [
        ("long", "é".repeat(10_001)),
        ("blank", "   ".into()),
        ("", "x".into()),
    ] {
        let r = alice
            .request(post(&room, cmid, &text))
            .await
            .expect("reply");
        assert_eq!(error_code(&r), ErrorCode::InvalidArgument, "{cmid}");
    }
    let next = post_ok(&mut alice, &room, "after", "after").await;
    assert_eq!(next, 3, "refused posts took no seq");
}
