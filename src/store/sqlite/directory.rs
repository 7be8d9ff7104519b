//! Companies, users and contacts in SQLite: each change applied to the record as stored at that
//! instant, inside the writer's transaction, so that concurrent admin changes compose.

use super::rows::*;
use super::*;

#[async_trait]
impl DirectoryStore for SqliteStore {
    async fn create_company(&self, company: &Company, admin_key_hash: &str) -> StoreResult<()> {
        let c = company.clone();
        let settings = json(&c.settings)?;
        let hash = admin_key_hash.to_owned();
        self.write(move |conn| {
            refuse_retired(conn, &c.id.0, "company")?;
            conn.execute(
                "INSERT INTO companies (id, name, settings, key_hash, self_registered) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![c.id.0, c.name, settings, hash, c.self_registered],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists(format!("company {}", c.id))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn company(&self, id: &CompanyId) -> StoreResult<Option<Company>> {
        let id = id.clone();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, name, settings, self_registered FROM companies WHERE id = ?1",
                )?
                .query_row(params![id.0], company_from_row)
                .optional()?)
        })
        .await
    }

    async fn companies(&self) -> StoreResult<Vec<Company>> {
        self.read(|conn| {
            let mut st = conn.prepare_cached(
                "SELECT id, name, settings, self_registered FROM companies ORDER BY id",
            )?;
            let rows = st.query_map([], company_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn company_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<CompanyId>> {
        let h = key_hash.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id FROM companies WHERE key_hash = ?1")?
                .query_row(params![h], |r| Ok(CompanyId(r.get(0)?)))
                .optional()?)
        })
        .await
    }

    async fn set_admin_key(&self, id: &CompanyId, key_hash: &str) -> StoreResult<()> {
        let (id, h) = (id.clone(), key_hash.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached("UPDATE companies SET key_hash = ?2 WHERE id = ?1")?
                .execute(params![id.0, h])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("company {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn delete_company(&self, id: &CompanyId) -> StoreResult<()> {
        let id = id.clone();
        self.write(move |conn| {
            let gone = conn
                .prepare_cached("DELETE FROM companies WHERE id = ?1")?
                .execute(params![id.0])?;
            if gone > 0 {
                retire(conn, &id.0, "company")?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<()> {
        let id = id.clone();
        self.write(move |conn| {
            // One write batch, one transaction.
            let gone = conn
                .prepare_cached("DELETE FROM users WHERE id = ?1")?
                .execute(params![id.0])?;
            if gone > 0 {
                retire(conn, &id.0, "user")?;
            }
            conn.prepare_cached("DELETE FROM contacts WHERE owner = ?1 OR contact = ?1")?
                .execute(params![id.0])?;
            Ok(())
        })
        .await
    }

    async fn change_settings(
        &self,
        id: &CompanyId,
        patch: &SettingsPatch,
    ) -> StoreResult<(CompanySettings, CompanySettings)> {
        let (id, patch) = (id.clone(), patch.clone());
        // One writer thread: this read-modify-write is atomic with every other write.
        self.write(move |conn| {
            let raw: Option<String> = conn
                .prepare_cached("SELECT settings FROM companies WHERE id = ?1")?
                .query_row(params![id.0], |r| r.get(0))
                .optional()?;
            let raw = raw.ok_or_else(|| StoreError::NotFound(format!("company {id}")))?;
            let before: CompanySettings = from_json(&raw)?;
            let after = patch_settings(&before, &patch).map_err(StoreError::backend)?;
            conn.execute(
                "UPDATE companies SET settings = ?2 WHERE id = ?1",
                params![id.0, json(&after)?],
            )?;
            Ok((before, after))
        })
        .await
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let u = user.clone();
        self.write(move |conn| {
            refuse_retired(conn, &u.id.0, "user")?;
            conn.execute(
                "INSERT INTO users (id, company, name, email, kind, active, external_granted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    u.id.0,
                    u.company.0,
                    u.name,
                    u.email,
                    u.kind.as_str(),
                    u.active,
                    u.external_granted
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists(format!("user {}", u.id))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn user(&self, id: &UserId) -> StoreResult<Option<User>> {
        let id = id.clone();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {USER_COLUMNS} WHERE id = ?1"))?
                .query_row(params![id.0], user_from_row)
                .optional()?)
        })
        .await
    }

    async fn users(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        let ids = ids.to_vec();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!("SELECT {USER_COLUMNS} WHERE id = ?1"))?;
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(u) = st.query_row(params![id.0], user_from_row).optional()? {
                    out.push(u);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn users_of(&self, company: &CompanyId) -> StoreResult<Vec<User>> {
        let c = company.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} WHERE company = ?1 ORDER BY id"
            ))?;
            let rows = st.query_map(params![c.0], user_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn change_user(&self, id: &UserId, change: &UserChange) -> StoreResult<(User, User)> {
        let (id, change) = (id.clone(), change.clone());
        // One writer thread: this read-modify-write is atomic with every other write.
        self.write(move |conn| {
            let before = conn
                .prepare_cached(&format!("SELECT {USER_COLUMNS} WHERE id = ?1"))?
                .query_row(params![id.0], user_from_row)
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
            let u = change.apply(&before);
            conn.execute(
                "UPDATE users SET name = ?2, email = ?3, active = ?4, external_granted = ?5,
                                  tokens_valid_after = ?6
                 WHERE id = ?1",
                params![
                    u.id.0,
                    u.name,
                    u.email,
                    u.active,
                    u.external_granted,
                    u.tokens_valid_after
                ],
            )?;
            Ok((before, u))
        })
        .await
    }

    async fn add_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()> {
        let (o, c) = (owner.clone(), contact.clone());
        self.write(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO contacts (owner, contact) VALUES (?1, ?2)",
                params![o.0, c.0],
            )?;
            Ok(())
        })
        .await
    }

    async fn remove_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()> {
        let (o, c) = (owner.clone(), contact.clone());
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM contacts WHERE owner = ?1 AND contact = ?2",
                params![o.0, c.0],
            )?;
            Ok(())
        })
        .await
    }

    async fn contacts(&self, owner: &UserId) -> StoreResult<Vec<UserId>> {
        let o = owner.clone();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached("SELECT contact FROM contacts WHERE owner = ?1 ORDER BY contact")?;
            let rows = st.query_map(params![o.0], |r| Ok(UserId(r.get(0)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

/// A2: remember that `id` (a user's or a company's) was deleted, so that it is never created
/// again — in the transaction of the deletion.
fn retire(conn: &Connection, id: &str, kind: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO retired_ids (id, kind, retired_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![id, kind, crate::clock::now_ms()])?;
    Ok(())
}

/// A2: refuse to create a `kind` under an id that was deleted — in the transaction of the
/// creation, so that a deletion committed before it is always seen.
fn refuse_retired(conn: &Connection, id: &str, kind: &str) -> StoreResult<()> {
    let retired: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM retired_ids WHERE id = ?1 AND kind = ?2)")?
        .query_row(params![id, kind], |r| r.get(0))?;
    if retired {
        return Err(StoreError::Retired(format!("{kind} {id}")));
    }
    Ok(())
}
