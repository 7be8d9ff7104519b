//! The behaviour every `Store` must show: one function per check, each run on a fresh store of
//! every backend by [`crate::store_suite`] (one test per check and backend, so a failure names
//! both and does not hide the checks after it).

use crossroom::domain::directory::{
    Company, CompanySettings, SettingsPatch, User, UserChange, UserKind,
};
use crossroom::store::{FileRecord, Invite, NewAudit, NewEntry, NewRoom, SharedStore, StoreError};
use crossroom_protocol::{
    CompanyId, ErrorCode, EventBody, Features, LeftOut, RemovalReason, RoomId, RoomKind, UserId,
};

fn user(login: &str, company: &str) -> User {
    User {
        id: UserId(format!("{login}@{company}")),
        company: company.into(),
        name: login.to_uppercase(),
        email: format!("{login}@{company}"),
        kind: UserKind::Works,
        active: true,
        external_granted: false,
        tokens_valid_after: 0,
    }
}

/// A general room `id` of one member, epoch 7.
pub fn general_room(id: &str, member: &UserId) -> NewRoom {
    NewRoom {
        id: RoomId::from(id),
        kind: RoomKind::Room,
        name: id.into(),
        description: String::new(),
        owner_company: "acme.example".into(),
        created_by: member.clone(),
        created_at: 1,
        features: Features::default(),
        masters: vec![],
        members: vec![member.clone()],
        epoch: 7,
        max_owned_groups: None,
    }
}

pub fn message(author: &UserId, cmid: &str, text: &str) -> NewEntry {
    NewEntry {
        author: author.clone(),
        ts: 1_000,
        body: EventBody::Message {
            client_msg_id: cmid.into(),
            text: text.into(),
            attachments: vec![],
            mentions: vec![],
            recalled: false,
        },
    }
}

pub async fn directory(store: &SharedStore) {
    let acme = Company {
        id: "acme.example".into(),
        name: "Acme".into(),
        settings: CompanySettings::default(),
        // Kept by every store (a sign-up's mark).
        self_registered: true,
    };
    store
        .create_company(&acme, "hash-acme")
        .await
        .expect("create company");
    assert!(matches!(
        store.create_company(&acme, "hash-other").await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        store.company(&acme.id).await.expect("read"),
        Some(acme.clone())
    );
    assert_eq!(
        store.company_by_key_hash("hash-acme").await.expect("read"),
        Some(acme.id.clone())
    );
    assert_eq!(store.company_by_key_hash("nope").await.expect("read"), None);
    // A re-issued key: the new hash opens the company, the old one nothing.
    store
        .set_admin_key(&acme.id, "hash-acme-2")
        .await
        .expect("re-issue");
    assert_eq!(
        store.company_by_key_hash("hash-acme").await.expect("read"),
        None
    );
    assert_eq!(
        store
            .company_by_key_hash("hash-acme-2")
            .await
            .expect("read"),
        Some(acme.id.clone())
    );
    assert_eq!(
        store.company(&acme.id).await.expect("read"),
        Some(acme.clone())
    );
    assert!(matches!(
        store.set_admin_key(&"none.example".into(), "h").await,
        Err(StoreError::NotFound(_))
    ));

    // Patches of different fields compose: each is merged into what is stored.
    let patch = |k: &str, v: serde_json::Value| {
        let mut p = SettingsPatch::new();
        p.insert(k.into(), v);
        p
    };
    let (before, after) = store
        .change_settings(&acme.id, &patch("external_chat", true.into()))
        .await
        .expect("settings");
    assert_eq!(before, CompanySettings::default());
    assert!(after.external_chat);
    let (_, after) = store
        .change_settings(&acme.id, &patch("max_groups", 5.into()))
        .await
        .expect("settings");
    let settings = CompanySettings {
        external_chat: true,
        max_groups: 5,
        ..Default::default()
    };
    assert_eq!(after, settings, "the earlier change is kept");
    let got = store
        .company(&acme.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(got.settings, settings);
    assert!(matches!(
        store
            .change_settings(&"none.example".into(), &patch("max_groups", 5.into()))
            .await,
        Err(StoreError::NotFound(_))
    ));

    let alice = user("alice", "acme.example");
    let bob = user("bob", "acme.example");
    store.create_user(&alice).await.expect("user");
    store.create_user(&bob).await.expect("user");
    assert!(matches!(
        store.create_user(&alice).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        store.user(&alice.id).await.expect("read"),
        Some(alice.clone())
    );
    let mut disabled = bob.clone();
    disabled.active = false;
    disabled.external_granted = true;
    disabled.tokens_valid_after = 1234;
    let off = UserChange {
        active: Some(false),
        revoke_tokens_at: Some(1234),
        ..Default::default()
    };
    let grant = UserChange {
        external_granted: Some(true),
        revoke_tokens_at: Some(1000),
        ..Default::default()
    };
    let (was, _) = store.change_user(&bob.id, &off).await.expect("update");
    assert_eq!(was, bob);
    let (_, now) = store.change_user(&bob.id, &grant).await.expect("update");
    assert_eq!(
        now, disabled,
        "both changes kept; the older revocation does not move it back"
    );
    assert!(matches!(
        store.change_user(&"nobody@acme.example".into(), &off).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.user(&bob.id).await.expect("read"),
        Some(disabled.clone())
    );
    let found = store
        .users(&[
            alice.id.clone(),
            "ghost@acme.example".into(),
            bob.id.clone(),
        ])
        .await
        .expect("read");
    assert_eq!(found, vec![alice.clone(), disabled.clone()]);
    assert_eq!(
        store.users_of(&acme.id).await.expect("read"),
        vec![alice.clone(), disabled]
    );

    store
        .add_contact(&alice.id, &bob.id)
        .await
        .expect("contact");
    store
        .add_contact(&alice.id, &bob.id)
        .await
        .expect("contact twice is fine");
    assert_eq!(
        store.contacts(&alice.id).await.expect("read"),
        vec![bob.id.clone()]
    );
    assert!(store.contacts(&bob.id).await.expect("read").is_empty());
    store
        .remove_contact(&alice.id, &bob.id)
        .await
        .expect("remove");
    assert!(store.contacts(&alice.id).await.expect("read").is_empty());

    // A deleted user: gone from the directory, their list, and their contacts' lists.
    store
        .add_contact(&alice.id, &bob.id)
        .await
        .expect("contact");
    store
        .add_contact(&bob.id, &alice.id)
        .await
        .expect("contact");
    store.delete_user(&bob.id).await.expect("delete");
    assert_eq!(store.user(&bob.id).await.expect("read"), None);
    assert_eq!(
        store.users_of(&acme.id).await.expect("read"),
        vec![alice.clone()]
    );
    assert!(store.contacts(&bob.id).await.expect("read").is_empty());
    assert!(store.contacts(&alice.id).await.expect("read").is_empty());
    store
        .delete_user(&bob.id)
        .await
        .expect("deleting twice is fine");
    // A2: a deleted login is never created again.
    assert!(
        matches!(store.create_user(&bob).await, Err(StoreError::Retired(_))),
        "a deleted login stays retired"
    );
    assert_eq!(store.user(&bob.id).await.expect("read"), None);

    store
        .delete_company(&acme.id)
        .await
        .expect("delete company");
    assert_eq!(store.company(&acme.id).await.expect("read"), None);
    // A2: no group is created for a deleted company (its deletion and a creation for it are
    // ordered: what the deletion listed is all the company will ever own).
    let alice_id: UserId = "alice@acme.example".into();
    let mut orphan = new_room("r_after_the_company", &[&alice_id], &[&alice_id]);
    orphan.max_owned_groups = Some(10);
    assert!(
        matches!(
            store.create_room(&orphan).await,
            Err(StoreError::NotFound(_))
        ),
        "a group of a deleted company"
    );
    assert_eq!(store.room(&orphan.id).await.expect("read"), None);
    // A2: nor a deleted company id.
    assert!(
        matches!(
            store.create_company(&acme, "hash-acme-3").await,
            Err(StoreError::Retired(_))
        ),
        "a deleted company id stays retired"
    );
    assert_eq!(store.company(&acme.id).await.expect("read"), None);
    assert_eq!(
        store
            .company_by_key_hash("hash-acme-2")
            .await
            .expect("read"),
        None
    );
    assert!(store.companies().await.expect("read").is_empty());
}

fn new_room(id: &str, members: &[&UserId], masters: &[&UserId]) -> NewRoom {
    NewRoom {
        id: RoomId::from(id),
        kind: RoomKind::Group,
        name: "Launch".into(),
        description: "d".into(),
        owner_company: "acme.example".into(),
        created_by: masters[0].clone(),
        created_at: 500,
        features: Features::default(),
        masters: masters.iter().map(|u| (*u).clone()).collect(),
        members: members.iter().map(|u| (*u).clone()).collect(),
        epoch: 42,
        max_owned_groups: None,
    }
}

pub async fn rooms_and_log(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    let b: UserId = "bob@acme.example".into();
    let m: UserId = "mia@acme.example".into();
    let created = store
        .create_room(&new_room("r_log", &[&a, &b], &[&a, &m]))
        .await
        .expect("create room");
    assert_eq!(created.seq, 1);
    assert_eq!(
        store
            .owned_groups(&"acme.example".into())
            .await
            .expect("read"),
        vec![RoomId::from("r_log")]
    );
    assert!(store
        .owned_groups(&"globex.example".into())
        .await
        .expect("read")
        .is_empty());
    assert_eq!(created.epoch, 42);
    assert!(matches!(created.body, EventBody::Created { .. }));
    assert!(matches!(
        store.create_room(&new_room("r_log", &[&a], &[&a])).await,
        Err(StoreError::AlreadyExists(_))
    ));

    let room = store
        .room(&"r_log".into())
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(room.members, vec![a.clone(), b.clone()]);
    assert_eq!(
        room.masters,
        vec![a.clone(), m.clone()],
        "a master need not be a member (G1)"
    );
    assert_eq!(room.head, 1);
    assert_eq!(room.epoch, 42);
    assert_eq!(store.room(&"r_none".into()).await.expect("read"), None);

    let ticket = store
        .append(
            &room.id,
            vec![message(&a, "m1", "one"), message(&b, "m2", "two")],
            None,
        )
        .await
        .expect("queue");
    let appended = ticket.await.expect("commit");
    assert_eq!(appended.len(), 2);
    assert_eq!(appended[0].event.seq, 2);
    assert_eq!(appended[1].event.seq, 3);
    assert!(!appended[0].duplicate);
    assert_eq!(
        store
            .room(&room.id)
            .await
            .expect("read")
            .expect("exists")
            .head,
        3
    );

    let all = store.read_range(&room.id, 0, 100, 100).await.expect("read");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    let mid = store.read_range(&room.id, 1, 2, 100).await.expect("read");
    assert_eq!(mid.len(), 1);
    assert_eq!(mid[0], appended[0].event);
    let limited = store.read_range(&room.id, 0, 100, 2).await.expect("read");
    assert_eq!(
        limited.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let before = store.read_before(&room.id, 0, 3, 1).await.expect("read");
    assert_eq!(before.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
    let latest = store
        .read_before(&room.id, 0, u64::MAX, 2)
        .await
        .expect("read");
    assert_eq!(latest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);

    let missing = match store
        .append(&"r_none".into(), vec![message(&a, "x", "x")], None)
        .await
    {
        Ok(t) => t.await,
        Err(e) => Err(e),
    };
    assert!(missing.is_err(), "appending to a missing room fails");
}

/// Appends conditional on the state version: messages never move it, anything else does; a
/// decision made on an older version is refused and writes nothing.
pub async fn conditional_appends(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    let b: UserId = "bob@acme.example".into();
    let room: RoomId = "r_cond".into();
    store
        .create_room(&new_room("r_cond", &[&a], &[&a]))
        .await
        .expect("create");
    let v1 = store
        .room(&room)
        .await
        .expect("read")
        .expect("room")
        .version;
    assert_eq!(v1, 1, "the created entry is the first state");
    let append = |entries: Vec<NewEntry>, expect: Option<u64>| {
        let store = store.clone();
        let room = room.clone();
        async move {
            match store.append(&room, entries, expect).await {
                Ok(t) => t.await,
                Err(e) => Err(e),
            }
        }
    };
    // Posts on the current version commit, and do not move it.
    let p = append(vec![message(&a, "c1", "one")], Some(v1))
        .await
        .expect("post");
    assert_eq!(p[0].event.seq, 2);
    assert_eq!(
        store
            .room(&room)
            .await
            .expect("read")
            .expect("room")
            .version,
        v1
    );
    // A change on the current version commits and moves it to its seq.
    let add = NewEntry {
        author: a.clone(),
        ts: 1_000,
        body: EventBody::MembersAdded {
            users: vec![b.clone()],
        },
    };
    let c = append(vec![add.clone()], Some(v1)).await.expect("change");
    let v2 = c[0].event.seq;
    assert_eq!(v2, 3);
    let r = store.room(&room).await.expect("read").expect("room");
    assert_eq!((r.version, r.head), (v2, 3));
    // Decided on the old version: refused, nothing written, for posts and changes alike.
    for entries in [vec![message(&b, "c2", "late")], vec![add]] {
        match append(entries, Some(v1)).await {
            Err(StoreError::Conflict) => {}
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(
        store.room(&room).await.expect("read").expect("room").head,
        3
    );
    // Decided again on the new version: accepted; unconditional appends always are.
    let p = append(vec![message(&b, "c2", "late")], Some(v2))
        .await
        .expect("post");
    assert_eq!(p[0].event.seq, 4);
    append(vec![message(&b, "c3", "free")], None)
        .await
        .expect("post");
}

pub async fn idempotent_appends(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    let b: UserId = "bob@acme.example".into();
    store
        .create_room(&new_room("r_idem", &[&a, &b], &[&a]))
        .await
        .expect("create");
    let room = RoomId::from("r_idem");
    let first = store
        .append(&room, vec![message(&a, "same", "hello")], None)
        .await
        .expect("queue")
        .await
        .expect("commit");
    // Same client id, same author: stored once (D2), even inside one batch.
    let again = store
        .append(
            &room,
            vec![message(&a, "same", "hello"), message(&a, "same", "hello")],
            None,
        )
        .await
        .expect("queue")
        .await
        .expect("commit");
    assert!(again.iter().all(|x| x.duplicate));
    assert!(again.iter().all(|x| x.event == first[0].event));
    // Another author may use the same client id.
    let other = store
        .append(&room, vec![message(&b, "same", "hi")], None)
        .await
        .expect("queue")
        .await
        .expect("commit");
    assert!(!other[0].duplicate);
    assert_eq!(other[0].event.seq, first[0].event.seq + 1);
    let all = store
        .read_range(&room, 0, u64::MAX, 100)
        .await
        .expect("read");
    assert_eq!(all.len(), 3, "created + two messages");
}

pub async fn ordered_pipelined_appends(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    store
        .create_room(&new_room("r_pipe", &[&a], &[&a]))
        .await
        .expect("create");
    let room = RoomId::from("r_pipe");
    // Queue many appends before awaiting any commit: they commit in call order.
    let mut tickets = Vec::new();
    for i in 0..200 {
        let t = store
            .append(
                &room,
                vec![message(&a, &format!("p{i}"), &format!("{i}"))],
                None,
            )
            .await
            .expect("queue");
        tickets.push(t);
    }
    for (i, t) in tickets.into_iter().enumerate() {
        let got = t.await.expect("commit");
        assert_eq!(got[0].event.seq, i as u64 + 2);
        assert_eq!(
            got[0].event.body,
            EventBody::Message {
                client_msg_id: format!("p{i}"),
                text: format!("{i}"),
                attachments: vec![],
                mentions: vec![],
                recalled: false,
            }
        );
    }
}

pub async fn read_state(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    let b: UserId = "bob@acme.example".into();
    let m: UserId = "mia@acme.example".into();
    store
        .create_room(&new_room("r_read", &[&a, &b], &[&a, &m]))
        .await
        .expect("create");
    let room = RoomId::from("r_read");
    for (i, who) in [&a, &b, &b, &a, &b].iter().enumerate() {
        store
            .append(&room, vec![message(who, &format!("r{i}"), "x")], None)
            .await
            .expect("queue")
            .await
            .expect("commit");
    }
    // Seqs: 1 created, 2 a, 3 b, 4 b, 5 a, 6 b.
    let row = |rows: Vec<crossroom::store::MembershipRow>| {
        rows.into_iter()
            .find(|r| r.room == room)
            .expect("member of r_read")
    };
    let alice = row(store.rooms_of(&a).await.expect("read"));
    assert_eq!((alice.head, alice.last_read, alice.unread), (6, 0, 3));
    store.set_read_marker(&room, &a, 4).await.expect("mark");
    let alice = row(store.rooms_of(&a).await.expect("read"));
    assert_eq!((alice.last_read, alice.unread), (4, 1));
    store.set_read_marker(&room, &a, 2).await.expect("mark");
    let alice = row(store.rooms_of(&a).await.expect("read"));
    assert_eq!(alice.last_read, 4, "the read marker never moves back");
    let bob = row(store.rooms_of(&b).await.expect("read"));
    assert_eq!(bob.unread, 2, "own messages are not unread");
    assert!((alice.member, alice.master, bob.member, bob.master) == (true, true, true, false));
    // A master who is not a member has the room in their list, with nothing unread.
    let mia = row(store.rooms_of(&m).await.expect("read"));
    assert_eq!(
        (mia.member, mia.master, mia.unread, mia.last_read),
        (false, true, 0, 0)
    );
    let nobody: UserId = "nobody@acme.example".into();
    assert!(store.rooms_of(&nobody).await.expect("read").is_empty());
}

async fn commit(store: &SharedStore, room: &RoomId, author: &UserId, body: EventBody) -> u64 {
    let got = store
        .append(
            room,
            vec![NewEntry {
                author: author.clone(),
                ts: 2_000,
                body,
            }],
            None,
        )
        .await
        .expect("queue")
        .await
        .expect("commit");
    got[0].event.seq
}

/// What the store keeps of `room` — its record and its items — is the one projection
/// (`domain::projection`) of the room's own log, replayed from its first entry.
async fn assert_projection_of_log(store: &SharedStore, room: &RoomId) {
    use crossroom::domain::features;
    use crossroom::domain::projection::{self, ItemChange};
    use crossroom::domain::records::RoomRecord;
    let stored = store.room(room).await.expect("read").expect("exists");
    let log = store
        .read_range(room, 0, u64::MAX, 100_000)
        .await
        .expect("read");
    assert_eq!(
        log.first().map(|e| e.seq),
        Some(1),
        "the log starts at its creation"
    );
    let mut replayed = RoomRecord::empty(room, stored.owner_company.clone());
    let mut items: std::collections::BTreeMap<u64, crossroom_protocol::Item> = Default::default();
    for event in &log {
        let p = projection::project(&mut replayed, event);
        match p.item {
            ItemChange::None => {}
            ItemChange::Apply(id) => {
                if let Some(it) = features::apply(items.remove(&id), event) {
                    items.insert(id, it);
                }
            }
            ItemChange::Purge(root) => {
                let all: Vec<_> = items.values().cloned().collect();
                for gone in projection::purge(&all, root).0 {
                    items.remove(&gone);
                }
            }
        }
    }
    assert_eq!(
        replayed, stored,
        "the stored room is the projection of its log"
    );
    let mut kept = store.items(room).await.expect("read");
    kept.sort_by_key(|i| i.id());
    // Who read a note is kept beside the log, like read markers, not in it (N1).
    for it in &mut kept {
        if let crossroom_protocol::Item::Note(n) = it {
            n.readers.clear();
        }
    }
    assert_eq!(
        kept,
        items.into_values().collect::<Vec<_>>(),
        "the stored items are the projection of the log"
    );
}

/// Joins, removals, re-joins, masters, settings and an image: after each, the store's room is
/// the projection of its log (D4: a re-joined member sees the log from the re-join on).
pub async fn the_room_is_the_projection_of_its_log(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    let b: UserId = "bob@acme.example".into();
    let c: UserId = "carol@globex.example".into();
    store
        .create_room(&new_room("r_fold", &[&a, &b], &[&a]))
        .await
        .expect("create");
    let room = RoomId::from("r_fold");
    assert_projection_of_log(store, &room).await;
    let steps = vec![
        (
            a.clone(),
            EventBody::MembersAdded {
                users: vec![c.clone()],
            },
        ),
        (c.clone(), message(&c, "c1", "hello").body),
        (
            a.clone(),
            EventBody::MemberRemoved {
                user: c.clone(),
                reason: RemovalReason::Removed,
            },
        ),
        (
            a.clone(),
            EventBody::MembersAdded {
                users: vec![c.clone()],
            },
        ),
        (
            a.clone(),
            EventBody::MastersAdded {
                users: vec![b.clone()],
            },
        ),
        (a.clone(), EventBody::MasterRemoved { user: a.clone() }),
        (
            b.clone(),
            EventBody::GroupUpdated {
                name: Some("Folded".into()),
                description: Some("new".into()),
                features: None,
                image: Some("f_none".into()),
            },
        ),
        (
            b.clone(),
            EventBody::MemberRemoved {
                user: a.clone(),
                reason: RemovalReason::Policy,
            },
        ),
    ];
    for (author, body) in steps {
        commit(store, &room, &author, body).await;
        assert_projection_of_log(store, &room).await;
    }
    let r = store.room(&room).await.expect("read").expect("exists");
    assert_eq!(
        r.sees_from(&c),
        Some(5),
        "carol sees the log from her re-join"
    );
    assert_eq!(r.sees_from(&a), None, "alice is gone");
}

pub async fn projections_and_audit(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    let b: UserId = "bob@acme.example".into();
    let c: UserId = "carol@globex.example".into();
    let e: UserId = "erin@globex.example".into();
    let mut general = new_room("r_proj", &[&a, &b, &e], &[&a]);
    general.kind = RoomKind::Room;
    general.masters.clear();
    store.create_room(&general).await.expect("create");
    let room = RoomId::from("r_proj");
    commit(
        store,
        &room,
        &a,
        EventBody::MembersAdded {
            users: vec![c.clone()],
        },
    )
    .await;
    assert!(
        store.groups_of(&c).await.expect("read").is_empty(),
        "not a group yet"
    );
    commit(
        store,
        &room,
        &a,
        EventBody::Converted {
            name: "Now a group".into(),
            masters: vec![a.clone()],
            members: vec![a.clone(), b.clone(), c.clone()],
            left_out: vec![LeftOut {
                user: e.clone(),
                reason: ErrorCode::LineUserNotAllowed,
            }],
        },
    )
    .await;
    let r = store.room(&room).await.expect("read").expect("exists");
    assert_eq!(r.kind, RoomKind::Group);
    assert_eq!(r.name, "Now a group");
    assert_eq!(r.converted_from, Some(room.clone()));
    assert_eq!(r.members, vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(r.masters, vec![a.clone()]);
    assert_eq!(store.groups_of(&c).await.expect("read"), vec![room.clone()]);
    assert!(store.groups_of(&e).await.expect("read").is_empty());

    commit(
        store,
        &room,
        &a,
        EventBody::MastersAdded {
            users: vec![c.clone()],
        },
    )
    .await;
    commit(
        store,
        &room,
        &a,
        EventBody::MasterRemoved { user: a.clone() },
    )
    .await;
    commit(
        store,
        &room,
        &c,
        EventBody::MemberRemoved {
            user: b.clone(),
            reason: RemovalReason::Removed,
        },
    )
    .await;
    commit(
        store,
        &room,
        &c,
        EventBody::GroupUpdated {
            name: Some("Renamed".into()),
            description: None,
            features: Some(Features {
                note: false,
                ..Default::default()
            }),
            image: None,
        },
    )
    .await;
    let r = store.room(&room).await.expect("read").expect("exists");
    assert_eq!(r.members, vec![a.clone(), c.clone()]);
    assert_eq!(r.masters, vec![c.clone()]);
    assert_eq!(r.name, "Renamed");
    assert_eq!(r.description, "d", "unchanged fields stay");
    assert!(!r.features.note);
    assert!(store
        .rooms_of(&b)
        .await
        .expect("read")
        .iter()
        .all(|m| m.room != room));

    // Audit: every change but messages, newest first; each involved company sees it.
    let acme = store
        .audit(Some(&"acme.example".into()), Some(&room), None, 100)
        .await
        .expect("audit");
    let actions: Vec<&str> = acme.iter().map(|x| x.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "group_updated",
            "member_removed",
            "master_removed",
            "masters_added",
            "converted",
            "members_added",
            "created"
        ]
    );
    let globex = store
        .audit(Some(&"globex.example".into()), Some(&room), None, 100)
        .await
        .expect("audit");
    assert!(
        globex.iter().any(|x| x.action == "converted"),
        "erin's company sees the conversion"
    );
    let older = store
        .audit(
            Some(&"acme.example".into()),
            Some(&room),
            Some(acme[1].id),
            2,
        )
        .await
        .expect("audit");
    assert_eq!(older.len(), 2);
    assert_eq!(older[0].id, acme[2].id);
    assert!(store
        .audit(Some(&"nobody.example".into()), None, None, 100)
        .await
        .expect("audit")
        .is_empty());
    // Each record says which companies it involves; the operator's view (no company) holds
    // every record once, in the same order, whichever companies saw it.
    let conversion = acme
        .iter()
        .find(|x| x.action == "converted")
        .expect("converted");
    assert_eq!(
        conversion.companies,
        vec![
            CompanyId::from("acme.example"),
            CompanyId::from("globex.example")
        ]
    );
    let all = store
        .audit(None, Some(&room), None, 100)
        .await
        .expect("audit");
    assert_eq!(
        all.iter().map(|x| x.id).collect::<Vec<_>>(),
        acme.iter().map(|x| x.id).collect::<Vec<_>>()
    );
    let page = store
        .audit(None, Some(&room), Some(all[2].id), 2)
        .await
        .expect("audit");
    assert_eq!(page, all[3..5].to_vec());
    assert_projection_of_log(store, &room).await;
}

fn audit_of(room: &str, action: &str) -> NewAudit {
    NewAudit {
        ts: 3_000,
        room: room.into(),
        actor: "alice@acme.example".into(),
        action: action.into(),
        detail: "{}".into(),
        companies: vec!["acme.example".into()],
    }
}

pub async fn invites(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    store
        .create_room(&new_room("r_inv", &[&a], &[&a]))
        .await
        .expect("create");
    let room = RoomId::from("r_inv");
    assert_eq!(store.invite_of(&room).await.expect("read"), None);
    let inv = Invite {
        token: "tok1".into(),
        expires_at: Some(99),
        barred: vec!["bob@acme.example".into()],
    };
    store
        .set_invite(
            &room,
            Some(inv.clone()),
            audit_of("r_inv", "invite_created"),
        )
        .await
        .expect("set");
    assert_eq!(
        store.invite_of(&room).await.expect("read"),
        Some(inv.clone())
    );
    assert_eq!(
        store.room_by_invite("tok1").await.expect("read"),
        Some((room.clone(), inv))
    );
    store
        .set_invite(&room, None, audit_of("r_inv", "invite_revoked"))
        .await
        .expect("revoke");
    assert_eq!(store.room_by_invite("tok1").await.expect("read"), None);
    assert!(matches!(
        store
            .set_invite(&"r_none".into(), None, audit_of("r_none", "x"))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn storage_and_delete(store: &SharedStore) {
    let acme: CompanyId = "acme.example".into();
    let a: UserId = "alice@acme.example".into();
    store
        .create_room(&new_room("r_del", &[&a], &[&a]))
        .await
        .expect("create");
    let room = RoomId::from("r_del");
    let before = store.count_owned_groups(&acme).await.expect("count");
    let base = store.storage_used(&acme).await.expect("used");
    let lease = std::time::Duration::from_secs(60);
    let held = store
        .reserve_storage(&acme, 600, base + 1000, lease)
        .await
        .expect("reserve")
        .expect("fits");
    assert!(
        store
            .reserve_storage(&acme, 600, base + 1000, lease)
            .await
            .expect("reserve")
            .is_none(),
        "past the quota"
    );
    assert_eq!(store.storage_used(&acme).await.expect("used"), base + 600);
    let file = FileRecord {
        id: "f_one".into(),
        room: room.clone(),
        company: acme.clone(),
        size: 600,
        sha256: "00".into(),
        name: "n".into(),
        content_type: "image/png".into(),
        created_by: a.clone(),
        created_at: 1,
        attachment: false,
    };
    store.add_file(&file, &held).await.expect("add");
    assert_eq!(store.file("f_one").await.expect("read"), Some(file.clone()));
    assert_eq!(store.storage_used(&acme).await.expect("used"), base + 600);
    // A reservation given back holds nothing.
    let given = store
        .reserve_storage(&acme, 300, base + 1000, lease)
        .await
        .expect("reserve")
        .expect("fits");
    assert_eq!(store.storage_used(&acme).await.expect("used"), base + 900);
    store.release_storage(&given).await.expect("release");
    assert_eq!(store.storage_used(&acme).await.expect("used"), base + 600);
    // A second file, then the first replaced as the image: its bytes are freed.
    let held = store
        .reserve_storage(&acme, 100, base + 1000, lease)
        .await
        .expect("reserve")
        .expect("fits");
    assert!(store.renew_reservation(&held, lease).await.expect("renew"));
    store
        .add_file(
            &FileRecord {
                id: "f_two".into(),
                size: 100,
                ..file.clone()
            },
            &held,
        )
        .await
        .expect("add");
    let img = |id: &str| EventBody::GroupUpdated {
        name: None,
        description: None,
        features: None,
        image: Some(id.into()),
    };
    commit(store, &room, &a, img("f_one")).await;
    commit(store, &room, &a, img("f_two")).await;
    assert_eq!(store.file("f_one").await.expect("read"), None);
    assert_eq!(store.storage_used(&acme).await.expect("used"), base + 100);
    assert_eq!(
        store
            .room(&room)
            .await
            .expect("read")
            .expect("exists")
            .image
            .as_deref(),
        Some("f_two")
    );

    let files = store
        .delete_room(&room, audit_of("r_del", "deleted"))
        .await
        .expect("delete");
    assert_eq!(files, vec!["f_two".to_owned()]);
    assert_eq!(store.storage_used(&acme).await.expect("used"), base);
    assert_eq!(store.room(&room).await.expect("read"), None);
    assert!(store
        .read_range(&room, 0, u64::MAX, 10)
        .await
        .expect("read")
        .is_empty());
    assert_eq!(
        store.count_owned_groups(&acme).await.expect("count"),
        before - 1
    );
    assert!(matches!(
        store.delete_room(&room, audit_of("r_del", "deleted")).await,
        Err(StoreError::NotFound(_))
    ));
    // G16: the id is never reused.
    assert!(matches!(
        store.create_room(&new_room("r_del", &[&a], &[&a])).await,
        Err(StoreError::AlreadyExists(_))
    ));
}

pub async fn items_and_recall(store: &SharedStore) {
    use crossroom_protocol::{Attachment, Item, NoteFields};
    let acme: CompanyId = "acme.example".into();
    let a: UserId = "alice@acme.example".into();
    let b: UserId = "bob@acme.example".into();
    store
        .create_room(&new_room("r_items", &[&a, &b], &[&a]))
        .await
        .expect("create");
    let room = RoomId::from("r_items");
    let note = commit(
        store,
        &room,
        &a,
        EventBody::NotePosted {
            note: NoteFields {
                title: "t".into(),
                body: "b".into(),
                others_may_edit: false,
                notify: false,
                pinned: false,
            },
        },
    )
    .await;
    commit(
        store,
        &room,
        &b,
        EventBody::NoteCommented {
            note,
            text: "c".into(),
        },
    )
    .await;
    match store.item(&room, note).await.expect("read") {
        Some(Item::Note(n)) => {
            assert_eq!(n.author, a);
            assert_eq!(n.comments.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.read_note(&room, note, &b).await.expect("read"),
        Some(1)
    );
    assert_eq!(
        store.read_note(&room, note, &b).await.expect("read"),
        Some(1),
        "once per reader"
    );
    assert_eq!(store.read_note(&room, 999, &b).await.expect("read"), None);

    // A folder with a file in a subfolder: purging the folder takes everything and frees bytes.
    let base = store.storage_used(&acme).await.expect("used");
    let top = commit(
        store,
        &room,
        &a,
        EventBody::FolderCreated {
            parent: None,
            name: "top".into(),
            notify_on_new_file: false,
        },
    )
    .await;
    let sub = commit(
        store,
        &room,
        &a,
        EventBody::FolderCreated {
            parent: Some(top),
            name: "sub".into(),
            notify_on_new_file: false,
        },
    )
    .await;
    let lease = std::time::Duration::from_secs(60);
    let held = store
        .reserve_storage(&acme, 50, u64::MAX / 4, lease)
        .await
        .expect("reserve")
        .expect("fits");
    let rec = FileRecord {
        id: "f_items".into(),
        room: room.clone(),
        company: acme.clone(),
        size: 50,
        sha256: "00".into(),
        name: "x".into(),
        content_type: "t".into(),
        created_by: a.clone(),
        created_at: 1,
        attachment: false,
    };
    store.add_file(&rec, &held).await.expect("add");
    commit(
        store,
        &room,
        &a,
        EventBody::FileAdded {
            folder: Some(sub),
            file: rec.id.clone(),
            name: "x".into(),
            size: 50,
            content_type: "t".into(),
            sha256: "00".into(),
        },
    )
    .await;
    assert_eq!(store.items(&room).await.expect("items").len(), 4);
    commit(store, &room, &a, EventBody::ItemTrashed { item: top }).await;
    commit(store, &room, &a, EventBody::ItemPurged { item: top }).await;
    let left = store.items(&room).await.expect("items");
    assert_eq!(left.len(), 1, "only the note is left: {left:?}");
    assert_eq!(store.file("f_items").await.expect("read"), None);
    assert_eq!(store.storage_used(&acme).await.expect("used"), base);

    // Recall: the message becomes a placeholder in the log; its attachment is freed.
    let held = store
        .reserve_storage(&acme, 30, u64::MAX / 4, lease)
        .await
        .expect("reserve")
        .expect("fits");
    store
        .add_file(
            &FileRecord {
                id: "f_att".into(),
                size: 30,
                ..rec.clone()
            },
            &held,
        )
        .await
        .expect("add");
    let msg = commit(
        store,
        &room,
        &b,
        EventBody::Message {
            client_msg_id: "m".into(),
            text: "secret".into(),
            attachments: vec![Attachment {
                file: "f_att".into(),
                name: "a".into(),
                size: 30,
                content_type: "t".into(),
            }],
            mentions: vec![a.clone()],
            recalled: false,
        },
    )
    .await;
    store.set_read_marker(&room, &a, msg).await.expect("mark");
    assert_eq!(
        store.readers(&room, msg, &b).await.expect("readers"),
        vec![a.clone()]
    );
    commit(
        store,
        &room,
        &b,
        EventBody::MessageRecalled { message: msg },
    )
    .await;
    let ev = store
        .event_at(&room, msg)
        .await
        .expect("read")
        .expect("kept in place");
    assert_eq!(
        ev.body,
        EventBody::Message {
            client_msg_id: "m".into(),
            text: String::new(),
            attachments: vec![],
            mentions: vec![],
            recalled: true,
        }
    );
    assert_eq!(store.file("f_att").await.expect("read"), None);
    assert_eq!(store.storage_used(&acme).await.expect("used"), base);
    assert_projection_of_log(store, &room).await;
}

/// G20: creations racing for a company's last group slots never pass its limit — the count is
/// checked atomically with the insert — and a deleted group gives its slot back.
pub async fn group_limits_are_atomic(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    let racing = (0..8).map(|i| {
        let store = store.clone();
        let mut r = new_room(&format!("r_lim{i}"), &[&a], &[&a]);
        r.max_owned_groups = Some(2);
        async move { store.create_room(&r).await }
    });
    let results = futures_util::future::join_all(racing).await;
    let made: Vec<&crossroom_protocol::Event> =
        results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(made.len(), 2, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, StoreError::LimitReached(_))));
    let acme: CompanyId = "acme.example".into();
    assert_eq!(store.count_owned_groups(&acme).await.expect("count"), 2);
    let gone = made[0].room.clone();
    store
        .delete_room(&gone, audit_of(&gone.0, "group_deleted"))
        .await
        .expect("delete");
    assert_eq!(store.count_owned_groups(&acme).await.expect("count"), 1);
    let mut again = new_room("r_lim_again", &[&a], &[&a]);
    again.max_owned_groups = Some(2);
    store
        .create_room(&again)
        .await
        .expect("a slot was given back");
    again.id = "r_lim_more".into();
    assert!(matches!(
        store.create_room(&again).await,
        Err(StoreError::LimitReached(_))
    ));
    // A room without a limit (a general room) is not counted against it.
    let mut general = new_room("r_lim_general", &[&a], &[&a]);
    general.kind = RoomKind::Room;
    general.masters = vec![];
    store
        .create_room(&general)
        .await
        .expect("general rooms are not limited");
}

/// A group of alice's, for tests of one backend.
pub fn new_room_for_audit(id: &str) -> NewRoom {
    let a: UserId = "alice@acme.example".into();
    new_room(id, &[&a], &[&a])
}

/// M1: an attachment is taken by one post (the first claim wins and is kept), listed for the
/// sweep until settled, and forgotten with its claim when deleted.
pub async fn attachment_claims(store: &SharedStore) {
    let acme: CompanyId = "acme.example".into();
    let a: UserId = "alice@acme.example".into();
    store
        .create_room(&new_room("r_claims", &[&a], &[&a]))
        .await
        .expect("create");
    let room = RoomId::from("r_claims");
    let file = |id: &str, at: i64, attachment: bool| FileRecord {
        id: id.into(),
        room: room.clone(),
        company: acme.clone(),
        size: 10,
        sha256: "00".into(),
        name: "n".into(),
        content_type: "t".into(),
        created_by: a.clone(),
        created_at: at,
        attachment,
    };
    for f in [
        file("f_a1", 100, true),
        file("f_a2", 200, true),
        file("f_a3", 5_000, true),
        file("f_folder", 150, false),
    ] {
        let held = store
            .reserve_storage(
                &acme,
                f.size,
                u64::MAX / 4,
                std::time::Duration::from_secs(60),
            )
            .await
            .expect("reserve")
            .expect("fits");
        store.add_file(&f, &held).await.expect("add");
    }
    assert_eq!(
        store.file("f_a1").await.expect("read"),
        Some(file("f_a1", 100, true))
    );
    let claim = |id: &'static str, c: Option<&'static str>| {
        let store = store.clone();
        async move { store.claim_file(id, c).await.expect("claim") }
    };
    assert_eq!(claim("f_a1", None).await, None, "nobody took it yet");
    assert_eq!(claim("f_a1", Some("m1")).await.as_deref(), Some("m1"));
    assert_eq!(
        claim("f_a1", Some("m1")).await.as_deref(),
        Some("m1"),
        "a retry takes it again"
    );
    assert_eq!(
        claim("f_a1", Some("m2")).await.as_deref(),
        Some("m1"),
        "the first claim is kept"
    );
    assert_eq!(claim("f_a1", None).await.as_deref(), Some("m1"));
    assert_eq!(
        claim("f_nope", Some("m1")).await,
        None,
        "an unknown file is nobody's"
    );

    // The sweep's list: attachments only, uploaded before the bound, oldest first.
    let listed = |before: i64| {
        let store = store.clone();
        async move {
            store
                .unsettled_attachments(before, 10)
                .await
                .expect("list")
                .into_iter()
                .map(|(f, c)| (f.id, c))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(1_000).await,
        vec![
            ("f_a1".to_owned(), Some("m1".to_owned())),
            ("f_a2".to_owned(), None)
        ]
    );
    assert_eq!(listed(10_000).await.len(), 3);

    assert_eq!(
        store.posted_message(&room, &a, "m1").await.expect("find"),
        None
    );
    let stored = store
        .append(&room, vec![message(&a, "m1", "hi")], None)
        .await
        .expect("queue")
        .await
        .expect("commit");
    assert_eq!(
        store.posted_message(&room, &a, "m1").await.expect("find"),
        Some(stored[0].event.clone()),
        "the retried post's entry, as stored"
    );
    let b: UserId = "bob@acme.example".into();
    assert_eq!(
        store.posted_message(&room, &b, "m1").await.expect("find"),
        None,
        "another author's id"
    );

    store.settle_file("f_a1").await.expect("settle");
    assert_eq!(listed(1_000).await, vec![("f_a2".to_owned(), None)]);
    assert_eq!(
        claim("f_a2", Some(crossroom::store::GONE_CLAIM))
            .await
            .as_deref(),
        Some(crossroom::store::GONE_CLAIM)
    );
    store.delete_file("f_a2").await.expect("delete");
    assert_eq!(claim("f_a2", None).await, None);
    assert_eq!(listed(10_000).await, vec![("f_a3".to_owned(), None)]);
}

/// G17: in a store nodes share a reservation is a lease — renewed it holds, unless renewed it
/// lapses and the storage it held is free again (a node that died mid-upload held it forever).
pub async fn reservations_lapse(store: &SharedStore) {
    let acme: CompanyId = "acme.example".into();
    let base = store.storage_used(&acme).await.expect("used");
    let short = std::time::Duration::from_secs(3);
    let held = store
        .reserve_storage(&acme, 500, base + 600, short)
        .await
        .expect("reserve")
        .expect("fits");
    assert_eq!(store.storage_used(&acme).await.expect("used"), base + 500);
    // Renewed past its first term, it still holds.
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        assert!(store.renew_reservation(&held, short).await.expect("renew"));
    }
    let used = store.storage_used(&acme).await.expect("used");
    assert_eq!(used, base + 500, "renewed");
    let mut used = 0;
    for _ in 0..100 {
        used = store.storage_used(&acme).await.expect("used");
        if used == base {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(used, base, "lapsed");
    assert!(!store.renew_reservation(&held, short).await.expect("renew"));
    assert!(store
        .reserve_storage(&acme, 500, base + 600, short)
        .await
        .expect("reserve")
        .is_some());
}
