//! Directory look-ups the room rules need: users with whether they hold external permission,
//! and company settings. Done just before deciding, so decisions see the directory as it is.

use super::rules::Person;
use crate::directory::{holds_external_permission, CompanySettings};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crossroom_protocol::{CompanyId, UserId};
use std::collections::HashMap;

pub async fn company_settings(hub: &Hub, company: &CompanyId) -> ApiResult<CompanySettings> {
    Ok(hub
        .store
        .company(company)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("company {company}")))?
        .settings)
}

/// The named users that exist, each with whether they hold external permission.
pub async fn people(hub: &Hub, ids: &[UserId]) -> ApiResult<HashMap<UserId, Person>> {
    let users = hub.store.users(ids).await?;
    let mut settings: HashMap<CompanyId, CompanySettings> = HashMap::new();
    let mut out = HashMap::with_capacity(users.len());
    for user in users {
        if !settings.contains_key(&user.company) {
            let s = company_settings(hub, &user.company).await?;
            settings.insert(user.company.clone(), s);
        }
        let permitted = settings
            .get(&user.company)
            .is_some_and(|s| holds_external_permission(&user, s));
        out.insert(user.id.clone(), Person { user, permitted });
    }
    Ok(out)
}

/// One user, fresh from the directory.
pub async fn person(hub: &Hub, id: &UserId) -> ApiResult<Person> {
    people(hub, std::slice::from_ref(id))
        .await?
        .remove(id)
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))
}
