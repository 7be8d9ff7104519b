//! Groups' invitation links (G14) in SQLite.

use super::audit::write_audit;
use super::rows::*;
use super::*;

#[async_trait]
impl InviteStore for SqliteStore {
    async fn set_invite(
        &self,
        room: &RoomId,
        invite: Option<Invite>,
        audit: NewAudit,
    ) -> StoreResult<()> {
        let r = room.clone();
        self.write(move |conn| {
            let (token, expires, barred) = match &invite {
                Some(i) => (Some(i.token.clone()), i.expires_at, json(&i.barred)?),
                None => (None, None, "[]".to_owned()),
            };
            let n = conn
                .prepare_cached(
                    "UPDATE rooms SET invite_token = ?2, invite_expires = ?3, invite_barred = ?4
                      WHERE id = ?1 AND deleted = 0",
                )?
                .execute(params![r.0, token, expires, barred])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("room {r}")));
            }
            write_audit(conn, &audit)
        })
        .await
    }

    async fn invite_of(&self, room: &RoomId) -> StoreResult<Option<Invite>> {
        let r = room.clone();
        self.read(move |conn| {
            let row: Option<(Option<String>, Option<i64>, String)> = conn
                .prepare_cached(
                    "SELECT invite_token, invite_expires, invite_barred FROM rooms
                      WHERE id = ?1 AND deleted = 0",
                )?
                .query_row(params![r.0], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            let Some((Some(token), expires_at, barred)) = row else {
                return Ok(None);
            };
            Ok(Some(Invite {
                token,
                expires_at,
                barred: from_json(&barred)?,
            }))
        })
        .await
    }

    async fn room_by_invite(&self, token: &str) -> StoreResult<Option<(RoomId, Invite)>> {
        let t = token.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, invite_expires, invite_barred FROM rooms
                      WHERE invite_token = ?1 AND deleted = 0",
                )?
                .query_row(params![t], |row| {
                    let barred: String = row.get(2)?;
                    Ok((
                        RoomId(row.get(0)?),
                        Invite {
                            token: t.clone(),
                            expires_at: row.get(1)?,
                            barred: from_json(&barred)?,
                        },
                    ))
                })
                .optional()?)
        })
        .await
    }
}
