//! Message search (M6): a user's query parsed ([`crate::domain::search`]), answered from the
//! store's index within what they may read now, a page at a time, each hit with its snippet.

use crate::domain::paging::{json_size, PAGE_BYTES};
use crate::domain::search;
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crossroom_protocol::{MessageHit, UserId};

/// Results per page when the request does not say, and the most it may ask for.
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 50;

/// One page of the messages `user` may read that match `query`, newest first, after `cursor`
/// (a page's `next`); the next page's cursor when there is more.
pub async fn search_messages(
    store: &dyn Store,
    user: &UserId,
    query: &str,
    tz: Option<&str>,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> ApiResult<(Vec<MessageHit>, Option<String>)> {
    let q = search::parse(query, tz)?;
    let before = cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::invalid("cursor is not one this server gave"))
        })
        .transpose()?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let limit = limit as usize;
    let found = store.search_messages(user, &q, before, limit + 1).await?;
    let mut more = found.len() > limit;
    let mut hits = Vec::new();
    let mut bytes = 0;
    let mut last_key = None;
    for m in found.into_iter().take(limit) {
        let hit = MessageHit {
            snippet: search::snippet(&m.text, &q),
            room: m.room,
            seq: m.seq,
            ts: m.ts,
            author: m.author,
        };
        // A page stays within the byte budget every answer keeps (at least one hit).
        let cost = json_size(&hit);
        if !hits.is_empty() && bytes + cost > PAGE_BYTES {
            more = true;
            break;
        }
        bytes += cost;
        hits.push(hit);
        last_key = Some(m.key);
    }
    let next = if more {
        last_key.map(|k| k.to_string())
    } else {
        None
    };
    Ok((hits, next))
}
