//! Test vectors: real frames as hex MessagePack and as JSON, in `vectors/frames.json`, checked
//! both ways so that clients in other languages can test their codecs against the same bytes.
//!
//! Regenerate after an intended change with `CROSSROOM_BLESS=1 cargo test -p crossroom-protocol`.

use crossroom_protocol::*;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

fn client_frames() -> Vec<(&'static str, ClientFrame)> {
    vec![
        (
            "auth",
            ClientFrame::Auth {
                id: 1,
                token: "eyJhbGciOiJIUzI1NiJ9.e30.sig".into(),
            },
        ),
        ("ping", ClientFrame::Ping { id: 2 }),
        (
            "create_group",
            ClientFrame::CreateGroup {
                id: 3,
                name: "Launch plan".into(),
                description: "Acme × Globex".into(),
                members: vec!["carol@globex.example".into()],
                masters: vec![],
                add_self_as_member: true,
                features: None,
            },
        ),
        (
            "create_room",
            ClientFrame::CreateRoom {
                id: 4,
                name: "chat".into(),
                members: vec!["bob@acme.example".into(), "erin@globex.example".into()],
            },
        ),
        ("list_rooms", ClientFrame::ListRooms { id: 5 }),
        (
            "subscribe",
            ClientFrame::Subscribe {
                id: 6,
                room: "r_abc".into(),
                since: Some(Position {
                    epoch: 4_503_599_627_370_495,
                    seq: 41,
                }),
                presence: false,
            },
        ),
        (
            "unsubscribe",
            ClientFrame::Unsubscribe {
                id: 7,
                room: "r_abc".into(),
            },
        ),
        (
            "post",
            ClientFrame::Post {
                id: 8,
                room: "r_abc".into(),
                client_msg_id: "c-0001".into(),
                text: "héllo 👋".into(),
                attachments: vec![],
                mentions: vec![],
            },
        ),
        (
            "history",
            ClientFrame::History {
                id: 9,
                room: "r_abc".into(),
                before: Some(42),
                limit: Some(50),
            },
        ),
        (
            "mark_read",
            ClientFrame::MarkRead {
                id: 10,
                room: "r_abc".into(),
                seq: 41,
            },
        ),
        (
            "typing",
            ClientFrame::Typing {
                id: 11,
                room: "r_abc".into(),
            },
        ),
        (
            "add_members",
            ClientFrame::AddMembers {
                id: 13,
                room: "r_abc".into(),
                users: vec!["dave@globex.example".into()],
            },
        ),
        (
            "remove_member",
            ClientFrame::RemoveMember {
                id: 14,
                room: "r_abc".into(),
                user: "dave@globex.example".into(),
            },
        ),
        (
            "join_by_invite",
            ClientFrame::JoinByInvite {
                id: 22,
                token: "k3jq".into(),
            },
        ),
        (
            "act_post_note",
            ClientFrame::Act {
                id: 30,
                room: "r_abc".into(),
                action: Action::PostNote(NoteFields {
                    title: "Minutes".into(),
                    body: "…".into(),
                    others_may_edit: false,
                    notify: true,
                    pinned: false,
                }),
            },
        ),
        (
            "act_create_task",
            ClientFrame::Act {
                id: 32,
                room: "r_abc".into(),
                action: Action::CreateTask(TaskFields {
                    title: "Ship".into(),
                    content: String::new(),
                    due: Some(1_800_000_000_000),
                    category: String::new(),
                    assignees: vec!["carol@globex.example".into()],
                    completion: Completion::Any,
                }),
            },
        ),
        (
            "query_calendar",
            ClientFrame::Query {
                id: 31,
                room: "r_abc".into(),
                query: Query::Calendar {
                    from: 1_796_000_000_000,
                    to: 1_797_000_000_000,
                    cursor: None,
                },
            },
        ),
        (
            "query_tasks_next_page",
            ClientFrame::Query {
                id: 34,
                room: "r_abc".into(),
                query: Query::Tasks {
                    cursor: Some("0_61".into()),
                },
            },
        ),
        (
            "search_messages",
            ClientFrame::SearchMessages {
                id: 35,
                query: "budget -draft from:carol@globex.example 회의".into(),
                tz: Some("Asia/Seoul".into()),
                cursor: None,
                limit: Some(20),
            },
        ),
        (
            "search_items",
            ClientFrame::SearchItems {
                id: 37,
                query: "budget in:r_abc".into(),
                cursor: None,
                limit: Some(10),
            },
        ),
        (
            "search_messages_next_page",
            ClientFrame::SearchMessages {
                id: 36,
                query: "budget".into(),
                tz: None,
                cursor: Some("1857300000000000123".into()),
                limit: None,
            },
        ),
    ]
}

fn server_frames() -> Vec<(&'static str, ServerFrame)> {
    let event = Event {
        room: "r_abc".into(),
        epoch: 4_503_599_627_370_495,
        seq: 42,
        ts: 1_795_834_102_000,
        author: "alice@acme.example".into(),
        body: EventBody::Message {
            client_msg_id: "c-0001".into(),
            text: "héllo 👋".into(),
            attachments: vec![],
            mentions: vec![],
            recalled: false,
        },
    };
    vec![
        (
            "hello",
            ServerFrame::Hello {
                id: None,
                protocol: PROTOCOL_VERSION,
                session: "s1".into(),
                user: UserInfo {
                    id: "alice@acme.example".into(),
                    company: "acme.example".into(),
                    name: "Alice".into(),
                    kind: "works".into(),
                    company_self_registered: false,
                },
                limits: Limits {
                    max_frame_bytes: 524288,
                    max_text_chars: 10000,
                    max_replay: 1000,
                    max_history_page: 100,
                    max_subscriptions: 1000,
                },
            },
        ),
        ("ok", ServerFrame::Ok { id: 7 }),
        (
            "pong",
            ServerFrame::Pong {
                id: 2,
                ts: 1_795_834_102_000,
            },
        ),
        (
            "posted",
            ServerFrame::Posted {
                id: 8,
                room: "r_abc".into(),
                epoch: 4_503_599_627_370_495,
                seq: 42,
                ts: 1_795_834_102_000,
                duplicate: false,
            },
        ),
        (
            "subscribed",
            ServerFrame::Subscribed {
                id: 6,
                room: "r_abc".into(),
                epoch: 4_503_599_627_370_495,
                head: 42,
                replayed: 1,
            },
        ),
        ("event_message", ServerFrame::Event(event.clone())),
        (
            "event_created",
            ServerFrame::Event(Event {
                seq: 1,
                body: EventBody::Created {
                    room_kind: RoomKind::Group,
                    name: "Launch plan".into(),
                    description: String::new(),
                    masters: vec!["alice@acme.example".into()],
                    members: vec!["alice@acme.example".into(), "carol@globex.example".into()],
                    features: Features::default(),
                },
                ..event.clone()
            }),
        ),
        (
            "history",
            ServerFrame::History {
                id: 9,
                room: "r_abc".into(),
                epoch: 4_503_599_627_370_495,
                events: vec![event],
                has_more: true,
            },
        ),
        (
            "error",
            ServerFrame::Error {
                id: Some(8),
                code: ErrorCode::NotInContacts,
                message: "carol@globex.example is not in your contacts; add them first".into(),
            },
        ),
        (
            "reset",
            ServerFrame::Reset {
                room: "r_abc".into(),
                epoch: 4_503_599_627_370_495,
                head: 42,
            },
        ),
        (
            "typing",
            ServerFrame::Typing {
                room: "r_abc".into(),
                user: "alice@acme.example".into(),
            },
        ),
        (
            "presence",
            ServerFrame::Presence {
                room: "r_abc".into(),
                online: vec!["alice@acme.example".into()],
                offline: vec!["carol@globex.example".into()],
                snapshot: false,
            },
        ),
        (
            "joined",
            ServerFrame::Joined {
                room: RoomSummary {
                    id: "r_abc".into(),
                    kind: RoomKind::Group,
                    name: "Launch plan".into(),
                    epoch: 4_503_599_627_370_495,
                    head: 1,
                    role: Role::Member,
                    last_read: 0,
                    unread: Some(0),
                },
            },
        ),
        (
            "joined_master_only",
            ServerFrame::Joined {
                room: RoomSummary {
                    id: "r_abd".into(),
                    kind: RoomKind::Group,
                    name: "Vendors".into(),
                    epoch: 4_503_599_627_370_495,
                    head: 3,
                    role: Role::MasterOnly,
                    last_read: 0,
                    unread: None,
                },
            },
        ),
        (
            "changed",
            ServerFrame::Changed {
                id: 13,
                room: "r_abc".into(),
                epoch: 4_503_599_627_370_495,
                seq: 57,
                left_out: vec![LeftOut {
                    user: "dave@globex.example".into(),
                    reason: ErrorCode::NoExternalPermission,
                }],
            },
        ),
        (
            "event_member_removed",
            ServerFrame::Event(Event {
                room: "r_abc".into(),
                epoch: 4_503_599_627_370_495,
                seq: 58,
                ts: 1_795_834_102_000,
                author: "#policy@globex.example".into(),
                body: EventBody::MemberRemoved {
                    user: "dave@globex.example".into(),
                    reason: RemovalReason::Policy,
                },
            }),
        ),
        (
            "removed",
            ServerFrame::Removed {
                room: "r_abc".into(),
                reason: RemovalReason::Policy,
            },
        ),
        (
            "query_result_receipts",
            ServerFrame::QueryResult {
                id: 33,
                room: "r_abc".into(),
                result: QueryResult::Receipts {
                    message: 42,
                    read_count: 1,
                    readers: Some(vec!["carol@globex.example".into()]),
                },
            },
        ),
        (
            "contacts_with_a_self_registered_company",
            ServerFrame::Contacts {
                id: 26,
                contacts: vec![UserInfo {
                    id: "ceo@brand.example".into(),
                    company: "brand.example".into(),
                    name: "CEO".into(),
                    kind: "works".into(),
                    company_self_registered: true,
                }],
            },
        ),
        (
            "query_result_tasks_page",
            ServerFrame::QueryResult {
                id: 34,
                room: "r_abc".into(),
                result: QueryResult::Tasks {
                    tasks: vec![],
                    next: Some("0_61".into()),
                },
            },
        ),
        (
            "query_result_trash",
            ServerFrame::QueryResult {
                id: 35,
                room: "r_abc".into(),
                result: QueryResult::Folder {
                    items: vec![Item::File(FileItem {
                        id: 72,
                        file: "f_9b2c".into(),
                        folder: Some(70),
                        name: "plan.pdf".into(),
                        size: 5,
                        content_type: "application/pdf".into(),
                        sha256: "2cf24d".into(),
                        uploaded_by: "alice@acme.example".into(),
                        trashed: Some(Trashed {
                            by: "alice@acme.example".into(),
                            ts: 1767225600000,
                        }),
                    })],
                    restores: vec![Restore {
                        item: 72,
                        into: Some(70),
                        with: vec![69, 70],
                    }],
                    next: None,
                },
            },
        ),
        (
            "message_results",
            ServerFrame::MessageResults {
                id: 35,
                results: vec![crossroom_protocol::MessageHit {
                    room: "r_abc".into(),
                    seq: 42,
                    ts: 1_796_000_000_000,
                    author: "carol@globex.example".into(),
                    snippet: vec![
                        crossroom_protocol::SnippetPart {
                            text: "Q3 budget".into(),
                            hit: false,
                        },
                        crossroom_protocol::SnippetPart {
                            text: "회의".into(),
                            hit: true,
                        },
                        crossroom_protocol::SnippetPart {
                            text: " notes".into(),
                            hit: false,
                        },
                    ],
                }],
                next: Some("1857300000000000123".into()),
            },
        ),
        (
            "item_results",
            ServerFrame::ItemResults {
                id: 37,
                results: vec![crossroom_protocol::ItemHit {
                    room: "r_abc".into(),
                    item: 7,
                    kind: "note".into(),
                    title: "Quarterly plan".into(),
                    snippet: vec![
                        crossroom_protocol::SnippetPart {
                            text: "Quarterly plan\nthe ".into(),
                            hit: false,
                        },
                        crossroom_protocol::SnippetPart {
                            text: "budget".into(),
                            hit: true,
                        },
                    ],
                }],
                next: None,
            },
        ),
        (
            "task_notice",
            ServerFrame::TaskNotice {
                room: "r_abc".into(),
                task: 60,
                action: "task_completed".into(),
                by: "carol@globex.example".into(),
                seq: 63,
            },
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn entry<T: Serialize>(name: &str, direction: &str, f: &T) -> Value {
    json!({
        "name": name,
        "direction": direction,
        "json": serde_json::to_value(f).expect("json"),
        "msgpack_hex": hex(&encode(Encoding::MsgPack, f).expect("msgpack")),
    })
}

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    name: &str,
    f: &T,
    stored: &Value,
) {
    let want_hex = stored["msgpack_hex"].as_str().expect("hex");
    assert_eq!(
        hex(&encode(Encoding::MsgPack, f).expect("enc")),
        want_hex,
        "{name}: msgpack bytes"
    );
    let bytes = hex::decode(want_hex).expect("hex");
    let back: T = decode(Encoding::MsgPack, &bytes).expect("decode msgpack");
    assert_eq!(&back, f, "{name}: msgpack decode");
    let text = serde_json::to_vec(&stored["json"]).expect("json");
    let back: T = decode(Encoding::Json, &text).expect("decode json");
    assert_eq!(&back, f, "{name}: json decode");
}

/// `ClientFrame::TYPES` names every request the vectors hold (and the codec's unit test checks
/// that each name it lists is a request).
#[test]
fn the_request_type_list_is_complete() {
    let seen: std::collections::BTreeSet<String> = client_frames()
        .iter()
        .map(|(_, f)| {
            serde_json::to_value(f).expect("json")["type"]
                .as_str()
                .expect("type")
                .to_owned()
        })
        .collect();
    let listed: std::collections::BTreeSet<String> =
        ClientFrame::TYPES.iter().map(|t| (*t).to_owned()).collect();
    assert!(
        seen.is_subset(&listed),
        "not listed: {:?}",
        seen.difference(&listed)
    );
}

#[test]
fn vectors_match_the_codec_both_ways() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/frames.json");
    let mut all = Vec::new();
    for (n, f) in client_frames() {
        all.push(entry(n, "client", &f));
    }
    for (n, f) in server_frames() {
        all.push(entry(n, "server", &f));
    }
    if std::env::var_os("CROSSROOM_BLESS").is_some() {
        let text =
            serde_json::to_string_pretty(&json!({ "protocol": PROTOCOL_VERSION, "frames": all }))
                .expect("json");
        std::fs::write(path, text + "\n").expect("write vectors");
    }
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("vectors file")).expect("json");
    let frames = stored["frames"].as_array().expect("frames");
    let find = |dir: &str, name: &str| {
        frames
            .iter()
            .find(|v| v["direction"] == dir && v["name"] == name)
            .unwrap_or_else(|| panic!("vector {dir}/{name} missing"))
            .clone()
    };
    for (n, f) in client_frames() {
        check(n, &f, &find("client", n));
    }
    for (n, f) in server_frames() {
        check(n, &f, &find("server", n));
    }
    assert_eq!(frames.len(), client_frames().len() + server_frames().len());
}
