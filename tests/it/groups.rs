//! External-group rules G2, G3, G8–G16, G18–G20 and D4, through real WebSocket and HTTP
//! clients. Each test names its rule.

use crate::harness::*;
use crossroom_protocol::client::Client;
use crossroom_protocol::{
    close, ClientFrame, Encoding, ErrorCode, EventBody, Features, FeaturesPatch, RemovalReason,
    RoomId, RoomKind, ServerFrame, UserId,
};
use serde_json::json;
use std::time::Duration;

fn history(room: &RoomId) -> ClientFrame {
    ClientFrame::History {
        id: 0,
        room: room.clone(),
        before: None,
        limit: Some(100),
    }
}

async fn events(c: &mut Client, room: &RoomId) -> Vec<crossroom_protocol::Event> {
    match c.request(history(room)).await.expect("history") {
        ServerFrame::History { events, .. } => events,
        other => panic!("{other:?}"),
    }
}

async fn changed(c: &mut Client, f: ClientFrame) -> u64 {
    match c.request(f).await.expect("reply") {
        ServerFrame::Changed { seq, .. } => seq,
        other => panic!("expected changed, got {other:?}"),
    }
}

/// Wait for a push matching `want`, skipping others.
async fn push_until(c: &mut Client, want: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
    loop {
        let f = c.next_push(Duration::from_secs(10)).await.expect("push");
        if want(&f) {
            return f;
        }
    }
}

/// Nothing more arrives that is about `room` (the removal line, D4).
async fn nothing_more_about(c: &mut Client, room: &RoomId) {
    while let Ok(f) = c.next_push(Duration::from_millis(400)).await {
        let about = match &f {
            ServerFrame::Event(e) => e.room == *room,
            ServerFrame::Typing { room: r, .. } => r == room,
            _ => false,
        };
        assert!(!about, "received after removal: {f:?}");
    }
}

async fn invite(c: &mut Client, f: ClientFrame) -> (Option<String>, Option<String>) {
    match c.request(f).await.expect("reply") {
        ServerFrame::Invite { token, url, .. } => (token, url),
        other => panic!("{other:?}"),
    }
}

/// G12, D4: a removed member's every session gets the removal entry and `removed`, then nothing
/// of the room by any path; their earlier messages stay, attributed to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g12_d4_removal_is_immediate_and_total() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Removal", &[&w.carol.id, &w.bob.id]).await;
    subscribe(&mut alice, &room, None).await;
    let mut carol1 = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let mut carol2 = server.connect(&w.carol.token, Encoding::Json).await;
    subscribe(&mut carol1, &room, None).await;
    subscribe(&mut carol2, &room, None).await;
    let mine = post_ok(&mut carol1, &room, "before", "carol was here").await;

    let r = changed(
        &mut alice,
        ClientFrame::RemoveMember {
            id: 0,
            room: room.clone(),
            user: w.carol.id.clone(),
        },
    )
    .await;
    for c in [&mut carol1, &mut carol2] {
        let e = loop {
            let e = next_event(c).await;
            if e.seq == r {
                break e;
            }
            assert!(e.seq < r);
        };
        assert_eq!(
            e.body,
            EventBody::MemberRemoved {
                user: w.carol.id.clone(),
                reason: RemovalReason::Removed
            }
        );
        match push_until(c, |f| matches!(f, ServerFrame::Removed { .. })).await {
            ServerFrame::Removed { room: rr, reason } => {
                assert_eq!(rr, room);
                assert_eq!(reason, RemovalReason::Removed);
            }
            _ => unreachable!(),
        }
    }
    // Live: later posts and typing do not reach carol.
    post_ok(&mut alice, &room, "after", "after carol left").await;
    alice
        .request(ClientFrame::Typing {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("typing");
    nothing_more_about(&mut carol1, &room).await;
    nothing_more_about(&mut carol2, &room).await;
    // Every other path answers not found.
    for f in [
        ClientFrame::Subscribe {
            id: 0,
            room: room.clone(),
            since: Some(crossroom_protocol::Position { epoch: 0, seq: r }),
            presence: false,
        },
        history(&room),
        post(&room, "again", "let me in"),
        ClientFrame::Typing {
            id: 0,
            room: room.clone(),
        },
        ClientFrame::GetRoom {
            id: 0,
            room: room.clone(),
        },
        ClientFrame::MarkRead {
            id: 0,
            room: room.clone(),
            seq: r,
        },
    ] {
        let reply = carol1.request(f.clone()).await.expect("reply");
        assert_eq!(error_code(&reply), ErrorCode::NotFound, "{f:?}");
    }
    let ServerFrame::Rooms { rooms, .. } = carol1
        .request(ClientFrame::ListRooms { id: 0 })
        .await
        .expect("rooms")
    else {
        panic!()
    };
    assert!(rooms.iter().all(|x| x.id != room), "not in lists");
    let ServerFrame::SearchResults { rooms, .. } = carol1
        .request(ClientFrame::Search {
            id: 0,
            query: "rem".into(),
            limit: None,
        })
        .await
        .expect("search")
    else {
        panic!()
    };
    assert!(rooms.is_empty(), "not in search");
    // Their earlier message stays, attributed to them.
    let evs = events(&mut alice, &room).await;
    let kept = evs.iter().find(|e| e.seq == mine).expect("kept");
    assert_eq!(kept.author, w.carol.id);
}

/// G13: withdrawing a member's external permission, switching external chat off, or disabling
/// the user removes them from every external group at once, with reason `policy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g13_admin_revocation_removes_from_every_group() {
    let server = Server::start().await;
    let w = world(&server).await;
    contact(&server, &w.globex_key, &w.carol.id, &w.alice.id).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let g1 = group(&mut alice, "One", &[&w.carol.id, &w.dave.id]).await;
    let g2 = group(&mut alice, "Two", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &g1, None).await;
    subscribe(&mut carol, &g2, None).await;
    let globex = server.http(Some(&w.globex_key));

    // Per member: globex switches to per-member permission without granting carol.
    let r = globex
        .patch(
            "/v1/admin/company/settings",
            json!({ "external_permission": "per_member" }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut removed_from = Vec::new();
    while removed_from.len() < 2 {
        if let ServerFrame::Removed { room, reason } =
            push_until(&mut carol, |f| matches!(f, ServerFrame::Removed { .. })).await
        {
            assert_eq!(reason, RemovalReason::Policy);
            removed_from.push(room);
        }
    }
    removed_from.sort();
    let mut want = vec![g1.clone(), g2.clone()];
    want.sort();
    assert_eq!(removed_from, want);
    let e = events(&mut alice, &g1).await;
    assert!(e.iter().any(|e| e.body
        == EventBody::MemberRemoved {
            user: w.carol.id.clone(),
            reason: RemovalReason::Policy
        }));
    assert!(e
        .iter()
        .any(|e| matches!(&e.body, EventBody::MemberRemoved { user, .. } if *user == w.dave.id)));

    // Disable: acme disables bob after he joins; he is removed and his sessions are closed.
    let g3 = group(&mut alice, "Three", &[&w.bob.id]).await;
    let mut bob = server.connect(&w.bob.token, Encoding::Json).await;
    let r = server
        .http(Some(&w.acme_key))
        .patch(
            &format!("/v1/admin/users/{}", w.bob.id),
            json!({ "active": false }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200);
    assert_eq!(
        bob.closed(Duration::from_secs(5)).await.expect("closed"),
        Some(close::USER_DISABLED)
    );
    let e = events(&mut alice, &g3).await;
    assert!(e.iter().any(|e| e.body
        == EventBody::MemberRemoved {
            user: w.bob.id.clone(),
            reason: RemovalReason::Policy
        }));

    // Company-wide: acme switches external chat off; alice is removed even as last master.
    let r = server
        .http(Some(&w.acme_key))
        .patch(
            "/v1/admin/company/settings",
            json!({ "external_chat": false }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200);
    let reply = alice.request(history(&g1)).await.expect("reply");
    assert_eq!(error_code(&reply), ErrorCode::NotFound);
    let audit = server
        .http(Some(&w.acme_key))
        .get(&format!("/v1/admin/audit?room={g1}"))
        .await
        .expect("http");
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default())
        .collect();
    assert!(actions.contains(&"member_removed"), "{actions:?}");
}

/// G9, G18: masters change settings only when the owner company allows it; admins always. A
/// switched-off feature refuses its operations with `feature_disabled`; switching it back on
/// brings everything back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g9_g18_settings_and_feature_switches() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Settings", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;
    let early = post_ok(&mut carol, &room, "early", "before the switch").await;

    let off = Features {
        message: false,
        ..Default::default()
    };
    let seq = changed(
        &mut alice,
        ClientFrame::UpdateGroup {
            id: 0,
            room: room.clone(),
            name: Some("Renamed".into()),
            description: Some("new words".into()),
            features: Some(off.into()),
        },
    )
    .await;
    loop {
        let e = next_event(&mut carol).await;
        if e.seq == seq {
            assert!(matches!(e.body, EventBody::GroupUpdated { .. }));
            break;
        }
    }
    let r = carol.request(post(&room, "x", "x")).await.expect("reply");
    assert_eq!(error_code(&r), ErrorCode::FeatureDisabled);
    // Nothing was deleted by switching off.
    assert!(events(&mut carol, &room)
        .await
        .iter()
        .any(|e| e.seq == early));
    // A member who is not a master cannot change settings.
    let r = carol
        .request(ClientFrame::UpdateGroup {
            id: 0,
            room: room.clone(),
            name: Some("Mine".into()),
            description: None,
            features: None,
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::Forbidden);
    // The owner company takes the power from masters; its admin keeps it.
    let acme = server.http(Some(&w.acme_key));
    acme.patch(
        "/v1/admin/company/settings",
        json!({ "masters_can_change_settings": false }),
    )
    .await
    .expect("http");
    let r = alice
        .request(ClientFrame::UpdateGroup {
            id: 0,
            room: room.clone(),
            name: None,
            description: None,
            features: Some(Features::default().into()),
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::Forbidden);
    let r = acme
        .patch(
            &format!("/v1/admin/groups/{room}"),
            json!({ "features": { "message": true } }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    post_ok(&mut carol, &room, "back", "messages are back").await;
    let ServerFrame::Room { room: info, .. } = carol
        .request(ClientFrame::GetRoom {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("room")
    else {
        panic!()
    };
    assert_eq!(info.name, "Renamed");
    assert_eq!(info.description, "new words");
    assert!(info.features.message);
    // Another company's admin does not see the group at all.
    let r = server
        .http(Some(&w.globex_key))
        .patch(
            &format!("/v1/admin/groups/{room}"),
            json!({ "name": "Mine" }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 404);
}

async fn get_room(c: &mut Client, room: &RoomId) -> crossroom_protocol::RoomInfo {
    match c
        .request(ClientFrame::GetRoom {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("room")
    {
        ServerFrame::Room { room, .. } => room,
        other => panic!("{other:?}"),
    }
}

fn switch(room: &RoomId, features: FeaturesPatch) -> ClientFrame {
    ClientFrame::UpdateGroup {
        id: 0,
        room: room.clone(),
        name: None,
        description: None,
        features: Some(features),
    }
}

/// The first pushes after a subscribe with `since`: a `reset`, or the replayed seqs.
async fn resumed(c: &mut Client, room: &RoomId) -> Result<Vec<u64>, ()> {
    let epoch = events(c, room).await.first().expect("an event").epoch;
    subscribe(c, room, Some((epoch, 0))).await;
    let mut seqs = Vec::new();
    while let Ok(f) = c.next_push(Duration::from_millis(300)).await {
        match f {
            ServerFrame::Reset { .. } => return Err(()),
            ServerFrame::Event(e) => seqs.push(e.seq),
            _ => {}
        }
    }
    Ok(seqs)
}

/// G18, D4: `share_history` decides what members added later see — the log from its start while
/// it is on, from their join while it is off (the default) — in history and on resume; switching
/// it moves nobody already in. A switch changes alone: the others keep their value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g18_d4_share_history_decides_what_later_members_see() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "History", &[&w.carol.id]).await;
    let early = post_ok(&mut alice, &room, "h1", "before anyone joined").await;
    assert!(!get_room(&mut alice, &room).await.features.share_history);
    let add = |u: &Person| ClientFrame::AddMembers {
        id: 0,
        room: room.clone(),
        users: vec![u.id.clone()],
    };
    // Off: bob sees from his join.
    let bob_joined = changed(&mut alice, add(&w.bob)).await;
    let mut bob = server.connect(&w.bob.token, Encoding::Json).await;
    let seen: Vec<u64> = events(&mut bob, &room)
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seen.first(), Some(&bob_joined), "{seen:?}");
    assert_eq!(
        resumed(&mut bob, &room).await,
        Err(()),
        "resume from 0: reset"
    );

    // A partial change: only share_history moves (note stays off).
    changed(
        &mut alice,
        switch(
            &room,
            FeaturesPatch {
                note: Some(false),
                ..Default::default()
            },
        ),
    )
    .await;
    changed(
        &mut alice,
        switch(
            &room,
            FeaturesPatch {
                share_history: Some(true),
                ..Default::default()
            },
        ),
    )
    .await;
    let f = get_room(&mut alice, &room).await.features;
    assert!(f.share_history && !f.note && f.message, "{f:?}");

    // On: dave, added now, sees everything from seq 1, by history and by resume.
    changed(&mut alice, add(&w.dave)).await;
    let mut dave = server.connect(&w.dave.token, Encoding::MsgPack).await;
    let seen: Vec<u64> = events(&mut dave, &room)
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seen.first(), Some(&1), "{seen:?}");
    assert!(seen.contains(&early));
    let replayed = resumed(&mut dave, &room).await.expect("no reset");
    assert_eq!(replayed.first(), Some(&1), "{replayed:?}");
    // Bob's point did not move.
    let seen: Vec<u64> = events(&mut bob, &room)
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seen.first(), Some(&bob_joined));

    // Off again: dave keeps what he was given; live delivery goes on for both.
    changed(
        &mut alice,
        switch(
            &room,
            FeaturesPatch {
                share_history: Some(false),
                ..Default::default()
            },
        ),
    )
    .await;
    let seen: Vec<u64> = events(&mut dave, &room)
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seen.first(), Some(&1));
    let late = post_ok(&mut alice, &room, "h2", "after").await;
    loop {
        if next_event(&mut dave).await.seq == late {
            break;
        }
    }
    // An unknown switch is refused, not ignored.
    let typo = json!({"type":"update_group","id":9,"room":room,"features":{"share_histroy":true}});
    let mut raw = server.connect(&w.alice.token, Encoding::Json).await;
    raw.send_raw(tokio_tungstenite::tungstenite::Message::Text(
        typo.to_string().into(),
    ))
    .await
    .expect("send");
    let r = raw
        .reply_to(9, Duration::from_secs(5))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::InvalidArgument, "{r:?}");
}

/// G9, G10, G11: masters add and remove members and masters; the last master stays; members
/// cannot leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g10_g11_masters_and_leaving() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Masters", &[&w.bob.id]).await;
    let r = alice
        .request(ClientFrame::RemoveMember {
            id: 0,
            room: room.clone(),
            user: w.alice.id.clone(),
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::LastMaster);
    let r = alice
        .request(ClientFrame::RemoveMaster {
            id: 0,
            room: room.clone(),
            user: w.alice.id.clone(),
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::LastMaster);
    let mut bob = server.connect(&w.bob.token, Encoding::MsgPack).await;
    let r = bob
        .request(ClientFrame::Leave {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::CannotLeave);
    // Masters add members and masters at any time (G7 applies: carol is alice's contact).
    changed(
        &mut alice,
        ClientFrame::AddMembers {
            id: 0,
            room: room.clone(),
            users: vec![w.carol.id.clone()],
        },
    )
    .await;
    changed(
        &mut alice,
        ClientFrame::AddMasters {
            id: 0,
            room: room.clone(),
            users: vec![w.bob.id.clone()],
        },
    )
    .await;
    // Now alice may step down as master, and bob (a master) removes her.
    changed(
        &mut bob,
        ClientFrame::RemoveMember {
            id: 0,
            room: room.clone(),
            user: w.alice.id.clone(),
        },
    )
    .await;
    let ServerFrame::Room { room: info, .. } = bob
        .request(ClientFrame::GetRoom {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("room")
    else {
        panic!()
    };
    assert_eq!(info.masters, vec![w.bob.id.clone()]);
    assert_eq!(info.members, vec![w.bob.id.clone(), w.carol.id.clone()]);
    // Bob has no contacts: adding an external user fails with not_in_contacts (G7).
    let r = bob
        .request(ClientFrame::AddMembers {
            id: 0,
            room: room.clone(),
            users: vec![w.dave.id.clone()],
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotInContacts);
    // G6 on add: an explicit add of a LINE user is an error.
    contact(&server, &w.acme_key, &w.bob.id, &w.erin.id).await;
    let r = bob
        .request(ClientFrame::AddMembers {
            id: 0,
            room: room.clone(),
            users: vec![w.erin.id.clone()],
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::LineUserNotAllowed);
}

/// G2: a general room with an external WORKS user becomes an external group in place: same id,
/// same history; LINE users are left out (and removed); there is no way back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g2_convert_a_general_room_in_place() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let ServerFrame::RoomCreated { room, .. } = alice
        .request(ClientFrame::CreateRoom {
            id: 0,
            name: "chat".into(),
            members: vec![w.carol.id.clone(), w.erin.id.clone()],
        })
        .await
        .expect("room")
    else {
        panic!()
    };
    let room = room.id;
    let said = post_ok(&mut alice, &room, "hi", "hello from the general room").await;
    let mut erin = server.connect(&w.erin.token, Encoding::Json).await;
    subscribe(&mut erin, &room, None).await;

    let r = alice
        .request(ClientFrame::ConvertRoom {
            id: 0,
            room: room.clone(),
            name: "Now a group".into(),
        })
        .await
        .expect("reply");
    let ServerFrame::Changed { left_out, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(left_out.len(), 1);
    assert_eq!(left_out[0].user, w.erin.id);
    assert_eq!(left_out[0].reason, ErrorCode::LineUserNotAllowed);
    match push_until(&mut erin, |f| matches!(f, ServerFrame::Removed { .. })).await {
        ServerFrame::Removed { reason, .. } => assert_eq!(reason, RemovalReason::Converted),
        _ => unreachable!(),
    }
    let ServerFrame::Room { room: info, .. } = alice
        .request(ClientFrame::GetRoom {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("room")
    else {
        panic!()
    };
    assert_eq!(info.id, room, "same room id");
    assert_eq!(info.kind, RoomKind::Group);
    assert_eq!(info.converted_from, Some(room.clone()));
    assert_eq!(info.masters, vec![w.alice.id.clone()]);
    assert_eq!(info.members, vec![w.alice.id.clone(), w.carol.id.clone()]);
    assert!(
        events(&mut alice, &room)
            .await
            .iter()
            .any(|e| e.seq == said),
        "history kept"
    );
    for f in [
        ClientFrame::ConvertRoom {
            id: 0,
            room: room.clone(),
            name: "again".into(),
        },
        ClientFrame::Leave {
            id: 0,
            room: room.clone(),
        },
    ] {
        let r = alice.request(f).await.expect("reply");
        assert!(
            matches!(r, ServerFrame::Error { .. }),
            "irreversible: {r:?}"
        );
    }
}

async fn list(c: &mut Client) -> Vec<crossroom_protocol::RoomSummary> {
    match c
        .request(ClientFrame::ListRooms { id: 0 })
        .await
        .expect("rooms")
    {
        ServerFrame::Rooms { rooms, .. } => rooms,
        other => panic!("{other:?}"),
    }
}

async fn search_rooms(c: &mut Client, q: &str) -> Vec<RoomId> {
    let f = ClientFrame::Search {
        id: 0,
        query: q.into(),
        limit: None,
    };
    match c.request(f).await.expect("search") {
        ServerFrame::SearchResults { rooms, .. } => rooms.into_iter().map(|r| r.id).collect(),
        other => panic!("{other:?}"),
    }
}

/// G8, G10 ("groups I manage"): a master who is not a member finds the group in `rooms` (role
/// `master_only`, no unread count) and in `search`, is told by `joined` when made master —
/// also of a group an admin creates — and by `removed` when no longer one; everyone else still
/// finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g8_g10_a_master_who_is_not_a_member_finds_the_groups_they_manage() {
    use crossroom_protocol::Role;
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = managed_group(&mut alice, "Vendor desk", &[&w.carol.id]).await;
    let mine = list(&mut alice).await;
    let line = mine
        .iter()
        .find(|r| r.id == room)
        .expect("listed for its master");
    assert_eq!((line.role, line.unread), (Role::MasterOnly, None));
    assert_eq!(search_rooms(&mut alice, "vendor").await, vec![room.clone()]);
    let r = alice.request(history(&room)).await.expect("reply");
    assert_eq!(
        error_code(&r),
        ErrorCode::NotMember,
        "manages, does not read"
    );
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let line = list(&mut carol)
        .await
        .into_iter()
        .find(|r| r.id == room)
        .expect("member");
    assert_eq!((line.role, line.unread), (Role::Member, Some(0)));

    // Made master: bob is told at once, and finds it.
    let mut bob = server.connect(&w.bob.token, Encoding::Json).await;
    changed(
        &mut alice,
        ClientFrame::AddMasters {
            id: 0,
            room: room.clone(),
            users: vec![w.bob.id.clone()],
        },
    )
    .await;
    let pushed = push_until(&mut bob, |f| matches!(f, ServerFrame::Joined { .. })).await;
    let ServerFrame::Joined { room: line } = pushed else {
        unreachable!()
    };
    assert_eq!(
        (line.id.clone(), line.role),
        (room.clone(), Role::MasterOnly)
    );
    assert_eq!(search_rooms(&mut bob, "desk").await, vec![room.clone()]);
    // No longer master: told `removed`, and the group is gone from the list.
    changed(
        &mut alice,
        ClientFrame::RemoveMaster {
            id: 0,
            room: room.clone(),
            user: w.bob.id.clone(),
        },
    )
    .await;
    push_until(
        &mut bob,
        |f| matches!(f, ServerFrame::Removed { room: r, .. } if *r == room),
    )
    .await;
    assert!(list(&mut bob).await.iter().all(|r| r.id != room));

    // An admin-created group: its master-only master sees it (was: an empty list).
    let r = server
        .http(Some(&w.acme_key))
        .post(
            "/v1/admin/groups",
            json!({ "name": "Admin made", "masters": [w.bob.id], "members": [w.alice.id] }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    let made = RoomId(r.body["room"]["id"].as_str().expect("id").to_owned());
    let pushed = push_until(&mut bob, |f| matches!(f, ServerFrame::Joined { .. })).await;
    assert!(
        matches!(pushed, ServerFrame::Joined { room: l } if l.id == made && l.role == Role::MasterOnly)
    );
    let line = list(&mut bob)
        .await
        .into_iter()
        .find(|r| r.id == made)
        .expect("listed");
    assert_eq!(line.role, Role::MasterOnly);
    // G8 for everyone else: dave finds neither.
    let mut dave = server.connect(&w.dave.token, Encoding::MsgPack).await;
    assert!(list(&mut dave).await.is_empty());
    assert!(search_rooms(&mut dave, "vendor").await.is_empty());
    assert!(search_rooms(&mut dave, "admin").await.is_empty());
}

/// G3, G16: an admin creates a group for the company; a master or the owner's admin deletes it,
/// for everyone at once; its data is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g3_g16_admin_creates_master_deletes() {
    let server = Server::start().await;
    let w = world(&server).await;
    let acme = server.http(Some(&w.acme_key));
    let r = acme
        .post(
            "/v1/admin/groups",
            json!({ "name": "By admin", "masters": [w.bob.id], "members": [w.bob.id, w.carol.id, w.dave.id] }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    let room = RoomId(r.body["room"]["id"].as_str().expect("id").to_owned());
    assert_eq!(r.body["room"]["created_by"], "#admin@acme.example");
    assert_eq!(r.body["room"]["owner_company"], "acme.example");
    let r = acme
        .post(
            "/v1/admin/groups",
            json!({ "name": "x", "masters": [w.erin.id] }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 403);
    assert_eq!(r.body["error"]["code"], "line_user_not_allowed");

    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;
    let mut bob = server.connect(&w.bob.token, Encoding::Json).await;
    post_ok(&mut bob, &room, "m", "soon gone").await;
    // A member who is not a master cannot delete.
    let r = carol
        .request(ClientFrame::DeleteGroup {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::Forbidden);
    let r = bob
        .request(ClientFrame::DeleteGroup {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Ok { .. }), "{r:?}");
    match push_until(&mut carol, |f| matches!(f, ServerFrame::RoomDeleted { .. })).await {
        ServerFrame::RoomDeleted { room: r } => assert_eq!(r, room),
        _ => unreachable!(),
    }
    for f in [history(&room), post(&room, "x", "x")] {
        let r = carol.request(f).await.expect("reply");
        assert_eq!(error_code(&r), ErrorCode::NotFound);
    }
    // Admin deletion of an owned group.
    let r = acme
        .post(
            "/v1/admin/groups",
            json!({ "name": "Second", "masters": [w.alice.id] }),
        )
        .await
        .expect("http");
    let second = r.body["room"]["id"].as_str().expect("id").to_owned();
    let r = server
        .http(Some(&w.globex_key))
        .delete(&format!("/v1/admin/groups/{second}"))
        .await
        .expect("http");
    assert_eq!(r.status, 404, "not globex's group");
    let r = acme
        .delete(&format!("/v1/admin/groups/{second}"))
        .await
        .expect("http");
    assert_eq!(r.status, 204);
    let r = acme
        .get(&format!("/v1/admin/groups/{second}"))
        .await
        .expect("http");
    assert_eq!(r.status, 404);
}

/// G14: masters get, rotate and revoke an invitation link; a permitted WORKS user joins by it;
/// LINE users and users without permission are refused; a newcomer signs up and joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g14_invitation_links() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Open door", &[]).await;
    subscribe(&mut alice, &room, None).await;
    let (none, _) = invite(
        &mut alice,
        ClientFrame::GetInvite {
            id: 0,
            room: room.clone(),
        },
    )
    .await;
    assert!(none.is_none());
    let (token, url) = invite(
        &mut alice,
        ClientFrame::CreateInvite {
            id: 0,
            room: room.clone(),
            expires_in_secs: None,
        },
    )
    .await;
    let token = token.expect("token");
    assert!(url.expect("url").ends_with(&format!("/v1/invite/{token}")));
    assert!(token.len() >= 26, "unguessable");

    // A non-master cannot see the link.
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let r = carol
        .request(ClientFrame::GetInvite {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotFound);
    // Carol joins by the link (no contact needed: the master invited).
    let r = carol
        .request(ClientFrame::JoinByInvite {
            id: 0,
            token: token.clone(),
        })
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Changed { .. }), "{r:?}");
    let e = next_event(&mut alice).await;
    assert_eq!(
        e.body,
        EventBody::MembersAdded {
            users: vec![w.carol.id.clone()]
        }
    );
    // LINE users and users without permission get clear errors.
    let mut erin = server.connect(&w.erin.token, Encoding::MsgPack).await;
    let r = erin
        .request(ClientFrame::JoinByInvite {
            id: 0,
            token: token.clone(),
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::LineUserNotAllowed);
    server
        .http(Some(&w.globex_key))
        .patch(
            "/v1/admin/company/settings",
            json!({ "external_permission": "per_member" }),
        )
        .await
        .expect("http");
    // Dave lacks permission now; over HTTP too.
    let r = server
        .http(Some(&w.dave.token))
        .post(&format!("/v1/invite/{token}/join"), json!({}))
        .await
        .expect("http");
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "no_external_permission");

    // The link page shows only the group's name and owner.
    let r = server
        .http(None)
        .get(&format!("/v1/invite/{token}"))
        .await
        .expect("http");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["name"], "Open door");
    assert!(r.body.get("members").is_none());

    // A newcomer signs up: a new company and its first user, then joins.
    let r = server
        .http(None)
        .post(
            &format!("/v1/invite/{token}/signup"),
            json!({ "company": { "id": "initech.example", "name": "Initech" },
                    "user": { "login": "peter", "name": "Peter", "email": "peter@initech.example" } }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    let peter_token = r.body["token"].as_str().expect("token").to_owned();
    assert!(r.body["admin_key"]
        .as_str()
        .expect("key")
        .starts_with("ck_"));
    let mut peter = server.connect(&peter_token, Encoding::Json).await;
    subscribe(&mut peter, &room, None).await;

    // Rotation kills the old token; revocation kills the link.
    let (rotated, _) = invite(
        &mut alice,
        ClientFrame::CreateInvite {
            id: 0,
            room: room.clone(),
            expires_in_secs: Some(3600),
        },
    )
    .await;
    let rotated = rotated.expect("token");
    assert_ne!(rotated, token);
    let r = server
        .http(None)
        .get(&format!("/v1/invite/{token}"))
        .await
        .expect("http");
    assert_eq!(r.status, 404);
    let r = alice
        .request(ClientFrame::RevokeInvite {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Ok { .. }));
    let r = server
        .http(None)
        .get(&format!("/v1/invite/{rotated}"))
        .await
        .expect("http");
    assert_eq!(r.status, 404);
}

/// G15: invitation emails go to the outbox folder when no SMTP server is configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g15_invitation_email_to_the_outbox() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Mail", &[]).await;
    let r = alice
        .request(ClientFrame::SendInvites {
            id: 0,
            room: room.clone(),
            emails: vec!["new@partner.example".into(), "other@partner.example".into()],
        })
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Ok { .. }), "{r:?}");
    let ServerFrame::Invite { token, .. } = alice
        .request(ClientFrame::GetInvite {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("invite")
    else {
        panic!()
    };
    let token = token.expect("a link was made");
    let outbox = server.data_dir.join("outbox");
    let mails: Vec<String> = std::fs::read_dir(&outbox)
        .expect("outbox")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    assert_eq!(mails.len(), 2);
    assert!(mails.iter().any(|m| m.contains("To: new@partner.example")));
    assert!(mails.iter().all(|m| m.contains(&token)));
    let r = alice
        .request(ClientFrame::SendInvites {
            id: 0,
            room,
            emails: vec!["not an address".into()],
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::InvalidArgument);
}

/// G8: search and autocomplete over one's own groups and contacts only; by-id lookups of others'
/// groups answer not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g8_search_and_autocomplete_never_leak() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let secret = group(&mut alice, "Secret Plan", &[&w.carol.id]).await;
    let search = |q: &str| ClientFrame::Search {
        id: 0,
        query: q.into(),
        limit: None,
    };
    let ServerFrame::SearchResults {
        rooms, contacts, ..
    } = alice.request(search("sec")).await.expect("search")
    else {
        panic!()
    };
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].id, secret);
    assert!(contacts.is_empty());
    let ServerFrame::SearchResults { contacts, .. } =
        alice.request(search("CAR")).await.expect("search")
    else {
        panic!()
    };
    assert_eq!(contacts.len(), 1, "case-insensitive prefix on contacts");
    assert_eq!(contacts[0].id, w.carol.id);
    let mut bob = server.connect(&w.bob.token, Encoding::MsgPack).await;
    for q in ["sec", "plan", "secret plan", &secret.0[..6]] {
        let ServerFrame::SearchResults { rooms, .. } =
            bob.request(search(q)).await.expect("search")
        else {
            panic!()
        };
        assert!(rooms.is_empty(), "{q}");
    }
    let r = bob
        .request(ClientFrame::GetRoom {
            id: 0,
            room: secret.clone(),
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotFound);
    // Contacts: users add external users themselves.
    let r = bob
        .request(ClientFrame::AddContact {
            id: 0,
            user: w.dave.id.clone(),
        })
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Ok { .. }));
    let r = bob
        .request(ClientFrame::AddContact {
            id: 0,
            user: w.alice.id.clone(),
        })
        .await
        .expect("reply");
    assert_eq!(
        error_code(&r),
        ErrorCode::InvalidArgument,
        "colleagues need no entry"
    );
    let r = bob
        .request(ClientFrame::AddContact {
            id: 0,
            user: UserId::from("ghost@globex.example"),
        })
        .await
        .expect("reply");
    // The same answer as for someone who exists (no enumeration of accounts); nothing added.
    assert!(matches!(r, ServerFrame::Ok { .. }), "{r:?}");
    let ServerFrame::Contacts { contacts, .. } = bob
        .request(ClientFrame::ListContacts { id: 0 })
        .await
        .expect("contacts")
    else {
        panic!()
    };
    assert_eq!(
        contacts.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![w.dave.id.clone()]
    );
}

/// G19: every life-cycle and membership change is audited; each company involved reads its
/// part, and an uninvolved company reads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g19_audit_per_company() {
    let server = Server::start().await;
    let w = world(&server).await;
    let other = company(&server, "other.example", json!({ "external_chat": true })).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Audited", &[&w.carol.id]).await;
    changed(
        &mut alice,
        ClientFrame::RemoveMember {
            id: 0,
            room: room.clone(),
            user: w.carol.id.clone(),
        },
    )
    .await;
    post_ok(&mut alice, &room, "m", "messages are not audit records").await;
    for key in [&w.acme_key, &w.globex_key] {
        let r = server
            .http(Some(key))
            .get(&format!("/v1/admin/audit?room={room}"))
            .await
            .expect("http");
        assert_eq!(r.status, 200);
        let entries = r.body["entries"].as_array().expect("entries");
        let actions: Vec<&str> = entries
            .iter()
            .map(|e| e["action"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(actions, vec!["member_removed", "created"], "newest first");
        assert_eq!(entries[0]["actor"], w.alice.id.as_str());
        assert!(entries[0]["ts"].as_i64().unwrap_or(0) > 0);
    }
    let r = server
        .http(Some(&other))
        .get("/v1/admin/audit")
        .await
        .expect("http");
    assert_eq!(r.body["entries"], json!([]));
}

/// G20: a company cannot own more groups than its `max_groups`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g20_group_count_limit() {
    let server = Server::start().await;
    let w = world(&server).await;
    server
        .http(Some(&w.acme_key))
        .patch("/v1/admin/company/settings", json!({ "max_groups": 1 }))
        .await
        .expect("http");
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    group(&mut alice, "Only one", &[]).await;
    let r = alice
        .request(ClientFrame::CreateGroup {
            id: 0,
            name: "Two".into(),
            description: String::new(),
            members: vec![],
            masters: vec![],
            add_self_as_member: true,
            features: None,
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::LimitExceeded);
    let r = server
        .http(Some(&w.acme_key))
        .post(
            "/v1/admin/groups",
            json!({ "name": "Two", "masters": [w.alice.id] }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 422);
}

/// G9, G17: a master sets the profile image; its bytes count against the owner company's
/// storage; an upload that would pass the quota is refused and leaves nothing; members download
/// it, others cannot; deleting the group frees the space and the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g17_profile_image_and_storage_quota() {
    let server = Server::start().await;
    let w = world(&server).await;
    let acme = server.http(Some(&w.acme_key));
    acme.patch(
        "/v1/admin/company/settings",
        json!({ "shared_storage_quota": 1000 }),
    )
    .await
    .expect("http");
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Pictures", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;
    let path = format!("/v1/rooms/{room}/image");
    let png: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();

    let r = server
        .http(Some(&w.alice.token))
        .call_raw("PUT", &path, Some(("image/png", png.clone().into())))
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let e = next_event(&mut carol).await;
    assert!(
        matches!(e.body, EventBody::GroupUpdated { image: Some(_), .. }),
        "{e:?}"
    );
    let used = acme.get("/v1/admin/company/storage").await.expect("http");
    assert_eq!(used.body["used"], 300);

    // Members download it; a non-member cannot.
    let r = server
        .http(Some(&w.carol.token))
        .get(&path)
        .await
        .expect("http");
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes.as_ref(), &png[..]);
    assert_eq!(r.content_type.as_deref(), Some("image/png"));
    let r = server
        .http(Some(&w.bob.token))
        .get(&path)
        .await
        .expect("http");
    assert_eq!(r.status, 404);
    // Only masters set it.
    let r = server
        .http(Some(&w.carol.token))
        .call_raw("PUT", &path, Some(("image/png", png.clone().into())))
        .await
        .expect("http");
    assert_eq!(r.status, 403);

    // 300 used + 900 > 1000: refused, nothing stored, nothing charged.
    let big = vec![7u8; 900];
    let files_before = std::fs::read_dir(server.data_dir.join("files"))
        .expect("files")
        .count();
    let r = server
        .http(Some(&w.alice.token))
        .call_raw("PUT", &path, Some(("image/png", big.into())))
        .await
        .expect("http");
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "quota_exceeded");
    let used = acme.get("/v1/admin/company/storage").await.expect("http");
    assert_eq!(used.body["used"], 300);
    let files_after = std::fs::read_dir(server.data_dir.join("files"))
        .expect("files")
        .count();
    assert_eq!(files_before, files_after);

    // Replacing frees the old image's bytes.
    let r = server
        .http(Some(&w.alice.token))
        .call_raw("PUT", &path, Some(("image/webp", vec![1u8; 500].into())))
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let used = acme.get("/v1/admin/company/storage").await.expect("http");
    assert_eq!(used.body["used"], 500);

    // Deleting the group frees everything (G16, G17).
    let r = alice
        .request(ClientFrame::DeleteGroup {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Ok { .. }));
    let used = acme.get("/v1/admin/company/storage").await.expect("http");
    assert_eq!(used.body["used"], 0);
    // The bytes leave the disk too (removed just after the delete is committed).
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = std::fs::read_dir(server.data_dir.join("files"))
            .expect("files")
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().to_string_lossy().starts_with("f_"))
                    .unwrap_or(false)
            })
            .count();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0);
}

/// G15: with SMTP configured, invitation emails go through a real SMTP server (aiosmtpd on
/// loopback) carrying the group's link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g15_invitation_email_through_smtp() {
    let smtp = SmtpServer::start().await;
    let server = Server::start_with_config(&format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"crossroom <noreply@crossroom.test>\"\n",
        smtp.port
    ))
    .await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "By mail", &[]).await;
    let r = alice
        .request(ClientFrame::SendInvites {
            id: 0,
            room: room.clone(),
            emails: vec!["guest@partner.example".into()],
        })
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Ok { .. }), "{r:?}");
    let ServerFrame::Invite { token, .. } = alice
        .request(ClientFrame::GetInvite { id: 0, room })
        .await
        .expect("invite")
    else {
        panic!()
    };
    let token = token.expect("token");
    let mut mails = Vec::new();
    for _ in 0..50 {
        mails = smtp.messages();
        if !mails.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("guest@partner.example"));
    assert!(mails[0].contains(&format!("/v1/invite/{token}")));
    assert!(mails[0].contains("By mail"));
    assert!(
        !server.data_dir.join("outbox").exists(),
        "nothing in the outbox"
    );
}

/// G14: a member a master removes cannot come straight back with the group's link; a master
/// adding them again, or a new link, lets them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g14_a_removed_member_cannot_rejoin_with_the_same_link() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Gated", &[]).await;
    let link = |expires_in_secs| ClientFrame::CreateInvite {
        id: 0,
        room: room.clone(),
        expires_in_secs,
    };
    let (token, _) = invite(&mut alice, link(None)).await;
    let token = token.expect("token");
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let join = |token: &str| ClientFrame::JoinByInvite {
        id: 0,
        token: token.to_owned(),
    };
    let r = carol.request(join(&token)).await.expect("reply");
    assert!(matches!(r, ServerFrame::Changed { .. }), "{r:?}");
    remove_ok(&mut alice, &room, &w.carol.id).await;
    let r = carol.request(join(&token)).await.expect("reply");
    assert_eq!(
        error_code(&r),
        ErrorCode::Forbidden,
        "barred from this link"
    );
    // A master adds her again: the bar is lifted (and she is a member).
    let r = alice
        .request(ClientFrame::AddMembers {
            id: 0,
            room: room.clone(),
            users: vec![w.carol.id.clone()],
        })
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Changed { .. }), "{r:?}");
    remove_ok(&mut alice, &room, &w.carol.id).await;
    let r = carol.request(join(&token)).await.expect("reply");
    assert_eq!(error_code(&r), ErrorCode::Forbidden, "barred again");
    // A new link bars nobody.
    let (fresh, _) = invite(&mut alice, link(None)).await;
    let r = carol
        .request(join(&fresh.expect("token")))
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Changed { .. }), "{r:?}");
}

/// G13 repaired: a member left without external permission by a revocation that never ran (the
/// directory changed behind the server's back, as a node dying half-way would leave it) is found
/// by the group's periodic reconciliation and removed with reason `policy`, and the repair is
/// counted (`crossroom_policy_repairs_total`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g13_reconciliation_removes_a_member_left_without_permission() {
    let server = Server::start_with_config("[limits]\nroom_idle_secs = 1\n").await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Repaired", &[&w.carol.id]).await;
    subscribe(&mut alice, &room, None).await;
    let before = metric(&scrape(&server).await, "crossroom_policy_repairs_total");
    // Behind the server's back: carol is disabled in the database, and nothing revokes.
    let db = rusqlite::Connection::open(server.data_dir.join("crossroom.db")).expect("db");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    db.execute(
        "UPDATE users SET active = 0 WHERE id = ?1",
        [w.carol.id.as_str()],
    )
    .expect("update");
    let removed = loop {
        let e = next_event(&mut alice).await;
        if let EventBody::MemberRemoved { user, reason } = e.body {
            break (user, reason);
        }
    };
    assert_eq!(removed, (w.carol.id.clone(), RemovalReason::Policy));
    let after = metric(&scrape(&server).await, "crossroom_policy_repairs_total");
    assert_eq!(after - before, 1.0, "one repair counted");
}

/// G14: an invitation link lasts 1 s to a year; a longer (or zero) lifetime is refused, not
/// silently cut to a year.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g14_an_invitation_expiry_past_a_year_is_refused() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Links", &[&w.carol.id]).await;
    let create = |secs: u64| ClientFrame::CreateInvite {
        id: 0,
        room: room.clone(),
        expires_in_secs: Some(secs),
    };
    for secs in [0, 365 * 86_400 + 1, u64::MAX] {
        let r = alice.request(create(secs)).await.expect("reply");
        assert_eq!(error_code(&r), ErrorCode::InvalidArgument, "{secs}: {r:?}");
    }
    let year = 365 * 86_400;
    match alice.request(create(year)).await.expect("reply") {
        ServerFrame::Invite { expires_at, .. } => {
            let now = crossroom::clock::now_secs();
            let at = expires_at.expect("expires");
            assert!(
                (now + year as i64 - 60..=now + year as i64 + 60).contains(&at),
                "{at}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// `get_room` names everyone in the group — display name, company, kind — so that a client
/// shows people, not ids; a user the directory forgot is left out.
#[tokio::test]
async fn get_room_names_its_members_and_masters() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::Json).await;
    let room = group(&mut alice, "Named", &[&w.carol.id, &w.bob.id]).await;
    let r = server
        .http(Some(&w.acme_key))
        .delete(&format!("/v1/admin/users/{}", w.bob.id))
        .await
        .expect("http");
    assert_eq!(r.status, 204);
    let ServerFrame::Room { room: info, .. } = alice
        .request(ClientFrame::GetRoom {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("get_room")
    else {
        panic!("expected room")
    };
    let carol = info.people.get(&w.carol.id).expect("carol is named");
    assert_eq!(carol.company.as_str(), "globex.example");
    assert_eq!(carol.name, "carol");
    assert!(info.people.contains_key(&w.alice.id));
    assert!(
        !info.people.contains_key(&w.bob.id),
        "a deleted user is left out"
    );
}
