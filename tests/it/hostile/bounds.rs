//! Bounded work and answers: calendar ranges and ancient events, items per room, made-up room
//! ids, sign-ups per link, pages that fit, contact search by whole email, what the data directory
//! and the metrics reveal.

use super::*;

/// E1: a calendar range is checked without overflow — `from = i64::MIN, to = i64::MAX` is
/// refused as longer than ten years (it wrapped to -1 and was accepted; a debug build panicked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_ranges_that_overflow_are_refused() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Calendar", &[&w.carol.id]).await;
    for (from, to) in [(i64::MIN, i64::MAX), (i64::MIN, 0), (-1, i64::MAX)] {
        let r = alice
            .request(ClientFrame::Query {
                id: 0,
                room: room.clone(),
                query: crossroom_protocol::Query::Calendar {
                    from,
                    to,
                    cursor: None,
                },
            })
            .await
            .expect("reply");
        assert_eq!(
            error_code(&r),
            ErrorCode::InvalidArgument,
            "{from}..{to}: {r:?}"
        );
    }
    // The server is fine afterwards.
    alice
        .query(
            &room,
            crossroom_protocol::Query::Calendar {
                cursor: None,
                from: 0,
                to: 86_400_000,
            },
        )
        .await
        .expect("query");
}

/// The data directory is the owner's only (0700) and the database file too (0600): the
/// database, its WAL, file bytes and the outbox of invitation links were world-readable.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start().await;
    let _w = world(&server).await;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&server.data_dir), 0o700);
    assert_eq!(mode(&server.data_dir.join("crossroom.db")), 0o600);
    // The search index holds the words of every message: as private as the database.
    assert_eq!(mode(&server.data_dir.join("crossroom.search.db")), 0o600);
    for f in ["crossroom.db-wal", "crossroom.search.db-wal"] {
        let wal = server.data_dir.join(f);
        if wal.exists() {
            assert_eq!(mode(&wal), 0o600, "{f}");
        }
    }
}

/// `/metrics` is unauthenticated: by default it does not list the tenants (company ids as
/// labels); `[metrics] tenant_labels = true` turns them on (tested in `ops.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_do_not_name_tenants_by_default() {
    let server = Server::start().await;
    let w = world(&server).await;
    let _alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "crossroom_sessions"), 1.0);
    assert!(
        !m.keys().any(|k| k.contains("acme.example")),
        "{:?}",
        m.keys()
            .filter(|k| k.contains("company"))
            .collect::<Vec<_>>()
    );
}

/// G8: a contact's email is never shown, so search matches it only on the whole address — a
/// prefix of it matched, and ~400 probes spelled the address out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_search_matches_an_email_only_whole() {
    let server = Server::start().await;
    let w = world(&server).await;
    let zed = user_with(
        &server.http(Some(&w.globex_key)),
        serde_json::json!({
            "login": "zed", "name": "Zed", "kind": "works", "email": "private.zed@mail.example"
        }),
    )
    .await;
    contact(&server, &w.acme_key, &w.alice.id, &zed.id).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let found = |r: ServerFrame| match r {
        ServerFrame::SearchResults { contacts, .. } => contacts.iter().any(|c| c.id == zed.id),
        other => panic!("{other:?}"),
    };
    for (query, want) in [
        ("priv", false),
        ("private.zed@mail", false),
        ("mail.example", false),
        ("PRIVATE.ZED@MAIL.EXAMPLE", true),
        ("zed", true),
    ] {
        let r = alice
            .request(ClientFrame::Search {
                id: 0,
                query: query.into(),
                limit: None,
            })
            .await
            .expect("search");
        assert_eq!(found(r), want, "{query}");
    }
}

/// E1: an event cannot start ~80,000 years ago (calendar times lie in the years 1 to 9999: the
/// expansion of such events walked a million steps on an async worker and stalled neighbours),
/// and one from year one still expands today — its first occurrence near the query is computed,
/// not walked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e1_ancient_calendar_events_are_refused_and_old_ones_expand_today() {
    use crate::features::{act, act_ok};
    use crossroom_protocol::{Action, CalendarFields, Frequency, QueryResult, Recurrence};
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Calendar", &[&w.carol.id]).await;
    let monthly = |start: i64| CalendarFields {
        title: "Ancient".into(),
        start,
        end: start + 3_600_000,
        all_day: false,
        time_zone: "UTC".into(),
        recurrence: Some(Recurrence {
            freq: Frequency::Monthly,
            interval: 1,
            until: None,
            count: None,
        }),
        location: String::new(),
        memo: String::new(),
    };
    let day: i64 = 86_400_000;
    let ancient = -80_000 * 365 * day;
    let r = act(
        &mut alice,
        &room,
        Action::CreateCalendarEvent(monthly(ancient)),
    )
    .await;
    assert_eq!(error_code(&r), ErrorCode::InvalidArgument, "{r:?}");
    // 0001-01-31T00:00Z, monthly: December 2026 has its 31st.
    let year_one_jan_31 = -62_135_596_800_000 + 30 * day;
    act_ok(
        &mut alice,
        &room,
        Action::CreateCalendarEvent(monthly(year_one_jan_31)),
    )
    .await;
    let dec_2026 = 1_796_083_200_000;
    let r = alice
        .request(ClientFrame::Query {
            id: 0,
            room: room.clone(),
            query: crossroom_protocol::Query::Calendar {
                cursor: None,
                from: dec_2026,
                to: dec_2026 + 31 * day,
            },
        })
        .await
        .expect("reply");
    let ServerFrame::QueryResult {
        result: QueryResult::Calendar { occurrences, .. },
        ..
    } = r
    else {
        panic!("expected a calendar, got {r:?}");
    };
    assert_eq!(occurrences.len(), 1, "{occurrences:?}");
    assert_eq!(occurrences[0].start, dec_2026 + 30 * day);
}

/// A room holds at most 2,000 items (notes, events, tasks, folders, files): the next one is
/// `limit_exceeded`, and deleting one makes room again. (Unbounded, 45 notes of 100,000
/// characters already closed a reader's session.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_holds_a_bounded_number_of_items() {
    use crate::features::act;
    use crossroom_protocol::{Action, NoteFields};
    let server = Server::start_with_config(&load_limits("")).await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Items", &[&w.carol.id]).await;
    let note = |i: usize| {
        Action::PostNote(NoteFields {
            title: format!("n{i}"),
            body: String::new(),
            others_may_edit: false,
            notify: false,
            pinned: false,
        })
    };
    let mut created = 0;
    let mut first = None;
    for chunk in (0..2_001).collect::<Vec<_>>().chunks(50) {
        let mut ids = Vec::new();
        for i in chunk {
            ids.push(
                alice
                    .send(&mut ClientFrame::Act {
                        id: 0,
                        room: room.clone(),
                        action: note(*i),
                    })
                    .await
                    .expect("send"),
            );
        }
        for id in ids {
            match alice
                .reply_to(id, Duration::from_secs(30))
                .await
                .expect("reply")
            {
                ServerFrame::Changed { seq, .. } => {
                    created += 1;
                    first.get_or_insert(seq);
                }
                other => assert_eq!(error_code(&other), ErrorCode::LimitExceeded, "{other:?}"),
            }
        }
    }
    assert_eq!(created, 2_000);
    let r = act(
        &mut alice,
        &room,
        Action::DeleteNote {
            note: first.expect("a note"),
        },
    )
    .await;
    assert!(matches!(r, ServerFrame::Changed { .. }), "{r:?}");
    let r = act(&mut alice, &room, note(2_001)).await;
    assert!(matches!(r, ServerFrame::Changed { .. }), "{r:?}");
}

/// Made-up room ids cost nothing: a malformed one (here 30 KB) is `invalid_argument` before any
/// actor exists, and is not echoed back; a well-formed unknown one is `not_found`, its actor
/// gone with its answer, and asked again it is answered without one. (Each used to spawn an
/// actor: 12,000 typing frames with 30 KB ids grew the server by 449 MiB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_room_ids_create_no_state() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let typing = |room: String| ClientFrame::Typing {
        id: 0,
        room: room.into(),
    };
    for i in 0..300 {
        let r = alice
            .request(typing(format!("r_{i}{}", "x".repeat(30_000))))
            .await
            .expect("reply");
        let ServerFrame::Error { code, message, .. } = &r else {
            panic!("{r:?}")
        };
        assert_eq!(*code, ErrorCode::InvalidArgument);
        assert!(
            message.len() < 200,
            "the id is not echoed: {} bytes",
            message.len()
        );
    }
    assert_eq!(
        metric(&scrape(&server).await, "crossroom_rooms_active"),
        0.0
    );
    let ids: Vec<String> = (0..200)
        .map(|i| {
            let digits: String = format!("{i:0>26}")
                .bytes()
                .map(|d| (b'a' + d - b'0') as char)
                .collect();
            format!("r_{digits}")
        })
        .collect();
    for round in 0..2 {
        for id in &ids {
            let r = alice.request(typing(id.clone())).await.expect("reply");
            assert_eq!(error_code(&r), ErrorCode::NotFound, "round {round}: {r:?}");
        }
    }
    // An actor whose last answer raced a sender still holding its handle retires at its idle
    // tick instead (1 s for a missing room, so within 2 s).
    let mut active = f64::MAX;
    for _ in 0..100 {
        active = metric(&scrape(&server).await, "crossroom_rooms_active");
        if active == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(active, 0.0, "no actor stays for a room that does not exist");
}

/// Sign-up through an invitation link cannot impersonate or grow without bound: an existing
/// domain is refused, a new company is marked `self_registered` wherever it is listed, its
/// admin cannot raise the quota or `max_groups` past the operator's ceilings, and one link
/// admits `signups_per_link_per_hour` sign-ups (here 3) an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signups_are_marked_capped_and_bounded_per_link() {
    let server = Server::start_with_config("[limits]\nsignups_per_link_per_hour = 3\n").await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Open", &[]).await;
    let token = invite_token(&mut alice, &room).await;
    let signup = |domain: &str| {
        serde_json::json!({ "company": { "id": domain, "name": "Acme Corp" },
                            "user": { "login": "ceo", "name": "CEO" } })
    };
    let path = format!("/v1/invite/{token}/signup");
    let http = server.http(None);
    let r = http
        .post(&path, signup("acme.example"))
        .await
        .expect("http");
    assert_eq!(r.status, 409, "an existing domain: {:?}", r.body);
    let r = http
        .post(&path, signup("brand.example"))
        .await
        .expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["company"]["self_registered"], true);
    let key = r.body["admin_key"].as_str().expect("key").to_owned();
    let listed = server
        .operator()
        .get("/v1/admin/companies")
        .await
        .expect("http");
    let marks: Vec<(String, bool)> = listed.body["companies"]
        .as_array()
        .expect("companies")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_owned(),
                c["self_registered"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert!(marks.contains(&("brand.example".into(), true)), "{marks:?}");
    assert!(marks.contains(&("acme.example".into(), false)), "{marks:?}");
    // Users see the mark on each other too.
    alice
        .add_contact(&UserId::from("ceo@brand.example"))
        .await
        .expect("add_contact");
    let contacts = alice.list_contacts().await.expect("list_contacts");
    let flags: Vec<(String, bool)> = contacts
        .iter()
        .map(|c| (c.id.to_string(), c.company_self_registered))
        .collect();
    assert!(
        flags.contains(&("ceo@brand.example".into(), true)),
        "{flags:?}"
    );
    assert!(
        flags.contains(&(w.carol.id.to_string(), false)),
        "{flags:?}"
    );
    let admin = server.http(Some(&key));
    for patch in [
        serde_json::json!({ "shared_storage_quota": 1u64 << 62 }),
        serde_json::json!({ "max_groups": 1_000_000_000u64 }),
    ] {
        let r = admin
            .patch("/v1/admin/company/settings", patch.clone())
            .await
            .expect("http");
        assert_eq!(r.status, 400, "{patch}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "invalid_argument");
    }
    let r = admin
        .patch(
            "/v1/admin/company/settings",
            serde_json::json!({ "max_groups": 50 }),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "lowering is fine: {:?}", r.body);
    // Three sign-ups this hour (the refused one counted): the fourth is refused.
    let r = http
        .post(&path, signup("third.example"))
        .await
        .expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = http
        .post(&path, signup("fourth.example"))
        .await
        .expect("http");
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "rate_limited");
}

/// Paged answers: 45 notes of 100,000 characters (4.5 MB, past a session's 4 MiB outbound
/// budget in one answer) come to another member in pages that each fit, the session stays
/// open, and the pages hold every note once, pinned first then newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_come_in_pages_that_fit() {
    use crate::features::act_ok;
    use crossroom_protocol::{Action, NoteFields, Query, QueryResult};
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Heavy notes", &[&w.carol.id]).await;
    let mut ids = Vec::new();
    for i in 0..45 {
        let action = Action::PostNote(NoteFields {
            title: format!("n{i}"),
            body: "x".repeat(100_000),
            others_may_edit: false,
            notify: false,
            pinned: i == 3,
        });
        ids.push(act_ok(&mut alice, &room, action).await);
    }
    let mut carol = server.connect(&w.carol.token, Encoding::MsgPack).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let r = carol
            .request(ClientFrame::Query {
                id: 0,
                room: room.clone(),
                query: Query::Notes { cursor },
            })
            .await
            .expect("a page, not a close");
        let ServerFrame::QueryResult {
            result: QueryResult::Notes { notes, next },
            ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert!(
            !notes.is_empty() && notes.len() <= 3,
            "{} notes",
            notes.len()
        );
        seen.extend(notes.iter().map(|n| n.id));
        pages += 1;
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(pages >= 15, "{pages} pages");
    // Pinned first, then newest first; each note once.
    let mut expected = vec![ids[3]];
    expected.extend(ids.iter().rev().filter(|id| **id != ids[3]));
    assert_eq!(seen, expected);
    assert_eq!(
        carol
            .query(
                &room,
                Query::Notes {
                    cursor: Some("nonsense".into()),
                }
            )
            .await
            .refused(),
        ErrorCode::InvalidArgument
    );
}
