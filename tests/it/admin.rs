//! The admin HTTP API: operator and company-admin authentication, validation, isolation.

use crate::harness::*;
use crossroom::directory::token::TokenKey;
use crossroom_protocol::client::Client;
use crossroom_protocol::Encoding;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_key_is_required_to_create_companies() {
    let server = Server::start().await;
    let body = json!({ "id": "acme.example", "name": "Acme" });
    for key in [None, Some("wrong-key-wrong-key"), Some("")] {
        let r = server
            .http(key)
            .post("/v1/admin/companies", body.clone())
            .await
            .expect("http");
        assert_eq!(r.status, 401, "{key:?}");
        assert_eq!(r.body["error"]["code"], "unauthorized");
    }
    let r = server
        .operator()
        .post("/v1/admin/companies", body.clone())
        .await
        .expect("http");
    assert_eq!(r.status, 201);
    assert!(r.body["admin_key"]
        .as_str()
        .expect("key")
        .starts_with("ck_"));
    assert_eq!(
        r.body["company"]["settings"]["external_chat"], false,
        "the default of docs/rules.md"
    );
    // A new operator is told at once why its first external group would be refused.
    let notes = r.body["notes"].as_array().expect("notes");
    assert!(
        notes.len() == 1
            && notes[0]
                .as_str()
                .expect("a note")
                .contains("external_chat is off"),
        "{notes:?}"
    );
    let r = server
        .operator()
        .post(
            "/v1/admin/companies",
            json!({ "id": "open.example", "name": "Open", "settings": { "external_chat": true } }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 201);
    assert_eq!(r.body["notes"], json!([]), "nothing to say");
    let r = server
        .operator()
        .post("/v1/admin/companies", body)
        .await
        .expect("http");
    assert_eq!(r.status, 409);
    assert_eq!(r.body["error"]["code"], "already_exists");
    // The operator is not a company admin.
    let r = server
        .operator()
        .get("/v1/admin/users")
        .await
        .expect("http");
    assert_eq!(r.status, 403, "a valid key, of the wrong kind");
    assert_eq!(r.body["error"]["code"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let server = Server::start().await;
    let op = server.operator();
    for body in [
        json!({ "id": "Not A Domain", "name": "x" }),
        json!({ "id": "ok.example", "name": "" }),
        json!({ "id": "ok.example", "name": "x", "settings": { "recall_window_secs": 5 } }),
        json!({ "id": "ok.example", "name": "x", "surprise": 1 }),
        json!("not an object"),
    ] {
        let r = op
            .post("/v1/admin/companies", body.clone())
            .await
            .expect("http");
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "invalid_argument");
    }
    let key = company(&server, "ok.example", json!({})).await;
    let admin = server.http(Some(&key));
    let r = admin
        .post(
            "/v1/admin/users",
            json!({ "login": "Bad Login", "name": "x" }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 400);
    let r = admin
        .patch(
            "/v1/admin/company/settings",
            json!({ "read_receipts": "sometimes" }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 400);
    let now = set_settings(
        &admin,
        json!({ "read_receipts": "everyone", "recall_window_secs": 86400 }),
    )
    .await;
    assert_eq!(now["read_receipts"], "everyone");
    assert_eq!(now["recall_window_secs"], 86400);
    let u = user(&server, &key, "ann", "works").await;
    let r = admin
        .post(
            &format!("/v1/admin/users/{}/tokens", u.id),
            json!({ "ttl_secs": 5 }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_admin_sees_only_its_own_users() {
    let server = Server::start().await;
    let w = world(&server).await;
    let acme = server.http(Some(&w.acme_key));
    let r = acme.get("/v1/admin/users").await.expect("http");
    let ids: Vec<&str> = r.body["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec!["alice@acme.example", "bob@acme.example"]);
    for path in [
        format!("/v1/admin/users/{}", w.carol.id),
        format!("/v1/admin/users/{}/contacts", w.carol.id),
    ] {
        let r = acme.get(&path).await.expect("http");
        assert_eq!(r.status, 404, "{path}");
    }
    let r = acme
        .post(&format!("/v1/admin/users/{}/tokens", w.carol.id), json!({}))
        .await
        .expect("http");
    assert_eq!(r.status, 404, "no tokens for another company's users");
    let r = acme
        .get(&format!("/v1/admin/users/{}/contacts", w.alice.id))
        .await
        .expect("http");
    assert_eq!(
        r.body["contacts"],
        json!([w.carol.id.as_str(), w.dave.id.as_str()])
    );
}

/// Tokens: a disabled user, an expired token, a token of another key, `alg: none` — all refused
/// before any frame is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified_on_connect() {
    let server = Server::start().await;
    let w = world(&server).await;
    let secret = std::fs::read_to_string(server.data_dir.join("token.secret")).expect("secret");
    let key = TokenKey::new(secret.trim().as_bytes());
    let now = crossroom::directory::now_secs();
    let expired = key.sign(&w.alice.id, &"acme.example".into(), now - 3600, 60);
    let wrong_company = key.sign(&w.alice.id, &"globex.example".into(), now, 600);
    let foreign = TokenKey::new(b"another secret entirely").sign(
        &w.alice.id,
        &"acme.example".into(),
        now,
        600,
    );
    let none = {
        let parts: Vec<&str> = w.alice.token.split('.').collect();
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1])
    };
    for (name, t) in [
        ("expired", expired),
        ("wrong company", wrong_company),
        ("foreign key", foreign),
        ("alg none", none),
        ("garbage", "abc".into()),
    ] {
        let r = Client::connect(&server.ws_url(), Some(&t), Encoding::Json).await;
        assert!(r.is_err(), "{name}: refused at the upgrade");
    }
    set_active(&server.http(Some(&w.acme_key)), &w.bob.id, false).await;
    assert!(
        Client::connect(&server.ws_url(), Some(&w.bob.token), Encoding::Json)
            .await
            .is_err()
    );
    assert!(
        Client::connect(&server.ws_url(), Some(&w.alice.token), Encoding::Json)
            .await
            .is_ok()
    );
}

/// Tokens signed with the right key but for another audience are refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_audience_is_refused() {
    use base64::Engine;
    use hmac::Mac;
    let server = Server::start().await;
    let w = world(&server).await;
    let secret = std::fs::read_to_string(server.data_dir.join("token.secret")).expect("secret");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = crossroom::directory::now_secs();
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64.encode(
        serde_json::json!({ "sub": w.alice.id, "cmp": "acme.example", "aud": "someone-else",
                            "iat": now, "nbf": now, "exp": now + 600 })
        .to_string(),
    );
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.trim().as_bytes()).expect("key");
    mac.update(format!("{header}.{claims}").as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    let token = format!("{header}.{claims}.{sig}");
    assert!(
        Client::connect(&server.ws_url(), Some(&token), Encoding::Json)
            .await
            .is_err()
    );
}

/// An admin revokes a user's tokens: every live session closes at once with 4500, the old token
/// no longer connects, and a newly minted one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_close_every_session() {
    let server = Server::start().await;
    let w = world(&server).await;
    let (mut a, _) = Client::connect(&server.ws_url(), Some(&w.alice.token), Encoding::Json)
        .await
        .expect("connect");
    let (mut b, _) = Client::connect(&server.ws_url(), Some(&w.alice.token), Encoding::MsgPack)
        .await
        .expect("connect");
    let acme = server.http(Some(&w.acme_key));
    let r = acme
        .post(
            &format!("/v1/admin/users/{}/revoke-tokens", w.alice.id),
            json!({}),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 204);
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.closed(std::time::Duration::from_secs(5))
                .await
                .expect("closed"),
            Some(crossroom_protocol::close::UNAUTHORIZED)
        );
    }
    assert!(
        Client::connect(&server.ws_url(), Some(&w.alice.token), Encoding::Json)
            .await
            .is_err()
    );
    let t = acme
        .post(&format!("/v1/admin/users/{}/tokens", w.alice.id), json!({}))
        .await
        .expect("http");
    let fresh = t.body["token"].as_str().expect("token");
    assert!(
        Client::connect(&server.ws_url(), Some(fresh), Encoding::Json)
            .await
            .is_ok()
    );
}

/// A token that expires while its session is open closes the session with 4501 (within one
/// ping interval), so the client gets a new token and authenticates again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_closes_with_4501_when_its_token_expires() {
    let server = Server::start_with_config("[limits]\nping_interval_secs = 1\n").await;
    let w = world(&server).await;
    let secret = std::fs::read_to_string(server.data_dir.join("token.secret")).expect("secret");
    let key = TokenKey::new(secret.trim().as_bytes());
    let now = crossroom::directory::now_secs();
    let short = key.sign(&w.alice.id, &"acme.example".into(), now, 2);
    let (mut c, _hello) = Client::connect(&server.ws_url(), Some(&short), Encoding::Json)
        .await
        .expect("the token is still valid");
    // A long-lived token of the same user is not affected.
    let mut other = server.connect(&w.alice.token, Encoding::Json).await;
    assert_eq!(
        c.closed(std::time::Duration::from_secs(10))
            .await
            .expect("a close"),
        Some(crossroom_protocol::close::TOKEN_EXPIRED)
    );
    let r = other
        .request(crossroom_protocol::ClientFrame::Ping { id: 0 })
        .await
        .expect("still open");
    assert!(matches!(r, crossroom_protocol::ServerFrame::Pong { .. }));
}

/// The admin API pages users (`after`, `limit`, `next`) and shows each user's effective
/// permission as its own field: `external_permission` is only the per-member grant, which a
/// company with `all_members` does not consult.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g13_users_are_paged_and_show_the_permission_they_hold() {
    let server = Server::start().await;
    let w = world(&server).await;
    let globex = server.http(Some(&w.globex_key));
    let r = globex
        .get(&format!("/v1/admin/users/{}", w.carol.id))
        .await
        .expect("http");
    assert_eq!(r.body["external_permission"], false, "no per-member grant");
    assert_eq!(r.body["holds_external_permission"], true, "all_members");
    let r = globex
        .get(&format!("/v1/admin/users/{}", w.erin.id))
        .await
        .expect("http");
    assert_eq!(r.body["holds_external_permission"], false, "a LINE user");
    for i in 0..7 {
        user(&server, &w.globex_key, &format!("u{i}"), "works").await;
    }
    // 10 users, pages of 3: every one exactly once, in id order.
    let (mut seen, mut after, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let path = match &after {
            Some(a) => format!("/v1/admin/users?limit=3&after={a}"),
            None => "/v1/admin/users?limit=3".to_owned(),
        };
        let r = globex.get(&path).await.expect("http");
        assert_eq!(r.status, 200, "{:?}", r.body);
        let users = r.body["users"].as_array().expect("users");
        assert!(users.len() <= 3);
        seen.extend(
            users
                .iter()
                .map(|u| u["id"].as_str().expect("id").to_owned()),
        );
        assert!(users
            .iter()
            .all(|u| u["holds_external_permission"].is_boolean()));
        pages += 1;
        match r.body["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), sorted), (10, seen.clone()));
    for bad in ["limit=0", "limit=1001", "limit=x", "page=2"] {
        let r = globex
            .get(&format!("/v1/admin/users?{bad}"))
            .await
            .expect("http");
        assert_eq!(r.status, 400, "{bad}");
    }
}

/// A company admin deletes a leaver: their sessions close, they leave every external group
/// with reason `policy` (G13), their posts stay under their id, and the directory no longer
/// knows them (no tokens, no contact).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g13_a2_a_deleted_user_leaves_every_group_their_posts_stay_and_the_login_is_retired() {
    use crossroom_protocol::{EventBody, RemovalReason};
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Leavers", &[&w.carol.id]).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let said = post_ok(&mut carol, &room, "bye", "my last words").await;
    subscribe(&mut alice, &room, None).await;
    let globex = server.http(Some(&w.globex_key));
    let r = globex
        .delete(&format!("/v1/admin/users/{}", w.carol.id))
        .await
        .expect("http");
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert!(carol
        .closed(std::time::Duration::from_secs(5))
        .await
        .expect("closed")
        .is_some());
    loop {
        let e = next_event(&mut alice).await;
        if let EventBody::MemberRemoved { user, reason } = e.body {
            assert_eq!((user, reason), (w.carol.id.clone(), RemovalReason::Policy));
            break;
        }
    }
    let events = whole_history(&mut alice, &room).await;
    let post = events
        .iter()
        .find(|e| e.seq == said)
        .expect("the post stays");
    assert_eq!(post.author, w.carol.id);
    for r in [
        globex.get(&format!("/v1/admin/users/{}", w.carol.id)).await,
        globex
            .post(&format!("/v1/admin/users/{}/tokens", w.carol.id), json!({}))
            .await,
        globex
            .delete(&format!("/v1/admin/users/{}", w.carol.id))
            .await,
    ] {
        assert_eq!(r.expect("http").status, 404);
    }
    let r = server
        .http(Some(&w.acme_key))
        .get(&format!("/v1/admin/users/{}/contacts", w.alice.id))
        .await
        .expect("http");
    assert_eq!(r.body["contacts"], json!([w.dave.id.as_str()]));
    // The old token opens nothing.
    let refused = Client::connect(&server.ws_url(), Some(&w.carol.token), Encoding::Json).await;
    assert!(refused.is_err());
    // A2: the login is never given to a newcomer, who would take the leaver's token, groups,
    // authorship and audit trail with it.
    let r = globex
        .post(
            "/v1/admin/users",
            json!({ "login": "carol", "name": "New Carol" }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "already_exists");
    let refused = Client::connect(&server.ws_url(), Some(&w.carol.token), Encoding::Json).await;
    assert!(refused.is_err(), "still nobody behind the old token");
}

/// A lost admin key: the operator issues a new one, and the old one stops working at once; an
/// admin can also replace their own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reissued_admin_key_replaces_the_old_one() {
    let server = Server::start().await;
    let w = world(&server).await;
    let r = server
        .operator()
        .post("/v1/admin/companies/acme.example/key", json!({}))
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let fresh = r.body["admin_key"].as_str().expect("key").to_owned();
    assert_ne!(fresh, w.acme_key);
    let old = server
        .http(Some(&w.acme_key))
        .get("/v1/admin/company")
        .await
        .expect("http");
    assert_eq!(old.status, 401);
    let r = server
        .http(Some(&fresh))
        .get("/v1/admin/company")
        .await
        .expect("http");
    assert_eq!(
        (r.status, r.body["id"].as_str()),
        (200, Some("acme.example"))
    );
    // The admin rotates it themselves.
    let r = server
        .http(Some(&fresh))
        .post("/v1/admin/company/key", json!({}))
        .await
        .expect("http");
    let newest = r.body["admin_key"].as_str().expect("key").to_owned();
    let r = server
        .http(Some(&fresh))
        .get("/v1/admin/company")
        .await
        .expect("http");
    assert_eq!(r.status, 401);
    let r = server
        .http(Some(&newest))
        .get("/v1/admin/users")
        .await
        .expect("http");
    assert_eq!(r.status, 200);
    // Only the operator re-issues; an unknown company is 404.
    let r = server
        .http(Some(&newest))
        .post("/v1/admin/companies/globex.example/key", json!({}))
        .await
        .expect("http");
    assert_eq!(r.status, 403, "a company key on an operator route");
    let message = r.body["error"]["message"].as_str().expect("message");
    assert!(message.contains("operator key"), "{message}");
    let r = server
        .operator()
        .post("/v1/admin/companies/nope.example/key", json!({}))
        .await
        .expect("http");
    assert_eq!(r.status, 404);
    let r = server
        .http(Some(&w.globex_key))
        .get("/v1/admin/company")
        .await
        .expect("http");
    assert_eq!(r.status, 200, "other companies keep their keys");
}

/// The operator deletes a company: the groups it owns are deleted for everyone (G16), its users
/// leave the other companies' groups (reason `policy`), its key and users stop working. Before,
/// its admin lists its groups a page at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g16_the_operator_deletes_a_company_and_everything_it_owns() {
    use crossroom_protocol::{
        ClientFrame, ErrorCode, EventBody, RemovalReason, RoomId, ServerFrame,
    };
    let server = Server::start().await;
    let w = world(&server).await;
    let globex = server.http(Some(&w.globex_key));
    let mut owned = Vec::new();
    for i in 0..3 {
        let r = globex
            .post(
                "/v1/admin/groups",
                json!({ "name": format!("G{i}"), "masters": [w.carol.id], "members": [w.dave.id, w.alice.id] }),
            )
            .await
            .expect("http");
        assert_eq!(r.status, 201, "{:?}", r.body);
        owned.push(RoomId(
            r.body["room"]["id"].as_str().expect("id").to_owned(),
        ));
    }
    owned.sort();
    let r = globex.get("/v1/admin/groups?limit=2").await.expect("http");
    let first: Vec<&str> = r.body["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["id"].as_str().expect("id"))
        .collect();
    assert_eq!(first, vec![owned[0].as_str(), owned[1].as_str()]);
    let next = r.body["next"].as_str().expect("a next page").to_owned();
    let r = globex
        .get(&format!("/v1/admin/groups?limit=2&after={next}"))
        .await
        .expect("http");
    assert_eq!(r.body["groups"][0]["id"], owned[2].as_str());
    assert!(r.body["next"].is_null());

    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let theirs = group(&mut alice, "Acme's", &[&w.carol.id]).await;
    subscribe(&mut alice, &theirs, None).await;
    let r = server
        .http(Some(&w.acme_key))
        .delete("/v1/admin/companies/globex.example")
        .await
        .expect("http");
    assert_eq!(r.status, 403, "the operator's route");
    let r = server
        .operator()
        .delete("/v1/admin/companies/globex.example")
        .await
        .expect("http");
    assert_eq!(r.status, 204, "{:?}", r.body);
    let mut deleted = Vec::new();
    let mut carol_removed = false;
    while !carol_removed || deleted.len() < owned.len() {
        match alice
            .next_push(std::time::Duration::from_secs(10))
            .await
            .expect("push")
        {
            ServerFrame::Event(e) => {
                if let EventBody::MemberRemoved { user, reason } = e.body {
                    assert_eq!((user, reason), (w.carol.id.clone(), RemovalReason::Policy));
                    carol_removed = true;
                }
            }
            ServerFrame::RoomDeleted { room } => deleted.push(room),
            _ => {}
        }
    }
    deleted.sort();
    assert_eq!(deleted, owned, "each owned group's members are told");
    for room in &owned {
        let r = alice
            .request(ClientFrame::GetRoom {
                id: 0,
                room: room.clone(),
            })
            .await
            .expect("reply");
        assert_eq!(error_code(&r), ErrorCode::NotFound, "deleted for everyone");
    }
    let r = globex.get("/v1/admin/company").await.expect("http");
    assert_eq!(r.status, 401, "its key opens nothing");
    let r = server
        .operator()
        .get("/v1/admin/companies")
        .await
        .expect("http");
    let ids: Vec<&str> = r.body["companies"]
        .as_array()
        .expect("companies")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec!["acme.example"]);
    assert!(
        Client::connect(&server.ws_url(), Some(&w.dave.token), Encoding::Json)
            .await
            .is_err()
    );
    let r = server
        .operator()
        .delete("/v1/admin/companies/globex.example")
        .await
        .expect("http");
    assert_eq!(r.status, 404);
    // A2: the id is never given to anyone else — neither by the operator nor by a sign-up
    // through some group's invitation link (whose new admin would read the old one's audit).
    let r = server
        .operator()
        .post(
            "/v1/admin/companies",
            json!({ "id": "globex.example", "name": "Not Globex" }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "already_exists");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("was deleted")),
        "{:?}",
        r.body
    );
    let token = invite_token(&mut alice, &theirs).await;
    let r = server
        .http(None)
        .post(
            &format!("/v1/invite/{token}/signup"),
            json!({
                "company": { "id": "globex.example", "name": "Stranger" },
                "user": { "login": "eve", "name": "Eve" }
            }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 409, "a sign-up inherits nothing: {:?}", r.body);
}

/// An unknown route answers the JSON error shape, naming the route (it was an empty 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_route_is_a_json_404() {
    let server = Server::start().await;
    for path in ["/v1/admin/nope", "/v1/nothing/here", "/favicon.png"] {
        let r = server.operator().get(path).await.expect("http");
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.body["error"]["code"], "not_found", "{path}: {:?}", r.body);
        let message = r.body["error"]["message"].as_str().expect("message");
        assert!(message.contains(path), "{message}");
    }
}
