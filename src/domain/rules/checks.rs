//! What every rule of rooms shares: the limits of names, texts and client ids; who acts (a
//! member, a master, an admin); membership and management checks; a post's checks (M1).

use crate::domain::directory::User;
use crate::domain::records::RoomRecord;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{CompanyId, ErrorCode, RoomKind, UserId};

/// M1: longest message text, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// Longest client message id, in characters.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;

/// G4: group name length after trimming, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// G4: description length, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 300;

/// A user as the rules see them: the record and whether they hold external permission.
#[derive(Clone, Debug)]
pub struct Person {
    pub user: User,
    pub permitted: bool,
}

/// G4: the trimmed name, 1 to 100 characters (Unicode scalar values).
pub fn check_name(name: &str) -> ApiResult<String> {
    let trimmed = name.trim();
    let n = trimmed.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(ApiError::invalid(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters after trimming (got {n})"
        )));
    }
    Ok(trimmed.to_owned())
}

/// G4: description, 0 to 300 characters.
pub fn check_description(description: &str) -> ApiResult<()> {
    let n = description.chars().count();
    if n > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::invalid(format!(
            "description must be at most {MAX_DESCRIPTION_CHARS} characters (got {n})"
        )));
    }
    Ok(())
}

/// M1 and G18: may `user` post `text` with `client_msg_id` in `room`?
pub fn check_post(
    room: &RoomRecord,
    user: &UserId,
    client_msg_id: &str,
    text: &str,
) -> ApiResult<()> {
    check_member(room, user)?;
    if room.kind == RoomKind::Group && !room.features.message {
        return Err(ApiError::new(
            ErrorCode::FeatureDisabled,
            "messages are switched off in this group",
        ));
    }
    let id_chars = client_msg_id.chars().count();
    if id_chars == 0 || id_chars > MAX_CLIENT_MSG_ID_CHARS {
        return Err(ApiError::invalid(format!(
            "client_msg_id must be 1 to {MAX_CLIENT_MSG_ID_CHARS} characters"
        )));
    }
    let n = text.chars().count();
    if text.trim().is_empty() || n > MAX_TEXT_CHARS {
        return Err(ApiError::invalid(format!(
            "text must be 1 to {MAX_TEXT_CHARS} characters and not blank (got {n})"
        )));
    }
    Ok(())
}

/// M1: mentions name members of the room.
pub fn check_mentions(room: &RoomRecord, mentions: &[UserId]) -> ApiResult<()> {
    if mentions.len() > 100 {
        return Err(ApiError::invalid("at most 100 mentions per message"));
    }
    match mentions
        .iter()
        .find(|u| room.members.binary_search(u).is_err())
    {
        Some(u) => Err(ApiError::invalid(format!(
            "{u} is not a member of this room"
        ))),
        None => Ok(()),
    }
}

/// G8: only members may see a room; to anyone else it does not exist — except a master who is
/// not a member, who knows the group and is told so.
pub fn check_member(room: &RoomRecord, user: &UserId) -> ApiResult<()> {
    if room.members.binary_search(user).is_ok() {
        return Ok(());
    }
    if room.masters.binary_search(user).is_ok() {
        return Err(ApiError::new(
            ErrorCode::NotMember,
            "you are a master of this group but not a member",
        ));
    }
    Err(ApiError::not_found(format!("room {}", room.id)))
}

/// Who asks for a room change.
#[derive(Clone, Debug)]
pub enum Actor {
    /// A signed-in user.
    User(Person),
    /// A company admin, through the admin API.
    Admin(CompanyId),
    /// The server enforcing a company's policy (G13).
    Policy(CompanyId),
}

impl Actor {
    /// The author written in the log: the user, or `#admin@company` / `#policy@company` (`#`
    /// never appears in a login, so these never collide with a user).
    pub fn id(&self) -> UserId {
        match self {
            Actor::User(p) => p.user.id.clone(),
            Actor::Admin(c) => UserId(format!("#admin@{c}")),
            Actor::Policy(c) => UserId(format!("#policy@{c}")),
        }
    }
}

pub(super) fn is_member(room: &RoomRecord, u: &UserId) -> bool {
    room.members.binary_search(u).is_ok()
}

pub(super) fn is_master(room: &RoomRecord, u: &UserId) -> bool {
    room.masters.binary_search(u).is_ok()
}

pub(super) fn forbidden(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, msg)
}

/// G9: masters manage a group; the owner company's admins too. Everyone else is told the group
/// does not exist (G8), except members, who know it and are told they are not masters.
pub fn check_manager(room: &RoomRecord, actor: &Actor) -> ApiResult<()> {
    match actor {
        Actor::User(p) if is_master(room, &p.user.id) => Ok(()),
        Actor::User(p) if is_member(room, &p.user.id) => {
            Err(forbidden("only a master of this group can do this"))
        }
        Actor::Admin(c) if *c == room.owner_company => Ok(()),
        Actor::Policy(_) => Err(forbidden("policy only removes members")),
        _ => Err(ApiError::not_found(format!("room {}", room.id))),
    }
}
