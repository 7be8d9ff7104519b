//! Message search in cluster mode (M6): not built yet. Redis keeps no text index, and the
//! per-node index kept from the committed log that cluster mode needs is still to come; a search
//! is refused as `unavailable`, saying so, rather than answered from an index that is not there.

use super::RedisStore;
use crate::domain::search::MessageQuery;
use crate::store::{FoundItem, FoundMessage, SearchStore, StoreError, StoreResult};
use async_trait::async_trait;
use crossroom_protocol::UserId;

#[async_trait]
impl SearchStore for RedisStore {
    async fn search_messages(
        &self,
        _user: &UserId,
        _query: &MessageQuery,
        _before: Option<i64>,
        _limit: usize,
    ) -> StoreResult<Vec<FoundMessage>> {
        Err(unsupported())
    }

    async fn search_items(
        &self,
        _user: &UserId,
        _query: &MessageQuery,
        _before: Option<i64>,
        _limit: usize,
    ) -> StoreResult<Vec<FoundItem>> {
        Err(unsupported())
    }
}

fn unsupported() -> StoreError {
    StoreError::Unsupported(
        "search is not available in cluster mode yet (only with the embedded store)".into(),
    )
}
