//! The room features beyond messages — notes (N1), the calendar (E1), tasks (T1) and the folder
//! (F1): what a client asks for ([`Action`], [`Query`]) and what it gets back ([`Item`],
//! [`QueryResult`]).
//!
//! Every feature item is created by a log entry; its id is that entry's `seq`. Changes to it are
//! further log entries, so live delivery, resume and history work for them as for messages.

use crate::ids::UserId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A note's content (N1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteFields {
    /// 1–200 characters.
    pub title: String,
    /// Up to 100,000 characters.
    pub body: String,
    /// Others than the author may edit it.
    #[serde(default)]
    pub others_may_edit: bool,
    /// Post a notice in the room (when the group's `notifications` switch is on).
    #[serde(default)]
    pub notify: bool,
    /// Pinned as the room's notice.
    #[serde(default)]
    pub pinned: bool,
}

/// How often a calendar event repeats (E1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// A repetition rule: every `interval` periods, until `until` (ms, inclusive) or `count`
/// occurrences, whichever comes first; forever when neither is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    pub freq: Frequency,
    #[serde(default = "one")]
    pub interval: u32,
    #[serde(default)]
    pub until: Option<i64>,
    #[serde(default)]
    pub count: Option<u32>,
}

fn one() -> u32 {
    1
}

/// A calendar event's content (E1). Times are milliseconds since the Unix epoch (UTC);
/// all-day events start and end at midnight UTC of their days. There are no attendees in an
/// external group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarFields {
    /// Default "No title".
    #[serde(default)]
    pub title: String,
    pub start: i64,
    pub end: i64,
    #[serde(default)]
    pub all_day: bool,
    /// An IANA time zone name ("UTC" by default): the recurrence repeats on its wall clock,
    /// with its daylight-saving rules (all-day events repeat on UTC dates).
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub recurrence: Option<Recurrence>,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub memo: String,
}

/// When a task with several assignees is done (T1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// When every assignee completed it.
    All,
    /// When any one assignee completed it.
    Any,
}

/// A task's content (T1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFields {
    /// 1–200 characters.
    pub title: String,
    /// Up to 5,000 characters.
    #[serde(default)]
    pub content: String,
    /// ms since the Unix epoch.
    #[serde(default)]
    pub due: Option<i64>,
    #[serde(default)]
    pub category: String,
    /// One or more members.
    pub assignees: Vec<UserId>,
    pub completion: Completion,
}

/// A room-feature write, sent in an `act` frame; each becomes one log entry (two when it also
/// posts a notice).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Action {
    PostNote(NoteFields),
    /// Change some of a note's fields (author, or anyone when `others_may_edit`).
    EditNote {
        note: u64,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        others_may_edit: Option<bool>,
        #[serde(default)]
        pinned: Option<bool>,
    },
    /// The author or a master deletes a note.
    DeleteNote {
        note: u64,
    },
    CommentNote {
        note: u64,
        text: String,
    },
    /// The comment's author or a master.
    DeleteComment {
        note: u64,
        comment: u64,
    },
    LikeNote {
        note: u64,
        like: bool,
    },
    CreateCalendarEvent(CalendarFields),
    /// Any member; replaces the event's fields.
    UpdateCalendarEvent {
        event: u64,
        fields: CalendarFields,
    },
    DeleteCalendarEvent {
        event: u64,
    },
    CreateTask(TaskFields),
    /// The assigner or an assignee; replaces the task's fields (statuses of kept assignees stay).
    UpdateTask {
        task: u64,
        fields: TaskFields,
    },
    /// An assignee marks their part done.
    CompleteTask {
        task: u64,
    },
    /// An assignee takes their part back.
    ReopenTask {
        task: u64,
    },
    /// The assigner or a master.
    DeleteTask {
        task: u64,
    },
    CreateFolder {
        #[serde(default)]
        parent: Option<u64>,
        name: String,
        #[serde(default)]
        notify_on_new_file: bool,
    },
    UpdateFolder {
        folder: u64,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        notify_on_new_file: Option<bool>,
    },
    /// Move a folder or file to the trash.
    Trash {
        item: u64,
    },
    Restore {
        item: u64,
    },
    /// Delete a trashed folder or file for good, freeing its storage: whoever trashed it, or a
    /// master.
    Purge {
        item: u64,
    },
    /// Recall a message (M1): its author within their company's recall window, or a master at
    /// any time.
    Recall {
        message: u64,
    },
}

/// A read-only question about a room, sent in a `query` frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum Query {
    /// A page of notes; `cursor` is the previous page's `next` (absent: the first page).
    Notes {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Occurrences of calendar events overlapping `[from, to)` (ms), a page at a time.
    Calendar {
        from: i64,
        to: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// A page of tasks.
    Tasks {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// A folder's content (`folder` absent = the root), or the trash, a page at a time.
    Folder {
        #[serde(default)]
        folder: Option<u64>,
        #[serde(default)]
        trash: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// A message's read count, and who read it when the sender's company allows (M2).
    Receipts { message: u64 },
    /// Mark a note read (counts in its read count).
    ReadNote { note: u64 },
}

/// A comment on a note.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub id: u64,
    pub author: UserId,
    pub text: String,
    pub ts: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub id: u64,
    pub author: UserId,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub fields: NoteFields,
    pub comments: Vec<Comment>,
    pub likes: BTreeSet<UserId>,
    pub readers: BTreeSet<UserId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarEvent {
    pub id: u64,
    pub author: UserId,
    pub fields: CalendarFields,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: u64,
    pub assigner: UserId,
    pub fields: TaskFields,
    /// Per assignee: done or not.
    pub status: BTreeMap<UserId, bool>,
    pub done: bool,
}

/// Who trashed a folder item, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trashed {
    pub by: UserId,
    pub ts: i64,
}

/// Where a trashed item comes back when restored (F1): in its own folder `into` (`None`: the
/// root), with the trashed folders above it — `with`, outermost first — restored first, so
/// that it is visible again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    pub item: u64,
    pub into: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub with: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folder {
    pub id: u64,
    pub parent: Option<u64>,
    pub name: String,
    pub notify_on_new_file: bool,
    pub created_by: UserId,
    pub trashed: Option<Trashed>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileItem {
    pub id: u64,
    /// The stored file: `GET /v1/rooms/{room}/files/{file}`.
    pub file: String,
    pub folder: Option<u64>,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    pub sha256: String,
    pub uploaded_by: UserId,
    pub trashed: Option<Trashed>,
}

/// A feature item's current state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum Item {
    Note(Note),
    CalendarEvent(CalendarEvent),
    Task(Task),
    Folder(Folder),
    File(FileItem),
}

impl Item {
    pub fn id(&self) -> u64 {
        match self {
            Item::Note(n) => n.id,
            Item::CalendarEvent(e) => e.id,
            Item::Task(t) => t.id,
            Item::Folder(f) => f.id,
            Item::File(f) => f.id,
        }
    }
}

/// One occurrence of a calendar event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    pub event: u64,
    pub start: i64,
    pub end: i64,
}

/// The answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum QueryResult {
    /// `next`, when present, is the cursor of the next page (absent: this is the last).
    Notes {
        notes: Vec<Note>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// A page of occurrences, and the events they are of.
    Calendar {
        events: Vec<CalendarEvent>,
        occurrences: Vec<Occurrence>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    Tasks {
        tasks: Vec<Task>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    Folder {
        items: Vec<Item>,
        /// The trash only: where each of `items` comes back.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        restores: Vec<Restore>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    Receipts {
        message: u64,
        read_count: u64,
        /// Who read it; absent when the sender's company does not show it to you.
        #[serde(default)]
        readers: Option<Vec<UserId>>,
    },
    ReadNote {
        note: u64,
        read_count: u64,
    },
}
