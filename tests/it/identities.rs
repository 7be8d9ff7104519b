//! Identities and the directory as it is now (A2, D5, G13): a session decides with the user's
//! current record, not the one it authenticated with; a user deleted while an admission of
//! theirs is in flight does not stay in the group.

use crate::harness::*;
use crossroom_protocol::{ClientFrame, Encoding, ErrorCode, RoomId, ServerFrame, UserId};
use serde_json::json;
use std::time::Duration;

/// D5: una's session outlives the withdrawal of her external permission (per member): the same
/// session may create neither an external group nor a general room with an external user — it
/// once answered `room_created` with una in it (decided on the user cached at authentication).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_a_session_creates_with_the_directory_as_it_is_now() {
    let server = Server::start().await;
    let w = world(&server).await;
    let acme = per_member(&server, &w).await;
    let una = user_with(
        &acme,
        json!({ "login": "una", "name": "Una", "external_permission": true }),
    )
    .await;
    contact(&server, &w.acme_key, &una.id, &w.carol.id).await;
    let mut session = server.connect(&una.token, Encoding::MsgPack).await;
    let before = create(&mut session, &w.carol.id, true).await;
    assert!(
        matches!(before, ServerFrame::RoomCreated { .. }),
        "{before:?}"
    );

    let r = acme
        .patch(
            &format!("/v1/admin/users/{}", una.id),
            json!({ "external_permission": false }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let group = create(&mut session, &w.carol.id, true).await;
    assert_eq!(
        error_code(&group),
        ErrorCode::NoExternalPermission,
        "{group:?}"
    );
    // A general room: carol may not be added by her any more, so nobody is left to join it.
    let room = create(&mut session, &w.carol.id, false).await;
    assert_eq!(error_code(&room), ErrorCode::InvalidArgument, "{room:?}");
}

/// acme grants external permission per member; its admin.
async fn per_member(server: &Server, w: &World) -> crossroom_protocol::client::Http {
    let acme = server.http(Some(&w.acme_key));
    set_settings(&acme, json!({ "external_permission": "per_member" })).await;
    acme
}

/// `create_group` (or `create_room`) by the session's user with `member`.
async fn create(
    c: &mut crossroom_protocol::client::Client,
    member: &UserId,
    group: bool,
) -> ServerFrame {
    let frame = if group {
        ClientFrame::CreateGroup {
            id: 0,
            name: "Una's".into(),
            description: String::new(),
            members: vec![member.clone()],
            masters: vec![],
            add_self_as_member: true,
            features: None,
        }
    } else {
        ClientFrame::CreateRoom {
            id: 0,
            name: "Una's room".into(),
            members: vec![member.clone()],
        }
    };
    c.request(frame).await.expect("reply")
}

/// G13, A2: `add_members` of a user racing that user's deletion (`DELETE /v1/admin/users`), in
/// counted trials: once both are answered and the re-checks have run, the deleted user is in the
/// group in none of them. (The re-check after an admission, the reconciliation and the removal
/// by policy skipped users the directory no longer has, so an add that committed after the
/// deletion's sweep left the deleted id in the group for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g13_a2_an_add_racing_a_deletion_never_leaves_the_deleted_user_in() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Racing", &[&w.carol.id]).await;
    let globex = server.http(Some(&w.globex_key));
    let trials = 300;
    let (mut admitted, mut left_in) = (0, Vec::new());
    for i in 0..trials {
        let x = user(&server, &w.globex_key, &format!("x{i}"), "works").await;
        contact(&server, &w.acme_key, &w.alice.id, &x.id).await;
        let deletion = {
            let (globex, path) = (globex.clone(), format!("/v1/admin/users/{}", x.id));
            tokio::spawn(async move { globex.delete(&path).await })
        };
        // Staggered by the trial, so that the add lands before, during and after the deletion.
        tokio::time::sleep(Duration::from_micros(100 * (i % 40) as u64)).await;
        let add = alice
            .send(&mut ClientFrame::AddMembers {
                id: 0,
                room: room.clone(),
                users: vec![x.id.clone()],
            })
            .await
            .expect("send");
        let r = deletion.await.expect("joined").expect("http");
        assert_eq!(r.status, 204, "{:?}", r.body);
        let answer = alice
            .reply_to(add, Duration::from_secs(10))
            .await
            .expect("the add is answered");
        if matches!(answer, ServerFrame::Changed { .. }) {
            admitted += 1;
        }
        if still_member(&mut alice, &room, &x.id).await {
            left_in.push(x.id);
        }
    }
    eprintln!("{trials} trials: the add admitted {admitted} times; left in: {left_in:?}");
    assert!(
        left_in.is_empty(),
        "deleted users left in the group: {left_in:?}"
    );
}

/// Whether `user` is still a member of `room` once the re-checks had their time (up to 5 s).
async fn still_member(
    c: &mut crossroom_protocol::client::Client,
    room: &RoomId,
    user: &UserId,
) -> bool {
    for _ in 0..50 {
        let r = c
            .request(ClientFrame::GetRoom {
                id: 0,
                room: room.clone(),
            })
            .await
            .expect("get_room");
        match r {
            ServerFrame::Room { room, .. } if !room.members.contains(user) => return false,
            ServerFrame::Room { .. } => {}
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// A2: a deleted user leaves every general room too, with a `member_removed` (reason `policy`)
/// that the others see live — the removal line of D4 — and the room's members no longer name
/// them. (Deleting a user once removed them from external groups only: the id stayed in general
/// rooms, where the next holder of the login inherited the room and its whole history.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2_a_deleted_user_leaves_general_rooms_too() {
    use crossroom_protocol::{EventBody, RemovalReason};
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = match alice
        .request(ClientFrame::CreateRoom {
            id: 0,
            name: "Shared".into(),
            members: vec![w.carol.id.clone()],
        })
        .await
        .expect("reply")
    {
        ServerFrame::RoomCreated { room, .. } => room.id,
        other => panic!("{other:?}"),
    };
    subscribe(&mut alice, &room, None).await;
    post_ok(&mut alice, &room, "g1", "before").await;
    let r = server
        .http(Some(&w.globex_key))
        .delete(&format!("/v1/admin/users/{}", w.carol.id))
        .await
        .expect("http");
    assert_eq!(r.status, 204, "{:?}", r.body);
    loop {
        let e = next_event(&mut alice).await;
        if let EventBody::MemberRemoved { user, reason } = e.body {
            assert_eq!((user, reason), (w.carol.id.clone(), RemovalReason::Policy));
            break;
        }
    }
    assert!(!still_member(&mut alice, &room, &w.carol.id).await);
}

/// A2, G16: `DELETE /v1/admin/companies/{id}` racing one of its users' `create_group` with an
/// external member, in counted trials (100; the company owns 5 groups, so the deletion takes a
/// while; the creation is sent 0–9 ms after it starts): once both are answered, the external
/// member is in no group of the deleted company. (The deletion listed the company's groups once,
/// first, and a group created after the list survived — alive for its external member, and
/// inherited by whoever got the id next.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2_g16_a_group_created_during_its_companys_deletion_does_not_survive_it() {
    let server = Server::start().await;
    deletion_races_creations(&server, &server, 100).await;
}

/// The same across two nodes on one Redis: the deletion through one, the creations through the
/// other (there the creation checks its company's count after its own write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2_g16_across_nodes_a_group_created_during_its_companys_deletion_does_not_survive_it() {
    let redis = Redis::start(&[]).await;
    let a = Server::start_node(&[redis.url()]).await;
    let b = Server::start_node(&[redis.url()]).await;
    deletion_races_creations(&a, &b, 40).await;
}

/// The same on a three-master Redis Cluster (the company's keys and its groups' keys on
/// different shards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2_g16_on_a_redis_cluster_a_group_created_during_its_companys_deletion_does_not_survive_it(
) {
    let cluster = RedisCluster::start(3).await;
    let a = Server::start_node(&cluster.urls()).await;
    let b = Server::start_node(&cluster.urls()).await;
    deletion_races_creations(&a, &b, 20).await;
}

/// Trials of a company's deletion through `server` racing its user's creation through `other`.
async fn deletion_races_creations(server: &Server, other: &Server, trials: usize) {
    let w = world(server).await;
    let mut carol = other.connect(&w.carol.token, Encoding::MsgPack).await;
    let (mut created, mut survivors) = (0, Vec::new());
    for i in 0..trials {
        let id = format!("gone{i}.example");
        let key = company(server, &id, json!({ "external_chat": true })).await;
        let u = user(server, &key, "u", "works").await;
        contact(server, &key, &u.id, &w.carol.id).await;
        let mut session = other.connect(&u.token, Encoding::MsgPack).await;
        for g in 0..5 {
            group(&mut session, &format!("{id} {g}"), &[&w.carol.id]).await;
        }
        let deletion = {
            let (op, path) = (server.operator(), format!("/v1/admin/companies/{id}"));
            tokio::spawn(async move { op.delete(&path).await })
        };
        tokio::time::sleep(Duration::from_millis((i % 10) as u64)).await;
        let raced = session
            .request(ClientFrame::CreateGroup {
                id: 0,
                name: format!("{id} raced"),
                description: String::new(),
                members: vec![w.carol.id.clone()],
                masters: vec![],
                add_self_as_member: true,
                features: None,
            })
            .await;
        if matches!(raced, Ok(ServerFrame::RoomCreated { .. })) {
            created += 1;
        }
        let r = deletion.await.expect("joined").expect("http");
        assert_eq!(r.status, 204, "{:?}", r.body);
        let rooms = match carol
            .request(ClientFrame::ListRooms { id: 0 })
            .await
            .expect("rooms")
        {
            ServerFrame::Rooms { rooms, .. } => rooms,
            other => panic!("{other:?}"),
        };
        for summary in rooms {
            let r = carol
                .request(ClientFrame::GetRoom {
                    id: 0,
                    room: summary.id.clone(),
                })
                .await
                .expect("get_room");
            if let ServerFrame::Room { room, .. } = r {
                if room.owner_company.as_str() == id {
                    survivors.push(room.name);
                }
            }
        }
    }
    eprintln!("{trials} trials: the raced creation answered room_created {created} times; survivors: {survivors:?}");
    assert!(
        survivors.is_empty(),
        "groups that outlived their company: {survivors:?}"
    );
}

/// D5, G13: an admin withdrawing a user's external permission racing that user's own
/// `create_group` with an external member, in counted trials (the creation sent 0–1.8 ms after
/// the withdrawal starts): once both are answered, the user is in no external group — the
/// creation was refused (decided on the record as it is now), or it was created and the
/// creation's own re-check or the withdrawal's reconciliation took the user out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_g13_a_creation_racing_a_withdrawal_never_keeps_the_withdrawn_creator() {
    let server = Server::start().await;
    let w = world(&server).await;
    let acme = per_member(&server, &w).await;
    let trials = 100;
    let (mut created, mut kept) = (0, Vec::new());
    for i in 0..trials {
        let una = user_with(
            &acme,
            json!({ "login": format!("una{i}"), "name": "Una", "external_permission": true }),
        )
        .await;
        contact(&server, &w.acme_key, &una.id, &w.carol.id).await;
        let mut session = server.connect(&una.token, Encoding::MsgPack).await;
        let withdrawal = {
            let (acme, path) = (acme.clone(), format!("/v1/admin/users/{}", una.id));
            tokio::spawn(async move {
                acme.patch(&path, json!({ "external_permission": false }))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_micros(200 * (i % 10) as u64)).await;
        if matches!(
            create(&mut session, &w.carol.id, true).await,
            ServerFrame::RoomCreated { .. }
        ) {
            created += 1;
        }
        let r = withdrawal.await.expect("joined").expect("http");
        assert_eq!(r.status, 200, "{:?}", r.body);
        match session
            .request(ClientFrame::ListRooms { id: 0 })
            .await
            .expect("rooms")
        {
            ServerFrame::Rooms { rooms, .. } => {
                if rooms
                    .iter()
                    .any(|r| r.kind == crossroom_protocol::RoomKind::Group)
                {
                    kept.push(una.id);
                }
            }
            other => panic!("{other:?}"),
        }
    }
    eprintln!("{trials} trials: created {created} times; kept in a group: {kept:?}");
    assert!(kept.is_empty(), "withdrawn users kept in a group: {kept:?}");
}
