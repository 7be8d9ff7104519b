//! G13: when a company admin withdraws a user's external permission (per member, or by switching
//! `external_chat` off) or disables the user, the user is removed from every external group at
//! once — each removal a `member_removed` entry with reason `policy`, by rule G12.

use super::{Actor, Change};
use crate::directory::{holds_external_permission, CompanySettings, User};
use crate::error::ApiResult;
use crate::hub::Hub;
use crossroom_protocol::CompanyId;
use std::sync::Arc;

/// Users of `before` who held external permission and no longer do after the change.
pub fn lost_permission<'a>(
    before: impl IntoIterator<Item = (&'a User, &'a CompanySettings)>,
    after: impl Fn(&User) -> Option<(User, CompanySettings)>,
) -> Vec<User> {
    before
        .into_iter()
        .filter(|(u, s)| holds_external_permission(u, s))
        .filter_map(|(u, _)| after(u))
        .filter(|(u, s)| !holds_external_permission(u, s))
        .map(|(u, _)| u)
        .collect()
}

/// Remove each of `users` (of `company`) from every external group they are in, and wait until
/// every removal is committed. Returns how many removals were made.
pub async fn revoke(hub: &Arc<Hub>, company: &CompanyId, users: &[User]) -> ApiResult<usize> {
    let mut removed = 0;
    for user in users {
        for room in hub.store.groups_of(&user.id).await? {
            let result = hub
                .rooms
                .change(
                    &room,
                    Actor::Policy(company.clone()),
                    Change::RemoveMember(user.id.clone()),
                )
                .await;
            match result {
                Ok(_) => removed += 1,
                // Gone meanwhile (removed by a master, group deleted): nothing left to do.
                Err(e) if e.code == crossroom_protocol::ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        tracing::info!(user = %user.id, "external permission withdrawn; removed from external groups");
    }
    Ok(removed)
}
