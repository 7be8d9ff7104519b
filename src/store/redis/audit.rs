//! Audit records (G19) in Redis: written by a room's own scripts into its outbox, then copied
//! to each company's log and the operator's, each exactly once.

use super::keys::*;
use super::*;

impl Inner {
    /// Write the audit records waiting in `room`'s outbox — put there by the room's own script,
    /// in the same atomic step as their entries — each exactly once: a record's id is fixed the
    /// first time it is seen (`cr:audit:id:<tag>`), so writing it again after a crash rewrites the
    /// same record. A record leaves the outbox only once written.
    pub(super) async fn flush_audits(&self, room: &RoomId) -> StoreResult<()> {
        let outbox = rk(room, "audit");
        loop {
            let raw: Option<String> = ::redis::cmd("LINDEX")
                .arg(&outbox)
                .arg(0)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            let Some(raw) = raw else {
                let _: () = ::redis::cmd("SREM")
                    .arg(AUDIT_PENDING)
                    .arg(&room.0)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
                return self.settle([AUDIT_PENDING.to_owned()]).await;
            };
            let item: OutboxAudit = from_json(&raw)?;
            let id = self.audit_id(&item.tag).await?;
            self.write_audit_as(id, &item.audit).await?;
            let _: () = ::redis::cmd("LREM")
                .arg(&outbox)
                .arg(1)
                .arg(&raw)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
        }
    }

    /// The id of the audit record tagged `tag`: the one it was given the first time it was seen
    /// (kept a week: far longer than any retry), or a new one.
    pub(super) async fn audit_id(&self, tag: &str) -> StoreResult<u64> {
        let key = format!("cr:audit:id:{tag}");
        let get = |key: String| async move {
            ::redis::cmd("GET")
                .arg(key)
                .query_async::<Option<u64>>(&mut self.conn.clone())
                .await
                .map_err(backend)
        };
        if let Some(id) = get(key.clone()).await? {
            return Ok(id);
        }
        let fresh: u64 = ::redis::cmd("INCR")
            .arg("cr:audit:seq")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        // Whoever set it first (another node flushing the same outbox) wins.
        let _: () = ::redis::cmd("SET")
            .arg(&key)
            .arg(fresh)
            .arg("NX")
            .arg("EX")
            .arg(7 * 86_400)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        self.settle(["cr:audit:seq".to_owned(), key.clone()])
            .await?;
        get(key)
            .await?
            .ok_or_else(|| StoreError::backend("audit id vanished"))
    }

    /// Write every room's pending audit records (before audit records are read).
    pub(super) async fn flush_pending_audits(&self) -> StoreResult<()> {
        let rooms: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(AUDIT_PENDING)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        for r in rooms {
            self.flush_audits(&RoomId(r)).await?;
        }
        Ok(())
    }

    /// Write an audit record under `id`; writing the same record again changes nothing.
    pub(super) async fn write_audit_as(&self, id: u64, a: &NewAudit) -> StoreResult<()> {
        let record = to_json(&AuditEntry {
            id,
            ts: a.ts,
            room: a.room.clone(),
            actor: a.actor.clone(),
            action: a.action.clone(),
            detail: serde_json::from_str(&a.detail).unwrap_or(serde_json::Value::Null),
            companies: a.companies.clone(),
        })?;
        let keys: Vec<String> = a
            .companies
            .iter()
            .map(|c| audit_key(Some(c)))
            .chain([audit_key(None)])
            .collect();
        for key in &keys {
            let _: () = ::redis::cmd("ZADD")
                .arg(key)
                .arg(id)
                .arg(&record)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
        }
        self.settle(keys).await
    }
}

impl RedisStore {
    /// List `room` as possibly holding audit records not yet written (before a script puts one
    /// in its outbox: a superset, so a crash in between leaves at most an empty outbox listed).
    pub(super) async fn mark_audit_pending(&self, room: &RoomId) -> StoreResult<()> {
        let _: () = ::redis::cmd("SADD")
            .arg(AUDIT_PENDING)
            .arg(&room.0)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner.settle([AUDIT_PENDING.to_owned()]).await
    }
}

#[async_trait]
impl AuditStore for RedisStore {
    async fn audit(
        &self,
        company: Option<&CompanyId>,
        room: Option<&RoomId>,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<AuditEntry>> {
        // Records a node could not write after their commit (it died) are written first.
        self.inner.flush_pending_audits().await?;
        let key = audit_key(company);
        let mut out = Vec::new();
        let mut max = match before {
            Some(b) => format!("({b}"),
            None => "+inf".to_owned(),
        };
        // Page through newest first until `limit` records match the room filter.
        loop {
            let page: Vec<(String, f64)> = ::redis::cmd("ZRANGE")
                .arg(&key)
                .arg(&max)
                .arg("-inf")
                .arg("BYSCORE")
                .arg("REV")
                .arg("LIMIT")
                .arg(0)
                .arg(limit.max(1) * 4)
                .arg("WITHSCORES")
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let done = page.len() < limit.max(1) * 4;
            for (raw, score) in page {
                max = format!("({}", score as u64);
                let a: AuditEntry = from_json(&raw)?;
                if room.is_some_and(|r| *r != a.room) {
                    continue;
                }
                out.push(a);
                if out.len() == limit {
                    return Ok(out);
                }
            }
            if done {
                return Ok(out);
            }
        }
    }
}
