//! What a person reads on a dashboard: the display names of the rooms and users an ops frame
//! names, looked up in the store as the ops stream sends the frame and remembered for the
//! stream's life (bounded), so that records say "Launch plan" and "Alice", not `r_3f…` and ids.

use crate::store::Store;
use crossroom_protocol::ops::{AuditRecord, OpsServerFrame};
use crossroom_protocol::{RoomId, UserId};
use std::collections::HashMap;

/// Names remembered per stream before the memory starts over.
const MAX_KNOWN: usize = 4096;
/// Users named in one record that get a name (a 1,000-member creation names 1,000).
const MAX_PER_RECORD: usize = 64;

/// One ops stream's names: id → name, or `None` for an id the store does not know.
#[derive(Default)]
pub struct Names {
    known: HashMap<String, Option<String>>,
}

impl Names {
    /// Fill in the names `frame` needs: each audit record's, each busiest room's.
    pub async fn dress(&mut self, store: &dyn Store, frame: &mut OpsServerFrame) {
        match frame {
            OpsServerFrame::Audit(r) => self.dress_record(store, r).await,
            OpsServerFrame::Backlog { records, .. } => {
                for r in records {
                    self.dress_record(store, r).await;
                }
            }
            OpsServerFrame::Stats(s) => {
                for room in &mut s.busiest_rooms {
                    room.name = self.room(store, &room.room).await;
                }
            }
            _ => {}
        }
    }

    async fn dress_record(&mut self, store: &dyn Store, r: &mut AuditRecord) {
        // A rename: what the record says is the room's name from now on.
        if r.action == "group_updated" {
            if let Some(name) = r.detail.get("name").and_then(|n| n.as_str()) {
                self.remember(r.room.0.clone(), Some(name.to_owned()));
            }
        }
        if let Some(name) = self.room(store, &r.room).await {
            r.names.insert(r.room.0.clone(), name);
        }
        let mut users = vec![r.actor.0.clone()];
        user_ids(&r.detail, &mut users);
        for id in users.into_iter().take(MAX_PER_RECORD) {
            if let Some(name) = self.user(store, &UserId(id.clone())).await {
                r.names.insert(id, name);
            }
        }
    }

    async fn room(&mut self, store: &dyn Store, id: &RoomId) -> Option<String> {
        if let Some(known) = self.known.get(&id.0) {
            return known.clone();
        }
        // A failed look-up is not remembered: the next frame asks again.
        let name = store.room(id).await.ok()?.map(|r| r.name);
        self.remember(id.0.clone(), name.clone());
        name
    }

    async fn user(&mut self, store: &dyn Store, id: &UserId) -> Option<String> {
        if let Some(known) = self.known.get(&id.0) {
            return known.clone();
        }
        let name = store.user(id).await.ok()?.map(|u| u.name);
        self.remember(id.0.clone(), name.clone());
        name
    }

    fn remember(&mut self, id: String, name: Option<String>) {
        if self.known.len() >= MAX_KNOWN {
            self.known.clear();
        }
        self.known.insert(id, name);
    }
}

/// The user ids in an audit record's `detail` (an entry's body: `users`, `members`, `user`,
/// `left_out[].user`, …): every string that reads as `login@company`.
fn user_ids(detail: &serde_json::Value, out: &mut Vec<String>) {
    match detail {
        serde_json::Value::String(s) if looks_like_user(s) && !out.contains(s) => {
            out.push(s.clone());
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| user_ids(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| user_ids(v, out)),
        _ => {}
    }
}

fn looks_like_user(s: &str) -> bool {
    s.len() <= 320
        && !s.starts_with('#')
        && s.split_once('@').is_some_and(|(l, c)| {
            !l.is_empty() && c.contains('.') && !s.contains(char::is_whitespace)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_found_anywhere_in_the_detail() {
        let detail = serde_json::json!({
            "type": "converted", "name": "Plan of bob@x.example",
            "members": ["a@acme.example", "c@globex.example"],
            "left_out": [{"user": "e@globex.example", "reason": "line_user"}],
            "by": "#admin@acme.example"
        });
        let mut ids = Vec::new();
        user_ids(&detail, &mut ids);
        ids.sort();
        assert_eq!(
            ids,
            ["a@acme.example", "c@globex.example", "e@globex.example"]
        );
    }
}
