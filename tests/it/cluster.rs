//! Cluster mode: several `crossroom` nodes on one Redis (or a Redis Cluster) behave, to every
//! client, like one server — fan-out across nodes, one seq order, idempotent retries,
//! linearizable removal, and recovery from pub/sub, node and Redis faults.

use crate::harness::*;
use crossroom_protocol::client::Client;
use crossroom_protocol::{ClientFrame, Encoding, EventBody, RoomId, ServerFrame};
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

/// Three nodes on one Redis, and the usual two companies (set up through node 0).
async fn three_nodes(redis: &[String]) -> (Vec<Server>, World) {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start_node(redis).await);
    }
    let w = world(&nodes[0]).await;
    (nodes, w)
}

/// Read events from `c` until `count` messages arrived; returns their (seq, text), checking
/// seq order on the way.
async fn collect_messages(c: &mut Client, count: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    let mut last = 0;
    while got.len() < count {
        let f = c
            .next_push(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("after {} messages: {e}", got.len()));
        if let ServerFrame::Event(e) = f {
            assert!(e.seq > last, "seq order: {} after {last}", e.seq);
            last = e.seq;
            if let EventBody::Message { text, .. } = e.body {
                got.push((e.seq, text));
            }
        }
    }
    got
}

/// Post `n` messages from `c`, `window` in flight at a time; returns the acknowledged seqs.
async fn post_many(
    c: &mut Client,
    room: &RoomId,
    prefix: &str,
    n: usize,
    window: usize,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut i = 0;
    while i < n {
        let mut ids = Vec::new();
        for j in i..(i + window).min(n) {
            ids.push(
                c.send(&mut post(
                    room,
                    &format!("{prefix}{j}"),
                    &format!("{prefix}{j}"),
                ))
                .await
                .expect("send"),
            );
        }
        i += ids.len();
        for id in ids {
            match c.reply_to(id, Duration::from_secs(20)).await.expect("ack") {
                ServerFrame::Posted { seq, .. } => seqs.push(seq),
                other => panic!("expected posted, got {other:?}"),
            }
        }
    }
    seqs
}

/// 20 subscribers spread over three nodes each get all 500 posts of a room, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_every_node_get_every_post_in_order_exactly_once() {
    let redis = Redis::start(&[]).await;
    let (nodes, w) = three_nodes(&[redis.url()]).await;
    let people = [&w.alice, &w.bob, &w.carol, &w.dave];
    let mut alice = nodes[0].connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(
        &mut alice,
        "Everywhere",
        &[&w.bob.id, &w.carol.id, &w.dave.id],
    )
    .await;
    let mut subscribers = Vec::new();
    for i in 0..20 {
        let node = &nodes[i % 3];
        let enc = if i % 2 == 0 {
            Encoding::MsgPack
        } else {
            Encoding::Json
        };
        let mut c = node.connect(&people[i % 4].token, enc).await;
        subscribe(&mut c, &room, None).await;
        subscribers.push(c);
    }
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut c| tokio::spawn(async move { collect_messages(&mut c, 500).await }))
        .collect();
    let acked = post_many(&mut alice, &room, "m", 500, 25).await;
    let expected: Vec<(u64, String)> = acked
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, format!("m{i}")))
        .collect();
    for (i, r) in readers.into_iter().enumerate() {
        let got = r.await.expect("reader");
        assert_eq!(got, expected, "subscriber {i} on node {}", i % 3);
    }
}

/// 24 writers on three nodes, 40 posts each in flight at once: 960 distinct seqs, no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_every_node_get_unique_gapless_seqs() {
    let redis = Redis::start(&[]).await;
    let (nodes, w) = three_nodes(&[redis.url()]).await;
    let people = [&w.alice, &w.bob, &w.carol, &w.dave];
    let mut alice = nodes[0].connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Busy", &[&w.bob.id, &w.carol.id, &w.dave.id]).await;
    let mut writers = Vec::new();
    for i in 0..24 {
        let c = nodes[i % 3]
            .connect(&people[i % 4].token, Encoding::MsgPack)
            .await;
        writers.push(c);
    }
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let room = room.clone();
            tokio::spawn(async move { post_many(&mut c, &room, &format!("w{i}-"), 40, 40).await })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer"));
    }
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), 960);
    assert_eq!(distinct.len(), 960, "every post got its own seq");
    let (lo, hi) = (
        *distinct.first().expect("some"),
        *distinct.last().expect("some"),
    );
    assert_eq!(hi - lo + 1, 960, "no gap: {lo}..={hi}");
    // The log agrees, read through another node.
    let mut reader = nodes[2].connect(&w.carol.token, Encoding::MsgPack).await;
    let mut texts = HashSet::new();
    let mut before = None;
    loop {
        let r = reader
            .request(ClientFrame::History {
                id: 0,
                room: room.clone(),
                before,
                limit: Some(100),
            })
            .await
            .expect("history");
        let ServerFrame::History {
            events, has_more, ..
        } = r
        else {
            panic!("{r:?}")
        };
        before = events.first().map(|e| e.seq);
        for e in events {
            if let EventBody::Message { text, .. } = e.body {
                assert!(texts.insert(text), "stored once");
            }
        }
        if !has_more {
            break;
        }
    }
    assert_eq!(texts.len(), 960);
}

/// D2 across nodes: 40 racing sends of one client id, on every node, store one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_retries_of_one_client_id_store_one_message() {
    let redis = Redis::start(&[]).await;
    let (nodes, w) = three_nodes(&[redis.url()]).await;
    let mut alice = nodes[0].connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Retries", &[&w.carol.id]).await;
    let mut racers = Vec::new();
    for i in 0..40 {
        racers.push(
            nodes[i % 3]
                .connect(&w.carol.token, Encoding::MsgPack)
                .await,
        );
    }
    let tasks: Vec<_> = racers
        .into_iter()
        .map(|mut c| {
            let room = room.clone();
            tokio::spawn(async move {
                match c
                    .request(post(&room, "same-id", "only once"))
                    .await
                    .expect("post")
                {
                    ServerFrame::Posted { seq, duplicate, .. } => (seq, duplicate),
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("racer"));
    }
    let seqs: HashSet<u64> = results.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs.len(), 1, "one seq for every racer: {results:?}");
    assert_eq!(
        results.iter().filter(|(_, d)| !d).count(),
        1,
        "one original"
    );
    let r = alice
        .request(ClientFrame::History {
            id: 0,
            room: room.clone(),
            before: None,
            limit: Some(100),
        })
        .await
        .expect("history");
    let ServerFrame::History { events, .. } = r else {
        panic!("{r:?}")
    };
    let messages = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::Message { .. }))
        .count();
    assert_eq!(messages, 1);
}

/// G12 across nodes, linearizable: in each round carol posts on node A while alice removes her
/// on node B. Her post either commits before the removal or is refused — never after it — and
/// her subscription on node C receives nothing past the removal line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g12_removal_races_a_post_from_another_node_and_always_wins_in_order() {
    let rounds: usize = std::env::var("CROSSROOM_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let redis = Redis::start(&[]).await;
    let (nodes, w) = three_nodes(&[redis.url()]).await;
    let mut alice = nodes[1].connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Race", &[&w.carol.id]).await;
    let mut carol = nodes[0].connect(&w.carol.token, Encoding::MsgPack).await;
    let mut watcher = nodes[2].connect(&w.carol.token, Encoding::MsgPack).await;
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..rounds {
        if round > 0 {
            let r = alice
                .request(ClientFrame::AddMembers {
                    id: 0,
                    room: room.clone(),
                    users: vec![w.carol.id.clone()],
                })
                .await
                .expect("add");
            assert!(matches!(r, ServerFrame::Changed { .. }), "{r:?}");
        }
        subscribe(&mut watcher, &room, None).await;
        // Who sends first alternates, so both orders race.
        let mut racing = post(&room, &format!("race{round}"), "racing");
        let mut removal = ClientFrame::RemoveMember {
            id: 0,
            room: room.clone(),
            user: w.carol.id.clone(),
        };
        let (post_id, remove_id) = if round % 2 == 0 {
            let p = carol.send(&mut racing).await.expect("send post");
            (p, alice.send(&mut removal).await.expect("send remove"))
        } else {
            let r = alice.send(&mut removal).await.expect("send remove");
            (carol.send(&mut racing).await.expect("send post"), r)
        };
        let removed_at = match alice
            .reply_to(remove_id, Duration::from_secs(20))
            .await
            .expect("removal")
        {
            ServerFrame::Changed { seq, .. } => seq,
            other => panic!("round {round}: {other:?}"),
        };
        match carol
            .reply_to(post_id, Duration::from_secs(20))
            .await
            .expect("post answer")
        {
            ServerFrame::Posted { seq, .. } => {
                assert!(
                    seq < removed_at,
                    "round {round}: post {seq} after removal {removed_at}"
                );
                accepted += 1;
            }
            ServerFrame::Error { .. } => refused += 1,
            other => panic!("round {round}: {other:?}"),
        }
        // The watcher's stream ends at the removal line: the removal is the last event.
        loop {
            match watcher
                .next_push(Duration::from_secs(20))
                .await
                .expect("watcher")
            {
                ServerFrame::Event(e) => {
                    assert!(
                        e.seq <= removed_at,
                        "round {round}: {} after removal {removed_at}",
                        e.seq
                    );
                    if e.seq == removed_at {
                        break;
                    }
                }
                _ => continue,
            }
        }
    }
    // Past the last removal, nothing more reaches carol's sessions.
    let extra = post_ok(&mut alice, &room, "after-all", "not for carol").await;
    let mut leaked = Vec::new();
    while let Ok(f) = watcher.next_push(Duration::from_millis(300)).await {
        if let ServerFrame::Event(e) = f {
            leaked.push(e.seq);
        }
    }
    assert!(
        leaked.is_empty(),
        "carol received {leaked:?} (last post {extra})"
    );
    eprintln!(
        "removal race: {accepted} posts before the removal, {refused} refused, {rounds} rounds"
    );
}
