//! Commands that change who is in the room and how: a change of members, masters or settings
//! (G4–G13), the group's deletion (G16), its invitation link (G14), and who a link no longer
//! admits; admissions re-checked against the directory as it is now.

use super::*;

impl RoomActor {
    /// Look up what the rules need, decide, apply to our state at once, and queue the entries.
    pub(super) async fn change(&mut self, actor: Actor, change: Change, reply: Reply) {
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        let decided = match lookup::decision_context(
            &*self.ctx.store,
            self.ctx.limits.max_participants,
            room,
            &actor,
            &change,
        )
        .await
        {
            Ok(ctx) => rules::decide(room, &actor, &change, &ctx),
            Err(e) => Err(e),
        };
        let Decision { entries, left_out } = match decided {
            Ok(d) => d,
            Err(e) => return reply.fail(e),
        };
        let Some(room) = &mut self.room else {
            return reply.fail(self.not_found());
        };
        if entries.is_empty() {
            return reply.send(RoomReply::Changed(Changed {
                room: self.id.clone(),
                epoch: room.epoch,
                seq: room.head,
                left_out,
            }));
        }
        // A replaced profile image's bytes go once the change is stored (G17).
        let garbage: Vec<String> = match (&change, &room.image) {
            (Change::SetImage { .. }, Some(old)) => vec![old.clone()],
            _ => Vec::new(),
        };
        let author = actor.id();
        for body in &entries {
            rules::apply(room, &author, body);
        }
        let entries = stamp(&author, entries);
        let redo = RoomRequest::Change { actor, change };
        self.append(entries, Ack::Changed(reply, left_out, garbage), redo)
            .await;
    }

    /// G16: masters, or the owner company's admins, delete a group and all its data for
    /// everyone at once.
    pub(super) async fn delete(&mut self, actor: Actor, reply: Reply) {
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        if room.kind != RoomKind::Group {
            return reply.fail(ApiError::invalid(
                "only external groups are deleted; leave a general room instead",
            ));
        }
        if let Err(e) = rules::check_manager(room, &actor) {
            return reply.fail(e);
        }
        // Everything queued before the delete lands first; nothing is queued after it.
        self.drain_pending().await;
        let Some(room) = self.room.take() else {
            return reply.fail(self.not_found());
        };
        let audit = NewAudit {
            ts: now_ms(),
            room: self.id.clone(),
            actor: actor.id(),
            action: "deleted".into(),
            detail: serde_json::json!({ "name": room.name }).to_string(),
            companies: room.companies(),
        };
        match self.ctx.store.delete_room(&self.id, audit.clone()).await {
            Ok(files) => {
                self.ctx.ops.publish(&audit);
                self.remove_blobs(files);
            }
            Err(e) => {
                self.reload().await;
                return reply.fail(e.into());
            }
        }
        tracing::info!(room = %self.id, by = %actor.id(), "group deleted");
        let gone = ServerFrame::RoomDeleted {
            room: self.id.clone(),
        };
        let mut told = HashSet::new();
        for u in room.members.iter().chain(&room.masters) {
            if told.insert(u) {
                self.ctx.sessions.push_to_user(u, &gone);
            }
        }
        self.subscribers.clear();
        reply.send(RoomReply::Done);
    }

    /// G14: the invitation link, managed by masters (and the owner company's admins).
    pub(super) async fn invite(&mut self, actor: Actor, op: InviteOp, reply: Reply) {
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        if room.kind != RoomKind::Group {
            return reply.fail(ApiError::invalid("general rooms have no invitation link"));
        }
        if let Err(e) = rules::check_manager(room, &actor) {
            return reply.fail(e);
        }
        if let InviteOp::Create {
            expires_in_secs: Some(s),
        } = op
        {
            if !(1..=MAX_INVITE_SECS).contains(&s) {
                return reply.fail(ApiError::invalid(format!(
                    "expires_in_secs must be 1 to {MAX_INVITE_SECS} (a year); omit it for a link \
                     that does not expire"
                )));
            }
        }
        let audit = |action: &str| NewAudit {
            ts: now_ms(),
            room: self.id.clone(),
            actor: actor.id(),
            action: action.into(),
            detail: "{}".into(),
            companies: room.companies(),
        };
        let result = match op {
            InviteOp::Get => self.ctx.store.invite_of(&self.id).await,
            InviteOp::Revoke => {
                let record = audit("invite_revoked");
                let r = self.ctx.store.set_invite(&self.id, None, record.clone());
                r.await.map(|()| {
                    self.ctx.ops.publish(&record);
                    None
                })
            }
            InviteOp::Create { expires_in_secs } => {
                let invite = Invite {
                    token: crate::random::token(),
                    expires_at: expires_in_secs.map(|s| crate::clock::now_secs() + s as i64),
                    barred: Vec::new(),
                };
                let record = audit("invite_created");
                let r = self
                    .ctx
                    .store
                    .set_invite(&self.id, Some(invite.clone()), record.clone());
                r.await.map(|()| {
                    self.ctx.ops.publish(&record);
                    Some(invite)
                })
            }
        };
        match result {
            Ok(_) if op == InviteOp::Revoke => reply.send(RoomReply::Done),
            Ok(invite) => reply.send(RoomReply::Invite(InviteLink {
                room: self.id.clone(),
                url: invite.as_ref().map(|i| self.ctx.invite_url(&i.token)),
                expires_at: invite.as_ref().and_then(|i| i.expires_at),
                token: invite.map(|i| i.token),
            })),
            Err(e) => reply.fail(e.into()),
        }
    }

    /// G14: a user a master (or an admin) removes is barred from the group's current link, and
    /// one a master adds again is let back in (a new link bars nobody).
    pub(super) async fn update_link_bars(&mut self, appended: &[Appended]) {
        let (mut bar, mut clear) = (Vec::new(), Vec::new());
        let mut by = None;
        for a in appended.iter().filter(|a| !a.duplicate) {
            match &a.event.body {
                EventBody::MemberRemoved {
                    user,
                    reason: RemovalReason::Removed,
                } => bar.push(user.clone()),
                EventBody::MembersAdded { users } => {
                    clear.extend(users.iter().filter(|u| **u != a.event.author).cloned())
                }
                _ => continue,
            }
            by = Some(a.event.author.clone());
        }
        let (Some(by), Some(room)) = (by, &self.room) else {
            return;
        };
        let Ok(Some(mut invite)) = self.ctx.store.invite_of(&self.id).await else {
            return;
        };
        let before = invite.barred.clone();
        invite.barred.retain(|u| !clear.contains(u));
        for u in bar {
            if !invite.barred.contains(&u) {
                invite.barred.push(u);
            }
        }
        if invite.barred == before {
            return;
        }
        let record = NewAudit {
            ts: now_ms(),
            room: self.id.clone(),
            actor: by,
            action: "invite_updated".into(),
            detail: serde_json::json!({ "barred": invite.barred }).to_string(),
            companies: room.companies(),
        };
        match self
            .ctx
            .store
            .set_invite(&self.id, Some(invite), record.clone())
            .await
        {
            Ok(()) => self.ctx.ops.publish(&record),
            Err(e) => tracing::warn!(room = %self.id, error = %e, "cannot update the link's bars"),
        }
    }

    /// The users that committed entries of an external group admitted (as members or masters).
    pub(super) fn admitted(&self, appended: &[Appended]) -> Vec<UserId> {
        if self.room.as_ref().is_none_or(|r| r.kind != RoomKind::Group) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for a in appended.iter().filter(|a| !a.duplicate) {
            match &a.event.body {
                EventBody::MembersAdded { users } | EventBody::MastersAdded { users } => {
                    out.extend(users.iter().cloned())
                }
                EventBody::Converted {
                    members, masters, ..
                } => out.extend(members.iter().chain(masters).cloned()),
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }
}
