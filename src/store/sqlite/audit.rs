//! Audit records (G19) in SQLite: written in the transaction of the change they record, indexed
//! by every company they involve.

use super::rows::*;
use super::*;

pub(super) fn write_audit(conn: &Connection, a: &NewAudit) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO audit (ts, room, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![a.ts, a.room.0, a.actor.0, a.action, a.detail])?;
    let id = conn.last_insert_rowid();
    let mut st = conn
        .prepare_cached("INSERT OR IGNORE INTO audit_companies (company, audit) VALUES (?1, ?2)")?;
    for c in &a.companies {
        st.execute(params![c.0, id])?;
    }
    Ok(())
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit(
        &self,
        company: Option<&CompanyId>,
        room: Option<&RoomId>,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<AuditEntry>> {
        let c = company.map(|c| c.0.clone());
        let room = room.cloned();
        self.read(move |conn| {
            // One company: through its index. Every company: the records themselves.
            let mut st = conn.prepare_cached(match c {
                Some(_) => {
                    "SELECT a.id, a.ts, a.room, a.actor, a.action, a.detail,
                            (SELECT group_concat(company, ' ') FROM audit_companies WHERE audit = a.id)
                       FROM audit_companies ac JOIN audit a ON a.id = ac.audit
                      WHERE ac.company = ?1 AND ac.audit < ?2 AND (?3 IS NULL OR a.room = ?3)
                      ORDER BY ac.audit DESC LIMIT ?4"
                }
                None => {
                    "SELECT a.id, a.ts, a.room, a.actor, a.action, a.detail,
                            (SELECT group_concat(company, ' ') FROM audit_companies WHERE audit = a.id)
                       FROM audit a
                      WHERE ?1 IS NULL AND a.id < ?2 AND (?3 IS NULL OR a.room = ?3)
                      ORDER BY a.id DESC LIMIT ?4"
                }
            })?;
            let rows = st.query_map(
                params![
                    c,
                    sql_seq(before.unwrap_or(u64::MAX)),
                    room.map(|r| r.0),
                    limit as i64
                ],
                |r| {
                    let detail: String = r.get(5)?;
                    let companies: Option<String> = r.get(6)?;
                    Ok(AuditEntry {
                        id: r.get::<_, i64>(0)? as u64,
                        ts: r.get(1)?,
                        room: RoomId(r.get(2)?),
                        actor: UserId(r.get(3)?),
                        action: r.get(4)?,
                        detail: from_json(&detail)?,
                        companies: companies
                            .unwrap_or_default()
                            .split_whitespace()
                            .map(|c| CompanyId(c.to_owned()))
                            .collect(),
                    })
                },
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
