//! Commands on the room's feature items: an action (notes, calendar, tasks, folder, recall —
//! N1, E1, T1, F1, M1), decided on the items as committed; a file added to the folder.

use super::*;

impl RoomActor {
    /// A feature action (N1, E1, T1, F1, recall): decided against the items as committed.
    pub(super) async fn act(&mut self, user: UserId, action: Action, reply: Reply) {
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        if let Err(e) = rules::check_member(room, &user) {
            return reply.fail(e);
        }
        // Item decisions read committed item state: let what is queued land first.
        self.drain_pending().await;
        // What landed may have found the room deleted (on another node): answer, never drop.
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        let master = room.masters.binary_search(&user).is_ok();
        let ctx = match lookup::feature_context(&*self.ctx.store, room, &user, &action).await {
            Ok(c) => c,
            Err(e) => return reply.fail(e),
        };
        let entries = match features::decide(room, &user, master, &action, &ctx) {
            Ok(e) => e,
            Err(e) => return reply.fail(e),
        };
        if entries.is_empty() {
            return reply.send(RoomReply::Changed(Changed {
                room: self.id.clone(),
                epoch: room.epoch,
                seq: room.head,
                left_out: Vec::new(),
            }));
        }
        // Only a purge needs the whole tree, to know which file bytes go with it.
        let items = if matches!(action, Action::Purge { .. }) {
            match self.ctx.store.items(&self.id).await {
                Ok(items) => items,
                Err(e) => return reply.fail(e.into()),
            }
        } else {
            Vec::new()
        };
        let garbage = features::garbage_of(&action, &ctx, items);
        let notify = features::task_audience(&entries, &ctx, &user);
        let entries = stamp(&user, entries);
        let redo = RoomRequest::Act { user, action };
        self.append(entries, Ack::Acted(reply, garbage, notify), redo)
            .await;
    }

    /// F1: a file uploaded into the folder becomes a `file_added` entry (and a notice when the
    /// folder asks for one).
    pub(super) async fn add_file(
        &mut self,
        user: UserId,
        folder: Option<u64>,
        file: FileRecord,
        reply: Reply,
    ) {
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        if let Err(e) = rules::check_member(room, &user) {
            return reply.fail(e);
        }
        if room.kind == RoomKind::Group && !room.features.folder {
            return reply.fail(ApiError::new(
                ErrorCode::FeatureDisabled,
                "the folder is switched off in this group",
            ));
        }
        self.drain_pending().await;
        let Some(room) = &self.room else {
            return reply.fail(self.not_found());
        };
        let parent = match folder {
            None => None,
            Some(id) => match self.ctx.store.item(&self.id, id).await {
                Ok(Some(Item::Folder(f))) if f.trashed.is_none() => Some(f),
                Ok(_) => return reply.fail(ApiError::not_found(format!("folder {id}"))),
                Err(e) => return reply.fail(e.into()),
            },
        };
        let space = match self.ctx.store.item_count(&self.id).await {
            Ok(n) => features::room_has_space(n),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = space {
            return reply.fail(e);
        }
        let mut entries = vec![EventBody::FileAdded {
            folder,
            file: file.id.clone(),
            name: file.name.clone(),
            size: file.size,
            content_type: file.content_type.clone(),
            sha256: file.sha256.clone(),
        }];
        let notices = room.kind == RoomKind::Room || room.features.notifications;
        if notices && parent.as_ref().is_some_and(|f| f.notify_on_new_file) {
            let who = lookup::person(&*self.ctx.store, &user)
                .await
                .map(|p| p.user.name)
                .unwrap_or_else(|_| user.to_string());
            entries.push(EventBody::Notice {
                text: format!("{who} uploaded {}", file.name),
            });
        }
        let entries = stamp(&user, entries);
        let redo = RoomRequest::AddFile { user, folder, file };
        self.append(entries, Ack::Acted(reply, Vec::new(), Vec::new()), redo)
            .await;
    }
}
