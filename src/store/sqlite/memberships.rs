//! Who is in which room, in SQLite: a user's rooms with their read state, read markers and
//! receipts, the groups a user is in or a company owns (G20).

use super::rows::*;
use super::*;

#[async_trait]
impl MembershipStore for SqliteStore {
    async fn rooms_of(&self, user: &UserId) -> StoreResult<Vec<MembershipRow>> {
        let u = user.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT r.id, r.kind, r.name, r.epoch,
                        (SELECT head FROM room_heads h WHERE h.room = r.id), m.last_read,
                        (SELECT count(*) FROM events e
                          WHERE m.is_member = 1 AND e.room = r.id AND e.seq > m.last_read
                            AND e.kind = 'message' AND e.author != m.user),
                        m.is_member, m.is_master
                   FROM room_members m JOIN rooms r ON r.id = m.room
                  WHERE m.user = ?1 AND (m.is_member = 1 OR m.is_master = 1) AND r.deleted = 0
                  ORDER BY r.id",
            )?;
            let rows = st.query_map(params![u.0], |r| {
                let kind: String = r.get(1)?;
                Ok(MembershipRow {
                    room: RoomId(r.get(0)?),
                    kind: kind_from(&kind),
                    name: r.get(2)?,
                    epoch: r.get::<_, i64>(3)? as u64,
                    head: r.get::<_, i64>(4)? as u64,
                    last_read: r.get::<_, i64>(5)? as u64,
                    unread: r.get::<_, i64>(6)? as u64,
                    member: r.get(7)?,
                    master: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn set_read_marker(&self, room: &RoomId, user: &UserId, seq: u64) -> StoreResult<()> {
        let (r, u) = (room.clone(), user.clone());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE room_members SET last_read = max(last_read, ?3) WHERE room = ?1 AND user = ?2",
            )?
            .execute(params![r.0, u.0, sql_seq(seq)])?;
            Ok(())
        })
        .await
    }

    async fn readers(&self, room: &RoomId, seq: u64, except: &UserId) -> StoreResult<Vec<UserId>> {
        let (r, x) = (room.clone(), except.clone());
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT user FROM room_members
                  WHERE room = ?1 AND is_member = 1 AND last_read >= ?2 AND user != ?3 ORDER BY user",
            )?;
            let rows = st.query_map(params![r.0, sql_seq(seq), x.0], |row| Ok(UserId(row.get(0)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn groups_of(&self, user: &UserId) -> StoreResult<Vec<RoomId>> {
        let u = user.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT r.id FROM room_members m JOIN rooms r ON r.id = m.room
                  WHERE m.user = ?1 AND (m.is_member = 1 OR m.is_master = 1)
                    AND r.kind = 'group' AND r.deleted = 0 ORDER BY r.id",
            )?;
            let rows = st.query_map(params![u.0], |r| Ok(RoomId(r.get(0)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn count_owned_groups(&self, company: &CompanyId) -> StoreResult<u64> {
        let c = company.clone();
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached(
                    "SELECT count(*) FROM rooms WHERE owner_company = ?1 AND kind = 'group' AND deleted = 0",
                )?
                .query_row(params![c.0], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    async fn owned_groups(&self, company: &CompanyId) -> StoreResult<Vec<RoomId>> {
        let c = company.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT id FROM rooms WHERE owner_company = ?1 AND kind = 'group' AND deleted = 0
                  ORDER BY id",
            )?;
            let rows = st.query_map(params![c.0], |r| Ok(RoomId(r.get(0)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
