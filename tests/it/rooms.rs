//! Creating rooms over the WebSocket: external groups (G1, G4–G8) and general rooms (R1).

use crate::harness::*;
use crossroom_protocol::{ClientFrame, Encoding, ErrorCode, RoomKind, ServerFrame, UserId};
use serde_json::json;
use std::time::Duration;

fn create_group(
    name: &str,
    members: &[&UserId],
    masters: &[&UserId],
    add_self: bool,
) -> ClientFrame {
    ClientFrame::CreateGroup {
        id: 0,
        name: name.into(),
        description: String::new(),
        members: members.iter().map(|u| (*u).clone()).collect(),
        masters: masters.iter().map(|u| (*u).clone()).collect(),
        add_self_as_member: add_self,
        features: None,
    }
}

/// G1: the creator is master, and member unless they opt out; every member's live sessions are
/// told (`joined`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g1_create_from_contacts_makes_the_creator_master() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut carol = server.connect(&w.carol.token, Encoding::Json).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let r = alice
        .request(create_group(
            " Launch ",
            &[&w.bob.id, &w.carol.id],
            &[],
            true,
        ))
        .await
        .expect("reply");
    let ServerFrame::RoomCreated { room, left_out, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(room.kind, RoomKind::Group);
    assert_eq!(room.name, "Launch");
    assert_eq!(room.masters, vec![w.alice.id.clone()]);
    assert_eq!(
        room.members,
        vec![w.alice.id.clone(), w.bob.id.clone(), w.carol.id.clone()]
    );
    assert_eq!(room.owner_company.as_str(), "acme.example");
    assert_eq!(room.head, 1);
    assert!(left_out.is_empty());
    match carol
        .next_push(Duration::from_secs(5))
        .await
        .expect("joined")
    {
        ServerFrame::Joined { room: s } => assert_eq!(s.id, room.id),
        other => panic!("{other:?}"),
    }
    // Master but not member: no room messages for alice.
    let r = alice
        .request(create_group("Hands off", &[&w.carol.id], &[], false))
        .await
        .expect("reply");
    let ServerFrame::RoomCreated { room, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(room.members, vec![w.carol.id.clone()]);
    assert_eq!(room.masters, vec![w.alice.id.clone()]);
    let r = alice
        .request(post(&room.id, "x", "x"))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotMember);
}

/// G4: name and description limits, in characters; nothing stored on refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g4_name_and_description_limits() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    for name in ["", "   ", &"é".repeat(101)] {
        let r = alice
            .request(create_group(name, &[], &[], true))
            .await
            .expect("reply");
        assert_eq!(error_code(&r), ErrorCode::InvalidArgument, "{name:?}");
    }
    let r = alice
        .request(ClientFrame::CreateGroup {
            id: 0,
            name: "ok".into(),
            description: "字".repeat(301),
            members: vec![],
            masters: vec![],
            add_self_as_member: true,
            features: None,
        })
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::InvalidArgument);
    let r = alice
        .request(create_group(&"é".repeat(100), &[], &[], true))
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::RoomCreated { .. }));
    let rooms = alice.list_rooms().await.expect("list_rooms");
    assert_eq!(rooms.len(), 1, "refused creations stored nothing");
}

/// G5: members without external permission are left out and listed; a master without it is an
/// error. G6: LINE users are refused. G7: other companies' users must be contacts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g5_g6_g7_who_may_be_added() {
    let server = Server::start().await;
    let w = world(&server).await;
    // Globex switches to per-member permission and grants only carol.
    let globex = server.http(Some(&w.globex_key));
    set_settings(&globex, json!({ "external_permission": "per_member" })).await;
    let r = globex
        .patch(
            &format!("/v1/admin/users/{}", w.carol.id),
            json!({ "external_permission": true }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);

    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let r = alice
        .request(create_group("G5", &[&w.carol.id, &w.dave.id], &[], true))
        .await
        .expect("reply");
    let ServerFrame::RoomCreated { room, left_out, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(room.members, vec![w.alice.id.clone(), w.carol.id.clone()]);
    assert_eq!(left_out.len(), 1);
    assert_eq!(left_out[0].user, w.dave.id);
    assert_eq!(left_out[0].reason, ErrorCode::NoExternalPermission);

    let r = alice
        .request(create_group("G5m", &[], &[&w.dave.id], true))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NoExternalPermission);

    contact(&server, &w.acme_key, &w.alice.id, &w.erin.id).await;
    let r = alice
        .request(create_group("G6", &[&w.erin.id], &[], true))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::LineUserNotAllowed);

    let mut bob = server.connect(&w.bob.token, Encoding::MsgPack).await;
    let r = bob
        .request(create_group("G7", &[&w.carol.id], &[], true))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotInContacts);
    let r = bob
        .request(create_group("G7 colleagues", &[&w.alice.id], &[], true))
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::RoomCreated { .. }), "{r:?}");
}

/// G1: a user whose company has external chat off, or lets only admins create groups, cannot
/// create one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g1_creation_needs_permission_and_the_company_setting() {
    let server = Server::start().await;
    let w = world(&server).await;
    let acme = server.http(Some(&w.acme_key));
    set_settings(&acme, json!({ "group_creation": "admins_only" })).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let r = alice
        .request(create_group("x", &[], &[], true))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::GroupCreationNotAllowed);
    set_settings(
        &acme,
        json!({ "group_creation": "also_members", "external_chat": false }),
    )
    .await;
    let r = alice
        .request(create_group("x", &[], &[], true))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NoExternalPermission);
}

/// G8: a non-member asking for a group by id gets "not found", on every path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g8_non_members_get_not_found() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Private", &[&w.carol.id]).await;
    let mut bob = server.connect(&w.bob.token, Encoding::Json).await;
    let attempts = [
        ClientFrame::Subscribe {
            id: 0,
            room: room.clone(),
            since: None,
            presence: false,
        },
        post(&room, "x", "x"),
        ClientFrame::History {
            id: 0,
            room: room.clone(),
            before: None,
            limit: None,
        },
        ClientFrame::MarkRead {
            id: 0,
            room: room.clone(),
            seq: 1,
        },
    ];
    for f in attempts {
        let r = bob.request(f.clone()).await.expect("reply");
        assert_eq!(error_code(&r), ErrorCode::NotFound, "{f:?}");
    }
    let rooms = bob.list_rooms().await.expect("list_rooms");
    assert!(rooms.is_empty());
    // Same answer as for a room that does not exist at all.
    let r = bob
        .request(post(&"r_doesnotexistdoesnotexist22".into(), "x", "x"))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotFound);
}

/// R1: a general room takes colleagues, permitted external WORKS users and LINE users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_general_room_with_a_line_user() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let Created { room, left_out, .. } = alice
        .create_room("chat", &[&w.bob.id, &w.erin.id, &w.carol.id])
        .await
        .expect("create_room");
    assert_eq!(room.kind, RoomKind::Room);
    assert!(room.masters.is_empty());
    assert_eq!(room.members.len(), 4);
    assert!(left_out.is_empty());
    let mut erin = server.connect(&w.erin.token, Encoding::Json).await;
    subscribe(&mut erin, &room.id, None).await;
    let seq = post_ok(&mut alice, &room.id, "hi", "hi erin").await;
    assert_eq!(next_event(&mut erin).await.seq, seq);
    post_ok(&mut erin, &room.id, "hey", "hi alice").await;
}
