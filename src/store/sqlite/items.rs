//! A room's feature items in SQLite, as projected from its log, and note reads.

use super::rows::*;
use super::*;

pub(super) fn load_item(conn: &Connection, room: &RoomId, id: u64) -> StoreResult<Option<Item>> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM items WHERE room = ?1 AND id = ?2")?
        .query_row(params![room.0, sql_seq(id)], |r| r.get(0))
        .optional()?;
    state
        .map(|s| serde_json::from_str(&s).map_err(StoreError::backend))
        .transpose()
}

pub(super) fn save_item(
    conn: &Connection,
    room: &RoomId,
    id: u64,
    item: Option<&Item>,
) -> StoreResult<()> {
    match item {
        Some(it) => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO items (room, id, state) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![room.0, sql_seq(id), json(it)?])?;
        }
        None => {
            conn.prepare_cached("DELETE FROM items WHERE room = ?1 AND id = ?2")?
                .execute(params![room.0, sql_seq(id)])?;
        }
    }
    super::index::index_item(room, id, item);
    Ok(())
}

pub(super) fn all_items(conn: &Connection, room: &RoomId) -> StoreResult<Vec<Item>> {
    let mut st = conn.prepare_cached("SELECT state FROM items WHERE room = ?1 ORDER BY id")?;
    let rows = st.query_map(params![room.0], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for s in rows {
        out.push(serde_json::from_str(&s?).map_err(StoreError::backend)?);
    }
    Ok(out)
}

#[async_trait]
impl ItemStore for SqliteStore {
    async fn items(&self, room: &RoomId) -> StoreResult<Vec<Item>> {
        let r = room.clone();
        self.read(move |conn| all_items(conn, &r)).await
    }

    async fn item(&self, room: &RoomId, id: u64) -> StoreResult<Option<Item>> {
        let r = room.clone();
        self.read(move |conn| load_item(conn, &r, id)).await
    }

    async fn item_count(&self, room: &RoomId) -> StoreResult<u64> {
        let r = room.clone();
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM items WHERE room = ?1")?
                .query_row(params![r.0], |row| row.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    async fn read_note(&self, room: &RoomId, note: u64, user: &UserId) -> StoreResult<Option<u64>> {
        let (r, u) = (room.clone(), user.clone());
        self.write(move |conn| {
            let Some(Item::Note(mut n)) = load_item(conn, &r, note)? else {
                return Ok(None);
            };
            n.readers.insert(u);
            let count = n.readers.len() as u64;
            save_item(conn, &r, note, Some(&Item::Note(n)))?;
            Ok(Some(count))
        })
        .await
    }
}
