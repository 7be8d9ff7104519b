//! Who is in a group and how they leave it: removal (G12, D4), admin revocation and
//! reconciliation (G13), masters and leaving (G10, G11), converting a general room (G2), and who
//! `get_room` names.

use super::*;

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
    let rooms = carol1.list_rooms().await.expect("list_rooms");
    assert!(rooms.iter().all(|x| x.id != room), "not in lists");
    let (rooms, _) = carol1.search("rem", None).await.expect("search");
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
    set_settings(&globex, json!({ "external_permission": "per_member" })).await;
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
    set_active(&server.http(Some(&w.acme_key)), &w.bob.id, false).await;
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
    set_settings(
        &server.http(Some(&w.acme_key)),
        json!({ "external_chat": false }),
    )
    .await;
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

/// G9, G10, G11: masters add and remove members and masters; the last master stays; members
/// cannot leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g10_g11_masters_and_leaving() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Masters", &[&w.bob.id]).await;
    assert_eq!(
        alice.remove_member(&room, &w.alice.id).await.refused(),
        ErrorCode::LastMaster
    );
    assert_eq!(
        alice.remove_master(&room, &w.alice.id).await.refused(),
        ErrorCode::LastMaster
    );
    let mut bob = server.connect(&w.bob.token, Encoding::MsgPack).await;
    assert_eq!(bob.leave(&room).await.refused(), ErrorCode::CannotLeave);
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
    let info = bob.get_room(&room).await.expect("get_room");
    assert_eq!(info.masters, vec![w.bob.id.clone()]);
    assert_eq!(info.members, vec![w.bob.id.clone(), w.carol.id.clone()]);
    // Bob has no contacts: adding an external user fails with not_in_contacts (G7).
    assert_eq!(
        bob.add_members(&room, &[&w.dave.id]).await.refused(),
        ErrorCode::NotInContacts
    );
    // G6 on add: an explicit add of a LINE user is an error.
    contact(&server, &w.acme_key, &w.bob.id, &w.erin.id).await;
    assert_eq!(
        bob.add_members(&room, &[&w.erin.id]).await.refused(),
        ErrorCode::LineUserNotAllowed
    );
}

/// G2: a general room with an external WORKS user becomes an external group in place: same id,
/// same history; LINE users are left out (and removed); there is no way back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g2_convert_a_general_room_in_place() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let Created { room, .. } = alice
        .create_room("chat", &[&w.carol.id, &w.erin.id])
        .await
        .expect("create_room");
    let room = room.id;
    let said = post_ok(&mut alice, &room, "hi", "hello from the general room").await;
    let mut erin = server.connect(&w.erin.token, Encoding::Json).await;
    subscribe(&mut erin, &room, None).await;

    let Changed { left_out, .. } = alice
        .convert_room(&room, "Now a group")
        .await
        .expect("convert_room");
    assert_eq!(left_out.len(), 1);
    assert_eq!(left_out[0].user, w.erin.id);
    assert_eq!(left_out[0].reason, ErrorCode::LineUserNotAllowed);
    match push_until(&mut erin, |f| matches!(f, ServerFrame::Removed { .. })).await {
        ServerFrame::Removed { reason, .. } => assert_eq!(reason, RemovalReason::Converted),
        _ => unreachable!(),
    }
    let info = alice.get_room(&room).await.expect("get_room");
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
    let info = alice.get_room(&room).await.expect("get_room");
    let carol = info.people.get(&w.carol.id).expect("carol is named");
    assert_eq!(carol.company.as_str(), "globex.example");
    assert_eq!(carol.name, "carol");
    assert!(info.people.contains_key(&w.alice.id));
    assert!(
        !info.people.contains_key(&w.bob.id),
        "a deleted user is left out"
    );
}
