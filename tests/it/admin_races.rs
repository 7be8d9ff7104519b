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

/// Make a user, with a token.
async fn fresh_user(admin: &Http, login: &str) -> (String, String) {
    let r = admin
        .post(
            "/v1/admin/users",
            json!({ "login": login, "name": login, "external_permission": true }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let t = admin
        .post(&format!("/v1/admin/users/{id}/tokens"), json!({}))
        .await
        .expect("http");
    assert_eq!(t.status, 200, "{:?}", t.body);
    (id, t.body["token"].as_str().expect("token").to_owned())
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
