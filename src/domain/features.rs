//! The room features beyond plain messages — notes (N1), calendar (E1), tasks (T1), folder (F1),
//! recall (M1) — as pure functions: [`decide`] turns an [`Action`] into log entries, [`apply`]
//! keeps an item's state in step with a committed entry (the store's projection uses it in the
//! same transaction), and [`occurrences`] expands calendar recurrences.

use crate::domain::records::RoomRecord;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{
    Action, CalendarEvent, CalendarFields, Comment, Completion, ErrorCode, Event, EventBody,
    FileItem, Folder, Frequency, Item, Note, NoteFields, Occurrence, Recurrence, RoomKind, Task,
    TaskFields, Trashed, UserId,
};
use std::collections::BTreeMap;

/// N1 limits, in characters.
pub const MAX_NOTE_TITLE: usize = 200;
pub const MAX_NOTE_BODY: usize = 100_000;
/// T1 limits, in characters.
pub const MAX_TASK_TITLE: usize = 200;
pub const MAX_TASK_CONTENT: usize = 5_000;
pub const MAX_ASSIGNEES: usize = 100;
/// Comment, calendar text and folder name limits, in characters.
pub const MAX_COMMENT: usize = 10_000;
pub const MAX_CALENDAR_TEXT: usize = 10_000;
pub const MAX_FOLDER_NAME: usize = 255;
/// Most occurrences a calendar query returns.
pub const MAX_OCCURRENCES: usize = 2_000;
/// Most feature items (notes, calendar events, tasks, folders and files, trashed ones until
/// purged) in one room.
pub const MAX_ITEMS_PER_ROOM: u64 = 2_000;
/// Calendar times (event starts and ends, query ranges) lie in the years 1 to 9999 (UTC):
/// 0001-01-01T00:00Z ..
pub const MIN_TIME_MS: i64 = -62_135_596_800_000;
/// .. 10000-01-01T00:00Z (exclusive).
pub const MAX_TIME_MS: i64 = 253_402_300_800_000;

/// Whether `t` is a calendar time ([`MIN_TIME_MS`] to [`MAX_TIME_MS`]).
pub fn in_calendar(t: i64) -> bool {
    (MIN_TIME_MS..MAX_TIME_MS).contains(&t)
}

const DAY_MS: i64 = 86_400_000;

/// What a decision needs besides the room: the items it touches, looked up just before.
#[derive(Default)]
pub struct Context {
    /// The item the action names (note, event, task, folder or file), if it exists.
    pub item: Option<Item>,
    /// For folder actions: the parent folder named by the action, if it exists.
    pub parent: Option<Item>,
    /// For `recall`: the message entry.
    pub message: Option<Event>,
    /// For `recall`: the recall window of the message author's company, in seconds.
    pub recall_window_secs: u64,
    /// The acting user's display name (for notices).
    pub actor_name: String,
    /// For actions that create an item: how many the room holds.
    pub items: u64,
    /// For `restore`: the folders above the item, its own first ([`ancestors`]).
    pub ancestors: Vec<Item>,
    pub now_ms: i64,
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn check_len(what: &str, s: &str, min: usize, max: usize) -> ApiResult<()> {
    let n = chars(s);
    if n < min || n > max || (min > 0 && s.trim().is_empty()) {
        return Err(ApiError::invalid(format!(
            "{what} must be {min} to {max} characters (got {n})"
        )));
    }
    Ok(())
}

/// G18: is this feature switched on?
fn check_switch(room: &RoomRecord, on: bool, name: &str) -> ApiResult<()> {
    if room.kind == RoomKind::Group && !on {
        return Err(ApiError::new(
            ErrorCode::FeatureDisabled,
            format!("{name} is switched off in this group"),
        ));
    }
    Ok(())
}

fn gone(what: &str, id: u64) -> ApiError {
    ApiError::not_found(format!("{what} {id}"))
}

fn forbidden(msg: &str) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, msg)
}

fn note(ctx: &Context, id: u64) -> ApiResult<&Note> {
    match &ctx.item {
        Some(Item::Note(n)) if n.id == id => Ok(n),
        _ => Err(gone("note", id)),
    }
}

fn task(ctx: &Context, id: u64) -> ApiResult<&Task> {
    match &ctx.item {
        Some(Item::Task(t)) if t.id == id => Ok(t),
        _ => Err(gone("task", id)),
    }
}

fn trashed(item: &Item) -> Option<&Trashed> {
    match item {
        Item::Folder(f) => f.trashed.as_ref(),
        Item::File(f) => f.trashed.as_ref(),
        _ => None,
    }
}

fn check_note_fields(f: &NoteFields) -> ApiResult<()> {
    check_len("title", &f.title, 1, MAX_NOTE_TITLE)?;
    check_len("body", &f.body, 0, MAX_NOTE_BODY)
}

fn check_calendar(f: &CalendarFields) -> ApiResult<CalendarFields> {
    let mut f = f.clone();
    if f.title.trim().is_empty() {
        f.title = "No title".into();
    }
    check_len("title", &f.title, 1, MAX_NOTE_TITLE)?;
    check_len("location", &f.location, 0, MAX_CALENDAR_TEXT)?;
    check_len("memo", &f.memo, 0, MAX_CALENDAR_TEXT)?;
    if f.time_zone.is_empty() {
        f.time_zone = "UTC".into();
    }
    check_len("time_zone", &f.time_zone, 1, 64)?;
    if jiff::tz::TimeZone::get(&f.time_zone).is_err() {
        return Err(ApiError::invalid(format!(
            "time_zone {:?} is not an IANA time zone name (such as Europe/Berlin or UTC)",
            f.time_zone
        )));
    }
    if !in_calendar(f.start) || !in_calendar(f.end) {
        return Err(ApiError::invalid(
            "start and end must lie in the years 1 to 9999 (UTC)",
        ));
    }
    if f.end < f.start {
        return Err(ApiError::invalid("end must not be before start"));
    }
    if f.all_day && (f.start.rem_euclid(DAY_MS) != 0 || f.end.rem_euclid(DAY_MS) != 0) {
        return Err(ApiError::invalid(
            "all-day events start and end at midnight UTC of their days",
        ));
    }
    if let Some(r) = &f.recurrence {
        if r.interval == 0 || r.interval > 1000 {
            return Err(ApiError::invalid("recurrence interval must be 1 to 1000"));
        }
        if r.until.is_some_and(|u| u < f.start) {
            return Err(ApiError::invalid("recurrence ends before the event starts"));
        }
    }
    Ok(f)
}

fn check_task(room: &RoomRecord, f: &TaskFields) -> ApiResult<TaskFields> {
    check_len("title", &f.title, 1, MAX_TASK_TITLE)?;
    check_len("content", &f.content, 0, MAX_TASK_CONTENT)?;
    check_len("category", &f.category, 0, 100)?;
    let mut f = f.clone();
    f.assignees.sort();
    f.assignees.dedup();
    if f.assignees.is_empty() || f.assignees.len() > MAX_ASSIGNEES {
        return Err(ApiError::invalid(format!(
            "a task has 1 to {MAX_ASSIGNEES} assignees"
        )));
    }
    if let Some(u) = f
        .assignees
        .iter()
        .find(|u| room.members.binary_search(u).is_err())
    {
        return Err(ApiError::invalid(format!(
            "{u} is not a member of this room"
        )));
    }
    Ok(f)
}

fn check_folder_name(name: &str) -> ApiResult<()> {
    check_len("name", name, 1, MAX_FOLDER_NAME)?;
    if name.contains('/') || name == "." || name == ".." {
        return Err(ApiError::invalid(
            "a name cannot contain '/' or be '.' or '..'",
        ));
    }
    Ok(())
}

/// The parent folder named by an action must exist and not be in the trash.
fn check_parent(ctx: &Context, parent: Option<u64>) -> ApiResult<()> {
    match parent {
        None => Ok(()),
        Some(id) => match &ctx.parent {
            Some(Item::Folder(f)) if f.id == id && f.trashed.is_none() => Ok(()),
            _ => Err(gone("folder", id)),
        },
    }
}

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

/// Who acts, where, and with what looked up.
struct By<'a> {
    room: &'a RoomRecord,
    user: &'a UserId,
    master: bool,
    ctx: &'a Context,
    /// Whether feature changes also post a notice in the room.
    notices: bool,
}

/// An action routed to the wrong feature's decision (a bug, not a refusal).
fn misrouted() -> ApiError {
    ApiError::internal()
}

/// Decide an action on notes (N1).
fn notes(by: &By, action: &Action) -> ApiResult<Vec<EventBody>> {
    let By {
        room,
        user,
        master,
        ctx,
        notices,
    } = *by;
    let f = &room.features;
    Ok(match action {
        Action::PostNote(n) => {
            check_switch(room, f.note, "note")?;
            check_note_fields(n)?;
            let mut out = vec![EventBody::NotePosted { note: n.clone() }];
            if n.notify && notices {
                out.push(EventBody::Notice {
                    text: format!("{} posted a note: {}", ctx.actor_name, n.title),
                });
            }
            out
        }
        Action::EditNote {
            note: id,
            title,
            body,
            others_may_edit,
            pinned,
        } => {
            check_switch(room, f.note, "note")?;
            let n = note(ctx, *id)?;
            let author = n.author == *user;
            if !author && !n.fields.others_may_edit {
                return Err(forbidden("only the author may edit this note"));
            }
            if others_may_edit.is_some() && !author {
                return Err(forbidden("only the author decides who may edit"));
            }
            if title.is_none() && body.is_none() && others_may_edit.is_none() && pinned.is_none() {
                return Err(ApiError::invalid("nothing to change"));
            }
            if let Some(t) = title {
                check_len("title", t, 1, MAX_NOTE_TITLE)?;
            }
            if let Some(b) = body {
                check_len("body", b, 0, MAX_NOTE_BODY)?;
            }
            vec![EventBody::NoteEdited {
                note: *id,
                title: title.clone(),
                body: body.clone(),
                others_may_edit: *others_may_edit,
                pinned: *pinned,
            }]
        }
        Action::DeleteNote { note: id } => {
            check_switch(room, f.note, "note")?;
            let n = note(ctx, *id)?;
            if n.author != *user && !master {
                return Err(forbidden("only the author or a master deletes a note"));
            }
            vec![EventBody::NoteDeleted { note: *id }]
        }
        Action::CommentNote { note: id, text } => {
            check_switch(room, f.note, "note")?;
            note(ctx, *id)?;
            check_len("comment", text, 1, MAX_COMMENT)?;
            vec![EventBody::NoteCommented {
                note: *id,
                text: text.clone(),
            }]
        }
        Action::DeleteComment { note: id, comment } => {
            check_switch(room, f.note, "note")?;
            let n = note(ctx, *id)?;
            let c = n
                .comments
                .iter()
                .find(|c| c.id == *comment)
                .ok_or_else(|| gone("comment", *comment))?;
            if c.author != *user && !master {
                return Err(forbidden("only its author or a master deletes a comment"));
            }
            vec![EventBody::CommentDeleted {
                note: *id,
                comment: *comment,
            }]
        }
        Action::LikeNote { note: id, like } => {
            check_switch(room, f.note, "note")?;
            let n = note(ctx, *id)?;
            if n.likes.contains(user) == *like {
                Vec::new()
            } else {
                vec![EventBody::NoteLiked {
                    note: *id,
                    like: *like,
                }]
            }
        }
        _ => return Err(misrouted()),
    })
}

/// Decide an action on calendar events (E1).
fn calendar(by: &By, action: &Action) -> ApiResult<Vec<EventBody>> {
    let By { room, ctx, .. } = *by;
    let f = &room.features;
    Ok(match action {
        Action::CreateCalendarEvent(e) => {
            check_switch(room, f.event, "the calendar")?;
            vec![EventBody::CalendarEventCreated {
                event: check_calendar(e)?,
            }]
        }
        Action::UpdateCalendarEvent { event, fields } => {
            check_switch(room, f.event, "the calendar")?;
            match &ctx.item {
                Some(Item::CalendarEvent(e)) if e.id == *event => {}
                _ => return Err(gone("calendar event", *event)),
            }
            vec![EventBody::CalendarEventUpdated {
                event: *event,
                fields: check_calendar(fields)?,
            }]
        }
        Action::DeleteCalendarEvent { event } => {
            check_switch(room, f.event, "the calendar")?;
            match &ctx.item {
                Some(Item::CalendarEvent(e)) if e.id == *event => {}
                _ => return Err(gone("calendar event", *event)),
            }
            vec![EventBody::CalendarEventDeleted { event: *event }]
        }
        _ => return Err(misrouted()),
    })
}

/// Decide an action on tasks (T1).
fn tasks(by: &By, action: &Action) -> ApiResult<Vec<EventBody>> {
    let By {
        room,
        user,
        master,
        ctx,
        ..
    } = *by;
    let f = &room.features;
    Ok(match action {
        Action::CreateTask(t) => {
            check_switch(room, f.task, "tasks")?;
            vec![EventBody::TaskCreated {
                task: check_task(room, t)?,
            }]
        }
        Action::UpdateTask { task: id, fields } => {
            check_switch(room, f.task, "tasks")?;
            let t = task(ctx, *id)?;
            if t.assigner != *user && !t.status.contains_key(user) && !master {
                return Err(forbidden(
                    "only the assigner, an assignee or a master changes a task",
                ));
            }
            vec![EventBody::TaskUpdated {
                task: *id,
                fields: check_task(room, fields)?,
            }]
        }
        Action::CompleteTask { task: id } | Action::ReopenTask { task: id } => {
            check_switch(room, f.task, "tasks")?;
            let t = task(ctx, *id)?;
            let complete = matches!(action, Action::CompleteTask { .. });
            match t.status.get(user) {
                None => return Err(forbidden("only an assignee completes or reopens a task")),
                Some(done) if *done == complete => Vec::new(),
                Some(_) if complete => vec![EventBody::TaskCompleted { task: *id }],
                Some(_) => vec![EventBody::TaskReopened { task: *id }],
            }
        }
        Action::DeleteTask { task: id } => {
            check_switch(room, f.task, "tasks")?;
            let t = task(ctx, *id)?;
            if t.assigner != *user && !master {
                return Err(forbidden("only the assigner or a master deletes a task"));
            }
            vec![EventBody::TaskDeleted { task: *id }]
        }
        _ => return Err(misrouted()),
    })
}

/// Decide an action on the folder (F1).
fn folder(by: &By, action: &Action) -> ApiResult<Vec<EventBody>> {
    let By {
        room,
        user,
        master,
        ctx,
        ..
    } = *by;
    let f = &room.features;
    Ok(match action {
        Action::CreateFolder {
            parent,
            name,
            notify_on_new_file,
        } => {
            check_switch(room, f.folder, "the folder")?;
            check_folder_name(name)?;
            check_parent(ctx, *parent)?;
            vec![EventBody::FolderCreated {
                parent: *parent,
                name: name.clone(),
                notify_on_new_file: *notify_on_new_file,
            }]
        }
        Action::UpdateFolder {
            folder,
            name,
            notify_on_new_file,
        } => {
            check_switch(room, f.folder, "the folder")?;
            match &ctx.item {
                Some(Item::Folder(x)) if x.id == *folder && x.trashed.is_none() => {}
                _ => return Err(gone("folder", *folder)),
            }
            if let Some(n) = name {
                check_folder_name(n)?;
            }
            vec![EventBody::FolderUpdated {
                folder: *folder,
                name: name.clone(),
                notify_on_new_file: *notify_on_new_file,
            }]
        }
        Action::Trash { item } | Action::Restore { item } | Action::Purge { item } => {
            check_switch(room, f.folder, "the folder")?;
            let it = match &ctx.item {
                Some(i @ (Item::Folder(_) | Item::File(_))) if i.id() == *item => i,
                _ => return Err(gone("folder item", *item)),
            };
            match (action, trashed(it)) {
                (Action::Trash { .. }, None) => vec![EventBody::ItemTrashed { item: *item }],
                (Action::Trash { .. }, Some(_)) => {
                    return Err(ApiError::invalid("already in the trash"))
                }
                // Visible again: the trashed folders above it come back first, outermost first.
                (Action::Restore { .. }, Some(_)) => ctx
                    .ancestors
                    .iter()
                    .rev()
                    .filter(|a| trashed(a).is_some())
                    .map(|a| EventBody::ItemRestored { item: a.id() })
                    .chain([EventBody::ItemRestored { item: *item }])
                    .collect(),
                (Action::Purge { .. }, Some(t)) if t.by == *user || master => {
                    vec![EventBody::ItemPurged { item: *item }]
                }
                (Action::Purge { .. }, Some(_)) => {
                    return Err(forbidden(
                        "only whoever trashed it, or a master, deletes it for good",
                    ))
                }
                (Action::Restore { .. } | Action::Purge { .. }, None) => {
                    return Err(ApiError::invalid("not in the trash"))
                }
                _ => return Err(ApiError::internal()),
            }
        }
        _ => return Err(misrouted()),
    })
}

/// Decide an action on a recall (M1).
fn recall(by: &By, action: &Action) -> ApiResult<Vec<EventBody>> {
    let By {
        room,
        user,
        master,
        ctx,
        ..
    } = *by;
    let f = &room.features;
    Ok(match action {
        Action::Recall { message } => {
            check_switch(room, f.message, "messages")?;
            let ev = ctx
                .message
                .as_ref()
                .filter(|e| e.seq == *message)
                .ok_or_else(|| gone("message", *message))?;
            let EventBody::Message { recalled, .. } = &ev.body else {
                return Err(gone("message", *message));
            };
            if *recalled {
                return Err(ApiError::invalid("already recalled"));
            }
            let in_window =
                ctx.now_ms - ev.ts <= (ctx.recall_window_secs as i64).saturating_mul(1000);
            if !(master || (ev.author == *user && in_window)) {
                return Err(forbidden(
                    "only the author, within their company's recall window, or a master recalls a message",
                ));
            }
            vec![EventBody::MessageRecalled { message: *message }]
        }
        _ => return Err(misrouted()),
    })
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

fn task_done(status: &BTreeMap<UserId, bool>, completion: Completion) -> bool {
    match completion {
        Completion::All => !status.is_empty() && status.values().all(|d| *d),
        Completion::Any => status.values().any(|d| *d),
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
        EventBody::CalendarEventCreated { .. }
        | EventBody::CalendarEventUpdated { .. }
        | EventBody::TaskCreated { .. }
        | EventBody::TaskUpdated { .. }
        | EventBody::TaskCompleted { .. }
        | EventBody::TaskReopened { .. } => apply_plan(item, event),
        EventBody::FolderCreated { .. }
        | EventBody::FolderUpdated { .. }
        | EventBody::FileAdded { .. }
        | EventBody::ItemTrashed { .. }
        | EventBody::ItemRestored { .. } => apply_folder(item, event),
        _ => item,
    }
}

/// [`apply`] for an entry about a note.
fn apply_note(item: Option<Item>, event: &Event) -> Option<Item> {
    let (seq, ts, author) = (event.seq, event.ts, &event.author);
    match (&event.body, item) {
        (EventBody::NotePosted { note }, _) => Some(Item::Note(Note {
            id: seq,
            author: author.clone(),
            created_at: ts,
            edited_at: None,
            fields: note.clone(),
            comments: Vec::new(),
            likes: Default::default(),
            readers: Default::default(),
        })),
        (
            EventBody::NoteEdited {
                title,
                body,
                others_may_edit,
                pinned,
                ..
            },
            Some(Item::Note(mut n)),
        ) => {
            if let Some(t) = title {
                n.fields.title = t.clone();
            }
            if let Some(b) = body {
                n.fields.body = b.clone();
            }
            if let Some(o) = others_may_edit {
                n.fields.others_may_edit = *o;
            }
            if let Some(p) = pinned {
                n.fields.pinned = *p;
            }
            n.edited_at = Some(ts);
            Some(Item::Note(n))
        }
        (EventBody::NoteCommented { text, .. }, Some(Item::Note(mut n))) => {
            n.comments.push(Comment {
                id: seq,
                author: author.clone(),
                text: text.clone(),
                ts,
            });
            Some(Item::Note(n))
        }
        (EventBody::CommentDeleted { comment, .. }, Some(Item::Note(mut n))) => {
            n.comments.retain(|c| c.id != *comment);
            Some(Item::Note(n))
        }
        (EventBody::NoteLiked { like, .. }, Some(Item::Note(mut n))) => {
            if *like {
                n.likes.insert(author.clone());
            } else {
                n.likes.remove(author);
            }
            Some(Item::Note(n))
        }
        // An entry about an item that is gone changes nothing.
        (_, other) => other,
    }
}

/// [`apply`] for an entry about a calendar event or a task.
fn apply_plan(item: Option<Item>, event: &Event) -> Option<Item> {
    let (seq, author) = (event.seq, &event.author);
    match (&event.body, item) {
        (EventBody::CalendarEventCreated { event: fields }, _) => {
            Some(Item::CalendarEvent(CalendarEvent {
                id: seq,
                author: author.clone(),
                fields: fields.clone(),
            }))
        }
        (EventBody::CalendarEventUpdated { fields, .. }, Some(Item::CalendarEvent(mut e))) => {
            e.fields = fields.clone();
            Some(Item::CalendarEvent(e))
        }
        (EventBody::TaskCreated { task }, _) => {
            let status = task.assignees.iter().map(|u| (u.clone(), false)).collect();
            Some(Item::Task(Task {
                id: seq,
                assigner: author.clone(),
                fields: task.clone(),
                status,
                done: false,
            }))
        }
        (EventBody::TaskUpdated { fields, .. }, Some(Item::Task(mut t))) => {
            t.status = fields
                .assignees
                .iter()
                .map(|u| (u.clone(), t.status.get(u).copied().unwrap_or(false)))
                .collect();
            t.fields = fields.clone();
            t.done = task_done(&t.status, t.fields.completion);
            Some(Item::Task(t))
        }
        (
            EventBody::TaskCompleted { .. } | EventBody::TaskReopened { .. },
            Some(Item::Task(mut t)),
        ) => {
            let done = matches!(event.body, EventBody::TaskCompleted { .. });
            if let Some(s) = t.status.get_mut(author) {
                *s = done;
            }
            t.done = task_done(&t.status, t.fields.completion);
            Some(Item::Task(t))
        }
        // An entry about an item that is gone changes nothing.
        (_, other) => other,
    }
}

/// [`apply`] for an entry about a folder or a file.
fn apply_folder(item: Option<Item>, event: &Event) -> Option<Item> {
    let (seq, ts, author) = (event.seq, event.ts, &event.author);
    match (&event.body, item) {
        (
            EventBody::FolderCreated {
                parent,
                name,
                notify_on_new_file,
            },
            _,
        ) => Some(Item::Folder(Folder {
            id: seq,
            parent: *parent,
            name: name.clone(),
            notify_on_new_file: *notify_on_new_file,
            created_by: author.clone(),
            trashed: None,
        })),
        (
            EventBody::FolderUpdated {
                name,
                notify_on_new_file,
                ..
            },
            Some(Item::Folder(mut f)),
        ) => {
            if let Some(n) = name {
                f.name = n.clone();
            }
            if let Some(x) = notify_on_new_file {
                f.notify_on_new_file = *x;
            }
            Some(Item::Folder(f))
        }
        (
            EventBody::FileAdded {
                folder,
                file,
                name,
                size,
                content_type,
                sha256,
            },
            _,
        ) => Some(Item::File(FileItem {
            id: seq,
            file: file.clone(),
            folder: *folder,
            name: name.clone(),
            size: *size,
            content_type: content_type.clone(),
            sha256: sha256.clone(),
            uploaded_by: author.clone(),
            trashed: None,
        })),
        (EventBody::ItemTrashed { .. } | EventBody::ItemRestored { .. }, Some(mut it)) => {
            let t = matches!(event.body, EventBody::ItemTrashed { .. }).then(|| Trashed {
                by: author.clone(),
                ts,
            });
            match &mut it {
                Item::Folder(f) => f.trashed = t,
                Item::File(f) => f.trashed = t,
                _ => {}
            }
            Some(it)
        }
        // An entry about an item that is gone changes nothing.
        (_, other) => other,
    }
}

/// The folder a folder item is in (`None`: the root, or not a folder item).
fn folder_of(item: &Item) -> Option<u64> {
    match item {
        Item::Folder(f) => f.parent,
        Item::File(f) => f.folder,
        _ => None,
    }
}

/// The folders above item `id`, its own folder first, up to the root.
pub fn ancestors(items: &[Item], id: u64) -> Vec<Item> {
    let by_id: std::collections::HashMap<u64, &Item> = items.iter().map(|i| (i.id(), i)).collect();
    let mut out: Vec<Item> = Vec::new();
    let mut next = by_id.get(&id).and_then(|i| folder_of(i));
    while let Some(p) = next {
        // A folder's parent was created before it, so the chain ends; the guard is for a
        // damaged projection.
        match by_id.get(&p) {
            Some(f) if out.len() < by_id.len() => {
                out.push((*f).clone());
                next = folder_of(f);
            }
            _ => break,
        }
    }
    out
}

/// Where trashed `item` comes back ([`Restore`]).
pub fn restore_of(items: &[Item], item: &Item) -> crossroom_protocol::Restore {
    crossroom_protocol::Restore {
        item: item.id(),
        into: folder_of(item),
        with: ancestors(items, item.id())
            .iter()
            .rev()
            .filter(|a| trashed(a).is_some())
            .map(Item::id)
            .collect(),
    }
}

/// Ids of `root` and every folder item below it (for a purge).
pub fn subtree(items: &[Item], root: u64) -> Vec<u64> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        for it in items {
            let under = match it {
                Item::Folder(f) => f.parent == Some(parent),
                Item::File(f) => f.folder == Some(parent),
                _ => false,
            };
            if under && !out.contains(&it.id()) {
                out.push(it.id());
            }
        }
        i += 1;
    }
    out
}

// ---- calendar ---------------------------------------------------------------------------------

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let next = if m == 12 {
        days_from_civil(y + 1, 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    };
    (next - days_from_civil(y, m, 1)) as u32
}

/// The start of the n-th period after `start` (UTC), or `None` when that month has no such day
/// (a monthly event on the 31st skips 30-day months; a yearly one on Feb 29 skips common years).
fn nth_start(start: i64, freq: Frequency, n: i64) -> Option<i64> {
    let day = start.div_euclid(DAY_MS);
    let time = start.rem_euclid(DAY_MS);
    match freq {
        Frequency::Daily => Some(start + n * DAY_MS),
        Frequency::Weekly => Some(start + n * 7 * DAY_MS),
        Frequency::Monthly | Frequency::Yearly => {
            let (y, m, d) = civil_from_days(day);
            let months = if freq == Frequency::Monthly {
                n
            } else {
                n * 12
            };
            let total = y * 12 + (m as i64 - 1) + months;
            let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
            (d <= days_in_month(ny, nm)).then(|| days_from_civil(ny, nm, d) * DAY_MS + time)
        }
    }
}

/// The clock an event repeats on (E1): its time zone, so that a weekly 09:00 meeting stays at
/// 09:00 across daylight-saving changes. All-day events repeat on UTC days (their days are
/// dates, stored as midnight UTC), as does an event whose zone the bundled database lacks.
struct Clock(Option<jiff::tz::TimeZone>);

impl Clock {
    fn of(f: &CalendarFields) -> Clock {
        if f.all_day {
            return Clock(None);
        }
        Clock(jiff::tz::TimeZone::get(&f.time_zone).ok())
    }

    /// The wall-clock time of an instant, as milliseconds of a UTC-like timeline.
    fn local(&self, t: i64) -> i64 {
        let (Some(tz), Ok(ts)) = (&self.0, jiff::Timestamp::from_millisecond(t)) else {
            return t;
        };
        t + i64::from(tz.to_offset(ts).seconds()) * 1000
    }

    /// The instant of a wall-clock time. A time a change skips (02:30 on the night clocks go
    /// forward) moves forward by the gap; a time a change repeats takes its first instant
    /// (RFC 5545's rule, jiff's "compatible").
    fn instant(&self, local: i64) -> Option<i64> {
        let Some(tz) = &self.0 else {
            return Some(local);
        };
        let wall =
            jiff::tz::Offset::UTC.to_datetime(jiff::Timestamp::from_millisecond(local).ok()?);
        let t = tz.to_ambiguous_timestamp(wall).compatible().ok()?;
        Some(t.as_millisecond())
    }
}

/// The step (in periods of `interval`) of the first occurrence that may overlap `from`: computed,
/// not walked, and at most a few steps early (a month's length varies; the walk from it checks).
fn first_step(start: i64, len: i64, r: &Recurrence, from: i64) -> i64 {
    let interval = i64::from(r.interval);
    let reach = from.saturating_sub(len.max(1)).saturating_sub(start);
    if reach < 0 {
        return 0;
    }
    let k = match r.freq {
        Frequency::Daily => reach / (interval * DAY_MS),
        Frequency::Weekly => reach / (interval * 7 * DAY_MS),
        Frequency::Monthly | Frequency::Yearly => {
            let per = if r.freq == Frequency::Monthly { 1 } else { 12 };
            let month = |t: i64| {
                let (y, m, _) = civil_from_days(t.div_euclid(DAY_MS));
                y * 12 + i64::from(m)
            };
            (month(start + reach) - month(start)) / (interval * per)
        }
    };
    (k - 1).max(0)
}

/// How many occurrences steps `0..k` produce (steps on a day their month lacks produce none).
/// Only monthly and yearly rules on the 29th to 31st skip: the Gregorian calendar repeats every
/// 4,800 months, so whole cycles are counted once, not walked.
fn produced_before(start: i64, r: &Recurrence, k: i64) -> i64 {
    let (_, _, d) = civil_from_days(start.div_euclid(DAY_MS));
    if matches!(r.freq, Frequency::Daily | Frequency::Weekly) || d <= 28 {
        return k;
    }
    let months = i64::from(r.interval) * if r.freq == Frequency::Monthly { 1 } else { 12 };
    let cycle = 4_800 / gcd(months, 4_800);
    let valid = |n: i64| {
        (0..n)
            .filter(|i| nth_start(start, Frequency::Monthly, i * months).is_some())
            .count() as i64
    };
    (k / cycle) * valid(cycle) + valid(k % cycle)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Occurrences of `events` overlapping `[from, to)`, in start order, at most
/// [`MAX_OCCURRENCES`]. Each event's expansion starts at its first occurrence near `from`
/// (computed), so an event that started long ago costs no more than one that starts today.
pub fn occurrences(events: &[CalendarEvent], from: i64, to: i64) -> Vec<Occurrence> {
    let mut out: Vec<Occurrence> = Vec::new();
    // Once MAX_OCCURRENCES are kept, an occurrence starting after the last kept one cannot be
    // in the answer.
    let mut bound = to;
    for e in events {
        let f = &e.fields;
        let len = f.end.saturating_sub(f.start);
        let Some(r) = f.recurrence else {
            if f.start < bound && f.end.max(f.start.saturating_add(1)) > from {
                out.push(Occurrence {
                    event: e.id,
                    start: f.start,
                    end: f.end,
                });
            }
            continue;
        };
        // Steps are taken on the event's wall clock; a zone is at most 26 hours off UTC, so
        // looking two days early finds no later step than the first one that matters.
        let clock = Clock::of(f);
        let local = clock.local(f.start);
        let k0 = first_step(local, len, &r, from.saturating_sub(2 * DAY_MS));
        let mut produced = match r.count {
            Some(_) => produced_before(local, &r, k0),
            None => 0,
        };
        let mut kept = 0;
        // Bounded: from `k0`, a few steps reach `from`, and between two occurrences at most
        // eleven steps skip (a day some months lack).
        for n in k0..k0 + 12 * MAX_OCCURRENCES as i64 + 64 {
            if kept >= MAX_OCCURRENCES {
                break;
            }
            let Some(start) = nth_start(local, r.freq, n * i64::from(r.interval))
                .and_then(|wall| clock.instant(wall))
            else {
                continue;
            };
            if start >= bound || r.until.is_some_and(|u| start > u) {
                break;
            }
            if r.count.is_some_and(|c| produced >= i64::from(c)) {
                break;
            }
            produced += 1;
            if start.saturating_add(len.max(1)) > from {
                out.push(Occurrence {
                    event: e.id,
                    start,
                    end: start.saturating_add(len),
                });
                kept += 1;
            }
        }
        if out.len() >= 2 * MAX_OCCURRENCES {
            out.sort_by_key(|o| (o.start, o.event));
            out.truncate(MAX_OCCURRENCES);
            bound = out.last().map_or(to, |o| o.start.saturating_add(1));
        }
    }
    out.sort_by_key(|o| (o.start, o.event));
    out.truncate(MAX_OCCURRENCES);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossroom_protocol::{Features, RoomId};

    fn room() -> RoomRecord {
        RoomRecord {
            id: RoomId::from("r"),
            kind: RoomKind::Group,
            name: "n".into(),
            description: String::new(),
            owner_company: "a.example".into(),
            created_by: "a@a.example".into(),
            created_at: 0,
            features: Features::default(),
            masters: vec!["m@a.example".into()],
            members: vec![
                "a@a.example".into(),
                "b@a.example".into(),
                "m@a.example".into(),
            ],
            epoch: 1,
            head: 10,
            version: 0,
            converted_from: None,
            image: None,
            member_since: Default::default(),
        }
    }

    fn ev(seq: u64, author: &str, body: EventBody) -> Event {
        Event {
            room: RoomId::from("r"),
            epoch: 1,
            seq,
            ts: seq as i64 * 1000,
            author: author.into(),
            body,
        }
    }

    fn a() -> UserId {
        "a@a.example".into()
    }
    fn b() -> UserId {
        "b@a.example".into()
    }

    fn note_fields(notify: bool) -> NoteFields {
        NoteFields {
            title: "Plan".into(),
            body: "body".into(),
            others_may_edit: false,
            notify,
            pinned: false,
        }
    }

    #[test]
    fn n1_post_edit_delete_comment_like() {
        let r = room();
        let post = decide(
            &r,
            &a(),
            false,
            &Action::PostNote(note_fields(true)),
            &Context::default(),
        )
        .expect("post");
        assert_eq!(post.len(), 2, "with a notice");
        let mut item = apply(None, &ev(11, "a@a.example", post[0].clone()));
        let ctx = |item: &Option<Item>| Context {
            item: item.clone(),
            ..Default::default()
        };
        let edit = Action::EditNote {
            note: 11,
            title: Some("New".into()),
            body: None,
            others_may_edit: None,
            pinned: None,
        };
        assert_eq!(
            decide(&r, &b(), false, &edit, &ctx(&item))
                .expect_err("not author")
                .code,
            ErrorCode::Forbidden
        );
        let e = decide(&r, &a(), false, &edit, &ctx(&item)).expect("author edits");
        item = apply(item, &ev(12, "a@a.example", e[0].clone()));
        let c = decide(
            &r,
            &b(),
            false,
            &Action::CommentNote {
                note: 11,
                text: "hi".into(),
            },
            &ctx(&item),
        )
        .expect("comment");
        item = apply(item, &ev(13, "b@a.example", c[0].clone()));
        let l = decide(
            &r,
            &b(),
            false,
            &Action::LikeNote {
                note: 11,
                like: true,
            },
            &ctx(&item),
        )
        .expect("like");
        item = apply(item, &ev(14, "b@a.example", l[0].clone()));
        let Some(Item::Note(n)) = &item else { panic!() };
        assert_eq!(n.fields.title, "New");
        assert_eq!(n.comments.len(), 1);
        assert!(n.likes.contains(&b()));
        assert!(decide(
            &r,
            &b(),
            false,
            &Action::LikeNote {
                note: 11,
                like: true
            },
            &ctx(&item)
        )
        .expect("no-op")
        .is_empty());
        let del = Action::DeleteNote { note: 11 };
        assert!(decide(&r, &b(), false, &del, &ctx(&item)).is_err());
        assert!(
            decide(&r, &b(), true, &del, &ctx(&item)).is_ok(),
            "a master deletes"
        );
        assert!(decide(
            &r,
            &a(),
            false,
            &Action::PostNote(NoteFields {
                title: String::new(),
                ..note_fields(false)
            }),
            &Context::default()
        )
        .is_err());
        let too_long = NoteFields {
            body: "x".repeat(MAX_NOTE_BODY + 1),
            ..note_fields(false)
        };
        assert!(decide(
            &r,
            &a(),
            false,
            &Action::PostNote(too_long),
            &Context::default()
        )
        .is_err());
    }

    #[test]
    fn g18_switched_off_features_refuse() {
        let mut r = room();
        r.features.note = false;
        r.features.task = false;
        let e = decide(
            &r,
            &a(),
            false,
            &Action::PostNote(note_fields(false)),
            &Context::default(),
        )
        .expect_err("off");
        assert_eq!(e.code, ErrorCode::FeatureDisabled);
        r.features.note = true;
        r.features.notifications = false;
        let post = decide(
            &r,
            &a(),
            false,
            &Action::PostNote(note_fields(true)),
            &Context::default(),
        )
        .expect("on");
        assert_eq!(post.len(), 1, "no notice when notifications are off");
    }

    #[test]
    fn t1_completion_all_or_any() {
        let r = room();
        let fields = TaskFields {
            title: "Ship".into(),
            content: String::new(),
            due: None,
            category: String::new(),
            assignees: vec![a(), b()],
            completion: Completion::All,
        };
        let created = decide(
            &r,
            &"m@a.example".into(),
            true,
            &Action::CreateTask(fields.clone()),
            &Context::default(),
        )
        .expect("create");
        let mut item = apply(None, &ev(20, "m@a.example", created[0].clone()));
        item = apply(
            item,
            &ev(21, "a@a.example", EventBody::TaskCompleted { task: 20 }),
        );
        let Some(Item::Task(t)) = &item else { panic!() };
        assert!(!t.done, "all: one of two is not enough");
        item = apply(
            item,
            &ev(22, "b@a.example", EventBody::TaskCompleted { task: 20 }),
        );
        let Some(Item::Task(t)) = &item else { panic!() };
        assert!(t.done);
        let mut any = apply(
            None,
            &ev(
                30,
                "m@a.example",
                EventBody::TaskCreated {
                    task: TaskFields {
                        completion: Completion::Any,
                        ..fields.clone()
                    },
                },
            ),
        );
        any = apply(
            any,
            &ev(31, "a@a.example", EventBody::TaskCompleted { task: 30 }),
        );
        let Some(Item::Task(t)) = &any else { panic!() };
        assert!(t.done, "any: one is enough");
        let ctx = Context {
            item: any.clone(),
            ..Default::default()
        };
        assert!(
            decide(
                &r,
                &"m@a.example".into(),
                true,
                &Action::CompleteTask { task: 30 },
                &ctx
            )
            .is_err(),
            "not an assignee"
        );
        let outsider = TaskFields {
            assignees: vec!["z@z.example".into()],
            ..fields
        };
        assert!(
            decide(
                &r,
                &a(),
                false,
                &Action::CreateTask(outsider),
                &Context::default()
            )
            .is_err(),
            "assignees are members"
        );
    }

    #[test]
    fn f1_trash_restore_purge_rules() {
        let r = room();
        let folder = apply(
            None,
            &ev(
                40,
                "a@a.example",
                EventBody::FolderCreated {
                    parent: None,
                    name: "Docs".into(),
                    notify_on_new_file: true,
                },
            ),
        );
        let ctx = |item: &Option<Item>| Context {
            item: item.clone(),
            ..Default::default()
        };
        assert!(
            decide(&r, &a(), false, &Action::Purge { item: 40 }, &ctx(&folder)).is_err(),
            "only trashed items are purged"
        );
        let t = decide(&r, &a(), false, &Action::Trash { item: 40 }, &ctx(&folder)).expect("trash");
        let trashed = apply(folder, &ev(41, "a@a.example", t[0].clone()));
        assert!(
            decide(&r, &b(), false, &Action::Purge { item: 40 }, &ctx(&trashed)).is_err(),
            "not the deleter"
        );
        assert!(
            decide(&r, &b(), true, &Action::Purge { item: 40 }, &ctx(&trashed)).is_ok(),
            "a master"
        );
        assert!(
            decide(&r, &a(), false, &Action::Purge { item: 40 }, &ctx(&trashed)).is_ok(),
            "the deleter"
        );
        let restored = apply(
            trashed,
            &ev(42, "b@a.example", EventBody::ItemRestored { item: 40 }),
        );
        let Some(Item::Folder(f)) = &restored else {
            panic!()
        };
        assert!(f.trashed.is_none());
        let items = vec![
            restored.clone().expect("folder"),
            Item::Folder(Folder {
                id: 43,
                parent: Some(40),
                name: "Sub".into(),
                notify_on_new_file: false,
                created_by: a(),
                trashed: None,
            }),
            Item::File(FileItem {
                id: 44,
                file: "f".into(),
                folder: Some(43),
                name: "x".into(),
                size: 1,
                content_type: "t".into(),
                sha256: "s".into(),
                uploaded_by: a(),
                trashed: None,
            }),
            Item::File(FileItem {
                id: 45,
                file: "g".into(),
                folder: None,
                name: "y".into(),
                size: 1,
                content_type: "t".into(),
                sha256: "s".into(),
                uploaded_by: a(),
                trashed: None,
            }),
        ];
        let mut sub = subtree(&items, 40);
        sub.sort();
        assert_eq!(sub, vec![40, 43, 44]);
        assert!(decide(
            &r,
            &a(),
            false,
            &Action::CreateFolder {
                parent: None,
                name: "a/b".into(),
                notify_on_new_file: false
            },
            &Context::default()
        )
        .is_err());
    }

    #[test]
    fn m1_recall_window_and_masters() {
        let r = room();
        let msg = ev(
            50,
            "a@a.example",
            EventBody::Message {
                client_msg_id: "c".into(),
                text: "t".into(),
                attachments: vec![],
                mentions: vec![],
                recalled: false,
            },
        );
        let ctx = |now| Context {
            message: Some(msg.clone()),
            recall_window_secs: 3600,
            now_ms: now,
            ..Default::default()
        };
        let within = 50_000 + 3_599_000;
        let after = 50_000 + 3_601_000;
        assert!(decide(
            &r,
            &a(),
            false,
            &Action::Recall { message: 50 },
            &ctx(within)
        )
        .is_ok());
        assert_eq!(
            decide(
                &r,
                &a(),
                false,
                &Action::Recall { message: 50 },
                &ctx(after)
            )
            .expect_err("late")
            .code,
            ErrorCode::Forbidden
        );
        assert!(
            decide(
                &r,
                &"m@a.example".into(),
                true,
                &Action::Recall { message: 50 },
                &ctx(after * 10)
            )
            .is_ok(),
            "masters at any time"
        );
        assert!(
            decide(
                &r,
                &b(),
                false,
                &Action::Recall { message: 50 },
                &ctx(within)
            )
            .is_err(),
            "not the author"
        );
    }

    fn cal(start: i64, end: i64, r: Option<Recurrence>) -> CalendarEvent {
        CalendarEvent {
            id: 1,
            author: a(),
            fields: CalendarFields {
                title: "t".into(),
                start,
                end,
                all_day: false,
                time_zone: "UTC".into(),
                recurrence: r,
                location: String::new(),
                memo: String::new(),
            },
        }
    }

    /// The expansion walked from the first occurrence (what the computed start replaces).
    fn walked(events: &[CalendarEvent], from: i64, to: i64) -> Vec<Occurrence> {
        let mut out = Vec::new();
        for e in events {
            let f = &e.fields;
            let len = f.end - f.start;
            let r = f.recurrence.expect("recurring");
            let mut produced = 0u32;
            for n in 0.. {
                let Some(start) = nth_start(f.start, r.freq, n * r.interval as i64) else {
                    continue;
                };
                if start >= to || r.until.is_some_and(|u| start > u) {
                    break;
                }
                if r.count.is_some_and(|c| produced >= c) {
                    break;
                }
                produced += 1;
                if start + len.max(1) > from {
                    out.push(Occurrence {
                        event: e.id,
                        start,
                        end: start + len,
                    });
                }
            }
        }
        out.sort_by_key(|o| (o.start, o.event));
        out.truncate(MAX_OCCURRENCES);
        out
    }

    #[test]
    fn e1_computed_expansion_equals_the_walk() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let freqs = [
            Frequency::Daily,
            Frequency::Weekly,
            Frequency::Monthly,
            Frequency::Yearly,
        ];
        for case in 0..3_000 {
            let freq = freqs[next(4) as usize];
            let (y, m) = (1990 + next(30) as i64, 1 + next(12) as u32);
            let d = 1 + next(u64::from(days_in_month(y, m))) as u32;
            let start = days_from_civil(y, m, d) * DAY_MS + next(DAY_MS as u64) as i64;
            let len = [0, 1, 3_600_000, 3 * DAY_MS, 40 * DAY_MS][next(5) as usize];
            let r = Recurrence {
                freq,
                interval: {
                    let wide = next(2) == 0;
                    1 + next(if wide { 40 } else { 3 }) as u32
                },
                until: (next(3) == 0).then(|| start + next(400 * DAY_MS as u64 * 30) as i64),
                count: (next(3) == 0).then(|| 1 + next(300) as u32),
            };
            let events: Vec<CalendarEvent> = (0..1 + next(3))
                .map(|i| {
                    let mut e = cal(start + i as i64 * 7_200_000, start + len, Some(r));
                    e.fields.end = e.fields.start + len;
                    e.id = i + 1;
                    e
                })
                .collect();
            let from = start - 30 * DAY_MS + next(40 * 366 * DAY_MS as u64) as i64;
            let to = from + 1 + next(3 * 366 * DAY_MS as u64) as i64;
            assert_eq!(
                occurrences(&events, from, to),
                walked(&events, from, to),
                "case {case}: {r:?} from {start} over [{from}, {to})"
            );
        }
    }

    #[test]
    fn e1_an_event_from_year_one_is_expanded_today() {
        let daily = Recurrence {
            freq: Frequency::Daily,
            interval: 1,
            until: None,
            count: None,
        };
        let monthly_31 = Recurrence {
            freq: Frequency::Monthly,
            ..daily
        };
        let year_one = days_from_civil(1, 1, 31) * DAY_MS;
        let today = days_from_civil(2026, 12, 1) * DAY_MS;
        for r in [daily, monthly_31] {
            let occ = occurrences(
                &[cal(year_one, year_one + 1, Some(r))],
                today,
                today + 32 * DAY_MS,
            );
            assert!(!occ.is_empty(), "{r:?}");
            assert!(occ.iter().all(|o| o.start >= today));
        }
        // Counted from year one: 739,000 days are past, so a count of 1,000 is exhausted.
        let counted = Recurrence {
            count: Some(1_000),
            ..daily
        };
        assert!(occurrences(
            &[cal(year_one, year_one + 1, Some(counted))],
            today,
            today + DAY_MS
        )
        .is_empty());
    }

    #[test]
    fn e1_recurrence_follows_the_events_time_zone_across_dst() {
        let hour = 3_600_000;
        let zoned = |start: i64, r: Recurrence, tz: &str, all_day: bool| {
            let mut e = cal(start, start + hour, Some(r));
            e.fields.time_zone = tz.into();
            e.fields.all_day = all_day;
            e
        };
        let weekly = Recurrence {
            freq: Frequency::Weekly,
            interval: 1,
            until: None,
            count: None,
        };
        // Mondays 09:00 in Berlin: 08:00 UTC in winter (CET), 07:00 UTC in summer (CEST).
        // Clocks go forward on 2026-03-29 and back on 2026-10-25.
        let mar16 = days_from_civil(2026, 3, 16) * DAY_MS + 8 * hour;
        let occ = occurrences(
            &[zoned(mar16, weekly, "Europe/Berlin", false)],
            mar16,
            mar16 + 4 * 7 * DAY_MS - 2 * hour,
        );
        let utc_hours: Vec<i64> = occ
            .iter()
            .map(|o| o.start.rem_euclid(DAY_MS) / hour)
            .collect();
        assert_eq!(
            utc_hours,
            vec![8, 8, 7, 7],
            "09:00 Berlin before and after spring"
        );
        assert!(occ.iter().all(|o| o.end - o.start == hour));
        let oct12 = days_from_civil(2026, 10, 12) * DAY_MS + 7 * hour;
        let occ = occurrences(
            &[zoned(oct12, weekly, "Europe/Berlin", false)],
            // A query starting late still sees the local time (the computed first step).
            oct12 + 7 * DAY_MS,
            oct12 + 4 * 7 * DAY_MS,
        );
        let utc_hours: Vec<i64> = occ
            .iter()
            .map(|o| o.start.rem_euclid(DAY_MS) / hour)
            .collect();
        assert_eq!(
            utc_hours,
            vec![7, 8, 8],
            "09:00 Berlin before and after autumn"
        );
        // 02:30 does not exist on 2026-03-29 in Berlin: that day's occurrence is at 03:30 CEST.
        let daily = Recurrence {
            freq: Frequency::Daily,
            ..weekly
        };
        let mar28 = days_from_civil(2026, 3, 28) * DAY_MS + hour + hour / 2; // 02:30 CET
        let occ = occurrences(
            &[zoned(mar28, daily, "Europe/Berlin", false)],
            mar28,
            mar28 + 3 * DAY_MS - 2 * hour,
        );
        // The wall-clock date and time of each occurrence's start in `zone`.
        let walls_in = |zone: &str, occ: &[Occurrence]| -> Vec<jiff::civil::DateTime> {
            let tz = jiff::tz::TimeZone::get(zone).expect("bundled");
            occ.iter()
                .map(|o| tz.to_datetime(jiff::Timestamp::from_millisecond(o.start).expect("t")))
                .collect()
        };
        let walls: Vec<String> = walls_in("Europe/Berlin", &occ)
            .iter()
            .map(|dt| dt.time().to_string())
            .collect();
        assert_eq!(walls, vec!["02:30:00", "03:30:00", "02:30:00"]);
        // Monthly on the 31st at 23:30 in New York (04:30 UTC the next day): the local 31st.
        let monthly = Recurrence {
            freq: Frequency::Monthly,
            ..weekly
        };
        let jan31 = days_from_civil(2026, 2, 1) * DAY_MS + 4 * hour + hour / 2;
        let occ = occurrences(
            &[zoned(jan31, monthly, "America/New_York", false)],
            0,
            days_from_civil(2027, 1, 2) * DAY_MS,
        );
        let local: Vec<(i8, i8, String)> = walls_in("America/New_York", &occ)
            .iter()
            .map(|dt| (dt.month(), dt.day(), dt.time().to_string()))
            .collect();
        let months: Vec<i8> = local.iter().map(|l| l.0).collect();
        assert_eq!(months, vec![1, 3, 5, 7, 8, 10, 12]);
        assert!(
            local.iter().all(|l| l.1 == 31 && l.2 == "23:30:00"),
            "{local:?}"
        );
        // All-day events repeat on dates: midnight UTC of each day, whatever the zone.
        let mar23 = days_from_civil(2026, 3, 23) * DAY_MS;
        let mut e = zoned(mar23, weekly, "Europe/Berlin", true);
        e.fields.end = mar23 + DAY_MS;
        let occ = occurrences(&[e], mar23, mar23 + 3 * 7 * DAY_MS);
        assert_eq!(occ.len(), 3);
        assert!(occ
            .iter()
            .all(|o| o.start.rem_euclid(DAY_MS) == 0 && o.end - o.start == DAY_MS));
    }

    #[test]
    fn e1_an_unknown_time_zone_is_refused() {
        let mut f = cal(0, 1, None).fields;
        f.time_zone = "Mars/Olympus".into();
        assert!(check_calendar(&f).is_err());
        f.time_zone = "Asia/Tokyo".into();
        assert!(check_calendar(&f).is_ok());
        f.time_zone = String::new();
        assert_eq!(check_calendar(&f).expect("default").time_zone, "UTC");
    }

    #[test]
    fn e1_recurrence_expansion() {
        // 2026-01-31 10:00 UTC.
        let jan31 = days_from_civil(2026, 1, 31) * DAY_MS + 10 * 3_600_000;
        let monthly = Recurrence {
            freq: Frequency::Monthly,
            interval: 1,
            until: None,
            count: None,
        };
        let year_end = days_from_civil(2027, 1, 1) * DAY_MS;
        let occ = occurrences(&[cal(jan31, jan31 + 3_600_000, Some(monthly))], 0, year_end);
        let days: Vec<(i64, u32, u32)> = occ
            .iter()
            .map(|o| civil_from_days(o.start.div_euclid(DAY_MS)))
            .collect();
        // Months with a 31st only: Jan, Mar, May, Jul, Aug, Oct, Dec.
        assert_eq!(
            days.iter().map(|d| d.1).collect::<Vec<_>>(),
            vec![1, 3, 5, 7, 8, 10, 12]
        );
        let weekly = Recurrence {
            freq: Frequency::Weekly,
            interval: 2,
            until: None,
            count: Some(3),
        };
        let occ = occurrences(&[cal(0, 1000, Some(weekly))], 0, i64::MAX / 4);
        assert_eq!(
            occ.iter().map(|o| o.start).collect::<Vec<_>>(),
            vec![0, 14 * DAY_MS, 28 * DAY_MS]
        );
        let daily = Recurrence {
            freq: Frequency::Daily,
            interval: 1,
            until: Some(2 * DAY_MS),
            count: None,
        };
        let occ = occurrences(&[cal(0, 1000, Some(daily))], DAY_MS, 10 * DAY_MS);
        assert_eq!(
            occ.iter().map(|o| o.start).collect::<Vec<_>>(),
            vec![DAY_MS, 2 * DAY_MS]
        );
        let feb29 = days_from_civil(2024, 2, 29) * DAY_MS;
        let yearly = Recurrence {
            freq: Frequency::Yearly,
            interval: 1,
            until: None,
            count: None,
        };
        let occ = occurrences(
            &[cal(feb29, feb29 + 1, Some(yearly))],
            0,
            days_from_civil(2033, 1, 1) * DAY_MS,
        );
        assert_eq!(occ.len(), 3, "2024, 2028, 2032");
        assert_eq!(civil_from_days(days_from_civil(2000, 3, 1)), (2000, 3, 1));
        assert!(
            occurrences(&[cal(0, 10, None)], 10, 20).is_empty(),
            "ends at from"
        );
        assert_eq!(occurrences(&[cal(0, 10, None)], 5, 20).len(), 1);
        let forever = Recurrence {
            freq: Frequency::Daily,
            interval: 1,
            until: None,
            count: None,
        };
        assert_eq!(
            occurrences(&[cal(0, 1, Some(forever))], 0, i64::MAX / 4).len(),
            MAX_OCCURRENCES
        );
    }
}
