//! Presence and typing (M3): who of the room is online, pushed at most once a second when it
//! changes; `typing` relayed at most once a second per user, across nodes.

use super::*;

impl RoomActor {
    /// Relay "typing" to the other subscribers, here and on the other nodes (M3), at most once
    /// per user per second (repeats are acknowledged and dropped). Ephemeral: a full queue just
    /// misses it, and is closed as a slow consumer.
    pub(super) fn typing(&mut self, user: UserId, session: SessionId, reply: Reply) {
        if let Err(e) = rules::check_member(self.existing(), &user) {
            return reply.fail(e);
        }
        reply.send(RoomReply::Done);
        let now = Instant::now();
        if self
            .typed_at
            .get(&user)
            .is_some_and(|t| now.duration_since(*t) < TYPING_EVERY)
        {
            return;
        }
        if self.typed_at.len() >= 1024 {
            self.typed_at
                .retain(|_, t| now.duration_since(*t) < TYPING_EVERY);
        }
        self.typed_at.insert(user.clone(), now);
        self.ctx.bus.typing(&self.id, &user);
        let frame = ServerFrame::Typing {
            room: self.id.clone(),
            user,
        };
        self.subscribers
            .retain(|s, sub| *s == session || sub.out.send(&frame).is_ok());
    }

    /// Another node's member is typing: to every subscriber here, if they are a member in our
    /// view too (a removal we applied stops it, D4).
    pub(super) fn remote_typing(&mut self, user: UserId) {
        let Some(room) = &self.room else { return };
        if rules::check_member(room, &user).is_err() {
            return;
        }
        let frame = ServerFrame::Typing {
            room: self.id.clone(),
            user,
        };
        self.subscribers
            .retain(|_, sub| sub.out.send(&frame).is_ok());
    }

    /// The room's members with a live session on any node.
    pub(super) fn online_members(&self) -> BTreeSet<UserId> {
        let presence = self.ctx.sessions.presence();
        self.room
            .iter()
            .flat_map(|r| r.members.iter())
            .filter(|m| presence.is_online(m))
            .cloned()
            .collect()
    }

    /// Tell the subscribers who came online and who went offline since they were last told
    /// (M3); nothing when nothing moved. Called at most once per [`PRESENCE_EVERY`].
    pub(super) fn push_presence(&mut self) {
        self.presence_wanted = self.subscribers.values().any(|s| s.presence);
        if !self.presence_wanted {
            return;
        }
        let Some(head) = self.room.as_ref().map(|r| r.head) else {
            return;
        };
        let mark = (self.ctx.sessions.presence().generation(), head);
        if mark == self.presence_mark {
            return;
        }
        self.presence_mark = mark;
        let now = self.online_members();
        let online: Vec<UserId> = now.difference(&self.presence_sent).cloned().collect();
        let offline: Vec<UserId> = self.presence_sent.difference(&now).cloned().collect();
        self.presence_sent = now;
        if online.is_empty() && offline.is_empty() {
            return;
        }
        let frame = ServerFrame::Presence {
            room: self.id.clone(),
            online,
            offline,
            snapshot: false,
        };
        self.subscribers
            .retain(|_, sub| !sub.presence || sub.out.send(&frame).is_ok());
    }

    /// Who is online now, to a new subscriber that asked (M3); from now on it gets the changes.
    /// The first such subscriber also sets what the next change is computed from.
    pub(super) fn presence_snapshot(&mut self, session: SessionId) {
        let Some(sub) = self.subscribers.get_mut(&session) else {
            return;
        };
        sub.presence = true;
        self.presence_wanted = true;
        // The generation is read first: a change while we look moves it, and is pushed next.
        let generation = self.ctx.sessions.presence().generation();
        let online = self.online_members();
        if self.subscribers.values().filter(|s| s.presence).count() == 1 {
            let head = self.room.as_ref().map_or(0, |r| r.head);
            self.presence_mark = (generation, head);
            self.presence_sent = online.clone();
        }
        let frame = ServerFrame::Presence {
            room: self.id.clone(),
            online: online.into_iter().collect(),
            offline: Vec::new(),
            snapshot: true,
        };
        if let Some(sub) = self.subscribers.get(&session) {
            if sub.out.send(&frame).is_err() {
                self.subscribers.remove(&session);
            }
        }
    }
}
