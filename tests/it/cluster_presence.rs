//! Typing and presence across nodes (M3): ephemeral, to current members only, on every node,
//! stopping at a removal (D4); presence coalesced per room and forgotten when a node dies.

use crate::harness::*;
use crossroom_protocol::client::Client;
use crossroom_protocol::{ClientFrame, Encoding, RoomId, ServerFrame, UserId};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Subscribe asking for presence; returns the snapshot's online set.
async fn subscribe_presence(c: &mut Client, room: &RoomId) -> BTreeSet<UserId> {
    c.subscribe(room, None, true).await.expect("subscribe");
    loop {
        match c.next_push(Duration::from_secs(10)).await.expect("push") {
            ServerFrame::Presence {
                online,
                offline,
                snapshot: true,
                ..
            } => {
                assert!(offline.is_empty());
                return online.into_iter().collect();
            }
            ServerFrame::Event(_) | ServerFrame::Joined { .. } => continue,
            other => panic!("expected the presence snapshot, got {other:?}"),
        }
    }
}

/// Apply `presence` pushes to `view` until it equals `want` (bounded wait); other pushes are
/// skipped. Returns how many presence changes it took.
async fn presence_becomes(c: &mut Client, view: &mut BTreeSet<UserId>, want: &[&UserId]) -> usize {
    let want: BTreeSet<UserId> = want.iter().map(|u| (*u).clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut changes = 0;
    while *view != want {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_push(left).await {
            Ok(ServerFrame::Presence {
                online,
                offline,
                snapshot: false,
                ..
            }) => {
                changes += 1;
                view.extend(online);
                for u in offline {
                    view.remove(&u);
                }
            }
            Ok(_) => continue,
            Err(e) => panic!("presence stayed {view:?}, want {want:?}: {e}"),
        }
    }
    changes
}

/// The next `typing` push, skipping presence and events.
async fn next_typing(c: &mut Client) -> UserId {
    loop {
        match c.next_push(Duration::from_secs(10)).await.expect("push") {
            ServerFrame::Typing { user, .. } => return user,
            ServerFrame::Presence { .. } | ServerFrame::Event(_) | ServerFrame::Joined { .. } => {}
            other => panic!("expected typing, got {other:?}"),
        }
    }
}

async fn typing(c: &mut Client, room: &RoomId) -> ServerFrame {
    c.request(ClientFrame::Typing {
        id: 0,
        room: room.clone(),
    })
    .await
    .expect("typing")
}

/// Every push `c` holds before the answer to a ping (what the server queued before it).
async fn pushes_before_pong(c: &mut Client) -> Vec<ServerFrame> {
    let id = c
        .send(&mut ClientFrame::Ping { id: 0 })
        .await
        .expect("ping");
    let mut got = Vec::new();
    loop {
        let f = c.next_frame(Duration::from_secs(10)).await.expect("frame");
        if f.reply_id() == Some(id) {
            return got;
        }
        got.push(f);
    }
}

/// M3, D4 on two nodes: typing crosses nodes both ways; presence is a snapshot on subscribe,
/// then coalesced changes as people connect and leave on either node; a removed member gets
/// neither typing nor presence again and cannot type; when a node dies its users go offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m3_typing_and_presence_cross_nodes_and_stop_at_a_removal() {
    let redis = Redis::start(&[]).await;
    let a = Server::start_node(&[redis.url()]).await;
    let mut b = Server::start_node(&[redis.url()]).await;
    let w = world(&a).await;
    let mut alice = a.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Presence", &[&w.carol.id, &w.dave.id]).await;
    let mut view = subscribe_presence(&mut alice, &room).await;
    assert_eq!(view, [w.alice.id.clone()].into_iter().collect());

    // Carol comes online on node b: alice (node a) hears it.
    let mut carol = b.connect(&w.carol.token, Encoding::Json).await;
    presence_becomes(&mut alice, &mut view, &[&w.alice.id, &w.carol.id]).await;
    let carol_view = subscribe_presence(&mut carol, &room).await;
    assert_eq!(
        carol_view,
        [w.alice.id.clone(), w.carol.id.clone()]
            .into_iter()
            .collect()
    );

    // Typing, both ways across nodes.
    assert!(matches!(
        typing(&mut carol, &room).await,
        ServerFrame::Ok { .. }
    ));
    assert_eq!(next_typing(&mut alice).await, w.carol.id);
    assert!(matches!(
        typing(&mut alice, &room).await,
        ServerFrame::Ok { .. }
    ));
    assert_eq!(next_typing(&mut carol).await, w.alice.id);

    // Dave on node b, then removed through node a.
    let mut dave = b.connect(&w.dave.token, Encoding::MsgPack).await;
    subscribe_presence(&mut dave, &room).await;
    presence_becomes(
        &mut alice,
        &mut view,
        &[&w.alice.id, &w.carol.id, &w.dave.id],
    )
    .await;
    remove_ok(&mut alice, &room, &w.dave.id).await;
    // Removed: dave is no longer in anyone's presence, even though he is still connected.
    presence_becomes(&mut alice, &mut view, &[&w.alice.id, &w.carol.id]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // past alice's typing interval
    assert!(matches!(
        typing(&mut alice, &room).await,
        ServerFrame::Ok { .. }
    ));
    assert_eq!(next_typing(&mut carol).await, w.alice.id);
    // Carol and dave are on one node, served by one actor: what dave would get, he has by now.
    let held = pushes_before_pong(&mut dave).await;
    let removed = held
        .iter()
        .position(|f| matches!(f, ServerFrame::Removed { .. }))
        .expect("dave was told he was removed");
    for f in &held[removed..] {
        assert!(
            !matches!(f, ServerFrame::Typing { .. } | ServerFrame::Presence { .. }),
            "a removed member got {f:?}"
        );
    }
    assert_eq!(
        error_code(&typing(&mut dave, &room).await),
        crossroom_protocol::ErrorCode::NotFound
    );

    // Carol leaves: offline. She comes back, and node b dies: offline again.
    carol.close().await;
    presence_becomes(&mut alice, &mut view, &[&w.alice.id]).await;
    let _carol = b.connect(&w.carol.token, Encoding::Json).await;
    presence_becomes(&mut alice, &mut view, &[&w.alice.id, &w.carol.id]).await;
    b.kill().await;
    presence_becomes(&mut alice, &mut view, &[&w.alice.id]).await;
    drop(dave);
}

/// M3: presence is coalesced — 30 members connecting at once on the other node reach a
/// subscriber in at most a few updates (one per room per second), not 30.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m3_presence_updates_are_coalesced() {
    let redis = Redis::start(&[]).await;
    let a = Server::start_node(&[redis.url()]).await;
    let b = Server::start_node(&[redis.url()]).await;
    let w = world(&a).await;
    let mut people = Vec::new();
    for i in 0..30 {
        people.push(user(&a, &w.globex_key, &format!("p{i}"), "works").await);
    }
    for p in &people {
        contact(&a, &w.acme_key, &w.alice.id, &p.id).await;
    }
    let mut alice = a.connect(&w.alice.token, Encoding::MsgPack).await;
    let ids: Vec<&UserId> = people.iter().map(|p| &p.id).collect();
    let room = group(&mut alice, "Crowd", &ids).await;
    let mut view = subscribe_presence(&mut alice, &room).await;
    let started = Instant::now();
    let mut clients = Vec::new();
    for p in &people {
        clients.push(b.connect(&p.token, Encoding::MsgPack).await);
    }
    let took = started.elapsed();
    let mut want: Vec<&UserId> = ids.clone();
    want.push(&w.alice.id);
    let changes = presence_becomes(&mut alice, &mut view, &want).await;
    // At most one change per second while they connected, and one after.
    let bound = took.as_secs() as usize + 2;
    assert!(
        changes <= bound,
        "{changes} presence updates for 30 arrivals in {took:?} (bound {bound})"
    );
    assert!(changes < 30);
}
