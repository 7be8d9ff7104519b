//! The room features beyond plain messages — notes (N1), calendar (E1), tasks (T1), folder (F1),
//! recall (M1) — as pure functions: [`decide`] turns an [`Action`] into log entries, [`apply`]
//! keeps an item's state in step with a committed entry (the store's projection uses it in the
//! same transaction), and [`occurrences`] expands calendar recurrences.
//!
//! Each feature is a file with its decision, what its entries do to its items, and its tests'
//! share of [`tests`]: `notes`, `calendar`, `tasks`, `folder`, `recall`; `context` holds what a
//! decision is given and the checks they share, `limits` the sizes.

mod calendar;
mod context;
mod folder;
mod limits;
mod notes;
mod recall;
mod tasks;

pub use calendar::occurrences;
use calendar::{apply_calendar, calendar};
use context::By;
pub use context::Context;
pub use folder::{ancestors, restore_of, subtree};
use folder::{apply_folder, folder};
pub use limits::*;
use notes::{apply_note, notes};
use recall::recall;
use tasks::{apply_task, tasks};
pub use tasks::{task_audience, task_of};

use crate::domain::records::RoomRecord;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{Action, ErrorCode, Event, EventBody, Item, RoomKind, UserId};

/// Decide a feature action by `user` (a member; `master` says whether they are a master).
pub fn decide(
    room: &RoomRecord,
    user: &UserId,
    master: bool,
    action: &Action,
    ctx: &Context,
) -> ApiResult<Vec<EventBody>> {
    let by = By {
        room,
        user,
        master,
        ctx,
        notices: room.kind == RoomKind::Room || room.features.notifications,
    };
    if creates_item(action) {
        room_has_space(ctx.items)?;
    }
    match action {
        Action::PostNote(_)
        | Action::EditNote { .. }
        | Action::DeleteNote { .. }
        | Action::CommentNote { .. }
        | Action::DeleteComment { .. }
        | Action::LikeNote { .. } => notes(&by, action),
        Action::CreateCalendarEvent(_)
        | Action::UpdateCalendarEvent { .. }
        | Action::DeleteCalendarEvent { .. } => calendar(&by, action),
        Action::CreateTask(_)
        | Action::UpdateTask { .. }
        | Action::CompleteTask { .. }
        | Action::ReopenTask { .. }
        | Action::DeleteTask { .. } => tasks(&by, action),
        Action::CreateFolder { .. }
        | Action::UpdateFolder { .. }
        | Action::Trash { .. }
        | Action::Restore { .. }
        | Action::Purge { .. } => folder(&by, action),
        Action::Recall { .. } => recall(&by, action),
    }
}

/// Refuse one more item in a room holding `items` ([`MAX_ITEMS_PER_ROOM`]).
pub fn room_has_space(items: u64) -> ApiResult<()> {
    if items >= MAX_ITEMS_PER_ROOM {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!(
                "a room holds at most {MAX_ITEMS_PER_ROOM} notes, events, tasks, folders and files"
            ),
        ));
    }
    Ok(())
}

/// Whether `action` adds an item to the room.
pub fn creates_item(action: &Action) -> bool {
    matches!(
        action,
        Action::PostNote(_)
            | Action::CreateCalendarEvent(_)
            | Action::CreateTask(_)
            | Action::CreateFolder { .. }
    )
}

/// The item an entry creates or changes, if any (creations name their own seq).
pub fn target(event: &Event) -> Option<u64> {
    match &event.body {
        EventBody::NotePosted { .. }
        | EventBody::CalendarEventCreated { .. }
        | EventBody::TaskCreated { .. }
        | EventBody::FolderCreated { .. }
        | EventBody::FileAdded { .. } => Some(event.seq),
        EventBody::NoteEdited { note, .. }
        | EventBody::NoteDeleted { note }
        | EventBody::NoteCommented { note, .. }
        | EventBody::CommentDeleted { note, .. }
        | EventBody::NoteLiked { note, .. } => Some(*note),
        EventBody::CalendarEventUpdated { event, .. }
        | EventBody::CalendarEventDeleted { event } => Some(*event),
        EventBody::TaskUpdated { task, .. }
        | EventBody::TaskCompleted { task }
        | EventBody::TaskReopened { task }
        | EventBody::TaskDeleted { task } => Some(*task),
        EventBody::FolderUpdated { folder, .. } => Some(*folder),
        EventBody::ItemTrashed { item }
        | EventBody::ItemRestored { item }
        | EventBody::ItemPurged { item } => Some(*item),
        _ => None,
    }
}

/// Apply a committed entry to the state of the item it targets.
pub fn apply(item: Option<Item>, event: &Event) -> Option<Item> {
    match &event.body {
        EventBody::NoteDeleted { .. }
        | EventBody::CalendarEventDeleted { .. }
        | EventBody::TaskDeleted { .. }
        | EventBody::ItemPurged { .. } => None,
        EventBody::NotePosted { .. }
        | EventBody::NoteEdited { .. }
        | EventBody::NoteCommented { .. }
        | EventBody::CommentDeleted { .. }
        | EventBody::NoteLiked { .. } => apply_note(item, event),
        EventBody::CalendarEventCreated { .. } | EventBody::CalendarEventUpdated { .. } => {
            apply_calendar(item, event)
        }
        EventBody::TaskCreated { .. }
        | EventBody::TaskUpdated { .. }
        | EventBody::TaskCompleted { .. }
        | EventBody::TaskReopened { .. } => apply_task(item, event),
        EventBody::FolderCreated { .. }
        | EventBody::FolderUpdated { .. }
        | EventBody::FileAdded { .. }
        | EventBody::ItemTrashed { .. }
        | EventBody::ItemRestored { .. } => apply_folder(item, event),
        _ => item,
    }
}

/// File bytes an action makes garbage once committed: a purged subtree's files, a recalled
/// message's attachments.
pub fn garbage_of(action: &Action, ctx: &Context, items: Vec<Item>) -> Vec<String> {
    match action {
        Action::Purge { item } => subtree(&items, *item)
            .into_iter()
            .filter_map(|id| match items.iter().find(|i| i.id() == id) {
                Some(Item::File(f)) => Some(f.file.clone()),
                _ => None,
            })
            .collect(),
        Action::Recall { .. } => match ctx.message.as_ref().map(|m| &m.body) {
            Some(EventBody::Message { attachments, .. }) => {
                attachments.iter().map(|a| a.file.clone()).collect()
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
