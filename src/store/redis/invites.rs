//! Groups' invitation links (G14) in Redis: the room's `invite` key and the token's index,
//! set with its audit record in one script (`SET_INVITE`).

use super::keys::*;
use super::*;

#[async_trait]
impl InviteStore for RedisStore {
    async fn set_invite(
        &self,
        room: &RoomId,
        invite: Option<Invite>,
        audit: NewAudit,
    ) -> StoreResult<()> {
        let json = invite
            .as_ref()
            .map(to_json)
            .transpose()?
            .unwrap_or_default();
        let mut written = vec![rk(room, "state")];
        if let Some(i) = &invite {
            written.push(format!("cr:invite:{}", i.token));
            let _: () = ::redis::cmd("SET")
                .arg(format!("cr:invite:{}", i.token))
                .arg(&room.0)
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
        }
        // Its audit record goes into the room's outbox in the same step (G19).
        let item = OutboxAudit {
            tag: format!("{}:invite:{}", room.0, crate::random::token()),
            audit,
        };
        self.mark_audit_pending(room).await?;
        let old: Value = self
            .inner
            .scripts
            .set_invite
            .key(rk(room, "state"))
            .key(rk(room, "invite"))
            .key(rk(room, "audit"))
            .arg(json)
            .arg(to_json(&item)?)
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let old: Option<String> = match old {
            Value::Int(-1) => return Err(StoreError::NotFound(format!("room {room}"))),
            Value::BulkString(b) if !b.is_empty() => Some(String::from_utf8_lossy(&b).into()),
            _ => None,
        };
        if let Some(old) = old {
            let old: Invite = from_json(&old)?;
            if invite.as_ref().map(|i| &i.token) != Some(&old.token) {
                let _: () = ::redis::cmd("DEL")
                    .arg(format!("cr:invite:{}", old.token))
                    .query_async(&mut self.conn())
                    .await
                    .map_err(backend)?;
                written.push(format!("cr:invite:{}", old.token));
            }
        }
        self.inner.settle(written).await?;
        self.inner.flush_audits(room).await
    }

    async fn invite_of(&self, room: &RoomId) -> StoreResult<Option<Invite>> {
        if self.inner.load_room(room).await?.is_none() {
            return Ok(None);
        }
        let raw: Option<String> = ::redis::cmd("GET")
            .arg(rk(room, "invite"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn room_by_invite(&self, token: &str) -> StoreResult<Option<(RoomId, Invite)>> {
        let room: Option<String> = ::redis::cmd("GET")
            .arg(format!("cr:invite:{token}"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let Some(room) = room.map(RoomId) else {
            return Ok(None);
        };
        // The room's own record is the truth (the token index may lag a revocation).
        Ok(self
            .invite_of(&room)
            .await?
            .filter(|i| i.token == token)
            .map(|i| (room, i)))
    }
}
