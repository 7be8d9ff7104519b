//! A model-based property test (proptest): random sequences of posts, adds, removals, admin
//! revocations, adds racing a withdrawal or a disable, and reconnects against the real server, checked against a reference model of
//! who is a member at each seq. Every case must end with zero deliveries to anyone who was not a
//! member at that seq (D4, G12, G13) and zero missing deliveries to members (D1, D3).
//!
//! It runs on one node (SQLite), and on two cluster-mode nodes sharing a Redis: the users'
//! sessions are spread over both, reconnects switch node, and admins act through the other one.

use crate::harness::*;
use crossroom_protocol::client::Client;
use crossroom_protocol::{ClientFrame, Encoding, Position, RoomId, ServerFrame, UserId};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// The four users: 0 alice (acme, the master), 1 bob (acme), 2 carol and 3 dave (globex,
/// per-member permission, both granted).
const USERS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Post(usize),
    Add(usize),
    Remove(usize),
    /// The globex admin withdraws the user's external permission, then grants it again.
    Revoke(usize),
    /// Alice adds the user while, at the same instant, the globex admin withdraws their
    /// permission (through the other node); then grants it again. Either outcome is allowed —
    /// refused, or admitted then removed — but never a member without permission.
    AddRacingWithdrawal(usize),
    /// The same race with the admin disabling the user (which also closes their sessions, 4502);
    /// then enabling them again, and the user reconnects.
    AddRacingDisable(usize),
    Reconnect(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..USERS).prop_map(Op::Post),
        2 => (1..USERS).prop_map(Op::Add),
        1 => (1..USERS).prop_map(Op::Remove),
        1 => (2..USERS).prop_map(Op::Revoke),
        1 => (2..USERS).prop_map(Op::AddRacingWithdrawal),
        1 => (2..USERS).prop_map(Op::AddRacingDisable),
        1 => (0..USERS).prop_map(Op::Reconnect),
    ]
}

/// One user's side of a case.
struct Seat {
    id: UserId,
    token: String,
    client: Client,
    subscribed: bool,
    /// Last event seq received in this room.
    last: Option<u64>,
    /// Where a (re)subscription resumes from: the last event seq, unless they rejoined since.
    resume: Option<u64>,
    /// Every event seq received in this room, in arrival order.
    received: Vec<u64>,
    /// Deliveries owed: seqs after this (exclusive) while a member and subscribed.
    owed_from: Option<u64>,
}

/// Membership intervals: (joined at, removed at — the removal entry is still theirs).
#[derive(Default)]
struct Model {
    head: u64,
    epoch: u64,
    spans: HashMap<usize, Vec<(u64, Option<u64>)>>,
    /// Per user, the seqs owed to them.
    owed: HashMap<usize, BTreeSet<u64>>,
}

impl Model {
    fn member(&self, u: usize) -> bool {
        self.spans
            .get(&u)
            .and_then(|v| v.last())
            .is_some_and(|(_, end)| end.is_none())
    }

    fn member_at(&self, u: usize, seq: u64) -> bool {
        self.spans.get(&u).is_some_and(|v| {
            v.iter()
                .any(|(a, b)| *a <= seq && b.is_none_or(|b| seq <= b))
        })
    }

    /// A new entry at head+1: owed to every subscribed member (and to one being removed by it).
    fn entry(&mut self, seats: &[Seat], removed: Option<usize>) -> u64 {
        self.head += 1;
        for (u, seat) in seats.iter().enumerate() {
            if seat.subscribed && (self.member(u) || removed == Some(u)) {
                self.owed.entry(u).or_default().insert(self.head);
            }
        }
        self.head
    }
}

async fn seat(server: &Server, p: &Person) -> Seat {
    Seat {
        id: p.id.clone(),
        token: p.token.clone(),
        client: server.connect(&p.token, Encoding::MsgPack).await,
        subscribed: false,
        last: None,
        resume: None,
        received: Vec::new(),
        owed_from: None,
    }
}

/// Read a seat's pushes for `room` until it has seen `upto`, or `wait` passes.
async fn drain(
    seat: &mut Seat,
    room: &RoomId,
    upto: Option<u64>,
    wait: Duration,
) -> Result<(), TestCaseError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if upto.is_some() && seat.last >= upto {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return match upto {
                Some(u) => Err(TestCaseError::fail(format!(
                    "{} stuck at {:?}, expected {u}",
                    seat.id, seat.last
                ))),
                None => Ok(()),
            };
        }
        match seat.client.next_push(left).await {
            Ok(ServerFrame::Event(e)) if e.room == *room => {
                if let Some(l) = seat.last {
                    prop_assert!(e.seq > l, "{}: {} after {}", seat.id, e.seq, l);
                }
                seat.last = Some(e.seq);
                seat.resume = Some(e.seq);
                seat.received.push(e.seq);
            }
            Ok(ServerFrame::Reset { room: r, .. }) if r == *room => {
                return Err(TestCaseError::fail(format!(
                    "{}: unexpected reset",
                    seat.id
                )));
            }
            Ok(_) => {}
            Err(crossroom_protocol::client::ClientError::Timeout(_)) if upto.is_none() => {
                return Ok(())
            }
            Err(e) => return Err(TestCaseError::fail(format!("{}: {e}", seat.id))),
        }
    }
}

async fn subscribe_seat(
    seat: &mut Seat,
    room: &RoomId,
    model: &Model,
) -> Result<(), TestCaseError> {
    let since = seat.resume.map(|seq| Position {
        epoch: model.epoch,
        seq,
    });
    let r = seat
        .client
        .request(ClientFrame::Subscribe {
            id: 0,
            room: room.clone(),
            since,
            presence: false,
        })
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    match r {
        ServerFrame::Subscribed { head, .. } => {
            prop_assert_eq!(head, model.head);
            seat.subscribed = true;
            seat.owed_from = Some(seat.resume.unwrap_or(head));
            Ok(())
        }
        other => Err(TestCaseError::fail(format!(
            "{}: subscribe got {other:?}",
            seat.id
        ))),
    }
}

async fn run_case(nodes: &[Server], w: &World, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let people = [&w.alice, &w.bob, &w.carol, &w.dave];
    let mut seats = Vec::new();
    // Which node each user is connected to (they switch on reconnect).
    let mut at: Vec<usize> = (0..USERS).map(|u| u % nodes.len()).collect();
    for (u, p) in people.into_iter().enumerate() {
        seats.push(seat(&nodes[at[u]], p).await);
    }
    let room = group(&mut seats[0].client, "model", &[]).await;
    let mut model = Model {
        head: 1,
        ..Default::default()
    };
    model.spans.insert(0, vec![(1, None)]);
    let r = seats[0]
        .client
        .request(ClientFrame::Subscribe {
            id: 0,
            room: room.clone(),
            since: None,
            presence: false,
        })
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let ServerFrame::Subscribed { epoch, .. } = r else {
        return Err(TestCaseError::fail("subscribe"));
    };
    model.epoch = epoch;
    seats[0].subscribed = true;
    seats[0].owed_from = Some(1);
    let globex = nodes[nodes.len() - 1].http(Some(&w.globex_key));

    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Post(u) => {
                let r = seats[u]
                    .client
                    .request(post(&room, &format!("c{i}"), "x"))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                if model.member(u) {
                    let want = model.entry(&seats, None);
                    prop_assert!(
                        matches!(r, ServerFrame::Posted { seq, .. } if seq == want),
                        "{r:?}"
                    );
                } else {
                    prop_assert!(matches!(r, ServerFrame::Error { .. }), "{r:?}");
                }
            }
            Op::Add(u) => {
                let target = seats[u].id.clone();
                let r = seats[0]
                    .client
                    .request(ClientFrame::AddMembers {
                        id: 0,
                        room: room.clone(),
                        users: vec![target],
                    })
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                if !model.member(u) {
                    let seq = model.head + 1;
                    model.spans.entry(u).or_default().push((seq, None));
                    model.entry(&seats, None);
                    // A (re)joined member starts afresh: what they missed is not theirs.
                    seats[u].subscribed = false;
                    seats[u].resume = None;
                }
                prop_assert!(
                    matches!(r, ServerFrame::Changed { seq, .. } if seq == model.head),
                    "{r:?}"
                );
            }
            Op::Remove(u) | Op::Revoke(u) => {
                let was = model.member(u);
                if let Op::Remove(_) = op {
                    let target = seats[u].id.clone();
                    let r = seats[0]
                        .client
                        .request(ClientFrame::RemoveMember {
                            id: 0,
                            room: room.clone(),
                            user: target,
                        })
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(matches!(r, ServerFrame::Changed { .. }), was, "{:?}", r);
                } else {
                    for grant in [false, true] {
                        let r = globex
                            .patch(
                                &format!("/v1/admin/users/{}", seats[u].id),
                                json!({ "external_permission": grant }),
                            )
                            .await
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(r.status, 200);
                    }
                }
                if was {
                    let seq = model.entry(&seats, Some(u));
                    if let Some(span) = model.spans.get_mut(&u).and_then(|v| v.last_mut()) {
                        span.1 = Some(seq);
                    }
                    // The removed user gets the removal entry, then nothing.
                    drain(&mut seats[u], &room, Some(seq), Duration::from_secs(5)).await?;
                    seats[u].subscribed = false;
                }
            }
            Op::AddRacingWithdrawal(u) => {
                let off = (
                    json!({ "external_permission": false }),
                    json!({ "external_permission": true }),
                );
                add_racing_withdrawal(&mut seats, &mut model, &room, &globex, u, off).await?;
            }
            Op::AddRacingDisable(u) => {
                // Their sessions close with the disable: nothing more is owed to this one.
                seats[u].subscribed = false;
                let off = (json!({ "active": false }), json!({ "active": true }));
                add_racing_withdrawal(&mut seats, &mut model, &room, &globex, u, off).await?;
                let fresh = nodes[at[u]].connect(&seats[u].token, Encoding::Json).await;
                let old = std::mem::replace(&mut seats[u].client, fresh);
                old.close().await;
            }
            Op::Reconnect(u) => {
                let owed_up_to = model
                    .owed
                    .get(&u)
                    .and_then(|o| o.iter().next_back().copied());
                if seats[u].subscribed && owed_up_to > seats[u].last {
                    drain(&mut seats[u], &room, owed_up_to, Duration::from_secs(5)).await?;
                }
                at[u] = (at[u] + 1) % nodes.len();
                let fresh = nodes[at[u]].connect(&seats[u].token, Encoding::Json).await;
                let old = std::mem::replace(&mut seats[u].client, fresh);
                old.close().await;
                seats[u].subscribed = false;
            }
        }
        // Members who are not subscribed subscribe (resuming from their last event).
        for (u, seat) in seats.iter_mut().enumerate() {
            if model.member(u) && !seat.subscribed {
                subscribe_seat(seat, &room, &model).await?;
            }
        }
        for (u, seat) in seats.iter_mut().enumerate() {
            let owed_up_to = model
                .owed
                .get(&u)
                .and_then(|o| o.iter().next_back().copied());
            if seat.subscribed && owed_up_to > seat.last {
                drain(seat, &room, owed_up_to, Duration::from_secs(5)).await?;
            }
        }
    }
    // Anything unauthorised would have arrived by now; collect it.
    let quiet = seats
        .iter_mut()
        .map(|s| drain(s, &room, None, Duration::from_millis(200)));
    for r in futures_util::future::join_all(quiet).await {
        r?;
    }
    for (u, s) in seats.iter().enumerate() {
        for seq in &s.received {
            prop_assert!(
                model.member_at(u, *seq),
                "{} received seq {} while not a member",
                s.id,
                seq
            );
        }
        let got: BTreeSet<u64> = s.received.iter().copied().collect();
        prop_assert_eq!(got.len(), s.received.len(), "{} got duplicates", s.id);
        let owed = model.owed.get(&u).cloned().unwrap_or_default();
        let missing: Vec<u64> = owed.difference(&got).copied().collect();
        prop_assert!(missing.is_empty(), "{} missed {:?}", s.id, missing);
    }
    for s in seats {
        s.client.close().await;
    }
    Ok(())
}

/// [`Op::AddRacingWithdrawal`]: run the race, learn its outcome from the room (the model cannot
/// predict it), check nobody is left a member without permission, and grant it again.
async fn add_racing_withdrawal(
    seats: &mut [Seat],
    model: &mut Model,
    room: &RoomId,
    globex: &crossroom_protocol::client::Http,
    u: usize,
    (withdraw_body, restore_body): (serde_json::Value, serde_json::Value),
) -> Result<(), TestCaseError> {
    let fail = |e: crossroom_protocol::client::ClientError| TestCaseError::fail(e.to_string());
    let target = seats[u].id.clone();
    let path = format!("/v1/admin/users/{target}");
    let was = model.member(u);
    let add = seats[0].client.request(ClientFrame::AddMembers {
        id: 0,
        room: room.clone(),
        users: vec![target.clone()],
    });
    let withdraw = globex.patch(&path, withdraw_body);
    let (added, withdrawn) = tokio::join!(add, withdraw);
    added.map_err(fail)?;
    prop_assert_eq!(withdrawn.map_err(fail)?.status, 200);
    // Both calls have returned: whatever they committed is committed. Alice's node may hear of
    // a removal made on the other node a moment later; wait for it (bounded).
    let mut info = None;
    for _ in 0..50 {
        let r = seats[0]
            .client
            .request(ClientFrame::GetRoom {
                id: 0,
                room: room.clone(),
            })
            .await
            .map_err(fail)?;
        let ServerFrame::Room { room: i, .. } = r else {
            return Err(TestCaseError::fail(format!("get_room: {r:?}")));
        };
        let settled = !i.members.contains(&target) && !i.masters.contains(&target);
        info = Some(i);
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info = info.expect("read");
    prop_assert!(
        !info.members.contains(&target),
        "{} is a member without permission",
        target
    );
    match (was, info.head - model.head) {
        // Refused: it never got in.
        (false, 0) => {}
        // Admitted, then removed (by the withdrawal or by the admission's re-check).
        (false, 2) => {
            let seq = model.head + 1;
            model.spans.entry(u).or_default().push((seq, None));
            model.entry(seats, None);
            seats[u].subscribed = false;
            seats[u].resume = None;
            let removed = model.entry(seats, Some(u));
            if let Some(span) = model.spans.get_mut(&u).and_then(|v| v.last_mut()) {
                span.1 = Some(removed);
            }
        }
        // Already a member: removed by the withdrawal.
        (true, 1) => {
            let removed = model.entry(seats, Some(u));
            if let Some(span) = model.spans.get_mut(&u).and_then(|v| v.last_mut()) {
                span.1 = Some(removed);
            }
            if seats[u].subscribed {
                drain(&mut seats[u], room, Some(removed), Duration::from_secs(5)).await?;
            }
            seats[u].subscribed = false;
        }
        (was, k) => {
            return Err(TestCaseError::fail(format!(
                "member before: {was}; {k} entries from the race"
            )))
        }
    }
    let r = globex.patch(&path, restore_body).await.map_err(fail)?;
    prop_assert_eq!(r.status, 200);
    Ok(())
}

#[test]
fn d4_g12_g13_model_zero_unauthorised_zero_missing() {
    run_model(|| async { (vec![Server::start().await], None) });
}

/// The same model across two cluster-mode nodes on one Redis.
#[test]
fn d4_g12_g13_model_across_two_nodes_zero_unauthorised_zero_missing() {
    run_model(|| async {
        let redis = Redis::start(&[]).await;
        let url = redis.url();
        let nodes = vec![
            Server::start_node(std::slice::from_ref(&url)).await,
            Server::start_node(std::slice::from_ref(&url)).await,
        ];
        (nodes, Some(redis))
    });
}

fn run_model<F, Fut>(start: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = (Vec<Server>, Option<Redis>)>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (nodes, _redis, w) = rt.block_on(async {
        let (nodes, redis) = start().await;
        let w = world(&nodes[0]).await;
        let globex = nodes[0].http(Some(&w.globex_key));
        globex
            .patch(
                "/v1/admin/company/settings",
                json!({ "external_permission": "per_member" }),
            )
            .await
            .expect("http");
        for u in [&w.carol.id, &w.dave.id] {
            globex
                .patch(
                    &format!("/v1/admin/users/{u}"),
                    json!({ "external_permission": true }),
                )
                .await
                .expect("http");
        }
        (nodes, redis, w)
    });
    let cases: u32 = std::env::var("CROSSROOM_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..30), |ops| {
        rt.block_on(run_case(&nodes, &w, ops))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
