//! The ops stream's audit backlog: the stored records a dashboard shows on open and pages back
//! through (`backlog` frames), under the stream's filter — read from the store's log of every
//! company (or of the one company the filter names), so it survives restarts and covers every
//! node of a cluster.

use super::filter::Filter;
use crate::store::{Store, StoreResult};
use crossroom_protocol::ops::AuditRecord;

/// Records in one answer, by default and at most.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;
/// Records read from the store per look.
const PAGE: usize = 200;
/// Records one answer reads at most: a filter that matches little answers a short page with a
/// `next` to go on from, instead of reading the whole log.
const MAX_SCAN: usize = 2000;

/// The newest records below `before` that `filter` takes, at most `limit`; and where the next
/// page starts (`None`: nothing older).
pub async fn page(
    store: &dyn Store,
    filter: &Filter,
    before: Option<u64>,
    limit: u32,
) -> StoreResult<(Vec<AuditRecord>, Option<u64>)> {
    let limit = limit.clamp(1, MAX_LIMIT) as usize;
    let company = match filter.companies.as_slice() {
        [one] => Some(one),
        _ => None,
    };
    let (mut out, mut cursor, mut scanned) = (Vec::new(), before, 0usize);
    loop {
        let entries = store.audit(company, None, cursor, PAGE).await?;
        let last_page = entries.len() < PAGE;
        for e in entries {
            cursor = Some(e.id);
            scanned += 1;
            let record = AuditRecord {
                id: Some(e.id),
                ts: e.ts,
                room: e.room,
                actor: e.actor,
                action: e.action,
                detail: e.detail,
                companies: e.companies,
                names: Default::default(),
            };
            // One company asked for: its own log holds its records (older Redis records do
            // not list their companies).
            if filter.takes_kind(&record) && (company.is_some() || filter.takes_company(&record)) {
                out.push(record);
            }
            if out.len() == limit {
                return Ok((out, cursor));
            }
        }
        if last_page {
            return Ok((out, None));
        }
        if scanned >= MAX_SCAN {
            return Ok((out, cursor));
        }
    }
}
