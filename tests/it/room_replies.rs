//! Every request to a room gets an answer, also when the room is gone by the time the actor
//! comes to it: a command that waits for the room's queued commits (an action, a file, a
//! deletion) and finds the room deleted by them answers `not_found` instead of dropping its
//! reply (the client would wait forever).
//!
//! How the room goes away under a waiting command, on real processes: two nodes on one Redis
//! whose only replica is frozen (SIGSTOP), so that every append waits `ack_timeout_ms` for the
//! replica and then fails (B does not wait). Node A holds alice's post in flight and her action behind it; node B
//! deletes the group meanwhile; A's post fails, A reloads the room and finds it deleted.

use crate::harness::*;
use crossroom_protocol::{Action, ClientFrame, Encoding, ErrorCode, ServerFrame};
use std::time::Duration;

/// A primary and its replica, in sync.
async fn primary_with_replica() -> (Redis, Redis) {
    let primary = Redis::start(&[]).await;
    let port = primary.port.to_string();
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &port]).await;
    for _ in 0..200 {
        let info = primary.cli(&["info", "replication"]).await;
        if info.contains("connected_slaves:1") && info.contains("state=online") {
            return (primary, replica);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the replica never came online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_waiting_on_commits_that_delete_its_room_is_answered() {
    let (primary, replica) = primary_with_replica().await;
    // A waits for the replica, B does not: B's deletion is in Redis well before A's post gives
    // up and A reloads the room.
    let a = Server::start_node_with(
        &[primary.url()],
        "[replication]\nack_replicas = 1\nack_timeout_ms = 2500\n",
    )
    .await;
    let b = Server::start_node_with(&[primary.url()], "[replication]\nack_replicas = 0\n").await;
    let w = world(&a).await;
    let mut alice = a.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Going away", &[&w.carol.id]).await;
    subscribe(&mut alice, &room, None).await;

    replica.signal("STOP");
    // The post waits for the frozen replica; the action queues behind it.
    let post_id = alice
        .send(&mut post(&room, "p1", "in flight"))
        .await
        .expect("send");
    let act_id = alice
        .send(&mut ClientFrame::Act {
            id: 0,
            room: room.clone(),
            action: Action::CreateFolder {
                parent: None,
                name: "Behind the post".into(),
                notify_on_new_file: false,
            },
        })
        .await
        .expect("send");
    // Meanwhile — once A's actor is waiting for the post on the action's behalf — the owner's
    // admin deletes the group through the other node.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin = b.http(Some(&w.acme_key));
    let path = format!("/v1/admin/groups/{room}");
    let deleted = tokio::time::timeout(Duration::from_secs(10), admin.delete(&path))
        .await
        .expect("the deletion answers")
        .expect("http");
    assert_eq!(deleted.status, 204, "{deleted:?}");

    // A's post gives up on the replica and A reloads the room: the replica thaws, so that A's
    // attempt to restore what looks like a lost room is acknowledged and A finds it deleted.
    let log = a.data_dir.join("server.log");
    let mut failed = false;
    for _ in 0..500 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("append failed; reloading state") {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed, "A's post never gave up on the frozen replica");
    replica.signal("CONT");
    let post_reply = alice
        .reply_to(post_id, Duration::from_secs(15))
        .await
        .expect("the post is answered");
    assert!(
        matches!(post_reply, ServerFrame::Error { .. }),
        "not replicated: {post_reply:?}"
    );
    let act_reply = alice
        .reply_to(act_id, Duration::from_secs(15))
        .await
        .expect("the action is answered, not dropped");
    assert_eq!(error_code(&act_reply), ErrorCode::NotFound, "{act_reply:?}");
}
