//! What a decision is given — the room, the actor, the items looked up for it ([`Context`]) —
//! and the checks every feature's decision shares.

use crate::domain::records::RoomRecord;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{ErrorCode, Event, Item, RoomKind, Trashed, UserId};

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

/// Who acts, where, and with what looked up.
pub(super) struct By<'a> {
    pub(super) room: &'a RoomRecord,
    pub(super) user: &'a UserId,
    pub(super) master: bool,
    pub(super) ctx: &'a Context,
    /// Whether feature changes also post a notice in the room.
    pub(super) notices: bool,
}

pub(super) fn chars(s: &str) -> usize {
    s.chars().count()
}

pub(super) fn check_len(what: &str, s: &str, min: usize, max: usize) -> ApiResult<()> {
    let n = chars(s);
    if n < min || n > max || (min > 0 && s.trim().is_empty()) {
        return Err(ApiError::invalid(format!(
            "{what} must be {min} to {max} characters (got {n})"
        )));
    }
    Ok(())
}

/// G18: is this feature switched on?
pub(super) fn check_switch(room: &RoomRecord, on: bool, name: &str) -> ApiResult<()> {
    if room.kind == RoomKind::Group && !on {
        return Err(ApiError::new(
            ErrorCode::FeatureDisabled,
            format!("{name} is switched off in this group"),
        ));
    }
    Ok(())
}

pub(super) fn gone(what: &str, id: u64) -> ApiError {
    ApiError::not_found(format!("{what} {id}"))
}

pub(super) fn forbidden(msg: &str) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, msg)
}

pub(super) fn trashed(item: &Item) -> Option<&Trashed> {
    match item {
        Item::Folder(f) => f.trashed.as_ref(),
        Item::File(f) => f.trashed.as_ref(),
        _ => None,
    }
}

/// An action routed to the wrong feature's decision (a bug, not a refusal).
pub(super) fn misrouted() -> ApiError {
    ApiError::internal()
}
