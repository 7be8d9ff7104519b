//! Answers to room-feature questions (notes, calendar, tasks, folder, read receipts), read from
//! the store's item projection. The room actor checks membership first; what is answered is
//! limited to what the member may see (their join onwards, D4) and to switched-on features (G18).

use super::lookup;
use crate::domain::directory::ReadReceipts;
use crate::domain::features::{self, occurrences};
use crate::domain::paging::{self, json_size};
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crossroom_protocol::{
    ErrorCode, EventBody, Features, Item, Query, QueryResult, RoomId, RoomKind, UserId,
};

/// Who asks, and what of the room they may see.
pub struct Viewer {
    pub user: UserId,
    /// The seq they joined at: nothing earlier is theirs to see.
    pub since: u64,
    pub kind: RoomKind,
    pub features: Features,
}

/// Longest calendar range one query covers (ten years, in ms).
const MAX_RANGE_MS: i64 = 10 * 366 * 86_400_000;

fn switch(v: &Viewer, on: bool, name: &str) -> ApiResult<()> {
    if v.kind == RoomKind::Group && !on {
        return Err(ApiError::new(
            ErrorCode::FeatureDisabled,
            format!("{name} is switched off in this group"),
        ));
    }
    Ok(())
}

pub async fn answer(
    store: &dyn Store,
    room: &RoomId,
    v: &Viewer,
    query: Query,
) -> ApiResult<QueryResult> {
    Ok(match query {
        Query::Notes { cursor } => {
            switch(v, v.features.note, "note")?;
            let after = cursor.as_deref().map(paging::parse_cursor).transpose()?;
            let notes: Vec<_> = store
                .items(room)
                .await?
                .into_iter()
                .filter_map(|i| match i {
                    // Pinned notices first, then newest first.
                    Item::Note(n) => Some(((i64::from(!n.fields.pinned), -(n.id as i64)), n)),
                    _ => None,
                })
                .collect();
            let (notes, next) = paging::page(notes, after, json_size);
            QueryResult::Notes { notes, next }
        }
        Query::Calendar { from, to, cursor } => {
            switch(v, v.features.event, "the calendar")?;
            // Checked: `i64::MAX - i64::MIN` wraps to -1 and would pass.
            if to <= from || to.checked_sub(from).is_none_or(|d| d > MAX_RANGE_MS) {
                return Err(ApiError::invalid(
                    "the range must be non-empty and at most ten years",
                ));
            }
            if !features::in_calendar(from) || !features::in_calendar(to - 1) {
                return Err(ApiError::invalid(
                    "the range must lie in the years 1 to 9999 (UTC)",
                ));
            }
            let after = cursor.as_deref().map(paging::parse_cursor).transpose()?;
            let events: Vec<_> = store
                .items(room)
                .await?
                .into_iter()
                .filter_map(|i| match i {
                    Item::CalendarEvent(e) => Some(e),
                    _ => None,
                })
                .collect();
            // A later page expands from its cursor's start (what started earlier and still
            // overlaps it was on an earlier page).
            let start = after.map_or(from, |(s, _)| s.max(from));
            // Bounded, but thousands of events times thousands of occurrences is CPU work:
            // off the async workers, so a neighbour's ping is not kept waiting.
            let (events, expanded) = tokio::task::spawn_blocking(move || {
                let o = occurrences(&events, start, to);
                (events, o)
            })
            .await
            .map_err(|_| ApiError::internal())?;
            let keyed: Vec<_> = expanded
                .into_iter()
                .map(|o| ((o.start, o.event as i64), o))
                .collect();
            // An occurrence costs its own bytes, and its event's the first time it is named.
            let mut named = std::collections::HashSet::new();
            let (occurrences, next) = paging::page(keyed, after, |o| {
                let event = match named.insert(o.event) {
                    true => events.iter().find(|e| e.id == o.event).map_or(0, json_size),
                    false => 0,
                };
                json_size(o) + event
            });
            let used: std::collections::BTreeSet<u64> =
                occurrences.iter().map(|o| o.event).collect();
            QueryResult::Calendar {
                events: events
                    .into_iter()
                    .filter(|e| used.contains(&e.id))
                    .collect(),
                occurrences,
                next,
            }
        }
        Query::Tasks { cursor } => {
            switch(v, v.features.task, "tasks")?;
            let after = cursor.as_deref().map(paging::parse_cursor).transpose()?;
            let tasks = store
                .items(room)
                .await?
                .into_iter()
                .filter_map(|i| match i {
                    Item::Task(t) => Some(((0, t.id as i64), t)),
                    _ => None,
                })
                .collect();
            let (tasks, next) = paging::page(tasks, after, json_size);
            QueryResult::Tasks { tasks, next }
        }
        Query::Folder {
            folder,
            trash,
            cursor,
        } => {
            let after = cursor.as_deref().map(paging::parse_cursor).transpose()?;
            folder_items(store, room, v, (folder, trash), after).await?
        }
        Query::Receipts { message } => receipts(store, room, v, message).await?,
        Query::ReadNote { note } => {
            switch(v, v.features.note, "note")?;
            let read_count = store
                .read_note(room, note, &v.user)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("note {note}")))?;
            QueryResult::ReadNote { note, read_count }
        }
    })
}

/// A folder's items, or the trash (F1).
async fn folder_items(
    store: &dyn Store,
    room: &RoomId,
    v: &Viewer,
    (folder, trash): (Option<u64>, bool),
    after: Option<paging::Key>,
) -> ApiResult<QueryResult> {
    switch(v, v.features.folder, "the folder")?;
    let items = store.items(room).await?;
    let is_folder_item = |i: &Item| matches!(i, Item::Folder(_) | Item::File(_));
    if let Some(id) = folder {
        let ok = items
            .iter()
            .any(|i| matches!(i, Item::Folder(f) if f.id == id && f.trashed.is_none()));
        if !ok {
            return Err(ApiError::not_found(format!("folder {id}")));
        }
    }
    let listed = items
        .iter()
        .filter(|i| is_folder_item(i))
        .filter(|i| {
            let (parent, trashed) = match i {
                Item::Folder(f) => (f.parent, f.trashed.is_some()),
                Item::File(f) => (f.folder, f.trashed.is_some()),
                _ => (None, false),
            };
            if trash {
                trashed
            } else {
                !trashed && parent == folder
            }
        })
        .map(|i| ((0, i.id() as i64), i.clone()))
        .collect();
    let (page, next) = paging::page(listed, after, json_size);
    let restores = match trash {
        true => page
            .iter()
            .map(|i| features::restore_of(&items, i))
            .collect(),
        false => Vec::new(),
    };
    Ok(QueryResult::Folder {
        items: page,
        restores,
        next,
    })
}

/// Who read a message, as the sender's company lets them be shown (M2).
async fn receipts(
    store: &dyn Store,
    room: &RoomId,
    v: &Viewer,
    message: u64,
) -> ApiResult<QueryResult> {
    let ev = store
        .event_at(room, message)
        .await?
        .filter(|e| e.seq >= v.since && matches!(e.body, EventBody::Message { .. }))
        .ok_or_else(|| ApiError::not_found(format!("message {message}")))?;
    let readers = store.readers(room, message, &ev.author).await?;
    // Who read it is shown as the sender's company decides (M2).
    let policy = match ev.author.company() {
        Some(c) => lookup::company_settings(store, &c)
            .await
            .map(|s| s.read_receipts)
            .unwrap_or(ReadReceipts::Off),
        None => ReadReceipts::Off,
    };
    let visible = match policy {
        ReadReceipts::Off => false,
        ReadReceipts::SenderOnly => ev.author == v.user,
        ReadReceipts::Everyone => true,
    };
    Ok(QueryResult::Receipts {
        message,
        read_count: readers.len() as u64,
        readers: visible.then_some(readers),
    })
}
