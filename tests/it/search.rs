//! M6: message search, on the embedded store — every operator, visibility exactly as `history`
//! (late joiners with and without shared history, removal, recall, a master who is not a member,
//! two companies), Korean, Japanese and Chinese text, pages, and a database from before the
//! index indexed in the background.

use crate::features::upload;
use crate::harness::*;
use crossroom_protocol::client::Client;
use crossroom_protocol::{Action, ClientFrame, Encoding, ErrorCode, FeaturesPatch, RoomId};
use std::time::Duration;

/// The texts `c` finds for `q` (one page of up to 50), newest first.
async fn found(c: &mut Client, q: &str) -> Vec<String> {
    let (hits, _) = c
        .search_messages(q, None, None, Some(50))
        .await
        .expect("search_messages");
    hits.iter()
        .map(|h| h.snippet.iter().map(|p| p.text.as_str()).collect())
        .collect()
}

/// Post each of `texts` in order.
async fn post_all(c: &mut Client, room: &RoomId, texts: &[&str]) {
    for (i, t) in texts.iter().enumerate() {
        post_ok(c, room, &format!("m{i}-{}", t.len()), t).await;
    }
}

/// M6: words (all must match), phrases, exclusions, prefixes, `from:`, `in:`, `on:`/`before:`/
/// `after:`, `has:file`; newest first, matches marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m6_every_operator_narrows_the_search() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let mut carol = server.connect(&w.carol.token, Encoding::Json).await;
    let room = group(&mut alice, "Budget", &[&w.carol.id]).await;
    let other = group(&mut alice, "Other", &[&w.carol.id]).await;
    post_all(
        &mut alice,
        &room,
        &[
            "budget review tomorrow",
            "the next quarter budget",
            "draft budget notes",
            "planning session at ten",
        ],
    )
    .await;
    post_ok(&mut carol, &room, "c1", "Budget approved by globex").await;
    post_ok(&mut alice, &other, "o1", "budget in the other room").await;

    assert_eq!(
        found(&mut alice, "budget").await,
        [
            "budget in the other room",
            "Budget approved by globex",
            "draft budget notes",
            "the next quarter budget",
            "budget review tomorrow",
        ],
        "newest first, case-insensitive"
    );
    assert_eq!(
        found(&mut alice, "budget quarter").await,
        ["the next quarter budget"]
    );
    assert_eq!(
        found(&mut alice, "\"quarter budget\"").await,
        ["the next quarter budget"]
    );
    assert!(
        found(&mut alice, "\"budget quarter\"").await.is_empty(),
        "a phrase keeps its order"
    );
    assert_eq!(
        found(&mut alice, "budget -draft -other -globex -quarter").await,
        ["budget review tomorrow"]
    );
    assert_eq!(
        found(&mut alice, "plan*").await,
        ["planning session at ten"]
    );
    assert!(
        found(&mut alice, "plan").await.is_empty(),
        "a word is whole without *"
    );
    assert_eq!(
        found(&mut alice, &format!("budget from:{}", w.carol.id)).await,
        ["Budget approved by globex"]
    );
    assert_eq!(
        found(&mut alice, &format!("budget in:{other}")).await,
        ["budget in the other room"]
    );
    assert_eq!(
        found(&mut alice, &format!("in:{other}")).await.len(),
        1,
        "a filter alone"
    );

    // Days, in the asker's zone.
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let on = format!("budget on:{today}");
    assert_eq!(found(&mut alice, &on).await.len(), 5);
    let before = format!("budget before:{today}");
    assert!(found(&mut alice, &before).await.is_empty());
    let after = format!("budget after:{}", today.yesterday().expect("date"));
    assert_eq!(found(&mut alice, &after).await.len(), 5);
    assert!(found(&mut alice, &format!("budget after:{today}"))
        .await
        .is_empty());

    // has:file: a post with an attachment.
    let r = upload(
        &server,
        &w.alice.token,
        &format!("/v1/rooms/{room}/attachments?name=plan.pdf"),
        "application/pdf",
        b"%PDF".to_vec(),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let file = r.body["file"].as_str().expect("file").to_owned();
    alice
        .posted(ClientFrame::Post {
            id: 0,
            room: room.clone(),
            client_msg_id: "with-file".into(),
            text: "budget sheet attached".into(),
            attachments: vec![file],
            mentions: vec![],
        })
        .await
        .expect("post");
    assert_eq!(
        found(&mut alice, "budget has:file").await,
        ["budget sheet attached"]
    );
    assert_eq!(
        found(&mut alice, "has:file").await,
        ["budget sheet attached"]
    );

    // The snippet marks the matches.
    let (hits, _) = alice
        .search_messages("approved", None, None, None)
        .await
        .expect("search");
    let marked: Vec<(&str, bool)> = hits[0]
        .snippet
        .iter()
        .map(|p| (p.text.as_str(), p.hit))
        .collect();
    assert_eq!(
        marked,
        [
            ("Budget ", false),
            ("approved", true),
            (" by globex", false)
        ]
    );
    assert_eq!(
        (hits[0].room.clone(), hits[0].author.clone()),
        (room, w.carol.id.clone())
    );

    // Bad queries are refused, saying why.
    for q in ["", "-budget", "\"open", "on:someday", "budget x:y from:"] {
        assert_eq!(
            alice.search_messages(q, None, None, None).await.refused(),
            ErrorCode::InvalidArgument,
            "{q:?}"
        );
    }
    assert_eq!(
        alice
            .search_messages("budget", Some("Nowhere/Land"), None, None)
            .await
            .refused(),
        ErrorCode::InvalidArgument
    );
}

/// M6 (G21, D4): a late joiner finds only what `history` shows them — from their join without
/// shared history, everything with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m6_a_late_joiner_finds_what_history_shows_them() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let closed = group(&mut alice, "Closed", &[]).await;
    let shared = group(&mut alice, "Shared", &[]).await;
    alice
        .update_group(
            &shared,
            GroupUpdate {
                features: Some(FeaturesPatch {
                    share_history: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("update_group");
    post_ok(&mut alice, &closed, "a", "roadmap before the join").await;
    post_ok(&mut alice, &shared, "b", "roadmap shared before the join").await;
    alice
        .add_members(&closed, &[&w.carol.id])
        .await
        .expect("add");
    alice
        .add_members(&shared, &[&w.carol.id])
        .await
        .expect("add");
    post_ok(&mut alice, &closed, "c", "roadmap after the join").await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    assert_eq!(
        found(&mut carol, "roadmap").await,
        ["roadmap after the join", "roadmap shared before the join"]
    );
    // What history shows her, exactly.
    let seen = message_texts(&whole_history(&mut carol, &closed).await);
    assert_eq!(seen, ["roadmap after the join"]);
}

/// M6 (D4, M1, G22): a removed member finds nothing of the group at once; a recalled message is
/// found by nobody; a master who is not a member finds nothing in that group; people of two
/// companies in one group find the same messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m6_removal_recall_and_managing_only_hide_messages_at_once() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Launch", &[&w.carol.id, &w.bob.id]).await;
    post_ok(&mut alice, &room, "a", "launch date is friday").await;
    let seq = post_ok(&mut carol, &room, "c", "launch checklist from globex").await;
    assert_eq!(
        found(&mut alice, "launch").await,
        found(&mut carol, "launch").await
    );
    assert_eq!(found(&mut carol, "launch").await.len(), 2);

    // Recalled: gone for everyone, at once.
    carol
        .act(&room, Action::Recall { message: seq })
        .await
        .expect("recall");
    assert_eq!(found(&mut alice, "launch").await, ["launch date is friday"]);
    assert!(found(&mut alice, "checklist").await.is_empty());

    // A master who manages the group without being a member finds nothing in it.
    let managed = managed_group(&mut alice, "Managed", &[&w.carol.id]).await;
    post_ok(
        &mut carol,
        &managed,
        "m",
        "launch secrets of the managed group",
    )
    .await;
    assert_eq!(found(&mut carol, "secrets").await.len(), 1);
    assert!(found(&mut alice, "secrets").await.is_empty());

    // Removed: carol finds nothing of the group the moment the removal is acknowledged.
    alice
        .remove_member(&room, &w.carol.id)
        .await
        .expect("remove");
    assert!(found(&mut carol, "friday").await.is_empty());
    assert_eq!(
        found(&mut carol, "launch").await.len(),
        1,
        "only the managed group's"
    );
    // A deleted group's messages leave the index with it.
    alice.delete_group(&room).await.expect("delete");
    assert!(found(&mut alice, "friday").await.is_empty());
}

/// M6: Korean, Japanese and Chinese, written without spaces, are found by any two or more
/// consecutive characters; mixed with Latin words too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m6_korean_japanese_and_chinese_are_found_inside_words() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "アジア", &[&w.carol.id]).await;
    post_all(
        &mut alice,
        &room,
        &[
            "내일 회의는 10시입니다",
            "다음주 일정을 공유합니다",
            "会議の議事録を送ります",
            "明天开会讨论预算",
            "Q3 budget회의 notes",
        ],
    )
    .await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    assert_eq!(
        found(&mut carol, "회의").await,
        ["Q3 budget회의 notes", "내일 회의는 10시입니다"]
    );
    assert_eq!(
        found(&mut carol, "일정").await,
        ["다음주 일정을 공유합니다"]
    );
    assert_eq!(
        found(&mut carol, "議事録").await,
        ["会議の議事録を送ります"]
    );
    assert_eq!(found(&mut carol, "会議").await, ["会議の議事録を送ります"]);
    assert_eq!(found(&mut carol, "开会").await, ["明天开会讨论预算"]);
    assert!(
        found(&mut carol, "议事").await.is_empty(),
        "simplified is another character"
    );
    assert_eq!(
        found(&mut carol, "budget 회의").await,
        ["Q3 budget회의 notes"]
    );
    assert!(
        found(&mut carol, "회의록").await.is_empty(),
        "all its pairs, together"
    );
    let (hits, _) = carol
        .search_messages("議事録", None, None, None)
        .await
        .expect("search");
    assert!(
        hits[0].snippet.iter().any(|p| p.hit && p.text == "議事録"),
        "{:?}",
        hits[0].snippet
    );
}

/// M6: results come in pages that follow each other without repeats, newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m6_pages_follow_each_other() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Many", &[]).await;
    for i in 0..25 {
        post_ok(
            &mut alice,
            &room,
            &format!("p{i}"),
            &format!("status update {i}"),
        )
        .await;
    }
    let mut seqs = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let (hits, next) = alice
            .search_messages("status", None, cursor.as_deref(), Some(10))
            .await
            .expect("search");
        pages += 1;
        seqs.extend(hits.iter().map(|h| h.seq));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seqs.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seqs, sorted, "newest first, no repeats");
    assert_eq!(seqs.len(), 25);
    for (cursor, limit) in [(Some("nonsense"), None), (None, Some(0)), (None, Some(51))] {
        assert_eq!(
            alice
                .search_messages("status", None, cursor, limit)
                .await
                .refused(),
            ErrorCode::InvalidArgument
        );
    }
}

/// M6: a database without its search index (written before the index existed, or the index
/// file lost) is indexed in the background at the next start — its messages and its shared
/// things — saying so; what is posted meanwhile is found at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m6_an_older_database_is_indexed_in_the_background() {
    let mut server =
        Server::start_with_config("[limits]\nrequests_per_sec = 10000\nrequest_burst = 10000\n")
            .await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Old", &[]).await;
    for i in 0..1200 {
        post_ok(
            &mut alice,
            &room,
            &format!("o{i}"),
            &format!("archived note {i}"),
        )
        .await;
    }
    let recipe: Action = serde_json::from_value(
        serde_json::json!({"op":"post_note","title":"Archived recipe","body":"old"}),
    )
    .expect("action");
    alice.act(&room, recipe).await.expect("note");
    drop(alice);
    server.terminate().await;
    // As the previous build left it: no search index beside the database.
    for f in [
        "crossroom.search.db",
        "crossroom.search.db-wal",
        "crossroom.search.db-shm",
    ] {
        let _ = std::fs::remove_file(server.data_dir.join(f));
    }
    server.restart().await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    post_ok(&mut alice, &room, "new", "archived note from today").await;
    assert!(
        !found(&mut alice, "today").await.is_empty(),
        "a new post is found at once"
    );
    let mut all = 0;
    for _ in 0..100 {
        let mut cursor: Option<String> = None;
        all = 0;
        loop {
            let (hits, next) = alice
                .search_messages("archived", None, cursor.as_deref(), Some(50))
                .await
                .expect("search");
            all += hits.len();
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        if all == 1201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(all, 1201, "every message indexed, none twice");
    let mut notes = 0;
    for _ in 0..100 {
        notes = things(&mut alice, "recipe").await.len();
        if notes == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(notes, 1, "the shared things indexed too");
}

/// The kinds and titles `c` finds among the shared things for `q`.
async fn things(c: &mut Client, q: &str) -> Vec<(String, String)> {
    let (hits, _) = c
        .search_items(q, None, Some(50))
        .await
        .expect("search_items");
    hits.into_iter().map(|h| (h.kind, h.title)).collect()
}

/// M6: a group's shared things — a note's title, body and comments, an event's title, location
/// and memo, a task's title and content, folder and file names — are found by its members,
/// Korean inside words too; a switched-off feature hides its things (G18), the trash is not
/// searched, a removed member and a master who is not a member find nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m6_shared_things_are_found_by_the_groups_members() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Shared", &[&w.carol.id]).await;
    let act = |v: serde_json::Value| serde_json::from_value::<Action>(v).expect("action");
    let note = alice
        .act(&room, act(serde_json::json!({"op":"post_note","title":"Quarterly plan","body":"the budget 회의록 is attached"})))
        .await
        .expect("note")
        .seq;
    carol
        .act(
            &room,
            act(serde_json::json!({"op":"comment_note","note":note,"text":"looks splendid"})),
        )
        .await
        .expect("comment");
    alice
        .act(&room, act(serde_json::json!({"op":"create_calendar_event","title":"Offsite","start":1_800_000_000_000i64,"end":1_800_003_600_000i64,"location":"Seoul office","memo":"bring the budget"})))
        .await
        .expect("event");
    alice
        .act(&room, act(serde_json::json!({"op":"create_task","title":"Book the venue","content":"within budget","assignees":[w.carol.id.0],"completion":"all"})))
        .await
        .expect("task");
    let r = upload(
        &server,
        &w.carol.token,
        &format!("/v1/rooms/{room}/files?name=budget-2027.xlsx"),
        "application/octet-stream",
        b"xlsx".to_vec(),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let file = r.body["item"].as_u64().expect("item");

    let all = things(&mut carol, "budget").await;
    assert_eq!(all.len(), 4, "{all:?}");
    for (kind, title) in [
        ("note", "Quarterly plan"),
        ("event", "Offsite"),
        ("task", "Book the venue"),
        ("file", "budget-2027.xlsx"),
    ] {
        assert!(
            all.contains(&(kind.into(), title.into())),
            "{kind} {title}: {all:?}"
        );
    }
    assert_eq!(
        things(&mut alice, "splendid").await,
        [("note".into(), "Quarterly plan".into())]
    );
    assert_eq!(
        things(&mut alice, "회의").await,
        [("note".into(), "Quarterly plan".into())]
    );
    assert_eq!(
        things(&mut alice, "seoul").await,
        [("event".into(), "Offsite".into())]
    );
    assert_eq!(
        things(&mut alice, "budget -venue -offsite -quarterly").await,
        [("file".into(), "budget-2027.xlsx".into())]
    );
    assert_eq!(
        alice
            .search_items("budget from:x", None, None)
            .await
            .refused(),
        ErrorCode::InvalidArgument
    );

    // The trash is not searched; restored, the file is found again.
    alice
        .act(&room, Action::Trash { item: file })
        .await
        .expect("trash");
    assert_eq!(things(&mut carol, "xlsx").await.len(), 0);
    alice
        .act(&room, Action::Restore { item: file })
        .await
        .expect("restore");
    assert_eq!(things(&mut carol, "xlsx").await.len(), 1);

    // A switched-off feature hides its things (G18).
    alice
        .update_group(
            &room,
            GroupUpdate {
                features: Some(FeaturesPatch {
                    note: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("switch");
    assert!(things(&mut carol, "splendid").await.is_empty());

    // A master who is not a member finds nothing of the group's things.
    let managed = managed_group(&mut alice, "Managed", &[&w.carol.id]).await;
    carol
        .act(
            &managed,
            act(serde_json::json!({"op":"post_note","title":"Secret recipe","body":""})),
        )
        .await
        .expect("note");
    assert_eq!(things(&mut carol, "recipe").await.len(), 1);
    assert!(things(&mut alice, "recipe").await.is_empty());

    // Removed, carol finds nothing of the group at once.
    alice
        .remove_member(&room, &w.carol.id)
        .await
        .expect("remove");
    assert!(things(&mut carol, "budget").await.is_empty());
}

/// M6: the search index is derived from the log: a server killed (SIGKILL) while its index had
/// not applied everything finds every acknowledged message again after the restart, once the
/// index is rebuilt in the background — none lost, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m6_a_killed_servers_index_is_made_whole_again() {
    let mut server =
        Server::start_with_config("[limits]\nrequests_per_sec = 10000\nrequest_burst = 10000\n")
            .await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Killed", &[]).await;
    for i in 0..300 {
        post_ok(
            &mut alice,
            &room,
            &format!("k{i}"),
            &format!("survivor {i}"),
        )
        .await;
    }
    drop(alice);
    server.kill().await;
    server.restart().await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen.clear();
        let mut cursor: Option<String> = None;
        loop {
            let (hits, next) = alice
                .search_messages("survivor", None, cursor.as_deref(), Some(50))
                .await
                .expect("search");
            seen.extend(hits.into_iter().map(|h| h.seq));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        if seen.len() >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        (seen.len(), unique.len()),
        (300, 300),
        "none lost, none twice"
    );
}

/// M6, as a hostile tenant tries it: naming another company's group (`in:`) or its people
/// (`from:`) finds nothing of a group one is not in, and the same query asked by a member finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m6_naming_a_room_one_is_not_in_finds_nothing() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let theirs = group(&mut carol, "Globex only", &[&w.dave.id]).await;
    post_ok(&mut carol, &theirs, "s", "secret merger plans").await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    for q in [
        format!("merger in:{theirs}"),
        format!("in:{theirs}"),
        format!("merger from:{}", w.carol.id),
        "merger".to_owned(),
    ] {
        assert!(found(&mut alice, &q).await.is_empty(), "{q}");
        assert!(alice
            .search_items(&format!("globex in:{theirs}"), None, None)
            .await
            .expect("items")
            .0
            .is_empty());
    }
    let mut dave = server.connect(&w.dave.token, Encoding::MsgPack).await;
    assert_eq!(
        found(&mut dave, &format!("merger in:{theirs}")).await,
        ["secret merger plans"]
    );
}
