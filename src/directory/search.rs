//! A user's own view of the directory: their contacts (G7) and search/autocomplete over their
//! rooms and contacts (G8: only rooms they are a member of can ever match).

use super::User;
use crate::error::{ApiError, ApiResult};
use crate::service::create::summary;
use crate::store::Store;
use crossroom_protocol::{RoomSummary, UserId, UserInfo};

/// Default and largest number of results of each kind.
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 50;
/// Longest query, in characters.
const MAX_QUERY_CHARS: usize = 100;

/// Does `text` match the (lowercased) query: the whole text or any of its words starts with it.
pub fn matches(text: &str, query: &str) -> bool {
    let t = text.to_lowercase();
    t.starts_with(query)
        || t.split(|c: char| !c.is_alphanumeric())
            .any(|w| w.starts_with(query))
}

/// Prefix search, case-insensitive, over the user's rooms (by name or id) and contacts (by
/// name or id; by email only on the whole address: an email is never shown, and prefix matches
/// would spell it out one probe at a time).
pub async fn search(
    store: &dyn Store,
    user: &UserId,
    query: &str,
    limit: Option<u32>,
) -> ApiResult<(Vec<RoomSummary>, Vec<UserInfo>)> {
    let q = query.trim().to_lowercase();
    if q.is_empty() || q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid(format!(
            "query must be 1 to {MAX_QUERY_CHARS} characters"
        )));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT) as usize;
    let rooms = store
        .rooms_of(user)
        .await?
        .into_iter()
        .filter(|r| matches(&r.name, &q) || r.room.as_str().starts_with(&q))
        .take(limit)
        .map(summary)
        .collect();
    let ids = store.contacts(user).await?;
    let contacts = store
        .users(&ids)
        .await?
        .into_iter()
        .filter(|u| {
            u.active
                && (matches(&u.name, &q)
                    || matches(u.id.as_str(), &q)
                    || (!u.email.is_empty() && u.email.to_lowercase() == q))
        })
        .take(limit)
        .collect();
    Ok((rooms, marked(store, contacts).await?))
}

/// The user's contacts that still exist.
pub async fn contacts(store: &dyn Store, user: &UserId) -> ApiResult<Vec<UserInfo>> {
    let ids = store.contacts(user).await?;
    marked(store, store.users(&ids).await?).await
}

/// Users as others see them, marked when their company signed itself up (one read per
/// company).
async fn marked(store: &dyn Store, users: Vec<User>) -> ApiResult<Vec<UserInfo>> {
    let mut self_registered = std::collections::HashMap::new();
    for u in &users {
        if !self_registered.contains_key(&u.company) {
            let c = store.company(&u.company).await?;
            self_registered.insert(u.company.clone(), c.is_some_and(|c| c.self_registered));
        }
    }
    Ok(users
        .iter()
        .map(|u| UserInfo {
            company_self_registered: self_registered.get(&u.company) == Some(&true),
            ..u.info()
        })
        .collect())
}

/// Add a user of another company to `me`'s contacts.
/// Add `contact` to `me`'s contacts. The answer is the same whether such a user exists or not
/// (only an active user of another company is added; `list_contacts` shows who was), so trying
/// ids does not tell who has an account.
pub async fn add_contact(store: &dyn Store, me: &User, contact: &UserId) -> ApiResult<()> {
    if contact.company().as_ref() == Some(&me.company) {
        return Err(ApiError::invalid(
            "colleagues of your own company need no contact entry",
        ));
    }
    if store
        .user(contact)
        .await?
        .is_some_and(|u| u.active && u.company != me.company)
    {
        store.add_contact(&me.id, contact).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn g8_prefix_matching_is_case_insensitive_on_words() {
        assert!(matches("Launch Plan", "lau"));
        assert!(matches("Launch Plan", "plan"));
        assert!(matches("carol@globex.example", "globex"));
        assert!(!matches("Launch Plan", "aunch"));
        assert!(matches("Ünïcode Team", "ünï"));
    }
}
