//! Finding groups and ending them: search and autocomplete that never leak (G8), groups a master
//! manages without being a member (G8, G10), admin creation and master deletion (G3, G16).

use super::*;

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
    assert_eq!(
        carol.delete_group(&room).await.refused(),
        ErrorCode::Forbidden
    );
    bob.delete_group(&room).await.expect("delete_group");
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
    assert_eq!(bob.get_room(&secret).await.refused(), ErrorCode::NotFound);
    // Contacts: users add external users themselves.
    bob.add_contact(&w.dave.id).await.expect("add_contact");
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
    let contacts = bob.list_contacts().await.expect("list_contacts");
    assert_eq!(
        contacts.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![w.dave.id.clone()]
    );
}
