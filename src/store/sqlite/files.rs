//! File records and each company's storage (G17) in SQLite, attachments' claims (M1).

use super::rows::*;
use super::*;

/// Forget a file and give its bytes back to its company's storage.
pub(super) fn delete_file_row(conn: &Connection, id: &str) -> StoreResult<()> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT company, size FROM files WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((company, size)) = row {
        conn.prepare_cached("DELETE FROM files WHERE id = ?1")?
            .execute(params![id])?;
        release(conn, &company, size as u64)?;
    }
    Ok(())
}

pub(super) fn release(conn: &Connection, company: &str, bytes: u64) -> StoreResult<()> {
    conn.prepare_cached("UPDATE storage SET used = max(0, used - ?2) WHERE company = ?1")?
        .execute(params![company, sql_seq(bytes)])?;
    Ok(())
}

#[async_trait]
impl FileStore for SqliteStore {
    async fn reserve_storage(
        &self,
        company: &CompanyId,
        bytes: u64,
        quota: u64,
        _lease: std::time::Duration,
    ) -> StoreResult<Option<Reservation>> {
        // Held in `used` itself: this process alone writes the file, and its start gives back
        // whatever a killed one held.
        let c = company.clone();
        self.write(move |conn| {
            conn.prepare_cached("INSERT OR IGNORE INTO storage (company, used) VALUES (?1, 0)")?
                .execute(params![c.0])?;
            let n = conn
                .prepare_cached(
                    "UPDATE storage SET used = used + ?2 WHERE company = ?1 AND used + ?2 <= ?3",
                )?
                .execute(params![c.0, sql_seq(bytes), sql_seq(quota)])?;
            Ok((n == 1).then(|| Reservation {
                company: c,
                bytes,
                id: String::new(),
            }))
        })
        .await
    }

    async fn renew_reservation(
        &self,
        _held: &Reservation,
        _lease: std::time::Duration,
    ) -> StoreResult<bool> {
        Ok(true)
    }

    async fn release_storage(&self, held: &Reservation) -> StoreResult<()> {
        let (c, bytes) = (held.company.clone(), held.bytes);
        self.write(move |conn| release(conn, &c.0, bytes)).await
    }

    async fn storage_used(&self, company: &CompanyId) -> StoreResult<u64> {
        let c = company.clone();
        self.read(move |conn| {
            let used: Option<i64> = conn
                .prepare_cached("SELECT used FROM storage WHERE company = ?1")?
                .query_row(params![c.0], |r| r.get(0))
                .optional()?;
            Ok(used.unwrap_or(0) as u64)
        })
        .await
    }

    async fn add_file(&self, file: &FileRecord, _held: &Reservation) -> StoreResult<()> {
        // The reserved bytes are in `used` already: they are the file's now.
        let f = file.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO files (id, room, company, size, sha256, name, content_type, created_by, created_at, attachment)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                f.id,
                f.room.0,
                f.company.0,
                sql_seq(f.size),
                f.sha256,
                f.name,
                f.content_type,
                f.created_by.0,
                f.created_at,
                f.attachment
            ])?;
            Ok(())
        })
        .await
    }

    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        let id = id.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ?1"))?
                .query_row(params![id], file_from_row)
                .optional()?)
        })
        .await
    }

    async fn delete_file(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| delete_file_row(conn, &id)).await
    }

    async fn claim_file(&self, id: &str, claim: Option<&str>) -> StoreResult<Option<String>> {
        let (id, claim) = (id.to_owned(), claim.map(str::to_owned));
        self.write(move |conn| {
            if let Some(c) = &claim {
                conn.prepare_cached("UPDATE files SET claim = ?2 WHERE id = ?1 AND claim IS NULL")?
                    .execute(params![id, c])?;
            }
            Ok(conn
                .prepare_cached("SELECT claim FROM files WHERE id = ?1")?
                .query_row(params![id], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .flatten())
        })
        .await
    }

    async fn unsettled_attachments(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(FileRecord, Option<String>)>> {
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {FILE_COLUMNS}, claim FROM files
                  WHERE attachment = 1 AND settled = 0 AND created_at < ?1
                  ORDER BY created_at LIMIT ?2"
            ))?;
            let rows = st.query_map(params![before_ms, limit as i64], |r| {
                Ok((file_from_row(r)?, r.get::<_, Option<String>>(10)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn settle_file(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE files SET settled = 1 WHERE id = ?1")?
                .execute(params![id])?;
            Ok(())
        })
        .await
    }
}
