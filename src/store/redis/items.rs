//! A room's feature items in Redis (`cr:{r}:items`), as projected from its log, and note reads.

use super::keys::*;
use super::*;

#[async_trait]
impl ItemStore for RedisStore {
    async fn items(&self, room: &RoomId) -> StoreResult<Vec<Item>> {
        self.inner.items_of(room).await
    }

    async fn item(&self, room: &RoomId, id: u64) -> StoreResult<Option<Item>> {
        let raw: Option<String> = ::redis::cmd("HGET")
            .arg(rk(room, "items"))
            .arg(id)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn item_count(&self, room: &RoomId) -> StoreResult<u64> {
        ::redis::cmd("HLEN")
            .arg(rk(room, "items"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)
    }

    async fn read_note(&self, room: &RoomId, note: u64, user: &UserId) -> StoreResult<Option<u64>> {
        for _ in 0..MAX_RETRIES {
            let raw: Option<String> = ::redis::cmd("HGET")
                .arg(rk(room, "items"))
                .arg(note)
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let Some(raw) = raw else { return Ok(None) };
            let Item::Note(mut n) = from_json::<Item>(&raw)? else {
                return Ok(None);
            };
            let fresh = n.readers.insert(user.clone());
            let count = n.readers.len() as u64;
            if !fresh {
                return Ok(Some(count));
            }
            let ok: i64 = self
                .inner
                .scripts
                .cas_field
                .key(rk(room, "items"))
                .arg(note)
                .arg(&raw)
                .arg(to_json(&Item::Note(n))?)
                .invoke_async(&mut self.conn())
                .await
                .map_err(backend)?;
            if ok == 1 {
                self.inner.settle([rk(room, "items")]).await?;
                return Ok(Some(count));
            }
        }
        Err(StoreError::backend(format!("room {room}: contention")))
    }
}
