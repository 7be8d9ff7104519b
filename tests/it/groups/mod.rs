//! External-group rules G2, G3, G8–G20 and D4, through real WebSocket and HTTP clients, one
//! file per topic: membership and removal, settings and what they decide, invitations, finding
//! groups (search, lists, admin creation and deletion). Each test names its rule; the helpers
//! they share are here.

mod finding;
mod invitations;
mod membership;
mod settings;

use crate::harness::*;
use crossroom_protocol::client::Client;
use crossroom_protocol::{
    close, ClientFrame, Encoding, ErrorCode, EventBody, Features, FeaturesPatch, RemovalReason,
    RoomId, RoomKind, ServerFrame, UserId,
};
use serde_json::json;
use std::time::Duration;

fn history(room: &RoomId) -> ClientFrame {
    ClientFrame::History {
        id: 0,
        room: room.clone(),
        before: None,
        limit: Some(100),
    }
}

async fn events(c: &mut Client, room: &RoomId) -> Vec<crossroom_protocol::Event> {
    match c.request(history(room)).await.expect("history") {
        ServerFrame::History { events, .. } => events,
        other => panic!("{other:?}"),
    }
}

async fn changed(c: &mut Client, f: ClientFrame) -> u64 {
    match c.request(f).await.expect("reply") {
        ServerFrame::Changed { seq, .. } => seq,
        other => panic!("expected changed, got {other:?}"),
    }
}

/// Wait for a push matching `want`, skipping others.
async fn push_until(c: &mut Client, want: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
    loop {
        let f = c.next_push(Duration::from_secs(10)).await.expect("push");
        if want(&f) {
            return f;
        }
    }
}

/// Nothing more arrives that is about `room` (the removal line, D4).
async fn nothing_more_about(c: &mut Client, room: &RoomId) {
    while let Ok(f) = c.next_push(Duration::from_millis(400)).await {
        let about = match &f {
            ServerFrame::Event(e) => e.room == *room,
            ServerFrame::Typing { room: r, .. } => r == room,
            _ => false,
        };
        assert!(!about, "received after removal: {f:?}");
    }
}

async fn invite(c: &mut Client, f: ClientFrame) -> (Option<String>, Option<String>) {
    match c.request(f).await.expect("reply") {
        ServerFrame::Invite { token, url, .. } => (token, url),
        other => panic!("{other:?}"),
    }
}

async fn get_room(c: &mut Client, room: &RoomId) -> crossroom_protocol::RoomInfo {
    match c
        .request(ClientFrame::GetRoom {
            id: 0,
            room: room.clone(),
        })
        .await
        .expect("room")
    {
        ServerFrame::Room { room, .. } => room,
        other => panic!("{other:?}"),
    }
}

fn switch(room: &RoomId, features: FeaturesPatch) -> ClientFrame {
    ClientFrame::UpdateGroup {
        id: 0,
        room: room.clone(),
        name: None,
        description: None,
        features: Some(features),
    }
}

/// The first pushes after a subscribe with `since`: a `reset`, or the replayed seqs.
async fn resumed(c: &mut Client, room: &RoomId) -> Result<Vec<u64>, ()> {
    let epoch = events(c, room).await.first().expect("an event").epoch;
    subscribe(c, room, Some((epoch, 0))).await;
    let mut seqs = Vec::new();
    while let Ok(f) = c.next_push(Duration::from_millis(300)).await {
        match f {
            ServerFrame::Reset { .. } => return Err(()),
            ServerFrame::Event(e) => seqs.push(e.seq),
            _ => {}
        }
    }
    Ok(seqs)
}

async fn list(c: &mut Client) -> Vec<crossroom_protocol::RoomSummary> {
    match c
        .request(ClientFrame::ListRooms { id: 0 })
        .await
        .expect("rooms")
    {
        ServerFrame::Rooms { rooms, .. } => rooms,
        other => panic!("{other:?}"),
    }
}

async fn search_rooms(c: &mut Client, q: &str) -> Vec<RoomId> {
    let f = ClientFrame::Search {
        id: 0,
        query: q.into(),
        limit: None,
    };
    match c.request(f).await.expect("search") {
        ServerFrame::SearchResults { rooms, .. } => rooms.into_iter().map(|r| r.id).collect(),
        other => panic!("{other:?}"),
    }
}
