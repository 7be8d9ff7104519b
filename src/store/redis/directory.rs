//! Companies, users and contacts in Redis: single-field updates by compare-and-set, so that
//! concurrent admin changes compose.

use super::keys::*;
use super::*;

impl RedisStore {
    /// A2: mark `id` as deleted, for good, acknowledged like any write.
    pub(super) async fn retire(&self, kind: &str, id: &str) -> StoreResult<()> {
        let key = retired_key(kind, id);
        let _: () = ::redis::cmd("SET")
            .arg(&key)
            .arg(crate::clock::now_ms())
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner.settle([key]).await
    }

    /// A2: after creating `record`, make sure its id was never deleted — checked after the
    /// creation, so that a deletion racing it (which marks the id before removing the record the
    /// creation waited to be gone) is always seen; a creation that finds the mark takes itself
    /// back.
    pub(super) async fn refuse_retired(
        &self,
        record: &str,
        kind: &str,
        id: &str,
        what: &str,
    ) -> StoreResult<()> {
        let retired: bool = ::redis::cmd("EXISTS")
            .arg(retired_key(kind, id))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if !retired {
            return Ok(());
        }
        let _: () = ::redis::cmd("DEL")
            .arg(record)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner.settle([record.to_owned()]).await?;
        Err(StoreError::Retired(format!("{what} {id}")))
    }

    /// A company's record as stored, with its raw text (for a compare-and-set).
    pub(super) async fn stored_company(
        &self,
        id: &CompanyId,
    ) -> StoreResult<Option<(StoredCompany, String)>> {
        let raw: Option<String> = ::redis::cmd("GET")
            .arg(company_key(id))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        raw.map(|r| Ok((from_json::<StoredCompany>(&r)?, r)))
            .transpose()
    }

    /// Commands on keys of different slots: one by one (a cluster refuses cross-slot
    /// pipelines), side by side.
    pub(super) async fn each(&self, cmds: Vec<Cmd>) -> StoreResult<()> {
        // Each command's first argument is its key.
        let keys: Vec<String> = cmds
            .iter()
            .filter_map(|c| match c.args_iter().nth(1) {
                Some(::redis::Arg::Simple(k)) => Some(String::from_utf8_lossy(k).into_owned()),
                _ => None,
            })
            .collect();
        let runs = cmds.into_iter().map(|c| {
            let mut conn = self.conn();
            async move { c.query_async::<Value>(&mut conn).await }
        });
        for r in futures_util::future::join_all(runs).await {
            r.map_err(backend)?;
        }
        self.inner.settle(keys).await
    }

    /// Compare-and-set a string key.
    pub(super) async fn cas_string(&self, key: &str, old: &str, new: &str) -> StoreResult<bool> {
        let ok: i64 = self
            .inner
            .scripts
            .cas_string
            .key(key)
            .arg(old)
            .arg(new)
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if ok == 1 {
            self.inner.settle([key.to_owned()]).await?;
        }
        Ok(ok == 1)
    }
}

#[async_trait]
impl DirectoryStore for RedisStore {
    async fn create_company(&self, company: &Company, admin_key_hash: &str) -> StoreResult<()> {
        let stored = to_json(&StoredCompany {
            company: company.clone(),
            key_hash: admin_key_hash.to_owned(),
        })?;
        let created: bool = ::redis::cmd("SET")
            .arg(company_key(&company.id))
            .arg(stored)
            .arg("NX")
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if !created {
            return Err(StoreError::AlreadyExists(format!("company {}", company.id)));
        }
        self.refuse_retired(&company_key(&company.id), "co", &company.id.0, "company")
            .await?;
        self.inner.settle([company_key(&company.id)]).await?;
        let mut index = ::redis::cmd("SADD");
        index.arg("cr:cos").arg(&company.id.0);
        let mut by_key = ::redis::cmd("SET");
        by_key
            .arg(format!("cr:cokey:{admin_key_hash}"))
            .arg(&company.id.0);
        self.each(vec![index, by_key]).await
    }

    async fn company(&self, id: &CompanyId) -> StoreResult<Option<Company>> {
        Ok(self.stored_company(id).await?.map(|(s, _)| s.company))
    }

    async fn companies(&self) -> StoreResult<Vec<Company>> {
        let mut ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg("cr:cos")
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(c) = self.company(&CompanyId(id)).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    async fn company_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<CompanyId>> {
        let id: Option<String> = ::redis::cmd("GET")
            .arg(format!("cr:cokey:{key_hash}"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let Some(id) = id.map(CompanyId) else {
            return Ok(None);
        };
        // The record is the authority: an index entry left by a re-issued (or deleted) key
        // opens nothing.
        Ok(self
            .stored_company(&id)
            .await?
            .filter(|(s, _)| s.key_hash == key_hash)
            .map(|_| id))
    }

    async fn set_admin_key(&self, id: &CompanyId, key_hash: &str) -> StoreResult<()> {
        for _ in 0..MAX_RETRIES {
            let Some((mut stored, raw)) = self.stored_company(id).await? else {
                return Err(StoreError::NotFound(format!("company {id}")));
            };
            let old = std::mem::replace(&mut stored.key_hash, key_hash.to_owned());
            let mut by_key = ::redis::cmd("SET");
            by_key.arg(format!("cr:cokey:{key_hash}")).arg(&id.0);
            self.each(vec![by_key]).await?;
            if self
                .cas_string(&company_key(id), &raw, &to_json(&stored)?)
                .await?
            {
                let mut gone = ::redis::cmd("DEL");
                gone.arg(format!("cr:cokey:{old}"));
                return self.each(vec![gone]).await;
            }
        }
        Err(StoreError::backend(format!("company {id}: contention")))
    }

    async fn delete_company(&self, id: &CompanyId) -> StoreResult<()> {
        let Some((stored, _)) = self.stored_company(id).await? else {
            return Ok(());
        };
        // Retired before the record goes: a creation that finds the record gone finds the mark.
        self.retire("co", &id.0).await?;
        // Closed to new groups before the caller lists the ones it owns (see `create_room`).
        let _: () = ::redis::cmd("SET")
            .arg(owned_groups_key(id))
            .arg(CLOSED)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner.settle([owned_groups_key(id)]).await?;
        let mut by_key = ::redis::cmd("DEL");
        by_key.arg(format!("cr:cokey:{}", stored.key_hash));
        let mut record = ::redis::cmd("DEL");
        record.arg(company_key(id));
        let mut index = ::redis::cmd("SREM");
        index.arg("cr:cos").arg(&id.0);
        self.each(vec![by_key, record, index]).await
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<()> {
        let Some(user) = self.user(id).await? else {
            return Ok(());
        };
        // Retired before the record goes: a creation that finds the record gone finds the mark.
        self.retire("u", &id.0).await?;
        let contacts = format!("cr:contacts:{}", id.0);
        let theirs: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(&contacts)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let mut cmds = Vec::new();
        // Contact lists are one-way: drop the user from the lists of those they had (the
        // usual case: contacts are added in pairs); a list elsewhere that still names them
        // finds no user behind the id.
        for other in theirs {
            let mut c = ::redis::cmd("SREM");
            c.arg(format!("cr:contacts:{other}")).arg(&id.0);
            cmds.push(c);
        }
        let mut index = ::redis::cmd("SREM");
        index
            .arg(format!("cr:co:{}:users", user.company.0))
            .arg(&id.0);
        let mut record = ::redis::cmd("DEL");
        record.arg(user_key(id));
        let mut list = ::redis::cmd("DEL");
        list.arg(&contacts);
        cmds.extend([index, record, list]);
        self.each(cmds).await
    }

    async fn change_settings(
        &self,
        id: &CompanyId,
        patch: &SettingsPatch,
    ) -> StoreResult<(CompanySettings, CompanySettings)> {
        // Compare-and-set the whole record, merging the patch into what is stored each time.
        for _ in 0..MAX_RETRIES {
            let raw: Option<String> = ::redis::cmd("GET")
                .arg(company_key(id))
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let Some(raw) = raw else {
                return Err(StoreError::NotFound(format!("company {id}")));
            };
            let mut stored: StoredCompany = from_json(&raw)?;
            let before = stored.company.settings.clone();
            let after = patch_settings(&before, patch).map_err(StoreError::backend)?;
            stored.company.settings = after.clone();
            if self
                .cas_string(&company_key(id), &raw, &to_json(&stored)?)
                .await?
            {
                return Ok((before, after));
            }
        }
        Err(StoreError::backend(format!("company {id}: contention")))
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let created: bool = ::redis::cmd("SET")
            .arg(user_key(&user.id))
            .arg(to_json(user)?)
            .arg("NX")
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if !created {
            return Err(StoreError::AlreadyExists(format!("user {}", user.id)));
        }
        self.refuse_retired(&user_key(&user.id), "u", &user.id.0, "user")
            .await?;
        let index = format!("cr:co:{}:users", user.company.0);
        let _: () = ::redis::cmd("SADD")
            .arg(&index)
            .arg(&user.id.0)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner.settle([user_key(&user.id), index]).await
    }

    async fn user(&self, id: &UserId) -> StoreResult<Option<User>> {
        let raw: Option<String> = ::redis::cmd("GET")
            .arg(user_key(id))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn users(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        // All reads in flight at once (the multiplexed connection pipelines them): the keys are
        // on many shards, so no MGET.
        let reads = futures_util::future::join_all(ids.iter().map(|id| self.user(id))).await;
        let mut out = Vec::with_capacity(ids.len());
        for u in reads {
            out.extend(u?);
        }
        Ok(out)
    }

    async fn users_of(&self, company: &CompanyId) -> StoreResult<Vec<User>> {
        let mut ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(format!("cr:co:{}:users", company.0))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        ids.sort();
        let ids: Vec<UserId> = ids.into_iter().map(UserId).collect();
        self.users(&ids).await
    }

    async fn change_user(&self, id: &UserId, change: &UserChange) -> StoreResult<(User, User)> {
        // Compare-and-set the record, applying the change to what is stored each time.
        for _ in 0..MAX_RETRIES {
            let raw: Option<String> = ::redis::cmd("GET")
                .arg(user_key(id))
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let Some(raw) = raw else {
                return Err(StoreError::NotFound(format!("user {id}")));
            };
            let before: User = from_json(&raw)?;
            let after = change.apply(&before);
            if self
                .cas_string(&user_key(id), &raw, &to_json(&after)?)
                .await?
            {
                return Ok((before, after));
            }
        }
        Err(StoreError::backend(format!("user {id}: contention")))
    }

    async fn add_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()> {
        let _: () = ::redis::cmd("SADD")
            .arg(format!("cr:contacts:{}", owner.0))
            .arg(&contact.0)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner
            .settle([format!("cr:contacts:{}", owner.0)])
            .await
    }

    async fn remove_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()> {
        let _: () = ::redis::cmd("SREM")
            .arg(format!("cr:contacts:{}", owner.0))
            .arg(&contact.0)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner
            .settle([format!("cr:contacts:{}", owner.0)])
            .await
    }

    async fn contacts(&self, owner: &UserId) -> StoreResult<Vec<UserId>> {
        let mut v: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(format!("cr:contacts:{}", owner.0))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        v.sort();
        Ok(v.into_iter().map(UserId).collect())
    }
}
