//! Admin changes racing each other, counted over many trials: a change never undoes another
//! (a disable, a token revocation, a permission withdrawal), on one node and across two nodes.

use crate::harness::*;
use crossroom_protocol::client::{Client, Http};
use crossroom_protocol::Encoding;
use serde_json::json;

/// Trials per race on one node (each is a handful of HTTP calls).
const TRIALS: usize = 200;
/// Trials per race across two cluster nodes.
const CLUSTER_TRIALS: usize = 100;

/// Make a user of `admin`'s company who holds external permission, with a token.
async fn fresh_user(admin: &Http, login: &str) -> (String, String) {
    let body = json!({ "login": login, "name": login, "external_permission": true });
    let p = user_with(admin, body).await;
    (p.id.0, p.token)
}

/// Run `decisive` (a disable or a revocation) at once with four name changes, each through the
/// next of `admins` (several nodes in cluster mode).
async fn race(
    admins: &[Http],
    id: &str,
    decisive: (&'static str, &'static str, serde_json::Value),
) {
    let mut calls = Vec::new();
    let (method, suffix, body) = decisive;
    let path = format!("/v1/admin/users/{id}{suffix}");
    let first = admins[0].clone();
    calls.push(tokio::spawn(async move {
        let r = match method {
            "PATCH" => first.patch(&path, body).await,
            _ => first.post(&path, body).await,
        };
        let r = r.expect("http");
        assert!(r.status == 200 || r.status == 204, "{:?}", r.body);
    }));
    for k in 0..4 {
        let admin = admins[(k + 1) % admins.len()].clone();
        let path = format!("/v1/admin/users/{id}");
        calls.push(tokio::spawn(async move {
            let r = admin
                .patch(&path, json!({ "name": format!("name {k}") }))
                .await
                .expect("http");
            assert_eq!(r.status, 200, "{:?}", r.body);
        }));
    }
    for c in calls {
        c.await.expect("call");
    }
}

/// Disable racing renames: count the trials that end with the user still active, or with their
/// old token still opening a session. The goal is 0.
async fn disables_hold(servers: &[&Server], trials: usize, prefix: &str) -> usize {
    let key = company(
        servers[0],
        &format!("{prefix}.example"),
        json!({ "external_chat": true }),
    )
    .await;
    let admins: Vec<Http> = servers.iter().map(|s| s.http(Some(&key))).collect();
    let mut undone = 0;
    for i in 0..trials {
        let (id, token) = fresh_user(&admins[0], &format!("u{i}")).await;
        race(&admins, &id, ("PATCH", "", json!({ "active": false }))).await;
        let r = admins[i % admins.len()]
            .get(&format!("/v1/admin/users/{id}"))
            .await
            .expect("http");
        let still_active = r.body["active"] != json!(false);
        let server = servers[i % servers.len()];
        let connects = Client::connect(&server.ws_url(), Some(&token), Encoding::Json)
            .await
            .is_ok();
        if still_active || connects {
            undone += 1;
        }
    }
    undone
}

/// Token revocation racing renames: count the trials whose old token still opens a session.
async fn revocations_hold(servers: &[&Server], trials: usize, prefix: &str) -> usize {
    let key = company(
        servers[0],
        &format!("{prefix}.example"),
        json!({ "external_chat": true }),
    )
    .await;
    let admins: Vec<Http> = servers.iter().map(|s| s.http(Some(&key))).collect();
    let mut lost = 0;
    for i in 0..trials {
        let (id, token) = fresh_user(&admins[0], &format!("v{i}")).await;
        race(&admins, &id, ("POST", "/revoke-tokens", json!({}))).await;
        let server = servers[(i + 1) % servers.len()];
        if Client::connect(&server.ws_url(), Some(&token), Encoding::Json)
            .await
            .is_ok()
        {
            lost += 1;
        }
    }
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_a_disable_racing_other_changes_is_never_undone() {
    let server = Server::start().await;
    assert_eq!(disables_hold(&[&server], TRIALS, "race-disable").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_a_token_revocation_racing_other_changes_is_never_lost() {
    let server = Server::start().await;
    assert_eq!(revocations_hold(&[&server], TRIALS, "race-revoke").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_disables_and_revocations_hold_across_two_nodes() {
    let redis = Redis::start(&[]).await;
    let a = Server::start_node(&[redis.url()]).await;
    let b = Server::start_node(&[redis.url()]).await;
    assert_eq!(
        disables_hold(&[&a, &b], CLUSTER_TRIALS, "c-disable").await,
        0
    );
    assert_eq!(
        revocations_hold(&[&a, &b], CLUSTER_TRIALS, "c-revoke").await,
        0
    );
}

/// Joins by invitation racing the joiner's company withdrawing their permission: count the
/// trials that end with them in the group without permission (G5, G13, G14). The goal is 0.
async fn joins_racing_withdrawals(servers: &[&Server], trials: usize) -> usize {
    use crossroom_protocol::{ClientFrame, ServerFrame};
    let w = world(servers[0]).await;
    let per_member = json!({ "external_permission": "per_member" });
    let globex = servers[0].http(Some(&w.globex_key));
    let r = globex
        .patch("/v1/admin/company/settings", per_member)
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut alice = servers[0].connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Open door", &[]).await;
    let token = invite_token(&mut alice, &room).await;
    let mut leaked = 0;
    for i in 0..trials {
        let (id, user_token) = fresh_user(&globex, &format!("j{i}")).await;
        let joiner = servers[i % servers.len()].http(Some(&user_token));
        let admin = servers[(i + 1) % servers.len()].http(Some(&w.globex_key));
        let join_path = format!("/v1/invite/{token}/join");
        let join = tokio::spawn(async move { joiner.post(&join_path, json!({})).await });
        let withdraw_path = format!("/v1/admin/users/{id}");
        let withdraw = tokio::spawn(async move {
            admin
                .patch(&withdraw_path, json!({ "external_permission": false }))
                .await
        });
        let joined = join.await.expect("task").expect("http");
        assert!(
            joined.status == 200 || joined.status == 403,
            "{:?}",
            joined.body
        );
        let withdrawn = withdraw.await.expect("task").expect("http");
        assert_eq!(withdrawn.status, 200, "{:?}", withdrawn.body);
        let info = match alice
            .request(ClientFrame::GetRoom {
                id: 0,
                room: room.clone(),
            })
            .await
            .expect("reply")
        {
            ServerFrame::Room { room, .. } => room,
            other => panic!("{other:?}"),
        };
        let id = crossroom_protocol::UserId(id);
        if info.members.contains(&id) || info.masters.contains(&id) {
            leaked += 1;
        }
    }
    leaked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g13_a_join_racing_a_permission_withdrawal_never_keeps_a_member_without_it() {
    let server = Server::start().await;
    assert_eq!(joins_racing_withdrawals(&[&server], TRIALS).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g13_joins_racing_withdrawals_across_two_nodes_keep_no_member_without_permission() {
    let redis = Redis::start(&[]).await;
    let a = Server::start_node(&[redis.url()]).await;
    let b = Server::start_node(&[redis.url()]).await;
    assert_eq!(joins_racing_withdrawals(&[&a, &b], CLUSTER_TRIALS).await, 0);
}

/// G20: eight members of a company with `max_groups = 2` create groups at once, through every
/// node in turn: count the trials that end with more (or fewer) than two groups. The goal is 0.
async fn group_limits_hold(servers: &[&Server], trials: usize, prefix: &str) -> usize {
    use crossroom_protocol::{ClientFrame, ServerFrame};
    let mut wrong = 0;
    for t in 0..trials {
        let id = format!("{prefix}{t}.example");
        let key = company(
            servers[0],
            &id,
            json!({ "external_chat": true, "max_groups": 2 }),
        )
        .await;
        let maker = user(servers[0], &key, "maker", "works").await;
        let mut clients = Vec::new();
        for i in 0..8 {
            clients.push(
                servers[i % servers.len()]
                    .connect(&maker.token, Encoding::MsgPack)
                    .await,
            );
        }
        let creates = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| async move {
                c.request(ClientFrame::CreateGroup {
                    id: 0,
                    name: format!("g{i}"),
                    description: String::new(),
                    members: vec![],
                    masters: vec![],
                    add_self_as_member: true,
                    features: None,
                })
                .await
                .expect("reply")
            });
        let made = futures_util::future::join_all(creates)
            .await
            .into_iter()
            .filter(|r| matches!(r, ServerFrame::RoomCreated { .. }))
            .count();
        if made != 2 {
            wrong += 1;
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g20_racing_creations_never_pass_max_groups() {
    let server = Server::start().await;
    assert_eq!(group_limits_hold(&[&server], TRIALS, "lim").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g20_racing_creations_across_two_nodes_never_pass_max_groups() {
    let redis = Redis::start(&[]).await;
    let a = Server::start_node(&[redis.url()]).await;
    let b = Server::start_node(&[redis.url()]).await;
    assert_eq!(
        group_limits_hold(&[&a, &b], CLUSTER_TRIALS, "clim").await,
        0
    );
}
