//! A group's settings and what they decide: feature switches (G9, G18), shared history for later
//! members (G18, D4), the profile image and the storage quota (G9, G17), the group count limit
//! (G20), and the audit log (G19).

use super::*;

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
    assert_eq!(
        carol
            .update_group(
                &room,
                GroupUpdate {
                    name: Some("Mine".into()),
                    ..Default::default()
                }
            )
            .await
            .refused(),
        ErrorCode::Forbidden
    );
    // The owner company takes the power from masters; its admin keeps it.
    let acme = server.http(Some(&w.acme_key));
    acme.patch(
        "/v1/admin/company/settings",
        json!({ "masters_can_change_settings": false }),
    )
    .await
    .expect("http");
    assert_eq!(
        alice
            .update_group(
                &room,
                GroupUpdate {
                    features: Some(Features::default().into()),
                    ..Default::default()
                }
            )
            .await
            .refused(),
        ErrorCode::Forbidden
    );
    let r = acme
        .patch(
            &format!("/v1/admin/groups/{room}"),
            json!({ "features": { "message": true } }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    post_ok(&mut carol, &room, "back", "messages are back").await;
    let info = carol.get_room(&room).await.expect("get_room");
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
    alice.delete_group(&room).await.expect("delete_group");
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
