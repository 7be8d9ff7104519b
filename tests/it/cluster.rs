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
        nodes.push(Server::start_node_with(redis, &load_limits("")).await);
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
    let texts = message_texts(&whole_history(&mut reader, &room).await);
    let distinct: HashSet<&String> = texts.iter().collect();
    assert_eq!(
        (texts.len(), distinct.len()),
        (960, 960),
        "each stored once"
    );
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
    let messages = message_texts(&whole_history(&mut alice, &room).await);
    assert_eq!(messages, vec!["only once".to_owned()]);
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
            alice
                .add_members(&room, &[&w.carol.id])
                .await
                .expect("add_members");
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

/// Kill every connection of the Redis at `url` that holds a subscription (the nodes' bus
/// connections).
async fn kill_subscriptions(url: &str) -> usize {
    let client = ::redis::Client::open(url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let list: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .expect("client list");
    let mut killed = 0;
    for line in list.lines() {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .unwrap_or("0")
                .to_owned()
        };
        let subscribed = field("sub") != "0" || field("ssub") != "0" || field("psub") != "0";
        if subscribed {
            let _: Result<i64, _> = ::redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(field("id"))
                .query_async(&mut conn)
                .await;
            killed += 1;
        }
    }
    killed
}

/// Pub/sub is at-most-once: with the nodes' subscriptions killed ten times during the load,
/// every subscriber still gets every post, in order, once (the log fills what the bus lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_killed_ten_times_lose_nothing() {
    let redis = Redis::start(&[]).await;
    let (nodes, w) = three_nodes(&[redis.url()]).await;
    let mut alice = nodes[0].connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Flaky bus", &[&w.carol.id]).await;
    let mut readers = Vec::new();
    for i in 0..6 {
        let mut c = nodes[1 + i % 2]
            .connect(&w.carol.token, Encoding::MsgPack)
            .await;
        subscribe(&mut c, &room, None).await;
        readers.push(tokio::spawn(
            async move { collect_messages(&mut c, 400).await },
        ));
    }
    let resubscribed = |m: &std::collections::HashMap<String, f64>| {
        metric(m, "crossroom_bus_resubscriptions_total")
    };
    let mut before = 0.0;
    for n in &nodes[1..] {
        before += resubscribed(&scrape(n).await);
    }
    let killer = {
        let url = redis.url();
        tokio::spawn(async move {
            let mut total = 0;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                total += kill_subscriptions(&url).await;
            }
            total
        })
    };
    let mut acked = Vec::new();
    for i in 0..400 {
        acked.push(post_ok(&mut alice, &room, &format!("k{i}"), &format!("k{i}")).await);
    }
    let killed = killer.await.expect("killer");
    assert!(killed >= 10, "subscriptions were killed ({killed})");
    let expected: Vec<(u64, String)> = acked
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, format!("k{i}")))
        .collect();
    for r in readers {
        assert_eq!(r.await.expect("reader"), expected);
    }
    // The nodes noticed: their subscriptions came back (each time, the room caught up).
    let mut after = 0.0;
    for n in &nodes[1..] {
        // A killed connection makes the node degraded at once, until its own probe comes back
        // through the new one: give it a moment.
        let mut m = scrape(n).await;
        for _ in 0..50 {
            if metric(&m, "crossroom_bus_up") == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            m = scrape(n).await;
        }
        after += resubscribed(&m);
        assert_eq!(metric(&m, "crossroom_bus_up"), 1.0, "healthy again");
    }
    assert!(after > before, "resubscriptions {before} -> {after}");
}

/// A node is SIGKILLed mid-stream: its clients resume on another node from their last seq and
/// miss nothing; the other nodes' clients never notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_node_resume_on_another_and_miss_nothing() {
    let redis = Redis::start(&[]).await;
    let (mut nodes, w) = three_nodes(&[redis.url()]).await;
    let mut alice = nodes[0].connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Node loss", &[&w.carol.id]).await;
    let total = 300;
    // Carol's sessions on node 1, which will die.
    let mut doomed = Vec::new();
    for _ in 0..4 {
        let mut c = nodes[1].connect(&w.carol.token, Encoding::MsgPack).await;
        subscribe(&mut c, &room, None).await;
        doomed.push(c);
    }
    let first = post_many(&mut alice, &room, "n", 100, 10).await;
    // Each doomed client reads what it can, then the node dies.
    let mut held = Vec::new();
    for c in &mut doomed {
        held.push(collect_messages(c, 100).await);
    }
    nodes[1].kill().await;
    let rest = post_many(&mut alice, &room, "n", 0, 10).await;
    assert!(rest.is_empty());
    // Posting goes on while they reconnect elsewhere.
    let mut more = Vec::new();
    for i in 100..total {
        more.push(post_ok(&mut alice, &room, &format!("n{i}"), &format!("n{i}")).await);
    }
    let acked: Vec<u64> = first.into_iter().chain(more).collect();
    let expected: Vec<(u64, String)> = acked
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, format!("n{i}")))
        .collect();
    for mut got in held {
        let last = got.last().map(|(s, _)| *s).expect("some");
        let mut c = nodes[2].connect(&w.carol.token, Encoding::MsgPack).await;
        let epoch = match c
            .request(ClientFrame::ListRooms { id: 0 })
            .await
            .expect("rooms")
        {
            ServerFrame::Rooms { rooms, .. } => rooms[0].epoch,
            other => panic!("{other:?}"),
        };
        subscribe(&mut c, &room, Some((epoch, last))).await;
        got.extend(collect_messages(&mut c, total - got.len()).await);
        assert_eq!(
            got, expected,
            "resumed on another node without a gap or a duplicate"
        );
    }
}

/// Redis SIGKILLed and restarted with `appendfsync always`: no acknowledged post is lost, and a
/// writer that retries what was not acknowledged (same client ids) stores each post once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_with_aof_loses_no_acknowledged_post() {
    let mut redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]).await;
    let url = redis.url();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(Server::start_node(std::slice::from_ref(&url)).await);
    }
    let w = world(&nodes[0]).await;
    let mut alice = nodes[0].connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Outage", &[&w.carol.id]).await;
    let mut carol = nodes[1].connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;
    let total = 200;
    let reader = tokio::spawn(async move { collect_messages(&mut carol, total).await });
    // The writer: each post retried with the same client id until acknowledged.
    let (at_80, reached_80) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let room = room.clone();
        tokio::spawn(async move {
            let mut at_80 = Some(at_80);
            let (mut acked, mut refused) = (Vec::new(), 0);
            for i in 0..total {
                if i == 80 {
                    if let Some(tx) = at_80.take() {
                        let _ = tx.send(());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let seq = loop {
                    let r = alice
                        .request(post(&room, &format!("o{i}"), &format!("o{i}")))
                        .await
                        .expect("a reply");
                    match r {
                        ServerFrame::Posted { seq, .. } => break seq,
                        ServerFrame::Error { .. } => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        other => panic!("{other:?}"),
                    }
                };
                acked.push(seq);
            }
            (acked, refused)
        })
    };
    reached_80.await.expect("writer running");
    redis.kill().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.restart().await;
    let (acked, refused) = writer.await.expect("writer");
    assert!(refused > 0, "the outage was felt");
    let expected: Vec<(u64, String)> = acked
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, format!("o{i}")))
        .collect();
    assert_eq!(reader.await.expect("reader"), expected);
    // Read back through the other node: every acknowledged post, once.
    let mut check = nodes[1].connect(&w.carol.token, Encoding::MsgPack).await;
    let texts = message_texts(&whole_history(&mut check, &room).await);
    let want: Vec<String> = (0..total).map(|i| format!("o{i}")).collect();
    assert_eq!(texts, want);
}

/// The same fan-out on a 3-master Redis Cluster: sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_over_a_redis_cluster_with_sharded_pub_sub() {
    let cluster = RedisCluster::start(3).await;
    let urls = cluster.urls();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(Server::start_node(&urls).await);
    }
    let w = world(&nodes[0]).await;
    let mut alice = nodes[0].connect(&w.alice.token, Encoding::MsgPack).await;
    let mut readers = Vec::new();
    let mut rooms = Vec::new();
    // Several rooms, so their channels land on different shards.
    for r in 0..4 {
        let room = group(&mut alice, &format!("Sharded {r}"), &[&w.carol.id]).await;
        for i in 0..2 {
            let mut c = nodes[i % 2]
                .connect(&w.carol.token, Encoding::MsgPack)
                .await;
            subscribe(&mut c, &room, None).await;
            readers.push((
                r,
                tokio::spawn(async move { collect_messages(&mut c, 100).await }),
            ));
        }
        rooms.push(room);
    }
    let mut acked = Vec::new();
    for room in &rooms {
        acked.push(post_many(&mut alice, room, "s", 100, 20).await);
    }
    for (r, reader) in readers {
        let expected: Vec<(u64, String)> = acked[r]
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, format!("s{i}")))
            .collect();
        assert_eq!(reader.await.expect("reader"), expected, "room {r}");
    }
}

/// G12/G13 across nodes: a removal decided on one node reaches the removed user's sessions on
/// another (`removed`), and an admin disabling a user on one node closes their sessions on
/// every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g13_directory_and_membership_changes_reach_sessions_on_every_node() {
    let redis = Redis::start(&[]).await;
    let (nodes, w) = three_nodes(&[redis.url()]).await;
    let mut alice = nodes[0].connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Directory", &[&w.carol.id, &w.dave.id]).await;
    // Carol is connected to node 2 but not subscribed: no actor for the room there.
    let mut carol = nodes[2].connect(&w.carol.token, Encoding::MsgPack).await;
    remove_ok(&mut alice, &room, &w.carol.id).await;
    loop {
        match carol
            .next_push(Duration::from_secs(10))
            .await
            .expect("a push")
        {
            ServerFrame::Removed { room: r, .. } => {
                assert_eq!(r, room);
                break;
            }
            _ => continue,
        }
    }
    // Dave on node 1; his company's admin disables him through node 0.
    let mut dave = nodes[1].connect(&w.dave.token, Encoding::MsgPack).await;
    let r = nodes[0]
        .http(Some(&w.globex_key))
        .patch(
            &format!("/v1/admin/users/{}", w.dave.id),
            serde_json::json!({ "active": false }),
        )
        .await
        .expect("patch");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let code = loop {
        match dave.next_frame(Duration::from_secs(10)).await {
            Ok(_) => continue,
            Err(crossroom_protocol::client::ClientError::Closed { code, .. }) => break code,
            Err(e) => panic!("dave's session on node 1 was not closed: {e}"),
        }
    };
    assert_eq!(code, Some(crossroom_protocol::close::USER_DISABLED));
}

/// D1 on data loss: Redis restarts without persistence. Every subscribed client is told to
/// reset (a new epoch), the room goes on from its nodes' knowledge, and a resume from the old
/// position gets `reset` too — never a silent gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_redis_losing_its_data_makes_every_client_reset() {
    let mut redis = Redis::start(&[]).await;
    let url = redis.url();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(Server::start_node(std::slice::from_ref(&url)).await);
    }
    let w = world(&nodes[0]).await;
    let mut alice = nodes[0].connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Amnesia", &[&w.carol.id]).await;
    let (old_epoch, _) = subscribe(&mut alice, &room, None).await;
    let mut carol = nodes[1].connect(&w.carol.token, Encoding::MsgPack).await;
    subscribe(&mut carol, &room, None).await;
    let mut last = 0;
    for i in 0..10 {
        last = post_ok(&mut alice, &room, &format!("a{i}"), "before").await;
    }
    redis.restart().await;
    // Both subscribers are told, each on its own node.
    let mut new_epochs = Vec::new();
    for c in [&mut alice, &mut carol] {
        let epoch = loop {
            match c.next_push(Duration::from_secs(15)).await.expect("a reset") {
                ServerFrame::Reset { room: r, epoch, .. } => {
                    assert_eq!(r, room);
                    break epoch;
                }
                _ => continue,
            }
        };
        assert_ne!(epoch, old_epoch);
        new_epochs.push(epoch);
    }
    assert_eq!(new_epochs[0], new_epochs[1], "one new epoch for everyone");
    // The room goes on: a post after the loss reaches carol live.
    let seq = loop {
        match alice
            .request(post(&room, "after", "after the loss"))
            .await
            .expect("reply")
        {
            ServerFrame::Posted { seq, epoch, .. } => {
                assert_eq!(epoch, new_epochs[0]);
                break seq;
            }
            ServerFrame::Error { .. } => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("{other:?}"),
        }
    };
    loop {
        match carol
            .next_push(Duration::from_secs(10))
            .await
            .expect("live")
        {
            ServerFrame::Event(e) if e.seq == seq => {
                assert_eq!(e.epoch, new_epochs[0]);
                break;
            }
            _ => continue,
        }
    }
    // Resuming from a position before the loss is answered with reset too (the directory was
    // lost with everything else, so no new session could sign in: carol's live one resumes).
    carol
        .send(&mut ClientFrame::Subscribe {
            id: 0,
            room: room.clone(),
            since: Some(crossroom_protocol::Position {
                epoch: old_epoch,
                seq: last,
            }),
            presence: false,
        })
        .await
        .expect("send");
    loop {
        match carol
            .next_frame(Duration::from_secs(10))
            .await
            .expect("answer")
        {
            ServerFrame::Reset { epoch, .. } => {
                assert_eq!(epoch, new_epochs[0]);
                break;
            }
            ServerFrame::Event(e) => panic!("replayed {e:?} across epochs"),
            _ => continue,
        }
    }
}

/// A stalled subscription looks healthy to the connection: the node's own liveness probe
/// notices, readiness reports degraded, and it recovers once messages flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_bus_makes_the_node_not_ready_until_it_flows_again() {
    let redis = Redis::start(&[]).await;
    let node = Server::start_node(&[redis.url()]).await;
    // `/readyz` polled every 100 ms until it answers `status`; its body, or None.
    let readyz_until = |status: u16, tries: usize| {
        let http = node.http(None);
        async move {
            for _ in 0..tries {
                let r = http.get("/readyz").await.expect("readyz");
                if r.status == status {
                    return Some(r.body);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }
    };
    assert!(readyz_until(200, 50).await.is_some(), "ready at first");
    // Writes (PUBLISH among them) are held for 8 s: probes stop coming back.
    let client = ::redis::Client::open(redis.url().as_str()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = ::redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(8000)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .expect("pause");
    let body = readyz_until(503, 80)
        .await
        .expect("not ready while the bus is stalled");
    assert_eq!(body["status"], "degraded");
    let m = scrape(&node).await;
    assert_eq!(metric(&m, "crossroom_bus_up"), 0.0);
    assert!(
        readyz_until(200, 150).await.is_some(),
        "ready again once the bus flows"
    );
}

/// `/readyz` of `node` polled every 100 ms until it answers `status`, at most `tries` times.
async fn readyz_becomes(node: &Server, status: u16, tries: usize) -> bool {
    let http = node.http(None);
    for _ in 0..tries {
        if let Ok(r) = http.get("/readyz").await {
            if r.status == status {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Redis SIGKILLed and restarted from its AOF while no client does anything: both nodes become
/// ready again by themselves (their subscriptions reconnect), and a token revocation through one
/// node then closes the user's session on the other (D5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_after_a_redis_restart_nodes_recover_alone_and_revocations_reach_every_node() {
    let mut redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]).await;
    let url = redis.url();
    let a = Server::start_node(std::slice::from_ref(&url)).await;
    let b = Server::start_node(&[url]).await;
    let w = world(&a).await;
    let mut alice = b.connect(&w.alice.token, Encoding::MsgPack).await;
    assert!(readyz_becomes(&a, 200, 50).await && readyz_becomes(&b, 200, 50).await);
    redis.kill().await;
    assert!(
        readyz_becomes(&b, 503, 100).await,
        "not ready while Redis is gone"
    );
    redis.restart().await;
    // No client request from here until both are ready: they must recover alone.
    assert!(
        readyz_becomes(&a, 200, 300).await,
        "node a ready again by itself"
    );
    assert!(
        readyz_becomes(&b, 200, 300).await,
        "node b ready again by itself"
    );
    let r = a
        .http(Some(&w.acme_key))
        .post(
            &format!("/v1/admin/users/{}/revoke-tokens", w.alice.id),
            serde_json::json!({}),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(
        alice
            .closed(Duration::from_secs(10))
            .await
            .expect("a close"),
        Some(crossroom_protocol::close::UNAUTHORIZED),
        "the session on the other node is cut off"
    );
}

/// G16 across nodes: a group deleted through one node is gone on every node at once — after a
/// member on another node is told `room_deleted`, that node serves neither the room nor its
/// history. Counted over many deletions; the goal is 0 stale answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g16_after_room_deleted_no_node_serves_the_room() {
    let redis = Redis::start(&[]).await;
    let a = Server::start_node(&[redis.url()]).await;
    let b = Server::start_node(&[redis.url()]).await;
    let w = world(&a).await;
    let mut alice = a.connect(&w.alice.token, Encoding::MsgPack).await;
    let mut carol = b.connect(&w.carol.token, Encoding::MsgPack).await;
    let mut stale = 0;
    let trials = 50;
    for i in 0..trials {
        let room = group(&mut alice, &format!("Doomed {i}"), &[&w.carol.id]).await;
        subscribe(&mut carol, &room, None).await;
        alice.delete_group(&room).await.expect("delete_group");
        loop {
            match carol
                .next_push(Duration::from_secs(10))
                .await
                .expect("a push")
            {
                ServerFrame::RoomDeleted { room: r } if r == room => break,
                _ => continue,
            }
        }
        let got = carol
            .request(ClientFrame::GetRoom {
                id: 0,
                room: room.clone(),
            })
            .await
            .expect("reply");
        let history = carol
            .request(ClientFrame::History {
                id: 0,
                room: room.clone(),
                before: None,
                limit: None,
            })
            .await
            .expect("reply");
        if !matches!(got, ServerFrame::Error { .. })
            || !matches!(history, ServerFrame::Error { .. })
        {
            stale += 1;
        }
    }
    assert_eq!(
        stale, 0,
        "stale answers after room_deleted in {trials} deletions"
    );
}

/// D3 for each sender (issue 21): a session's posts to a room get increasing seqs in the order
/// it sent them, while another node changes the room's membership all the time (each change
/// makes in-flight posts meet a conflict and be decided again). A re-decided post used to land
/// after a later post of the same session. Counted over bursts of 10 posts sent without
/// waiting: 0 out of order (`CROSSROOM_RACE_ROUNDS` / 10 bursts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3_a_senders_posts_keep_their_order_across_conflicts() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let bursts: usize = std::env::var("CROSSROOM_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(100, |r: usize| (r / 10).max(1));
    let redis = Redis::start(&[]).await;
    let (nodes, w) = three_nodes(&[redis.url()]).await;
    let mut alice = nodes[0].connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Order", &[&w.carol.id]).await;
    // Membership churn through node 1: bob in, bob out, as fast as it goes.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let mut master = nodes[1].connect(&w.alice.token, Encoding::MsgPack).await;
        let (room, bob, stop) = (room.clone(), w.bob.id.clone(), stop.clone());
        tokio::spawn(async move {
            let mut changes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let add = ClientFrame::AddMembers {
                    id: 0,
                    room: room.clone(),
                    users: vec![bob.clone()],
                };
                let remove = ClientFrame::RemoveMember {
                    id: 0,
                    room: room.clone(),
                    user: bob.clone(),
                };
                for f in [add, remove] {
                    let r = master.request(f).await.expect("change");
                    assert!(matches!(r, ServerFrame::Changed { .. }), "{r:?}");
                    changes += 1;
                }
            }
            changes
        })
    };
    let (mut accepted, mut out_of_order) = (0usize, 0usize);
    for burst in 0..bursts {
        let mut ids = Vec::new();
        for k in 0..10 {
            let id = alice
                .send(&mut ClientFrame::Post {
                    id: 0,
                    room: room.clone(),
                    client_msg_id: format!("b{burst}-{k}"),
                    text: format!("{burst}-{k}"),
                    attachments: vec![],
                    mentions: vec![],
                })
                .await
                .expect("send");
            ids.push(id);
        }
        let mut seqs = std::collections::HashMap::new();
        while seqs.len() < ids.len() {
            match alice
                .next_frame(Duration::from_secs(10))
                .await
                .expect("frame")
            {
                ServerFrame::Posted { id, seq, .. } => {
                    seqs.insert(id, Some(seq));
                }
                // Refused after too many conflicts in a row: not a post, no order to keep.
                ServerFrame::Error { id: Some(id), .. } => {
                    seqs.insert(id, None);
                }
                _ => {}
            }
        }
        let in_order: Vec<u64> = ids.iter().filter_map(|id| seqs[id]).collect();
        accepted += in_order.len();
        out_of_order += in_order.windows(2).filter(|w| w[0] >= w[1]).count();
    }
    stop.store(true, Ordering::Relaxed);
    let changes = churn.await.expect("churn");
    eprintln!("{bursts} bursts: {accepted} posts accepted, {changes} membership changes, {out_of_order} out of order");
    assert!(changes > 0);
    assert!(accepted > bursts * 5, "{accepted} accepted");
    assert_eq!(out_of_order, 0, "of {accepted} accepted posts");
}
