//! File records and each company's storage (G17) in Redis: the `STORAGE` script's leases, the
//! attachments' claims (M1) and the list the files sweep reads.

use super::keys::*;
use super::*;

impl Inner {
    pub(super) async fn delete_file(&self, id: &str) -> StoreResult<()> {
        let key = format!("cr:file:{id}");
        let raw: Option<String> = ::redis::cmd("GETDEL")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        if let Some(raw) = raw {
            let f: FileRecord = from_json(&raw)?;
            let _: () = ::redis::cmd("SREM")
                .arg(rk(&f.room, "files"))
                .arg(id)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            let mut written = vec![key, rk(&f.room, "files")];
            if f.attachment {
                let _: () = ::redis::cmd("DEL")
                    .arg(claim_key(id))
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
                let _: () = ::redis::cmd("ZREM")
                    .arg(ATTACHMENTS)
                    .arg(id)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
                written.extend([claim_key(id), ATTACHMENTS.to_owned()]);
            }
            self.settle(written).await?;
            self.release(&f.company, f.size).await?;
        }
        Ok(())
    }

    /// Run [`STORAGE`] on `company`'s keys, settled when it wrote.
    pub(super) async fn storage(&self, company: &CompanyId, args: &[&str]) -> StoreResult<i64> {
        let used = format!("cr:storage:{}", company.0);
        // Hash-tagged by `used`'s whole name: the same slot.
        let (leases, leased) = (format!("{{{used}}}:leases"), format!("{{{used}}}:leased"));
        let mut inv = self.scripts.storage.prepare_invoke();
        inv.key(&used).key(leases).key(leased);
        for a in args {
            inv.arg(*a);
        }
        let out: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        if args.first() != Some(&"used") {
            self.settle([used]).await?;
        }
        Ok(out)
    }

    pub(super) async fn release(&self, company: &CompanyId, bytes: u64) -> StoreResult<()> {
        let key = format!("cr:storage:{}", company.0);
        let _: i64 = self
            .scripts
            .release
            .key(&key)
            .arg(bytes)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        self.settle([key]).await
    }
}

#[async_trait]
impl FileStore for RedisStore {
    async fn reserve_storage(
        &self,
        company: &CompanyId,
        bytes: u64,
        quota: u64,
        lease: Duration,
    ) -> StoreResult<Option<Reservation>> {
        let id = crate::random::token();
        let ok = self
            .inner
            .storage(
                company,
                &[
                    "reserve",
                    &id,
                    &bytes.to_string(),
                    &quota.to_string(),
                    &ms(lease),
                ],
            )
            .await?;
        Ok((ok == 1).then(|| Reservation {
            company: company.clone(),
            bytes,
            id,
        }))
    }

    async fn renew_reservation(&self, held: &Reservation, lease: Duration) -> StoreResult<bool> {
        let renewed = self
            .inner
            .storage(&held.company, &["renew", &held.id, &ms(lease)])
            .await?;
        Ok(renewed == 1)
    }

    async fn release_storage(&self, held: &Reservation) -> StoreResult<()> {
        self.inner
            .storage(&held.company, &["release", &held.id])
            .await
            .map(drop)
    }

    async fn storage_used(&self, company: &CompanyId) -> StoreResult<u64> {
        let used = self.inner.storage(company, &["used"]).await?;
        Ok(used.max(0) as u64)
    }

    async fn add_file(&self, file: &FileRecord, held: &Reservation) -> StoreResult<()> {
        if file.attachment {
            // The sweep's index first: a crash after it leaves an entry the sweep drops.
            let mut listed = ::redis::cmd("ZADD");
            listed.arg(ATTACHMENTS).arg(file.created_at).arg(&file.id);
            self.each(vec![listed]).await?;
        }
        let mut record = ::redis::cmd("SET");
        record
            .arg(format!("cr:file:{}", file.id))
            .arg(to_json(file)?);
        let mut index = ::redis::cmd("SADD");
        index.arg(rk(&file.room, "files")).arg(&file.id);
        self.each(vec![record, index]).await?;
        // The record first: a crash before this counts the file nowhere (its lease lapses),
        // never twice.
        self.inner
            .storage(
                &held.company,
                &["commit", &held.id, &held.bytes.to_string()],
            )
            .await
            .map(drop)
    }

    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        let raw: Option<String> = ::redis::cmd("GET")
            .arg(format!("cr:file:{id}"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn delete_file(&self, id: &str) -> StoreResult<()> {
        self.inner.delete_file(id).await
    }

    async fn claim_file(&self, id: &str, claim: Option<&str>) -> StoreResult<Option<String>> {
        if self.file(id).await?.is_none() {
            return Ok(None);
        }
        let Some(claim) = claim else {
            return ::redis::cmd("GET")
                .arg(claim_key(id))
                .query_async(&mut self.conn())
                .await
                .map_err(backend);
        };
        // `SET NX GET` answers the claim that was there, or nil when ours was set.
        let before: Option<String> = ::redis::cmd("SET")
            .arg(claim_key(id))
            .arg(claim)
            .arg("NX")
            .arg("GET")
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if before.is_none() {
            self.inner.settle([claim_key(id)]).await?;
        }
        Ok(Some(before.unwrap_or_else(|| claim.to_owned())))
    }

    async fn unsettled_attachments(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(FileRecord, Option<String>)>> {
        let ids: Vec<String> = ::redis::cmd("ZRANGE")
            .arg(ATTACHMENTS)
            .arg("-inf")
            .arg(format!("({before_ms}"))
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.file(&id).await? {
                Some(f) => {
                    let claim = self.claim_file(&id, None).await?;
                    out.push((f, claim));
                }
                // Listed before its record was written, and the upload went no further.
                None => self.settle_file(&id).await?,
            }
        }
        Ok(out)
    }

    async fn settle_file(&self, id: &str) -> StoreResult<()> {
        let mut unlisted = ::redis::cmd("ZREM");
        unlisted.arg(ATTACHMENTS).arg(id);
        self.each(vec![unlisted]).await
    }
}
