//! The look-ups a decision needs, done just before deciding so that decisions see the directory
//! and the room's items as they are: users with whether they hold external permission, company
//! settings, and the whole context of a room change ([`decision_context`]) or a feature action
//! ([`feature_context`]).

use crate::domain::directory::{holds_external_permission, CompanySettings};
use crate::domain::features;
use crate::domain::records::RoomRecord;
use crate::domain::rules::{Actor, Change, Context, Person};
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crossroom_protocol::{Action, Attachment, CompanyId, RoomId, UserId};
use std::collections::{HashMap, HashSet};

pub async fn company_settings(
    store: &dyn Store,
    company: &CompanyId,
) -> ApiResult<CompanySettings> {
    Ok(store
        .company(company)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("company {company}")))?
        .settings)
}

/// The named users that exist, each with whether they hold external permission (a user whose
/// company is gone — being deleted — holds none).
pub async fn people(store: &dyn Store, ids: &[UserId]) -> ApiResult<HashMap<UserId, Person>> {
    let users = store.users(ids).await?;
    let mut settings: HashMap<CompanyId, Option<CompanySettings>> = HashMap::new();
    let mut out = HashMap::with_capacity(users.len());
    for user in users {
        if !settings.contains_key(&user.company) {
            let s = store.company(&user.company).await?.map(|c| c.settings);
            settings.insert(user.company.clone(), s);
        }
        let permitted = settings
            .get(&user.company)
            .and_then(Option::as_ref)
            .is_some_and(|s| holds_external_permission(&user, s));
        out.insert(user.id.clone(), Person { user, permitted });
    }
    Ok(out)
}

/// Of `ids`, who lacks external permission now, with their company: a user the directory no
/// longer knows (deleted) lacks it too — an admission racing a deletion is undone like one
/// racing a withdrawal (G13, A2). The one test every re-check and reconciliation uses.
pub async fn lacking_permission(
    store: &dyn Store,
    ids: &[UserId],
) -> ApiResult<Vec<(UserId, CompanyId)>> {
    let found = people(store, ids).await?;
    let mut out = Vec::new();
    for id in ids {
        match found.get(id) {
            Some(p) if p.permitted => {}
            Some(p) => out.push((id.clone(), p.user.company.clone())),
            None => out.extend(id.company().map(|c| (id.clone(), c))),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// One user, fresh from the directory.
pub async fn person(store: &dyn Store, id: &UserId) -> ApiResult<Person> {
    people(store, std::slice::from_ref(id))
        .await?
        .remove(id)
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))
}

/// Look up what [`rules::decide`] needs for `change` (a free function: the room actor itself
/// is not `Sync`, and this awaits).
pub async fn decision_context(
    store: &dyn Store,
    max_participants: usize,
    room: &RoomRecord,
    actor: &Actor,
    change: &Change,
) -> ApiResult<Context> {
    let mut named = change.named();
    if matches!(change, Change::Convert { .. }) {
        named.extend(room.members.iter().cloned());
    }
    let people = people(store, &named).await?;
    let (contacts, actor_company, owned_groups) = match actor {
        Actor::User(p) => {
            let contacts: HashSet<UserId> = store.contacts(&p.user.id).await?.into_iter().collect();
            let settings = company_settings(store, &p.user.company).await?;
            let owned = if matches!(change, Change::Convert { .. }) {
                store.count_owned_groups(&p.user.company).await?
            } else {
                0
            };
            (contacts, Some(settings), owned)
        }
        Actor::Admin(_) | Actor::Policy(_) => (HashSet::new(), None, 0),
    };
    let invite = if matches!(change, Change::Join { .. }) {
        store.invite_of(&room.id).await?
    } else {
        None
    };
    Ok(Context {
        people,
        contacts,
        owner: company_settings(store, &room.owner_company).await?,
        actor_company,
        owned_groups,
        max_participants,
        invite,
        now_secs: crate::clock::now_secs(),
    })
}

/// The attachments of a post (M1): attachments this user uploaded to this room, each taken
/// for this post (its client id) — one post per attachment, and a retry of the same post takes
/// them again. An attachment older than `postable_ms` can no longer be taken (the files sweep
/// is about to remove it), unless this very post took it and committed.
pub async fn attachments_of(
    store: &dyn Store,
    room: &RoomId,
    user: &UserId,
    client_msg_id: &str,
    ids: Vec<String>,
    postable_ms: i64,
) -> ApiResult<Vec<Attachment>> {
    if ids.len() > MAX_ATTACHMENTS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_ATTACHMENTS} attachments per message"
        )));
    }
    if ids.iter().collect::<std::collections::HashSet<_>>().len() < ids.len() {
        return Err(ApiError::invalid("attachments names a file twice"));
    }
    let now = crate::clock::now_ms();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let unknown = || ApiError::not_found(format!("attachment {id}"));
        let f = match store.file(&id).await? {
            Some(f) if f.room == *room && f.created_by == *user && f.attachment => f,
            _ => return Err(unknown()),
        };
        let taken = if now - f.created_at < postable_ms {
            store.claim_file(&id, Some(client_msg_id)).await?
        } else {
            // Too old to take now: only a retry of the post that took it and committed.
            match store.claim_file(&id, None).await? {
                Some(c)
                    if c == client_msg_id
                        && store.posted_message(room, user, &c).await?.is_some() =>
                {
                    Some(c)
                }
                _ => {
                    return Err(ApiError::not_found(format!(
                        "attachment {id}: not posted in time, it is removed"
                    )))
                }
            }
        };
        if taken.as_deref() != Some(client_msg_id) {
            // Another post has it, or it is being removed.
            return Err(unknown());
        }
        out.push(Attachment {
            file: f.id,
            name: f.name,
            size: f.size,
            content_type: f.content_type,
        });
    }
    Ok(out)
}

/// Most attachments on one message.
const MAX_ATTACHMENTS: usize = 20;

/// Look up what [`features::decide`] needs: the named item, its parent folder, the message to
/// recall and its author's recall window, the actor's name.
pub async fn feature_context(
    store: &dyn Store,
    room: &RoomRecord,
    user: &UserId,
    action: &Action,
) -> ApiResult<features::Context> {
    let mut ctx = features::Context {
        now_ms: crate::clock::now_ms(),
        ..Default::default()
    };
    let item_id = match action {
        Action::EditNote { note, .. }
        | Action::DeleteNote { note }
        | Action::CommentNote { note, .. }
        | Action::DeleteComment { note, .. }
        | Action::LikeNote { note, .. } => Some(*note),
        Action::UpdateCalendarEvent { event, .. } | Action::DeleteCalendarEvent { event } => {
            Some(*event)
        }
        Action::UpdateTask { task, .. }
        | Action::CompleteTask { task }
        | Action::ReopenTask { task }
        | Action::DeleteTask { task } => Some(*task),
        Action::UpdateFolder { folder, .. } => Some(*folder),
        Action::Trash { item } | Action::Restore { item } | Action::Purge { item } => Some(*item),
        _ => None,
    };
    if let Some(id) = item_id {
        ctx.item = store.item(&room.id, id).await?;
    }
    if features::creates_item(action) {
        ctx.items = store.item_count(&room.id).await?;
    }
    if let Action::Restore { item } = action {
        ctx.ancestors = features::ancestors(&store.items(&room.id).await?, *item);
    }
    if let Action::CreateFolder {
        parent: Some(p), ..
    } = action
    {
        ctx.parent = store.item(&room.id, *p).await?;
    }
    if let Action::Recall { message } = action {
        ctx.message = store.event_at(&room.id, *message).await?;
        if let Some(company) = ctx.message.as_ref().and_then(|m| m.author.company()) {
            ctx.recall_window_secs = company_settings(store, &company)
                .await
                .map(|s| s.recall_window_secs)
                .unwrap_or(0);
        }
    }
    if matches!(action, Action::PostNote(_)) {
        ctx.actor_name = person(store, user)
            .await
            .map(|p| p.user.name)
            .unwrap_or_else(|_| user.to_string());
    }
    Ok(ctx)
}
