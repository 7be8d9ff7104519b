//! Message search (M6): a user's query parsed ([`crate::domain::search`]), answered from the
//! store's index within what they may read now, a page at a time, each hit with its snippet; and
//! the same for the shared things of their groups.

use crate::domain::paging::{json_size, PAGE_BYTES};
use crate::domain::search;
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crossroom_protocol::{ItemHit, MessageHit, UserId};

/// Results per page when the request does not say, and the most it may ask for.
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 50;

/// The page size asked for, within bounds, and where the page starts (a page's `next`).
fn page_args(cursor: Option<&str>, limit: Option<u32>) -> ApiResult<(Option<i64>, usize)> {
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
    Ok((before, limit as usize))
}

/// The hits that fit a page (at least one; the store was asked for one more than `limit`, to
/// know whether more are left), and the next page's cursor when more are left.
fn cut<T: serde::Serialize>(hits: Vec<(i64, T)>, limit: usize) -> (Vec<T>, Option<String>) {
    let mut more = hits.len() > limit;
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut last_key = None;
    for (key, hit) in hits.into_iter().take(limit) {
        // A page stays within the byte budget every answer keeps.
        let cost = json_size(&hit);
        if !out.is_empty() && bytes + cost > PAGE_BYTES {
            more = true;
            break;
        }
        bytes += cost;
        out.push(hit);
        last_key = Some(key);
    }
    let next = more.then_some(last_key).flatten().map(|k| k.to_string());
    (out, next)
}

/// One page of the shared things of `user`'s groups and rooms that match `query` (words,
/// phrases, exclusions, prefixes, `in:`), most recently changed first.
pub async fn search_items(
    store: &dyn Store,
    user: &UserId,
    query: &str,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> ApiResult<(Vec<ItemHit>, Option<String>)> {
    let q = search::parse(query, None)?;
    if q.from.is_some()
        || q.since_ms.is_some()
        || q.until_ms.is_some()
        || q.has_file
        || q.must.is_empty()
    {
        return Err(ApiError::invalid(
            "search_items takes words, \"phrases\", -exclusions, prefix* and in:ROOM (at least one word)",
        ));
    }
    let (before, limit) = page_args(cursor, limit)?;
    let found = store.search_items(user, &q, before, limit + 1).await?;
    let hits = found
        .into_iter()
        .filter_map(|f| {
            let (kind, title, text) = search::item_text(&f.item)?;
            let hit = ItemHit {
                room: f.room,
                item: f.item.id(),
                kind: kind.to_owned(),
                title,
                snippet: search::snippet(&text, &q),
            };
            Some((f.key, hit))
        })
        .collect();
    Ok(cut(hits, limit))
}

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
    let (before, limit) = page_args(cursor, limit)?;
    let found = store.search_messages(user, &q, before, limit + 1).await?;
    let hits = found
        .into_iter()
        .map(|m| {
            let hit = MessageHit {
                snippet: search::snippet(&m.text, &q),
                room: m.room,
                seq: m.seq,
                ts: m.ts,
                author: m.author,
            };
            (m.key, hit)
        })
        .collect();
    Ok(cut(hits, limit))
}
