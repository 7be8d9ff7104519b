//! The behaviour every [`Store`] must show, as one test-suite that any implementation runs:
//! `suite::run(store).await` from a test, on a fresh store. It panics on the first difference.
//!
//! It is a public module (not `#[cfg(test)]`) so that the integration tests can run it against
//! each backend: SQLite now, Redis next.

use super::{NewEntry, NewRoom, SharedStore, StoreError};
use crate::directory::{Company, CompanySettings, User, UserKind};
use crossroom_protocol::{EventBody, Features, RoomId, RoomKind, UserId};

fn user(login: &str, company: &str) -> User {
    User {
        id: UserId(format!("{login}@{company}")),
        company: company.into(),
        name: login.to_uppercase(),
        email: format!("{login}@{company}"),
        kind: UserKind::Works,
        active: true,
        external_granted: false,
    }
}

fn message(author: &UserId, cmid: &str, text: &str) -> NewEntry {
    NewEntry {
        author: author.clone(),
        ts: 1_000,
        body: EventBody::Message {
            client_msg_id: cmid.into(),
            text: text.into(),
        },
    }
}

/// Run every check.
pub async fn run(store: SharedStore) {
    directory(&store).await;
    rooms_and_log(&store).await;
    idempotent_appends(&store).await;
    ordered_pipelined_appends(&store).await;
    read_state(&store).await;
}

async fn directory(store: &SharedStore) {
    let acme = Company {
        id: "acme.example".into(),
        name: "Acme".into(),
        settings: CompanySettings::default(),
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

    let mut settings = CompanySettings {
        external_chat: true,
        ..Default::default()
    };
    store
        .update_settings(&acme.id, &settings)
        .await
        .expect("settings");
    settings.max_groups = 5;
    store
        .update_settings(&acme.id, &settings)
        .await
        .expect("settings");
    let got = store
        .company(&acme.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(got.settings, settings);
    assert!(matches!(
        store
            .update_settings(&"none.example".into(), &settings)
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
    store.update_user(&disabled).await.expect("update");
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
    }
}

async fn rooms_and_log(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    let b: UserId = "bob@acme.example".into();
    let m: UserId = "mia@acme.example".into();
    let created = store
        .create_room(&new_room("r_log", &[&a, &b], &[&a, &m]))
        .await
        .expect("create room");
    assert_eq!(created.seq, 1);
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
    let before = store.read_before(&room.id, 3, 1).await.expect("read");
    assert_eq!(before.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
    let latest = store
        .read_before(&room.id, u64::MAX, 2)
        .await
        .expect("read");
    assert_eq!(latest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);

    let missing = match store
        .append(&"r_none".into(), vec![message(&a, "x", "x")])
        .await
    {
        Ok(t) => t.await,
        Err(e) => Err(e),
    };
    assert!(missing.is_err(), "appending to a missing room fails");
}

async fn idempotent_appends(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    let b: UserId = "bob@acme.example".into();
    store
        .create_room(&new_room("r_idem", &[&a, &b], &[&a]))
        .await
        .expect("create");
    let room = RoomId::from("r_idem");
    let first = store
        .append(&room, vec![message(&a, "same", "hello")])
        .await
        .expect("queue")
        .await
        .expect("commit");
    // Same client id, same author: stored once (D2), even inside one batch.
    let again = store
        .append(
            &room,
            vec![message(&a, "same", "hello"), message(&a, "same", "hello")],
        )
        .await
        .expect("queue")
        .await
        .expect("commit");
    assert!(again.iter().all(|x| x.duplicate));
    assert!(again.iter().all(|x| x.event == first[0].event));
    // Another author may use the same client id.
    let other = store
        .append(&room, vec![message(&b, "same", "hi")])
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

async fn ordered_pipelined_appends(store: &SharedStore) {
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
            .append(&room, vec![message(&a, &format!("p{i}"), &format!("{i}"))])
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
                text: format!("{i}")
            }
        );
    }
}

async fn read_state(store: &SharedStore) {
    let a: UserId = "alice@acme.example".into();
    let b: UserId = "bob@acme.example".into();
    store
        .create_room(&new_room("r_read", &[&a, &b], &[&a]))
        .await
        .expect("create");
    let room = RoomId::from("r_read");
    for (i, who) in [&a, &b, &b, &a, &b].iter().enumerate() {
        store
            .append(&room, vec![message(who, &format!("r{i}"), "x")])
            .await
            .expect("queue")
            .await
            .expect("commit");
    }
    // Seqs: 1 created, 2 a, 3 b, 4 b, 5 a, 6 b.
    let row = |rows: Vec<super::MembershipRow>| {
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
    let m: UserId = "nobody@acme.example".into();
    assert!(store.rooms_of(&m).await.expect("read").is_empty());
}
