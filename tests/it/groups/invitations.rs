//! Invitation links and emails (G14, G15): made, rotated, revoked, joined by, refused to the
//! removed; emails to the outbox and through SMTP.

use super::*;

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
    assert_eq!(carol.get_invite(&room).await.refused(), ErrorCode::NotFound);
    // Carol joins by the link (no contact needed: the master invited).
    carol.join_by_invite(&token).await.expect("join_by_invite");
    let e = next_event(&mut alice).await;
    assert_eq!(
        e.body,
        EventBody::MembersAdded {
            users: vec![w.carol.id.clone()]
        }
    );
    // LINE users and users without permission get clear errors.
    let mut erin = server.connect(&w.erin.token, Encoding::MsgPack).await;
    assert_eq!(
        erin.join_by_invite(&token).await.refused(),
        ErrorCode::LineUserNotAllowed
    );
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
    alice.revoke_invite(&room).await.expect("revoke_invite");
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
    alice
        .send_invites(&room, &["new@partner.example", "other@partner.example"])
        .await
        .expect("send_invites");
    let InviteLink { token, .. } = alice.get_invite(&room).await.expect("get_invite");
    let token = token.expect("a link was made");
    let outbox = server.data_dir.join("outbox");
    let mails: Vec<String> = std::fs::read_dir(&outbox)
        .expect("outbox")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    assert_eq!(mails.len(), 2);
    assert!(mails.iter().any(|m| m.contains("To: new@partner.example")));
    assert!(mails.iter().all(|m| m.contains(&token)));
    assert_eq!(
        alice
            .send_invites(&room, &["not an address"])
            .await
            .refused(),
        ErrorCode::InvalidArgument
    );
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
    alice
        .send_invites(&room, &["guest@partner.example"])
        .await
        .expect("send_invites");
    let InviteLink { token, .. } = alice.get_invite(&room).await.expect("get_invite");
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
    alice
        .add_members(&room, &[&w.carol.id])
        .await
        .expect("add_members");
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
