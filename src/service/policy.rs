//! G13: when a company admin withdraws a user's external permission (per member, or by switching
//! `external_chat` off) or disables the user, the user is removed from every external group —
//! each removal a `member_removed` entry with reason `policy`, by rule G12.
//!
//! Revocation is reconciliation, not a diff: [`enforce`] reads each user and their company as
//! they are *now* and removes whoever lacks permission from every group they are *now* in,
//! whatever they held before. Repeating it repairs anything an earlier pass missed (a change
//! raced by another, a node that stopped half-way).

use crate::error::ApiResult;
use crate::room::registry::Rooms;
use crate::room::{lookup, Actor, Change};
use crate::store::Store;
use crossroom_protocol::{ErrorCode, UserId};

/// Remove each of `users` who does not hold external permission now from every external group
/// they are in, and wait until every removal is committed. Returns how many removals were made.
pub async fn enforce(store: &dyn Store, rooms: &Rooms, users: &[UserId]) -> ApiResult<usize> {
    let mut removed = 0;
    // A user gone from the directory lacks permission too: what an admission racing their
    // deletion let in is taken out here as well.
    for (id, company) in lookup::lacking_permission(store, users).await? {
        let mut theirs = 0;
        for room in store.groups_of(&id).await? {
            theirs += usize::from(remove_by_policy(rooms, &room, &company, &id).await?);
        }
        if theirs > 0 {
            tracing::info!(user = %id, "without external permission; removed from external groups");
        }
        removed += theirs;
    }
    Ok(removed)
}

/// A2: take a user being deleted out of every general room they are in (`member_removed`,
/// reason `policy`, by their own company), as [`enforce`] does for groups: the removal line of
/// D4 in each, so nothing after it reaches them.
pub async fn leave_general_rooms(
    store: &dyn Store,
    rooms: &Rooms,
    user: &crate::directory::User,
) -> ApiResult<()> {
    for row in store.rooms_of(&user.id).await? {
        if row.kind == crossroom_protocol::RoomKind::Room {
            remove_by_policy(rooms, &row.room, &user.company, &user.id).await?;
        }
    }
    Ok(())
}

/// `company`'s policy removes `user` from `room`; false when they were not in it (any more:
/// removed or left meanwhile, the room deleted, a stale index).
async fn remove_by_policy(
    rooms: &Rooms,
    room: &crossroom_protocol::RoomId,
    company: &crossroom_protocol::CompanyId,
    user: &UserId,
) -> ApiResult<bool> {
    let result = rooms
        .change(
            room,
            Actor::Policy(company.clone()),
            Change::RemoveMember(user.clone()),
        )
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.code == ErrorCode::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
